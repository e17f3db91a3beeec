#!/usr/bin/env bash
# Creates .venv at the repo root with Python 3.12 and the project installed (editable), once.
# Sourced by scripts/run.sh and scripts/test.sh; safe to run again (it only installs what changed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
EXTRAS="${1:-}"

find_python() {
    # pyenv reads .python-version; fall back to any python3.12 on PATH.
    local c
    for c in "$(cd "$ROOT" && pyenv which python3 2>/dev/null || true)" python3.12 python3; do
        [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 || continue
        if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
            command -v "$c"; return 0
        fi
    done
    echo "rtproxy needs Python 3.12 (mitmproxy 12 requires it); install it (e.g. 'pyenv install 3.12')" >&2
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    PY="$(find_python)"
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.rtproxy-installed${EXTRAS:+-$EXTRAS}"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
    echo "setting up $VENV (Python deps${EXTRAS:+ + $EXTRAS})..." >&2
    # This machine's pip config names local mirrors that may be absent; their warnings are noise.
    if ! "$VENV/bin/python" -m pip install -q -e "$ROOT${EXTRAS:+[$EXTRAS]}" 2>&1 \
            | { grep -v "is ignored: it is neither" >&2 || true; }; then
        echo "pip install failed (see above)" >&2
        exit 1
    fi
    touch "$STAMP"
    if [ -z "$EXTRAS" ] && [ ! -d "$ROOT/worker/node_modules/workerd" ]; then
        echo "rtworker (a Worker run locally in workerd) also needs, once: (cd worker && npm ci --no-audit --no-fund)" >&2
    fi
fi
