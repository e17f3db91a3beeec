#!/usr/bin/env bash
# Run rtproxy as the Worker: the rtproxy command (mitmproxy with rtproxy's addons, README) in reverse mode
# on 127.0.0.1:${RT_PORT:-8080}.
# Realtime upgrades go to $SUPABASE_URL, or (unset) to the embedded local Realtime server; other requests
# go to the site behind the Worker, ${RT_SITE:-http://worker.localhost} (reverse mode target).
# Extra arguments go to rtproxy, e.g. --set rt_mode=relay (rtproxy --help lists the flags it takes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
PORT="${RT_PORT:-8080}"
SITE="${RT_SITE:-http://worker.localhost}"
exec "$ROOT/.venv/bin/rtproxy" --listen-host 127.0.0.1 -p "$PORT" --mode "reverse:$SITE" "$@"
