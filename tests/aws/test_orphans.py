"""Snapshots no AMI uses: a --replace killed between DeregisterImage and DeleteSnapshot, re-run on the
same machine (the journal finishes it) or on another one (found by tag); plan shows what publish
deletes, status reports every orphan, other versions' included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aws.motoaws import Moto, context, image_info
from imgpub.disk import DiskImage
from imgpub.journal import Journal
from imgpub.progress import RecordingProgress
from imgpub.provider import Published
from imgpub_aws import AwsProvider
from imgpub_aws.clients import AwsClients
from imgpub_aws.replace import JOURNAL_KEY

OLD, NEW = "a" * 24, "b" * 24


class Killed(BaseException):
    """The process dies here: nothing after it runs (not an Exception, so nothing cleans up)."""


@pytest.fixture
def kill_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Operations (e.g. "DeleteSnapshot") at whose first request the run dies, before it is sent."""
    at: list[str] = []
    watched = AwsClients._watched

    def hooked(client: Any) -> Any:
        def die(**kw: Any) -> None:
            op = kw["event_name"].rsplit(".", 1)[-1]
            if op in at:
                at.remove(op)
                raise Killed(op)

        client.meta.events.register("before-send", die)
        return watched(client)

    monkeypatch.setattr(AwsClients, "_watched", staticmethod(hooked))
    yield at


def snapshots(moto: Moto, region: str = "us-east-1") -> set[str]:
    snaps = moto.client("ec2", region).describe_snapshots(OwnerIds=["self"])["Snapshots"]
    return {s["SnapshotId"] for s in snaps}


def publish(settings: Any, disk: DiskImage, journal: Journal, **kw: Any) -> Published:
    version = kw.pop("version", "1.2.3")
    assert journal.path is not None
    ctx = context(journal.path.parent, journal=journal, **kw)
    return AwsProvider().publish(image_info(disk, version=version), settings, disk, ctx)


def killed_replace(
    moto: Moto, settings: Any, disk: DiskImage, tmp_path: Path, kill_at: list[str]
) -> tuple[set[str], Journal]:
    """Publish OLD, then --replace with NEW killed right before its first DeleteSnapshot: the old AMI is
    deregistered, its snapshots are left. Returns them and the killed run's journal."""
    (old,) = publish(settings, disk, Journal(tmp_path / "first.json"), digest=OLD).artifacts
    journal = Journal(tmp_path / "killed.json")
    kill_at.append("DeleteSnapshot")
    with pytest.raises(Killed):
        publish(settings, disk, journal, digest=NEW, replace=True)
    left = set(old.extra["snapshots"])
    assert left <= snapshots(moto) and len(moto.requests("DeregisterImage")) == 1
    return left, Journal(journal.path)


def test_a_replace_killed_before_deleting_the_old_snapshots_is_finished_by_the_next_run(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path, kill_at: list[str]
) -> None:
    settings = settings_for()
    left, journal = killed_replace(moto, settings, disk, tmp_path, kill_at)
    assert [r["deregistered"] for r in journal.get(JOURNAL_KEY)] == [True]
    plan = AwsProvider().plan(image_info(disk), settings, context(tmp_path, digest=NEW, journal=journal))
    assert [(a.kind, a.resource) for a in plan.actions] == [("delete", ", ".join(sorted(left)))]

    progress = RecordingProgress()
    again = publish(settings, disk, journal, digest=NEW, progress=progress)
    assert again.changed, "not 'unchanged': the old snapshots went"
    assert left.isdisjoint(snapshots(moto)) and journal.get(JOURNAL_KEY) is None
    assert any(n.startswith("deleted the snapshots of replaced ami-") for n in progress.notes), progress.notes


