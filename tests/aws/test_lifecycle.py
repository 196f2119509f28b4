"""Every version at once on AWS (issue 12), end to end against the strict moto server through
imgpub.lifecycle and the CLI: the version list (by imgpub's tags only), prune (deprecate everywhere,
then delete AMIs and snapshots everywhere, public permission first), a delete stopped between
DeregisterImage and DeleteSnapshot finished by the next prune, the version matrix, and reconcile
filling a region without an upload. Ages come from an injected clock and backdated AMIs: no sleeping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import imgpub
from aws.motoaws import Moto, context
from imgpub.cli import app
from imgpub.disk import DiskImage
from imgpub.lifecycle import LifecycleResult, matrix, prune, reconcile, version_cells
from imgpub.retry import FAST
from imgpub_aws import AwsProvider
from imgpub_aws.share import deprecation_due, first_valid_minute

KEY = "arn:aws:kms:{region}:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER = "210987654321"
TAGS = {"imgpub:name", "imgpub:version", "imgpub:digest", "imgpub:managed-by"}


@dataclass
class Clock:
    """Real time shifted by `offset`: ahead of the moto server's clock, never behind it (EC2 refuses
    a DeprecateAt in the past), and moved forward by the test instead of waiting."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **kw: float) -> None:
        self.offset += timedelta(**kw)


@dataclass
class Site:
    """A folder with the test disk and manifests of the image `demo`, published to the moto server."""

    folder: Path
    moto: Moto
    clock: Clock = field(default_factory=Clock)

    def manifest(self, version: str, target: str = "", policy: str = "") -> Path:
        path = self.folder / f"demo-{version}.yaml"
        path.write_text(
            f"image: {{name: demo, version: '{version}', source: disk.raw, boot: uefi}}\n"
            f"{policy}"
            "targets:\n"
            f"  - name: ami\n    provider: aws\n    region: us-east-1\n"
            f"    endpoint_url: '{self.moto.url}'\n    concurrency: 4\n{target}"
        )
        return path

    def publish(self, version: str, target: str = "") -> None:
        result = imgpub.publish(self.manifest(version, target), state_dir=self.folder / "state", retry=FAST)
        assert result.ok, [t.error for t in result.targets]

    def run(self, command: Callable[..., LifecycleResult], path: Path, **kw: Any) -> LifecycleResult:
        kw.setdefault("retry", FAST)
        return command(path, state_dir=self.folder / "state", now=self.clock, **kw)

    def amis(self, region: str = "us-east-1", version: str | None = None) -> list[dict[str, Any]]:
        images = self.moto.client("ec2", region).describe_images(
            Owners=["self"], IncludeDeprecated=True, IncludeDisabled=True
        )["Images"]
        return [
            i
            for i in images
            if version is None or (tag(i, "imgpub:version") == version and tag(i, "imgpub:name") == "demo")
        ]

    def snapshots(self, region: str = "us-east-1") -> list[dict[str, Any]]:
        return list(self.moto.client("ec2", region).describe_snapshots(OwnerIds=["self"])["Snapshots"])

    def backdate(self, version: str, regions: list[str], **kw: datetime) -> None:
        for region in regions:
            for ami in self.amis(region, version):
                self.moto.backdate(region, ami["ImageId"], **kw)


def tag(resource: dict[str, Any], key: str) -> str | None:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}.get(key)


def days_ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


@pytest.fixture
def site(tmp_path: Path, moto: Moto, disk: DiskImage) -> Site:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "disk.raw").symlink_to(disk.path)
    return Site(folder, moto)


