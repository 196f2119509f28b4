"""Customer-managed keys: the image and the uploaded tarball, against a bucket that requires CMEK."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fakes.gce import FakeGce
from gcp.fault_proxy import FaultProxy
from gcp.stack import PROJECT, context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import CloudError
from imgpub.journal import Journal
from imgpub_gcp import GcpProvider, GcpSettings

SettingsFactory = Callable[..., GcpSettings]
US_KEY = "projects/imgpub-keys/locations/us/keyRings/uploads/cryptoKeys/tarballs"
GLOBAL_KEY = "projects/imgpub-keys/locations/global/keyRings/images/cryptoKeys/golden"
NAME = "demo-linux-1-2-3"


def uploads(gcs: FaultProxy) -> dict[str, str | None]:
    return {name: key for (_, name), key in gcs.object_keys.items()}


def test_the_image_key_also_encrypts_the_upload_in_a_cmek_only_bucket(
    make_settings: SettingsFactory, gce: FakeGce, gcs: FaultProxy, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings(kms_key=US_KEY)
    gcs.cmek_buckets[settings.bucket] = "US"
    info = image_info(disk)
    ctx = context(settings, info, journal)

    GcpProvider().publish(info, settings, disk, ctx)

    assert uploads(gcs) == {f"imgpub/{NAME}-{ctx.digest}.tar.gz": US_KEY}
    assert gce.image(PROJECT, NAME)["imageEncryptionKey"] == {"kmsKeyName": US_KEY}  # type: ignore[index]
    assert gcs.rejected == []


def test_upload_kms_key_encrypts_the_upload_when_the_image_key_is_global(
    make_settings: SettingsFactory, gce: FakeGce, gcs: FaultProxy, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings(kms_key=GLOBAL_KEY, upload_kms_key=US_KEY)
    gcs.cmek_buckets[settings.bucket] = "US"
    info = image_info(disk)

    GcpProvider().publish(info, settings, disk, context(settings, info, journal))

    assert list(uploads(gcs).values()) == [US_KEY]
    assert gce.image(PROJECT, NAME)["imageEncryptionKey"] == {"kmsKeyName": GLOBAL_KEY}  # type: ignore[index]


def test_without_a_key_a_cmek_only_bucket_refuses_the_upload_in_one_line(
    make_settings: SettingsFactory, gce: FakeGce, gcs: FaultProxy, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings(kms_key=GLOBAL_KEY)  # Cloud Storage cannot use it: no kmsKeyName is sent
    gcs.cmek_buckets[settings.bucket] = "US"
    info = image_info(disk)

    ctx = context(settings, info, journal)
    with pytest.raises(CloudError) as caught:
        GcpProvider().publish(info, settings, disk, ctx)

    message = str(caught.value)
    assert message == (
        f"target gce: start upload of gs://{settings.bucket}/imgpub/{NAME}-{ctx.digest}.tar.gz failed "
        "[412 conditionNotMet]: Request violates constraint 'constraints/gcp.restrictNonCmekServices'"
    )
    assert gce.image(PROJECT, NAME) is None


def test_bucket_default_sends_no_key(
    make_settings: SettingsFactory,
    gce: FakeGce,
    gcs: FaultProxy,
    disk: DiskImage,
    journal: Journal,
    storage_client: Any,
) -> None:
    settings = make_settings(kms_key=US_KEY, upload_kms_key="bucket-default", keep_upload=True)
    info = image_info(disk)
    GcpProvider().publish(info, settings, disk, context(settings, info, journal))
    assert list(uploads(gcs).values()) == [None]
    assert len(list(storage_client.list_blobs(settings.bucket))) == 1
