#!/usr/bin/env bash
# Serve the documentation site (mkdocs.yml, docs/) at http://127.0.0.1:8000, rebuilt on every change; the
# reference tables are written from the registries as it builds (scripts/tables.py). Extra arguments go to
# mkdocs serve. Needs the test extra (mkdocs, mkdocs-material): scripts/setup.sh test installs it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" test
cd "$ROOT"
NO_MKDOCS_2_WARNING=1 exec "$ROOT/.venv/bin/mkdocs" serve -a 127.0.0.1:8000 "$@"
