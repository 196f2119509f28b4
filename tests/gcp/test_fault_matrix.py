"""The fault matrix for the gcp target (issue 10), kept as tests:

* the chaos proxy (tests/fakes/chaos.py) in front of the GCE fake and of GCS (in front of the contract
  proxy, so every request that gets through is still checked): 503/429 with empty, HTML and
  Google-shaped bodies, connection resets, slow answers, replies lost after the server acted, and
  faults at a seeded random rate;
* `imgpub publish` run as a subprocess and SIGKILLed at seeded random points (the k-th request to
  reach a stand-in), then run again with the same state dir;
* two `imgpub publish` subprocesses of one manifest at once, with separate state dirs (so only the
  cloud-side safety protects them).

Each trial asserts: the run or its re-run succeeds; nothing reached GCS twice beyond the journal
interval (one chunk); the stand-ins hold exactly what the final state lists (one image, no object).
`IMGPUB_FAULTS_LONG=<n>` runs n kill trials and n random-chaos seeds instead of a handful.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fakes.chaos import ChaosProxy, Fault
from fakes.gce import FakeGce
from gcp.fault_proxy import FaultProxy
from gcp.stack import PROJECT, context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import ImgpubError
from imgpub.identity import LABEL_VERSION
from imgpub.journal import Journal
from imgpub.provider import Published
from imgpub.retry import FAST
from imgpub_gcp import GcpProvider, GcpSettings
from imgpub_gcp.gcs_upload import CHUNK, QUANTUM

LONG = int(os.environ.get("IMGPUB_FAULTS_LONG") or 0)
SettingsFactory = Callable[..., GcpSettings]
NAME = "demo-linux-1-2-3"
MATRIX_CHUNK = 2 * QUANTUM
MEMBER = "group:qa@example.com"


def google_error(status: int, reason: str) -> bytes:
    message = "injected by the chaos proxy"
    body = {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}
    return json.dumps(body).encode()


JSON = {"Content-Type": "application/json; charset=UTF-8"}
UPLOAD, CHUNKS, DELETE_OBJECT = "POST /upload/", "PUT /upload/", "DELETE /storage/v1/b/"
INSERT, COMPUTE = f"POST /compute/v1/projects/{PROJECT}/global/images?", "/compute/v1/"

# Each trial puts these faults (on the GCE fake's or GCS's chaos proxy) in one publish's way.
TARGETED: dict[str, list[tuple[str, Fault]]] = {
    "5xx-429-403-empty-html-google-bodies": [
        ("gcs", Fault("status", CHUNKS, 503, "empty", times=2)),
        (
            "gcs",
            Fault(
                "status", CHUNKS, 429, google_error(429, "rateLimitExceeded"), {**JSON, "Retry-After": "0"}
            ),
        ),
        ("gcs", Fault("status", "GET /storage/", 502, "html", times=2)),
        ("gce", Fault("status", f"POST {COMPUTE}", 503, "html", times=2)),
        (
            "gce",
            Fault(
                "status", COMPUTE, 429, google_error(429, "rateLimitExceeded"), {**JSON, "Retry-After": "0"}
            ),
        ),
        ("gce", Fault("status", INSERT, 403, google_error(403, "userRateLimitExceeded"), JSON)),
    ],
    "connection-resets": [
        ("gcs", Fault("reset", CHUNKS, times=2)),
        ("gce", Fault("reset", COMPUTE, times=3)),
    ],
    "slow-answers": [
        ("gcs", Fault("slow", CHUNKS, delay=0.3, times=2)),
        ("gce", Fault("slow", COMPUTE, delay=0.3, times=2)),
    ],
    "gcs-lost-replies": [
        ("gcs", Fault("lose-reply", CHUNKS, status=0, times=3)),
        ("gcs", Fault("lose-reply", UPLOAD, status=503)),
        ("gcs", Fault("lose-reply", DELETE_OBJECT, status=0)),
    ],
    "gce-lost-replies": [
        ("gce", Fault("lose-reply", INSERT, status=0)),
        ("gce", Fault("lose-reply", "/wait", status=503, times=2)),
        ("gce", Fault("lose-reply", "/deprecate", status=0)),
        ("gce", Fault("lose-reply", "/setIamPolicy", status=503)),
    ],
}


@dataclass
class Chaos:
    gce: ChaosProxy
    gcs: ChaosProxy

    def of(self, which: str) -> ChaosProxy:
        return self.gce if which == "gce" else self.gcs

    def clear(self) -> None:
        self.gce.clear()
        self.gcs.clear()


@pytest.fixture
def chaos(gce: FakeGce, gcs: FaultProxy) -> Iterator[Chaos]:
    proxies = Chaos(ChaosProxy(gce.url).start(), ChaosProxy(gcs.url).start())
    yield proxies
    proxies.gce.stop()
    proxies.gcs.stop()


@dataclass
class Trial:
    first_ok: bool
    published: Published
    faults: int
    """Requests the chaos proxies broke in the first run."""


def publish_through_chaos(
    make_settings: SettingsFactory, chaos: Chaos, gce: FakeGce, disk: DiskImage, journal: Journal
) -> Trial:
    """A publish with the chaos proxies on; when it fails, a re-run with the network healed."""
    gce.add_image(PROJECT, "demo-linux-1-2-2", family="demo-linux")
    settings = make_settings(
        storage_endpoint=chaos.gcs.url,
        compute_endpoint=chaos.gce.url,
        family="demo-linux",
        deprecate_previous=True,
        share_members=[MEMBER],
    )
    info = image_info(disk)
    provider = GcpProvider(upload_chunk=MATRIX_CHUNK)
    try:
        published = provider.publish(info, settings, disk, context(settings, info, journal, retry=FAST))
        return Trial(True, published, len(chaos.gce.broken()) + len(chaos.gcs.broken()))
    except ImgpubError:
        faults = len(chaos.gce.broken()) + len(chaos.gcs.broken())
        chaos.clear()
    again = context(settings, info, Journal(journal.path), retry=FAST)
    return Trial(False, provider.publish(info, settings, disk, again), faults)


def assert_final_state(
    gce: FakeGce, gcs: FaultProxy, storage_client: Any, bucket: str, published: Published
) -> None:
    """One READY image, shared, its predecessor deprecated; no object left; nothing sent twice."""
    (artifact,) = published.artifacts
    mine = {
        name for (_, name), image in gce.state.images.items() if image.get("labels", {}).get(LABEL_VERSION)
    }
    assert mine == {artifact.id} == {NAME}
    assert gce.image(PROJECT, NAME)["status"] == "READY"  # type: ignore[index]
    assert gce.image(PROJECT, "demo-linux-1-2-2")["deprecated"]["state"] == "DEPRECATED"  # type: ignore[index]
    assert gce.policy(PROJECT, NAME)["bindings"] == [{"role": "roles/compute.imageUser", "members": [MEMBER]}]
    assert list(storage_client.list_blobs(bucket)) == []
    assert gcs.put_bytes() <= artifact.extra["object_size"] + MATRIX_CHUNK
    assert gcs.rejected == []


@pytest.mark.parametrize("case", sorted(TARGETED))
def test_a_publish_through_faults_succeeds_or_its_rerun_does(
    make_settings: SettingsFactory,
    chaos: Chaos,
    gce: FakeGce,
    gcs: FaultProxy,
    disk: DiskImage,
    journal: Journal,
    storage_client: Any,
    bucket: str,
    case: str,
) -> None:
    for which, fault in TARGETED[case]:
        chaos.of(which).add(fault)

    trial = publish_through_chaos(make_settings, chaos, gce, disk, journal)

    unused = [(which, f.kind, f.match) for which, f in TARGETED[case] if f.times > 0]
    assert unused == [], "every fault hit"
    assert trial.first_ok, "every targeted fault is survivable within one run"
    assert_final_state(gce, gcs, storage_client, bucket, trial.published)


@pytest.mark.parametrize("seed", range(LONG or 3))
def test_a_publish_through_random_faults_succeeds_or_its_rerun_does(
    make_settings: SettingsFactory,
    chaos: Chaos,
    gce: FakeGce,
    gcs: FaultProxy,
    disk: DiskImage,
    journal: Journal,
    storage_client: Any,
    bucket: str,
    seed: int,
) -> None:
    kinds = ("status", "reset", "lose-reply", "slow")
    chaos.gce.randomly(rate=0.2, seed=seed, kinds=kinds)
    chaos.gcs.randomly(rate=0.2, seed=1000 + seed, kinds=kinds)

    trial = publish_through_chaos(make_settings, chaos, gce, disk, journal)

    assert_final_state(gce, gcs, storage_client, bucket, trial.published)
    outcome = "held" if trial.first_ok else "failed, its re-run held"
    print(f"gcp random faults, seed {seed}: {trial.faults} faults, the first run {outcome}")


# -- the CLI: killed at random points, and two at once ------------------------------------------


@dataclass
class Cli:
    """`python -m imgpub publish` against the stand-ins, counting the requests that reach them."""

    folder: Path
    gce: FakeGce
    gcs: FaultProxy
    bucket: str
    storage_client: Any
    requests: int = 0
    kill_at: int = 0
    process: subprocess.Popen[bytes] | None = None
    killed: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def manifest(self, version: str) -> Path:
        path = self.folder / f"imgpub-{version}.yaml"
        path.write_text(
            f"image: {{name: chaos, version: {version}, source: disk.raw, boot: uefi}}\n"
            "targets:\n"
            f"  - {{name: gce, provider: gcp, project: {PROJECT}, bucket: {self.bucket}, "
            f"storage_endpoint: '{self.gcs.url}', compute_endpoint: '{self.gce.url}'}}\n"
        )
        return path

    def env(self, state: str) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "TMPDIR", "LANG", "LC_ALL")}
        return {
            **keep,
            "HOME": str(self.folder / "home"),
            "IMGPUB_STATE_DIR": str(self.folder / state),
            "IMGPUB_GCP_ANONYMOUS": "1",
            "NO_COLOR": "1",
        }

    def start(self, version: str, state: str) -> subprocess.Popen[bytes]:
        report = self.folder / f"report-{version}-{state}.json"
        report.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "imgpub",
            "publish",
            str(self.manifest(version)),
            "--report",
            str(report),
        ]
        return subprocess.Popen(argv, env=self.env(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run(self, version: str, state: str, kill_at: int = 0) -> tuple[int, str, dict[str, Any]]:
        """Run publish; with `kill_at`, SIGKILL it as the kill_at-th request reaches a stand-in (the
        stand-in then does what that request asked: the client died while it was in flight)."""
        with self.lock:
            self.requests, self.kill_at = 0, kill_at
            self.process = self.start(version, state)
        _, err = self.process.communicate(timeout=120)
        report = self.folder / f"report-{version}-{state}.json"
        data = json.loads(report.read_text()) if report.exists() else {}
        return self.process.returncode, err.decode(), data

    def count(self, method: str, path: str) -> None:
        with self.lock:
            self.requests += 1
            if self.kill_at and self.requests == self.kill_at and self.process is not None:
                self.process.send_signal(signal.SIGKILL)
                self.killed.append(self.requests)

    def images(self, version: str) -> set[str]:
        label = version.replace(".", "-")
        return {
            n
            for (_, n), i in self.gce.state.images.items()
            if i.get("labels", {}).get(LABEL_VERSION) == label
        }

    def objects(self) -> list[str]:
        return [b.name for b in self.storage_client.list_blobs(self.bucket)]


@pytest.fixture
def cli(
    tmp_path: Path, gce: FakeGce, gcs: FaultProxy, bucket: str, storage_client: Any, cli_disk: Path
) -> Cli:
    (tmp_path / "disk.raw").symlink_to(cli_disk)
    runner = Cli(tmp_path, gce, gcs, bucket, storage_client)
    gce.on_request = gcs.on_request = runner.count
    return runner


QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "disk.qcow2"
ROOT_DATA = 36 << 20
"""Inside the quickstart disk's root partition (33-63 MiB): random bytes there make the tarball big."""


