# shellcheck shell=bash
# Sourced by scripts/test and scripts/lowest (after bootstrap.sh): installs the programs the tests
# call when they are missing, and exports IMGPUB_AZURITE.

# Programs as program:package. qemu-img is the disk-format oracle, pigz makes gzip members in
# parallel, GNU tar is the GCE tarball oracle, shellcheck checks the run: scripts of the GitHub
# workflows and of action.yml (tests/packaging, through jactionlint).
apt_install_missing() {
    local missing=() pair
    for pair in "$@"; do command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "imgpub: installing ${missing[*]} (programs the tests call)..." >&2
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}
apt_install_missing qemu-img:qemu-utils pigz:pigz tar:tar shellcheck:shellcheck
AZURITE_DIR="$ROOT/.cache/azurite"
if [ ! -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ]; then
    echo "imgpub: installing Azurite 3.35.0 (Azure Storage emulator) into .cache/azurite..." >&2
    mkdir -p "$AZURITE_DIR"
    npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --silent azurite@3.35.0 >/dev/null
fi
export IMGPUB_AZURITE="$AZURITE_DIR/node_modules/.bin/azurite-blob"
