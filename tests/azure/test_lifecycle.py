"""Every version of an image on Azure at once, against the fake ARM and Azurite, with an injected clock.

Releases are found by imgpub's tags only: a same-name image or version without them (or tagged for
another image) is never listed nor touched. Prune runs through imgpub.lifecycle with a manifest:
deprecate (endOfLifeDate + excludeFromLatest, managed images marked), then delete (version, image,
leftover blob). A delete that fails half-way is listed "deleting" and finished by the next prune
whatever the policy says. The version matrix shows a region a version lacks; reconcile fills it in
with a PATCH of the version's regions, uploading nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.blob import BlobClient

from azure.conftest import SUBSCRIPTION, Versions
from fakes.azurite import API_VERSION, connection_string
from imgpub.identity import TAG_DIGEST, TAG_NAME, TAG_VERSION
from imgpub.lifecycle import matrix, prune, reconcile, version_cells
from imgpub.retry import FAST

NOW = datetime.now(UTC).replace(microsecond=0)
POLICY = {"keep": 1, "deprecate_after": "30d", "delete_after": "90d"}
NO_KEEP = {**POLICY, "keep": 0}
RG = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Compute"
VERSION = "galleries/g1/images/golden/versions/{}"
TYPES = {"images": "Microsoft.Compute/images", "galleries": "Microsoft.Compute/galleries/images/versions"}
STRANGERS = {
    # named as imgpub would name version 0.9.0, but without imgpub's tags
    "images/golden-0.9.0": {"team": "other"},
    VERSION.format("0.9.0"): {},
    # imgpub's tags, for another image
    "images/golden-0.8.0": {TAG_NAME: "silver", TAG_VERSION: "0.8.0", TAG_DIGEST: "0" * 24},
    VERSION.format("0.8.0"): {TAG_NAME: "silver", TAG_VERSION: "0.8.0", TAG_DIGEST: "0" * 24},
}


def days(n: float) -> datetime:
    return NOW - timedelta(days=n)


def add_strangers(arm: Any) -> None:
    """Resources someone else made (very old: every policy would delete them if they were ours)."""
    for rest, tags in STRANGERS.items():
        props: dict[str, Any] = {"provisioningState": "Succeeded"}
        if rest.startswith("galleries"):
            props["publishingProfile"] = {"targetRegions": [{"name": "westeurope"}]}
            props["storageProfile"] = {"source": {"id": f"{RG}/images/golden-0.9.0"}}
        arm.resources[f"{RG}/{rest}".lower()] = {
            "id": f"{RG}/{rest}",
            "name": rest.rsplit("/", 1)[1],
            "type": TYPES[rest.split("/", 1)[0]],
            "location": "westeurope",
            "tags": dict(tags),
            "properties": props,
            "_created": days(900).isoformat(),
            "_regions": ["westeurope"],
            "_done": True,
        }


def strangers_untouched(arm: Any) -> None:
    for rest, tags in STRANGERS.items():
        found = arm.get(rest)
        assert found is not None and found["tags"] == tags, rest
        assert "endOfLifeDate" not in found["properties"].get("publishingProfile", {})
    writes = [(m, p) for m, p in arm.requests if m in ("PUT", "PATCH", "DELETE")]
    assert not [w for w in writes if any(w[1].lower().endswith(rest.lower()) for rest in STRANGERS)]


def blob_exists(stack: Any, name: str) -> bool:
    blob = BlobClient.from_connection_string(
        connection_string(stack.proxy.url), stack.container, name, api_version=API_VERSION
    )
    return bool(blob.exists())


def run_prune(versions: Versions, tmp_path: Any, version: str, policy: dict[str, Any], **kw: Any) -> Any:
    manifest = versions.manifest(version, policy, name=f"prune-{len(list(tmp_path.glob('prune-*')))}.yaml")
    return prune(manifest, apply=True, now=lambda: NOW, state_dir=tmp_path / "lifecycle", retry=FAST, **kw)


def outcomes(result: Any) -> dict[str, Any]:
    (target,) = result.targets
    assert target.error is None, target.error
    return {v.version: v for v in target.versions}


def test_releases_are_found_by_imgpub_tags_only(versions, stack, tmp_path):
    versions.publish("1.0.0", keep_upload=True)
    versions.publish("1.1.0")
    add_strangers(stack.arm)
    versions.age("1.0.0", days(200))
    settings = versions.settings()
    ctx = stack.context(settings, versions.info(), now=lambda: NOW)

    found = {r.version: r for r in stack.provider().releases("golden", settings, ctx)}

    assert set(found) == {"1.0.0", "1.1.0"}, "a same-name image or another image's version is never listed"
    old = found["1.0.0"]
    assert old.state == "active" and old.regions == ("westeurope",)
    assert old.created == days(200), "a version is as old as its publishedDate says"
    assert {a.kind for a in old.artifacts} == {"gallery-image-version", "image", "blob"}
    assert {a.kind for a in found["1.1.0"].artifacts} == {"gallery-image-version", "image"}
    assert old.digest and old.digest != found["1.1.0"].digest and not old.drift


@pytest.mark.parametrize(
    ("change", "state"),
    [
        pytest.param({"provisioningState": "Failed"}, "failed", id="failed"),
        pytest.param({"provisioningState": "Creating"}, "pending", id="creating"),
        pytest.param({"provisioningState": "Updating"}, "pending", id="updating"),
        pytest.param({"provisioningState": "Deleting"}, "deleting", id="deleting"),
    ],
)
def test_a_version_state_follows_its_provisioning_state(versions, stack, change, state):
    versions.publish("1.0.0")
    stack.arm.get(VERSION.format("1.0.0"))["properties"].update(change)
    settings = versions.settings()
    ctx = stack.context(settings, versions.info(), now=lambda: NOW)
    (release,) = stack.provider().releases("golden", settings, ctx)
    assert release.state == state


def test_leftovers_without_an_image_are_a_delete_to_finish_unless_a_run_holds_them(versions, stack):
    versions.publish("1.0.0", keep_upload=True)
    for rest in (VERSION.format("1.0.0"), "images/golden-1.0.0"):
        del stack.arm.resources[f"{RG}/{rest}".lower()]  # deleted by a prune that then stopped
    settings = versions.settings()
    ctx = stack.context(settings, versions.info(), now=lambda: NOW)
    (release,) = stack.provider().releases("golden", settings, ctx)
    assert (release.state, [a.kind for a in release.artifacts]) == ("deleting", ["blob"])
    blob = BlobClient.from_connection_string(
        connection_string(stack.proxy.url), stack.container, "golden-1.0.0.vhd", api_version=API_VERSION
    )
    blob.acquire_lease(15)  # a run is uploading it now
    (release,) = stack.provider().releases("golden", settings, ctx)
    assert release.state == "pending"


def test_prune_deprecates_then_deletes_by_the_policy(versions, stack, tmp_path):
    ages = {"1.0.0": 200, "1.1.0": 60, "1.2.0": 10, "1.3.0": 1}
    for version in ages:
        versions.publish(version, keep_upload=version == "1.0.0")
        versions.age(version, days(ages[version]))
    add_strangers(stack.arm)

    first = run_prune(versions, tmp_path, "1.3.0", POLICY)

    assert first.exit_code == 0
    verdicts = {v: o.verdict for v, o in outcomes(first).items()}
    assert verdicts == {"1.3.0": "current", "1.2.0": "keep", "1.1.0": "deprecate", "1.0.0": "deprecate"}
    profile = stack.arm.get(VERSION.format("1.1.0"))["properties"]["publishingProfile"]
    assert datetime.fromisoformat(profile["endOfLifeDate"]) == NOW and profile["excludeFromLatest"] is True
    assert [r["excludeFromLatest"] for r in profile["targetRegions"]] == [True]
    assert stack.arm.get("images/golden-1.1.0")["tags"]["imgpub:deprecated"] == NOW.isoformat()
    assert any("have no deprecation" in line for line in outcomes(first)["1.1.0"].done)
    patches = [body for method, rest, body in stack.arm.bodies if method == "PATCH" and "versions" in rest]
    assert patches and all("storageProfile" in body["properties"] for body in patches)
    assert blob_exists(stack, "golden-1.0.0.vhd"), "nothing is deleted in the run that deprecates"

    second = run_prune(versions, tmp_path, "1.3.0", POLICY)

    assert second.exit_code == 0
    assert {v: o.verdict for v, o in outcomes(second).items()}["1.0.0"] == "delete"
    assert stack.arm.get(VERSION.format("1.0.0")) is None and stack.arm.get("images/golden-1.0.0") is None
    assert not blob_exists(stack, "golden-1.0.0.vhd"), "the version's leftover upload blob goes with it"
    assert stack.arm.get(VERSION.format("1.1.0")) is not None, "1.1.0 is deprecated, not old enough to go"
    third = run_prune(versions, tmp_path, "1.3.0", POLICY)
    assert [o.done for o in outcomes(third).values() if o.done] == [], "a third prune has nothing to do"
    strangers_untouched(stack.arm)


def test_a_delete_that_stops_half_way_is_finished_by_the_next_prune(versions, stack, tmp_path):
    versions.publish("1.0.0", keep_upload=True)
    versions.publish("1.1.0")
    versions.age("1.0.0", days(200))
    assert outcomes(run_prune(versions, tmp_path, "1.1.0", NO_KEEP))["1.0.0"].verdict == "deprecate"
    stack.arm.inject("DELETE", r"/images/golden-1\.0\.0$", 500, times=100)

    failed = run_prune(versions, tmp_path, "1.1.0", NO_KEEP)

    assert failed.exit_code == 1
    error = outcomes(failed)["1.0.0"].error
    assert "image golden-1.0.0" in error and "deleted gallery image version g1/golden/1.0.0" in error
    stack.arm.faults.clear()
    listed = matrix(versions.manifest("1.1.0"), now=lambda: NOW, retry=FAST)
    states = {r.version: r.state for r in listed.targets[0].releases}
    assert states == {"1.0.0": "deleting", "1.1.0": "active"}, "the marked image says a delete is under way"
    assert not listed.in_sync

    finished = run_prune(versions, tmp_path, "1.1.0", {"keep": 5})  # this policy alone keeps 1.0.0

    assert finished.exit_code == 0
    done = outcomes(finished)["1.0.0"]
    assert done.verdict == "finish" and "deleted image golden-1.0.0" in done.done
    assert stack.arm.get("images/golden-1.0.0") is None and not blob_exists(stack, "golden-1.0.0.vhd")


def test_the_matrix_shows_a_missing_region_and_reconcile_fills_it_in_without_uploading(versions, stack):
    versions.publish("1.0.0")
    versions.publish("1.1.0")
    two_regions = {"name": "g1", "target_regions": [{"name": "westeurope"}, {"name": "northeurope"}]}
    manifest = versions.manifest("1.1.0", gallery=two_regions)

    shown = matrix(manifest, now=lambda: NOW, retry=FAST)

    (target,) = shown.targets
    assert target.regions == ["westeurope", "northeurope"]
    cells = {(v, r): s for v, r, s in version_cells(target)}
    assert cells == {
        ("1.1.0", "westeurope"): "active",
        ("1.1.0", "northeurope"): "missing",
        ("1.0.0", "westeurope"): "active",
        ("1.0.0", "northeurope"): "missing",
    }
    assert not shown.in_sync
    storage_before, arm_before = len(stack.proxy.requests), len(stack.arm.requests)

    done = reconcile(manifest, now=lambda: NOW, retry=FAST)

    assert done.exit_code == 0
    lines = {v.version: v.done for v in done.targets[0].versions}
    assert any("to northeurope" in line and "nothing uploaded" in line for line in lines["1.0.0"])
    storage = [(r.method, r.query) for r in stack.proxy.requests[storage_before:]]
    assert {q for _, q in storage} == {"restype=container&comp=list&include=metadata"}, (
        "no blob was read, written or made: the container is only listed (for leftovers)"
    )
    writes = [(m, p) for m, p in stack.arm.requests[arm_before:] if m in ("PUT", "PATCH", "DELETE", "POST")]
    assert sorted(writes) == sorted(("PATCH", f"{RG}/{VERSION.format(v)}") for v in ("1.0.0", "1.1.0"))
    regions = stack.arm.get(VERSION.format("1.0.0"))["properties"]["publishingProfile"]["targetRegions"]
    assert [r["name"] for r in regions] == ["westeurope", "northeurope"]
    assert matrix(manifest, now=lambda: NOW, retry=FAST).in_sync
    again = reconcile(manifest, now=lambda: NOW, retry=FAST)
    assert [v.reason for v in again.targets[0].versions] == ["in sync", "in sync"]


def test_reconcile_keeps_a_deprecated_version_excluded_from_latest_in_its_new_region(
    versions, stack, tmp_path
):
    versions.publish("1.0.0")
    versions.publish("1.1.0")
    versions.age("1.0.0", days(60))
    run_prune(versions, tmp_path, "1.1.0", {"keep": 0, "deprecate_after": "30d"})
    two_regions = {"name": "g1", "target_regions": [{"name": "westeurope"}, {"name": "northeurope"}]}

    reconcile(versions.manifest("1.1.0", gallery=two_regions), now=lambda: NOW, retry=FAST)

    profile = stack.arm.get(VERSION.format("1.0.0"))["properties"]["publishingProfile"]
    assert [(r["name"], r["excludeFromLatest"]) for r in profile["targetRegions"]] == [
        ("westeurope", True),
        ("northeurope", True),
    ]
    assert datetime.fromisoformat(profile["endOfLifeDate"]) == NOW


def test_reconcile_completes_a_deprecation_and_sets_the_target_tags(versions, stack, tmp_path):
    versions.publish("1.0.0")
    versions.publish("1.1.0")
    image = stack.arm.get("images/golden-1.0.0")
    image["tags"]["imgpub:deprecated"] = days(5).isoformat()  # deprecated by an earlier prune that stopped
    manifest = versions.manifest("1.1.0", tags={"team": "platform"})
    listed = {r.version: r for r in matrix(manifest, now=lambda: NOW, retry=FAST).targets[0].releases}
    assert any("is not deprecated" in d for d in listed["1.0.0"].drift)
    assert any("lacks tags team=platform" in d for d in listed["1.1.0"].drift)

    done = reconcile(manifest, now=lambda: NOW, retry=FAST)

    assert done.exit_code == 0, [v.error for v in done.targets[0].versions]
    profile = stack.arm.get(VERSION.format("1.0.0"))["properties"]["publishingProfile"]
    assert profile["excludeFromLatest"] is True and datetime.fromisoformat(profile["endOfLifeDate"]) == NOW
    for rest in ("images/golden-1.1.0", VERSION.format("1.1.0"), VERSION.format("1.0.0")):
        tags = stack.arm.get(rest)["tags"]
        assert tags["team"] == "platform" and tags[TAG_DIGEST], rest
    assert matrix(manifest, now=lambda: NOW, retry=FAST).in_sync


def test_versions_are_listed_page_by_page(versions, stack):
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        versions.publish(version)
    stack.arm.page_size = 1
    settings = versions.settings()
    ctx = stack.context(settings, versions.info(), now=lambda: NOW)
    listed = len(stack.arm.requests)

    found = stack.provider().releases("golden", settings, ctx)

    assert sorted(r.version for r in found) == ["1.0.0", "1.1.0", "1.2.0"]
    pages = [p for m, p in stack.arm.requests[listed:] if m == "GET" and p.endswith("/versions")]
    assert len(pages) == 3, "one request per page, following nextLink"


def test_lost_replies_of_a_deprecation_and_a_delete(versions, stack, tmp_path):
    versions.publish("1.0.0")
    versions.publish("1.1.0")
    versions.age("1.0.0", days(200))
    stack.arm.lose_reply("PATCH", r"/versions/1\.0\.0$")
    stack.arm.lose_reply("PATCH", r"/images/golden-1\.0\.0$")

    deprecated = run_prune(versions, tmp_path, "1.1.0", NO_KEEP)

    assert deprecated.exit_code == 0
    assert stack.arm.count("PATCH", r"/versions/1\.0\.0$") == 1, "the look after the lost reply saw it done"
    assert stack.arm.count("PATCH", r"/images/golden-1\.0\.0$") == 1
    stack.arm.lose_reply("DELETE", r"/versions/1\.0\.0$")
    stack.arm.lose_reply("DELETE", r"/images/golden-1\.0\.0$")

    deleted = run_prune(versions, tmp_path, "1.1.0", NO_KEEP)

    assert deleted.exit_code == 0, outcomes(deleted)["1.0.0"].error
    assert stack.arm.get(VERSION.format("1.0.0")) is None and stack.arm.get("images/golden-1.0.0") is None
    assert len(stack.arm.losses.lost) == 4


def test_upload_disks_left_behind_go_with_their_version(versions, stack, tmp_path):
    disk_upload = {"upload": "managed-disk", "storage_account": None}
    versions.publish("1.0.0", keep_upload=True, **disk_upload)
    versions.publish("1.1.0", **disk_upload)
    versions.age("1.0.0", days(200))
    (left,) = [r for k, r in stack.arm.resources.items() if "/disks/golden-1.0.0-upload-" in k]

    def disk_of(version: str, age: timedelta) -> dict[str, Any]:
        name = f"golden-{version}-upload-x"
        made = dict(left, name=name, id=left["id"].replace(left["name"], name))
        made["tags"] = {**left["tags"], TAG_VERSION: version}
        made["properties"] = {**left["properties"], "diskState": "ActiveUpload"}
        made["_created"] = (datetime.now(UTC) - age).isoformat()
        stack.arm.resources[made["id"].lower()] = made
        return made

    opened = disk_of("0.5.0", timedelta(minutes=5))  # a run is uploading 0.5.0 into it right now
    stale = disk_of("0.4.0", timedelta(days=2))  # a killed run's: its write SAS ran out long ago
    settings = versions.settings(**disk_upload)
    ctx = stack.context(settings, versions.info(), now=lambda: NOW)
    states = {r.version: r.state for r in stack.provider().releases("golden", settings, ctx)}
    assert states == {"0.4.0": "deleting", "0.5.0": "pending", "1.0.0": "active", "1.1.0": "active"}

    manifest = versions.manifest("1.1.0", NO_KEEP, **disk_upload)
    for _ in range(2):  # deprecate, then delete
        result = prune(manifest, apply=True, now=lambda: NOW, state_dir=tmp_path / "lifecycle", retry=FAST)
    assert result.exit_code == 0
    assert not [k for k in stack.arm.resources if "/disks/golden-1.0.0-upload-" in k]
    assert stack.arm.get(f"disks/{opened['name']}") is not None, "a disk open for upload is never removed"
    assert stack.arm.get(f"disks/{stale['name']}") is None, "a dead run's disk goes with the next prune"
    assert stack.arm.count("POST", f"/disks/{stale['name']}/endGetAccess$") == 1, "revoked before its delete"


def test_a_blob_from_before_the_name_metadata_is_matched_by_its_digest_only(versions, stack):
    versions.publish("1.0.0", keep_upload=True)
    blob = BlobClient.from_connection_string(
        connection_string(stack.proxy.url), stack.container, "golden-1.0.0.vhd", api_version=API_VERSION
    )
    digest = blob.get_blob_properties().metadata["imgpub_digest"]
    blob.set_blob_metadata({"imgpub_digest": digest, "imgpub_complete": "true"})  # as issue 10 wrote it
    other = BlobClient.from_connection_string(
        connection_string(stack.proxy.url), stack.container, "golden-0.7.0.vhd", api_version=API_VERSION
    )
    other.create_page_blob(512, metadata={"imgpub_digest": "f" * 24})  # nothing of ours has that digest
    settings = versions.settings()
    ctx = stack.context(settings, versions.info(), now=lambda: NOW)

    (release,) = stack.provider().releases("golden", settings, ctx)

    assert release.version == "1.0.0"
    assert [a.id.rsplit("/", 1)[1] for a in release.artifacts if a.kind == "blob"] == ["golden-1.0.0.vhd"]


def test_a_target_without_a_gallery_deprecates_by_its_own_mark_then_deletes(versions, stack, tmp_path):
    versions.publish("1.0.0", gallery=None)
    versions.publish("1.1.0", gallery=None)
    versions.age("1.0.0", days(200))
    manifest = versions.manifest("1.1.0", NO_KEEP, gallery=None)

    first = prune(manifest, apply=True, now=lambda: NOW, state_dir=tmp_path / "lifecycle", retry=FAST)

    assert first.exit_code == 0 and first.targets[0].regions == ["westeurope"]
    (line,) = outcomes(first)["1.0.0"].done
    assert "managed images have no deprecation" in line and "imgpub:deprecated" in line
    states = {r.version: r.state for r in matrix(manifest, now=lambda: NOW, retry=FAST).targets[0].releases}
    assert states == {"1.0.0": "deprecated", "1.1.0": "active"}

    second = prune(manifest, apply=True, now=lambda: NOW, state_dir=tmp_path / "lifecycle", retry=FAST)

    assert outcomes(second)["1.0.0"].done == ["deleted image golden-1.0.0"]
    assert stack.arm.get("images/golden-1.0.0") is None and stack.arm.get("images/golden-1.1.0") is not None


def test_two_prunes_at_once_both_finish_and_act_once(versions, stack, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    versions.publish("1.0.0", keep_upload=True)
    versions.publish("1.1.0")
    versions.age("1.0.0", days(200))
    manifest = versions.manifest("1.1.0", NO_KEEP)

    def two_at_once() -> list[Any]:
        with ThreadPoolExecutor(2) as pool:
            runs = [
                pool.submit(prune, manifest, apply=True, now=lambda: NOW, state_dir=tmp_path / s, retry=FAST)
                for s in ("a", "b")
            ]
            return [run.result() for run in runs]

    stack.arm.race("PATCH", r"/versions/1\.0\.0$")  # both deprecations reach Azure together
    deprecated = two_at_once()
    assert [r.exit_code for r in deprecated] == [0, 0], [outcomes(r)["1.0.0"].error for r in deprecated]
    assert stack.arm.count("PATCH", r"/versions/1\.0\.0$") >= 1
    assert len([r for r in stack.arm.refusals if r[2] == "AnotherOperationInProgress"]) >= 1
    stack.arm.race("DELETE", r"/versions/1\.0\.0$")  # and both deletes
    deleted = two_at_once()
    assert [r.exit_code for r in deleted] == [0, 0], [outcomes(r)["1.0.0"].error for r in deleted]
    assert stack.arm.get(VERSION.format("1.0.0")) is None and stack.arm.get("images/golden-1.0.0") is None
    assert not blob_exists(stack, "golden-1.0.0.vhd")


def test_a_region_whose_replication_failed_is_missing_until_reconcile_replicates_it_again(versions, stack):
    two_regions = {"name": "g1", "target_regions": [{"name": "westeurope"}, {"name": "northeurope"}]}
    stack.arm.fail_replication["northeurope"] = "Replication failed: quota exceeded in northeurope"
    versions.publish("1.0.0", gallery=two_regions)
    stack.arm.fail_replication.clear()  # the quota is raised; the version's own replication stays failed
    manifest = versions.manifest("1.0.0", gallery=two_regions)
    cells = {(r, s) for _, r, s in version_cells(matrix(manifest, now=lambda: NOW, retry=FAST).targets[0])}
    assert cells == {("westeurope", "active"), ("northeurope", "missing")}

    done = reconcile(manifest, now=lambda: NOW, retry=FAST)

    assert done.exit_code == 0
    assert stack.arm.count("PATCH", r"/versions/1\.0\.0$") == 1
    assert matrix(manifest, now=lambda: NOW, retry=FAST).in_sync


def test_publish_with_on_publish_prunes_the_target_it_published(versions, stack, tmp_path):
    import imgpub

    versions.publish("1.0.0")
    versions.age("1.0.0", datetime.now(UTC) - timedelta(days=60))  # on_publish runs on the real clock
    policy = {"keep": 0, "deprecate_after": "30d", "on_publish": True}

    result = imgpub.publish(versions.manifest("1.1.0", policy), state_dir=tmp_path / "state", retry=FAST)

    assert result.exit_code == 0, [t.error for t in result.targets]
    pruned = result.targets[0].pruned
    assert pruned is not None
    assert {v.version: v.verdict for v in pruned.versions} == {"1.1.0": "current", "1.0.0": "deprecate"}
    assert (
        stack.arm.get(VERSION.format("1.0.0"))["properties"]["publishingProfile"]["excludeFromLatest"] is True
    )
    assert (
        stack.arm.get(VERSION.format("1.1.0"))["properties"]["publishingProfile"]["excludeFromLatest"]
        is False
    )


def test_a_version_published_again_after_a_delete_stopped_half_way_is_no_longer_deleting(
    versions, stack, tmp_path
):
    versions.publish("1.0.0")
    versions.publish("1.1.0")
    versions.age("1.0.0", days(200))
    run_prune(versions, tmp_path, "1.1.0", NO_KEEP)  # deprecated
    stack.arm.inject("DELETE", r"/images/golden-1\.0\.0$", 500, times=100)
    assert run_prune(versions, tmp_path, "1.1.0", NO_KEEP).exit_code == 1  # version gone, image marked
    stack.arm.faults.clear()

    versions.publish("1.0.0")  # wanted after all: the version is made again from the kept image

    assert "imgpub:deleting" not in stack.arm.get("images/golden-1.0.0")["tags"]
    listed = matrix(versions.manifest("1.1.0"), now=lambda: NOW, retry=FAST)
    states = {r.version: r.state for r in listed.targets[0].releases}
    assert states["1.0.0"] != "deleting", (
        "the next prune must not finish a delete of what was published again"
    )


def test_a_target_image_name_does_not_change_what_the_versions_are_found_by(versions, stack):
    """image_name names the managed image (and the upload blob); the tags and the definition carry
    the manifest's image name, which is what the lifecycle is given."""
    custom = {"image_name": "golden-custom", "managed_image": False}
    versions.publish("1.0.0", **custom)
    versions.publish("1.1.0", keep_upload=True, **custom)  # one blob name for every version here

    listed = matrix(versions.manifest("1.1.0", **custom), now=lambda: NOW, retry=FAST)

    releases = {r.version: r for r in listed.targets[0].releases}
    assert set(releases) == {"1.0.0", "1.1.0"}
    blobs = [a.id.rsplit("/", 1)[1] for a in releases["1.1.0"].artifacts if a.kind == "blob"]
    assert blobs == ["golden-custom.vhd"] and listed.in_sync
