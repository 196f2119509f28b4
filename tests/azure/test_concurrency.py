"""Two publishes of one manifest at once, from two state dirs (two CI jobs on two machines): only
the cloud side keeps them apart. Neither may write, revoke or delete what the other is using;
the one that finds the work done adopts it and says 'published by another run'.

The interleavings are forced: the storage proxy holds the lease holder's first page, the fake ARM
makes both runs' PUTs of one resource arrive together."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.storage.blob import BlobClient, BlobLeaseClient, ContainerClient

from fakes.azurite import API_VERSION, connection_string
from imgpub.errors import CloudError
from imgpub.identity import TAG_DIGEST
from imgpub_azure.publisher import Publisher

IMAGE = r"/images/golden-1\.2\.3$"
VERSION = r"/galleries/g1/images/golden/versions/1\.2\.3$"
DISK_UPLOAD = {"upload": "managed-disk", "storage_account": None, "blob_endpoint": None}


def _wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _blobs(stack) -> list[str]:
    client = ContainerClient.from_connection_string(
        connection_string(stack.proxy.url), stack.container, api_version=API_VERSION
    )
    return [b.name for b in client.list_blobs()]


def _one_image_and_version(stack, digest: str) -> None:
    for rest in ("images/golden-1.2.3", "galleries/g1/images/golden/versions/1.2.3"):
        res = stack.arm.get(rest)
        assert res["properties"]["provisioningState"] == "Succeeded" and res["tags"][TAG_DIGEST] == digest
    assert [k for k in stack.arm.resources if "/images/" in k and "/galleries/" not in k] == [
        k for k in stack.arm.resources if k.endswith("/images/golden-1.2.3")
    ]
    assert not [k for k in stack.arm.resources if "/disks/" in k], "no upload disk is left"


def _adopted(published) -> list[str]:
    return [w for w in published.warnings if "published by another run" in w]


def test_the_second_run_waits_for_the_blob_the_first_one_holds_then_adopts(stack, disk, info):
    settings, image = stack.settings(gallery={"name": "g1"}), info()
    ctx = {name: stack.context(settings, image, state=name) for name in ("a", "b")}
    gate = threading.Event()
    stack.proxy.hold("PUT", "comp=page", gate)  # the lease holder stops at its first page

    def waiting() -> bool:
        return any("another run holds the lease" in n for c in ctx.values() for n in c.progress.notes)

    with ThreadPoolExecutor(2) as pool:
        runs = {
            name: pool.submit(stack.provider().publish, image, settings, disk, c) for name, c in ctx.items()
        }
        # the other run waits for the lease (or, unguarded, publishes and removes the blob first)
        _wait_for(lambda: waiting() or any(r.done() for r in runs.values()), "the other run")
        gate.set()
        results = {name: run.result(timeout=120) for name, run in runs.items()}

    (waiter,) = [n for n, c in ctx.items() if any("another run holds" in m for m in c.progress.notes)]
    (holder,) = set(ctx) - {waiter}
    assert _adopted(results[waiter]) and not _adopted(results[holder])
    assert results[holder].changed and not results[waiter].changed
    _one_image_and_version(stack, ctx["a"].digest)
    assert stack.arm.count("PUT", IMAGE) == stack.arm.count("PUT", VERSION) == 1
    pages = stack.proxy.pages()
    assert len(pages) == len({p.range for p in pages}), "no page went up twice"
    assert _blobs(stack) == []
    for c in ctx.values():
        assert c.journal.get("upload") is None


@pytest.mark.parametrize("busy", ["AnotherOperationInProgress", "Conflict"])
def test_two_runs_that_create_the_image_and_version_at_once_end_with_one_of_each(stack, disk, info, busy):
    """Each run uploads into its own disk; their image PUTs and version PUTs arrive together: one
    creates, the other is refused (409, with ARM's retryable code or a plain Conflict), looks, waits,
    and adopts it."""
    stack.arm.busy_code = busy
    settings, image = stack.settings(gallery={"name": "g1"}, **DISK_UPLOAD), info()
    ctx = {name: stack.context(settings, image, state=name) for name in ("a", "b")}
    stack.arm.race("PUT", IMAGE)
    stack.arm.race("PUT", VERSION)

    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(stack.provider().publish, image, settings, disk, c) for c in ctx.values()]
        results = [run.result(timeout=120) for run in runs]

    _one_image_and_version(stack, ctx["a"].digest)
    assert stack.arm.count("PUT", IMAGE) == stack.arm.count("PUT", VERSION) == 2
    refused = [(m, p) for m, p, code in stack.arm.refusals if code == busy]
    assert {p.rsplit("/", 1)[1] for _, p in refused} >= {"golden-1.2.3", "1.2.3"}
    assert any(_adopted(r) for r in results)
    disks = {stack.upload_disk(settings, state=name) for name in ctx}
    assert len(disks) == 2, "each run has its own upload disk"
    deleted = [p.rsplit("/", 1)[1] for m, p in stack.arm.requests if m == "DELETE" and "/disks/" in p]
    assert sorted(deleted) == sorted(disks), "each run deleted its own disk, once"


def test_a_replace_planned_before_another_run_replaced_leaves_the_new_image_alone(stack, disk, info):
    """Both runs planned `--replace` of an old image; the first replaced it; the second, with its
    stale plan, must not delete the image the first one just published."""
    settings, provider = stack.settings(), stack.provider()
    old, new = info(content_digest="one"), info(content_digest="two")
    provider.publish(old, settings, disk, stack.context(settings, old, state="old"))
    late = stack.context(settings, new, state="b", replace=True)
    stale = provider.plan(new, settings, late)
    assert ("replace", "image golden-1.2.3") in [(a.kind, a.resource) for a in stale.actions]

    first = stack.context(settings, new, state="a", replace=True)
    provider.publish(new, settings, disk, first)
    Publisher(new, settings, late, stale, *provider._parts(settings, late)).run(disk)

    assert stack.arm.count("DELETE", IMAGE) == 1, "only the old image was deleted"
    assert stack.arm.get("images/golden-1.2.3")["tags"][TAG_DIGEST] == first.digest
    assert any("changed meanwhile" in n for n in late.progress.notes)
    assert _blobs(stack) == []


def test_a_run_takes_over_the_blob_another_run_let_go_of_and_sends_only_what_is_missing(stack, disk, info):
    """A failed (its lease released) or died (its lease ran out, broken here): another state dir's
    run takes the blob over, resumes it from its page list and removes it at the end; the first
    run's re-run then finds the work done."""
    settings, image = stack.settings(concurrency=1), info()
    stack.proxy.fail("PUT", "comp=page", 500, times=1000, after=2, code="InternalError")
    first = stack.context(settings, image, state="a")
    with pytest.raises(CloudError, match=r"page\(s\) failed"):
        stack.provider().publish(image, settings, disk, first)
    sent = {p.range for p in stack.proxy.pages()}
    assert len(sent) == 2
    stack.proxy.rules.clear()
    stack.proxy.requests.clear()

    second = stack.context(settings, image, state="b")
    stack.provider().publish(image, settings, disk, second)

    resent = {p.range for p in stack.proxy.pages()}
    assert resent and not (sent & resent), "the pages the first run sent were not sent again"
    assert _blobs(stack) == []
    stack.proxy.requests.clear()
    again = stack.context(settings, image, state="a")
    stack.provider().publish(image, settings, disk, again)
    assert stack.proxy.pages() == [] and again.journal.get("upload") is None


def test_a_dead_runs_lease_runs_out_and_another_run_takes_the_blob_over(stack, disk, info):
    settings, image = stack.settings(), info()
    blob = BlobClient.from_connection_string(
        connection_string(stack.proxy.url), stack.container, "golden-1.2.3.vhd", api_version=API_VERSION
    )
    blob.create_page_blob(8 * 1024 * 1024)
    blob.acquire_lease(lease_duration=60, lease_id="00000000-0000-0000-0000-00000000dead")
    ctx = stack.context(settings, image, state="b")

    def waiting() -> bool:
        return any("another run holds the lease" in n for n in ctx.progress.notes)

    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(stack.provider().publish, image, settings, disk, ctx)
        _wait_for(waiting, "the run to wait for the dead run's lease")
        BlobLeaseClient(blob, lease_id="00000000-0000-0000-0000-00000000dead").break_lease(0)  # runs out
        run.result(timeout=60)

    assert any("taking it over" in n for n in ctx.progress.notes)
    assert stack.arm.get("images/golden-1.2.3")["tags"][TAG_DIGEST] == ctx.digest
    assert _blobs(stack) == []
