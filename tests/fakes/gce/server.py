"""A small, stateful Compute Engine images API over real HTTP, for the gcp provider's tests.

Serves images (insert, get, list with a label/name/family filter, in name or `creationTimestamp desc`
order and paged with nextPageToken, delete, deprecate, setLabels, getIamPolicy, setIamPolicy) and
globalOperations (get, wait). Every request is checked against the
compute v1 discovery document first (fakes/gce/contract.py); the fake's own answers are checked
against it too. images.insert downloads rawDisk.source from the GCS emulator and accepts only a
gzip'd GNU tar (no PAX headers) whose one member is `disk.raw` (regular or GNU sparse) of whole GiB.
`state.requests` records each request with the compute method it names (what the permissions test
maps to IAM permissions).

Failure modes, as real GCE shows them:
  * `fail(status, ...)`: the next matching requests answer 429 rateLimitExceeded, 403
    userRateLimitExceeded/quotaExceeded, 503... (with a Retry-After header when asked); with
    `lose_reply=True` the request is done first and its answer replaced by the error (a reply lost
    after GCE acted: the insert made the image, the delete deleted it...);
  * `on_request(method, path)`: called before each request is handled (a test can act there as
    another client would, or stop the client);
  * `fail_next_operation(code, message, kind=...)`: the next operation of that type ends DONE with
    `error`; a failed insert leaves the image in status FAILED;
  * a requestId seen within `State.request_id_retention` answers with its earlier operation as it is
    now, a FAILED one included, without doing anything again;
  * `State.lag_after_insert`: a new image stays invisible to get/list for that many reads after its
    insert is DONE (eventual consistency);
  * `State.list_page_size`: images.list pages hold at most that many images whatever maxResults asks
    (GCE may send fewer); a pageToken works only with the filter and order it was made for;
  * a deleted image is DELETING until its operation is done (a second delete meanwhile: 400
    resourceNotReady); images.deprecate takes only RFC 3339 timestamps and an image URL as the
    replacement.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import threading
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fakes.gce.contract import ApiError, check_body, check_parameters, discovery, validate
from fakes.gce.images import Images
from fakes.gce.operations import op_error
from fakes.gce.state import Fault, Request, RequestId, State

Route = tuple[str, re.Pattern[str], dict[str, Any], str]


class FakeGce(Images):
    """Start with `FakeGce(gcs_endpoint).start()`; point ImagesClient's api_endpoint at `.url`."""

    def __init__(self, gcs_endpoint: str | None = None, polls_per_operation: int = 1) -> None:
        self.gcs_endpoint = gcs_endpoint.rstrip("/") if gcs_endpoint else None
        self.polls_per_operation = polls_per_operation
        self.state = State()
        self.lock = threading.RLock()
        self._ids = itertools.count(1000)
        self._clock = datetime(2030, 1, 1, tzinfo=UTC)
        self._server: ThreadingHTTPServer | None = None
        self.routes = _routes()
        self.on_request: Callable[[str, str], None] | None = None

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

        self._server = _QuietServer(("127.0.0.1", port), Handler)
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
            self.on_request = None

    def fail(
        self,
        status: int,
        times: int = 1,
        *,
        method: str | None = None,
        path: str | None = None,
        reason: str | None = None,
        message: str = "injected failure",
        retry_after: str | None = None,
        lose_reply: bool = False,
    ) -> None:
        """The next `times` requests matching method and path substring answer `status` (after doing
        what they asked when `lose_reply`)."""
        with self.lock:
            fault = Fault(status, times, method, path, reason, message, retry_after, lose_reply)
            self.state.faults.append(fault)

    def fail_next_operation(
        self, code: str, message: str, http_status: int = 400, *, kind: str = "insert"
    ) -> None:
        """The next operation of type `kind` (insert, delete, setLabels, deprecate) ends DONE with this
        error; an insert's image is then FAILED, a delete's image stays."""
        with self.lock:
            self.state.operation_errors.append((kind, op_error(code, message, http_status)))

    def advance_clock(self, delta: timedelta) -> None:
        """Let time pass (requestIds older than the retention window are forgotten)."""
        with self.lock:
            self._clock += delta

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

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(handler.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        headers: dict[str, str] = {}
        with self.lock:
            self.state.log.append((handler.command, handler.path))
            self.state.requests.append(self._request(handler.command, url.path, query, raw))
        if self.on_request is not None:
            self.on_request(handler.command, handler.path)
        try:
            status, body = self._dispatch(handler.command, url.path, query, raw)
        except ApiError as exc:
            status, body, headers = exc.code, exc.body(), exc.headers
        except Exception as exc:  # a bug in the fake: fail loudly in the test that hit it
            with self.lock:
                self.state.crashes.append(f"{handler.command} {handler.path}: {exc!r}")
            status, body = 500, ApiError(500, f"fake crashed: {exc!r}").body()
        out = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=UTF-8")
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(out)))
        handler.end_headers()
        handler.wfile.write(out)

    def _request(self, verb: str, path: str, query: dict[str, str], raw: bytes) -> Request:
        """The request as recorded: the method it names (None when there is none), query and body."""
        try:
            name: str | None = self._route(verb, path)[2]
        except ApiError:
            name = None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        return Request(name, verb, path, query, body)

    def _fault(self, verb: str, path: str) -> ApiError | None:
        """Raise the injected error of the first matching fault, or return it when the request is to be
        done first (lose_reply)."""
        with self.lock:
            for fault in self.state.faults:
                if (
                    fault.times > 0
                    and fault.method in (None, verb)
                    and (fault.path is None or fault.path in path)
                ):
                    fault.times -= 1
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    error = ApiError(fault.status, fault.message, fault.reason, headers)
                    if fault.lose_reply:
                        return error
                    raise error
        return None

    def _route(self, verb: str, path: str) -> tuple[dict[str, str], dict[str, Any], str]:
        for method_verb, pattern, method, name in self.routes:
            match = pattern.match(path)
            if match and method_verb == verb:
                args = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
                return args, method, name
        raise ApiError(404, f"no such method: {verb} {path}")

    def _dispatch(self, verb: str, path: str, query: dict[str, str], raw: bytes) -> tuple[int, Any]:
        lost = self._fault(verb, path)
        args, method, name = self._route(verb, path)
        check_parameters(method, args, query)
        body = check_body(method, name, raw)
        handler = getattr(self, "_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name.replace(".", "_")).lower())
        with self.lock:
            answer = self._replayed(query.get("requestId"))
            if answer is None:
                answer = handler(args, query, body)
                self._remember(query.get("requestId"), args, answer)
            answer = json.loads(json.dumps(answer))
        try:  # the fake's own answers must be what real Compute could send
            validate(answer, method["response"], method["response"]["$ref"])
        except ApiError as exc:
            raise RuntimeError(f"the fake answered {name} with an invalid body: {exc.message}") from None
        if lost is not None:
            raise lost
        return 200, answer

    def _replayed(self, request_id: str | None) -> dict[str, Any] | None:
        """The operation an earlier call with this requestId started, as it is now (DONE, FAILED...)."""
        seen = self.state.request_ids.get(request_id or "")
        if seen is None or self._clock - seen.at > self.state.request_id_retention:
            return None
        return self.state.operations[(seen.project, seen.operation)]

    def _remember(self, request_id: str | None, args: dict[str, str], answer: Any) -> None:
        if request_id and isinstance(answer, dict) and answer.get("kind") == "compute#operation":
            self.state.request_ids[request_id] = RequestId(args["project"], answer["name"], self._clock)

    # -- what the handlers share ------------------------------------------------------------

    def _now(self) -> str:
        self._clock += timedelta(seconds=1)
        return self._clock.isoformat(timespec="milliseconds")

    def _new_id(self) -> int:
        return next(self._ids)

    def _link(self, project: str, kind: str, name: str) -> str:
        return f"{self.url}/compute/v1/projects/{project}/global/{kind}/{name}"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (killed by a test, or reset by a proxy) is not news; anything else is."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _routes() -> list[Route]:
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
