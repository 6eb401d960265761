#!/usr/bin/env bash
# Outboard org memory writes into one org (PUT /v1/files/memory/...) with 1, 16 and 64
# concurrent writers, next to pgbench's bare single-row INSERT commits on the same PostgreSQL.
#
#   cd loadtest && ./bench-memory.sh
#
# Knobs (environment; defaults in brackets) are listed in README.md. Only 127.0.0.1 is used.
# The shared parts (PostgreSQL, builds, pgbench, the service, the API key) are in lib.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

MEM_SECONDS=${MEM_SECONDS:-10}
MEM_WARMUP_WRITERS=${MEM_WARMUP_WRITERS:-16}
MEM_WARMUP_SECONDS=${MEM_WARMUP_SECONDS:-5}
MEM_CLIENT_WARMUP_SECONDS=${MEM_CLIENT_WARMUP_SECONDS:-2}

readonly DB=outboard_bench_memory
readonly MEMORY_CLIENT=dev.outboard.loadtest.MemoryBenchmark

# shellcheck source=lib.sh
source ./lib.sh

# ---- the client -----------------------------------------------------------------------------

# run_writers <name> <writers> <seconds> <untimed seconds>: runs the memory client; its output is
# kept in $WORK/<name>.txt. Any failed write makes the client exit 1 and this run fail.
run_writers() {
    local name=$1 writers=$2 seconds=$3 untimed=$4 output=$WORK/$1.txt rc=0
    log "Outboard memory writes, $name: $writers writer(s) x $seconds s (after $untimed s untimed)"
    run_logged "$output" timeout $((untimed + seconds + 120)) \
        java -cp "$CLIENT_JAR" "$MEMORY_CLIENT" --base "$BASE" --key "$API_KEY" \
            --writers "$writers" --seconds "$seconds" --warmup-seconds "$untimed" \
        || rc=$?
    cat "$output"
    (( rc == 0 )) || die "the $name run failed (exit $rc)"
    grep -q '^RESULT ' "$output" || die "no RESULT line from the $name run"
    [[ $(result "$name" errors) == 0 ]] || die "the $name run had failed writes"
}

# run_inprocess: the org writer without HTTP (inprocess/OrgWriterBenchmark.java, compiled against
# the service jar), on its own fresh database; its RESULT lines are kept in $WORK/inprocess.txt.
run_inprocess() {
    local classes=$WORK/inprocess-classes ports http_port management_port rc=0
    log "Outboard org writer in-process (no HTTP): 1, 16, 64 writers x $MEM_SECONDS s"
    mkdir -p "$classes"
    javac -nowarn -d "$classes" -cp "$OUTBOARD_JAR" inprocess/OrgWriterBenchmark.java
    "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS outboard_bench_inprocess WITH (FORCE)" \
        -c "CREATE DATABASE outboard_bench_inprocess" >/dev/null
    ports=$(free_ports)
    read -r http_port management_port _ <<<"$ports"
    run_logged "$WORK/inprocess.txt" timeout $((3 * MEM_SECONDS + 120)) \
        java -cp "$classes:$OUTBOARD_JAR" OrgWriterBenchmark \
            "jdbc:postgresql://127.0.0.1:5432/outboard_bench_inprocess" "$http_port" "$management_port" \
            "$MEM_SECONDS" 1 16 64 || rc=$?
    grep '^RESULT' "$WORK/inprocess.txt" || true
    (( rc == 0 )) || die "the in-process run failed (exit $rc)"
}

inprocess() {
    awk -v w="writers=$1" -v k="$2=" '$1 == "RESULT" && $2 == "inprocess" && $3 == w {
        for (i = 4; i <= NF; i++) if (index($i, k) == 1) print substr($i, length(k) + 1) }' "$WORK/inprocess.txt"
}

# ---- summary --------------------------------------------------------------------------------

print_summary() {
    local line=$SUMMARY_LINE
    print_summary_head
    [[ $PGBENCH_ONLY == 1 ]] && { printf '%s\n' "$line"; return; }

    local n label ratio16 ratio64 v16 bench="BENCH pg1_latency_ms=$PG1_LATENCY pg1_tps=$PG1_TPS pg16_tps=$PG16_TPS"
    for n in 1 16 64; do
        label="Outboard memory PUT, $n writer"; (( n == 1 )) || label+=s
        printf '%-34s writes/s %9.1f   p50 %8.3f ms   p99 %8.3f ms\n' \
            "$label" "$(result "w$n" writes_per_s)" "$(result "w$n" p50_ms)" "$(result "w$n" p99_ms)"
        bench+=" w${n}_writes_per_s=$(result "w$n" writes_per_s) w${n}_p50_ms=$(result "w$n" p50_ms)"
        bench+=" w${n}_p99_ms=$(result "w$n" p99_ms)"
    done
    for n in 1 16 64; do
        label="Org writer in-process, $n writer"; (( n == 1 )) || label+=s
        printf '%-34s writes/s %9.1f   p50 %8.3f ms   p99 %8.3f ms\n' \
            "$label" "$(inprocess "$n" writes_per_s)" "$(inprocess "$n" p50_ms)" "$(inprocess "$n" p99_ms)"
        bench+=" inproc${n}_writes_per_s=$(inprocess "$n" writes_per_s)"
    done
    printf '%s\n' "$line"

    ratio16=$(ratio "$(result w16 writes_per_s)" "$PG16_TPS")
    ratio64=$(ratio "$(result w64 writes_per_s)" "$PG16_TPS")
    v16=$(verdict "$ratio16" ge 0.5)
    [[ $v16 == PASS ]] || BARS_MISSED=$((BARS_MISSED + 1))
    printf '%-52s %6s  (bar: >= 0.5)  %s\n' \
        "16-writer writes/s / pgbench 16-client tps" "$ratio16" "$v16"
    printf '%-52s %6s  (no bar)\n' \
        "64-writer writes/s / pgbench 16-client tps" "$ratio64"
    printf '%-52s %6s  (the bar, without HTTP)\n' \
        "in-process 16-writer writes/s / pgbench 16 tps" "$(ratio "$(inprocess 16 writes_per_s)" "$PG16_TPS")"
    printf '%s\n' "$line"
    printf '%s ratio16=%s ratio64=%s\n' "$bench" "$ratio16" "$ratio64"
}

# ---- main -----------------------------------------------------------------------------------

main() {
    require_tools
    ensure_postgres
    build
    pgbench_baseline
    if [[ $PGBENCH_ONLY != 1 ]]; then
        start_service
        create_api_key
        if (( MEM_WARMUP_SECONDS > 0 )); then
            run_writers warmup "$MEM_WARMUP_WRITERS" "$MEM_WARMUP_SECONDS" 0
        fi
        run_writers w1 1 "$MEM_SECONDS" "$MEM_CLIENT_WARMUP_SECONDS"
        run_writers w16 16 "$MEM_SECONDS" "$MEM_CLIENT_WARMUP_SECONDS"
        run_writers w64 64 "$MEM_SECONDS" "$MEM_CLIENT_WARMUP_SECONDS"
        stop_service
        run_inprocess
    fi
    print_summary
    exit_if_bars_missed
}

main "$@"
