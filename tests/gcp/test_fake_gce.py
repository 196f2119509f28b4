"""The GCE fake rejects what real Compute would: unknown fields, wrong types, bad enums, bad filters."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from fakes.gce import FakeGce
from gcp.stack import PROJECT


def post(gce: FakeGce, path: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{gce.url}/compute/v1/projects/{PROJECT}/{path}",
        data=b"" if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x", "rawDisk": {"sourc": "gs://b/o"}}, "Unknown name \"sourc\" at 'Image.rawDisk'"),
        ({"name": "x", "architecture": "ARM"}, "Invalid value at 'Image.architecture'"),
        ({"name": "x", "diskSizeGb": "ten"}, "expected an integer string"),
        ({"name": "x", "labels": {"a": 1}}, "Invalid value at 'Image.labels['a']'"),
        ({"name": "x", "guestOsFeatures": {"type": "GVNIC"}}, "expected a list"),
        (
            {"name": "x", "shieldedInstanceInitialState": {"pk": {"content": "not base64!"}}},
            "expected base64",
        ),
    ],
)
def test_bad_bodies_get_400_in_google_format(gce: FakeGce, body: Any, message: str) -> None:
    status, error = post(gce, "global/images", body)
    assert status == 400
    assert error["error"]["code"] == 400 and error["error"]["errors"][0]["reason"] == "invalid"
    assert message in error["error"]["message"]


def test_unknown_query_parameters_and_filters_are_rejected(gce: FakeGce) -> None:
    status, _ = post(gce, "global/images?requestID=1", {"name": "x"})
    assert status == 400
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{gce.url}/compute/v1/projects/{PROJECT}/global/images?filter=name%20eq%20x")
    assert caught.value.code == 400


def test_missing_source_object_fails_the_operation(gce: FakeGce) -> None:
    status, op = post(
        gce, "global/images", {"name": "x", "rawDisk": {"source": "https://storage.googleapis.com/nob/o"}}
    )
    assert status == 200 and op["status"] == "RUNNING"
    status, done = post(gce, f"global/operations/{op['name']}/wait", None)
    assert done["status"] == "DONE" and done["error"]["errors"][0]["code"] == "RESOURCE_NOT_FOUND"
    assert gce.image(PROJECT, "x") is None


def test_a_source_that_is_not_an_image_tarball_fails_the_operation(
    gce: FakeGce, storage_client: Any, bucket: str
) -> None:
    storage_client.bucket(bucket).blob("bad.tar.gz").upload_from_string(b"not gzip at all")
    source = f"https://storage.googleapis.com/{bucket}/bad.tar.gz"
    _, op = post(gce, "global/images", {"name": "bad", "rawDisk": {"source": source}})
    _, done = post(gce, f"global/operations/{op['name']}/wait", None)
    assert done["error"]["errors"][0]["code"] == "INVALID_IMAGE_TAR"
    assert done["httpErrorStatusCode"] == 400


def test_a_pax_tarball_is_refused_like_gce_does(
    gce: FakeGce, storage_client: Any, bucket: str, tmp_path: Path
) -> None:
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(1 << 30)
    archive = tmp_path / "pax.tar.gz"
    subprocess.run(
        ["tar", "--format=pax", "-Sczf", str(archive), "-C", str(tmp_path), "disk.raw"], check=True
    )
    storage_client.bucket(bucket).blob("pax.tar.gz").upload_from_filename(str(archive))
    source = f"https://storage.googleapis.com/{bucket}/pax.tar.gz"
    _, op = post(gce, "global/images", {"name": "pax", "rawDisk": {"source": source}})
    _, done = post(gce, f"global/operations/{op['name']}/wait", None)
    assert done["error"]["errors"][0] == {
        "code": "INVALID_IMAGE_TAR",
        "message": "The tar archive is not a valid image (PAX headers).",
    }
