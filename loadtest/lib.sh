# shellcheck shell=bash
# Shared parts of the Outboard benchmarks (bench-turns.sh, bench-memory.sh, bench-events.sh, bench-waits.sh,
# bench-long.sh):
# PostgreSQL, the builds, a fresh database, the pgbench baseline, the service's start and stop, the
# admin API key, the clients' runs and summary helpers. Only 127.0.0.1 is used.
#
# Source it from a script that has done `set -euo pipefail`, changed into loadtest/ and set
# DB (the database name). Sourcing reads the shared knobs below, creates the work directory $WORK
# and installs the EXIT/INT/TERM traps that stop the service and clean up.

[[ -n ${DB:-} ]] || { echo "lib.sh: set DB before sourcing" >&2; exit 1; }

# Shared knobs (environment; see README.md).
PGBENCH_SECONDS=${PGBENCH_SECONDS:-10}
OUTBOARD_JAR=${OUTBOARD_JAR:-../target/outboard.jar}
OUTBOARD_JAVA_OPTS=${OUTBOARD_JAVA_OPTS:-}
PGBENCH_ONLY=${PGBENCH_ONLY:-0}
BENCH_ENFORCE=${BENCH_ENFORCE:-0}
KEEP_WORKDIR=${KEEP_WORKDIR:-0}
# For run_turn_client: the limit of a run (sessions to finish, events to read), the poll interval.
BENCH_TIMEOUT_SECONDS=${BENCH_TIMEOUT_SECONDS:-600}
POLL_MS=${POLL_MS:-200}

readonly CLIENT_JAR=target/turn-benchmark.jar      # TurnBenchmark (main class) and MemoryBenchmark
readonly SERVICE_START_SECONDS=90
readonly EXIT_BARS_MISSED=3
readonly SUMMARY_LINE=----------------------------------------------------------------------------------

export PGCONNECT_TIMEOUT=10
PSQL=(env PGOPTIONS=--client-min-messages=warning psql -h 127.0.0.1 -U postgres -X -q -v ON_ERROR_STOP=1)
CURL=(curl -sS --noproxy '*' --max-time 10)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/outboard-bench.XXXXXX")
SERVICE_LOG=$WORK/service.log
SERVICE_PID=
CHILD_PID=
BARS_MISSED=0

