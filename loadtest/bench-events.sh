#!/usr/bin/env bash
# Outboard's event streams on PostgreSQL: event delivery latency with 1 and 1,000 open streams, the
# database queries that 1,000 idle streams cost, per-turn latency and turns/s at 1, 16 and 64
# sessions, and create -> result seen by a client for a 20-turn session; next to pgbench's bare
# single-row INSERT commits in the same run.
#
#   cd loadtest && ./bench-events.sh
#
# Knobs (environment; defaults in brackets) are listed in README.md. Only 127.0.0.1 is used.
# The shared parts (PostgreSQL, builds, pgbench, the service, the API key, the turn client) are in lib.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

WARMUP_SESSIONS=${WARMUP_SESSIONS:-64}
WARMUP_TURNS=${WARMUP_TURNS:-100}
TURNS=${TURNS:-200}
CREATE_RUNS=${CREATE_RUNS:-50}
CREATE_TURNS=${CREATE_TURNS:-20}
STREAMS=${STREAMS:-1000}
STREAM_SESSIONS=${STREAM_SESSIONS:-$STREAMS}
DELIVERY_RATE=${DELIVERY_RATE:-50}
DELIVERY_SECONDS=${DELIVERY_SECONDS:-20}
IDLE_SETTLE_SECONDS=${IDLE_SETTLE_SECONDS:-30}
IDLE_SECONDS=${IDLE_SECONDS:-20}

readonly DB=outboard_bench_events
readonly EVENT_CLIENT=dev.outboard.loadtest.EventBenchmark
readonly DELIVERY_GOAL_MS=5

# shellcheck source=lib.sh
source ./lib.sh

# ---- the event client -----------------------------------------------------------------------

# run_event_client <name> <args...>: runs EventBenchmark; its output is kept in $WORK/<name>.txt
run_event_client() {
    local name=$1
    shift
    run_client "$name" $((BENCH_TIMEOUT_SECONDS * 3 + 120)) \
        java -cp "$CLIENT_JAR" "$EVENT_CLIENT" --base "$BASE" --key "$API_KEY" \
            --timeout-seconds "$BENCH_TIMEOUT_SECONDS" "$@"
}

# ---- database queries -----------------------------------------------------------------------

