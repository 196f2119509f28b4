"""Credentials never reach an error line, a progress note, a warning, the journal, the `--report`
JSON or the CI step summary: the write SAS that grantAccess returns, SAS tokens, account keys and
connection strings. The provider redacts at the source (the core redacts again; this holds alone).

The storage proxy plays a gateway that echoes the request into its error, in the forms a message
may carry it: the signature alone, the URL percent-encoded, a repr of the parsed query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote

import pytest
from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

from fakes.azurite import ACCOUNT, KEY
from imgpub.errors import CloudError
from imgpub_azure.redaction import redact, remember, remember_sas_url

DISK_UPLOAD = {"upload": "managed-disk", "storage_account": None, "blob_endpoint": None}


def echo(path: str, query: str) -> str:
    """A gateway's refusal quoting what it refused, three ways."""
    params = dict(parse_qsl(query))
    return (
        f"Signature {params.get('sig', '-')} refused for {quote(path + '?' + query, safe='')}; "
        f"query {params!r}; key {KEY}"
    )


def forms(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), quote(secret)]


def assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        for form in forms(secret):
            assert form not in text, f"{form[:12]}... leaked"


def test_redact_removes_every_spelling_of_a_signature():
    sig = "aB3+dEf/gH9=kLmN0pQr"
    text = (
        f"sv=2025&sig={quote(sig, safe='')}&se=1 | %3Fsv%3D1%26sig%3D{quote(quote(sig, safe=''), safe='')} "
        f"| {{'sv': '2025', 'sig': '{sig}'}} | {{\"sig\": [\"{sig}\"]}} | AccountKey={KEY};"
    )
    out = redact(text)
    assert_clean(out, sig, KEY)
    assert "sv=2025" in out and "'sv': '2025'" in out


def test_a_remembered_secret_is_removed_wherever_it_stands():
    remember_sas_url("https://md-x.blob.storage.azure.net/d/abcd?sv=2025&sr=b&sig=Zz9%2Byy8%2Fxx7%3D")
    remember("plain-secret-value-42")
    out = redact("signature Zz9+yy8/xx7= (Zz9%2Byy8%2Fxx7%3D) and plain-secret-value-42 expired")
    assert "Zz9" not in out and "plain-secret" not in out


def test_a_failed_managed_disk_upload_does_not_show_its_write_sas(stack, disk, info):
    settings, image = stack.settings(**DISK_UPLOAD), info()
    ctx = stack.context(settings, image)
    stack.proxy.fail("PUT", "comp=page", 403, times=1000, code="AuthenticationFailed", message=echo)

    with pytest.raises(CloudError) as caught:
        stack.provider().publish(image, settings, disk, ctx)

    (sas_url,) = {
        o.output["accessSAS"] for o in stack.arm.operations.all.values() if o.kind == "grant" and o.output
    }
    sig = dict(parse_qsl(sas_url.split("?", 1)[1]))["sig"]
    message = str(caught.value)
    assert "[AuthenticationFailed]" in message and "refused" in message
    assert_clean(message, sig, KEY)
    assert_clean("\n".join(ctx.progress.notes), sig, KEY)
    assert_clean(ctx.journal.path.read_text(), sig)


def test_a_failed_page_blob_upload_does_not_show_the_sas_token(stack, disk, info, monkeypatch):
    token = generate_account_sas(
        ACCOUNT,
        KEY,
        ResourceTypes(container=True, object=True),
        AccountSasPermissions(read=True, write=True, create=True, delete=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", token)
    stack.proxy.fail("PUT", "comp=page", 403, times=1000, code="AuthenticationFailed", message=echo)
    settings, image = stack.settings(), info()
    ctx = stack.context(settings, image)

    with pytest.raises(CloudError) as caught:
        stack.provider().publish(image, settings, disk, ctx)

    sig = dict(parse_qsl(token))["sig"]
    assert "refused" in str(caught.value)
    assert_clean(str(caught.value), sig, KEY)
    assert_clean("\n".join(ctx.progress.notes), sig)


def test_cli_report_and_summary_hold_no_secret(cli, arm, proxy):
    """Through the command: a managed-disk upload refused by a gateway that echoes its write SAS,
    and a page-blob upload with a connection string, fail; nothing any reader gets holds a secret."""
    proxy.fail("PUT", "comp=page", 403, times=10_000, code="AuthenticationFailed", message=echo)

    disk_run = cli.publish(cli.manifest(**DISK_UPLOAD), "disk")
    blob_run = cli.publish(cli.manifest(), "blob")

    (sas_url,) = {
        o.output["accessSAS"] for o in arm.operations.all.values() if o.kind == "grant" and o.output
    }
    sig = dict(parse_qsl(sas_url.split("?", 1)[1]))["sig"]
    for run in (disk_run, blob_run):
        assert run.code == 1, run.stderr
        assert run.target["status"] == "failed" and "refused" in run.target["error"]
        assert run.summary, "the step summary was written"
        assert_clean(run.text(), sig, KEY)


def test_prune_and_the_matrix_hold_no_sas_token(versions, stack, monkeypatch, tmp_path):
    """A SAS token for the upload container: the blob ids the matrix lists and the lines prune
    prints carry no signature, and a gateway echoing the listing's URL into its error is redacted."""
    import json

    from imgpub.lifecycle import matrix, prune
    from imgpub.lifecycle_report import lifecycle_report
    from imgpub.retry import FAST

    token = generate_account_sas(
        ACCOUNT,
        KEY,
        ResourceTypes(container=True, object=True),
        AccountSasPermissions(read=True, write=True, create=True, delete=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", token)
    sig = dict(parse_qsl(token))["sig"]
    versions.publish("1.0.0", keep_upload=True)
    versions.publish("1.1.0")
    manifest = versions.manifest("1.1.0", {"keep": 0})

    listed = lifecycle_report(matrix(manifest, retry=FAST))
    assert any(a["kind"] == "blob" for r in listed["targets"][0]["releases"] for a in r["artifacts"])
    pruned = lifecycle_report(prune(manifest, apply=True, state_dir=tmp_path / "lc", retry=FAST))
    stack.proxy.fail("GET", "comp=list", 403, times=1000, code="AuthenticationFailed", message=echo)
    refused = lifecycle_report(matrix(manifest, retry=FAST))

    assert pruned["exit_code"] == 0 and refused["exit_code"] == 1
    assert "refused" in refused["targets"][0]["error"]
    assert_clean(json.dumps([listed, pruned, refused]), sig, KEY)
