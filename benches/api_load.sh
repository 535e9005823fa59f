#!/usr/bin/env bash
# Requirement 6: the local API under load, with wrk on loopback (Debian: apt-get install wrk).
#
#   cargo build --profile server -p scheduled-runs
#   benches/api_load.sh                 # DURATION=10s CONNECTIONS=64 THREADS=1 ROUNDS=1
#   BIN="/tmp/before /tmp/after" ROUNDS=3 benches/api_load.sh   # side by side, interleaved
#
# Starts the real `scheduled-runs serve` (fresh data directory, demo data) on a free loopback
# port, and drives each endpoint for DURATION with CONNECTIONS connections:
#   GET  /api/v1/projects/{p}/schedules/{s}
#   POST /api/v1/projects/{p}/schedules      (a DAILY schedule: every request creates one)
#   POST /api/v1/projects/{p}/runs           ({"dryRun": true})
# and prints wrk's figures with the server's CPU time per request (from /proc: Linux). BIN
# may name several binaries: each round starts each of them in
# turn on a fresh data directory, so on a machine whose load varies they are measured under
# the same conditions; the summary gives each one's median over the rounds. Every request is
# bounded by wrk's duration; each server is stopped after its round. wrk and the server share
# the machine's cores.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
read -r -a BINS <<<"${BIN:-$ROOT/target/server/scheduled-runs}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-1}"
ROUNDS="${ROUNDS:-1}"

command -v wrk >/dev/null || { echo "api_load.sh: wrk is required (apt-get install wrk)" >&2; exit 1; }
for bin in "${BINS[@]}"; do
    [[ -x "$bin" ]] || { echo "api_load.sh: $bin is missing; cargo build --profile server -p scheduled-runs" >&2; exit 1; }
done

WORK="$(mktemp -d)"
SERVER=""
stop() { [[ -n "$SERVER" ]] && { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }; SERVER=""; }
trap 'stop; rm -rf "$WORK"' EXIT

SCHEDULE_BODY='{"cadence":{"kind":"DAILY","hour":9,"minute":0},"timezone":"Europe/Berlin"}'

post_script() { # body -> path of a wrk script that POSTs it
    local script="$WORK/post-$RANDOM.lua"
    printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
        "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1")" >"$script"
    echo "$script"
}
POST_SCHEDULE="$(post_script "$SCHEDULE_BODY")"
POST_RUN="$(post_script '{"dryRun":true}')"

# Starts `$1` on a fresh data directory; sets BASE, AUTH, PROJECT and SCHEDULE.
serve() {
    local data port
    data="$(mktemp -d -p "$WORK")"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    BASE="http://127.0.0.1:$port/api/v1"
    "$1" serve --addr "127.0.0.1:$port" --data-dir "$data" >"$data/serve.out" 2>"$data/serve.log" &
    SERVER=$!
    for _ in $(seq 100); do
        grep -q '^listening on' "$data/serve.out" 2>/dev/null && break
        sleep 0.1
    done
    grep -q '^listening on' "$data/serve.out" || { cat "$data/serve.log" >&2; exit 1; }
    AUTH="Authorization: Bearer $(grep -A2 '^dev token' "$data/serve.out" | tail -1)"
    PROJECT="$(awk '/^demo project/ {print $3}' "$data/serve.out")"
    SCHEDULE="$(curl -sf -H "$AUTH" -H 'Content-Type: application/json' -d "$SCHEDULE_BODY" \
        "$BASE/projects/$PROJECT/schedules" | python3 -c 'import json,sys; print(json.load(sys.stdin)["scheduleId"])')"
}

# CPU time the server has used so far, in clock ticks (user + system, /proc/PID/stat).
server_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }

run() { # binary-index name url [wrk script]
    local index="$1" name="$2" url="$3" script="${4:-}" out before after requests
    before="$(server_ticks)"
    out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "$AUTH" ${script:+-s "$script"} "$url")"
    after="$(server_ticks)"
    requests="$(awk '/requests in/ {print $1}' <<<"$out")"
    echo "== $name"
    grep -E 'Requests/sec|Latency|50%|90%|99%|requests in|Non-2xx|Socket errors' <<<"$out"
    # The server's CPU time per request: what a request costs, whatever else the machine
    # runs meanwhile (req/s depend on that; this hardly does).
    echo "server CPU per request: $(( (after - before) * 1000000 / $(getconf CLK_TCK) / requests )) us"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$index" "$name" \
        "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
        "$(awk '$1 == "99%" {print $2}' <<<"$out")" \
        "$(awk '/Non-2xx/ {print $NF}' <<<"$out")" \
        "$(( (after - before) * 1000000 / $(getconf CLK_TCK) / requests ))" >>"$WORK/results.tsv"
}

echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS round(s)"
for round in $(seq "$ROUNDS"); do
    for index in "${!BINS[@]}"; do
        echo "### round $round: ${BINS[$index]}"
        serve "${BINS[$index]}"
        run "$index" "GET schedule" "$BASE/projects/$PROJECT/schedules/$SCHEDULE"
        run "$index" "POST schedule" "$BASE/projects/$PROJECT/schedules" "$POST_SCHEDULE"
        run "$index" "POST runs (dryRun)" "$BASE/projects/$PROJECT/runs" "$POST_RUN"
        stop
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# Medians over the rounds, per binary and endpoint (wrk prints p99 in us, ms or s).
python3 - "$WORK/results.tsv" "${BINS[@]}" <<'EOF'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
bins = sys.argv[2:]
def ms(text):
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float("nan")
print(f"\nmedians of {len(rows) // (3 * len(bins))} round(s)")
print(f"{'binary':<40} {'endpoint':<20} {'req/s':>9} {'p99':>10} {'CPU/req':>9} {'non-2xx':>8}")
for index, binary in enumerate(bins):
    for name in ("GET schedule", "POST schedule", "POST runs (dryRun)"):
        mine = [r for r in rows if r[0] == str(index) and r[1] == name]
        rate = statistics.median(float(r[2]) for r in mine)
        p99 = statistics.median(ms(r[3]) for r in mine)
        cpu = statistics.median(int(r[5]) for r in mine)
        errors = sum(int(r[4] or 0) for r in mine)
        print(f"{binary[-40:]:<40} {name:<20} {rate:>9.0f} {p99:>7.2f} ms {cpu:>6} us {errors:>8}")
EOF
