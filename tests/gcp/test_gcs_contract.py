"""The GCS stand-in (gcp-storage-emulator behind gcp/fault_proxy.py) refuses what Cloud Storage refuses:
requests off the storage v1 contract, and objects without a CMEK key in a bucket that requires one."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from gcp.fault_proxy import FaultProxy

KEY = "projects/imgpub-keys/locations/us/keyRings/uploads/cryptoKeys/tarballs"


def send(gcs: FaultProxy, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else b""
    call = urllib.request.Request(
        f"{gcs.url}{path}", data=data, headers={"Content-Type": "application/json"}, method=method
    )
    try:
        with urllib.request.urlopen(call) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize(
    ("query", "body", "status", "reason", "message"),
    [
        ("name=o", None, 400, "required", "Required parameter: uploadType"),
        ("uploadType=chunked&name=o", None, 400, "invalidParameter", "Invalid upload type 'chunked'"),
        ("uploadType=resumable&name=o&kms_key_name=k", None, 400, "invalid", 'Unknown name "kms_key_name"'),
        ("uploadType=resumable&name=o&kmsKeyName=my-key", None, 400, "invalid", "not a Cloud KMS key name"),
        (
            f"uploadType=resumable&name=o&kmsKeyName={KEY}/cryptoKeyVersions/1",
            None,
            400,
            "invalid",
            "not a Cloud KMS key name",
        ),
        ("uploadType=resumable&name=o&ifGenerationMatch=none", None, 400, "invalid", "(TYPE_INT64)"),
        ("uploadType=resumable&name=o&predefinedAcl=public", None, 400, "invalid", "Must be one of"),
        (
            "uploadType=resumable",
            {"name": "o", "kmsKeyName": KEY},
            400,
            "invalid",
            "use the kmsKeyName parameter",
        ),
        ("uploadType=resumable", {"nmae": "o"}, 400, "invalid", "Unknown name \"nmae\" at 'Object'"),
    ],
)
def test_uploads_off_the_storage_contract_are_refused(
    gcs: FaultProxy,
    bucket: str,
    storage_client: Any,
    query: str,
    body: Any,
    status: int,
    reason: str,
    message: str,
) -> None:
    got, error = send(gcs, "POST", f"/upload/storage/v1/b/{bucket}/o?{query}", body)
    assert got == status, error
    assert error["error"]["errors"][0]["reason"] == reason
    assert message in error["error"]["message"]
    assert gcs.rejected and list(storage_client.list_blobs(bucket)) == []


def test_unknown_methods_and_parameters_of_the_json_api_are_refused(gcs: FaultProxy, bucket: str) -> None:
    assert send(gcs, "GET", f"/storage/v1/b/{bucket}/o/x?projection=all")[0] == 400
    assert send(gcs, "GET", f"/storage/v1/b/{bucket}/objects")[0] == 404
    assert send(gcs, "DELETE", f"/storage/v1/b/{bucket}/o/x?generation=latest")[0] == 400


@pytest.mark.parametrize(
    "query",
    ["prefixes=imgpub/", "prefix=imgpub/&maxResults=ten", "prefix=imgpub/&projection=metadata"],
)
def test_object_lists_off_the_contract_are_refused(gcs: FaultProxy, bucket: str, query: str) -> None:
    """What prune's leftover-upload listing sends (objects.list by prefix, paged) is checked too."""
    assert send(gcs, "GET", f"/storage/v1/b/{bucket}/o?prefix=imgpub/&projection=noAcl")[0] == 200
    status, error = send(gcs, "GET", f"/storage/v1/b/{bucket}/o?{query}")
    assert status == 400, error
    assert any(f"GET /storage/v1/b/{bucket}/o?{query}" in r for r in gcs.rejected)


def test_a_cmek_bucket_refuses_objects_without_a_key_from_its_location(
    gcs: FaultProxy, bucket: str, storage_client: Any
) -> None:
    gcs.cmek_buckets[bucket] = "US"
    start = f"/upload/storage/v1/b/{bucket}/o?uploadType=resumable&name=o"

    status, error = send(gcs, "POST", start, {"name": "o"})
    assert status == 412 and error["error"]["errors"][0]["reason"] == "conditionNotMet"
    assert (
        error["error"]["message"] == "Request violates constraint 'constraints/gcp.restrictNonCmekServices'"
    )

    elsewhere = KEY.replace("/locations/us/", "/locations/europe-west1/")
    status, error = send(gcs, "POST", f"{start}&kmsKeyName={elsewhere}", {"name": "o"})
    assert status == 400 and "the key must be in the bucket's location" in error["error"]["message"]
    assert list(storage_client.list_blobs(bucket)) == []

    status, _ = send(gcs, "POST", f"{start}&kmsKeyName={KEY}", {"name": "o"})
    assert status == 200 and gcs.object_keys == {(bucket, "o"): KEY}


def put(url: str, data: bytes, content_range: str) -> int:
    call = urllib.request.Request(url, data=data, headers={"Content-Range": content_range}, method="PUT")
    try:
        with urllib.request.urlopen(call) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def session(gcs: FaultProxy, bucket: str, name: str, query: str = "") -> str:
    call = urllib.request.Request(
        f"{gcs.url}/upload/storage/v1/b/{bucket}/o?uploadType=resumable&name={name}{query}",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(call) as response:
        return str(response.headers["Location"])


def test_preconditions_the_emulator_ignores_are_enforced(
    gcs: FaultProxy, bucket: str, storage_client: Any
) -> None:
    """ifGenerationMatch when a resumable upload starts, when it finishes the object, and on delete."""
    storage_client.bucket(bucket).blob("taken").upload_from_string(b"first")
    generation = storage_client.bucket(bucket).get_blob("taken").generation

    status, error = send(
        gcs,
        "POST",
        f"/upload/storage/v1/b/{bucket}/o?uploadType=resumable&name=taken&ifGenerationMatch=0",
        {},
    )
    assert status == 412 and error["error"]["errors"][0]["reason"] == "conditionNotMet"

    url = session(gcs, bucket, "late", "&ifGenerationMatch=0")
    storage_client.bucket(bucket).blob("late").upload_from_string(b"another run's")
    assert put(url, b"mine", "bytes 0-3/4") == 412
    assert storage_client.bucket(bucket).get_blob("late").download_as_bytes() == b"another run's"

    assert send(gcs, "DELETE", f"/storage/v1/b/{bucket}/o/taken?ifGenerationMatch={generation + 1}")[0] == 412
    assert send(gcs, "DELETE", f"/storage/v1/b/{bucket}/o/taken?ifGenerationMatch={generation}")[0] < 300
    assert storage_client.bucket(bucket).get_blob("taken") is None


def test_a_session_keeps_its_declared_total_and_a_forgotten_one_is_gone(gcs: FaultProxy, bucket: str) -> None:
    url = session(gcs, bucket, "total")
    assert put(url, b"x" * 262144, "bytes 0-262143/*") == 308
    assert put(url, b"", "bytes */300000") == 308  # declares the total
    assert put(url, b"y" * 10, "bytes 262144-262153/262154") == 400
    (upload_id,) = gcs.upload_ids()
    gcs.forget(upload_id, 410)
    assert put(url, b"", "bytes */*") == 410