def strangers(site: Site) -> dict[str, str]:
    """An AMI named like a demo version but without imgpub's tags, and one of another imgpub image:
    neither may ever be listed or touched."""
    ec2, ebs = site.moto.client("ec2"), site.moto.client("ebs")
    made = {}
    for name, tags in (("demo-1.0.0-by-hand", []), ("other-1.0.0", [("other", "1.0.0")])):
        snap = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
        ebs.complete_snapshot(SnapshotId=snap, ChangedBlocksCount=0)
        spec = [
            {"Key": k, "Value": v}
            for n, ver in tags
            for k, v in (("imgpub:name", n), ("imgpub:version", ver), ("imgpub:managed-by", "imgpub"))
        ]
        specs = [{"ResourceType": "image", "Tags": spec}] if spec else []
        ami = ec2.register_image(
            Name=name,
            Architecture="x86_64",
            BootMode="uefi",
            RootDeviceName="/dev/xvda",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}],
            TagSpecifications=specs,
        )["ImageId"]
        if spec:
            ec2.create_tags(Resources=[snap], Tags=spec)
        site.moto.backdate("us-east-1", ami, created=days_ago(500), deprecated=days_ago(400))
        made[ami] = snap
    return made


def test_releases_are_every_version_in_every_region_found_by_tag(site: Site) -> None:
    two = "    regions: [eu-west-1]\n    optional_regions: [ap-south-1]\n"
    site.publish("1.0.0", "    regions: [eu-west-1]\n")
    site.publish("1.1.0", two)
    strangers(site)
    site.backdate("1.0.0", ["us-east-1", "eu-west-1"], created=days_ago(40))
    ctx = context(site.folder, now=site.clock)
    settings = imgpub.load_manifest(site.manifest("1.1.0", two)).targets[0]
    sent = len(site.moto.requests())
    releases = {r.version: r for r in AwsProvider().releases("demo", settings, ctx)}  # type: ignore[arg-type]
    listed = site.moto.requests()[sent:]

    assert set(releases) == {"1.0.0", "1.1.0"}, "only the imgpub:name=demo AMIs"
    old, new = releases["1.0.0"], releases["1.1.0"]
    assert old.regions == ("us-east-1", "eu-west-1") and new.regions == (
        "us-east-1",
        "eu-west-1",
        "ap-south-1",
    )
    assert old.state == new.state == "active" and old.drift == new.drift == ()
    assert old.created is not None and abs((site.clock() - old.created).days - 40) <= 1
    assert {a.region for a in new.artifacts if a.kind == "ami"} == {"us-east-1", "eu-west-1", "ap-south-1"}
    assert old.digest == tag(site.amis(version="1.0.0")[0], "imgpub:digest") and old.digest
    assert AwsProvider().regions(settings) == ["us-east-1", "eu-west-1", "ap-south-1"]  # type: ignore[arg-type]
    assert sorted(r["action"] for r in listed) == ["DescribeImages"] * 3 + ["DescribeSnapshots"] * 3, (
        "two calls per region, whatever the number of versions"
    )


def test_prune_deprecates_everywhere_then_deletes_public_first(site: Site) -> None:
    target = "    regions: [eu-west-1]\n    public: true\n"
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        site.publish(version, target)
    made = strangers(site)
    both = ["us-east-1", "eu-west-1"]
    site.backdate("1.0.0", both, created=days_ago(100))
    site.backdate("1.1.0", both, created=days_ago(40))
    policy = "retention: {deprecate_after: 30d, delete_after: 90d}\n"
    path = site.manifest("1.2.0", target, policy)

    first = site.run(prune, path, apply=True)
    assert first.exit_code == 0, [(v.version, v.error) for t in first.targets for v in t.versions]
    verdicts = {v.version: v.verdict for v in first.targets[0].versions}
    assert verdicts == {"1.2.0": "current", "1.1.0": "deprecate", "1.0.0": "deprecate"}, "two phases"
    at = first_valid_minute(site.clock()) - timedelta(minutes=1)
    for region in both:
        for version in ("1.0.0", "1.1.0"):
            (ami,) = site.amis(region, version)
            when = datetime.fromisoformat(ami["DeprecationTime"].replace("Z", "+00:00"))
            assert at <= when <= at + timedelta(minutes=1), (region, version)
        assert "DeprecationTime" not in site.amis(region, "1.2.0")[0]
    assert not site.moto.requests("DeregisterImage"), "nothing is deleted in the run that deprecates"

    site.clock.advance(minutes=10)
    before = len(site.moto.requests())
    second = site.run(prune, path, apply=True)
    assert second.exit_code == 0, [(v.version, v.error) for t in second.targets for v in t.versions]
    assert {v.version: v.verdict for v in second.targets[0].versions} == {
        "1.2.0": "current",
        "1.1.0": "leave",
        "1.0.0": "delete",
    }
    for region in both:
        assert not site.amis(region, "1.0.0")
        assert {
            tag(s, "imgpub:version") for s in site.snapshots(region) if tag(s, "imgpub:name") == "demo"
        } == {
            "1.1.0",
            "1.2.0",
        }, "the deleted version's snapshots are gone, the others kept"
        calls = [
            r
            for r in site.moto.requests()[before:]
            if r["region"] == region and r["action"] in ("ModifyImageAttribute", "DeregisterImage")
        ]
        assert [r["action"] for r in calls] == ["ModifyImageAttribute", "DeregisterImage"], "private first"
        assert len({r["params"]["ImageId"] for r in calls}) == 1
        assert calls[0]["params"]["LaunchPermission.Remove.1.Group"] == "all"
    still = {a["ImageId"] for a in site.amis()}
    assert set(made) <= still, "the untagged AMI and the other image's AMI are untouched"
    assert set(made.values()) <= {s["SnapshotId"] for s in site.snapshots()}

    again = site.run(prune, path, apply=True)
    assert [v.done for v in again.targets[0].versions if v.done] == [], "a second prune has nothing to do"


