"""Sources: https downloads verified while streaming into a sparse cache, and cached local digests."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from imaging import MiB, gpt_raw, pattern, qemu_img, sha256_file, sparse_raw
from imgpub.disk import open_image
from imgpub.errors import ChecksumMismatchError, ConfigurationError
from imgpub.pipeline import publish
from imgpub.source import DigestCache, download, local_source


class _Files(http.server.BaseHTTPRequestHandler):
    root: Path
    hits: list[str]

    def do_GET(self) -> None:
        self.hits.append(self.path)
        path = self.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path, list[str]]]:
    """An https file server on a free port with a test CA that the process trusts (SSL_CERT_FILE)."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    root = tmp_path / "www"
    root.mkdir()
    hits: list[str] = []
    handler = type("Handler", (_Files,), {"root": root, "hits": hits})
    server = http.server.ThreadingHTTPServer(("localhost", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}", root, hits
    finally:
        server.shutdown()
        server.server_close()


def test_download_is_verified_sparse_and_cached(https, tmp_path: Path) -> None:
    base, root, hits = https
    src = sparse_raw(root / "disk.raw", 8 * MiB, [(0, pattern(4096, 1)), (6 * MiB, pattern(4096, 2))])
    digest = sha256_file(src)
    got = download(f"{base}/disk.raw", digest, tmp_path / "cache")
    assert got == tmp_path / "cache" / "sources" / digest
    assert got.read_bytes() == src.read_bytes()
    assert got.stat().st_blocks * 512 < 2 * MiB  # the zero runs became holes
    assert download(f"{base}/disk.raw", digest, tmp_path / "cache") == got
    assert hits == ["/disk.raw"]


def test_download_mismatch_leaves_nothing(https, tmp_path: Path) -> None:
    base, root, _ = https
    (root / "disk.raw").write_bytes(pattern(4096, 3))
    with pytest.raises(ChecksumMismatchError) as err:
        download(f"{base}/disk.raw", "a" * 64, tmp_path / "cache")
    assert str(err.value).startswith(f"{base}/disk.raw: sha256 is ")
    assert err.value.exit_code == 2
    assert list((tmp_path / "cache" / "sources").iterdir()) == []


def test_download_404_is_bad_input(https, tmp_path: Path) -> None:
    base, _, _ = https
    with pytest.raises(ConfigurationError, match=r"/nope.raw: HTTP 404 Not Found"):
        download(f"{base}/nope.raw", "a" * 64, tmp_path / "cache")


def test_publish_from_url(https, tmp_path: Path, write_manifest) -> None:
    base, root, _ = https
    src = gpt_raw(root / "disk.raw", 4 * MiB, [(2 * MiB, pattern(8192, 4))])
    path = tmp_path / "url.yaml"
    path.write_text(
        f"image:\n  name: web\n  version: '1'\n  source: {base}/disk.raw\n  sha256: {sha256_file(src)}\n"
        "targets:\n  - name: out\n    provider: local\n    path: out\n    formats: [raw]\n"
    )
    result = publish(path)
    assert result.exit_code == 0, result.targets[0].error
    assert (tmp_path / "out" / "web" / "1" / "disk.raw").read_bytes() == src.read_bytes()


def test_local_digest_is_cached_by_stat(tmp_path: Path, disk: Path) -> None:
    cache = DigestCache(tmp_path / "state")
    digest = sha256_file(disk)
    assert local_source(disk, digest, cache) == disk
    stored = json.loads(cache.path.read_text())
    assert [v["sha256"] for v in stored.values()] == [digest]
    cache.put(disk, "sha256", "f" * 64)  # a cached value is trusted while size/mtime/inode hold
    with pytest.raises(ChecksumMismatchError):
        local_source(disk, digest, cache)
    with disk.open("r+b") as f:
        f.write(b"x")
    with pytest.raises(ChecksumMismatchError) as err:
        local_source(disk, digest, cache)
    assert err.value.actual == sha256_file(disk)


def test_the_content_digest_follows_every_file_of_a_split_disk(tmp_path: Path, disk: Path) -> None:
    """A VMDK descriptor names its extents: changing an extent (not the descriptor) changes the digest."""
    vmdk = tmp_path / "split.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=twoGbMaxExtentFlat", disk, vmdk)
    cache = DigestCache(tmp_path / "state")
    with open_image(vmdk) as img:
        first = cache.content_digest(vmdk, "auto", img)
    extent = next(p for p in tmp_path.iterdir() if p.name.startswith("split-f"))
    with extent.open("r+b") as f:
        f.seek(3 * MiB + 100)
        f.write(b"changed")
    with open_image(vmdk) as img:
        assert cache.content_digest(vmdk, "auto", img) != first


def test_the_digest_stage_has_a_total_and_reaches_it(tmp_path: Path, disk: Path) -> None:
    """A large image's digest shows bytes out of a real total, not '0/?' for seconds."""
    stages: list[tuple[str, int | None]] = []
    done: list[int] = []

    class Recording:
        def stage(self, name: str, total: int | None = None, unit: str = "B") -> None:
            stages.append((name, total))

        def advance(self, amount: int) -> None:
            done.append(amount)

        def note(self, message: str) -> None:
            pass

    with open_image(disk) as img:
        DigestCache(tmp_path / "state").content_digest(disk, "auto", img, Recording())  # type: ignore[arg-type]
    ((name, total),) = stages
    assert name == "digest" and total is not None and total > 0
    assert sum(done) == total
