"""Issue 10's fault matrix for the lifecycle: `prune` (deprecate, then delete) with the chaos proxy in
front of the fake ARM and of Azurite, one kind of fault at a time on the requests prune makes (the
lists, the version PATCH, the image's tag PATCH, the DELETEs, their operations, the container listing,
the blob's delete), then at a seeded random rate.

Each scripted case must hold by itself (the retries and the look-first writes absorb it); a random
trial may need a second prune. Either way the end is the same: the old version's gallery version,
managed image and leftover blob are gone, the kept version is untouched, nothing was done twice.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest

from azure.conftest import GALLERY_TARGET, Chaos, Versions, container_blobs
from azure.test_fault_matrix import ARM_ERROR, LONG, SEED
from fakes.azurite import ACCOUNT
from fakes.chaos import Fault
from imgpub.lifecycle import prune
from imgpub.retry import FAST

NOW = datetime.now(UTC).replace(microsecond=0)
POLICY = {"keep": 0, "deprecate_after": "30d", "delete_after": "90d"}
OLD = "galleries/g1/images/golden/versions/1.0.0"

FAULTS = [
    ("arm", Fault("status", match="GET /subscriptions", status=429, body=ARM_ERROR, times=3,
                  headers={"Retry-After": "0"})),
    ("arm", Fault("slow", match="GET /subscriptions", delay=0.3, times=3)),
    ("arm", Fault("status", match="PATCH /subscriptions", status=503, body="empty", times=2)),
    ("arm", Fault("reset", match="PATCH /subscriptions", times=2)),
    ("arm", Fault("lose-reply", match="PATCH /subscriptions", status=0, times=2)),
    ("arm", Fault("lose-reply", match="PATCH /subscriptions", status=502, body="html", times=2)),
    ("arm", Fault("status", match="DELETE /subscriptions", status=500, body=ARM_ERROR, times=2)),
    ("arm", Fault("lose-reply", match="DELETE /subscriptions", status=0, times=2)),
    ("arm", Fault("lose-reply", match="/operations/", status=0, times=3)),
    ("storage", Fault("status", match="comp=list", status=503, body="empty", times=2)),
    ("storage", Fault("reset", match="comp=list", times=2)),
    ("storage", Fault("lose-reply", match="DELETE /", status=0)),
]  # fmt: skip


@pytest.fixture
def aged(stack, chaos: Chaos, disk, info, tmp_path, stub_azure) -> Versions:
    """1.0.0 (with its upload blob kept) and 1.1.0 published through the proxies, 1.0.0 200 days old."""
    target = {
        **GALLERY_TARGET,
        "resource_manager_endpoint": chaos.arm.url,
        "blob_endpoint": f"{chaos.storage.url}/{ACCOUNT}",
        "concurrency": 2,
    }
    versions = Versions(stack, disk, info, tmp_path, target)
    versions.publish("1.0.0", keep_upload=True)
    versions.publish("1.1.0")
    versions.age("1.0.0", NOW - timedelta(days=200))
    return versions


def prune_twice(versions: Versions, tmp_path) -> list[int]:
    """Deprecate, then delete: the exit code of each prune."""
    manifest = versions.manifest("1.1.0", POLICY)
    return [
        prune(manifest, apply=True, now=lambda: NOW, state_dir=tmp_path / "lifecycle", retry=FAST).exit_code
        for _ in range(2)
    ]


def finished(stack, chaos: Chaos) -> None:
    assert stack.arm.get(OLD) is None and stack.arm.get("images/golden-1.0.0") is None
    assert stack.arm.get("galleries/g1/images/golden/versions/1.1.0")["properties"]["provisioningState"] == (
        "Succeeded"
    )
    assert "imgpub:deprecated" not in stack.arm.get("images/golden-1.1.0")["tags"]
    assert container_blobs(stack.proxy, stack.container) == []


@pytest.mark.parametrize(
    ("where", "fault"), FAULTS, ids=[f"{w}-{f.kind}-{i}" for i, (w, f) in enumerate(FAULTS)]
)
def test_one_kind_of_fault_in_a_prune(stack, chaos, aged, tmp_path, where, fault):
    getattr(chaos, where).add(dataclasses.replace(fault))

    codes = prune_twice(aged, tmp_path)

    assert chaos.broken(), "the fault hit"
    assert codes == [0, 0], "scripted faults are few enough for the retries: each prune holds by itself"
    finished(stack, chaos)
    assert stack.arm.count("DELETE", r"/images/golden-1\.0\.0$") <= 2


@pytest.mark.parametrize("trial", range(LONG or 2))
def test_faults_at_random_in_a_prune(stack, chaos, aged, tmp_path, trial):
    rng = random.Random(SEED + 100 + trial)
    kinds = ("status", "reset", "lose-reply", "slow")
    chaos.arm.randomly(rate=0.15, seed=rng.randrange(1 << 30), kinds=kinds)
    chaos.storage.randomly(rate=0.15, seed=rng.randrange(1 << 30), kinds=kinds)

    codes = prune_twice(aged, tmp_path)
    broken = len(chaos.broken())
    chaos.clear()
    if codes != [0, 0]:  # a prune the faults beat: the next ones finish what it left
        prune_twice(aged, tmp_path)

    print(f"azure prune random faults trial {trial}: {broken} broken, exit codes {codes}")
    assert broken, "faults hit"
    finished(stack, chaos)
