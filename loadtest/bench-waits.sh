#!/usr/bin/env bash
# Outboard approvals and durable waits (issue 11) on PostgreSQL, with a sandbox host: from an
# approval (POST approvals) or an event (POST events/{name}) to the held call's command running in
# the sandbox, p50/p99, with the session in memory and its sandbox suspended and with the session
# passivated (its sandbox hibernated); and the heap that a waiting session costs the node, in memory
# and once passivated; next to pgbench's bare single-row INSERT commits on the same PostgreSQL.
#
#   cd loadtest && ./bench-waits.sh
#
# Knobs (environment; defaults in brackets) are listed in README.md. Only 127.0.0.1 is used.
# The shared parts (PostgreSQL, builds, pgbench, the service, the API key) are in lib.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

WAIT_SESSIONS=${WAIT_SESSIONS:-100}
WAIT_WARMUP_SESSIONS=${WAIT_WARMUP_SESSIONS:-20}
WAIT_BATCH=${WAIT_BATCH:-10}
SUSPEND_AFTER=${SUSPEND_AFTER:-1s}
HIBERNATE_AFTER=${HIBERNATE_AFTER:-5s}
PASSIVATE_AFTER=${PASSIVATE_AFTER:-2s}
HEAP_SESSIONS=${HEAP_SESSIONS:-10000}
HEAP_WARMUP_SESSIONS=${HEAP_WARMUP_SESSIONS:-500}
HEAP_PASSIVATE_SECONDS=${HEAP_PASSIVATE_SECONDS:-180}

readonly DB=outboard_bench_waits
readonly WAIT_CLIENT=dev.outboard.loadtest.WaitBenchmark
# Untimed sessions at the start of each timed run: the client's own JVM is new every run.
readonly WAIT_UNTIMED=5
# Finished sessions passivate at once, so that a passivated run finds only its own sessions live;
# the entity gauge (outboard_entities) is sampled every second.
readonly QUICK_OPTS="-Doutboard.session.passivate-finished-after=1s -Doutboard.metrics.shard-stats-interval=1s"
readonly USER_JAVA_OPTS=${OUTBOARD_JAVA_OPTS:-}

# shellcheck source=lib.sh
source ./lib.sh

SANDBOX_HOST_LOG=$WORK/sandbox-host.log
SANDBOX_HOST_PID=

# ---- the sandbox host -----------------------------------------------------------------------

stop_sandbox_host() {
    [[ -n $SANDBOX_HOST_PID ]] || return 0
    terminate "$SANDBOX_HOST_PID"
    SANDBOX_HOST_PID=
}

# lib.sh's cleanup, with the sandbox host stopped after the service (and its log shown on failure).
cleanup_waits() {
    local rc=$?
    set +e # or `(exit "$rc")` below would end the trap before lib.sh's cleanup
    stop_service
    stop_sandbox_host
    if (( rc != 0 )) && [[ -s $SANDBOX_HOST_LOG ]]; then
        printf '\n--- last 20 lines of %s ---\n' "$SANDBOX_HOST_LOG" >&2
        tail -n 20 "$SANDBOX_HOST_LOG" >&2
    fi
    (exit "$rc")
    cleanup
}
trap cleanup_waits EXIT

sandbox_host_answers() {
    kill -0 "$SANDBOX_HOST_PID" 2>/dev/null || die "the sandbox host exited during startup"
    [[ $("${CURL[@]}" --max-time 2 -o /dev/null -w '%{http_code}' \
        -H "Authorization: Bearer $OUTBOARD_SANDBOX_HOST_TOKEN" "$OUTBOARD_SANDBOX_HOST_URL/v1/health" 2>/dev/null) == 200 ]]
}

