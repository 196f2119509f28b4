"""Azure upload: imgpub's sparse page-blob upload vs `qemu-img convert -O vpc` + a full upload.

Both go to the same in-memory Azurite (started here), with the same concurrency and 4 MiB pages:

  imgpub     PageUploader: only the non-zero pages of the raw corpus, straight from the source
  qemu+full  qemu-img convert -O vpc -o subformat=fixed,force_size=on, then every 4 MiB page of the
             .vhd uploaded (what a naive uploader does)

    uv run --no-sync python benchmarks/azure_upload.py [--size-gib 8] [--data-gib 1] [--concurrency 8]

Needs Azurite ($IMGPUB_AZURITE, default .cache/azurite/node_modules/.bin/azurite-blob) and qemu-img.
Memory: Azurite keeps every written page in RAM, so the full upload needs about size-gib of RAM.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from azure.storage.blob import BlobClient, BlobServiceClient

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from corpus import ensure_corpus

from fakes.azurite import API_VERSION, connection_string, running_azurite
from imgpub.disk import open_image
from imgpub.retry import RetryPolicy
from imgpub_azure.page_upload import MAX_PAGE, PageUploader

MiB = 1 << 20


def blob(conn: str, name: str) -> BlobClient:
    return BlobClient.from_connection_string(conn, "bench", name, api_version=API_VERSION, retry_total=0)


def run_imgpub(conn: str, raw: Path, concurrency: int) -> dict[str, float]:
    start = time.perf_counter()
    with open_image(raw) as img:
        stats = PageUploader(
            blob(conn, "imgpub.vhd"), target="bench", retry=RetryPolicy(), concurrency=concurrency
        ).upload(img, "bench-digest")
    return {
        "pages": stats.pages_sent,
        "bytes": stats.bytes_sent,
        "convert": 0.0,
        "upload": time.perf_counter() - start,
    }


def run_full(conn: str, raw: Path, concurrency: int, work: Path) -> dict[str, float]:
    vhd = work / "full.vhd"
    start = time.perf_counter()
    subprocess.run(
        [
            "qemu-img",
            "convert",
            "-f",
            "raw",
            "-O",
            "vpc",
            "-o",
            "subformat=fixed,force_size=on",
            str(raw),
            str(vhd),
        ],
        check=True,
    )
    converted = time.perf_counter()
    size = vhd.stat().st_size
    client = blob(conn, "full.vhd")
    client.create_page_blob(size)
    fd = os.open(vhd, os.O_RDONLY)

    def put(offset: int) -> int:
        length = min(MAX_PAGE, size - offset)
        client.upload_page(os.pread(fd, length, offset), offset, length, validate_content=True)
        return length

    with ThreadPoolExecutor(concurrency) as pool:
        sent = list(pool.map(put, range(0, size, MAX_PAGE)))
    os.close(fd)
    vhd.unlink()
    return {
        "pages": len(sent),
        "bytes": sum(sent),
        "convert": converted - start,
        "upload": time.perf_counter() - converted,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gib", type=int, default=8)
    parser.add_argument("--data-gib", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    raw = ensure_corpus("raw", args.size_gib, args.data_gib)
    with running_azurite(int((args.size_gib + args.data_gib) * 1024) + 512) as port:
        conn = connection_string(f"http://127.0.0.1:{port}")
        BlobServiceClient.from_connection_string(conn, api_version=API_VERSION).create_container("bench")
        with tempfile.TemporaryDirectory(dir=raw.parent) as tmp:
            results = {
                "imgpub sparse": run_imgpub(conn, raw, args.concurrency),
                "qemu-img + full": run_full(conn, raw, args.concurrency, Path(tmp)),
            }
    base = results["imgpub sparse"]
    print(
        f"corpus {raw.name}: {args.size_gib} GiB virtual, {args.data_gib:g} GiB data, "
        f"concurrency {args.concurrency}, Azurite in memory"
    )
    print(
        f"{'method':16} {'pages':>7} {'MiB sent':>10} {'convert s':>10} {'upload s':>9} {'total s':>8} "
        f"{'x bytes':>8} {'x time':>7}"
    )
    for name, r in results.items():
        total = r["convert"] + r["upload"]
        ratio_bytes, ratio_time = r["bytes"] / base["bytes"], total / (base["convert"] + base["upload"])
        print(
            f"{name:16} {int(r['pages']):7d} {r['bytes'] / MiB:10.1f} {r['convert']:10.2f} "
            f"{r['upload']:9.2f} {total:8.2f} {ratio_bytes:8.2f} {ratio_time:7.2f}"
        )


if __name__ == "__main__":
    main()
