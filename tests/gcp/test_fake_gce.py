"""The GCE fake rejects what real Compute would (every rule from the compute v1 discovery document or
GCE's documented behaviour), and reproduces its failure modes: failed operations, FAILED images,
reused requestIds, eventual consistency and throttling with Retry-After."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from fakes.gce import FakeGce
from gcp.stack import PROJECT

SOURCE = "https://storage.googleapis.com/nob/o.tar.gz"


def request(gce: FakeGce, method: str, path: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
    call = urllib.request.Request(
        f"{gce.url}/compute/v1/projects/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(call) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def post(gce: FakeGce, path: str, body: Any) -> tuple[int, Any]:
    status, answer, _ = request(gce, "POST", f"{PROJECT}/{path}", body if body is not None else None)
    return status, answer


def wait(gce: FakeGce, op: dict[str, Any]) -> dict[str, Any]:
    status, done = post(gce, f"global/operations/{op['name']}/wait", None)
    assert status == 200
    return done  # type: ignore[no-any-return]


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
        ({"name": "Demo_Image"}, "Invalid value at 'Image.name' (must be a match of regex"),
        ({"name": "x", "rawDisk": {"sha1Checksum": "XYZ"}}, "Invalid value at 'Image.rawDisk.sha1Checksum'"),
        ({"family": "demo"}, "Required field 'resource.name' not specified"),
        ({"name": "x", "labels": {"app.tier": "web"}}, "Invalid value for field 'resource.labels'"),
        ({"name": "x", "labels": {"team": "x" * 64}}, "Invalid value for field 'resource.labels'"),
        ({"name": "x", "labels": {f"k{i}": "" for i in range(65)}}, "at most 64 labels"),
        ({"name": "x", "licenses": ["enable-vmx"]}, "Invalid value for field 'resource.licenses[0]'"),
        ({"name": "x", "storageLocations": ["US"]}, "Invalid value for field 'resource.storageLocations[0]'"),
        (
            {"name": "x", "imageEncryptionKey": {"kmsKeyName": "my-key"}},
            "Invalid value for field 'resource.imageEncryptionKey.kmsKeyName'",
        ),
    ],
)
def test_bad_bodies_get_400_in_google_format(gce: FakeGce, body: Any, message: str) -> None:
    status, error = post(gce, "global/images", body)
    assert status == 400, error
    assert error["error"]["code"] == 400
    assert error["error"]["errors"][0]["reason"] in ("invalid", "required")
    assert message in error["error"]["message"]
    assert gce.state.images == {}


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("POST", f"{PROJECT}/global/images?requestID=1", 'Unknown name "requestID"'),
        ("POST", f"{PROJECT}/global/images?requestId=not-a-uuid", "'requestId': 'not-a-uuid'"),
        ("POST", f"{PROJECT}/global/images?requestId={uuid.UUID(int=0)}", "non-zero UUID"),
        ("POST", f"{PROJECT}/global/images?forceCreate=yes", "(TYPE_BOOL)"),
        ("GET", f"{PROJECT}/global/images?maxResults=-1", "Must be between 0"),
        ("GET", f"{PROJECT}/global/images/Demo_Image", "Invalid value for field 'image': 'Demo_Image'"),
        ("GET", "My_Project/global/images/x", "Invalid value for field 'project': 'My_Project'"),
        ("POST", f"{PROJECT}/global/operations/Op_1/wait", "Invalid value for field 'operation'"),
        ("GET", f"{PROJECT}/global/images?filter=name%20eq%20x", "Invalid list filter expression"),
        ("DELETE", f"{PROJECT}/global/images/x?requestId=123", "'requestId': '123'"),
    ],
)
def test_bad_parameters_get_400(gce: FakeGce, method: str, path: str, message: str) -> None:
    body = {"name": "x"} if method == "POST" and "images" in path else None
    status, error, _ = request(gce, method, path, body)
    assert status == 400, error
    assert message in error["error"]["message"]


def test_images_cannot_be_shared_with_all_users(gce: FakeGce) -> None:
    gce.add_image(PROJECT, "x")
    policy = {"policy": {"bindings": [{"role": "roles/compute.imageUser", "members": ["allUsers"]}]}}
    status, error = post(gce, "global/images/x/setIamPolicy", policy)
    assert status == 400 and "allUsers" in error["error"]["message"]
    assert gce.policy(PROJECT, "x") == {}


def test_a_failed_insert_leaves_a_failed_image(gce: FakeGce) -> None:
    status, op = post(gce, "global/images", {"name": "x", "rawDisk": {"source": SOURCE}})
    assert status == 200 and op["status"] == "RUNNING"
    done = wait(gce, op)
    assert done["status"] == "DONE" and done["error"]["errors"][0]["code"] == "RESOURCE_NOT_FOUND"
    assert done["httpErrorStatusCode"] == 404
    assert gce.image(PROJECT, "x")["status"] == "FAILED"  # type: ignore[index]


def test_a_lost_reply_is_an_error_after_the_request_was_done(gce: FakeGce) -> None:
    gce.add_image(PROJECT, "x", labels={"a": "b"})
    gce.fail(503, method="POST", path="/setLabels", lose_reply=True)
    fingerprint = gce.image(PROJECT, "x")["labelFingerprint"]  # type: ignore[index]

    status, error = post(
        gce, "global/images/x/setLabels", {"labels": {"a": "c"}, "labelFingerprint": fingerprint}
    )

    assert status == 503 and error["error"]["message"] == "injected failure"
    assert gce.image(PROJECT, "x")["labels"] == {"a": "c"}  # type: ignore[index]
    status, error = post(
        gce, "global/images/x/setLabels", {"labels": {"a": "c"}, "labelFingerprint": fingerprint}
    )
    assert status == 412  # the retry's fingerprint is stale: GCE acted on the first one


def test_an_image_goes_on_building_while_only_read(gce: FakeGce, good_source: str) -> None:
    """A run that lost the insert's reply never polls its operation: the image still becomes READY."""
    status, op = post(gce, "global/images", {"name": "lost", "rawDisk": {"source": good_source}})
    assert status == 200 and op["status"] == "RUNNING"
    status, image, _ = request(gce, "GET", f"{PROJECT}/global/images/lost")
    assert status == 200 and image["status"] == "READY"