# Starts `serve --role sandbox-host` on a free loopback port (workspaces under $WORK/sandbox-host)
# and exports OUTBOARD_SANDBOX_HOST_URL and OUTBOARD_SANDBOX_HOST_TOKEN for the service.
start_sandbox_host() {
    local port started=$SECONDS
    port=$(free_ports | cut -d ' ' -f 1)
    [[ -n $port ]] || die "could not pick a free port"
    export OUTBOARD_SANDBOX_HOST_URL=http://127.0.0.1:$port
    OUTBOARD_SANDBOX_HOST_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
    export OUTBOARD_SANDBOX_HOST_TOKEN
    chmod 711 "$WORK" # bwrap runs as uid 65534 under root and must reach the sandbox root
    mkdir -p "$WORK/sandbox-host"

    log "starting the sandbox host on $OUTBOARD_SANDBOX_HOST_URL (log: $SANDBOX_HOST_LOG)"
    OUTBOARD_DATA_DIR=$WORK/sandbox-host \
    OUTBOARD_SANDBOX_HOST_PORT=$port \
        java -jar "$OUTBOARD_JAR" serve --role sandbox-host >"$SANDBOX_HOST_LOG" 2>&1 &
    SANDBOX_HOST_PID=$!

    wait_until "$SERVICE_START_SECONDS" "the sandbox host (GET /v1/health answering 200)" sandbox_host_answers
    echo "  ready after $((SECONDS - started)) s (pid $SANDBOX_HOST_PID)"
}

# ---- the node's metrics and heap ------------------------------------------------------------

# metrics_sum <prefix>: the sum of the node's samples whose series (name{labels}) starts with <prefix>
metrics_sum() {
    local text
    text=$("${CURL[@]}" "$METRICS_URL") || die "GET $METRICS_URL failed"
    awk -v p="$1" 'index($1, p) == 1 { s += $2 } END { printf "%d\n", s }' <<<"$text"
}

# Whether no session entity (and no session of any status) is live on the node.
node_idle() {
    kill -0 "$SERVICE_PID" 2>/dev/null || die "the service exited"
    [[ $(metrics_sum 'outboard_sessions{') == 0 && $(metrics_sum 'outboard_entities{type="Session"}') == 0 ]]
}

# heap_snapshot <name>: the service's live objects after a full GC (jcmd GC.class_histogram, kept in
# $WORK/heap-<name>.txt); sets HEAP_BYTES (the histogram's total) and HEAP_USED (G1's used bytes
# right after, by GC.heap_info).
heap_snapshot() {
    local file=$WORK/heap-$1.txt used
    jcmd "$SERVICE_PID" GC.class_histogram >"$file" 2>&1 || { cat "$file" >&2; die "jcmd GC.class_histogram failed"; }
    HEAP_BYTES=$(awk '$1 == "Total" { print $3 }' "$file")
    used=$(jcmd "$SERVICE_PID" GC.heap_info | sed -n 's/.*heap *total [0-9]*K, used \([0-9]*\)K.*/\1/p' | head -n 1)
    [[ -n $HEAP_BYTES && -n $used ]] || die "cannot read the service's heap (jcmd)"
    HEAP_USED=$((used * 1024))
    printf '  %-11s live objects %8.1f MB   heap used %8.1f MB\n' "$1" \
        "$(awk -v b="$HEAP_BYTES" 'BEGIN { print b / 1048576 }')" "$(awk -v b="$HEAP_USED" 'BEGIN { print b / 1048576 }')"
}

# per_session <after> <before>: (after - before) / HEAP_SESSIONS, in bytes
per_session() { awk -v a="$1" -v b="$2" -v n="$HEAP_SESSIONS" 'BEGIN { printf "%.0f", (a - b) / n }'; }

