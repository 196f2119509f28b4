"""AWS upload: imgpub's EBS direct upload vs a naive uploader that sends every block.

Both run against one local moto server (tests/aws/moto_server.py, started here with
IMGPUB_MOTO_DISCARD_BLOCKS=1 so that moto validates every block's checksum but does not keep 8 GiB in
RAM), on the benchmark corpus's sparse raw disk:

  imgpub            EbsUploader: only 512 KiB blocks holding data, parallel, checksums, LINEAR aggregate
  naive (all)       every block of the disk, zeros included, same parallelism (as most tools do:
                    read the image front to back and PutSnapshotBlock each block)

    uv run --no-sync python benchmarks/aws_upload.py [--size-gib 8] [--data-gib 1] [--concurrency 32]

moto shares the 2 cores with the client, so absolute MiB/s say little about AWS; blocks and bytes
sent are exact, and the ratio of wall times is the point.

Measured 2026-11-27 on the 2-core machine (shared with other jobs, load 4-17), concurrency 32:

    corpus 8 GiB / 1 GiB data   imgpub  2081 blocks  1040 MiB   19.2 s
                                naive  16384 blocks  8192 MiB  178.8 s   (9.3x imgpub)
    corpus 1 GiB / 0.25 GiB     imgpub   569 blocks   284 MiB    6.6 s
                                naive   2048 blocks  1024 MiB   20.0 s   (3.0x imgpub)

imgpub sends a little more than the allocated bytes: the corpus's 64 extents are 4 KiB-aligned, so
each one straddles a 512 KiB block at both ends; the allocated all-zero extent is not sent.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests"))
from corpus import ensure_corpus  # noqa: E402

from aws.stack import running_moto  # noqa: E402
from imgpub.disk import DiskImage, open_image  # noqa: E402
from imgpub.journal import Journal  # noqa: E402
from imgpub.progress import NullProgress  # noqa: E402
from imgpub.retry import RetryPolicy  # noqa: E402
from imgpub_aws import AwsSettings  # noqa: E402
from imgpub_aws.clients import AwsClients  # noqa: E402
from imgpub_aws.ebs_upload import BLOCK_SIZE, EbsUploader, volume_gib  # noqa: E402
from imgpub_aws.errors import Caller  # noqa: E402

MiB = 1 << 20


def imgpub_upload(disk: DiskImage, settings: AwsSettings, concurrency: int) -> tuple[int, int]:
    up = EbsUploader(
        AwsClients(settings),
        Caller("bench", RetryPolicy()),
        settings.region,
        Journal(None),
        NullProgress(),
        concurrency=concurrency,
        digest=f"bench-{time.time_ns()}",
        description="imgpub benchmark",
        tags={},
    )
    result = up.upload(disk, volume_gib(disk.virtual_size))
    return result.blocks_sent, result.bytes_sent


def naive_upload(disk: DiskImage, settings: AwsSettings, concurrency: int) -> tuple[int, int]:
    """Every block, front to back, with the same thread count and per-thread clients."""
    clients = AwsClients(settings)
    ebs = clients.client("ebs")
    snap = ebs.start_snapshot(VolumeSize=volume_gib(disk.virtual_size), Timeout=60)["SnapshotId"]
    local = threading.local()
    digests: dict[int, bytes] = {}
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(concurrency * 2)

    def put(index: int, block: bytes) -> None:
        try:
            client = getattr(local, "ebs", None) or clients.new_client("ebs", settings.region)
            local.ebs = client
            digest = hashlib.sha256(block).digest()
            client.put_snapshot_block(
                SnapshotId=snap,
                BlockIndex=index,
                BlockData=block,
                DataLength=BLOCK_SIZE,
                Checksum=base64.b64encode(digest).decode(),
                ChecksumAlgorithm="SHA256",
            )
            with lock:
                digests[index] = digest
        finally:
            slots.release()

    blocks = -(-disk.virtual_size // BLOCK_SIZE)
    with ThreadPoolExecutor(concurrency) as pool:
        futures = []
        for index in range(blocks):
            block = disk.read(index * BLOCK_SIZE, BLOCK_SIZE).ljust(BLOCK_SIZE, b"\0")
            slots.acquire()
            futures.append(pool.submit(put, index, block))
        for fut in futures:
            fut.result()
    linear = hashlib.sha256(b"".join(digests[i] for i in sorted(digests))).digest()
    ebs.complete_snapshot(
        SnapshotId=snap,
        ChangedBlocksCount=len(digests),
        Checksum=base64.b64encode(linear).decode(),
        ChecksumAlgorithm="SHA256",
        ChecksumAggregationMethod="LINEAR",
    )
    return blocks, blocks * BLOCK_SIZE


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gib", type=int, default=8)
    parser.add_argument("--data-gib", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    path = ensure_corpus("raw", args.size_gib, args.data_gib)
    os.environ["IMGPUB_MOTO_DISCARD_BLOCKS"] = "1"
    with running_moto() as url:
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
        settings = AwsSettings(
            name="bench", region="us-east-1", endpoint_url=url, concurrency=args.concurrency
        )
        rows: list[tuple[str, int, int, float]] = []
        with open_image(path) as disk:
            print(
                f"{path}: virtual {disk.virtual_size / MiB:.0f} MiB, allocated "
                f"{disk.allocation.data_bytes / MiB:.0f} MiB, concurrency {args.concurrency}"
            )
            for name, fn in (("imgpub", imgpub_upload), ("naive (all blocks)", naive_upload)):
                start = time.perf_counter()
                blocks, sent = fn(disk, settings, args.concurrency)
                rows.append((name, blocks, sent, time.perf_counter() - start))
                urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset", method="POST")).close()
    base = rows[0]
    print(f"{'uploader':<20} {'blocks':>8} {'MiB sent':>10} {'wall s':>8} {'MiB/s':>8} {'x imgpub':>9}")
    for name, blocks, sent, wall in rows:
        print(
            f"{name:<20} {blocks:>8} {sent / MiB:>10.0f} {wall:>8.1f} {sent / MiB / wall:>8.1f} "
            f"{wall / base[3]:>8.2f}x"
        )


if __name__ == "__main__":
    main()
