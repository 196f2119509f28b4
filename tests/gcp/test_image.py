"""The images.insert body as the GCE fake (schema-checked against compute v1) receives it."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from fakes.gce import FakeGce
from gcp.stack import PROJECT, context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import CloudError
from imgpub.journal import Journal
from imgpub.progress import NullProgress
from imgpub.retry import FAST
from imgpub_gcp import GcpProvider, GcpSettings
from imgpub_gcp.clients import GcpClients
from imgpub_gcp.image import GceImages


def test_arm64_image_with_secure_boot_keys_kms_and_licenses(
    make_settings: Callable[..., GcpSettings], gce: FakeGce, disk: DiskImage, journal: Journal, tmp_path: Path
) -> None:
    (tmp_path / "pk.der").write_bytes(b"\x30\x82platform-key")
    (tmp_path / "db.esl").write_bytes(b"signature-list")
    der = b"\x30\x82kek-certificate"
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
    (tmp_path / "kek.pem").write_bytes(pem)
    license_url = "https://compute.googleapis.com/compute/v1/projects/vm-options/global/licenses/enable-vmx"
    settings = make_settings(
        image_name="demo-arm",
        description="arm build",
        guest_os_features=["IDPF"],
        licenses=[license_url],
        kms_key="projects/imgpub-keys/locations/global/keyRings/images/cryptoKeys/golden",
        shielded_instance_initial_state={
            "pk": str(tmp_path / "pk.der"),
            "keks": [str(tmp_path / "kek.pem")],
            "dbs": [str(tmp_path / "db.esl")],
        },
    )
    info = image_info(disk, arch="arm64", boot="uefi")

    GcpProvider().publish(info, settings, disk, context(settings, info, journal))

    image = gce.image(PROJECT, "demo-arm")
    assert image is not None
    assert image["architecture"] == "ARM64" and image["description"] == "arm build"
    assert sorted(f["type"] for f in image["guestOsFeatures"]) == ["GVNIC", "IDPF", "UEFI_COMPATIBLE"]
    assert image["licenses"] == [license_url]
    assert image["imageEncryptionKey"] == {
        "kmsKeyName": "projects/imgpub-keys/locations/global/keyRings/images/cryptoKeys/golden"
    }
    state = image["shieldedInstanceInitialState"]
    assert state["pk"] == {"content": base64.b64encode(b"\x30\x82platform-key").decode(), "fileType": "X509"}
    assert state["keks"] == [{"content": base64.b64encode(der).decode(), "fileType": "X509"}]
    assert state["dbs"] == [{"content": base64.b64encode(b"signature-list").decode(), "fileType": "BIN"}]


def test_bios_image_gets_no_uefi_feature(
    make_settings: Callable[..., GcpSettings], gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings()
    info = image_info(disk, boot="bios")
    GcpProvider().publish(info, settings, disk, context(settings, info, journal))
    image = gce.image(PROJECT, "demo-linux-1-2-3")
    assert image is not None and [f["type"] for f in image["guestOsFeatures"]] == ["GVNIC"]


def test_an_image_without_the_gvnic_driver_is_published_without_gvnic(
    make_settings: Callable[..., GcpSettings], gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings(gvnic=False)
    info = image_info(disk)
    GcpProvider().publish(info, settings, disk, context(settings, info, journal))
    image = gce.image(PROJECT, "demo-linux-1-2-3")
    assert image is not None and [f["type"] for f in image["guestOsFeatures"]] == ["UEFI_COMPATIBLE"]


def test_insert_sends_a_fresh_uuid_request_id_that_its_retries_reuse(
    make_settings: Callable[..., GcpSettings], gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    """The reply to the first insert is lost after GCE acted on it: the retry carries the same
    requestId, so GCE answers with the same operation instead of 409 alreadyExists."""
    settings = make_settings()
    gce.fail(503, method="POST", path="/global/images", lose_reply=True)
    info = image_info(disk)
    GcpProvider().publish(info, settings, disk, context(settings, info, journal))

    first, second = (call.split("requestId=")[1] for call in gce.calls("POST", "/global/images?"))
    assert first == second and uuid.UUID(first).version == 4
    assert gce.image(PROJECT, "demo-linux-1-2-3")["status"] == "READY"  # type: ignore[index]

    other = image_info(disk, version="1.2.4")
    GcpProvider().publish(other, settings, disk, context(settings, other, journal))
    third = gce.calls("POST", "/global/images?")[-1].split("requestId=")[1]
    assert third not in (first, second)


def test_waiting_polls_until_done_and_reports_progress(
    make_settings: Callable[..., GcpSettings], gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings()
    gce.polls_per_operation = 3
    try:
        gce.add_image(PROJECT, "old", labels={"a": "b"})
        images = GceImages(GcpClients(settings, "gce"), settings, "gce", FAST, NullProgress())
        found = images.get("old")
        assert found is not None
        images.set_labels(found, {"a": "c"})
    finally:
        gce.polls_per_operation = 1
    assert len(gce.calls("POST", "/wait")) == 3
    assert gce.image(PROJECT, "old")["labels"] == {"a": "c"}  # type: ignore[index]


def test_an_operation_that_never_finishes_times_out(
    make_settings: Callable[..., GcpSettings], gce: FakeGce
) -> None:
    settings = make_settings()
    gce.add_image(PROJECT, "slow")
    gce.polls_per_operation = 1000
    try:
        images = GceImages(
            GcpClients(settings, "gce"), settings, "gce", FAST, NullProgress(), operation_timeout=0.3
        )
        with pytest.raises(
            CloudError, match=r"deprecate image slow failed: operation operation-\S+ not done after 0 s"
        ):
            images.deprecate("slow", f"projects/{PROJECT}/global/images/new")
    finally:
        gce.polls_per_operation = 1