# growth <from> <to>: the classes whose live bytes grew most from heap-<from> to heap-<to>, per session
growth() {
    awk -v n="$HEAP_SESSIONS" '
        FNR == NR { if ($1 ~ /^[0-9]+:$/) before[$4] = $3; next }
        $1 ~ /^[0-9]+:$/ { d = $3 - before[$4]; if (d > 0) printf "%d %.1f %s\n", d, d / n, $4 }' \
        "$WORK/heap-$1.txt" "$WORK/heap-$2.txt" | sort -rn | head -n 8 | awk '{ printf "    %9.1f B  %s\n", $2, $3 }'
}

# ---- the runs -------------------------------------------------------------------------------

# run_wait_client <name> <mode> <condition> <sessions> <untimed>: a WaitBenchmark latency run;
# output in $WORK/<name>.txt
run_wait_client() {
    local name=$1 mode=$2 condition=$3 sessions=$4 untimed=$5
    log "Outboard $name: $mode -> command, $condition: $sessions session(s) (after $untimed untimed)"
    run_client "$name" $((BENCH_TIMEOUT_SECONDS * 3 + 120)) \
        java -cp "$CLIENT_JAR" "$WAIT_CLIENT" --base "$BASE" --key "$API_KEY" --metrics "$METRICS_URL" \
            --mode "$mode" --condition "$condition" --sessions "$sessions" \
            --warmup-sessions "$untimed" --batch "$WAIT_BATCH" --timeout-seconds "$BENCH_TIMEOUT_SECONDS"
}

# The four latency runs, after one untimed warm-up run of each kind first (WAIT_WARMUP_SESSIONS
# sessions each; without it the runs that come first pay for the node's JIT).
measure_latency() {
    local run
    if (( WAIT_WARMUP_SESSIONS > 0 )); then
        for run in approval-suspended approval-passivated event-suspended event-passivated; do
            run_wait_client "warmup-$run" "${run%-*}" "${run#*-}" "$WAIT_WARMUP_SESSIONS" 0
        done
    fi
    for run in approval-suspended approval-passivated event-suspended event-passivated; do
        run_wait_client "$run" "${run%-*}" "${run#*-}" "$WAIT_SESSIONS" "$WAIT_UNTIMED"
    done
}

# client_said <line>: whether the background park client has printed <line>; dies if it is gone.
client_said() {
    grep -qx "$1" "$WORK/park.txt" && return 0
    kill -0 "$CHILD_PID" 2>/dev/null || { cat "$WORK/park.txt"; die "the park client exited early"; }
    return 1
}

