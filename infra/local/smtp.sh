#!/usr/bin/env bash
# Starts or stops a local SMTP server, the peer the e-mail notification tests
# (tests/tests/notify_channels.rs, notify_e2e.rs) deliver to: aiosmtpd (PyPI) with its
# Mailbox handler, which stores every message it accepts in a Maildir the tests read.
#
#   infra/local/smtp.sh start   # idempotent: installs aiosmtpd if needed, starts it, writes the env file
#   source .test-env/smtp.env   # SCHEDULED_RUNS_TEST_SMTP_URL=smtp://127.0.0.1:PORT
#                               # SCHEDULED_RUNS_TEST_SMTP_MAILDIR=<the Maildir>
#   infra/local/smtp.sh stop    # idempotent
#
# Everything lives under .test-env/ (gitignored): the Python venv shared with the other
# local peers, smtp.pid, smtp.port, smtp.log, smtp.env and the Maildir smtp-mail/. The
# server listens on 127.0.0.1 only, on a free port chosen at start, speaks plain SMTP (the
# local server's `--smtp-url smtp://HOST:PORT`) and accepts any sender and recipient. Tests
# tell their messages apart by unique recipient addresses. Never reads stdin.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ENV_DIR="$ROOT/.test-env"
VENV="$ENV_DIR/venv"
PID_FILE="$ENV_DIR/smtp.pid"
PORT_FILE="$ENV_DIR/smtp.port"
LOG_FILE="$ENV_DIR/smtp.log"
ENV_FILE="$ENV_DIR/smtp.env"
MAILDIR="$ENV_DIR/smtp-mail"
# Pinned so every machine runs the server the tests were written against.
AIOSMTPD_REQUIREMENT="${AIOSMTPD_REQUIREMENT:-aiosmtpd==1.4.6}"
READY_TIMEOUT_SECONDS="${SMTP_READY_TIMEOUT_SECONDS:-30}"

log() { echo "smtp.sh: $*" >&2; }

python_bin() {
    command -v python3 || command -v python || {
        log "python3 is required"
        exit 1
    }
}

# Creates the venv (or reuses the one another peer script made) and installs aiosmtpd.
# A lock serialises this with other scripts installing into the same venv.
ensure_aiosmtpd() {
    mkdir -p "$ENV_DIR"
    exec 9>"$ENV_DIR/venv.lock"
    if command -v flock >/dev/null; then flock 9; fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV"
        "$(python_bin)" -m venv "$VENV"
    fi
    if ! "$VENV/bin/python" - "$AIOSMTPD_REQUIREMENT" <<'PY' >/dev/null 2>&1; then
import sys
from importlib.metadata import version
wanted = sys.argv[1].split("==", 1)
sys.exit(0 if len(wanted) < 2 or version("aiosmtpd") == wanted[1] else 1)
PY
        log "installing $AIOSMTPD_REQUIREMENT"
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet \
            --no-input "$AIOSMTPD_REQUIREMENT" </dev/null
    fi
    exec 9>&-
}

running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    # Only ever touch the process this script started.
    grep -q aiosmtpd "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

free_port() {
    "$VENV/bin/python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Succeeds once the server greets with 220.
is_ready() {
    "$VENV/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=2) as s:
    s.noop()
PY
}

write_env() {
    cat >"$ENV_FILE" <<ENV
# Written by infra/local/smtp.sh start; source it before the tests.
export SCHEDULED_RUNS_TEST_SMTP_URL=smtp://127.0.0.1:$1
export SCHEDULED_RUNS_TEST_SMTP_MAILDIR=$MAILDIR
ENV
}

start() {
    ensure_aiosmtpd
    # The Maildir layout (aiosmtpd creates it only when the directory is missing).
    mkdir -p "$MAILDIR/tmp" "$MAILDIR/new" "$MAILDIR/cur"
    local pid port
    if pid="$(running_pid)" && [[ -f "$PORT_FILE" ]]; then
        port="$(cat "$PORT_FILE")"
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
        setsid nohup "$VENV/bin/python" -m aiosmtpd -n -l "127.0.0.1:$port" \
            -c aiosmtpd.handlers.Mailbox "$MAILDIR" </dev/null >"$LOG_FILE" 2>&1 &
        pid=$!
        echo "$pid" >"$PID_FILE"
        echo "$port" >"$PORT_FILE"
        local waited=0
        while kill -0 "$pid" 2>/dev/null; do
            if is_ready "$port"; then
                write_env "$port"
                log "started (pid $pid) on smtp://127.0.0.1:$port; source $ENV_FILE"
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
    rm -f "$PID_FILE" "$PORT_FILE"
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
    rm -f "$PID_FILE" "$PORT_FILE" "$ENV_FILE"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
