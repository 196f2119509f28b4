"""A small, stateful Compute Engine images API over real HTTP, for the gcp provider's tests.

Serves images (insert, get, list with a label/name/family filter, delete, deprecate, setLabels,
getIamPolicy, setIamPolicy) and globalOperations (get, wait). Every request body and query is checked
against the compute v1 discovery document that google-api-python-client ships: unknown fields,
wrong types and bad enum values get a 400 in Google's JSON error format. images.insert downloads
rawDisk.source from the GCS emulator and accepts only a gzip'd GNU tar (no PAX headers) whose one
member is `disk.raw` (regular or GNU sparse) of whole GiB. Failures can be injected: HTTP errors
N times (429, 503, 403 quota), an operation error.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import itertools
import json
import re
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

GIB = 1 << 30
STANDARD_QUERY = {"alt", "$alt", "prettyPrint", "fields", "key", "quotaUser", "userIp", "$fields"}
REASONS = {
    400: "invalid",
    403: "forbidden",
    404: "notFound",
    409: "alreadyExists",
    412: "conditionNotMet",
    429: "rateLimitExceeded",
    500: "backendError",
    503: "backendError",
}
FILTER_TERM = re.compile(r'\(\s*([a-zA-Z][\w.-]*)\s*=\s*"([^"]*)"\s*\)')


@cache
def discovery() -> dict[str, Any]:
    doc = resources.files("googleapiclient") / "discovery_cache" / "documents" / "compute.v1.json"
    return json.loads(doc.read_text())  # type: ignore[no-any-return]


class ApiError(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason or REASONS.get(code, "error")

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
            }
        }


def validate(value: Any, schema: dict[str, Any], where: str) -> None:
    """Check a JSON value against a discovery-document schema; raise ApiError(400) on the first problem."""
    if "$ref" in schema:
        schema = discovery()["schemas"][schema["$ref"]]
    kind, fmt = schema.get("type"), schema.get("format")

    def bad(what: str) -> ApiError:
        return ApiError(400, f"Invalid value at '{where}' ({what}): {json.dumps(value)[:80]}")

    if kind == "object":
        if not isinstance(value, dict):
            raise bad("expected an object")
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                validate(item, props[key], f"{where}.{key}")
            elif extra is not None:
                validate(item, extra, f"{where}[{key!r}]")
            else:
                raise ApiError(
                    400,
                    f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field.",
                )
    elif kind == "array":
        if not isinstance(value, list):
            raise bad("expected a list")
        for i, item in enumerate(value):
            validate(item, schema["items"], f"{where}[{i}]")
    elif kind == "string":
        if fmt in ("int64", "uint64") and isinstance(value, int) and not isinstance(value, bool):
            return
        if not isinstance(value, str):
            raise bad("expected a string")
        if "enum" in schema and value not in schema["enum"]:
            raise bad(f"not one of {', '.join(schema['enum'])}")
        if fmt in ("int64", "uint64") and not re.fullmatch(r"-?\d+", value):
            raise bad("expected an integer string")
        if fmt == "byte":
            try:
                base64.b64decode(value, validate=True)
            except binascii.Error:
                raise bad("expected base64") from None
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("expected an integer")
    elif kind == "number":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise bad("expected a number")
    elif kind == "boolean" and not isinstance(value, bool):
        raise bad("expected a boolean")


@dataclass
class Fault:
    status: int
    times: int
    method: str | None = None
    path: str | None = None
    reason: str | None = None
    message: str = "injected failure"


@dataclass
class State:
    images: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    operations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pending: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    policies: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    request_ids: dict[str, tuple[str, str]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    operation_errors: list[dict[str, Any]] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)


class FakeGce:
    """Start with `FakeGce(gcs_endpoint).start()`; point ImagesClient's api_endpoint at `.url`."""

    def __init__(self, gcs_endpoint: str | None = None, polls_per_operation: int = 1) -> None:
        self.gcs_endpoint = gcs_endpoint.rstrip("/") if gcs_endpoint else None
        self.polls_per_operation = polls_per_operation
        self.state = State()
        self.lock = threading.RLock()
        self._ids = itertools.count(1000)
        self._clock = datetime(2030, 1, 1, tzinfo=UTC)
        self._server: ThreadingHTTPServer | None = None
        self.routes = self._routes()

    # -- lifecycle and test controls -------------------------------------------------------

    def start(self, port: int = 0) -> FakeGce:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake._handle(self)

            do_POST = do_DELETE = do_PATCH = do_GET  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-gce").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def reset(self) -> None:
        with self.lock:
            self.state = State()

    def fail(
        self,
        status: int,
        times: int = 1,
        *,
        method: str | None = None,
        path: str | None = None,
        reason: str | None = None,
        message: str = "injected failure",
    ) -> None:
        """The next `times` requests matching method and path substring answer `status`."""
        with self.lock:
            self.state.faults.append(Fault(status, times, method, path, reason, message))

    def fail_next_operation(self, code: str, message: str, http_status: int = 400) -> None:
        """The next image insert's operation ends DONE with this error (and no image)."""
        with self.lock:
            self.state.operation_errors.append(
                {"errors": [{"code": code, "message": message}], "status": http_status}
            )

    def calls(self, method: str | None = None, contains: str = "") -> list[str]:
        with self.lock:
            return [p for m, p in self.state.log if (method is None or m == method) and contains in p]

    def image(self, project: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self.state.images.get((project, name))

    def policy(self, project: str, name: str) -> dict[str, Any]:
        with self.lock:
            return self.state.policies.get((project, name), {})

    def add_image(self, project: str, name: str, **fields: Any) -> dict[str, Any]:
        """Seed an existing image (as if made earlier, maybe by someone else)."""
        with self.lock:
            image = self._new_image(project, {"name": name, "status": "READY", **fields})
            self.state.images[(project, name)] = image
            return image

    # -- HTTP plumbing ----------------------------------------------------------------------

    def _routes(self) -> list[tuple[str, re.Pattern[str], dict[str, Any], str]]:
        doc, out = discovery(), []
        for resource in ("images", "globalOperations"):
            for method_name, method in doc["resources"][resource]["methods"].items():
                pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", method["path"])
                out.append(
                    (
                        method["httpMethod"],
                        re.compile(f"^/compute/v1/{pattern}$"),
                        method,
                        f"{resource}.{method_name}",
                    )
                )
        return out

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(handler.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        with self.lock:
            self.state.log.append((handler.command, handler.path))
        try:
            status, body = self._dispatch(handler.command, url.path, query, raw)
        except ApiError as exc:
            status, body = exc.code, exc.body()
        except Exception as exc:  # a bug in the fake: fail loudly in the test that hit it
            with self.lock:
                self.state.crashes.append(f"{handler.command} {handler.path}: {exc!r}")
            status, body = 500, ApiError(500, f"fake crashed: {exc!r}").body()
        out = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=UTF-8")
        handler.send_header("Content-Length", str(len(out)))
        handler.end_headers()
        handler.wfile.write(out)

    def _route(self, verb: str, path: str) -> tuple[re.Match[str], dict[str, Any], str]:
        for method_verb, pattern, method, name in self.routes:
            match = pattern.match(path)
            if match and method_verb == verb:
                return match, method, name
        raise ApiError(404, f"no such method: {verb} {path}")

    def _dispatch(self, verb: str, path: str, query: dict[str, str], raw: bytes) -> tuple[int, Any]:
        with self.lock:
            for fault in self.state.faults:
                if (
                    fault.times > 0
                    and (fault.method in (None, verb))
                    and (fault.path is None or fault.path in path)
                ):
                    fault.times -= 1
                    raise ApiError(fault.status, fault.message, fault.reason)
        match, method, name = self._route(verb, path)
        params = method.get("parameters", {})
        for key in query:
            if key not in params and key not in STANDARD_QUERY:
                raise ApiError(
                    400, f'Invalid JSON payload received. Unknown name "{key}": Cannot bind query parameter.'
                )
        body: Any = None
        if "request" in method:
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise ApiError(400, "Invalid JSON payload received.") from None
            validate(body, method["request"], method["request"]["$ref"])
        elif raw.strip() not in (b"", b"{}"):
            raise ApiError(400, f"{name} takes no request body")
        args = match.groupdict()
        handler = getattr(self, "_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name.replace(".", "_")).lower())
        with self.lock:
            answer = json.loads(json.dumps(handler(args, query, body)))
        try:  # the fake's own answers must be what real Compute could send
            validate(answer, method["response"], method["response"]["$ref"])
        except ApiError as exc:
            raise RuntimeError(f"the fake answered {name} with an invalid body: {exc.message}") from None
        return 200, answer

    # -- images ---------------------------------------------------------------------------------

    def _now(self) -> str:
        self._clock += timedelta(seconds=1)
        return self._clock.isoformat(timespec="milliseconds")

    def _link(self, project: str, kind: str, name: str) -> str:
        return f"{self.url}/compute/v1/projects/{project}/global/{kind}/{name}"

    def _new_image(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name", "")
        return {
            "kind": "compute#image",
            "id": str(next(self._ids)),
            "creationTimestamp": self._now(),
            "selfLink": self._link(project, "images", name),
            "sourceType": "RAW",
            "status": "PENDING",
            "labelFingerprint": _fingerprint(body.get("labels", {})),
            **body,
        }

    def _get(self, project: str, name: str) -> dict[str, Any]:
        image = self.state.images.get((project, name))
        if image is None:
            raise ApiError(404, f"The resource 'projects/{project}/global/images/{name}' was not found")
        return image

    def _images_insert(self, args: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> Any:
        project, rid = args["project"], query.get("requestId")
        if rid and rid in self.state.request_ids:
            return self.state.operations[self.state.request_ids[rid]]
        name = body.get("name", "")
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name):
            raise ApiError(
                400,
                f"Invalid value for field 'resource.name': '{name}'. Must be a match of regex "
                "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?|[1-9][0-9]{0,19})'",
            )
        if (project, name) in self.state.images:
            raise ApiError(409, f"The resource 'projects/{project}/global/images/{name}' already exists")
        for key, value in body.get("labels", {}).items():
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key) or not re.fullmatch(
                r"[a-z0-9_-]{0,63}", value
            ):
                raise ApiError(400, f"Invalid value for field 'resource.labels': '{key}'")
        image = self._new_image(project, body)
        sizes: dict[str, int] = {}
        error = self.state.operation_errors.pop(0) if self.state.operation_errors else None
        error = error or self._check_source(body, sizes)
        if error is None:
            image.update(diskSizeGb=str(sizes["disk"] // GIB), archiveSizeBytes=str(sizes["archive"]))
        self.state.images[(project, name)] = image
        op = self._operation(project, "insert", "images", name, error, finish=self._finish_insert)
        if rid:
            self.state.request_ids[rid] = (project, op["name"])
        return op

    def _check_source(self, body: dict[str, Any], sizes: dict[str, int]) -> dict[str, Any] | None:
        source = body.get("rawDisk", {}).get("source", "")
        prefix = "https://storage.googleapis.com/"
        if not source.startswith(prefix):
            return _op_error("INVALID_URL", f"rawDisk.source {source!r} is not a Cloud Storage URL")
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
            return _op_error(
                "RESOURCE_NOT_FOUND", f"The resource '{source}' was not found (HTTP {exc.code})", 404
            )
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                members = tar.getmembers()
                pax = bool(tar.pax_headers) or any(m.pax_headers for m in members)
        except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError) as exc:
            return _op_error("INVALID_IMAGE_TAR", f"The tar archive is not a valid image. ({exc})")
        if len(members) != 1 or members[0].name != "disk.raw" or not members[0].isreg():
            names = [m.name for m in members]
            return _op_error("INVALID_IMAGE_TAR", f"The tar archive is not a valid image (members {names}).")
        if pax:  # GCE wants GNU (oldgnu) tar; PAX sparse archives are refused
            return _op_error("INVALID_IMAGE_TAR", "The tar archive is not a valid image (PAX headers).")
        if members[0].size % GIB or members[0].size == 0:
            return _op_error(
                "INVALID_IMAGE_TAR", f"disk.raw is {members[0].size} bytes, not a multiple of 1 GiB"
            )
        sizes.update(disk=members[0].size, archive=len(data))
        return None

    def _finish_insert(self, op: dict[str, Any], error: dict[str, Any] | None) -> None:
        key = (op["_project"], op["_resource"])
        if error is not None:
            self.state.images.pop(key, None)
        elif key in self.state.images:
            self.state.images[key]["status"] = "READY"

    def _images_get(self, args: dict[str, str], query: dict[str, str], body: None) -> Any:
        return self._get(args["project"], args["image"])

    def _images_list(self, args: dict[str, str], query: dict[str, str], body: None) -> Any:
        project, terms = args["project"], _parse_filter(query.get("filter", ""))
        items = []
        for (p, _), image in sorted(self.state.images.items(), key=lambda kv: kv[1]["creationTimestamp"]):
            if p != project:
                continue
            values = {
                "name": image.get("name"),
                "family": image.get("family"),
                "status": image.get("status"),
                **{f"labels.{k}": v for k, v in image.get("labels", {}).items()},
            }
            if all(values.get(k) == v for k, v in terms):
                items.append(image)
        out: dict[str, Any] = {
            "kind": "compute#imageList",
            "id": f"projects/{project}/global/images",
            "selfLink": self._link(project, "images", "")[:-1],
        }
        if items:
            out["items"] = items
        return out

    def _images_delete(self, args: dict[str, str], query: dict[str, str], body: None) -> Any:
        project, name = args["project"], args["image"]
        self._get(project, name)
        del self.state.images[(project, name)]
        self.state.policies.pop((project, name), None)
        return self._operation(project, "delete", "images", name, None)

    def _images_deprecate(self, args: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> Any:
        project, name = args["project"], args["image"]
        image = self._get(project, name)
        if body.get("state") in (None, "ACTIVE"):
            image.pop("deprecated", None)
        else:
            image["deprecated"] = body
        return self._operation(project, "deprecate", "images", name, None)

    def _images_set_labels(self, args: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> Any:
        project, name = args["project"], args["resource"]
        image = self._get(project, name)
        if body.get("labelFingerprint") != image["labelFingerprint"]:
            raise ApiError(412, "Labels fingerprint either invalid or resource labels have changed")
        image["labels"] = body.get("labels", {})
        image["labelFingerprint"] = _fingerprint(image["labels"])
        return self._operation(project, "setLabels", "images", name, None)

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
        policy["etag"] = base64.b64encode(next(self._ids).to_bytes(8, "big")).decode()
        policy.setdefault("version", 1)
        self.state.policies[(project, name)] = policy
        return policy

    # -- operations -----------------------------------------------------------------------------

    def _operation(
        self,
        project: str,
        kind: str,
        collection: str,
        name: str,
        error: dict[str, Any] | None,
        finish: Any = None,
    ) -> dict[str, Any]:
        op_name = f"operation-{next(self._ids)}-{kind}"
        op = {
            "kind": "compute#operation",
            "id": str(next(self._ids)),
            "name": op_name,
            "operationType": kind,
            "targetLink": self._link(project, collection, name),
            "status": "RUNNING",
            "progress": 0,
            "insertTime": self._now(),
            "user": "imgpub-test@example.com",
            "selfLink": self._link(project, "operations", op_name),
        }
        self.state.operations[(project, op_name)] = op
        self.state.pending[(project, op_name)] = [self.polls_per_operation, error, finish, project, name]
        return op

    def _advance(self, project: str, name: str) -> dict[str, Any]:
        key = (project, name)
        op = self.state.operations.get(key)
        if op is None:
            raise ApiError(404, f"The resource 'projects/{project}/global/operations/{name}' was not found")
        pending = self.state.pending.get(key)
        if pending is not None:
            pending[0] -= 1
            op["progress"] = 50
            if pending[0] <= 0:
                del self.state.pending[key]
                _, error, finish, proj, resource = pending
                op.update(status="DONE", progress=100, endTime=self._now())
                if error is not None:
                    op["error"] = {"errors": error["errors"]}
                    op["httpErrorStatusCode"] = error["status"]
                    op["httpErrorMessage"] = "BAD REQUEST" if error["status"] == 400 else "NOT FOUND"
                if finish is not None:
                    finish({**op, "_project": proj, "_resource": resource}, error)
        return op

    def _global_operations_get(self, args: dict[str, str], query: dict[str, str], body: None) -> Any:
        return self._advance(args["project"], args["operation"])

    def _global_operations_wait(self, args: dict[str, str], query: dict[str, str], body: None) -> Any:
        return self._advance(args["project"], args["operation"])


def _op_error(code: str, message: str, status: int = 400) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message}], "status": status}


def _fingerprint(labels: dict[str, str]) -> str:
    digest = json.dumps(labels, sort_keys=True).encode()
    return base64.b64encode(binascii.crc32(digest).to_bytes(4, "big") * 2).decode()


def _parse_filter(text: str) -> list[tuple[str, str]]:
    """`(key = "value") AND (key = "value")`, the only filter form the fake understands."""
    if not text.strip():
        return []
    terms = FILTER_TERM.findall(text)
    rest = FILTER_TERM.sub("", text).replace("AND", "").strip()
    if rest or not terms:
        raise ApiError(400, f"Invalid list filter expression '{text}'.")
    return terms