def test_on_another_machine_the_orphans_are_found_by_tag_shown_and_deleted(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path, kill_at: list[str]
) -> None:
    settings = settings_for()
    left, _ = killed_replace(moto, settings, disk, tmp_path, kill_at)
    elsewhere = Journal(tmp_path / "other-machine.json")
    (snap,) = left

    status = AwsProvider().status(
        image_info(disk), settings, context(tmp_path, digest=NEW, journal=elsewhere)
    )
    assert f"us-east-1: snapshot {snap} of golden 1.2.3 is an orphan of replaced content (digest {OLD})" in (
        " ".join(status.drift)
    )
    plan = AwsProvider().plan(image_info(disk), settings, context(tmp_path, digest=NEW, journal=elsewhere))
    assert [(a.kind, a.resource, a.region) for a in plan.actions] == [("delete", snap, "us-east-1")]
    assert plan.conflict is None

    progress = RecordingProgress()
    again = publish(settings, disk, elsewhere, digest=NEW, progress=progress)
    assert again.changed and snap not in snapshots(moto)
    assert any(f"deleted orphan snapshot {snap}" in n for n in progress.notes), progress.notes
    assert AwsProvider().status(image_info(disk), settings, context(tmp_path, digest=NEW)).drift == []


def test_status_reports_other_versions_orphans_and_publish_leaves_them(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path, kill_at: list[str]
) -> None:
    settings = settings_for()
    left, _ = killed_replace(moto, settings, disk, tmp_path, kill_at)
    (snap,) = left
    publish(settings, disk, Journal(tmp_path / "v2.json"), digest=NEW, version="2.0.0")
    assert snap in snapshots(moto), "another version's orphan is not this publish's to delete"

    drift = (
        AwsProvider().status(image_info(disk, version="2.0.0"), settings, context(tmp_path, digest=NEW)).drift
    )
    (line,) = [d for d in drift if snap in d]
    assert line.startswith(f"us-east-1: snapshot {snap} of golden 1.2.3 is an orphan: no AMI uses it")
    assert f"aws ec2 delete-snapshot --region us-east-1 --snapshot-id {snap}" in line


def test_an_unused_upload_of_this_content_is_reported_and_never_deleted_by_another_run(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    """It may be a concurrent run's upload a moment before its RegisterImage."""
    settings = settings_for()
    (image,) = publish(settings, disk, Journal(tmp_path / "a.json")).artifacts
    tags = [
        {"Key": "imgpub:name", "Value": "golden"},
        {"Key": "imgpub:version", "Value": "1.2.3"},
        {"Key": "imgpub:digest", "Value": "d" * 24},
    ]
    ebs = moto.client("ebs")
    spare = ebs.start_snapshot(VolumeSize=1, Tags=tags)["SnapshotId"]
    ebs.complete_snapshot(SnapshotId=spare, ChangedBlocksCount=0)

    drift = AwsProvider().status(image_info(disk), settings, context(tmp_path)).drift
    (line,) = drift
    assert line.startswith(
        f"us-east-1: snapshot {spare} of golden 1.2.3 is an orphan: an upload of this content"
    )
    assert f"that {image.id} does not use" in line
    plan = AwsProvider().plan(image_info(disk), settings, context(tmp_path))
    assert plan.actions == []
    again = publish(settings, disk, Journal(tmp_path / "b.json"))
    assert not again.changed and spare in snapshots(moto)


def test_a_copy_deregistered_by_hand_leaves_a_snapshot_publish_deletes_as_it_copies_again(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    """CopyImage makes a copy's snapshot with its AMI: an unused one of this digest in a copy region is
    no run's upload, so publish deletes it (in the upload region it never would)."""
    settings = settings_for(regions=["eu-west-1"])
    first = publish(settings, disk, Journal(tmp_path / "a.json"))
    copy = next(a for a in first.artifacts if a.region == "eu-west-1")
    moto.client("ec2", "eu-west-1").deregister_image(ImageId=copy.id)
    (snap,) = copy.extra["snapshots"]

    drift = AwsProvider().status(image_info(disk), settings, context(tmp_path)).drift
    assert (
        f"eu-west-1: snapshot {snap} of golden 1.2.3 is an orphan of a copy deregistered since"
        in " ".join(drift)
    )
    plan = AwsProvider().plan(image_info(disk), settings, context(tmp_path))
    assert ("delete", snap, "eu-west-1") in [(a.kind, a.resource, a.region) for a in plan.actions]

    again = publish(settings, disk, Journal(tmp_path / "a.json"))
    (new_copy,) = [a for a in again.artifacts if a.region == "eu-west-1"]
    assert snapshots(moto, "eu-west-1") == set(new_copy.extra["snapshots"])
    assert AwsProvider().status(image_info(disk), settings, context(tmp_path)).drift == []