def test_a_reused_request_id_answers_with_the_earlier_operation_failed_or_not(gce: FakeGce) -> None:
    rid = str(uuid.uuid4())
    gce.fail_next_operation("QUOTA_EXCEEDED", "Quota 'IMAGES' exceeded.", 403)
    _, first = post(gce, f"global/images?requestId={rid}", {"name": "x", "rawDisk": {"source": SOURCE}})
    assert wait(gce, first)["error"]["errors"][0]["code"] == "QUOTA_EXCEEDED"
    with gce.lock:
        del gce.state.images[(PROJECT, "x")]

    _, again = post(gce, f"global/images?requestId={rid}", {"name": "x", "rawDisk": {"source": SOURCE}})

    assert again["name"] == first["name"] and again["status"] == "DONE"
    assert again["error"]["errors"][0]["code"] == "QUOTA_EXCEEDED"
    assert gce.image(PROJECT, "x") is None  # nothing was done a second time

    gce.advance_clock(timedelta(hours=2))  # past the retention window: a new request
    _, later = post(gce, f"global/images?requestId={rid}", {"name": "x", "rawDisk": {"source": SOURCE}})
    assert later["name"] != first["name"] and gce.image(PROJECT, "x") is not None


@pytest.fixture
def good_source(storage_client: Any, bucket: str, tmp_path: Path) -> str:
    """A valid image tarball in the emulator: GNU (oldgnu) sparse tar of a 1 GiB disk.raw."""
    with open(tmp_path / "disk.raw", "wb") as f:
        f.truncate(1 << 30)
    archive = tmp_path / "good.tar.gz"
    subprocess.run(
        ["tar", "--format=oldgnu", "-Sczf", str(archive), "-C", str(tmp_path), "disk.raw"], check=True
    )
    storage_client.bucket(bucket).blob("good.tar.gz").upload_from_filename(str(archive))
    return f"https://storage.googleapis.com/{bucket}/good.tar.gz"


def test_a_new_image_is_invisible_for_a_few_reads(gce: FakeGce, good_source: str) -> None:
    gce.add_image(PROJECT, "seed")
    gce.state.lag_after_insert = 2
    _, op = post(gce, "global/images", {"name": "late", "rawDisk": {"source": good_source}})
    assert wait(gce, op)["status"] == "DONE"

    first, _, _ = request(gce, "GET", f"{PROJECT}/global/images/late")
    _, listed, _ = request(gce, "GET", f"{PROJECT}/global/images")
    third, image, _ = request(gce, "GET", f"{PROJECT}/global/images/late")

    assert first == 404 and [i["name"] for i in listed["items"]] == ["seed"]
    assert third == 200 and image["status"] == "READY" and image["diskSizeGb"] == "1"


@pytest.mark.parametrize(
    ("status", "reason", "retry_after"),
    [(429, "rateLimitExceeded", "3"), (403, "userRateLimitExceeded", None), (503, "backendError", "1")],
)
def test_throttling_answers_carry_the_real_reason_and_retry_after(
    gce: FakeGce, status: int, reason: str, retry_after: str | None
) -> None:
    gce.fail(status, method="GET", path="/global/images", reason=reason, retry_after=retry_after)
    got, error, headers = request(gce, "GET", f"{PROJECT}/global/images")
    assert got == status and error["error"]["errors"][0]["reason"] == reason
    assert headers.get("Retry-After") == retry_after
    assert request(gce, "GET", f"{PROJECT}/global/images")[0] == 200