# HEAP_SESSIONS sessions waiting for an event: the node's live heap before them (after warm-up
# sessions passivated), while all of them are in memory, and once all passivated. The client pauses
# at each point until it reads a line from the control FIFO. Sets the HEAP_* results.
measure_heap() {
    local output=$WORK/park.txt control=$WORK/park.control rc=0 live
    log "Outboard heap: $HEAP_SESSIONS session(s) waiting for an event (after $HEAP_WARMUP_SESSIONS warm-up sessions)"
    mkfifo "$control"
    timeout $((BENCH_TIMEOUT_SECONDS * 4 + HEAP_SESSIONS / 10 + HEAP_PASSIVATE_SECONDS + 300)) \
        java -cp "$CLIENT_JAR" "$WAIT_CLIENT" --base "$BASE" --key "$API_KEY" --mode park --pause \
            --sessions "$HEAP_SESSIONS" --warmup-sessions "$HEAP_WARMUP_SESSIONS" \
            --timeout-seconds "$BENCH_TIMEOUT_SECONDS" <"$control" >"$output" 2>&1 &
    CHILD_PID=$!
    exec 3>"$control"

    wait_until "$BENCH_TIMEOUT_SECONDS" "the warm-up sessions" client_said "READY warmed-up"
    wait_until "$BENCH_TIMEOUT_SECONDS" "the warm-up sessions' passivation" node_idle
    heap_snapshot baseline
    HEAP_BASELINE=$HEAP_BYTES HEAP_BASELINE_USED=$HEAP_USED
    echo next >&3

    wait_until $((BENCH_TIMEOUT_SECONDS + HEAP_SESSIONS / 10)) "the waiting sessions" client_said "READY waiting"
    heap_snapshot in-memory
    HEAP_LIVE=$HEAP_BYTES HEAP_LIVE_USED=$HEAP_USED
    live=$(metrics_sum 'outboard_sessions{status="waiting"}')
    (( live == HEAP_SESSIONS )) || die "only $live of $HEAP_SESSIONS sessions were in memory when the heap was read \
(the others passivated already: raise HEAP_PASSIVATE_SECONDS above the time the creates take)"
    echo next >&3

    wait_until "$BENCH_TIMEOUT_SECONDS" "the park client" client_said "READY check"
    echo "  waiting for the $HEAP_SESSIONS sessions to passivate (${HEAP_PASSIVATE_SECONDS} s after each began to wait)"
    wait_until $((HEAP_PASSIVATE_SECONDS + BENCH_TIMEOUT_SECONDS)) "the waiting sessions' passivation" node_idle
    heap_snapshot passivated
    HEAP_PASSIVATED=$HEAP_BYTES HEAP_PASSIVATED_USED=$HEAP_USED
    echo next >&3
    exec 3>&-

    wait "$CHILD_PID" || rc=$?
    CHILD_PID=
    cat "$output"
    (( rc == 0 )) || die "the park run failed (exit $rc)"
    grep -q '^RESULT ' "$output" || die "no RESULT line from the park run"

    HEAP_PER_LIVE=$(per_session "$HEAP_LIVE" "$HEAP_BASELINE")
    HEAP_PER_PASSIVATED=$(per_session "$HEAP_PASSIVATED" "$HEAP_BASELINE")
    HEAP_PER_LIVE_USED=$(per_session "$HEAP_LIVE_USED" "$HEAP_BASELINE_USED")
    HEAP_PER_PASSIVATED_USED=$(per_session "$HEAP_PASSIVATED_USED" "$HEAP_BASELINE_USED")
    printf '  per waiting session: %s bytes in memory, %s bytes once passivated (live objects; heap used: %s / %s)\n' \
        "$HEAP_PER_LIVE" "$HEAP_PER_PASSIVATED" "$HEAP_PER_LIVE_USED" "$HEAP_PER_PASSIVATED_USED"
    echo "  the classes that grew most, per session, in memory:"
    growth baseline in-memory
    echo "  ... and once passivated:"
    growth baseline passivated
    printf 'RESULT mode=heap sessions=%s baseline_bytes=%s in_memory_bytes=%s passivated_bytes=%s per_session_in_memory_bytes=%s per_session_passivated_bytes=%s per_session_in_memory_used_bytes=%s per_session_passivated_used_bytes=%s\n' \
        "$HEAP_SESSIONS" "$HEAP_BASELINE" "$HEAP_LIVE" "$HEAP_PASSIVATED" "$HEAP_PER_LIVE" "$HEAP_PER_PASSIVATED" \
        "$HEAP_PER_LIVE_USED" "$HEAP_PER_PASSIVATED_USED" | tee "$WORK/heap.txt"
}

# ---- summary --------------------------------------------------------------------------------

