"""A journalled resumable session that is gone or inconsistent is replaced, not reused (issue 10, item 5),
and a session's upload_id (a bearer credential for the upload) never reaches a message (item 10)."""

from __future__ import annotations

import json
import random
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import imgpub
from fakes.gce import FakeGce
from gcp.fault_proxy import FaultProxy, Rule
from gcp.stack import PROJECT, running_gcs
from imgpub.errors import CloudError
from imgpub.journal import Journal
from imgpub.progress import RecordingProgress
from imgpub.report import build_report, markdown_summary, write_github
from imgpub.retry import FAST, RetryPolicy
from imgpub_gcp import GcpSettings
from imgpub_gcp.clients import GcpClients
from imgpub_gcp.errors import redact
from imgpub_gcp.gcs_upload import JOURNAL_KEY, QUANTUM, GcsUpload

DATA = random.Random(11).randbytes(6 * QUANTUM + 12345)
META = {"imgpub-digest": "abc123"}
SettingsFactory = Callable[..., GcpSettings]


def pieces(data: bytes, fail_after: int | None = None) -> Callable[[], Iterator[bytes]]:
    def stream() -> Iterator[bytes]:
        for at in range(0, len(data), 100_000):
            if fail_after is not None and at >= fail_after:
                raise OSError("simulated crash")
            yield data[at : at + 100_000]

    return stream


def uploader(
    settings: GcpSettings, journal: Journal, progress: RecordingProgress, retry: RetryPolicy = FAST
) -> GcsUpload:
    return GcsUpload(GcpClients(settings, "gce"), "gce", journal, retry, progress, QUANTUM)


def upload_id(session: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(session).query)["upload_id"][0]


def crashed_upload(settings: GcpSettings, journal: Journal, name: str) -> str:
    """A first run stopped after 4 chunks; the upload_id its journal holds."""
    with pytest.raises(OSError, match="simulated crash"):
        uploader(settings, journal, RecordingProgress()).run(
            settings.bucket, name, META, pieces(DATA, fail_after=4 * QUANTUM + 1)
        )
    state = journal.get(JOURNAL_KEY)
    assert state["confirmed"] == 4 * QUANTUM
    return upload_id(state["session"])


@pytest.mark.parametrize("status", [404, 410, 400])
def test_a_session_the_server_forgot_between_runs_is_replaced(
    make_settings: SettingsFactory, journal: Journal, gcs: FaultProxy, storage_client: Any, status: int
) -> None:
    """404/410: GCS forgot (expired) the session; 400: GCS refuses the upload_id. Each is 'gone'."""
    settings = make_settings()
    dead = crashed_upload(settings, journal, "forgot.tar.gz")
    gcs.forget(dead, status)
    progress = RecordingProgress()

    result = uploader(settings, Journal(journal.path), progress).run(
        settings.bucket, "forgot.tar.gz", META, pieces(DATA)
    )

    assert result.resumed_from == 0 and result.sent == len(DATA)
    assert any(f"GCS answered {status}" in n and "starting again" in n for n in progress.notes)
    assert storage_client.bucket(settings.bucket).get_blob("forgot.tar.gz").download_as_bytes() == DATA
    assert gcs.upload_ids()[-1] != dead and len(gcs.upload_ids()) == 2
    assert Journal(journal.path).get(JOURNAL_KEY)["done"]


def test_a_restarted_storage_server_forgets_the_session(
    make_settings: SettingsFactory, journal: Journal, tmp_path: Path
) -> None:
    """The in-memory gcp-storage-emulator restarted between the runs: the session (and the bucket) are
    gone; the bucket is made again, the upload starts a new session."""
    from fakes.process import free_port

    port = free_port()
    with running_gcs(port) as url:
        proxy = FaultProxy(url).start()
        _bucket(url, "restarted")
        settings = make_settings(storage_endpoint=proxy.url, bucket="restarted")
        dead = crashed_upload(settings, journal, "restart.tar.gz")
    with running_gcs(port) as url:
        client = _bucket(url, "restarted")
        progress = RecordingProgress()
        result = uploader(settings, Journal(journal.path), progress).run(
            "restarted", "restart.tar.gz", META, pieces(DATA)
        )
        assert client.bucket("restarted").get_blob("restart.tar.gz").download_as_bytes() == DATA
        proxy.stop()
    assert result.resumed_from == 0 and any("GCS answered 404" in n for n in progress.notes)
    assert dead not in Journal(journal.path).get(JOURNAL_KEY).get("session", "")


def _bucket(url: str, name: str) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
    )
    client.create_bucket(name)
    return client


@pytest.mark.parametrize("status", [404, 410])
def test_a_session_that_dies_during_the_upload_is_replaced_in_the_same_run(
    make_settings: SettingsFactory, journal: Journal, gcs: FaultProxy, storage_client: Any, status: int
) -> None:
    settings = make_settings()
    progress = RecordingProgress()

    def forget_after_two_chunks(method: str, path: str) -> None:
        ids = gcs.upload_ids()
        chunks = [p for m, p, r in gcs.seen if m == "PUT" and "upload_id=" in p]
        if len(ids) == 1 and len(chunks) == 3:
            gcs.forget(ids[0], status)

    gcs.on_request = forget_after_two_chunks

    result = uploader(settings, journal, progress).run(settings.bucket, "dies.tar.gz", META, pieces(DATA))

    assert result.resumed_from == 0 and len(gcs.upload_ids()) == 2
    assert any(f"GCS answered {status}" in n for n in progress.notes)
    assert storage_client.bucket(settings.bucket).get_blob("dies.tar.gz").download_as_bytes() == DATA


