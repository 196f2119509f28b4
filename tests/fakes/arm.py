"""A small, stateful Azure Resource Manager (Microsoft.Compute) over real HTTPS, for tests.

Implements what imgpub-azure calls: images, galleries, gallery images, gallery image versions
(with replication status) and disks (with grant/revoke access returning a SAS that points at
Azurite). Long-running operations behave as ARM's do: PUT answers 201/200 with Azure-AsyncOperation,
POST and DELETE answer 202 with Location. Request bodies are checked against the azure-mgmt-compute
models (unknown members -> 400 InvalidRequestContent). Failures are injected explicitly.

    with FakeArm(storage_conn=..., ca_dir=tmp) as arm:   # arm.url, arm.ca_path
        arm.inject("PUT", r"/images/", 429, retry_after=1)
        arm.fail_replication["westus"] = "disk quota exceeded"
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import typing
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.mgmt.compute.models._models as _models_module
import trustme
from azure.mgmt.compute import models as m
from azure.mgmt.compute._utils.model_base import Model, _RestField
from azure.storage.blob import BlobClient, BlobSasPermissions, ContainerClient, generate_blob_sas

__all__ = ["FakeArm", "unknown_fields"]

MIN_UPLOAD = 20 * (1 << 20) + 512
MAX_UPLOAD = 32 * (1 << 40) + 512
DISK_CONTAINER = "fakedisks"


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, globalns={**vars(_models_module), "_models": m})
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, _RestField):
                out[value._rest_name_input or attr] = hints.get(attr)
    return out


def _model_types(hint: Any) -> list[tuple[str, type]]:
    """('model'|'list'|'dict', Model class) found in a type hint."""
    origin = typing.get_origin(hint)
    if origin is None:
        return [("model", hint)] if isinstance(hint, type) and issubclass(hint, Model) else []
    if origin is list:
        return [("list", c) for _, c in _model_types(typing.get_args(hint)[0])]
    if origin is dict:
        return [("dict", c) for _, c in _model_types(typing.get_args(hint)[1])]
    out: list[tuple[str, type]] = []
    for arg in typing.get_args(hint):
        out += _model_types(arg)
    return out


def unknown_fields(body: Any, cls: type, path: str = "") -> list[str]:
    """Dotted paths of members of `body` that the SDK model `cls` (recursively) does not define."""
    if not isinstance(body, dict):
        return []
    known = _fields(cls)
    bad: list[str] = []
    for key, value in body.items():
        where = f"{path}.{key}" if path else key
        if key not in known:
            bad.append(where)
            continue
        for shape, sub in _model_types(known[key]):
            if shape == "model":
                bad += unknown_fields(value, sub, where)
            elif shape == "list" and isinstance(value, list):
                for i, item in enumerate(value):
                    bad += unknown_fields(item, sub, f"{where}[{i}]")
            elif shape == "dict" and isinstance(value, dict):
                for k, item in value.items():
                    bad += unknown_fields(item, sub, f"{where}.{k}")
    return bad


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    retry_after: int | None
    code: str


@dataclass
class Operation:
    path: str | None
    polls: int
    kind: str  # "put" | "delete" | "grant" | "revoke"
    output: dict[str, Any] | None = None
    done: bool = False
    error: dict[str, str] | None = None


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_RESOURCE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute/(?P<rest>.+)$",
    re.IGNORECASE,
)
_OPERATION = re.compile(
    r"^/subscriptions/[^/]+/providers/Microsoft\.Compute/locations/[^/]+/operations/(?P<id>[^/]+)$"
)
_LOCATION = re.compile(r"^/fake/operations/(?P<id>[^/]+)$")
_TYPES: list[tuple[re.Pattern[str], str, type]] = [
    (re.compile(r"^images/[^/]+$", re.I), "Microsoft.Compute/images", m.Image),
    (re.compile(r"^galleries/[^/]+$", re.I), "Microsoft.Compute/galleries", m.Gallery),
    (
        re.compile(r"^galleries/[^/]+/images/[^/]+$", re.I),
        "Microsoft.Compute/galleries/images",
        m.GalleryImage,
    ),
    (
        re.compile(r"^galleries/[^/]+/images/[^/]+/versions/[^/]+$", re.I),
        "Microsoft.Compute/galleries/images/versions",
        m.GalleryImageVersion,
    ),
    (re.compile(r"^disks/[^/]+$", re.I), "Microsoft.Compute/disks", m.Disk),
]


class FakeArm:
    def __init__(
        self,
        storage_conn: str,
        ca_dir: Path,
        *,
        storage_api_version: str = "2025-11-05",
        polls: int = 2,
        port: int = 0,
    ) -> None:
        self.storage_conn = storage_conn
        self.storage_api_version = storage_api_version
        self.polls = polls
        self.resources: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, Operation] = {}
        self.faults: list[Fault] = []
        self.fail_replication: dict[str, str] = {}
        self.fail_operations: list[tuple[re.Pattern[str], str, str]] = []
        """(resource path regex, code, message): the PUT is accepted, then its async operation fails."""
        self.requests: list[tuple[str, str]] = []
        self.disk_container = f"{DISK_CONTAINER}{uuid.uuid4().hex[:12]}"
        """Where upload disks keep their bytes (one container per fake, so tests do not share disks)."""
        self.bodies: list[tuple[str, str, Any]] = []
        self.lock = threading.RLock()
        self._ca = trustme.CA()
        ca_dir.mkdir(parents=True, exist_ok=True)
        self.ca_path = ca_dir / "arm-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_path))
        cert = self._ca.issue_cert("127.0.0.1", "localhost")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeArm:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---- test controls ---------------------------------------------------------------------------

    def inject(
        self,
        method: str,
        pattern: str,
        status: int,
        *,
        times: int = 1,
        retry_after: int | None = None,
        code: str | None = None,
    ) -> None:
        """Answer the next `times` requests matching method and path regex with `status`."""
        default = {429: "TooManyRequests", 503: "ServiceUnavailable", 500: "InternalServerError"}
        self.faults.append(
            Fault(
                method,
                re.compile(pattern),
                status,
                times,
                retry_after,
                code or default.get(status, "Injected"),
            )
        )

    def get(self, rest: str) -> dict[str, Any] | None:
        with self.lock:
            return next((r for k, r in self.resources.items() if k.endswith("/" + rest.lower())), None)

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for meth, path in self.requests if meth == method and re.search(pattern, path))

    # ---- handling --------------------------------------------------------------------------------

    def handle(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(url)
        path, query = parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            self.requests.append((method, path))
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.pattern.search(path):
                    fault.times -= 1
                    extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                    return fault.status, extra, _error(fault.code, f"injected {fault.status}")
        if not headers.get("authorization", "").startswith("Bearer "):
            return 401, {}, _error("AuthenticationFailed", "no bearer token")
        if "api-version" not in query:
            return 400, {}, _error("MissingApiVersionParameter", "api-version is required")
        try:
            if match := _OPERATION.match(path):
                return self._operation_status(match["id"])
            if match := _LOCATION.match(path):
                return self._location_status(match["id"])
            if match := _RESOURCE.match(path):
                return self._resource(method, path, match["rest"], query, body)
            raise ArmError(404, "InvalidResourceType", f"no route for {path}")
        except ArmError as exc:
            return exc.status, {}, _error(exc.code, exc.message)

    def _resource(
        self, method: str, path: str, rest: str, query: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        if method == "POST" and rest.lower().startswith("disks/"):
            disk_path, _, action = path.rpartition("/")
            return self._disk_access(disk_path, action, body)
        rtype = next(((t, cls) for pattern, t, cls in _TYPES if pattern.match(rest)), None)
        if rtype is None:
            raise ArmError(404, "InvalidResourceType", f"unsupported resource {rest}")
        key = path.lower()
        with self.lock:
            if method == "GET":
                res = self.resources.get(key)
                if res is None:
                    raise ArmError(404, "ResourceNotFound", f"The Resource '{rest}' was not found.")
                return 200, {}, self._view(res, query)
            if method == "DELETE":
                if key not in self.resources:
                    return 204, {}, None
                op = self._new_op(key, "delete")
                return 202, {"Location": f"{self.url}/fake/operations/{op}?api-version=x"}, None
            if method == "PUT":
                doc = json.loads(body or b"{}")
                self.bodies.append((method, rest, doc))
                bad = unknown_fields(doc, rtype[1])
                if bad:
                    raise ArmError(400, "InvalidRequestContent", f"unknown members: {', '.join(bad)}")
                return self._put(path, rest, rtype[0], doc)
        raise ArmError(405, "MethodNotAllowed", method)

    def _put(self, path: str, rest: str, rtype: str, doc: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        key = path.lower()
        if not doc.get("location"):
            raise ArmError(400, "LocationRequired", "location is required")
        props = dict(doc.get("properties") or {})
        self._check_parent(key, rest)
        checks = {
            "Microsoft.Compute/images": self._check_image,
            "Microsoft.Compute/galleries/images": self._check_definition,
            "Microsoft.Compute/galleries/images/versions": self._check_version,
            "Microsoft.Compute/disks": self._check_disk,
        }
        # Updating a version (more regions) keeps its source: the upload may be gone by then.
        updating_version = key in self.resources and rtype.endswith("versions")
        if rtype in checks and not updating_version:
            checks[rtype](props, rest)
        existed = key in self.resources
        name = rest.rsplit("/", 1)[1]
        resource = {
            "id": path,
            "name": name,
            "type": rtype,
            "location": doc["location"],
            "tags": doc.get("tags") or {},
            "properties": {**props, "provisioningState": "Creating"},
        }
        if "sku" in doc:
            resource["sku"] = doc["sku"]
        if rtype.endswith("disks"):
            resource["properties"]["diskState"] = "ReadyToUpload"
        if rtype.endswith("versions"):
            regions = props.get("publishingProfile", {}).get("targetRegions") or [{"name": doc["location"]}]
            resource["_regions"] = [r["name"] for r in regions]
        self.resources[key] = resource
        op = self._new_op(key, "put")
        loc = doc["location"]
        async_url = (
            f"{self.url}/subscriptions/{key_sub(key)}/providers/Microsoft.Compute/locations/{loc}"
            f"/operations/{op}?api-version=x"
        )
        # Disks answer 202 (their swagger allows 200/202), the others 201 for a new resource.
        status = 202 if rtype.endswith("disks") else (200 if existed else 201)
        return status, {"Azure-AsyncOperation": async_url}, self._view(resource, {})

    def _check_parent(self, key: str, rest: str) -> None:
        parent = rest.rsplit("/", 2)[0] if rest.lower().count("/") >= 3 else None
        if parent and self.get(parent) is None:
            raise ArmError(404, "ParentResourceNotFound", f"parent {parent} not found")

    def _check_image(self, props: dict[str, Any], rest: str) -> None:
        os_disk = props.get("storageProfile", {}).get("osDisk") or {}
        if os_disk.get("osType") not in ("Linux", "Windows") or not os_disk.get("osState"):
            raise ArmError(400, "InvalidParameter", "osDisk.osType and osState are required")
        if os_disk.get("blobUri"):
            self._check_vhd_blob(os_disk["blobUri"])
        elif os_disk.get("managedDisk", {}).get("id"):
            self._check_source_disk(os_disk["managedDisk"]["id"])
        else:
            raise ArmError(400, "InvalidParameter", "osDisk needs blobUri or managedDisk")

    def _check_definition(self, props: dict[str, Any], rest: str) -> None:
        if props.get("osType") not in ("Linux", "Windows") or not props.get("osState"):
            raise ArmError(400, "InvalidParameter", "osType and osState are required")
        ident = props.get("identifier") or {}
        if not all(ident.get(k) for k in ("publisher", "offer", "sku")):
            raise ArmError(400, "InvalidParameter", "identifier publisher/offer/sku are required")

    def _check_version(self, props: dict[str, Any], rest: str) -> None:
        if not re.fullmatch(r"\d+\.\d+\.\d+", rest.rsplit("/", 1)[1]):
            raise ArmError(400, "InvalidParameter", "version name must be MAJOR.MINOR.PATCH")
        storage = props.get("storageProfile") or {}
        source = (storage.get("source") or {}).get("id")
        disk_source = (storage.get("osDiskImage") or {}).get("source") or {}
        if source:
            if self.get(source.split("/providers/Microsoft.Compute/", 1)[1]) is None:
                raise ArmError(404, "NotFound", f"source {source} not found")
        elif disk_source.get("uri"):
            if not disk_source.get("storageAccountId"):
                raise ArmError(
                    400, "InvalidParameter", "osDiskImage.source.storageAccountId is required with uri"
                )
            self._check_vhd_blob(disk_source["uri"])
        elif disk_source.get("id"):
            self._check_source_disk(disk_source["id"])
        else:
            raise ArmError(400, "InvalidParameter", "storageProfile needs source.id or osDiskImage.source")

    def _check_disk(self, props: dict[str, Any], rest: str) -> None:
        creation = props.get("creationData") or {}
        if creation.get("createOption") != "Upload":
            raise ArmError(400, "InvalidParameter", "this fake only creates disks for upload")
        size = creation.get("uploadSizeBytes") or 0
        if not (MIN_UPLOAD <= size <= MAX_UPLOAD) or (size - 512) % (1 << 20):
            raise ArmError(400, "InvalidParameter", f"uploadSizeBytes {size} must be N MiB + 512 in range")

    def _check_vhd_blob(self, uri: str) -> None:
        blob = self._blob_for(uri)
        props = blob.get_blob_properties()
        if props.size < MIN_UPLOAD - (1 << 20) or (props.size - 512) % (1 << 20):
            raise ArmError(400, "InvalidParameter", f"unsupported virtual size of {props.size - 512} bytes")
        footer = blob.download_blob(offset=props.size - 512, length=512).readall()
        if footer[:8] != b"conectix":
            raise ArmError(400, "InvalidParameter", "the blob is not a fixed VHD (no footer)")

    def _check_source_disk(self, disk_id: str) -> None:
        disk = self.get(disk_id.split("/providers/Microsoft.Compute/", 1)[1])
        if disk is None:
            raise ArmError(404, "NotFound", f"disk {disk_id} not found")
        state = disk["properties"]["diskState"]
        if state in ("ReadyToUpload", "ActiveUpload"):
            raise ArmError(409, "OperationNotAllowed", f"disk is in state {state}")

    def _blob_for(self, uri: str) -> BlobClient:
        parts = urlsplit(uri).path.split("/")
        container, name = parts[2], "/".join(parts[3:])
        return BlobClient.from_connection_string(
            self.storage_conn, container, name, api_version=self.storage_api_version
        )

    def _disk_access(self, disk_path: str, action: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            disk = self.resources.get(disk_path.lower())
            if disk is None:
                raise ArmError(404, "ResourceNotFound", "disk not found")
            props = disk["properties"]
            if action == "beginGetAccess":
                doc = json.loads(body or b"{}")
                bad = unknown_fields(doc, m.GrantAccessData)
                if bad:
                    raise ArmError(400, "InvalidRequestContent", f"unknown members: {', '.join(bad)}")
                if doc.get("access") != "Write" or props["diskState"] not in (
                    "ReadyToUpload",
                    "ActiveUpload",
                ):
                    raise ArmError(
                        409,
                        "OperationNotAllowed",
                        f"cannot grant {doc.get('access')} in {props['diskState']}",
                    )
                sas_url = self._disk_sas(disk)
                props["diskState"] = "ActiveUpload"
                op = self._new_op(disk_path.lower(), "grant", output={"accessSAS": sas_url})
            elif action == "endGetAccess":
                if props["diskState"] == "ActiveUpload":
                    props["diskState"] = "Unattached"
                op = self._new_op(disk_path.lower(), "revoke")
            else:
                raise ArmError(404, "InvalidResourceType", action)
            return 202, {"Location": f"{self.url}/fake/operations/{op}?api-version=x"}, None

    def _disk_sas(self, disk: dict[str, Any]) -> str:
        size = disk["properties"]["creationData"]["uploadSizeBytes"]
        name = f"{disk['name']}.vhd"
        blob = BlobClient.from_connection_string(
            self.storage_conn, self.disk_container, name, api_version=self.storage_api_version
        )
        container = ContainerClient.from_connection_string(
            self.storage_conn, self.disk_container, api_version=self.storage_api_version
        )
        if not container.exists():
            container.create_container()
        if disk["properties"]["diskState"] == "ReadyToUpload" or not blob.exists():
            blob.create_page_blob(size)
        creds = blob.credential
        sas = generate_blob_sas(
            blob.account_name or "",
            self.disk_container,
            name,
            account_key=creds.account_key,
            permission=BlobSasPermissions(read=True, write=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        disk["_blob"] = name
        return f"{blob.url}?{sas}"

    # ---- operations ------------------------------------------------------------------------------

    def _new_op(self, path: str | None, kind: str, output: dict[str, Any] | None = None) -> str:
        op = uuid.uuid4().hex
        self.operations[op] = Operation(path, self.polls, kind, output)
        return op

    def _advance(self, op_id: str) -> Operation:
        with self.lock:
            op = self.operations.get(op_id)
            if op is None:
                raise ArmError(404, "NotFound", "no such operation")
            if not op.done:
                op.polls -= 1
                if op.polls <= 0:
                    op.done = True
                    self._finish(op)
            return op

    def _finish(self, op: Operation) -> None:
        res = self.resources.get(op.path or "")
        failure = next(
            (f for f in self.fail_operations if op.kind == "put" and f[0].search(op.path or "")), None
        )
        if failure is not None and res is not None:
            op.error = {"code": failure[1], "message": failure[2]}
            res["properties"]["provisioningState"] = "Failed"
            return
        if op.kind == "delete":
            self.resources.pop(op.path or "", None)
        elif op.kind == "put" and res is not None:
            res["properties"]["provisioningState"] = "Succeeded"
            if "_regions" in res:
                res["_done"] = True

    def _operation_status(self, op_id: str) -> tuple[int, dict[str, str], Any]:
        op = self._advance(op_id)
        if op.done and op.error:
            return 200, {}, {"name": op_id, "status": "Failed", "error": op.error}
        return 200, {}, {"name": op_id, "status": "Succeeded" if op.done else "InProgress"}

    def _location_status(self, op_id: str) -> tuple[int, dict[str, str], Any]:
        op = self._advance(op_id)
        if not op.done:
            return 202, {"Location": f"{self.url}/fake/operations/{op_id}?api-version=x"}, None
        return 200, {}, op.output

    def _view(self, res: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        out = {k: v for k, v in res.items() if not k.startswith("_")}
        out["properties"] = dict(res["properties"])
        if "_regions" in res and query.get("$expand") == "ReplicationStatus":
            done = res.get("_done", False)
            summary = []
            for region in res["_regions"]:
                failed = self.fail_replication.get(region.replace(" ", "").lower())
                state = ("Failed" if failed else "Completed") if done else "Replicating"
                summary.append(
                    {
                        "region": region,
                        "state": state,
                        "details": failed or "",
                        "progress": 100 if done and not failed else 50,
                    }
                )
            aggregated = (
                "InProgress"
                if not done
                else ("Failed" if any(s["state"] == "Failed" for s in summary) else "Completed")
            )
            out["properties"]["replicationStatus"] = {"aggregatedState": aggregated, "summary": summary}
        return out


def key_sub(key: str) -> str:
    return key.split("/")[2]


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _make_handler(arm: FakeArm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, doc = arm.handle(self.command, self.path, headers, body)
            payload = b"" if doc is None else json.dumps(doc).encode()
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-ms-request-id", uuid.uuid4().hex)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
