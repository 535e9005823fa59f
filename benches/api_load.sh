#!/usr/bin/env bash
# Requirement 6: the local API under load, with wrk on loopback (Debian: apt-get install wrk).
#
#   cargo build --release -p scheduled-runs
#   benches/api_load.sh                 # DURATION=10s CONNECTIONS=64 THREADS=1 by default
#
# Starts the real `scheduled-runs serve` (release build, fresh data directory, demo data) on a
# free loopback port, and drives each endpoint for DURATION with CONNECTIONS connections:
#   GET  /api/v1/projects/{p}/schedules/{s}
#   POST /api/v1/projects/{p}/schedules      (a DAILY schedule: every request creates one)
#   POST /api/v1/projects/{p}/runs           ({"dryRun": true})
# and prints wrk's figures. Every request is bounded by wrk's duration; the server is stopped
# at the end. wrk and the server share the machine's cores.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/target/release/scheduled-runs}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-1}"

command -v wrk >/dev/null || { echo "api_load.sh: wrk is required (apt-get install wrk)" >&2; exit 1; }
[[ -x "$BIN" ]] || { echo "api_load.sh: $BIN is missing; cargo build --release -p scheduled-runs" >&2; exit 1; }

DATA="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT/api/v1"
"$BIN" serve --addr "127.0.0.1:$PORT" --data-dir "$DATA" >"$DATA/serve.out" 2>"$DATA/serve.log" &
SERVER=$!
cleanup() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT

for _ in $(seq 100); do
    grep -q '^listening on' "$DATA/serve.out" 2>/dev/null && break
    sleep 0.1
done
grep -q '^listening on' "$DATA/serve.out" || { cat "$DATA/serve.log" >&2; exit 1; }
TOKEN="$(grep -A2 '^dev token' "$DATA/serve.out" | tail -1)"
PROJECT="$(awk '/^demo project/ {print $3}' "$DATA/serve.out")"
AUTH="Authorization: Bearer $TOKEN"

SCHEDULE_BODY='{"cadence":{"kind":"DAILY","hour":9,"minute":0},"timezone":"Europe/Berlin"}'
SCHEDULE="$(curl -sf -H "$AUTH" -H 'Content-Type: application/json' -d "$SCHEDULE_BODY" \
    "$BASE/projects/$PROJECT/schedules" | python3 -c 'import json,sys; print(json.load(sys.stdin)["scheduleId"])')"

post_script() { # body -> path of a wrk script that POSTs it
    local script="$DATA/post-$RANDOM.lua"
    printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
        "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1")" >"$script"
    echo "$script"
}

run() { # name url [wrk script]
    local name="$1" url="$2" script="${3:-}"
    echo "== $name"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "$AUTH" ${script:+-s "$script"} "$url" \
        | grep -E 'Requests/sec|Latency|50%|90%|99%|requests in|Non-2xx|Socket errors'
}

echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION against $BIN"
run "GET schedule" "$BASE/projects/$PROJECT/schedules/$SCHEDULE"
run "POST schedule" "$BASE/projects/$PROJECT/schedules" "$(post_script "$SCHEDULE_BODY")"
run "POST runs (dryRun)" "$BASE/projects/$PROJECT/runs" "$(post_script '{"dryRun":true}')"