# Chooses what counts as a query of $DB: pg_stat_statements' calls when the server has it loaded
# and installed in the database postgres, else pg_stat_database's transactions (each autocommit
# statement is one). Both are read from the database postgres, so reading them adds nothing to $DB.
choose_query_counter() {
    if "${PSQL[@]}" -d postgres -Atc 'SHOW shared_preload_libraries' | grep -q pg_stat_statements \
        && [[ $("${PSQL[@]}" -d postgres -Atc \
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'") == 1 ]]; then
        QUERY_COUNTER="statements (pg_stat_statements calls)"
        QUERY_SQL="SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s
                   JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '$DB'"
    else
        QUERY_COUNTER="transactions (pg_stat_database xact_commit + xact_rollback)"
        QUERY_SQL="SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$DB'"
    fi
    echo "  counting queries of $DB as $QUERY_COUNTER"
}

# sample_queries <what>: waits IDLE_SETTLE_SECONDS (PostgreSQL's counters lag up to ~10 s behind
# idle backends; finished sessions passivate after 15 s), then counts for IDLE_SECONDS; sets QPS.
sample_queries() {
    local what=$1 before after
    echo "  $what: settling ${IDLE_SETTLE_SECONDS} s, then counting for ${IDLE_SECONDS} s"
    sleep "$IDLE_SETTLE_SECONDS"
    before=$("${PSQL[@]}" -d postgres -Atc "$QUERY_SQL")
    sleep "$IDLE_SECONDS"
    after=$("${PSQL[@]}" -d postgres -Atc "$QUERY_SQL")
    QPS=$(awk -v a="$before" -v b="$after" -v s="$IDLE_SECONDS" 'BEGIN { printf "%.2f", (b - a) / s }')
    echo "  $what: $((after - before)) in ${IDLE_SECONDS} s = $QPS/s"
}

# client_said <line>: whether the background streams client has printed <line>; dies if it is gone.
client_said() {
    grep -qx "$1" "$WORK/streams.txt" && return 0
    kill -0 "$CHILD_PID" 2>/dev/null || { cat "$WORK/streams.txt"; die "the streams client exited early"; }
    return 1
}

# STREAM_SESSIONS idle sessions: queries/s with no stream open, then with STREAMS streams open
# (sets IDLE_NONE_QPS, IDLE_STREAMS_QPS); then the delivery measurement on those streams. The
# client pauses at each of the two points until it reads a line from the control FIFO.
measure_streams() {
    local output=$WORK/streams.txt control=$WORK/streams.control rc=0
    log "Outboard $STREAMS stream(s) on $STREAM_SESSIONS idle session(s); then $DELIVERY_RATE messages/s for $DELIVERY_SECONDS s"
    mkfifo "$control"
    timeout $((BENCH_TIMEOUT_SECONDS * 3 + 2 * (IDLE_SETTLE_SECONDS + IDLE_SECONDS) + 120)) \
        java -cp "$CLIENT_JAR" "$EVENT_CLIENT" --base "$BASE" --key "$API_KEY" \
            --timeout-seconds "$BENCH_TIMEOUT_SECONDS" --mode streams --pause \
            --sessions "$STREAM_SESSIONS" --streams "$STREAMS" \
            --rate "$DELIVERY_RATE" --seconds "$DELIVERY_SECONDS" <"$control" >"$output" 2>&1 &
    CHILD_PID=$!
    exec 3>"$control"

    wait_until "$BENCH_TIMEOUT_SECONDS" "the idle sessions" client_said "READY sessions"
    sample_queries "no streams open"
    IDLE_NONE_QPS=$QPS
    echo next >&3
    wait_until "$BENCH_TIMEOUT_SECONDS" "the streams" client_said "READY streams"
    sample_queries "$STREAMS streams open"
    IDLE_STREAMS_QPS=$QPS
    echo next >&3
    exec 3>&-

    wait "$CHILD_PID" || rc=$?
    CHILD_PID=
    cat "$output"
    (( rc == 0 )) || die "the streams run failed (exit $rc)"
    grep -q '^RESULT ' "$output" || die "no RESULT line from the streams run"
}

# ---- summary --------------------------------------------------------------------------------

# goal <label> <value> <le|ge> <bar> <bar text>: prints the goal's line with PASS or MISS.
goal() {
    local verdict
    verdict=$(verdict "$2" "$3" "$4")
    if [[ $verdict != PASS ]]; then
        verdict=MISS
        BARS_MISSED=$((BARS_MISSED + 1))
    fi
    printf '%-52s %8s  (goal: %s)  %s\n' "$1" "$2" "$5" "$verdict"
}

print_summary() {
    local line=$SUMMARY_LINE name sessions
    print_summary_head
    [[ $PGBENCH_ONLY == 1 ]] && { printf '%s\n' "$line"; return; }

    for sessions in 1 16 64; do
        name=turns$sessions
        printf '%-34s turns/s %10.1f   p50 %8.3f ms   p99 %8.3f ms\n' \
            "Outboard, $sessions session(s) x $TURNS turns" "$(result "$name" turns_per_s)" \
            "$(result "$name" p50_ms)" "$(result "$name" p99_ms)"
    done
    printf '%s\n' "$line"
    printf '%-46s p50 %8.3f ms   p99 %8.3f ms   (n=%s)\n' \
        "Event delivery, 1 stream" "$(result delivery1 p50_ms)" "$(result delivery1 p99_ms)" \
        "$(result delivery1 events)"
    printf '%-46s p50 %8.3f ms   p99 %8.3f ms   (n=%s)\n' \
        "Event delivery, $STREAMS streams on $STREAM_SESSIONS sessions" "$(result streams p50_ms)" \
        "$(result streams p99_ms)" "$(result streams events)"
    printf '  (%s messages/s; `at` -> the client has read the whole event; `at` is taken\n' "$DELIVERY_RATE"
    printf '   before the journal write, so the delivery time includes the write; the bare commit\n'
    printf '   at that pace, %s/s, takes %.3f ms on average here)\n' "$PG_PACED_RATE" "$PG_PACED_LATENCY"
    printf '%-46s %8.2f/s\n' "DB queries, $STREAM_SESSIONS idle sessions, no streams" "$IDLE_NONE_QPS"
    printf '%-46s %8.2f/s\n' "DB queries, $STREAM_SESSIONS idle sessions, $STREAMS streams" "$IDLE_STREAMS_QPS"
    printf '  (queries = %s of %s, %s s)\n' "$QUERY_COUNTER" "$DB" "$IDLE_SECONDS"
    printf '%-46s p50 %8.3f ms   p99 %8.3f ms\n' \
        "Create -> completed on a stream, $CREATE_TURNS turns" "$(result create stream_p50_ms)" \
        "$(result create stream_p99_ms)"
    printf '%-46s p50 %8.3f ms   p99 %8.3f ms\n' \
        "Create -> completed via ?wait=30s, $CREATE_TURNS turns" "$(result create wait_p50_ms)" \
        "$(result create wait_p99_ms)"
    printf '  (%s runs each, one after the other; the session'"'"'s own run, session.started -> session.completed\n' "$CREATE_RUNS"
    printf '   `at`: p50 %s ms with a stream open, %s ms without; session.completed delivered p50 %s ms)\n' \
        "$(result create stream_run_p50_ms)" "$(result create wait_run_p50_ms)" "$(result create completed_delivery_p50_ms)"
    printf '%s\n' "$line"

    local turn_ratio added
    turn_ratio=$(ratio "$(result turns1 p50_ms)" "$PG1_LATENCY")
    added=$(awk -v a="$IDLE_STREAMS_QPS" -v b="$IDLE_NONE_QPS" 'BEGIN { printf "%.2f", a - b }')
    goal "event delivery p99, 1 stream (ms)" "$(result delivery1 p99_ms)" le "$DELIVERY_GOAL_MS" "<= $DELIVERY_GOAL_MS"
    goal "event delivery p99, $STREAMS streams (ms)" "$(result streams p99_ms)" le "$DELIVERY_GOAL_MS" "<= $DELIVERY_GOAL_MS"
    goal "1-session p50 per-turn / bare commit latency" "$turn_ratio" le 2.0 "<= 2.0"
    goal "queries/s added by $STREAMS idle streams" "$added" le 0 "0"
    printf '%s\n' "$line"
    printf 'BENCH pg1_latency_ms=%s pg1_tps=%s pg16_tps=%s pg_paced_latency_ms=%s' "$PG1_LATENCY" "$PG1_TPS" "$PG16_TPS" \
        "$PG_PACED_LATENCY"
    for sessions in 1 16 64; do
        printf ' t%s_turns_per_s=%s t%s_p50_ms=%s t%s_p99_ms=%s' \
            "$sessions" "$(result "turns$sessions" turns_per_s)" "$sessions" "$(result "turns$sessions" p50_ms)" \
            "$sessions" "$(result "turns$sessions" p99_ms)"
    done
    printf ' d1_p50_ms=%s d1_p99_ms=%s d%s_p50_ms=%s d%s_p99_ms=%s' \
        "$(result delivery1 p50_ms)" "$(result delivery1 p99_ms)" \
        "$STREAMS" "$(result streams p50_ms)" "$STREAMS" "$(result streams p99_ms)"
    printf ' idle_qps_none=%s idle_qps_streams=%s idle_qps_added=%s' "$IDLE_NONE_QPS" "$IDLE_STREAMS_QPS" "$added"
    printf ' create_stream_p50_ms=%s create_stream_p99_ms=%s create_wait_p50_ms=%s create_wait_p99_ms=%s' \
        "$(result create stream_p50_ms)" "$(result create stream_p99_ms)" \
        "$(result create wait_p50_ms)" "$(result create wait_p99_ms)"
    printf ' turn_latency_ratio=%s\n' "$turn_ratio"
}

# The same bare commit, paced like the delivery runs' writes (two per message): what one write
# costs on this machine when it is not kept busy (an idle CPU and database backend wake up
# first). Sets PG_PACED_RATE and PG_PACED_LATENCY; leaves $DB empty.
pgbench_paced() {
    local output=$WORK/pgbench-paced.txt
    PG_PACED_RATE=$((DELIVERY_RATE * 2))
    log "pgbench paced: the same INSERT at $PG_PACED_RATE commits/s, ${PGBENCH_SECONDS} s"
    recreate_database >/dev/null
    "${PSQL[@]}" -d "$DB" \
        -c 'CREATE TABLE bench_insert(id bigserial PRIMARY KEY, payload text, at timestamptz DEFAULT now())' >/dev/null
    run_logged "$output" timeout $((PGBENCH_SECONDS + 60)) \
        pgbench -h 127.0.0.1 -U postgres -n -f "$WORK/insert.sql" -c 1 -j 1 -R "$PG_PACED_RATE" \
            -T "$PGBENCH_SECONDS" "$DB" \
        || { cat "$output" >&2; die "the paced pgbench run failed"; }
    PG_PACED_LATENCY=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$output" | head -n 1)
    [[ -n $PG_PACED_LATENCY ]] || { cat "$output" >&2; die "cannot parse the output of the paced pgbench run"; }
    printf '  pgbench  1 client at %s/s: latency average %.3f ms\n' "$PG_PACED_RATE" "$PG_PACED_LATENCY"
    recreate_database >/dev/null
}

# ---- main -----------------------------------------------------------------------------------

main() {
    require_tools
    ensure_postgres
    build
    pgbench_baseline
    pgbench_paced
    if [[ $PGBENCH_ONLY != 1 ]]; then
        start_service
        create_api_key
        choose_query_counter
        run_turn_client warmup "$WARMUP_SESSIONS" "$WARMUP_TURNS"
        run_turn_client turns1 1 "$TURNS"
        run_turn_client turns16 16 "$TURNS"
        run_turn_client turns64 64 "$TURNS"
        log "Outboard create -> result: $CREATE_RUNS run(s) of a $CREATE_TURNS-turn session, via a stream and via ?wait"
        run_event_client create --mode create --runs "$CREATE_RUNS" --turns "$CREATE_TURNS"
        log "Outboard event delivery, 1 stream: $DELIVERY_RATE messages/s for $DELIVERY_SECONDS s"
        run_event_client delivery1 --mode streams --sessions 1 --streams 1 \
            --rate "$DELIVERY_RATE" --seconds "$DELIVERY_SECONDS"
        measure_streams
        stop_service
    fi
    print_summary
    exit_if_bars_missed
}

main "$@"
