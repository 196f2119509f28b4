"""examples/sandbox/imgpub.yaml (aws, gcp, azure and local targets) through the real `imgpub` command.

The tests run in file order against one set of back ends: publish, publish again, plan, status, then
a new version with AWS refusing, as a user (or a CI job) would run them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from e2e.stack import BUCKET, PROJECT, Clouds
from imgpub.disk import open_image
from imgpub.disk.digest import content_digest
from imgpub.disk.zeros import is_zero

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "sandbox" / "imgpub.yaml"
SOURCE = ROOT / "examples" / "quickstart" / "disk.qcow2"
IMGPUB = Path(sys.executable).parent / "imgpub"
EBS_BLOCK = 512 * 1024
RG = "subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/sandbox/providers/Microsoft.Compute"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    report: dict[str, Any]

    def target(self, name: str) -> dict[str, Any]:
        return next(t for t in self.report["targets"] if t["name"] == name)

    def artifacts(self, name: str, kind: str) -> list[dict[str, Any]]:
        return [a for a in self.target(name)["artifacts"] if a["kind"] == kind]


def imgpub(clouds: Clouds, command: str, *args: str, **env: str) -> Run:
    report = clouds.out.parent / f"report-{command}.json"
    report.unlink(missing_ok=True)
    argv = [str(IMGPUB), command, str(MANIFEST), *args]
    if command == "publish":
        argv += ["--report", str(report)]
    done = subprocess.run(argv, env=clouds.env(**env), capture_output=True, text=True, timeout=120)
    if command == "publish":
        data = json.loads(report.read_text()) if report.exists() else {}
    elif "--json" in args:
        data = json.loads(done.stdout)
    else:
        data = {}
    return Run(done.returncode, done.stdout, done.stderr, data)


@dataclass
class Counts:
    """What reached each back end so far: uploads and creations."""

    ebs_blocks: int
    amis: int
    gcs_uploads: int
    gce_inserts: int
    page_writes: int
    arm_puts: int

    @classmethod
    def of(cls, clouds: Clouds) -> Counts:
        inserts = [c for c in clouds.gce.calls("POST") if urlsplit(c).path.endswith("/global/images")]
        return cls(
            ebs_blocks=len(clouds.moto.requests("PutSnapshotBlock")),
            amis=len(clouds.moto.requests("RegisterImage")) + len(clouds.moto.requests("CopyImage")),
            gcs_uploads=len(_gcs_uploads(clouds)),
            gce_inserts=len(inserts),
            page_writes=len(clouds.azure.storage.pages()),
            arm_puts=sum(1 for method, _ in clouds.azure.arm.requests if method == "PUT"),
        )


def _gcs_uploads(clouds: Clouds) -> list[Any]:
    return [r for r in clouds.gcs.requests if r.method in ("POST", "PUT") and r.path.startswith("/upload/")]


@pytest.fixture(scope="module")
def first(clouds: Clouds) -> Run:
    return imgpub(clouds, "publish")


def test_publish_reaches_every_target(first: Run) -> None:
    assert first.code == 0, first.stderr
    assert first.report["ok"] is True
    assert {t["name"]: (t["status"], t["changed"]) for t in first.report["targets"]} == {
        "aws": ("published", True),
        "gcp": ("published", True),
        "azure": ("published", True),
        "folder": ("published", True),
    }
    assert {a["region"] for a in first.artifacts("aws", "ami")} == {"us-east-1", "eu-west-1"}
    assert all(a["id"].startswith("ami-") for a in first.artifacts("aws", "ami"))
    assert [a["id"] for a in first.artifacts("gcp", "gce-image")] == ["sandbox-1-0-0"]
    assert [a["id"].lower() for a in first.artifacts("azure", "image")] == [
        f"/{RG}/images/sandbox-1.0.0".lower()
    ]
    (version,) = first.artifacts("azure", "gallery-image-version")
    assert version["id"].endswith("/galleries/sandbox_gallery/images/sandbox/versions/1.0.0")
    assert {a["kind"] for a in first.target("folder")["artifacts"]} == {"raw", "vhd", "gce"}
    for artifact in first.target("folder")["artifacts"]:
        assert Path(artifact["id"]).is_file()
    with open_image(SOURCE) as img:
        digest = content_digest(img)
    assert first.report["image"]["content_digest"] == digest
    assert first.stdout.splitlines()[0] == f"sandbox 1.0.0  content {digest[:16]}  (publish)"


def test_ami_snapshot_holds_exactly_the_source_blocks(clouds: Clouds, first: Run) -> None:
    (home,) = [a for a in first.artifacts("aws", "ami") if a["region"] == "us-east-1"]
    image = clouds.moto.client("ec2").describe_images(ImageIds=[home["id"]])["Images"][0]
    snapshot = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    with open_image(SOURCE) as img:
        expected = {i: b for i, b in img.blocks(EBS_BLOCK) if not is_zero(b, 0, len(b))}
        size_gib = -(-img.virtual_size // (1 << 30))
    assert expected, "the quickstart disk has data"
    assert clouds.moto.blocks(snapshot) == expected
    assert image["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] >= size_gib
    copies = clouds.moto.client("ec2", "eu-west-1").describe_images(Owners=["self"])["Images"]
    assert [c["ImageId"] for c in copies] == [
        a["id"] for a in first.artifacts("aws", "ami") if a["region"] == "eu-west-1"
    ]


def test_gce_image_exists_and_its_upload_is_gone(clouds: Clouds, first: Run) -> None:
    image = clouds.gce.image(PROJECT, "sandbox-1-0-0")
    assert image is not None and image["status"] == "READY"
    assert image["family"] == "sandbox"
    assert list(clouds.storage_client().list_blobs(BUCKET)) == []
    assert _gcs_uploads(clouds), "it was uploaded, then deleted"


def test_azure_images_exist_and_the_page_blob_is_gone(clouds: Clouds, first: Run) -> None:
    image = clouds.azure.arm.get("images/sandbox-1.0.0")
    assert image is not None and image["properties"]["provisioningState"] == "Succeeded"
    version = clouds.azure.arm.get("galleries/sandbox_gallery/images/sandbox/versions/1.0.0")
    assert version is not None and version["_regions"] == ["westeurope", "northeurope"]
    assert clouds.azure.storage.pages(), "the VHD went up as page writes"
    assert list(clouds.azure.container_client().list_blobs()) == []
    assert clouds.azure.identity.resources, "the CLI got its ARM token from the managed identity endpoint"


def test_second_publish_changes_nothing_and_uploads_nothing(
    clouds: Clouds, first: Run, tmp_path: Path
) -> None:
    before = Counts.of(clouds)
    assert all(vars(before).values()), before  # the first publish went through every back end
    local = {a["id"]: Path(a["id"]).stat().st_mtime_ns for a in first.target("folder")["artifacts"]}
    outputs, summary = tmp_path / "github_output", tmp_path / "step_summary"
    again = imgpub(
        clouds,
        "publish",
        GITHUB_ACTIONS="true",
        GITHUB_OUTPUT=str(outputs),
        GITHUB_STEP_SUMMARY=str(summary),
    )
    assert again.code == 0, again.stderr
    assert {t["name"]: (t["status"], t["changed"]) for t in again.report["targets"]} == {
        "aws": ("unchanged", False),
        "gcp": ("unchanged", False),
        "azure": ("unchanged", False),
        "folder": ("unchanged", False),
    }
    assert Counts.of(clouds) == before
    assert {p: Path(p).stat().st_mtime_ns for p in local} == local
    lines = outputs.read_text().splitlines()
    amis = {a["region"]: a["id"] for a in first.artifacts("aws", "ami")}
    assert f"aws_ami_us_east_1={amis['us-east-1']}" in lines
    assert f"aws_ami_eu_west_1={amis['eu-west-1']}" in lines
    assert "gcp_gce_image=sandbox-1-0-0" in lines and "ok=true" in lines
    assert "azure_status=unchanged" in lines
    table = summary.read_text()
    assert table.startswith("### imgpub publish: sandbox 1.0.0")
    assert "| gcp | gcp | unchanged |" in table and "| folder | local | unchanged |" in table


def test_plan_has_nothing_to_do(clouds: Clouds, first: Run) -> None:
    before = Counts.of(clouds)
    plan = imgpub(clouds, "plan", "--json")
    assert plan.code == 0, plan.stderr
    assert {t["name"]: t["plan"]["actions"] for t in plan.report["targets"]} == {
        "aws": [],
        "gcp": [],
        "azure": [],
        "folder": [],
    }
    assert Counts.of(clouds) == before


def test_status_lists_the_artifacts_without_drift(clouds: Clouds, first: Run) -> None:
    status = imgpub(clouds, "status", "--json")
    assert status.code == 0, status.stderr
    targets = {t["name"]: t for t in status.report["targets"]}
    assert set(targets) == {"aws", "gcp", "azure", "folder"}
    for name, target in targets.items():
        published = {(a["kind"], a["id"]) for a in first.target(name)["artifacts"]}
        listed = {(a["kind"], a["id"]) for a in target["artifacts"]}
        assert published <= listed, name
        assert target["drift"] == [], name


def test_one_cloud_failing_leaves_the_others_published(clouds: Clouds, first: Run) -> None:
    clouds.moto.fault("StartSnapshot", status=403, code="AccessDeniedException", count=50,
                      message="User is not authorized to perform: ebs:StartSnapshot")  # fmt: skip
    run = imgpub(clouds, "publish", IMGPUB_SANDBOX_VERSION="1.0.1")
    assert run.code == 1
    statuses = {t["name"]: t["status"] for t in run.report["targets"]}
    assert statuses == {"aws": "failed", "gcp": "published", "azure": "published", "folder": "published"}
    error = run.target("aws")["error"]
    assert "\n" not in error and "ebs:StartSnapshot" in error
    assert "Traceback" not in run.stdout + run.stderr
    shown = [line for line in run.stdout.splitlines() if "ebs:StartSnapshot" in line]
    assert len(shown) == 1 and shown[0].startswith("aws (aws): FAILED: "), run.stdout
    assert run.stdout.rstrip().endswith("1 of 4 target(s) failed: aws")
    assert clouds.gce.image(PROJECT, "sandbox-1-0-1") is not None
    assert clouds.azure.arm.get("galleries/sandbox_gallery/images/sandbox/versions/1.0.1") is not None
    assert (clouds.out / "sandbox" / "1.0.1" / "disk.raw").is_file()
    assert clouds.moto.client("ec2").describe_images(Owners=["self"], Filters=[
        {"Name": "name", "Values": ["*1.0.1*"]}])["Images"] == []  # fmt: skip


def test_a_connection_string_for_another_endpoint_fails_the_azure_target(clouds: Clouds, first: Run) -> None:
    """The storage connection string in the environment no longer wins silently over blob_endpoint."""
    pages = len(clouds.azure.storage.pages())
    run = imgpub(
        clouds,
        "publish",
        "--target",
        "azure",
        IMGPUB_SANDBOX_VERSION="1.0.2",
        IMGPUB_SANDBOX_BLOB="http://127.0.0.1:9/devstoreaccount1",
    )
    assert run.code == 1
    error = run.target("azure")["error"]
    assert "\n" not in error and "AZURE_STORAGE_CONNECTION_STRING is for blob endpoint" in error
    assert "not blob_endpoint http://127.0.0.1:9/devstoreaccount1" in error
    assert len(clouds.azure.storage.pages()) == pages
    assert clouds.azure.arm.get("images/sandbox-1.0.2") is None


def test_status_sees_deleted_artifacts_and_publish_puts_them_back(clouds: Clouds, first: Run) -> None:
    """Someone deletes things by hand (console, another tool): status shows it, publish repairs it."""
    eu = next(a["id"] for a in first.artifacts("aws", "ami") if a["region"] == "eu-west-1")
    clouds.moto.client("ec2", "eu-west-1").deregister_image(ImageId=eu)
    with clouds.gce.lock:  # GCE still remembers the requestId of the insert that made it
        del clouds.gce.state.images[(PROJECT, "sandbox-1-0-0")]
    with clouds.azure.arm.lock:
        del clouds.azure.arm.resources[f"/{RG}/images/sandbox-1.0.0".lower()]
    (clouds.out / "sandbox" / "1.0.0" / "disk.vhd").unlink()

    drift = {t["name"]: t["drift"] for t in imgpub(clouds, "status", "--json").report["targets"]}
    assert all(drift.values()), drift
    repaired = imgpub(clouds, "publish")
    assert repaired.code == 0, repaired.stdout + repaired.stderr
    assert all(t["changed"] for t in repaired.report["targets"])
    assert {t["name"]: t["drift"] for t in imgpub(clouds, "status", "--json").report["targets"]} == {
        "aws": [],
        "gcp": [],
        "azure": [],
        "folder": [],
    }
    assert clouds.gce.image(PROJECT, "sandbox-1-0-0") is not None
    assert clouds.azure.arm.get("images/sandbox-1.0.0") is not None
