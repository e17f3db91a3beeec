#!/usr/bin/env bash
# Run every test, after ruff, mypy and the documentation site's strict build (mkdocs.yml). Sets up what the
# tests need, once: .venv with the Python deps (the test extra: pytest, ruff, mypy, mkdocs), Debian's
# Chromium (for tests/browser), and the npm packages of tests/browser/site (supabase-js), tests/node
# (realtime-js) and worker (workerd, for tests/test_workerd.py and rtworker).
# Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" test

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's chromium for tests/browser..." >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null \
            || echo "apt-get install chromium failed; tests/browser cannot run" >&2
    else
        echo "tests/browser needs /usr/bin/chromium: sudo apt-get install -y chromium" >&2
    fi
fi

# npm packages are installed from the committed lock files, quietly, and only when the lock changed.
for dir in "$ROOT/tests/browser/site" "$ROOT/tests/node" "$ROOT/worker"; do
    if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        if command -v npm >/dev/null 2>&1; then
            (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
                || echo "npm ci in ${dir#$ROOT/} failed; its tests cannot run" >&2
        else
            echo "${dir#$ROOT/} needs npm (Node.js): apt-get install -y npm" >&2
        fi
    fi
done

cd "$ROOT"
# Lint, format and types first: the tree is kept clean (pyproject.toml [tool.ruff], [tool.mypy]).
"$ROOT/.venv/bin/ruff" check --quiet . && "$ROOT/.venv/bin/ruff" format --check --quiet . \
    || { echo "ruff found problems (above): fix them, or run .venv/bin/ruff format ." >&2; exit 1; }
types="$("$ROOT/.venv/bin/mypy" 2>&1)" || { echo "$types"; echo "mypy found problems (above)" >&2; exit 1; }
# The documentation site (mkdocs.yml), strict: a broken link, a missing page or a bad table marker fails.
docs="$(NO_MKDOCS_2_WARNING=1 "$ROOT/.venv/bin/mkdocs" build --strict --quiet --site-dir "$ROOT/artifacts/site" 2>&1)" \
    || { echo "$docs"; echo "mkdocs build --strict failed (above); scripts/docs.sh serves the site" >&2; exit 1; }
exec "$ROOT/.venv/bin/python" -m pytest "$@"
