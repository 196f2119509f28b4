"""A small, stateful Azure Resource Manager (Microsoft.Compute) over real HTTPS, for tests.

Implements what imgpub-azure calls: images, galleries, gallery images, gallery image versions
(with replication status, listing and PATCH: fakes/arm/updates.py), disks (with grant/revoke access
returning a SAS that points at Azurite), lists of each (paged with nextLink when `page_size` is set),
and every resource's creation time (systemData.createdAt, a version's publishedDate) from `clock`.
Every request is held to the contract (fakes/arm/contract.py: the SDK models and the api-version it
pins) and to ARM's documented rules (fakes/arm/rules.py); refusals are ARM's error
document {"error": {"code", "message", "target"}} with the real codes.

It reproduces the failure modes a real subscription shows:
* failed long-running operations (`fail()`): the LRO ends Failed with an error body and the resource
  stays in provisioningState Failed;
* eventual consistency (`lag`): a resource just created is invisible to the next `lag` reads
  (GET, list, parent and source lookups) after its LRO's own final GET;
* throttling (`throttle()` / `inject()`): 429 with Retry-After and x-ms-ratelimit-remaining-* headers;
* lost replies (`lose_reply()`): the request is carried out, then the connection is reset before
  the answer (a PUT that created, a poll that finished an operation, a DELETE that deleted...);
* writes while an operation runs: a PUT, PATCH or DELETE on a resource whose operation is still in
  progress answers 409 AnotherOperationInProgress (a DELETE of a resource being deleted is accepted
  again); an operation also advances when its resource is read (time passes while a client looks);
* a source removed while an image or version is made from it: the operation ends Failed;
* `missing_delete_status = 404`: a DELETE of a missing resource answers 404 (some providers do)
  instead of 204;
* a client killed at a chosen request (`hold()`): the request waits until the test lets it go on or
  drops it undone, so a test can kill the command at that very point.

LRO URLs are built from the request's Host, so a proxy in front (fakes/chaos.py, with a certificate
from `issue_cert()`) sees the polls too.

    with FakeArm(storage_conn=..., ca_dir=tmp) as arm:   # arm.url, arm.ca_path
        arm.throttle("PUT", r"/images/", retry_after=1)
        arm.fail(r"/images/", "InternalExecutionError", "disk read failed")
        arm.fail_replication["westus"] = "disk quota exceeded"   # replications that end from now on
        arm.lose_reply("PUT", r"/images/")
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import trustme
from azure.mgmt.compute import models as m

from fakes.arm.contract import check_body, pinned_api_version
from fakes.arm.disks import disk_access
from fakes.arm.faults import BUSY, IN_PROGRESS, Hold, Holds, Losses, Races, source_problem
from fakes.arm.http import QuietServer, error, make_handler
from fakes.arm.operations import Failure, Operations
from fakes.arm.rules import ArmError, Rules
from fakes.arm.updates import update_version
from fakes.arm.views import view

__all__ = ["ArmError", "Call", "FakeArm"]

DISK_CONTAINER = "fakedisks"


@dataclass(frozen=True)
class Call:
    """One request as it arrived, before any fault, hold or refusal: what tests/azure/test_permissions.py
    maps to the permission Azure checks for it (the body for the resources a PUT or PATCH links)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    """The JSON body; None without one."""


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    retry_after: int | None
    code: str