@pytest.fixture
def deprecated_old(site: Site) -> Path:
    """1.0.0 in two regions, created 200 days ago and deprecated 100 days ago; 1.1.0 current."""
    target = "    regions: [eu-west-1]\n"
    site.publish("1.0.0", target)
    site.publish("1.1.0", target)
    site.backdate("1.0.0", ["us-east-1", "eu-west-1"], created=days_ago(200), deprecated=days_ago(100))
    return site.manifest("1.1.0", target, "retention: {delete_after: 90d}\n")


def cli_env(site: Site) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "TMPDIR", "LANG", "LC_ALL")}
    return {
        **keep,
        "HOME": str(site.folder / "home"),
        "IMGPUB_STATE_DIR": str(site.folder / "state"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_COLOR": "1",
    }


def test_a_prune_killed_between_deregister_and_delete_snapshot_is_finished_next_time(
    site: Site, deprecated_old: Path
) -> None:
    argv = [sys.executable, "-m", "imgpub", "prune", str(deprecated_old), "--yes"]
    process = subprocess.Popen(argv, env=cli_env(site), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    site.moto.fault("DeleteSnapshot", kill=process.pid)  # SIGKILLed as its first DeleteSnapshot arrives
    _, err = process.communicate(timeout=120)
    assert process.returncode == -9, err.decode()
    assert site.moto.requests("DeregisterImage"), "it was killed after a DeregisterImage"
    left = [s for s in site.snapshots() + site.snapshots("eu-west-1") if tag(s, "imgpub:version") == "1.0.0"]
    assert len(left) == 2 and all(tag(s, "imgpub:deleting") for s in left), "marked before anything went"

    listed = site.run(matrix, site.manifest("1.1.0", "    regions: [eu-west-1]\n"))
    (stopped,) = [r for r in listed.targets[0].releases if r.version == "1.0.0"]
    assert stopped.state == "deleting" and not listed.in_sync
    assert ("1.0.0", "us-east-1", "missing") in version_cells(listed.targets[0])

    keep_all = site.manifest("1.1.0", "    regions: [eu-west-1]\n", "retention: {keep: 5}\n")
    finished = site.run(prune, keep_all, apply=True)
    outcome = {v.version: v for v in finished.targets[0].versions}
    assert outcome["1.0.0"].verdict == "finish" and outcome["1.0.0"].done, "whatever the policy says"
    assert finished.exit_code == 0
    for region in ("us-east-1", "eu-west-1"):
        assert not site.amis(region, "1.0.0")
        assert not [s for s in site.snapshots(region) if tag(s, "imgpub:version") == "1.0.0"]
    assert len(site.amis(version="1.1.0")) == 1


def test_snapshots_ec2_still_counts_in_use_after_deregister(site: Site, deprecated_old: Path) -> None:
    site.moto.in_use_after_deregister(2)  # within FAST's 5 attempts: waited out
    done = site.run(prune, deprecated_old, apply=True)
    assert done.exit_code == 0
    assert not [s for s in site.snapshots() if tag(s, "imgpub:version") == "1.0.0"]

    site.publish("1.0.0", "    regions: [eu-west-1]\n")
    site.backdate("1.0.0", ["us-east-1", "eu-west-1"], created=days_ago(200), deprecated=days_ago(100))
    site.moto.in_use_after_deregister(50)  # longer than the retries: the version fails, named
    stuck = site.run(prune, deprecated_old, apply=True)
    (failed,) = [v for v in stuck.targets[0].versions if v.error]
    assert stuck.exit_code == 1 and "still counts" in (failed.error or "")
    assert "the next prune deletes them" in (failed.error or "")
    site.moto.in_use_after_deregister(0)
    states = {r.version: r.state for r in site.run(matrix, deprecated_old).targets[0].releases}
    assert states["1.0.0"] == "deleting"


def test_an_upload_no_ami_uses_yet_is_pending_and_left_alone(site: Site, deprecated_old: Path) -> None:
    """A completed upload of 0.9.0 without its AMI (a publish stopped before RegisterImage, or one
    about to register) carries no delete mark: it is pending, never taken for a stopped delete."""
    ebs = site.moto.client("ebs")
    tags = [{"Key": k, "Value": v} for k, v in (("imgpub:name", "demo"), ("imgpub:version", "0.9.0"))]
    upload = ebs.start_snapshot(VolumeSize=1, Tags=tags)["SnapshotId"]
    ebs.complete_snapshot(SnapshotId=upload, ChangedBlocksCount=0)
    states = {r.version: r.state for r in site.run(matrix, deprecated_old).targets[0].releases}
    assert states == {"0.9.0": "pending", "1.0.0": "deprecated", "1.1.0": "active"}
    result = site.run(prune, deprecated_old, apply=True)
    assert {v.version: v.verdict for v in result.targets[0].versions}["1.0.0"] == "delete"
    assert upload in {s["SnapshotId"] for s in site.snapshots()}


def test_lost_replies_and_two_prunes_at_once(site: Site, deprecated_old: Path) -> None:
    for action in ("DeregisterImage", "DeleteSnapshot", "CreateTags"):
        site.moto.fault(action, lost_reply=True, region="us-east-1")
    site.moto.barrier("DescribeImages", region="eu-west-1")
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(site.run, prune, deprecated_old, apply=True) for _ in range(2)]
        results = [r.result() for r in runs]
    for result in results:
        assert result.exit_code == 0, [(v.version, v.error) for v in result.targets[0].versions]
    for region in ("us-east-1", "eu-west-1"):
        assert not site.amis(region, "1.0.0")
        assert not [s for s in site.snapshots(region) if tag(s, "imgpub:version") == "1.0.0"]
    assert len(site.amis(version="1.1.0")) == 1


def test_a_snapshot_another_ami_uses_is_kept(site: Site, deprecated_old: Path) -> None:
    (old,) = site.amis("us-east-1", "1.0.0")
    snap = old["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    ec2 = site.moto.client("ec2")
    by_hand = ec2.register_image(
        Name="registered-by-hand",
        Architecture="x86_64",
        BootMode="uefi",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}],
    )["ImageId"]
    result = site.run(prune, deprecated_old, apply=True)
    assert result.exit_code == 0
    (deleted,) = [v for v in result.targets[0].versions if v.verdict == "delete"]
    assert any(f"kept snapshot {snap}: {by_hand} uses it" in line for line in deleted.done)
    assert snap in {s["SnapshotId"] for s in site.snapshots()}
    versions = {r.version for r in site.run(matrix, deprecated_old).targets[0].releases}
    assert versions == {"1.1.0"}, "a snapshot handed over to another AMI is not this image's any more"


