"""Start the local clouds, publish examples/sandbox/imgpub.yaml to all four targets, print the report, stop.

    uv run python examples/sandbox/sandbox.py [--keep] [-- extra imgpub publish options]

The back ends are the ones the end-to-end tests use (tests/e2e/stack.py): moto with imgpub's
strictness patches, gcp-storage-emulator with a fake Compute images API, Azurite with a fake ARM and
a managed-identity token endpoint. They listen on fixed ports (4566, 9023, 9080, 10000, 9443, 9081)
and keep everything in memory: each run starts from empty clouds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "sandbox" / "imgpub.yaml"
AZURITE = ROOT / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
sys.path.insert(0, str(ROOT / "tests"))

from e2e.stack import SANDBOX_PORTS, Clouds, running_clouds  # noqa: E402


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through running_clouds, which stops every emulator


def _publish(clouds: Clouds, out: Path, extra: list[str], report: Path) -> int:
    env = clouds.env(IMGPUB_SANDBOX_OUT=str(out))
    env.pop("NO_COLOR")
    targets = [] if _azurite_installed() else ["--target", "aws", "--target", "gcp", "--target", "folder"]
    imgpub = Path(sys.executable).parent / "imgpub"
    argv = [str(imgpub), "publish", str(MANIFEST), "--report", str(report), *targets, *extra]
    print("$ " + " ".join(argv[1:]), flush=True)
    return subprocess.run(argv, env=env).returncode


def _azurite() -> Path:
    return Path(os.environ.get("IMGPUB_AZURITE", AZURITE))


def _azurite_installed() -> bool:
    return _azurite().exists() and shutil.which("node") is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the clouds up until Ctrl-C")
    parser.add_argument("--out", type=Path, default=ROOT / "out", help="the local target folder")
    parser.add_argument("extra", nargs="*", help="more `imgpub publish` options (after --)")
    args = parser.parse_args()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _stop)
    if not _azurite_installed():
        print(f"sandbox: no Azurite at {_azurite()} (scripts/test installs it): skipping the azure target")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="imgpub-sandbox-") as tmp:
        with running_clouds(Path(tmp), SANDBOX_PORTS, azure=_azurite_installed()) as clouds:
            print(f"sandbox: clouds up in {time.monotonic() - started:.1f} s", flush=True)
            report = Path(tmp) / "report.json"
            code = _publish(clouds, args.out, args.extra, report)
            if report.exists():
                print(json.dumps(json.loads(report.read_text()), indent=2))
            if args.keep:
                print("sandbox: up; the environment for more imgpub commands:")
                for key, value in clouds.env(IMGPUB_SANDBOX_OUT=str(args.out)).items():
                    if key.startswith(("AWS_", "AZURE_", "IDENTITY_", "IMGPUB_", "REQUESTS_")):
                        print(f"  export {key}='{value}'")
                print("sandbox: Ctrl-C stops it", flush=True)
                signal.pause()
        print(f"sandbox: stopped; exit {code} after {time.monotonic() - started:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
