"""The Cloud Storage JSON API contract, from the storage v1 discovery document, for every request the
proxy in front of gcp-storage-emulator forwards (the emulator itself checks almost nothing).

Checked: the method exists (JSON API, upload and download paths), its query parameters are declared
(or standard, or the resumable protocol's `upload_id`) and well typed (int64 preconditions such as
`ifGenerationMatch`, enums such as `projection`), an upload names its `uploadType` (media, multipart,
resumable), `kmsKeyName` has the form its description gives
(projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>, no version), and an upload's object
metadata fits the Object schema without `kmsKeyName` (the schema says sending it there fails with 400;
the key goes in the query). Answers are ApiErrors in Google's JSON error format.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from fakes.gce.contract import ApiError, check_parameters, discovery, validate

UPLOAD_TYPES = frozenset({"media", "multipart", "resumable"})
KMS_KEY = re.compile(r"projects/[^/]+/locations/([^/]+)/keyRings/[^/]+/cryptoKeys/[^/]+")
PREFIXES = {"/storage/v1/": "json", "/upload/storage/v1/": "upload", "/download/storage/v1/": "download"}


@dataclass(frozen=True)
class Call:
    """One checked request: which method, its path arguments and whether it creates an object."""

    method_id: str
    args: dict[str, str]
    query: dict[str, str]
    metadata: dict[str, Any]

    @property
    def creates_object(self) -> bool:
        return self.method_id == "objects.insert" and "upload_id" not in self.query

    @property
    def object_name(self) -> str:
        return str(self.query.get("name") or self.metadata.get("name") or "")


def _routes() -> list[tuple[str, str, re.Pattern[str], dict[str, Any], str]]:
    doc, out = discovery("storage.v1"), []
    for resource in ("objects", "buckets"):
        for name, method in doc["resources"][resource]["methods"].items():
            pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", method["path"]) + "$")
            out.append(("json", method["httpMethod"], pattern, method, f"{resource}.{name}"))
            if f"{resource}.{name}" == "objects.insert":  # media uploads: POST starts, PUT sends chunks
                out.append(("upload", "POST", pattern, method, "objects.insert"))
                out.append(("upload", "PUT", pattern, method, "objects.insert"))
            if f"{resource}.{name}" == "objects.get":  # the emulator's mediaLink leaves '/' unencoded
                loose = re.compile(pattern.pattern.replace("(?P<object>[^/]+)", "(?P<object>.+)"))
                out.append(("download", "GET", loose, method, "objects.get"))
    return out


ROUTES = _routes()


def check(verb: str, path: str, query: dict[str, str], body: bytes) -> Call:
    """The call this request makes, or ApiError(400/404) where real Cloud Storage would refuse it."""
    kind, rest = next(((k, path[len(p) :]) for p, k in PREFIXES.items() if path.startswith(p)), ("", ""))
    found = _route(kind, verb, rest)
    if found is None:
        raise ApiError(404, f"Not Found: no storage method {verb} {path}", "notFound")
    method, method_id, args = found
    upload = kind == "upload"
    check_parameters(
        method, args, query, doc=discovery("storage.v1"), extra=frozenset({"upload_id"} if upload else ())
    )
    if upload:
        _check_upload(verb, query)
    key = query.get("kmsKeyName")
    if key is not None and not KMS_KEY.fullmatch(key):
        raise ApiError(400, f"Invalid argument: kmsKeyName '{key}' is not a Cloud KMS key name.", "invalid")
    metadata = _metadata(verb, upload, query, body)
    return Call(method_id, args, query, metadata)


def _route(kind: str, verb: str, rest: str) -> tuple[dict[str, Any], str, dict[str, str]] | None:
    for route_kind, route_verb, pattern, method, method_id in ROUTES:
        match = pattern.match(rest)
        if match and route_kind == kind and route_verb == verb:
            return method, method_id, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
    return None


def _check_upload(verb: str, query: dict[str, str]) -> None:
    upload_type = query.get("uploadType")
    if upload_type is None:
        raise ApiError(400, "Required parameter: uploadType", "required")
    if upload_type not in UPLOAD_TYPES:
        raise ApiError(400, f"Invalid upload type '{upload_type}'.", "invalidParameter")
    if verb == "PUT" and "upload_id" not in query:
        raise ApiError(400, "A resumable upload's PUT needs its upload_id.", "required")


def _metadata(verb: str, upload: bool, query: dict[str, str], body: bytes) -> dict[str, Any]:
    """The object resource a resumable upload starts with (its JSON body)."""
    if not (upload and verb == "POST" and query.get("uploadType") == "resumable" and body.strip()):
        return {}
    try:
        metadata = json.loads(body)
    except ValueError:
        raise ApiError(400, "Invalid JSON payload received.", "parseError") from None
    validate(metadata, {"$ref": "Object"}, "Object", discovery("storage.v1"))
    if "kmsKeyName" in metadata:
        raise ApiError(
            400,
            "kmsKeyName in the object resource is not supported; use the kmsKeyName parameter.",
            "invalid",
        )
    return metadata if isinstance(metadata, dict) else {}


def key_location(key: str) -> str:
    match = KMS_KEY.fullmatch(key)
    return match.group(1) if match else ""
