"""moto in server mode with imgpub's strictness patches (moto_patches.py) and a test API.

Run as a script (the test fixture starts it as a subprocess): `python moto_server.py PORT`.

Test API (same port):
* `POST /_imgpub/faults` with a JSON list of rules {"action", "status", "code", "message", "count",
  "after", "region", "headers", "body", "body_b64", "content_type", "echo", "pass", "kill"}: the
  next `count` matching requests (after skipping `after`) get that error, with extra `headers`
  (Retry-After), `body` (or the bytes of `body_b64`, as `content_type`) instead of the error document
  ("" for an empty one, as proxies send; HTML pages, plain text, truncated XML), `echo` to append the
  request's headers (a proxy's page that shows the request, credentials included), and with `pass`
  the request is carried out first and only its reply lost. `kill` is a pid sent SIGKILL when the
  request arrives (with `pass`: once the server has acted): a client killed at that exact point.
* `POST /_imgpub/barrier` {"action", "parties", "region"}: the next `parties` matching requests wait
  for each other (up to 30 s), then go on together: two runs racing at that call, every time.
* `POST /_imgpub/outcomes` with a JSON list of {"action", "state", "count", "region", "message"}: the
  next AMIs made by RegisterImage/CopyImage end in that state (failed), or the next snapshots
  completed by CompleteSnapshot (error).
* `POST /_imgpub/state` {"region", "id", "state", "message"}: put an AMI or snapshot in a state now.
* `POST /_imgpub/consistency` {"describe_misses": n, "in_use_after_deregister": m}: new AMIs stay
  unknown to the next n DescribeImages calls that name them (InvalidAMIID.NotFound), like EC2 right
  after a create; a deregistered AMI's snapshots answer InvalidSnapshot.InUse to the next m
  DeleteSnapshot calls, like EC2 right after a DeregisterImage.
* `POST /_imgpub/backdate` {"region", "id", "created", "deprecated"}: an AMI's CreationDate, or a
  DeprecationTime in the past, set as weeks of real time would (ISO times).
* `DELETE /_imgpub/faults`: forget the fault rules not used up yet.
* `GET /_imgpub/requests`: every request as {"action", "region", "method", "path", "query",
  "headers", "params", "body_length", "acted"} (`acted`: false when a fault answered instead);
  `POST /_imgpub/reset` clears log, faults and the above (moto-api reset does too).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

sys.path.insert(0, str(Path(__file__).parent))
import moto_patches
from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


# ---------------------------------------------------------------- test API: faults + request log
class TestApi:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.faults: list[dict[str, Any]] = []
        self.gates: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        method = environ["REQUEST_METHOD"]
        if path.startswith("/_imgpub/"):
            return self._api(method, path, environ, start_response)
        if path == "/moto-api/reset":
            self._reset()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = b""
        if length:
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = _Body(body)
        entry = self._describe(method, path, environ, body)
        with self.lock:
            self.log.append(entry)
            fault = self._match(entry)
            gate = self._gate(entry)
        if gate is not None:
            with contextlib.suppress(threading.BrokenBarrierError):  # the others never came: go on
                gate.wait(timeout=30)
        entry["acted"] = fault is None or bool(fault.get("pass"))
        if fault is not None:
            if fault.get("kill") and not fault.get("pass"):
                os.kill(int(fault["kill"]), signal.SIGKILL)
            if fault.get("pass"):
                for _ in self.app(environ, lambda *a, **k: None):
                    pass
            if fault.get("kill") and fault.get("pass"):
                os.kill(int(fault["kill"]), signal.SIGKILL)
            return self._fault(fault, entry, start_response)
        return self.app(environ, start_response)

    def _gate(self, entry: dict[str, Any]) -> threading.Barrier | None:
        """The barrier a matching request waits at, until `parties` requests have arrived."""
        for rule in self.gates:
            matches = rule["action"] == entry["action"] and rule.get("region") in (None, entry["region"])
            if matches and rule["left"] > 0:
                rule["left"] -= 1
                barrier: threading.Barrier = rule["barrier"]
                return barrier
        return None

    def _reset(self) -> None:
        with self.lock:
            self.faults.clear()
            for gate in self.gates:
                gate["barrier"].abort()
            self.gates.clear()
            self.log.clear()
        moto_patches.reset()

    def _api(self, method: str, path: str, environ: dict[str, Any], start_response: Any) -> Any:
        payload: Any = {"ok": True}
        body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) or b"null")
        if path == "/_imgpub/faults" and method == "POST":
            with self.lock:
                self.faults.extend(body)
        elif path == "/_imgpub/faults" and method == "DELETE":
            with self.lock:
                self.faults.clear()
        elif path == "/_imgpub/barrier" and method == "POST":
            parties = int(body["parties"])
            rule = {**body, "left": parties, "barrier": threading.Barrier(parties)}
            with self.lock:
                self.gates.append(rule)
        elif path == "/_imgpub/outcomes":
            moto_patches.failures.add_outcomes(body)
        elif path == "/_imgpub/state":
            moto_patches.failures.set_state(
                body["region"], body["id"], body["state"], body.get("message", "")
            )
        elif path == "/_imgpub/consistency":
            if "describe_misses" in body:
                moto_patches.failures.visibility_delay = int(body["describe_misses"])
            if "in_use_after_deregister" in body:
                moto_patches.failures.in_use_lag = int(body["in_use_after_deregister"])
        elif path == "/_imgpub/backdate":
            moto_patches.failures.backdate(
                body["region"], body["id"], body.get("created"), body.get("deprecated")
            )
        elif path == "/_imgpub/requests":
            with self.lock:
                payload = list(self.log)
        elif path == "/_imgpub/reset":
            self._reset()
        data = json.dumps(payload, default=str).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    @staticmethod
    def _describe(method: str, path: str, environ: dict[str, Any], body: bytes) -> dict[str, Any]:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scope = re.search(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/", auth)
        region, service = (scope.group(1), scope.group(2)) if scope else (None, None)
        headers = {k[5:].lower().replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
        params: dict[str, Any] = {}
        action = f"{method} {path}"
        if service == "ebs":
            for pattern, name in (
                (
                    r"/snapshots/[^/]+/blocks/\d+$",
                    "PutSnapshotBlock" if method == "PUT" else "GetSnapshotBlock",
                ),
                (r"/snapshots/completion/", "CompleteSnapshot"),
                (r"/snapshots/[^/]+/blocks$", "ListSnapshotBlocks"),
                (r"/snapshots$", "StartSnapshot"),
            ):
                if re.search(pattern, path):
                    action = name
                    break
            if action == "StartSnapshot":
                params = json.loads(body or b"{}")
        elif body and service != "s3":
            params = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            action = params.get("Action", action)
        return {
            "action": action,
            "service": service,
            "region": region,
            "method": method,
            "path": path,
            "query": environ.get("QUERY_STRING", ""),
            "headers": headers,
            "params": params,
            "body_length": len(body),
        }

    def _match(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        for rule in self.faults:
            if rule.get("action") not in (None, entry["action"]) or rule.get("region") not in (
                None,
                entry["region"],
            ):
                continue
            if rule.get("after", 0) > 0:
                rule["after"] -= 1
                return None
            if rule.get("count", 1) <= 0:
                continue
            rule["count"] = rule.get("count", 1) - 1
            return rule
        return None

    @staticmethod
    def _fault(rule: dict[str, Any], entry: dict[str, Any], start_response: Any) -> Any:
        status = int(rule.get("status", 503))
        code = rule.get("code", "ServiceUnavailable")
        message = rule.get("message", "injected fault")
        if rule.get("echo"):  # an error page (or message) that shows the request it refused
            message += "".join(f" {k}: {v}" for k, v in entry["headers"].items())
        if "body_b64" in rule or "body" in rule:
            data = base64.b64decode(rule["body_b64"]) if "body_b64" in rule else str(rule["body"]).encode()
            data += message.removeprefix(rule.get("message", "injected fault")).encode()
            headers = [("Content-Type", rule.get("content_type", "text/plain"))]
        elif entry["service"] in ("ebs",):
            data = json.dumps({"message": message}).encode()
            headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)]
        else:
            data = (
                f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error>"
                f"</Errors><RequestID>fault</RequestID></Response>"
            ).encode()
            headers = [("Content-Type", "text/xml")]
        headers += list(rule.get("headers", {}).items())
        start_response(f"{status} Injected", [*headers, ("Content-Length", str(len(data)))])
        return [data]


class _Body:
    def __init__(self, data: bytes) -> None:
        self._io = io.BytesIO(data)

    def read(self, *args: Any) -> bytes:
        return self._io.read(*args)

    def readline(self, *args: Any) -> bytes:
        return self._io.readline(*args)


def main() -> None:
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", port, TestApi(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
