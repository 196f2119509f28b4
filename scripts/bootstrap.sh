# Sourced by scripts/demo and scripts/test: makes sure uv exists and the workspace is synced.
# Needs only python3 (3.11+) and, for the tests, node/npm and apt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
    echo "imgpub: installing uv (the Python project manager) with pip..." >&2
    python3 -m pip install --quiet --user uv 2>/dev/null \
        || python3 -m pip install --quiet --user --break-system-packages uv
fi