log() { printf '\n==> %s\n' "$*"; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

# ---- lifecycle ------------------------------------------------------------------------------

# terminate <pid>: SIGTERM, up to 15 s for a clean shutdown, then SIGKILL; reaps it.
terminate() {
    local pid=$1
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

stop_service() {
    [[ -n $SERVICE_PID ]] || return 0
    terminate "$SERVICE_PID"
    SERVICE_PID=
}

cleanup() {
    local rc=$?
    [[ -z $CHILD_PID ]] || kill -TERM "$CHILD_PID" 2>/dev/null || true
    stop_service
    if (( rc != 0 && rc != EXIT_BARS_MISSED )); then
        if [[ -s $SERVICE_LOG ]]; then
            printf '\n--- last 40 lines of %s ---\n' "$SERVICE_LOG" >&2
            tail -n 40 "$SERVICE_LOG" >&2
        fi
        printf '\nwork dir kept for inspection: %s\n' "$WORK" >&2
    elif [[ $KEEP_WORKDIR == 1 ]]; then
        printf '\nwork dir kept: %s\n' "$WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_logged <file> <command...>: runs the command in the background with its output in <file>
# and waits for it, so INT/TERM take effect at once (cleanup then stops the child).
run_logged() {
    local file=$1 rc=0
    shift
    "$@" >"$file" 2>&1 &
    CHILD_PID=$!
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=
    return "$rc"
}

# Runs "$@" every 0.5 s until it succeeds or $1 seconds have passed.
wait_until() {
    local seconds=$1 what=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        (( SECONDS < deadline )) || die "$what not ready after ${seconds} s"
        sleep 0.5
    done
}

require_tools() {
    local tool
    for tool in psql pgbench pg_isready java curl python3 awk timeout mvn; do
        command -v "$tool" >/dev/null || die "'$tool' is required but not on PATH"
    done
}

# ---- PostgreSQL -----------------------------------------------------------------------------

ensure_postgres() {
    if ! pg_isready -h 127.0.0.1 -q; then
        log "starting PostgreSQL"
        # shellcheck disable=SC2012 # version directories are plain numbers
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
    fi
    wait_until 30 "PostgreSQL" pg_isready -h 127.0.0.1 -q
}

recreate_database() {
    "${PSQL[@]}" -d postgres \
        -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
        -c "CREATE DATABASE $DB"
}

# run_pgbench <clients> <threads>: one pgbench run of the single-INSERT script;
# sets PGBENCH_TPS and PGBENCH_LATENCY (latency average, ms).
run_pgbench() {
    local clients=$1 threads=$2 output=$WORK/pgbench-c$1.txt
    run_logged "$output" timeout $((PGBENCH_SECONDS + 60)) \
        pgbench -h 127.0.0.1 -U postgres -n -f "$WORK/insert.sql" \
            -c "$clients" -j "$threads" -T "$PGBENCH_SECONDS" "$DB" \
        || { cat "$output" >&2; die "pgbench -c $clients failed"; }
    PGBENCH_TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$output" | head -n 1)
    PGBENCH_LATENCY=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$output" | head -n 1)
    [[ -n $PGBENCH_TPS && -n $PGBENCH_LATENCY ]] \
        || { cat "$output" >&2; die "cannot parse the output of pgbench -c $clients"; }
}

# Sets PG1_TPS, PG1_LATENCY (1 client) and PG16_TPS, PG16_LATENCY (16 clients); leaves $DB empty.
pgbench_baseline() {
    log "pgbench baseline: bare single-row INSERT commits, ${PGBENCH_SECONDS} s per run"
    recreate_database
    "${PSQL[@]}" -d "$DB" \
        -c 'CREATE TABLE bench_insert(id bigserial PRIMARY KEY, payload text, at timestamptz DEFAULT now())'
    echo "INSERT INTO bench_insert(payload) VALUES ('x');" >"$WORK/insert.sql"

    run_pgbench 1 1
    PG1_TPS=$PGBENCH_TPS PG1_LATENCY=$PGBENCH_LATENCY
    printf '  pgbench  1 client : tps %10.1f   latency average %.3f ms\n' "$PG1_TPS" "$PG1_LATENCY"
    run_pgbench 16 2
    PG16_TPS=$PGBENCH_TPS PG16_LATENCY=$PGBENCH_LATENCY
    printf '  pgbench 16 clients: tps %10.1f   latency average %.3f ms\n' "$PG16_TPS" "$PG16_LATENCY"

    # Start the service on a pristine database: migration tools refuse a non-empty schema.
    recreate_database
}

# ---- builds ---------------------------------------------------------------------------------

build() {
    [[ $PGBENCH_ONLY != 1 ]] || return 0
    if [[ ! -f $OUTBOARD_JAR ]]; then
        [[ $OUTBOARD_JAR == ../target/outboard.jar ]] || die "OUTBOARD_JAR=$OUTBOARD_JAR does not exist"
        log "building the service (../target/outboard.jar is missing)"
        run_logged "$WORK/build-service.log" \
            bash -c 'cd .. && exec timeout 1800 mvn -q -B clean package -DskipTests' \
            || { cat "$WORK/build-service.log" >&2; die "the service build failed"; }
        [[ -f $OUTBOARD_JAR ]] || die "the service build did not produce $OUTBOARD_JAR"
    fi
    log "building the benchmark client"
    run_logged "$WORK/build-client.log" timeout 900 mvn -q -B package \
        || { cat "$WORK/build-client.log" >&2; die "the client build failed"; }
    [[ -f $CLIENT_JAR ]] || die "the client build did not produce $CLIENT_JAR"
}

# ---- the service ----------------------------------------------------------------------------

# Three distinct free loopback ports (the sockets are held open together while picking).
free_ports() {
    python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()'
}

service_answers_401() {
    kill -0 "$SERVICE_PID" 2>/dev/null || die "the service exited during startup"
    [[ $("${CURL[@]}" --max-time 2 -o /dev/null -w '%{http_code}' "$BASE/v1/sessions" 2>/dev/null) == 401 ]]
}

# Starts the service on $DB; sets BASE, MANAGEMENT_BASE (pekko-management), METRICS_URL (its
# /metrics), ADMIN_TOKEN and SERVICE_PID.
start_service() {
    local ports http_port management_port remote_port java_opts started=$SECONDS
    ports=$(free_ports)
    read -r http_port management_port remote_port <<<"$ports"
    [[ -n $remote_port ]] || die "could not pick free ports"
    read -r -a java_opts <<<"$OUTBOARD_JAVA_OPTS"
    ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
    BASE=http://127.0.0.1:$http_port
    MANAGEMENT_BASE=http://127.0.0.1:$management_port
    METRICS_URL=$MANAGEMENT_BASE/metrics
    mkdir -p "$WORK/data"

    log "starting the service on $BASE (log: $SERVICE_LOG)"
    OUTBOARD_DB_URL=jdbc:postgresql://127.0.0.1:5432/$DB \
    OUTBOARD_DB_USER=postgres \
    OUTBOARD_DB_PASSWORD='' \
    OUTBOARD_ALLOW_SCRIPTED=true \
    OUTBOARD_ADMIN_TOKEN=$ADMIN_TOKEN \
    OUTBOARD_HTTP_PORT=$http_port \
    OUTBOARD_MANAGEMENT_PORT=$management_port \
    OUTBOARD_REMOTE_PORT=$remote_port \
    OUTBOARD_DATA_DIR=$WORK/data \
        java "${java_opts[@]}" -jar "$OUTBOARD_JAR" serve >"$SERVICE_LOG" 2>&1 &
    SERVICE_PID=$!

    wait_until "$SERVICE_START_SECONDS" "the service (GET /v1/sessions answering 401)" service_answers_401
    echo "  ready after $((SECONDS - started)) s (pid $SERVICE_PID)"
}

# POST $1 with admin auth and optional JSON body $2; requires 201; prints the response body.
admin_post() {
    local path=$1 body=${2:-} response status
    local args=(-X POST -H "Authorization: Bearer $ADMIN_TOKEN" -w '\n%{http_code}')
    [[ -z $body ]] || args+=(-H 'Content-Type: application/json' --data-binary "$body")
    response=$("${CURL[@]}" "${args[@]}" "$BASE$path") || die "POST $path failed"
    status=${response##*$'\n'}
    [[ $status == 201 ]] || die "POST $path answered $status (expected 201): ${response%$'\n'*}"
    printf '%s\n' "${response%$'\n'*}"
}

# Creates org 'bench' and sets API_KEY to a new key of it.
create_api_key() {
    log "creating org 'bench' and an API key"
    admin_post /v1/admin/orgs '{"id":"bench","name":"Bench"}' >/dev/null
    API_KEY=$(admin_post /v1/admin/orgs/bench/keys \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])') \
        || die "no key in the answer of POST /v1/admin/orgs/bench/keys"
    [[ -n $API_KEY ]] || die "empty API key"
}

# ---- the clients ----------------------------------------------------------------------------

# run_client <name> <seconds> <command...>: runs a benchmark client for at most <seconds>; its
# output is shown and kept in $WORK/<name>.txt. Dies unless it succeeds with a RESULT line.
run_client() {
    local name=$1 seconds=$2 output=$WORK/$1.txt rc=0
    shift 2
    run_logged "$output" timeout "$seconds" "$@" || rc=$?
    cat "$output"
    (( rc == 0 )) || die "the $name run failed (exit $rc)"
    grep -q '^RESULT ' "$output" || die "no RESULT line from the $name run"
}

# run_turn_client <name> <sessions> <turns>: runs TurnBenchmark; its output is kept in $WORK/<name>.txt
run_turn_client() {
    local name=$1 sessions=$2 turns=$3
    log "Outboard $name: $sessions session(s) x $turns turns"
    run_client "$name" $((BENCH_TIMEOUT_SECONDS * 2 + 60)) \
        java -jar "$CLIENT_JAR" --base "$BASE" --key "$API_KEY" \
            --sessions "$sessions" --turns "$turns" --timeout-seconds "$BENCH_TIMEOUT_SECONDS" --poll-ms "$POLL_MS"
}

# ---- results and summary --------------------------------------------------------------------

# result <name> <key>: a value from the RESULT line of a client run (output in $WORK/<name>.txt)
result() {
    sed -n "s/^RESULT.* $2=\([^ ]*\).*/\1/p" "$WORK/$1.txt"
}

# ratio <a> <b>: a / b with two decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

# verdict <value> <le|ge> <bar>: PASS or FAIL
verdict() {
    awk -v v="$1" -v op="$2" -v bar="$3" \
        'BEGIN { print ((op == "le" ? v <= bar : v >= bar) ? "PASS" : "FAIL") }'
}

# The summary's head: the machine, PostgreSQL's version and the pgbench baseline.
print_summary_head() {
    printf '\n%s\nSUMMARY  (%s CPUs, %s)\n%s\n' "$SUMMARY_LINE" "$(nproc)" \
        "$("${PSQL[@]}" -d postgres -Atc 'SHOW server_version' 2>/dev/null || echo 'PostgreSQL ?')" "$SUMMARY_LINE"
    printf '%-34s commit latency %8.3f ms   tps %10.1f\n' \
        "pgbench INSERT, 1 client" "$PG1_LATENCY" "$PG1_TPS"
    printf '%-34s %29s tps %10.1f\n' "pgbench INSERT, 16 clients" "" "$PG16_TPS"
}

# With BENCH_ENFORCE=1, exits with EXIT_BARS_MISSED when BARS_MISSED > 0.
exit_if_bars_missed() {
    if [[ $BENCH_ENFORCE == 1 ]] && (( BARS_MISSED > 0 )); then
        echo "$BARS_MISSED bar(s) missed" >&2
        exit "$EXIT_BARS_MISSED"
    fi
}
