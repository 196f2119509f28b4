#!/usr/bin/env bash
# Publish the quickstart disk to AWS, GCP, Azure and a folder against local emulators, then stop them.
# Usage: examples/sandbox/run.sh [--keep] [-- imgpub publish options]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
exec uv run --quiet python examples/sandbox/sandbox.py "$@"
