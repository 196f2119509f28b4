"""Acceptance run against a real AWS account: publish the quickstart disk, check the AMI and its
snapshot, re-run (nothing changes), clean up; two publishes of one manifest at once with separate
state dirs (as two CI machines), which must leave one AMI and no snapshot it does not use; and the
lifecycle (the version matrix, reconcile, prune deprecating then deleting). Opt in
with IMGPUB_LIVE_AWS=<region> and credentials from boto3's standard chain (AWS_PROFILE, SSO,
environment keys, an instance role); skipped otherwise.

The caller needs the "publish" and "prune" policies of providers/aws/README.md. Everything the test
made (AMIs and snapshots tagged with its unique imgpub:name) is deregistered and deleted at the end,
also when an assertion fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import imgpub
from imgpub.identity import TAG_DIGEST, TAG_MANAGED, TAG_NAME, TAG_VERSION
from imgpub.lifecycle import matrix, prune, reconcile
from live.conftest import LiveRun, opt_in

SNAPSHOT_RELEASE_SECONDS = 120
"""How long a deregistered AMI may keep its snapshot "in use" before DeleteSnapshot succeeds."""


def test_publish_check_rerun_and_clean_up(live_run: LiveRun) -> None:
    (region,) = opt_in("IMGPUB_LIVE_AWS", "<region>")
    path = live_run.manifest(
        f"  - name: ami\n    provider: aws\n    region: {region}\n    tags: {{owner: imgpub-live-test}}\n"
    )
    state = live_run.folder / "state"
    ec2 = _ec2(region)
    try:
        first = imgpub.publish(path, state_dir=state)
        (target,) = first.targets
        assert target.ok, target.error
        assert target.published is not None and target.published.changed
        (artifact,) = target.published.artifacts
        assert artifact.region == region

        (image,) = ec2.describe_images(ImageIds=[artifact.id])["Images"]
        assert image["State"] == "available" and image["Name"] == f"{live_run.name}-{live_run.version}"
        assert (image["Architecture"], image["BootMode"], image["VirtualizationType"]) == (
            "x86_64",
            "uefi",
            "hvm",
        )
        assert image["ImdsSupport"] == "v2.0" and image["EnaSupport"] is True
        assert image["RootDeviceName"] == "/dev/xvda"
        (mapping,) = image["BlockDeviceMappings"]
        assert mapping["DeviceName"] == "/dev/xvda" and mapping["Ebs"]["VolumeType"] == "gp3"
        want = {
            TAG_NAME: live_run.name,
            TAG_VERSION: live_run.version,
            TAG_DIGEST: target.digest,
            TAG_MANAGED: "imgpub",
            "purpose": "imgpub-live-test",
            "owner": "imgpub-live-test",
        }
        assert _tags(image) == want
        (snapshot,) = ec2.describe_snapshots(SnapshotIds=[mapping["Ebs"]["SnapshotId"]])["Snapshots"]
        assert (
            snapshot["State"] == "completed" and snapshot["VolumeSize"] == mapping["Ebs"]["VolumeSize"] == 1
        )
        assert _tags(snapshot) == want, "the snapshot carries the AMI's tags and the image labels"

        second = imgpub.publish(path, state_dir=state)
        assert second.ok and second.targets[0].published is not None
        assert not second.targets[0].published.changed
        assert [a.id for a in second.targets[0].published.artifacts] == [artifact.id]
        status = imgpub.status(path, state_dir=state).targets[0].status
        assert status is not None and status.drift == []
    finally:
        _delete_everything(ec2, live_run.name)


def test_two_publishes_at_once_leave_one_ami_and_no_orphan(live_run: LiveRun) -> None:
    (region,) = opt_in("IMGPUB_LIVE_AWS", "<region>")
    path = live_run.manifest(
        f"  - name: ami\n    provider: aws\n    region: {region}\n    tags: {{owner: imgpub-live-test}}\n"
    )
    ec2 = _ec2(region)
    try:
        with ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(imgpub.publish, path, state_dir=live_run.folder / s) for s in ("a", "b")]
            results = [r.result() for r in runs]
        for result in results:
            assert result.ok, [t.error for t in result.targets]
        ids = {a.id for r in results for t in r.targets if t.published for a in t.published.artifacts}
        mine = [{"Name": f"tag:{TAG_NAME}", "Values": [live_run.name]}]
        (image,) = ec2.describe_images(Owners=["self"], Filters=mine)["Images"]
        assert ids == {image["ImageId"]}, "both runs list the one AMI"
        used = {m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"]}
        snapshots = ec2.describe_snapshots(OwnerIds=["self"], Filters=mine)["Snapshots"]
        assert {s["SnapshotId"] for s in snapshots} == used, "the run that lost deleted its own upload"
        status = imgpub.status(path, state_dir=live_run.folder / "a").targets[0].status
        assert status is not None and status.drift == []
    finally:
        _delete_everything(ec2, live_run.name)


def test_prune_the_version_matrix_and_reconcile(live_run: LiveRun) -> None:
    """Two versions; the older is deprecated by one prune and deleted (AMI and snapshot) by the next,
    with the clock moved ahead instead of waiting; reconcile puts back a tag removed by hand."""
    (region,) = opt_in("IMGPUB_LIVE_AWS", "<region>")
    target = (
        f"  - name: ami\n    provider: aws\n    region: {region}\n    tags: {{owner: imgpub-live-test}}\n"
    )
    older = live_run.manifest(target)
    newer_version = "0.1." + live_run.version.rsplit(".", 1)[1]
    newer = live_run.folder / "newer.yaml"
    newer.write_text(
        older.read_text()
        .replace(f"version: {live_run.version}", f"version: {newer_version}")
        .replace("targets:\n", "retention: {keep: 0, delete_after: 1h}\ntargets:\n")
    )
    state = live_run.folder / "state"
    ec2 = _ec2(region)
    mine = [{"Name": f"tag:{TAG_NAME}", "Values": [live_run.name]}]

    def images(version: str) -> list[dict[str, Any]]:
        found = ec2.describe_images(Owners=["self"], Filters=mine, IncludeDeprecated=True)["Images"]
        return [i for i in found if _tags(i).get(TAG_VERSION) == version]

    try:
        for path in (older, newer):
            assert imgpub.publish(path, state_dir=state).ok
        found = matrix(newer, state_dir=state)
        assert {r.version: r.state for r in found.targets[0].releases} == {
            live_run.version: "active",
            newer_version: "active",
        }
        assert found.in_sync, [r.drift for r in found.targets[0].releases]

        (new_ami,) = images(newer_version)
        ec2.delete_tags(Resources=[new_ami["ImageId"]], Tags=[{"Key": "owner"}])
        fixed = reconcile(newer, state_dir=state)
        assert fixed.exit_code == 0 and any(v.done for v in fixed.targets[0].versions)
        assert _tags(images(newer_version)[0])["owner"] == "imgpub-live-test"

        def later(hours: float) -> Callable[[], datetime]:
            return lambda: datetime.now(UTC) + timedelta(hours=hours)

        deprecated = prune(newer, apply=True, state_dir=state, now=later(2))
        assert deprecated.exit_code == 0, [v.error for v in deprecated.targets[0].versions]
        (old_ami,) = images(live_run.version)
        assert old_ami["DeprecationTime"], "EC2 took the deprecation time"
        (snapshot_id,) = [m["Ebs"]["SnapshotId"] for m in old_ami["BlockDeviceMappings"]]

        deleted = prune(newer, apply=True, state_dir=state, now=later(3))
        assert deleted.exit_code == 0, [v.error for v in deleted.targets[0].versions]
        assert {v.version: v.verdict for v in deleted.targets[0].versions}[live_run.version] == "delete"
        assert images(live_run.version) == []
        left = ec2.describe_snapshots(OwnerIds=["self"], Filters=mine)["Snapshots"]
        assert snapshot_id not in {s["SnapshotId"] for s in left}, "the snapshot went with its AMI"
        assert len(images(newer_version)) == 1
    finally:
        _delete_everything(ec2, live_run.name)


def _ec2(region: str) -> Any:
    import boto3  # type: ignore[import-untyped]

    return boto3.client("ec2", region_name=region)


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def _delete_everything(ec2: Any, name: str) -> None:
    """Deregister every AMI and delete every snapshot tagged with this run's unique image name."""
    mine = [{"Name": f"tag:{TAG_NAME}", "Values": [name]}]
    for image in ec2.describe_images(Owners=["self"], Filters=mine)["Images"]:
        ec2.deregister_image(ImageId=image["ImageId"])
    deadline = time.monotonic() + SNAPSHOT_RELEASE_SECONDS
    for snapshot in ec2.describe_snapshots(OwnerIds=["self"], Filters=mine)["Snapshots"]:
        while True:
            try:
                ec2.delete_snapshot(SnapshotId=snapshot["SnapshotId"])
                break
            except ec2.exceptions.ClientError as exc:
                in_use = exc.response["Error"]["Code"] == "InvalidSnapshot.InUse"
                if not in_use or time.monotonic() > deadline:
                    raise
                time.sleep(5)
