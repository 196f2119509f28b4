"""GCP upload: imgpub's streamed tarball vs `tar --format=oldgnu -Sczf` + a plain upload of the file.

All rows go to one in-memory gcp-storage-emulator started here:

  imgpub stream     gce_tar_stream -> GcsUpload (resumable, 16 MiB chunks), no local file
  stream+compose    the same stream cut into parts uploaded by 4 threads, then compose
                    (the "parallel composite" alternative, measured to choose between them)
  tar + upload      tar --format=oldgnu -Sczf disk.tar.gz (gzip's default level 6, as users run it),
                    then Blob.upload_from_filename

    uv run --no-sync python benchmarks/gcp_upload.py [--size-gib 8] [--data-gib 1] [--level 1]
        [--chunks-mib 4,64] [--skip-compose]

The emulator keeps objects in RAM and appends each chunk by copying, so large objects slow it down
more than linearly (emulators.md §3); compare rows of the same run only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from corpus import ensure_corpus

from gcp.stack import running_gcs
from imgpub.disk import open_image
from imgpub.disk.write_gce import gce_tar_stream
from imgpub.journal import Journal
from imgpub.progress import NullProgress
from imgpub.retry import RetryPolicy
from imgpub_gcp import GcpSettings
from imgpub_gcp.clients import GcpClients
from imgpub_gcp.gcs_upload import CHUNK, GcsUpload

MiB = 1 << 20
PART = 64 * MiB
"""Part size of the composed variant (32 parts per compose call cover 2 GiB)."""


def streamed(
    clients: GcpClients, bucket: str, raw: Path, level: int, chunk: int = CHUNK
) -> tuple[float, int]:
    start = time.perf_counter()
    with open_image(raw) as img:
        upload = GcsUpload(clients, "bench", Journal(None), RetryPolicy(), NullProgress(), chunk)
        result = upload.run(
            bucket, "stream.tar.gz", {"imgpub-digest": "bench"}, lambda: gce_tar_stream(img, level=level)
        )
    return time.perf_counter() - start, result.size


def _parts(stream: Iterator[bytes]) -> Iterator[bytes]:
    buffer = bytearray()
    for piece in stream:
        buffer += piece
        while len(buffer) >= PART:
            yield bytes(buffer[:PART])
            del buffer[:PART]
    if buffer:
        yield bytes(buffer)


def composed(clients: GcpClients, bucket: str, raw: Path, level: int) -> tuple[float, int]:
    start = time.perf_counter()
    b = clients.storage.bucket(bucket)
    names: list[str] = []
    size = 0
    with open_image(raw) as img, ThreadPoolExecutor(4) as pool:
        futures = []
        for i, part in enumerate(_parts(gce_tar_stream(img, level=level))):
            name = f"parts/{i:05d}"
            names.append(name)
            size += len(part)
            futures.append(
                pool.submit(b.blob(name).upload_from_string, part, content_type="application/octet-stream")
            )
            while sum(not f.done() for f in futures) > 4:  # bound memory: at most ~5 parts in flight
                time.sleep(0.005)
        for f in futures:
            f.result()
    while len(names) > 1:  # compose takes at most 32 sources per call
        level_names = []
        for i in range(0, len(names), 32):
            target = b.blob(f"compose/{len(names)}-{i}" if len(names) > 32 else "composed.tar.gz")
            target.compose([b.blob(n) for n in names[i : i + 32]])
            level_names.append(target.name)
        names = level_names
    if names and names[0] != "composed.tar.gz":
        b.copy_blob(b.blob(names[0]), b, "composed.tar.gz")
    return time.perf_counter() - start, size


def tar_then_upload(clients: GcpClients, bucket: str, raw: Path) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory(dir=raw.parent) as tmp:
        archive = Path(tmp) / "disk.tar.gz"
        start = time.perf_counter()
        subprocess.run(
            [
                "tar",
                "--format=oldgnu",
                "-Sczf",
                str(archive),
                "-C",
                str(raw.parent),
                "--transform",
                "s/.*/disk.raw/",
                raw.name,
            ],
            check=True,
        )
        tar_seconds = time.perf_counter() - start
        blob = clients.storage.bucket(bucket).blob("tar.tar.gz", chunk_size=CHUNK)
        blob.upload_from_filename(str(archive), content_type="application/gzip")
        return tar_seconds, time.perf_counter() - start, archive.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=int, default=8)
    parser.add_argument("--data-gib", type=float, default=1.0)
    parser.add_argument("--level", type=int, default=1)
    parser.add_argument("--skip-compose", action="store_true")
    parser.add_argument(
        "--chunks-mib", default="", help="also time the stream with these chunk sizes (MiB, comma-separated)"
    )
    args = parser.parse_args()
    raw = ensure_corpus("raw", args.size_gib, args.data_gib)
    os.environ["IMGPUB_GCP_ANONYMOUS"] = "1"
    with running_gcs() as url:
        settings = GcpSettings(name="bench", project="imgpub-bench", bucket="bench", storage_endpoint=url)
        clients = GcpClients(settings, "bench")
        clients.storage.create_bucket("bench")
        rows: list[tuple[str, float, int, str]] = []
        seconds, size = streamed(clients, "bench", raw, args.level)
        rows.append(("imgpub stream", seconds, size, "no local file"))
        clients.storage.bucket("bench").delete_blob("stream.tar.gz")
        for mib in filter(None, args.chunks_mib.split(",")):
            seconds, size = streamed(clients, "bench", raw, args.level, int(mib) * MiB)
            rows.append((f"imgpub stream, {mib} MiB chunks", seconds, size, "no local file"))
            clients.storage.bucket("bench").delete_blob("stream.tar.gz")
        if not args.skip_compose:
            seconds, size = composed(clients, "bench", raw, args.level)
            rows.append(("stream+compose (4 threads)", seconds, size, f"{PART // MiB} MiB parts"))
            for blob in list(clients.storage.list_blobs("bench")):
                blob.delete()
        tar_seconds, seconds, size = tar_then_upload(clients, "bench", raw)
        rows.append(
            (
                "tar -Sczf + upload",
                seconds,
                size,
                f"tar {tar_seconds:.1f} s + upload {seconds - tar_seconds:.1f} s",
            )
        )
    base = rows[-1][1]
    print(
        f"corpus {raw.name}: {args.size_gib} GiB virtual, {args.data_gib:g} GiB data, gzip level {args.level}"
    )
    print(f"{'method':30} {'seconds':>8} {'MiB sent':>9} {'MiB/s':>7} {'vs tar':>7}  notes")
    for name, secs, size, note in rows:
        print(f"{name:30} {secs:8.2f} {size / MiB:9.1f} {size / MiB / secs:7.1f} {base / secs:6.2f}x  {note}")


if __name__ == "__main__":
    main()