print_summary() {
    local line=$SUMMARY_LINE name label
    print_summary_head
    [[ $PGBENCH_ONLY == 1 ]] && { printf '%s\n' "$line"; return; }

    for name in approval-suspended approval-passivated event-suspended event-passivated; do
        case $name in
            approval-suspended) label="Approval -> command, sandbox suspended" ;;
            approval-passivated) label="Approval -> command, session passivated" ;;
            event-suspended) label="Event -> command, sandbox suspended" ;;
            event-passivated) label="Event -> command, session passivated" ;;
        esac
        printf '%-46s p50 %8.3f ms   p99 %8.3f ms   (n=%s)\n' "$label" \
            "$(result "$name" p50_ms)" "$(result "$name" p99_ms)" "$(result "$name" sessions)"
        printf '  %-44s %s ms, sandbox active %s ms (p50)\n' \
            "the decision/event recorded" "$(result "$name" accepted_p50_ms)" "$(result "$name" active_p50_ms)"
    done
    printf '  (t0: the client'"'"'s clock right before the POST; the end: the time `date +%%s%%N` printed in the\n'
    printf '   sandbox; one release at a time; suspend-after %s, hibernate-after %s, passivate-after %s;\n' \
        "$SUSPEND_AFTER" "$HIBERNATE_AFTER" "$PASSIVATE_AFTER"
    printf '   the event runs include the wait'"'"'s result and one scripted model call)\n'
    printf '%s\n' "$line"
    printf '%-46s %8s bytes   (heap used: %s)\n' "Heap per waiting session, in memory" "$HEAP_PER_LIVE" "$HEAP_PER_LIVE_USED"
    printf '%-46s %8s bytes   (heap used: %s)\n' "Heap per waiting session, passivated" "$HEAP_PER_PASSIVATED" \
        "$HEAP_PER_PASSIVATED_USED"
    printf '  (%s sessions waiting for an event, no sandbox; live objects after a full GC (jcmd\n' "$HEAP_SESSIONS"
    printf '   GC.class_histogram) minus those before them, %.1f MB; created in %s s, %s/s)\n' \
        "$(awk -v b="$HEAP_BASELINE" 'BEGIN { print b / 1048576 }')" "$(result park create_s)" "$(result park creates_per_s)"
    printf '%s\n' "$line"
    printf 'BENCH pg1_latency_ms=%s pg1_tps=%s pg16_tps=%s' "$PG1_LATENCY" "$PG1_TPS" "$PG16_TPS"
    for name in approval-suspended approval-passivated event-suspended event-passivated; do
        printf ' %s_p50_ms=%s %s_p99_ms=%s' "${name//-/_}" "$(result "$name" p50_ms)" "${name//-/_}" "$(result "$name" p99_ms)"
    done
    printf ' heap_sessions=%s heap_per_session_in_memory_bytes=%s heap_per_session_passivated_bytes=%s creates_per_s=%s\n' \
        "$HEAP_SESSIONS" "$HEAP_PER_LIVE" "$HEAP_PER_PASSIVATED" "$(result park creates_per_s)"
}

# ---- main -----------------------------------------------------------------------------------

main() {
    require_tools
    local tool
    for tool in bwrap jcmd mkfifo; do
        command -v "$tool" >/dev/null || die "'$tool' is required but not on PATH"
    done
    ensure_postgres
    build
    pgbench_baseline
    if [[ $PGBENCH_ONLY != 1 ]]; then
        start_sandbox_host
        OUTBOARD_JAVA_OPTS="$USER_JAVA_OPTS $QUICK_OPTS -Doutboard.session.passivate-after=$PASSIVATE_AFTER \
-Doutboard.sandbox.suspend-after=$SUSPEND_AFTER -Doutboard.sandbox.hibernate-after=$HIBERNATE_AFTER"
        start_service
        echo "  timers: suspend-after $SUSPEND_AFTER, hibernate-after $HIBERNATE_AFTER, passivate-after $PASSIVATE_AFTER"
        create_api_key
        measure_latency
        stop_service
        mv "$SERVICE_LOG" "$WORK/service-latency.log" # the next start writes a new one

        # The heap on a fresh node and database, with sessions that stay in memory long enough.
        recreate_database >/dev/null
        OUTBOARD_JAVA_OPTS="$USER_JAVA_OPTS $QUICK_OPTS -Doutboard.session.passivate-after=${HEAP_PASSIVATE_SECONDS}s"
        start_service
        echo "  timers: passivate-after ${HEAP_PASSIVATE_SECONDS} s"
        create_api_key
        measure_heap
        stop_service
    fi
    print_summary
}

main "$@"