@pytest.fixture(scope="session")
def cli_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart disk (GPT, an EFI System Partition) with 20 MiB of random data in its root
    partition: a tarball of two chunks (16 MiB and the rest), so a killed upload has one to resume."""
    path = tmp_path_factory.mktemp("gcp-cli") / "disk.raw"
    argv = [sys.executable, "-m", "imgpub", "convert", str(QUICKSTART), "--to", "raw", "-o", str(path)]
    subprocess.run(argv, check=True, capture_output=True)
    with path.open("r+b") as f:
        f.seek(ROOT_DATA)
        f.write(random.Random(3).randbytes(CHUNK + (4 << 20)))
    return path


def assert_published_once(cli: Cli, version: str, report: dict[str, Any]) -> None:
    (target,) = report["targets"]
    assert target["status"] in ("published", "unchanged"), target
    (artifact,) = target["artifacts"]
    assert cli.images(version) == {artifact["id"]}
    assert cli.gce.image(PROJECT, artifact["id"])["status"] == "READY"  # type: ignore[index]
    assert cli.objects() == []


def test_publish_killed_at_random_points_finishes_on_the_rerun(cli: Cli) -> None:
    code, err, report = cli.run("0.0.0", "calibrate")
    assert code == 0, err
    assert_published_once(cli, "0.0.0", report)
    clean = cli.requests
    size = cli.gcs.put_bytes()
    rng = random.Random(10)
    trials = LONG or 3
    held = 0
    for trial in range(1, trials + 1):
        version, kill_at = f"1.0.{trial}", rng.randint(1, clean)
        cli.gcs.seen.clear()
        code, _, _ = cli.run(version, version, kill_at=kill_at)
        killed = code == -signal.SIGKILL
        code, err, report = cli.run(version, version)
        assert code == 0, (kill_at, err)
        assert_published_once(cli, version, report)
        assert cli.gcs.put_bytes() <= size + (CHUNK if killed else 0), (kill_at, cli.gcs.put_bytes(), size)
        held += 1
    print(f"gcp kill trials: {trials} tried, {held} held; kill points {cli.killed} of {clean} requests")


def test_two_publishes_of_one_manifest_at_once_publish_one_image(cli: Cli) -> None:
    for trial in range(LONG or 2):
        version = f"2.0.{trial}"
        first, second = cli.start(version, f"a-{trial}"), cli.start(version, f"b-{trial}")
        results = [(p.wait(120), p.stderr.read().decode() if p.stderr else "") for p in (first, second)]
        for p in (first, second):
            for stream in (p.stdout, p.stderr):
                if stream is not None:
                    stream.close()
        assert [code for code, _ in results] == [0, 0], results
        reports = [
            json.loads((cli.folder / f"report-{version}-{s}-{trial}.json").read_text()) for s in ("a", "b")
        ]
        for report in reports:
            assert_published_once(cli, version, report)
