"""Client set-up: boto3's own retries are off (imgpub.retry is in charge), timeouts, endpoints."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from aws.motoaws import Moto
from imgpub_aws.clients import CONNECT_TIMEOUT, READ_TIMEOUT, AwsClients


def test_boto3_does_not_retry_by_itself(moto: Moto, settings_for: Any) -> None:
    moto.fault("DescribeImages", status=503, code="RequestLimitExceeded", count=1)
    ec2 = AwsClients(settings_for()).client("ec2")
    with pytest.raises(ClientError, match="RequestLimitExceeded"):
        ec2.describe_images(Owners=["self"])
    assert len(moto.requests("DescribeImages")) == 1


def test_timeouts_and_pool_are_explicit(settings_for: Any) -> None:
    clients = AwsClients(settings_for())
    config = clients.client("ebs", pool=40).meta.config
    assert (config.connect_timeout, config.read_timeout) == (CONNECT_TIMEOUT, READ_TIMEOUT)
    assert config.max_pool_connections == 40


def test_service_endpoint_variables_are_not_overridden(
    moto: Moto, settings_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_EBS", "http://127.0.0.1:9/ebs-only")
    clients = AwsClients(settings_for(endpoint_url=None))
    assert clients.client("ebs").meta.endpoint_url == "http://127.0.0.1:9/ebs-only"
    assert clients.client("ec2").meta.endpoint_url.startswith("https://ec2.us-east-1.amazonaws")
    assert AwsClients(settings_for()).client("ebs").meta.endpoint_url == moto.url


def test_importing_the_provider_does_not_import_boto3() -> None:
    """Loading a manifest builds the settings union; the SDK waits until a target is used."""
    import subprocess
    import sys

    code = "import sys, imgpub_aws; print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_profile_is_a_credentials_error(moto: Moto, settings_for: Any, tmp_path: Any) -> None:
    from aws.motoaws import context, image_info
    from imgpub.disk import open_image
    from imgpub.errors import CredentialsError
    from imgpub_aws import AwsProvider

    raw = tmp_path / "d.raw"
    raw.write_bytes(b"\1" * 4096)
    with (
        open_image(raw, "raw") as disk,
        pytest.raises(CredentialsError, match=r"profile \(nope\) could not be found; check profile"),
    ):
        AwsProvider().plan(image_info(disk), settings_for(profile="nope"), context(tmp_path))


def test_endpoint_url_must_be_a_url(settings_for: Any) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="endpoint_url"):
        settings_for(endpoint_url="localhost:5000")
