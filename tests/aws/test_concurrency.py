"""Two publishes of one manifest at once, on machines that share no state dir (separate journals): they
must not destroy each other. The moto server's barriers make them race at the same call every time."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aws.motoaws import Moto, context, image_info
from imgpub.disk import DiskImage
from imgpub.journal import Journal
from imgpub.provider import Published
from imgpub.retry import FAST
from imgpub_aws import AwsProvider
from imgpub_aws.errors import Caller
from imgpub_aws.ledger import Ledger
from imgpub_aws.register import register_image, register_params

OLD, NEW = "a" * 24, "b" * 24


def race(*runs: Callable[[], Published]) -> list[Published]:
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = [pool.submit(run) for run in runs]
        return [f.result(timeout=120) for f in futures]


def publisher(settings: Any, disk: DiskImage, state: Path, **kw: Any) -> Callable[[], Published]:
    """A run on its own machine: its own journal (state dir)."""

    def run() -> Published:
        ctx = context(state, journal=Journal(state / "journal.json"), **kw)
        return AwsProvider().publish(image_info(disk), settings, disk, ctx)

    return run


def amis(moto: Moto, region: str = "us-east-1") -> list[dict[str, Any]]:
    return list(moto.client("ec2", region).describe_images(Owners=["self"])["Images"])


def snapshots(moto: Moto, region: str = "us-east-1") -> set[str]:
    snaps = moto.client("ec2", region).describe_snapshots(OwnerIds=["self"])["Snapshots"]
    return {s["SnapshotId"] for s in snaps}


def used(image: dict[str, Any]) -> set[str]:
    return {m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"]}


def by_another_run(published: Published) -> list[str]:
    return [w for w in published.warnings if "published by another run" in w]


def test_two_runs_that_upload_at_once_publish_one_ami_and_the_loser_deletes_only_its_own_snapshot(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    moto.barrier("StartSnapshot")  # neither finds the other's upload: both upload
    moto.barrier("RegisterImage")  # and both register at the same moment
    settings = settings_for()
    a, b = race(publisher(settings, disk, tmp_path / "a"), publisher(settings, disk, tmp_path / "b"))

    tokens = {r["params"]["ClientToken"] for r in moto.requests("StartSnapshot")}
    assert len(tokens) == 2, "each machine's upload has its own pending snapshot"
    (image,) = amis(moto)
    assert a.artifacts[0].id == b.artifacts[0].id == image["ImageId"] and image["State"] == "available"
    assert snapshots(moto) == used(image), "the loser deleted its upload, the winner's is untouched"
    (deleted,) = [r["params"]["SnapshotId"] for r in moto.requests("DeleteSnapshot")]
    assert deleted not in used(image)
    winner, loser = (a, b) if not by_another_run(a) else (b, a)
    assert not by_another_run(winner) and winner.changed
    (note,) = by_another_run(loser)
    assert note.startswith(f"us-east-1: {image['ImageId']} was published by another run")
    assert not moto.requests("DeregisterImage")


def test_two_runs_copying_at_once_make_one_copy(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    moto.barrier("StartSnapshot")
    moto.barrier("RegisterImage")
    moto.barrier("CopyImage", region="eu-west-1")
    settings = settings_for(regions=["eu-west-1"])
    a, b = race(publisher(settings, disk, tmp_path / "a"), publisher(settings, disk, tmp_path / "b"))

    for region in ("us-east-1", "eu-west-1"):
        (image,) = amis(moto, region)
        assert {x.id for x in a.artifacts if x.region == region} == {image["ImageId"]}
        assert {x.id for x in b.artifacts if x.region == region} == {image["ImageId"]}
        assert snapshots(moto, region) == used(image), region
    copies = moto.requests("CopyImage")
    assert len(copies) == 2 and copies[0]["params"]["ClientToken"] != copies[1]["params"]["ClientToken"]
    notes = by_another_run(a) + by_another_run(b)
    assert sorted(n.split(":")[0] for n in notes) == ["eu-west-1", "us-east-1"], notes


def test_two_replace_runs_at_once_replace_once_and_leave_nothing(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for(regions=["eu-west-1"])
    publisher(settings, disk, tmp_path / "old", digest=OLD)()
    old = {r: amis(moto, r)[0] for r in ("us-east-1", "eu-west-1")}
    moto.barrier("StartSnapshot")
    moto.barrier("DeregisterImage", region="us-east-1")  # both retire the old AMI at once
    moto.barrier("RegisterImage")
    moto.barrier("CopyImage", region="eu-west-1")
    a, b = race(
        publisher(settings, disk, tmp_path / "a", digest=NEW, replace=True),
        publisher(settings, disk, tmp_path / "b", digest=NEW, replace=True),
    )

    for region in ("us-east-1", "eu-west-1"):
        (image,) = amis(moto, region)
        assert {t["Key"]: t["Value"] for t in image["Tags"]}["imgpub:digest"] == NEW
        assert {x.id for x in a.artifacts + b.artifacts if x.region == region} == {image["ImageId"]}
        assert snapshots(moto, region) == used(image), "old snapshots and the loser's upload are gone"
        assert used(old[region]).isdisjoint(snapshots(moto, region))
    assert by_another_run(a) or by_another_run(b)
    for state in ("a", "b"):
        journal = json.loads((tmp_path / state / "journal.json").read_text())
        assert "replace" not in journal, "nothing left to retire"


def test_two_s3_imports_at_once_use_their_own_objects(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    """VM Import reads the object after ImportSnapshot returns: a key shared by two machines would be
    deleted under the slower import by the faster run."""
    moto.client("s3").create_bucket(Bucket="images-bucket")
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "vmie.amazonaws.com"}}]}
    moto.client("iam").create_role(RoleName="vmimport", AssumeRolePolicyDocument=json.dumps(trust))
    moto.barrier("ImportSnapshot")
    moto.barrier("RegisterImage")
    settings = settings_for(upload="s3-import", s3_bucket="images-bucket", s3_prefix="up/")
    a, b = race(publisher(settings, disk, tmp_path / "a"), publisher(settings, disk, tmp_path / "b"))

    imports = moto.requests("ImportSnapshot")
    assert len({r["params"]["DiskContainer.UserBucket.S3Key"] for r in imports}) == 2
    assert len({r["params"]["ClientToken"] for r in imports}) == 2
    (image,) = amis(moto)
    assert a.artifacts[0].id == b.artifacts[0].id == image["ImageId"]
    assert snapshots(moto) == used(image)
    assert moto.client("s3").list_objects_v2(Bucket="images-bucket").get("KeyCount") == 0


def test_a_register_whose_snapshot_was_deleted_meanwhile_adopts_the_ami_that_won(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    """A run that reused an upload found by its digest tag, whose run lost the race and deleted it:
    RegisterImage answers InvalidSnapshot.NotFound, and the AMI of this name and digest is adopted."""
    settings = settings_for()
    (winner,) = publisher(settings, disk, tmp_path / "a")().artifacts
    ebs = moto.client("ebs")
    gone = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    moto.client("ec2").delete_snapshot(SnapshotId=gone)
    tags = {"imgpub:name": "golden", "imgpub:version": "1.2.3", "imgpub:digest": "d" * 24}
    params = register_params(
        image_info(disk), settings, name="golden-1.2.3", snapshot_id=gone, volume_size=1, tags=tags
    )
    ledger = Ledger()
    image_id = register_image(moto.client("ec2"), Caller("t", FAST), "us-east-1", params, ledger)
    assert image_id == winner.id and not ledger.ours(image_id)
    assert [a.image_id for a in ledger.adopted()] == [winner.id]
