"""The error boundary: every handled code maps as the table says; secrets never reach a message."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.storage.blob import BlobSasPermissions, generate_blob_sas

from imgpub.errors import CloudError, CredentialsError
from imgpub_azure import AzureProvider
from imgpub_azure.errors import ERROR_CODES, STATUS_RULES, is_transient, redact, retry_after, translate

KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
SRC = Path(__file__).parents[2] / "providers" / "azure" / "src" / "imgpub_azure"


def _http_error(code: str | None, status: int) -> HttpResponseError:
    exc = HttpResponseError(message=f"{code} happened\nRequestId:123")
    exc.status_code = status
    exc.error_code = code  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_handled_code_maps_as_the_table_says(code):
    rule = ERROR_CODES[code]
    err = translate(_http_error(code, 400), "t", "do thing")
    assert type(err) is rule.kind
    assert f"[{code}]" in str(err) and "\n" not in str(err)
    if isinstance(err, CloudError):
        assert err.retryable == rule.retryable
    assert is_transient(_http_error(code, 400)) == rule.retryable


def test_codes_compared_in_the_source_are_in_the_table():
    quoted = set()
    for path in SRC.glob("*.py"):
        if path.name != "errors.py":
            quoted |= set(re.findall(r'error_code\(.*?\) == "(\w+)"', path.read_text()))
    assert quoted <= set(ERROR_CODES)


@pytest.mark.parametrize("status", sorted(STATUS_RULES))
def test_status_fallbacks(status):
    err = translate(_http_error(None, status), "t", "op")
    assert type(err) is STATUS_RULES[status].kind


def test_identity_failure_is_a_credentials_error():
    err = translate(ClientAuthenticationError("DefaultAzureCredential failed\nmore lines"), "t", "get image")
    assert isinstance(err, CredentialsError)
    assert "az login" in str(err) and "\n" not in str(err)


def test_network_errors_are_transient():
    assert is_transient(ServiceRequestError("connection refused"))
    assert not is_transient(ServiceRequestError("Bearer token authentication is not permitted for non-TLS"))


def test_retry_after_header_is_read():
    class Response:
        def __init__(self) -> None:
            self.headers = {"Retry-After": "7"}

    exc = _http_error("TooManyRequests", 429)
    exc.response = Response()  # type: ignore[assignment]
    assert retry_after(exc) == 7.0


def test_redact_removes_signatures_and_keys(monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_KEY", "c2VjcmV0LWtleS12YWx1ZQ==")
    text = (
        "https://a.blob.core.windows.net/c/b?sv=1&sig=abc%2Bdef&se=2 "
        "AccountKey=xyz; key c2VjcmV0LWtleS12YWx1ZQ=="
    )
    out = redact(text)
    assert "abc%2Bdef" not in out and "xyz" not in out and "c2VjcmV0" not in out
    assert "sv=1" in out


def test_missing_credentials(stack, disk, info, monkeypatch):
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    settings = stack.settings()
    image = info()
    with pytest.raises(CredentialsError) as caught:
        AzureProvider().plan(image, settings, stack.context(settings, image))
    message = str(caught.value)
    assert "no usable Azure credentials" in message and "\n" not in message


def test_wrong_account_key_is_not_leaked(stack, disk, info, monkeypatch):
    wrong = "d3JvbmctYWNjb3VudC1rZXktZm9yLXRlc3Rpbmctb25seS0wMTIzNDU2Nzg5YWJjZGVm"
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_KEY", wrong)
    settings = stack.settings()
    image = info()
    with pytest.raises(CredentialsError) as caught:
        stack.provider().publish(image, settings, disk, stack.context(settings, image))
    assert wrong not in str(caught.value) and wrong[:20] not in str(caught.value)
    assert "[AuthorizationFailure]" in str(caught.value)


def test_read_only_sas_is_refused_without_leaking_it(stack, disk, info, monkeypatch):
    sas = generate_blob_sas(
        "devstoreaccount1",
        stack.container,
        "golden-1.2.3.vhd",
        account_key=KEY,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", sas)
    settings = stack.settings()
    image = info()
    with pytest.raises(CredentialsError) as caught:
        stack.provider().publish(image, settings, disk, stack.context(settings, image))
    signature = dict(p.split("=", 1) for p in sas.split("&"))["sig"]
    assert signature not in str(caught.value)
    assert "AuthorizationPermissionMismatch" in str(caught.value)
    assert os.environ["AZURE_STORAGE_SAS_TOKEN"] == sas


def test_arm_throttling_is_retried(stack, disk, info):
    stack.arm.inject("PUT", r"/images/", 429, retry_after=1)
    stack.arm.inject("GET", r"/images/", 503, times=2)
    settings = stack.settings()
    image = info()
    stack.provider().publish(image, settings, disk, stack.context(settings, image))
    assert stack.arm.get("images/golden-1.2.3") is not None
    assert all(f.times == 0 for f in stack.arm.faults)
    assert stack.arm.count("PUT", r"/images/golden") >= 2


def test_arm_refusal_is_one_line(stack, disk, info):
    stack.arm.inject("PUT", r"/images/", 409, times=10, code="OperationNotAllowed")
    settings = stack.settings()
    image = info()
    with pytest.raises(CloudError) as caught:
        stack.provider().publish(image, settings, disk, stack.context(settings, image))
    assert "[OperationNotAllowed]" in str(caught.value) and "\n" not in str(caught.value)
    assert stack.arm.count("PUT", r"/images/golden") == 1
