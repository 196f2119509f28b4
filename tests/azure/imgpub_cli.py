"""The `imgpub` command against the Azure stand-ins, run as a subprocess the way a CI job runs it:
credentials from a managed-identity endpoint (DefaultAzureCredential), endpoints in the manifest,
one state dir per machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

from fakes.azurite import ACCOUNT, API_VERSION, connection_string
from imaging import MiB, gpt_raw, pattern, text_like

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
IDENTITY_HEADER = "imgpub-azure-tests"
DISK_SIZE = 24 * MiB


class TokenServer:
    """An App Service style managed-identity endpoint (IDENTITY_ENDPOINT + IDENTITY_HEADER)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = self.headers.get("X-IDENTITY-HEADER") == IDENTITY_HEADER
                doc = {
                    "access_token": "test-token",
                    "expires_on": str(int(time.time()) + 3600),
                    "resource": "https://management.azure.com",
                    "token_type": "Bearer",
                }
                body = json.dumps(doc if ok else {"error": "no identity header"}).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/msi/token"
        Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    report: dict[str, Any]
    summary: str
    """$GITHUB_STEP_SUMMARY and $GITHUB_OUTPUT, as the run left them."""

    @property
    def target(self) -> dict[str, Any]:
        (target,) = self.report["targets"]
        return dict(target)

    def text(self) -> str:
        """Everything the run wrote for a reader: stdout, stderr, the report and the CI summary."""
        return "\n".join([self.stdout, self.stderr, json.dumps(self.report), self.summary])


@dataclass
class Cli:
    """One manifest publishing to `arm_url` and `storage_url` (the stand-ins, or proxies in front)."""

    folder: Path
    arm_url: str
    storage_url: str
    container: str
    ca_path: Path
    identity: TokenServer

    def manifest(self, version: str = "1.2.3", **target: Any) -> Path:
        gpt_raw(
            self.folder / "disk.raw",
            DISK_SIZE,
            [(2 * MiB, pattern(3 * MiB, 1)), (8 * MiB, text_like(5 * MiB, 2)), (20 * MiB, pattern(MiB, 3))],
        )
        values: dict[str, Any] = {
            "name": "az",
            "provider": "azure",
            "subscription_id": SUBSCRIPTION,
            "resource_group": "rg",
            "location": "westeurope",
            "storage_account": ACCOUNT,
            "container": self.container,
            "blob_endpoint": f"{self.storage_url}/{ACCOUNT}",
            "resource_manager_endpoint": self.arm_url,
            "storage_api_version": API_VERSION,
            "concurrency": 2,
        }
        values.update(target)
        doc = {
            "image": {"name": "golden", "version": version, "source": "disk.raw", "boot": "uefi"},
            "targets": [{k: v for k, v in values.items() if v is not None}],
        }
        path = self.folder / "imgpub.yaml"
        path.write_text(json.dumps(doc))  # JSON is YAML
        return path

    def env(self, state: str, **extra: str) -> dict[str, str]:
        keep = ("PATH", "TMPDIR", "LANG", "LC_ALL", "SYSTEMROOT")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(
            {
                "HOME": str(self.folder / "home"),
                "IMGPUB_STATE_DIR": str(self.folder / state),
                "NO_COLOR": "1",
                "AZURE_STORAGE_CONNECTION_STRING": connection_string(self.storage_url),
                "REQUESTS_CA_BUNDLE": str(self.ca_path),
                "IDENTITY_ENDPOINT": self.identity.url,
                "IDENTITY_HEADER": IDENTITY_HEADER,
                "IMGPUB_AZURE_POLLING_INTERVAL": "0.01",
            }
        )
        env.update(extra)
        return env

    def start(self, manifest: Path, state: str = "state", *args: str, **env: str) -> subprocess.Popen[str]:
        report = self.folder / f"report-{state}.json"
        report.unlink(missing_ok=True)
        return subprocess.Popen(
            [sys.executable, "-m", "imgpub", "publish", str(manifest), "--report", str(report), *args],
            env=self.env(state, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def command(self, *args: str, state: str = "state") -> subprocess.Popen[str]:
        """Start any `imgpub` command (prune, status, reconcile) the way a CI job runs it."""
        return subprocess.Popen(
            [sys.executable, "-m", "imgpub", *args],
            env=self.env(state),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, state: str = "state") -> tuple[int, str, str]:
        """Run an `imgpub` command to its end: (exit code, stdout, stderr)."""
        out, err = (proc := self.command(*args, state=state)).communicate(timeout=180)
        return proc.returncode, out, err

    def finish(self, proc: subprocess.Popen[str], state: str = "state") -> Run:
        out, err = proc.communicate(timeout=180)
        report = self.folder / f"report-{state}.json"
        written = [
            self.folder / f"{kind}-{state}.{ext}" for kind, ext in (("summary", "md"), ("output", "txt"))
        ]
        return Run(
            proc.returncode,
            out,
            err,
            json.loads(report.read_text()) if report.exists() else {},
            "\n".join(p.read_text() for p in written if p.exists()),
        )

    def publish(self, manifest: Path, state: str = "state", *args: str, **env: str) -> Run:
        env.setdefault("GITHUB_ACTIONS", "true")  # the report also goes to the step summary and outputs
        env.setdefault("GITHUB_STEP_SUMMARY", str(self.folder / f"summary-{state}.md"))
        env.setdefault("GITHUB_OUTPUT", str(self.folder / f"output-{state}.txt"))
        return self.finish(self.start(manifest, state, *args, **env), state)