def test_a_source_that_is_not_an_image_tarball_fails_the_operation(
    gce: FakeGce, storage_client: Any, bucket: str
) -> None:
    storage_client.bucket(bucket).blob("bad.tar.gz").upload_from_string(b"not gzip at all")
    source = f"https://storage.googleapis.com/{bucket}/bad.tar.gz"
    _, op = post(gce, "global/images", {"name": "bad", "rawDisk": {"source": source}})
    done = wait(gce, op)
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
    assert wait(gce, op)["error"]["errors"][0] == {
        "code": "INVALID_IMAGE_TAR",
        "message": "The tar archive is not a valid image (PAX headers).",
    }


# -- what prune and the version matrix call: images.deprecate, images.delete, images.list paged -------

LINK = f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}/global/images/new"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"state": "deprecated"}, "Invalid value at 'DeprecationStatus.state'"),
        ({"state": "DEPRECATED", "replacment": LINK}, 'Unknown name "replacment"'),
        ({"state": "DEPRECATED", "replacement": "new"}, "'deprecationStatus.replacement': 'new'"),
        (
            {"state": "DEPRECATED", "replacement": LINK.replace("/images/", "/instances/")},
            "must be the URL of an image",
        ),
        (
            {"state": "DEPRECATED", "replacement": "https://example.com/compute/v1/" + LINK.split("/v1/")[1]},
            "must be the URL of an image",
        ),
        ({"state": "DEPRECATED", "deprecated": "yesterday"}, "'deprecationStatus.deprecated': 'yesterday'"),
        ({"state": "OBSOLETE", "obsolete": "2026-11-29 12:00:00"}, "must be in RFC 3339 format"),
        ({"state": "DEPRECATED", "deleted": 1800000000}, "Invalid value at 'DeprecationStatus.deleted'"),
    ],
)
def test_bad_deprecation_bodies_get_400(gce: FakeGce, body: Any, message: str) -> None:
    gce.add_image(PROJECT, "old")
    status, error = post(gce, f"global/images/old/deprecate?requestId={uuid.uuid4()}", body)
    assert status == 400, error
    assert message in error["error"]["message"]
    assert "deprecated" not in gce.image(PROJECT, "old")  # type: ignore[operator]


def test_a_deprecation_points_to_its_replacement_and_an_empty_body_clears_it(gce: FakeGce) -> None:
    gce.add_image(PROJECT, "old")
    body = {"state": "DEPRECATED", "replacement": LINK, "deprecated": "2026-11-29T12:00:00Z"}
    status, op = post(gce, f"global/images/old/deprecate?requestId={uuid.uuid4()}", body)
    assert status == 200 and wait(gce, op)["status"] == "DONE"
    assert gce.image(PROJECT, "old")["deprecated"] == body  # type: ignore[index]
    assert post(gce, "global/images/old/deprecate", {})[0] == 200
    assert "deprecated" not in gce.image(PROJECT, "old")  # type: ignore[operator]


def test_a_deleted_image_is_deleting_until_its_operation_is_done(gce: FakeGce) -> None:
    gce.add_image(PROJECT, "old")
    gce.polls_per_operation = 3
    try:
        status, op, _ = request(gce, "DELETE", f"{PROJECT}/global/images/old?requestId={uuid.uuid4()}")
        assert status == 200 and gce.image(PROJECT, "old")["status"] == "DELETING"  # type: ignore[index]
        again, error, _ = request(gce, "DELETE", f"{PROJECT}/global/images/old?requestId={uuid.uuid4()}")
        assert again == 400 and error["error"]["errors"][0]["reason"] == "resourceNotReady"
        for _ in range(3):
            done = wait(gce, op)
    finally:
        gce.polls_per_operation = 1
    assert done["status"] == "DONE" and gce.image(PROJECT, "old") is None


def test_a_list_is_paged_and_its_page_tokens_hold_to_their_query(gce: FakeGce) -> None:
    for name in ("e", "d", "c", "b", "a"):
        gce.add_image(PROJECT, name, labels={"team": "os"})
    gce.state.list_page_size = 2  # GCE may send fewer than maxResults per page
    query = "filter=" + urllib.parse.quote('(labels.team = "os")')
    names, token = [], ""
    for _ in range(3):
        status, page, _ = request(gce, "GET", f"{PROJECT}/global/images?{query}&maxResults=500{token}")
        assert status == 200
        names += [i["name"] for i in page["items"]]
        token = f"&pageToken={page['nextPageToken']}" if "nextPageToken" in page else ""
    assert names == ["a", "b", "c", "d", "e"] and token == ""  # by name, as GCE lists by default

    _, first, _ = request(gce, "GET", f"{PROJECT}/global/images?{query}")
    other = f"{PROJECT}/global/images?pageToken={first['nextPageToken']}"  # same token, no filter
    for path, message in [
        (other, "'pageToken'"),
        (f"{PROJECT}/global/images?pageToken=bm90LWEtdG9rZW4", "'pageToken'"),
        (f"{PROJECT}/global/images?maxResults=501", "Must be less than or equal to 500"),
        (f"{PROJECT}/global/images?orderBy=creationTimestamp", "'orderBy'"),
    ]:
        status, error, _ = request(gce, "GET", path)
        assert status == 400 and message in error["error"]["message"], (path, error)
