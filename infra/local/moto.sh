#!/usr/bin/env bash
# Starts or stops moto's server, the local stand-in for EventBridge Scheduler, SQS, SNS and
# SES that the AWS messaging tests (tests/tests/aws_messaging.rs) run against.
#
#   infra/local/moto.sh start   # idempotent: installs moto if needed, starts it, writes the env file
#   source .test-env/moto.env   # SCHEDULED_RUNS_TEST_MOTO_ENDPOINT plus dummy credentials
#   infra/local/moto.sh stop    # idempotent
#
# Everything lives under .test-env/ (gitignored): the Python venv (shared with other local
# peers that need Python packages), moto.pid, moto.log and moto.env. The server listens on
# 127.0.0.1 only, on a free port chosen at start. Needs python3 with venv; never reads stdin.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ENV_DIR="$ROOT/.test-env"
VENV="$ENV_DIR/venv"
PID_FILE="$ENV_DIR/moto.pid"
LOG_FILE="$ENV_DIR/moto.log"
ENV_FILE="$ENV_DIR/moto.env"
# Pinned so every machine runs the emulator the tests were written against.
MOTO_REQUIREMENT="${MOTO_REQUIREMENT:-moto[server]==5.2.5}"
READY_TIMEOUT_SECONDS="${MOTO_READY_TIMEOUT_SECONDS:-60}"

log() { echo "moto.sh: $*" >&2; }

python_bin() {
    command -v python3 || command -v python || {
        log "python3 is required"
        exit 1
    }
}

# Creates the venv (or reuses the one another peer script made) and installs moto into it.
# A lock serialises this with other scripts installing into the same venv.
ensure_moto() {
    mkdir -p "$ENV_DIR"
    exec 9>"$ENV_DIR/venv.lock"
    if command -v flock >/dev/null; then flock 9; fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV"
        "$(python_bin)" -m venv "$VENV"
    fi
    if ! "$VENV/bin/python" - "$MOTO_REQUIREMENT" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
wanted = sys.argv[1].split("==", 1)
import flask_cors  # noqa: F401  (only present with the [server] extra)
sys.exit(0 if len(wanted) < 2 or version("moto") == wanted[1] else 1)
PY
    then
        log "installing $MOTO_REQUIREMENT"
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet \
            --no-input "$MOTO_REQUIREMENT" </dev/null
    fi
    exec 9>&-
}

running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    # Only ever touch the process this script started.
    grep -q moto_server "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

free_port() {
    "$VENV/bin/python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Succeeds once the server answers on its management API.
is_ready() {
    "$VENV/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/data.json", timeout=2).read()
PY
}

write_env() {
    cat >"$ENV_FILE" <<ENV
# Written by infra/local/moto.sh start; source it before the tests.
export SCHEDULED_RUNS_TEST_MOTO_ENDPOINT=http://127.0.0.1:$1
export AWS_ACCESS_KEY_ID=\${AWS_ACCESS_KEY_ID:-testing}
export AWS_SECRET_ACCESS_KEY=\${AWS_SECRET_ACCESS_KEY:-testing}
export AWS_REGION=\${AWS_REGION:-us-east-1}
export AWS_DEFAULT_REGION=\${AWS_DEFAULT_REGION:-us-east-1}
ENV
}

start() {
    ensure_moto
    local pid port
    if pid="$(running_pid)" && [[ -f "$ENV_DIR/moto.port" ]]; then
        port="$(cat "$ENV_DIR/moto.port")"
        if is_ready "$port"; then
            write_env "$port"
            log "already running (pid $pid, port $port)"
            return 0
        fi
        kill "$pid" 2>/dev/null || true
    fi
    for attempt in 1 2 3; do
        port="$(free_port)"
        # setsid + nohup: the server outlives this script and ignores the caller's terminal.
        setsid nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" \
            </dev/null >"$LOG_FILE" 2>&1 &
        pid=$!
        echo "$pid" >"$PID_FILE"
        echo "$port" >"$ENV_DIR/moto.port"
        local waited=0
        while kill -0 "$pid" 2>/dev/null; do
            if is_ready "$port"; then
                write_env "$port"
                log "started (pid $pid) on http://127.0.0.1:$port; source $ENV_FILE"
                return 0
            fi
            if ((waited >= READY_TIMEOUT_SECONDS * 4)); then
                log "not ready after ${READY_TIMEOUT_SECONDS}s; log: $LOG_FILE"
                kill "$pid" 2>/dev/null || true
                exit 1
            fi
            sleep 0.25
            waited=$((waited + 1))
        done
        log "attempt $attempt: server exited (port $port taken?); log:"
        tail -n 20 "$LOG_FILE" >&2 || true
    done
    rm -f "$PID_FILE" "$ENV_DIR/moto.port"
    exit 1
}

stop() {
    local pid
    if pid="$(running_pid)"; then
        kill "$pid"
        for _ in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -9 "$pid" 2>/dev/null || true
        log "stopped (pid $pid)"
    fi
    rm -f "$PID_FILE" "$ENV_DIR/moto.port" "$ENV_FILE"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