def test_the_version_matrix_and_status_cli(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    site.publish("1.0.0", "    regions: [eu-west-1]\n")
    site.backdate("1.0.0", ["us-east-1", "eu-west-1"], created=days_ago(60), deprecated=days_ago(1))
    site.moto.outcome("CopyImage", "failed", region="ap-south-1")
    optional = "    regions: [eu-west-1]\n    optional_regions: [ap-south-1]\n"
    site.publish("1.1.0", optional)  # the optional copy fails: a warning, and a failed AMI left
    site.publish("1.2.0", optional)
    path = site.manifest("1.2.0", optional)

    found = site.run(matrix, path)
    cells = {(v, r): s for v, r, s in version_cells(found.targets[0])}
    assert cells[("1.0.0", "us-east-1")] == cells[("1.0.0", "eu-west-1")] == "deprecated"
    assert cells[("1.0.0", "ap-south-1")] == "missing"
    assert {cells[("1.1.0", r)] for r in ("us-east-1", "eu-west-1", "ap-south-1")} == {"failed"}
    assert {cells[("1.2.0", r)] for r in ("us-east-1", "eu-west-1", "ap-south-1")} == {"active"}
    assert not found.in_sync

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    shown = CliRunner().invoke(app, ["status", str(path), "--all-versions", "--detailed-exitcode"])
    assert shown.exit_code == 2, shown.output
    assert "1.0.0" in shown.stdout and "missing" in shown.stdout and "failed" in shown.stdout
    data = json.loads(CliRunner().invoke(app, ["status", str(path), "--all-versions", "--json"]).stdout)
    assert data["in_sync"] is False
    assert {"version": "1.0.0", "region": "ap-south-1", "state": "missing"} in data["targets"][0]["cells"]

    site.moto.fault("DescribeImages", region="ap-south-1", status=403, code="UnauthorizedOperation", count=9)
    skipped = site.run(matrix, path)
    assert skipped.exit_code == 0, "an optional region that does not answer never fails the listing"
    newest = next(r for r in skipped.targets[0].releases if r.version == "1.2.0")
    assert newest.regions == ("us-east-1", "eu-west-1")
    assert any(d.startswith("ap-south-1: not checked") for d in newest.drift)

    site.moto.reset_faults()  # the listing answers, then the sharing look-up there does not
    shared = site.manifest("1.2.0", optional + f"    share_accounts: ['{OTHER}']\n")
    site.moto.fault("DescribeImages", region="ap-south-1", after=1, status=403, code="UnauthorizedOperation")
    later = site.run(matrix, shared)
    assert later.exit_code == 0
    newest = next(r for r in later.targets[0].releases if r.version == "1.2.0")
    assert newest.regions == ("us-east-1", "eu-west-1") and newest.drift[0].startswith(
        "ap-south-1: not checked"
    )
    assert f"us-east-1: {site.amis(version='1.2.0')[0]['ImageId']} lacks launch permission" in "".join(
        newest.drift
    )


def test_prune_cli_with_yes_and_json(site: Site) -> None:
    site.publish("1.0.0")
    site.publish("1.1.0")
    path = site.manifest("1.1.0", policy="retention: {keep: 0, deprecate_after: 1d}\n")
    site.backdate("1.0.0", ["us-east-1"], created=days_ago(3))
    site.moto.fault("EnableImageDeprecation", lost_reply=True)  # set, then the reply lost: sent again
    applied = CliRunner().invoke(app, ["prune", str(path), "--yes", "--json"])
    assert applied.exit_code == 0, applied.output
    report = json.loads(applied.stdout)
    versions = {v["version"]: v for v in report["targets"][0]["versions"]}
    assert versions["1.1.0"]["action"] == "current" and versions["1.0.0"]["action"] == "deprecate"
    (line,) = versions["1.0.0"]["done"]
    assert line.startswith("us-east-1: ami-") and "deprecated from" in line and "newest kept: 1.1.0" in line
    assert site.amis(version="1.0.0")[0]["DeprecationTime"]
    assert len(site.moto.requests("EnableImageDeprecation")) == 2


def test_reconcile_fills_a_missing_region_by_copy_and_repairs_tags(site: Site) -> None:
    base = (
        f"    regions: [eu-west-1]\n    encrypted: true\n    kms_key_id: {KEY.format(region='us-east-1')}\n"
        f"    share_accounts: ['{OTHER}']\n    tags: {{team: os}}\n    kms_key_ids:\n"
        f"      eu-west-1: {KEY.format(region='eu-west-1')}\n"
    )
    site.publish("1.0.0", base)
    site.publish("1.1.0", base)
    site.backdate("1.0.0", ["us-east-1", "eu-west-1"], created=days_ago(60), deprecated=days_ago(1))
    (copy,) = site.amis("eu-west-1", "1.1.0")
    site.moto.client("ec2", "eu-west-1").delete_tags(Resources=[copy["ImageId"]], Tags=[{"Key": "team"}])
    wider = base.replace("    tags: {team: os}\n", "    tags: {team: os, tier: gold}\n")
    wider += f"      ap-south-1: {KEY.format(region='ap-south-1')}\n    optional_regions: [ap-south-1]\n"
    path = site.manifest("1.1.0", wider)

    before = site.run(matrix, path)
    drift = {r.version: r.drift for r in before.targets[0].releases}
    assert f"eu-west-1: {copy['ImageId']} lacks tags team=os, tier=gold" in drift["1.1.0"]
    planned = site.run(reconcile, path, apply=False)
    reasons = {v.version: v.reason for v in planned.targets[0].versions}
    assert reasons["1.0.0"].startswith("copy to ap-south-1 (missing)")
    sent = len(site.moto.requests())

    done = site.run(reconcile, path)
    assert done.exit_code == 0, [(v.version, v.error) for v in done.targets[0].versions]
    later = site.moto.requests()[sent:]
    assert not [r for r in later if r["action"] in ("StartSnapshot", "PutSnapshotBlock", "ImportSnapshot")]
    copies = [r for r in later if r["action"] == "CopyImage"]
    assert {r["region"] for r in copies} == {"ap-south-1"} and len(copies) == 2
    for request in copies:
        p = request["params"]
        assert p["KmsKeyId"] == KEY.format(region="ap-south-1") and p["Encrypted"] == "true"
        assert {p["TagSpecification.1.ResourceType"], p["TagSpecification.2.ResourceType"]} == {
            "image",
            "snapshot",
        }
    for version in ("1.0.0", "1.1.0"):
        (made,) = site.amis("ap-south-1", version)
        assert TAGS | {"team", "tier"} <= {t["Key"] for t in made["Tags"]}
    (old_copy,) = site.amis("ap-south-1", "1.0.0")
    assert old_copy["DeprecationTime"], "a copy of a deprecated version is deprecated too"
    assert "DeprecationTime" not in site.amis("ap-south-1", "1.1.0")[0]
    (repaired,) = site.amis("eu-west-1", "1.1.0")
    assert tag(repaired, "team") == "os" and tag(repaired, "tier") == "gold"
    shared = site.moto.client("ec2", "ap-south-1").describe_image_attribute(
        ImageId=site.amis("ap-south-1", "1.1.0")[0]["ImageId"], Attribute="launchPermission"
    )
    assert shared["LaunchPermissions"] == [{"UserId": OTHER}]

    site.clock.advance(minutes=5)
    after = site.run(matrix, path)
    assert after.in_sync, [(r.version, r.drift) for r in after.targets[0].releases]
    again = site.run(reconcile, path)
    assert [v.done for v in again.targets[0].versions if v.done] == [], "nothing left to do"


def test_deprecation_times_ec2_takes() -> None:
    now = datetime(2026, 11, 29, 12, 0, 40, tzinfo=UTC)
    assert first_valid_minute(now) == datetime(2026, 11, 29, 12, 2, tzinfo=UTC)
    assert first_valid_minute(now.replace(second=0)) == datetime(2026, 11, 29, 12, 1, tzinfo=UTC)
    later = now + timedelta(days=30)
    assert deprecation_due(None, later, now) == later.replace(second=0)
    assert deprecation_due(None, now - timedelta(days=3), now) == first_valid_minute(now), "due: now"
    assert deprecation_due("2026-11-28T00:00:00.000Z", now - timedelta(days=3), now) is None
    assert deprecation_due("2026-11-28T00:00:00.000Z", later, now, postpone=False) is None
    assert deprecation_due("2027-11-28T00:00:00.000Z", later, now, postpone=False) == later.replace(second=0)
