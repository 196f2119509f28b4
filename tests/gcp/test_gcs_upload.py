"""The resumable upload against gcp-storage-emulator: chunks, resume, restarts, verification."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Callable, Iterator
from typing import Any

import google_crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gcp.fault_proxy import FaultProxy, Rule
from gcp.stack import RecordingRetry
from imgpub.journal import Journal
from imgpub.progress import RecordingProgress
from imgpub.retry import FAST
from imgpub_gcp import GcpSettings
from imgpub_gcp.clients import GcpClients
from imgpub_gcp.gcs_stream import split
from imgpub_gcp.gcs_upload import JOURNAL_KEY, QUANTUM, UPLOADER, UPLOADER_KEY, GcsUpload

DATA = random.Random(5).randbytes(6 * QUANTUM + 12345)
META = {"imgpub-digest": "abc123"}


def pieces(data: bytes, size: int = 100_000, fail_after: int | None = None) -> Callable[[], Iterator[bytes]]:
    def stream() -> Iterator[bytes]:
        for at in range(0, len(data), size):
            if fail_after is not None and at >= fail_after:
                raise OSError("simulated crash")
            yield data[at : at + size]

    return stream


def uploader(settings: GcpSettings, journal: Journal, progress: RecordingProgress | None = None) -> GcsUpload:
    return GcsUpload(
        GcpClients(settings, "gce"), "gce", journal, FAST, progress or RecordingProgress(), QUANTUM
    )


@settings(deadline=None)  # a loaded CI machine must not turn into a failure
@given(st.lists(st.binary(max_size=50), max_size=20), st.sets(st.integers(0, 1200)))
def test_split_keeps_bytes_and_cuts_at_every_mark(chunks: list[bytes], marks: set[int]) -> None:
    out = list(split(chunks, marks))
    assert b"".join(out) == b"".join(chunks)
    ends, position = set(), 0
    for piece in out:
        assert piece
        position += len(piece)
        ends.add(position)
    assert {m for m in marks if 0 < m < position} <= ends


def test_upload_matches_checksums_and_carries_metadata(
    make_settings: Callable[..., GcpSettings], journal: Journal, storage_client: Any
) -> None:
    settings = make_settings()
    result = uploader(settings, journal).run(settings.bucket, "x.tar.gz", META, pieces(DATA))
    blob = storage_client.bucket(settings.bucket).get_blob("x.tar.gz")
    assert blob.download_as_bytes() == DATA
    assert blob.metadata == {**META, UPLOADER: journal.get(UPLOADER_KEY)}  # who may delete it
    assert result.crc32c == blob.crc32c == base64.b64encode(google_crc32c.Checksum(DATA).digest()).decode()
    assert result.md5 == base64.b64encode(hashlib.md5(DATA).digest()).decode()
    assert result.sent == result.size == len(DATA) and not result.reused

    again = uploader(settings, journal).run(settings.bucket, "x.tar.gz", META, pieces(b"never read"))
    assert again.reused and again.sent == 0 and again.crc32c == result.crc32c


def test_a_changed_stream_restarts_instead_of_mixing_bytes(
    make_settings: Callable[..., GcpSettings], journal: Journal, storage_client: Any
) -> None:
    settings = make_settings()
    with pytest.raises(OSError):
        uploader(settings, journal).run(
            settings.bucket, "y.tar.gz", META, pieces(DATA, fail_after=4 * QUANTUM)
        )
    assert journal.get(JOURNAL_KEY)["confirmed"] == 4 * QUANTUM
    changed = b"!" + DATA[1:]
    progress = RecordingProgress()

    result = uploader(settings, journal, progress).run(settings.bucket, "y.tar.gz", META, pieces(changed))

    assert any("starting the upload again" in n for n in progress.notes)
    assert result.resumed_from == 0 and result.sent == len(changed)
    assert storage_client.bucket(settings.bucket).get_blob("y.tar.gz").download_as_bytes() == changed


def test_an_expired_session_starts_a_new_upload(
    make_settings: Callable[..., GcpSettings], journal: Journal, storage_client: Any, gcs: FaultProxy
) -> None:
    settings = make_settings()
    journal.set(
        JOURNAL_KEY,
        {
            "object": "z.tar.gz",
            "confirmed": QUANTUM,
            "crc32c": "AAAAAA==",
            "session": f"{gcs.url}/upload/storage/v1/b/{settings.bucket}/o"
            "?uploadType=resumable&upload_id=gone",
        },
    )
    result = uploader(settings, journal).run(settings.bucket, "z.tar.gz", META, pieces(DATA))
    assert result.resumed_from == 0 and result.sent == len(DATA)
    assert storage_client.bucket(settings.bucket).get_blob("z.tar.gz").download_as_bytes() == DATA


def test_chunk_size_must_be_a_multiple_of_256k(
    make_settings: Callable[..., GcpSettings], journal: Journal
) -> None:
    with pytest.raises(ValueError, match="multiple of 262144"):
        GcsUpload(GcpClients(make_settings(), "gce"), "gce", journal, FAST, RecordingProgress(), QUANTUM + 1)


@pytest.fixture
def proxy(gcs_endpoint: str) -> Iterator[FaultProxy]:
    started = FaultProxy(gcs_endpoint).start()
    yield started
    started.stop()


def test_a_chunk_whose_reply_was_lost_is_not_sent_again(
    make_settings: Callable[..., GcpSettings], journal: Journal, storage_client: Any, proxy: FaultProxy
) -> None:
    settings = make_settings(storage_endpoint=proxy.url)
    proxy.rules.append(Rule("PUT", "upload_id=", "lose-reply", times=1, skip=1))

    result = uploader(settings, journal).run(settings.bucket, "lost.tar.gz", META, pieces(DATA))

    assert result.sent == len(DATA)  # GCS had the chunk; the status query said so
    ranges = [r for method, _, r in proxy.seen if method == "PUT"]
    assert ranges[:4] == ["bytes 0-262143/*", "bytes 262144-524287/*", "bytes */*", "bytes 524288-786431/*"]
    assert storage_client.bucket(settings.bucket).get_blob("lost.tar.gz").download_as_bytes() == DATA


def test_a_refused_chunk_is_sent_again_from_the_persisted_offset(
    make_settings: Callable[..., GcpSettings], journal: Journal, storage_client: Any, proxy: FaultProxy
) -> None:
    settings = make_settings(storage_endpoint=proxy.url)
    proxy.rules.append(Rule("PUT", "upload_id=", "refuse", times=2, skip=2))

    result = uploader(settings, journal).run(settings.bucket, "again.tar.gz", META, pieces(DATA))

    ranges = [r for method, _, r in proxy.seen if method == "PUT"]
    assert ranges.count(f"bytes {2 * QUANTUM}-{3 * QUANTUM - 1}/*") == 2  # refused once, then sent
    assert result.sent == len(DATA) + QUANTUM
    assert storage_client.bucket(settings.bucket).get_blob("again.tar.gz").download_as_bytes() == DATA


def test_a_lost_reply_to_the_last_chunk_does_not_restart_the_upload(
    make_settings: Callable[..., GcpSettings], journal: Journal, storage_client: Any, proxy: FaultProxy
) -> None:
    settings = make_settings(storage_endpoint=proxy.url)
    proxy.rules.append(
        Rule("PUT", "upload_id=", "lose-reply", times=1, skip=6)
    )  # 6 whole chunks, then the end
    progress = RecordingProgress()

    result = uploader(settings, journal, progress).run(settings.bucket, "end.tar.gz", META, pieces(DATA))

    assert result.sent == len(DATA) and progress.notes == []
    ranges = [r for method, _, r in proxy.seen if method == "PUT"]
    assert ranges[-2:] == [f"bytes {6 * QUANTUM}-{len(DATA) - 1}/{len(DATA)}", "bytes */*"]
    assert storage_client.bucket(settings.bucket).get_blob("end.tar.gz").download_as_bytes() == DATA


def test_throttled_chunks_are_sent_again_after_the_time_gcs_asks_for(
    make_settings: Callable[..., GcpSettings], journal: Journal, storage_client: Any, proxy: FaultProxy
) -> None:
    settings = make_settings(storage_endpoint=proxy.url)
    proxy.rules.append(
        Rule("PUT", "upload_id=", "refuse", skip=1, status=429, reason="rateLimitExceeded", retry_after="6")
    )
    proxy.rules.append(Rule("PUT", "upload_id=", "refuse", skip=2, status=503, retry_after="1"))
    retry = RecordingRetry(attempts=4, initial_wait=20.0, max_wait=60.0)
    upload = GcsUpload(GcpClients(settings, "gce"), "gce", journal, retry, RecordingProgress(), QUANTUM)

    upload.run(settings.bucket, "slow.tar.gz", META, pieces(DATA))

    assert retry.waits == [6.0, 1.0]
    assert storage_client.bucket(settings.bucket).get_blob("slow.tar.gz").download_as_bytes() == DATA
