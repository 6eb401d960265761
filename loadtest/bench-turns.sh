#!/usr/bin/env bash
# Outboard per-turn overhead on PostgreSQL, next to pgbench's bare single-row INSERT commits.
#
#   cd loadtest && ./bench-turns.sh
#
# Knobs (environment; defaults in brackets) are listed in README.md. Only 127.0.0.1 is used.
# The shared parts (PostgreSQL, builds, pgbench, the service, the API key) are in lib.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

WARMUP_SESSIONS=${WARMUP_SESSIONS:-64}
WARMUP_TURNS=${WARMUP_TURNS:-300}
TURNS1=${TURNS1:-300}
TURNS64=${TURNS64:-300}

readonly DB=outboard_bench

# shellcheck source=lib.sh
source ./lib.sh

# ---- summary --------------------------------------------------------------------------------

print_summary() {
    local line=$SUMMARY_LINE
    print_summary_head
    [[ $PGBENCH_ONLY == 1 ]] && { printf '%s\n' "$line"; return; }

    local one_tps one_p50 one_p99 many_tps many_p50 many_p99 latency_ratio throughput_ratio v1 v2
    one_tps=$(result one turns_per_s); one_p50=$(result one p50_ms); one_p99=$(result one p99_ms)
    many_tps=$(result many turns_per_s); many_p50=$(result many p50_ms); many_p99=$(result many p99_ms)
    printf '%-34s turns/s %10.1f   p50 %8.3f ms   p99 %8.3f ms\n' \
        "Outboard, 1 session x $TURNS1 turns" "$one_tps" "$one_p50" "$one_p99"
    printf '%-34s turns/s %10.1f   p50 %8.3f ms   p99 %8.3f ms\n' \
        "Outboard, 64 sessions x $TURNS64 turns" "$many_tps" "$many_p50" "$many_p99"
    printf '%s\n' "$line"

    latency_ratio=$(ratio "$one_p50" "$PG1_LATENCY")
    throughput_ratio=$(ratio "$many_tps" "$PG16_TPS")
    v1=$(verdict "$latency_ratio" le 2.0)
    v2=$(verdict "$throughput_ratio" ge 0.5)
    [[ $v1 == PASS ]] || BARS_MISSED=$((BARS_MISSED + 1))
    [[ $v2 == PASS ]] || BARS_MISSED=$((BARS_MISSED + 1))
    printf '%-52s %6s  (bar: <= 2.0)  %s\n' \
        "p50 per-turn overhead / bare commit latency" "$latency_ratio" "$v1"
    printf '%-52s %6s  (bar: >= 0.5)  %s\n' \
        "64-session turns/s / pgbench 16-client tps" "$throughput_ratio" "$v2"
    printf '%s\n' "$line"
    printf 'BENCH pg1_latency_ms=%s pg1_tps=%s pg16_tps=%s one_turns_per_s=%s one_p50_ms=%s one_p99_ms=%s many_turns_per_s=%s many_p50_ms=%s many_p99_ms=%s latency_ratio=%s throughput_ratio=%s\n' \
        "$PG1_LATENCY" "$PG1_TPS" "$PG16_TPS" "$one_tps" "$one_p50" "$one_p99" \
        "$many_tps" "$many_p50" "$many_p99" "$latency_ratio" "$throughput_ratio"
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
        run_turn_client warmup "$WARMUP_SESSIONS" "$WARMUP_TURNS"
        run_turn_client one 1 "$TURNS1"
        run_turn_client many 64 "$TURNS64"
        stop_service
    fi
    print_summary
    exit_if_bars_missed
}

main "$@"