def test_a_session_that_holds_fewer_bytes_than_it_confirmed_is_replaced(
    make_settings: SettingsFactory, journal: Journal, gcs: FaultProxy, storage_client: Any
) -> None:
    settings = make_settings()
    crashed_upload(settings, journal, "fewer.tar.gz")
    journal.set(JOURNAL_KEY, {**journal.get(JOURNAL_KEY), "confirmed": 5 * QUANTUM})  # GCS said 5 chunks
    progress = RecordingProgress()

    result = uploader(settings, journal, progress).run(settings.bucket, "fewer.tar.gz", META, pieces(DATA))

    assert result.resumed_from == 0 and len(gcs.upload_ids()) == 2
    assert any("holds 1,048,576 bytes but had confirmed 1,310,720" in n for n in progress.notes)
    assert storage_client.bucket(settings.bucket).get_blob("fewer.tar.gz").download_as_bytes() == DATA


def test_a_stream_whose_total_differs_from_the_declared_one_starts_a_new_session(
    make_settings: SettingsFactory, journal: Journal, gcs: FaultProxy, storage_client: Any
) -> None:
    """The last chunk of the first run reached GCS only in part (its total declared); the next run's
    stream is longer. GCS holds a session to its declared total (400 otherwise): the run starts anew
    instead of failing the same way on every re-run."""
    settings = make_settings()
    gcs.rules.append(Rule("PUT", "upload_id=", "partial", skip=6, keep=4096))
    with pytest.raises(CloudError, match="upload chunk failed"):
        uploader(settings, journal, RecordingProgress(), RetryPolicy(attempts=1)).run(
            settings.bucket, "total.tar.gz", META, pieces(DATA)
        )
    assert journal.get(JOURNAL_KEY)["total"] == len(DATA)
    longer = DATA + b"more bytes"
    progress = RecordingProgress()

    result = uploader(settings, Journal(journal.path), progress).run(
        settings.bucket, "total.tar.gz", META, pieces(longer)
    )

    assert result.size == len(longer) and len(gcs.upload_ids()) == 2
    assert any("the session was told" in n for n in progress.notes)
    assert storage_client.bucket(settings.bucket).get_blob("total.tar.gz").download_as_bytes() == longer
    assert gcs.rejected == []


def test_a_new_session_that_fails_too_is_dropped_from_the_journal(
    make_settings: SettingsFactory, journal: Journal, gcs: FaultProxy
) -> None:
    settings = make_settings()
    gcs.rules.append(Rule("PUT", "upload_id=", "refuse", times=2, status=410))

    with pytest.raises(CloudError, match="a new session failed too") as caught:
        uploader(settings, journal, RecordingProgress()).run(
            settings.bucket, "twice.tar.gz", META, pieces(DATA)
        )

    assert caught.value.retryable and "session" not in journal.get(JOURNAL_KEY)


# -- upload_id never in a message ----------------------------------------------------------------


def test_redact_hides_every_upload_id() -> None:
    text = (
        "PUT http://h/upload/storage/v1/b/b/o?uploadType=resumable&upload_id=ADPycd-x_1: no; "
        "url: /upload?upload_id=abc%2Fdef&x=1 (upload_id%3Dq9)"
    )
    assert redact(text) == (
        "PUT http://h/upload/storage/v1/b/b/o?uploadType=resumable&upload_id=<redacted>: no; "
        "url: /upload?upload_id=<redacted>&x=1 (upload_id%3D<redacted>)"
    )


@pytest.mark.parametrize(
    "rule",
    [
        Rule("PUT", "upload_id=", "refuse", times=1, status=403, reason="forbidden"),
        Rule("PUT", "upload_id=", "refuse", times=99, status=503),
    ],
    ids=["403", "503-until-the-retries-give-up"],
)
def test_a_failing_upload_names_no_upload_id_in_its_error_report_or_summary(
    tmp_path: Path,
    raw_path: Path,
    gce: FakeGce,
    bucket: str,
    gcs: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
    rule: Rule,
) -> None:
    monkeypatch.setenv("IMGPUB_GCP_ANONYMOUS", "1")
    (tmp_path / "disk.raw").symlink_to(raw_path)
    path = tmp_path / "imgpub.yaml"
    path.write_text(
        "image: {name: leak, version: 1.0.0, source: disk.raw, format: raw, boot: uefi}\n"
        "targets:\n"
        f"  - {{name: gce, provider: gcp, project: {PROJECT}, bucket: {bucket}, "
        f"storage_endpoint: '{gcs.url}', compute_endpoint: '{gce.url}'}}\n"
    )
    gcs.rules.append(rule)

    result = imgpub.publish(path, retry=FAST, state_dir=tmp_path / "state")

    ids = gcs.upload_ids()
    assert not result.ok and ids
    error = result.targets[0].error or ""
    report = build_report(result)
    summary = tmp_path / "summary.md"
    write_github(report, {"GITHUB_STEP_SUMMARY": str(summary)})
    texts = {"error": error, "report": json.dumps(report), "summary": summary.read_text()}
    texts["markdown"] = markdown_summary(report)
    assert "upload chunk failed" in error or "query upload status failed" in error
    secrets = [form for i in ids for form in (i, urllib.parse.quote_plus(i), urllib.parse.quote(i, safe=""))]
    for where, text in texts.items():
        assert not any(secret in text for secret in secrets), (where, text)
