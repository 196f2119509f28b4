"""Issue 10's fault matrix for Azure, kept as a permanent test.

* The chaos proxy (fakes/chaos.py) in front of the fake ARM (HTTPS, with a certificate from the
  fake's CA; LRO polls go through it too) and in front of Azurite (before the strict storage proxy;
  the upload disks' SAS URLs point at it): 503/429 with empty, HTML and cloud-shaped bodies,
  connection resets, slow answers and replies lost after the server acted, one kind at a time, then
  at a seeded random rate.
* kill -9 of `imgpub publish` at seeded random moments, then a re-run from the same state dir.
* Two `imgpub publish` of one manifest at once, with separate state dirs.

Each trial asserts: the run, or its re-run, succeeds; no page went up twice beyond the pages in
flight when it stopped and the replies that were lost; no imgpub-tagged resource or blob is left that
the final state does not list. IMGPUB_FAULTS_LONG=<n> runs n random and n kill trials instead of a
handful.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from collections import Counter

import pytest

from azure.conftest import Chaos, container_blobs
from fakes.arm import FakeArm
from fakes.azurite import ACCOUNT, StorageProxy
from fakes.chaos import Fault
from imgpub.errors import ImgpubError
from imgpub.identity import TAG_DIGEST
from imgpub_azure.page_upload import IN_FLIGHT_PER_WORKER

LONG = int(os.environ.get("IMGPUB_FAULTS_LONG") or 0)
SEED = 20261129
CONCURRENCY = 2
IN_FLIGHT = CONCURRENCY * IN_FLIGHT_PER_WORKER
"""Pages a stopped run may have had on the wire (sent, unanswered): a re-run may send them again."""
ARM_ERROR = json.dumps({"error": {"code": "ServerBusy", "message": "The server is busy."}}).encode()
STORAGE_ERROR = (
    b"<?xml version='1.0'?><Error><Code>ServerBusy</Code><Message>The server is busy.</Message></Error>"
)
GALLERY = {"gallery": {"name": "g1"}}
DISK_UPLOAD = {"upload": "managed-disk", "storage_account": None, "blob_endpoint": None}


def leftovers(arm: FakeArm, listed: set[str], blobs: list[str]) -> list[str]:
    """imgpub-tagged resources (those that carry a digest: images, versions, upload disks) and
    blobs that the final state does not list."""
    tagged = [k for k, r in arm.resources.items() if TAG_DIGEST in (r.get("tags") or {})]
    return [k for k in tagged if k not in {i.lower() for i in listed}] + blobs


def resent(proxy: StorageProxy) -> int:
    """Put Pages that reached Azurite for a range of a blob it had already received."""
    counts = Counter((p.path, p.range) for p in proxy.pages())
    return sum(n - 1 for n in counts.values())


def _settings(stack, chaos: Chaos, overrides: dict):
    values = {
        "resource_manager_endpoint": chaos.arm.url,
        "blob_endpoint": f"{chaos.storage.url}/{ACCOUNT}",
        "concurrency": CONCURRENCY,
        **GALLERY,
        **overrides,
    }
    return stack.settings(**values)


def _publish_until_it_holds(stack, chaos: Chaos, disk, info, overrides: dict) -> tuple[bool, int]:
    """Publish through the faults; if that fails, publish again without them. Returns whether the
    first run held by itself, and how many requests the faults broke."""
    settings, image = _settings(stack, chaos, overrides), info()
    ctx = stack.context(settings, image)
    provider = stack.provider()
    try:
        provider.publish(image, settings, disk, ctx)
        held = True
    except ImgpubError:
        held = False
    broken, lost = len(chaos.broken()), chaos.lost_pages()
    chaos.clear()
    if not held:
        provider.publish(image, settings, disk, stack.context(settings, image))
    after = stack.context(settings, image)
    assert provider.plan(image, settings, after).up_to_date
    status = provider.status(image, settings, after)
    assert status.drift == []
    assert {a.kind for a in status.artifacts} == {"image", "gallery-image-version"}
    assert (
        leftovers(stack.arm, {a.id for a in status.artifacts}, container_blobs(stack.proxy, stack.container))
        == []
    )
    assert resent(stack.proxy) <= lost + (0 if held else IN_FLIGHT)
    return held, broken


SCRIPTED = [
    ("arm", Fault("status", match="PUT /subscriptions", status=503, body="empty", times=2)),
    (
        "arm",
        Fault(
            "status",
            match="GET /subscriptions",
            status=429,
            body=ARM_ERROR,
            headers={"Retry-After": "1"},
            times=3,
        ),
    ),
    ("arm", Fault("status", match="/operations/", status=502, body="html", times=2)),
    ("arm", Fault("reset", match="PUT /subscriptions", times=2)),
    ("arm", Fault("slow", match="GET /subscriptions", delay=0.3, times=3)),
    ("arm", Fault("lose-reply", match="PUT /subscriptions", status=0, times=3)),
    ("arm", Fault("lose-reply", match="/operations/", status=0, times=3)),
    ("arm", Fault("lose-reply", match="DELETE /subscriptions", status=0)),
    ("arm", Fault("lose-reply", match="POST /subscriptions", status=504, body="html", times=2)),
    ("storage", Fault("status", match="comp=page", status=503, body="empty", times=3)),
    ("storage", Fault("status", match="comp=page", status=500, body=STORAGE_ERROR, times=2)),
    ("storage", Fault("reset", match="comp=page", times=2)),
    ("storage", Fault("slow", match="comp=page", delay=0.3, times=2)),
    ("storage", Fault("lose-reply", match="comp=page", status=0, times=3, skip=1)),
    ("storage", Fault("lose-reply", match="comp=lease", status=0, times=2)),
    ("storage", Fault("lose-reply", match="comp=metadata", status=0)),
    ("storage", Fault("lose-reply", match="DELETE /", status=0)),
]


BLOB_ONLY = ("comp=lease", "comp=metadata", "DELETE /")
"""Storage requests only the page-blob upload makes (a managed disk has no lease, metadata or blob)."""
DISK_ONLY = ("POST /subscriptions", "DELETE /subscriptions")
"""ARM requests only the managed-disk upload makes (grantAccess, revokeAccess, deleting the disk)."""
CASES = [
    pytest.param(mode, where, fault, id=f"{mode}-{where}-{fault.kind}-{i}")
    for i, (where, fault) in enumerate(SCRIPTED)
    for mode in ("page-blob", "managed-disk")
    if fault.match not in (BLOB_ONLY if mode == "managed-disk" else DISK_ONLY)
]


@pytest.mark.parametrize(("mode", "where", "fault"), CASES)
def test_one_kind_of_fault(stack, chaos, disk, info, mode, where, fault):
    getattr(chaos, where).add(dataclasses.replace(fault))  # a fresh count for each case
    held, broken = _publish_until_it_holds(
        stack, chaos, disk, info, DISK_UPLOAD if mode == "managed-disk" else {}
    )
    assert broken, "the fault hit"
    assert held, "scripted faults are few enough for the retries: the run holds by itself"


RANDOM_TRIALS = LONG or 4


@pytest.mark.parametrize("trial", range(RANDOM_TRIALS))
def test_faults_at_random(stack, chaos, disk, info, trial):
    rng = random.Random(SEED + trial)
    kinds = ("status", "reset", "lose-reply", "slow")
    chaos.arm.randomly(rate=0.12, seed=rng.randrange(1 << 30), kinds=kinds)
    chaos.storage.randomly(rate=0.12, seed=rng.randrange(1 << 30), kinds=kinds)
    held, broken = _publish_until_it_holds(stack, chaos, disk, info, DISK_UPLOAD if trial % 2 else {})
    print(f"azure random faults trial {trial}: {broken} broken, held {'alone' if held else 'on re-run'}")
    assert broken, "faults hit"


# ---- the command, killed and run twice at once ------------------------------------------------------


KILL_TRIALS = LONG or 4


def test_kill_at_random_points_then_rerun(cli, arm, proxy, container):
    manifest = cli.manifest(**GALLERY, version="0.0.1")
    started = time.monotonic()
    timing = cli.publish(manifest, "timing")
    assert timing.code == 0, timing.stderr
    whole = time.monotonic() - started
    rng = random.Random(SEED)
    held = interrupted = 0
    for trial in range(KILL_TRIALS):
        version = f"1.{trial}.0"
        manifest = cli.manifest(**GALLERY, **(DISK_UPLOAD if trial % 2 else {}), version=version)
        state = f"kill-{trial}"
        proxy.requests.clear()
        proc = cli.start(manifest, state)
        time.sleep(rng.uniform(0.05, 0.75) * whole)
        interrupted += proc.poll() is None
        proc.kill()
        proc.communicate()
        rerun = cli.publish(manifest, state)
        assert rerun.code == 0, f"trial {trial}: {rerun.stderr}"
        listed = {a["id"].lower() for a in rerun.target["artifacts"]}
        assert {a["kind"] for a in rerun.target["artifacts"]} == {"image", "gallery-image-version"}
        mine = [k for k in arm.resources if f"golden-{version}" in k or k.endswith(f"/versions/{version}")]
        tagged = [k for k in mine if TAG_DIGEST in (arm.resources[k].get("tags") or {})]
        assert sorted(tagged) == sorted(listed), f"trial {trial}: imgpub-tagged leftovers"
        assert [b for b in container_blobs(proxy, container) if version in b] == [], f"trial {trial}"
        assert resent(proxy) <= IN_FLIGHT, f"trial {trial}: pages sent again"
        held += 1
    print(f"azure kill -9 trials: {KILL_TRIALS} tried, {interrupted} killed mid-run, {held} held")
    assert held == KILL_TRIALS and interrupted >= KILL_TRIALS // 2, "most kills hit a running publish"


@pytest.mark.parametrize("trial", range(LONG or 1))
@pytest.mark.parametrize("mode", ["page-blob", "managed-disk"])
def test_two_commands_at_once(cli, arm, proxy, container, mode, trial):
    manifest = cli.manifest(**GALLERY, **(DISK_UPLOAD if mode == "managed-disk" else {}))
    procs = {state: cli.start(manifest, state) for state in ("a", "b")}
    runs = {state: cli.finish(proc, state) for state, proc in procs.items()}

    for run in runs.values():
        assert run.code == 0, run.stderr
        assert {a["kind"] for a in run.target["artifacts"]} == {"image", "gallery-image-version"}
    ids = {a["id"].lower() for r in runs.values() for a in r.target["artifacts"]}
    assert len(ids) == 2, "one image and one version"
    assert leftovers(arm, ids, container_blobs(proxy, container)) == []
    if mode == "page-blob":
        assert resent(proxy) == 0, "only one run uploaded"
    assert all(r.target["status"] in ("published", "unchanged") for r in runs.values())
    said = sum(any("another run" in w for w in r.target.get("warnings", [])) for r in runs.values())
    print(f"azure two commands at once ({mode}, trial {trial}): both exit 0, {said} said 'another run'")
