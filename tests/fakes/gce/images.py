"""The images resource of the fake: insert (with the rawDisk tarball checked as GCE checks it), get,
list (label/name/family filters, ordered, paged), delete (DELETING until its operation is done),
deprecate (DeprecationStatus checked beyond its schema), setLabels and the IAM policy calls.

An insert whose operation fails leaves the image in status FAILED, as GCE does; a successful one may
stay invisible to get/list for a few reads after its operation is DONE (`State.lag_after_insert`).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
import re
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from fakes.gce.contract import ApiError, invalid
from fakes.gce.operations import Operations, op_error
from fakes.gce.state import State

GIB = 1 << 30
NAME = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
LABEL_KEY = r"[a-z][a-z0-9_-]{0,62}"
LABEL_VALUE = r"[a-z0-9_-]{0,63}"
PROJECT = r"(?:[-a-z0-9.]+:)?[a-z][-a-z0-9]{4,28}[a-z0-9]"
LICENSE = re.compile(
    rf"(?:https://(?:www|compute)\.googleapis\.com/compute/v1/)?projects/{PROJECT}/global/licenses/{NAME}"
)
KMS_KEY = re.compile(
    rf"projects/{PROJECT}/locations/[a-z0-9-]+/keyRings/[\w-]{{1,63}}/cryptoKeys/[\w-]{{1,63}}"
)
STORAGE_LOCATION = re.compile(r"[a-z]+-[a-z]+[0-9]+|[a-z]+[0-9]*")
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")
IMAGE_PATH = rf"projects/{PROJECT}/global/images/{NAME}"
MAX_RESULTS = 500
FILTER_TERM = re.compile(r'\(\s*([a-zA-Z][\w.-]*)\s*=\s*"([^"]*)"\s*\)')
MAX_LABELS = 64


class Images(Operations):
    """Image handlers; `_images_<method>(args, query, body)` answers one discovery-document method."""

    state: State
    gcs_endpoint: str | None

    def _link(self, project: str, kind: str, name: str) -> str:
        raise NotImplementedError

    def _now(self) -> str:
        raise NotImplementedError

    def _new_id(self) -> int:
        raise NotImplementedError

    def _new_image(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name", "")
        return {
            "kind": "compute#image",
            "id": str(self._new_id()),
            "creationTimestamp": self._now(),
            "selfLink": self._link(project, "images", name),
            "sourceType": "RAW",
            "status": "PENDING",
            "labelFingerprint": fingerprint(body.get("labels", {})),
            **body,
        }

    def _visible(self, key: tuple[str, str]) -> bool:
        """False while a new image is still invisible to reads (eventual consistency); each read counts."""
        left = self.state.invisible.get(key, 0)
        if left > 0:
            self.state.invisible[key] = left - 1
            return False
        return True

    def _progress_of(self, project: str, name: str) -> None:
        """GCE goes on building an image whoever watches: a read of it moves its operation on, as a
        poll of the operation would (a run that lost the insert's reply only sees the image)."""
        for (op_project, op_name), pending in list(self.state.pending.items()):
            if op_project == project and pending[3] == name:
                self._advance(op_project, op_name)

    def _get(self, project: str, name: str, *, read: bool = False) -> dict[str, Any]:
        if read:
            self._progress_of(project, name)
        image = self.state.images.get((project, name))
        if image is None or (read and not self._visible((project, name))):
            raise ApiError(404, f"The resource 'projects/{project}/global/images/{name}' was not found")
        return image

    def _images_insert(self, args: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> Any:
        project, name = args["project"], body["name"]
        if (project, name) in self.state.images:
            raise ApiError(409, f"The resource 'projects/{project}/global/images/{name}' already exists")
        _check_image_fields(body)
        image = self._new_image(project, body)
        sizes: dict[str, int] = {}
        error = self._injected_error("insert") or self._check_source(body, sizes)
        if error is None:
            image.update(diskSizeGb=str(sizes["disk"] // GIB), archiveSizeBytes=str(sizes["archive"]))
        self.state.images[(project, name)] = image
        return self._operation(project, "insert", "images", name, error, finish=self._finish_insert)

    def _check_source(self, body: dict[str, Any], sizes: dict[str, int]) -> dict[str, Any] | None:
        source = body.get("rawDisk", {}).get("source", "")
        prefix = "https://storage.googleapis.com/"
        if not source.startswith(prefix):
            return op_error("INVALID_URL", f"rawDisk.source {source!r} is not a Cloud Storage URL")
        bucket, _, obj = source[len(prefix) :].partition("/")
        if self.gcs_endpoint is None:
            sizes.update(disk=GIB, archive=0)
            return None
        quoted = urllib.parse.quote(obj, safe="")
        url = f"{self.gcs_endpoint}/download/storage/v1/b/{bucket}/o/{quoted}?alt=media"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                data = response.read()
        except urllib.error.HTTPError as exc:
            return op_error(
                "RESOURCE_NOT_FOUND", f"The resource '{source}' was not found (HTTP {exc.code})", 404
            )
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                members = tar.getmembers()
                pax = bool(tar.pax_headers) or any(m.pax_headers for m in members)
        except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError) as exc:
            return op_error("INVALID_IMAGE_TAR", f"The tar archive is not a valid image. ({exc})")
        if len(members) != 1 or members[0].name != "disk.raw" or not members[0].isreg():
            names = [m.name for m in members]
            return op_error("INVALID_IMAGE_TAR", f"The tar archive is not a valid image (members {names}).")
        if pax:  # GCE wants GNU (oldgnu) tar; PAX sparse archives are refused
            return op_error("INVALID_IMAGE_TAR", "The tar archive is not a valid image (PAX headers).")
        if members[0].size % GIB or members[0].size == 0:
            return op_error(
                "INVALID_IMAGE_TAR", f"disk.raw is {members[0].size} bytes, not a multiple of 1 GiB"
            )
        sizes.update(disk=members[0].size, archive=len(data))
        return None

    def _finish_insert(self, project: str, name: str, error: dict[str, Any] | None) -> None:
        image = self.state.images.get((project, name))
        if image is None:
            return
        image["status"] = "FAILED" if error is not None else "READY"
        if error is None and self.state.lag_after_insert:
            self.state.invisible[(project, name)] = self.state.lag_after_insert

    def _images_get(self, args: dict[str, str], query: dict[str, str], body: None) -> Any:
        return self._get(args["project"], args["image"], read=True)

    def _images_list(self, args: dict[str, str], query: dict[str, str], body: None) -> Any:
        """Filtered, ordered (by name, or `creationTimestamp desc`) and paged: at most `maxResults` items
        (0-500, default 500; the fake's `State.list_page_size` may make pages shorter, as GCE may) and a
        `nextPageToken` while more remain, which works only with the same filter and order."""
        project, terms = args["project"], parse_filter(query.get("filter", ""))
        order = query.get("orderBy", "name")
        if order not in ("name", "creationTimestamp desc"):
            raise invalid("orderBy", order, "Only 'name' and 'creationTimestamp desc' are supported.")
        size = int(query.get("maxResults") or MAX_RESULTS)
        if size > MAX_RESULTS:
            raise invalid("maxResults", str(size), f"Must be less than or equal to {MAX_RESULTS}.")
        start = _page_start(query.get("pageToken"), query.get("filter", ""), order)
        items = []
        for (p, name), image in sorted(self.state.images.items(), key=lambda kv: kv[0][1]):
            if p != project:
                continue
            self._progress_of(p, name)
            if (p, name) not in self.state.images:  # a read finished its delete
                continue
            values = {
                "name": image.get("name"),
                "family": image.get("family"),
                "status": image.get("status"),
                **{f"labels.{k}": v for k, v in image.get("labels", {}).items()},
            }
            if all(values.get(k) == v for k, v in terms) and self._visible((p, name)):
                items.append(image)
        if order != "name":
            items.sort(key=lambda i: i["creationTimestamp"], reverse=True)
        end = start + min(size, self.state.list_page_size)
        out: dict[str, Any] = {
            "kind": "compute#imageList",
            "id": f"projects/{project}/global/images",
            "selfLink": self._link(project, "images", "")[:-1],
        }
        if items[start:end]:
            out["items"] = items[start:end]
        if end < len(items):
            out["nextPageToken"] = _page_token(end, query.get("filter", ""), order)
        return out

    def _images_delete(self, args: dict[str, str], query: dict[str, str], body: None) -> Any:
        """The image is DELETING until its operation is done (polled, or the image read), then gone; a
        second delete meanwhile is refused (resourceNotReady)."""
        project, name = args["project"], args["image"]
        image = self._get(project, name)
        if image.get("status") == "DELETING":
            raise ApiError(
                400,
                f"The resource 'projects/{project}/global/images/{name}' is not ready",
                "resourceNotReady",
            )
        error = self._injected_error("delete")
        if error is None:
            image["status"] = "DELETING"
        return self._operation(project, "delete", "images", name, error, finish=self._finish_delete)

    def _finish_delete(self, project: str, name: str, error: dict[str, Any] | None) -> None:
        if error is None:
            self.state.images.pop((project, name), None)
            self.state.policies.pop((project, name), None)

    def _images_deprecate(self, args: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> Any:
        """DeprecationStatus as GCE checks it beyond the schema: RFC 3339 timestamps, and a replacement
        that is an image's URL (full, or projects/<p>/global/images/<name>). An empty body clears it."""
        project, name = args["project"], args["image"]
        image = self._get(project, name)
        _check_deprecation(body, self._link(project, "images", "x").split("/compute/v1/")[0])
        if body.get("state") in (None, "ACTIVE"):
            image.pop("deprecated", None)
        else:
            image["deprecated"] = body
        return self._operation(project, "deprecate", "images", name, self._injected_error("deprecate"))

    def _images_set_labels(self, args: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> Any:
        project, name = args["project"], args["resource"]
        image = self._get(project, name)
        if body.get("labelFingerprint") != image["labelFingerprint"]:
            raise ApiError(412, "Labels fingerprint either invalid or resource labels have changed")
        _check_labels(body.get("labels", {}), "labels")
        image["labels"] = body.get("labels", {})
        image["labelFingerprint"] = fingerprint(image["labels"])
        return self._operation(project, "setLabels", "images", name, self._injected_error("setLabels"))

    def _images_get_iam_policy(self, args: dict[str, str], query: dict[str, str], body: None) -> Any:
        project, name = args["project"], args["resource"]
        self._get(project, name)
        return self.state.policies.get((project, name), {"version": 1, "etag": "ACAB"})

    def _images_set_iam_policy(
        self, args: dict[str, str], query: dict[str, str], body: dict[str, Any]
    ) -> Any:
        project, name = args["project"], args["resource"]
        self._get(project, name)
        policy = dict(body.get("policy", {}))
        current = self.state.policies.get((project, name), {"etag": "ACAB"})
        if policy.get("etag") and policy["etag"] != current["etag"]:
            raise ApiError(
                412, "There were concurrent policy changes. Please retry the whole read-modify-write."
            )
        for binding in policy.get("bindings", []):
            if not binding.get("role", "").startswith("roles/"):
                raise ApiError(400, f"Role {binding.get('role')} is not supported for this resource.")
            for member in binding.get("members", []):
                if member == "allUsers":  # GCE: "On images, you can't grant roles to allUsers"
                    raise ApiError(400, "Invalid member 'allUsers': images cannot be shared with allUsers.")
                if not re.fullmatch(
                    r"(?:user|group|serviceAccount):[^@\s]+@[^@\s]+|domain:[a-z0-9.-]+"
                    r"|allUsers|allAuthenticatedUsers|principal(?:Set)?://\S+",
                    member,
                ):
                    raise ApiError(400, f"Invalid member '{member}' in the IAM policy binding.")
        policy["etag"] = base64.b64encode(self._new_id().to_bytes(8, "big")).decode()
        policy.setdefault("version", 1)
        self.state.policies[(project, name)] = policy
        return policy


def _check_image_fields(body: dict[str, Any]) -> None:
    """What GCE checks on an insert beyond the schema: label rules, license, key and location forms."""
    _check_labels(body.get("labels", {}), "resource.labels")
    for i, license_ in enumerate(body.get("licenses", [])):
        if not LICENSE.fullmatch(license_):
            raise invalid(f"resource.licenses[{i}]", license_, "The license URL is not valid.")
    key = body.get("imageEncryptionKey", {}).get("kmsKeyName")
    if key is not None and not KMS_KEY.fullmatch(key):
        raise invalid("resource.imageEncryptionKey.kmsKeyName", key, "Invalid Cloud KMS key name.")
    for i, location in enumerate(body.get("storageLocations", [])):
        if not STORAGE_LOCATION.fullmatch(location):
            raise invalid(f"resource.storageLocations[{i}]", location, "Invalid storage location.")


def _check_labels(labels: dict[str, str], where: str) -> None:
    if len(labels) > MAX_LABELS:
        raise ApiError(400, f"Invalid value for field '{where}': at most {MAX_LABELS} labels are allowed.")
    for key, value in labels.items():
        if not re.fullmatch(LABEL_KEY, key) or not re.fullmatch(LABEL_VALUE, value):
            raise invalid(where, key, "Label keys and values must follow the GCE label rules.")


def _check_deprecation(body: dict[str, Any], own_host: str) -> None:
    for key in ("deprecated", "obsolete", "deleted"):
        value = body.get(key)
        if value is not None and not RFC3339.fullmatch(value):
            raise invalid(f"deprecationStatus.{key}", value, "The timestamp must be in RFC 3339 format.")
    replacement = body.get("replacement")
    if replacement is None:
        return
    hosts = ("https://www.googleapis.com", "https://compute.googleapis.com", own_host)
    path = next(
        (replacement[len(h) + 12 :] for h in hosts if replacement.startswith(h + "/compute/v1/")), None
    )
    if not re.fullmatch(IMAGE_PATH, path if path is not None else replacement):
        raise invalid(
            "deprecationStatus.replacement",
            replacement,
            "The replacement must be the URL of an image (projects/<project>/global/images/<name>).",
        )


def _page_token(offset: int, filter_: str, order: str) -> str:
    raw = json.dumps({"offset": offset, "filter": filter_, "order": order}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _page_start(token: str | None, filter_: str, order: str) -> int:
    """Where the page `token` starts; 400 for a token this list did not hand out (another filter or
    order, or made up)."""
    if token is None or token == "":
        return 0
    try:
        seen = json.loads(base64.urlsafe_b64decode(token.encode()))
        if seen["filter"] == filter_ and seen["order"] == order and isinstance(seen["offset"], int):
            return int(seen["offset"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise invalid("pageToken", token, "The page token is not valid for this list request.")


def fingerprint(labels: dict[str, str]) -> str:
    digest = json.dumps(labels, sort_keys=True).encode()
    return base64.b64encode(binascii.crc32(digest).to_bytes(4, "big") * 2).decode()


def parse_filter(text: str) -> list[tuple[str, str]]:
    """`(key = "value") AND (key = "value")`, the only filter form the fake understands."""
    if not text.strip():
        return []
    terms = FILTER_TERM.findall(text)
    rest = FILTER_TERM.sub("", text).replace("AND", "").strip()
    if rest or not terms:
        raise ApiError(400, f"Invalid list filter expression '{text}'.")
    return terms