_RESOURCE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute/(?P<rest>.+)$",
    re.IGNORECASE,
)
_OPERATION = re.compile(
    r"^/subscriptions/[^/]+/providers/Microsoft\.Compute/locations/[^/]+/operations/(?P<id>[^/]+)$"
)
_LOCATION = re.compile(r"^/fake/operations/(?P<id>[^/]+)$")
TYPES: list[tuple[re.Pattern[str], str, type]] = [
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


UPDATES: dict[str, type] = {
    "Microsoft.Compute/images": m.ImageUpdate,
    "Microsoft.Compute/galleries/images/versions": m.GalleryImageVersionUpdate,
}
"""The PATCH bodies (update models) of the resources imgpub retags."""


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body.decode(errors="replace")


def resource_type(rest: str) -> tuple[str, type] | None:
    return next(((t, cls) for pattern, t, cls in TYPES if pattern.match(rest)), None)


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
        self.resources: dict[str, dict[str, Any]] = {}
        self.operations = Operations(polls)
        self.faults: list[Fault] = []
        self.fail_replication: dict[str, str] = {}
        self.disk_encryption_sets: dict[str, str] = {}
        """Known disk encryption set IDs (lowercase) and their region."""
        self.lag = 0
        """Reads a resource stays invisible for after its create LRO finished (eventual consistency)."""
        self.requests: list[tuple[str, str]] = []
        self.calls: list[Call] = []
        """Every request with its query and body (`Call`), in order of arrival."""
        self.refusals: list[tuple[str, str, str]] = []
        """(method, path, error code) of every request the fake refused."""
        self.disk_container = f"{DISK_CONTAINER}{uuid.uuid4().hex[:12]}"
        """Where upload disks keep their bytes (one container per fake, so tests do not share disks)."""
        self.bodies: list[tuple[str, str, Any]] = []
        self.losses = Losses()
        """Replies to lose after the request was carried out (`lose_reply()`)."""
        self.races = Races()
        """Requests of two runs made to arrive together (`race()`)."""
        self.sas_endpoint: str | None = None
        """Where the disks' SAS URLs send clients (a proxy in front of Azurite); None: storage_conn's."""
        self.busy_code = BUSY
        """The code of the 409 for a write while an operation runs (ARM's RPs differ: Conflict, ...)."""
        self.missing_delete_status = 204
        """What a DELETE of a resource that does not exist answers: 204, or 404 as some providers do."""
        self.page_size: int | None = None
        """Items per page of a list (the rest behind nextLink, as ARM pages long lists); None: one page."""
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        """When resources are created (systemData.createdAt, a version's publishedDate); tests age a
        resource by setting its `_created` (ISO 8601)."""
        self.holds = Holds()
        self.lock = threading.RLock()
        self._local = threading.local()
        self.rules = Rules(self)
        self._ca = trustme.CA()
        ca_dir.mkdir(parents=True, exist_ok=True)
        self.ca_path = ca_dir / "arm-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_path))
        cert = self._ca.issue_cert("127.0.0.1", "localhost")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        self.server = QuietServer(("127.0.0.1", port), make_handler(self))
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

    def throttle(self, method: str, pattern: str, *, times: int = 1, retry_after: int = 1) -> None:
        """429 TooManyRequests with Retry-After, as ARM throttles a subscription's writes or reads."""
        self.inject(method, pattern, 429, times=times, retry_after=retry_after)

    def lose_reply(self, method: str, pattern: str, *, times: int = 1, skip: int = 0) -> None:
        """Carry out the next `times` matching requests (after `skip`), then reset the connection
        instead of answering: the client never hears that the server acted."""
        self.losses.add(method, pattern, times, skip)

    def race(self, method: str, pattern: str, *, parties: int = 2, timeout: float = 30.0) -> None:
        """Hold the first `parties` matching requests until all have arrived, then let them in at
        once: two runs' PUTs of one resource meet (one creates, the other finds it being created)."""
        self.races.add(method, pattern, parties, timeout)

    def hold(self, method: str, pattern: str) -> Hold:
        """Hold the next matching request before acting on it (see faults.Hold): a test waits for
        `arrived`, kills the client, then `drop()`s it, or lets it `go()` on."""
        return self.holds.add(method, pattern)

    def age(self, rest: str, created: datetime) -> None:
        """Say a resource was created at `created` (its systemData.createdAt and publishedDate)."""
        res = self.get(rest)
        assert res is not None, f"no resource {rest}"
        res["_created"] = created.isoformat()

    def issue_cert(self) -> trustme.LeafCert:
        """A server certificate from this fake's CA (for a proxy in front of it)."""
        return self._ca.issue_cert("127.0.0.1", "localhost")

    def fail(
        self, pattern: str, code: str, message: str, *, kind: str = "put", times: int = 1_000_000
    ) -> None:
        """Accept the next matching request, then end its long-running operation Failed."""
        self.operations.failures.append(Failure(re.compile(pattern), code, message, kind, times))

    @property
    def fail_operations(self) -> list[Failure]:
        return self.operations.failures

    def add_disk_encryption_set(self, name: str, location: str, resource_group: str = "keys") -> str:
        des_id = (
            f"/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/{resource_group}"
            f"/providers/Microsoft.Compute/diskEncryptionSets/{name}"
        )
        self.disk_encryption_sets[des_id.lower()] = location
        return des_id

    def get(self, rest: str) -> dict[str, Any] | None:
        """A resource as stored (whatever its visibility), by the end of its path."""
        with self.lock:
            return next((r for k, r in self.resources.items() if k.endswith("/" + rest.lower())), None)

    def visible(self, rest: str) -> dict[str, Any] | None:
        """A resource as a read sees it: a lagging one is not there yet (and this read counts)."""
        with self.lock:
            return self._seen(self.get(rest))

    def _seen(self, res: dict[str, Any] | None) -> dict[str, Any] | None:
        if res is not None and res.get("_hidden", 0) > 0:
            res["_hidden"] -= 1
            return None
        return res

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for meth, path in self.requests if meth == method and re.search(pattern, path))

    @property
    def base(self) -> str:
        """This request's own scheme and host (a proxy's, when one is in front), else the fake's."""
        return getattr(self._local, "base", None) or self.url

    def location_url(self, op_id: str) -> str:
        return f"{self.base}/fake/operations/{op_id}?api-version=x"

    # ---- handling --------------------------------------------------------------------------------

    def handle(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(url)
        path, query = unquote(parts.path), {k: v[0] for k, v in parse_qs(parts.query).items()}
        self._local.base = f"https://{headers['host']}" if headers.get("host") else None
        with self.lock:
            self.requests.append((method, path))
            self.calls.append(Call(method, path, query, _json(body)))
        self.races.meet(method, path)
        if self.holds.meet(method, path):
            return 503, {}, error("ServiceUnavailable", "dropped: its client was killed while it was held")
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.pattern.search(path):
                    fault.times -= 1
                    extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                    if fault.status == 429:
                        kind = "reads" if method == "GET" else "writes"
                        extra[f"x-ms-ratelimit-remaining-subscription-{kind}"] = "0"
                    return fault.status, extra, error(fault.code, f"injected {fault.status}")
        if not headers.get("authorization", "").startswith("Bearer "):
            return self._refuse(method, path, ArmError(401, "AuthenticationFailed", "no bearer token"))
        if "api-version" not in query:
            return self._refuse(
                method, path, ArmError(400, "MissingApiVersionParameter", "api-version is required")
            )
        try:
            if match := _OPERATION.match(path):
                op, _ = self.operations.poll(match["id"])
                self._settle(match["id"])
                return 200, {}, op.status_document()
            if match := _LOCATION.match(path):
                return self._location_status(match["id"])
            if match := _RESOURCE.match(path):
                return self._resource(method, path, match["rg"], match["rest"], query, body)
            raise ArmError(404, "InvalidResourceType", f"no route for {path}")
        except ArmError as exc:
            return self._refuse(method, path, exc)

    def _refuse(self, method: str, path: str, exc: ArmError) -> tuple[int, dict[str, str], Any]:
        self.refusals.append((method, path, exc.code))
        return exc.status, {}, error(exc.code, exc.message, exc.target)

    def _resource(
        self, method: str, path: str, rg: str, rest: str, query: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        if method == "POST" and rest.lower().startswith("disks/"):
            disk_path, _, action = path.rpartition("/")
            self._api_version(query, "Microsoft.Compute/disks")
            with self.lock:
                return disk_access(self, disk_path, action, body)
        if method == "GET" and (rtype := resource_type(rest + "/x")) is not None:
            self._api_version(query, rtype[0])
            return 200, {}, self._list(path, query)
        rtype = resource_type(rest)
        if rtype is None:
            raise ArmError(404, "InvalidResourceType", f"unsupported resource {rest}")
        self._api_version(query, rtype[0])
        self.rules.names(rg, rest)
        key = path.lower()
        with self.lock:
            if method == "GET":
                self._advance(key)
                res = self.resources.get(key)
                if res is not None and res.pop("_final_get", False):
                    return 200, {}, self._view(res, query)
                if self._seen(res) is None:
                    raise ArmError(404, "ResourceNotFound", f"The Resource '{rest}' was not found.")
                return 200, {}, self._view(res, query)
            self._not_busy(method, key, rest)
            if method == "DELETE":
                return self._delete(key, rest)
            if method == "PUT":
                doc = json.loads(body or b"{}")
                self.bodies.append((method, rest, doc))
                bad = check_body(doc, rtype[1])
                if bad:
                    raise ArmError(400, bad[0].code, bad[0].message, bad[0].target)
                return self._put(path, rest, rtype[0], doc, query["api-version"])
            if method == "PATCH" and rtype[0] in UPDATES:
                doc = json.loads(body or b"{}")
                self.bodies.append((method, rest, doc))
                bad = check_body(doc, UPDATES[rtype[0]])
                if bad:
                    raise ArmError(400, bad[0].code, bad[0].message, bad[0].target)
                return self._patch(key, rest, rtype[0], doc, query["api-version"])
        raise ArmError(405, "MethodNotAllowed", method)

    def _patch(
        self, key: str, rest: str, rtype: str, doc: dict[str, Any], api_version: str
    ) -> tuple[int, dict[str, str], Any]:
        """PATCH merges: `tags`, when given, replace the old ones (members left out stay as they are);
        a version's properties as fakes/arm/updates.py takes them; an image's tags only."""
        res = self.resources.get(key)
        if res is None or self._seen(res) is None:
            raise ArmError(404, "ResourceNotFound", f"The Resource '{rest}' was not found.")
        if set(doc) - {"tags", "properties"} or ("properties" in doc and not rtype.endswith("versions")):
            raise ArmError(400, "InvalidParameter", "this fake updates an image's tags only")
        if "tags" in doc:
            self.rules.tags(doc.get("tags") or {})
        if doc.get("properties") is not None:
            update_version(self, res, doc["properties"])
        if "tags" in doc:
            res["tags"] = doc.get("tags") or {}
        res["_modified"] = self.clock().isoformat()
        res["properties"]["provisioningState"] = "Updating"
        op = self.operations.start(key, "put")
        res["_op"] = op.id
        return (
            200,
            {"Azure-AsyncOperation": self._async_url(key, res["location"], op.id, api_version)},
            self._view(res, {}),
        )

    def _async_url(self, key: str, location: str, op_id: str, api_version: str) -> str:
        return (
            f"{self.base}/subscriptions/{key.split('/')[2]}/providers/Microsoft.Compute/locations/"
            f"{location}/operations/{op_id}?api-version={api_version}"
        )

    def _api_version(self, query: dict[str, str], rtype: str) -> None:
        pinned = pinned_api_version(rtype)
        if query.get("api-version") != pinned:
            raise ArmError(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{query.get('api-version')}' is invalid. "
                f"The supported versions are '{pinned}'.",
            )

    def _list(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        """One page of the resources under `path`; with `page_size`, a nextLink to the next page (the
        client follows it as given: api-version and $skiptoken in it)."""
        prefix = path.lower().rstrip("/") + "/"
        try:
            start = int(query.get("$skiptoken") or 0)
        except ValueError:
            raise ArmError(400, "InvalidSkipToken", "The skip token is not valid.") from None
        with self.lock:
            found = [
                r
                for k, r in sorted(self.resources.items())
                if k.startswith(prefix) and "/" not in k[len(prefix) :]
            ]
            if self.page_size is None:
                return {"value": [self._view(r, {}) for r in found if self._seen(r) is not None]}
            page = found[start : start + self.page_size]
            doc: dict[str, Any] = {"value": [self._view(r, {}) for r in page if self._seen(r) is not None]}
        if start + self.page_size < len(found):
            doc["nextLink"] = (
                f"{self.base}{quote(path)}?api-version={query['api-version']}"
                f"&%24skiptoken={start + self.page_size}"
            )
        return doc

    def _not_busy(self, method: str, key: str, rest: str) -> None:
        """A write while the resource's own operation runs is refused, as ARM does (409); a DELETE
        of a resource that is being deleted is taken again."""
        res = self.resources.get(key)
        state = res["properties"].get("provisioningState") if res is not None else None
        if state in IN_PROGRESS and not (method == "DELETE" and state == "Deleting"):
            message = f"Another operation on this or dependent resource is in progress: '{rest}' is in "
            raise ArmError(409, self.busy_code, message + f"provisioning state '{state}'.")

    def _advance(self, key: str) -> None:
        """A read lets time pass for the resource's running operation (one poll's worth)."""
        res = self.resources.get(key)
        op_id = res.get("_op") if res is not None else None
        if op_id and not self.operations.all[op_id].done:
            self.operations.poll(op_id)
            self._settle(op_id)

    def _delete(self, key: str, rest: str) -> tuple[int, dict[str, str], Any]:
        if key not in self.resources:
            return (
                self.missing_delete_status,
                {},
                (
                    error("ResourceNotFound", f"The Resource '{rest}' was not found.")
                    if self.missing_delete_status == 404
                    else None
                ),
            )
        if self.resources[key]["properties"].get("provisioningState") == "Deleting":
            return 202, {"Location": self.location_url(self.resources[key]["_op"])}, None
        children = [k for k in self.resources if k.startswith(key + "/")]
        if children:
            raise ArmError(409, "CannotDeleteResource",
                           "Can not delete resource before nested resources are deleted.")  # fmt: skip
        op = self.operations.start(key, "delete")
        self.resources[key]["properties"]["provisioningState"] = "Deleting"
        self.resources[key]["_op"] = op.id
        return 202, {"Location": self.location_url(op.id)}, None

    def _put(
        self, path: str, rest: str, rtype: str, doc: dict[str, Any], api_version: str
    ) -> tuple[int, dict[str, str], Any]:
        key = path.lower()
        if not doc.get("location"):
            raise ArmError(400, "LocationRequired", "location is required")
        self.rules.location(doc["location"])
        self.rules.tags(doc.get("tags") or {})
        props = dict(doc.get("properties") or {})
        self.rules.parent(rest)
        existing = self.resources.get(key)
        # Updating a version (more regions) keeps its source: the upload may be gone by then.
        updating_version = existing is not None and rtype.endswith("versions")
        check = self.rules.checks().get(rtype)
        if check is not None and not updating_version:
            check(doc, props, rest)
        name = rest.rsplit("/", 1)[1]
        created = existing.get("_created") if existing is not None else None
        resource = {
            "id": path,
            "name": name,
            "type": rtype,
            "location": doc["location"],
            "tags": doc.get("tags") or {},
            "properties": {**props, "provisioningState": "Creating" if existing is None else "Updating"},
        }
        resource["_created"] = created or self.clock().isoformat()
        if "sku" in doc:
            resource["sku"] = doc["sku"]
        if rtype.endswith("disks"):
            resource["properties"]["diskState"] = "ReadyToUpload"
        if rtype.endswith("versions"):
            regions = props.get("publishingProfile", {}).get("targetRegions") or [{"name": doc["location"]}]
            resource["_regions"] = [r["name"] for r in regions]
        self.resources[key] = resource
        op = self.operations.start(key, "put")
        resource["_op"] = op.id
        resource["_source_check"] = not updating_version
        async_url = self._async_url(key, doc["location"], op.id, api_version)
        # Disks answer 202 (their swagger allows 200/202), the others 201 for a new resource.
        status = 202 if rtype.endswith("disks") else (200 if existing is not None else 201)
        return status, {"Azure-AsyncOperation": async_url}, self._view(resource, {})

    # ---- operations ------------------------------------------------------------------------------

    def _settle(self, op_id: str) -> None:
        """Apply a finished operation to its resource (once)."""
        with self.lock:
            op = self.operations.all[op_id]
            res = self.resources.get(op.path or "")
            if not op.done or res is None or res.get("_settled") == op_id:
                return
            res["_settled"] = op_id
            checks = op.kind == "put" and op.error is None and res.pop("_source_check", False)
            if checks and (problem := source_problem(self, res)):
                op.error = {"code": "InvalidParameter", "message": problem, "details": []}
            if op.error is not None:
                res["properties"]["provisioningState"] = "Failed"
            elif op.kind == "delete":
                self.resources.pop(op.path or "", None)
            elif op.kind == "put":
                created = res["properties"]["provisioningState"] == "Creating"
                res["properties"]["provisioningState"] = "Succeeded"
                if "_regions" in res:  # replication ends now: where it failed stays failed
                    res["_done"] = True
                    res["_failed"] = {
                        key: self.fail_replication[key]
                        for region in res["_regions"]
                        if (key := region.replace(" ", "").lower()) in self.fail_replication
                    }
                if created and self.lag:
                    res["_hidden"], res["_final_get"] = self.lag, True

    def _location_status(self, op_id: str) -> tuple[int, dict[str, str], Any]:
        op, _ = self.operations.poll(op_id)
        self._settle(op_id)
        if not op.done:
            return 202, {"Location": self.location_url(op_id)}, None
        if op.error is not None:
            return 409, {}, {"error": op.error}
        return 200, {}, op.output

    def _view(self, res: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        return view(res, query, self.fail_replication)
