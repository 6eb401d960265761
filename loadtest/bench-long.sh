#!/usr/bin/env bash
# Outboard's long sessions on PostgreSQL: one 2,000-turn scripted session (a small write, edit or
# read of a /session file per turn), its per-turn latency early and late, the time it takes to
# recover (wake up from snapshot and journal after passivating) at turn 20 and at turn 2,000, with
# snapshots as configured and with them effectively off, and the journal's bytes per turn; next to
# pgbench's bare single-row INSERT commits in the same run.
#
#   cd loadtest && ./bench-long.sh
#
# Knobs (environment; defaults in brackets) are listed in README.md. Only 127.0.0.1 is used.
# The shared parts (PostgreSQL, builds, pgbench, the service, the API key) are in lib.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

TURNS=${TURNS:-2000}
CHECKPOINTS=${CHECKPOINTS:-20,1000,$((TURNS - 1)),$TURNS}
REPEATS=${REPEATS:-10}
WARMUP_RUNS=${WARMUP_RUNS:-3}
SNAPSHOT_EVERY=${SNAPSHOT_EVERY:-500}
NOSNAP_EVERY=${NOSNAP_EVERY:-100000}
NOSNAP_CHECKPOINTS=${NOSNAP_CHECKPOINTS:-20,$TURNS}
PASSIVATE_AFTER=${PASSIVATE_AFTER:-1s}
CONTENT_BYTES=${CONTENT_BYTES:-300}
SHORT_TURNS=${SHORT_TURNS:-${CHECKPOINTS%%,*}}

readonly DB=outboard_bench_long
readonly LONG_CLIENT=dev.outboard.loadtest.LongSessionBenchmark
readonly FLAT_GOAL=2.0

# shellcheck source=lib.sh
source ./lib.sh

readonly BASE_JAVA_OPTS=$OUTBOARD_JAVA_OPTS
readonly FIRST=${CHECKPOINTS%%,*}
[[ ,$CHECKPOINTS, == *,$TURNS, && ,$NOSNAP_CHECKPOINTS, == *,$TURNS, ]] \
    || die "CHECKPOINTS and NOSNAP_CHECKPOINTS must end at TURNS ($TURNS)"
[[ $SHORT_TURNS == 0 || ,$CHECKPOINTS, == *,$SHORT_TURNS,* ]] || die "SHORT_TURNS must be 0 or one of CHECKPOINTS"

# ---- one long session -----------------------------------------------------------------------

# run_long <name> <snapshot-every> <checkpoints> [<short-session turns>]: the service on a fresh
# database with that snapshot interval and a short passivation, the client, then the journal's
# figures (journal_stats).
run_long() {
    local name=$1 every=$2 checkpoints=$3 short=${4:-0}
    log "Outboard $name: one session of $TURNS turns, snapshot-every $every, wake-ups at turns $checkpoints"
    recreate_database >/dev/null
    OUTBOARD_JAVA_OPTS="$BASE_JAVA_OPTS -Doutboard.session.snapshot-every=$every"
    OUTBOARD_JAVA_OPTS+=" -Doutboard.session.passivate-after=$PASSIVATE_AFTER"
    OUTBOARD_JAVA_OPTS+=" -Doutboard.session.passivate-finished-after=$PASSIVATE_AFTER"
    start_service
    create_api_key
    run_client "$name" $((BENCH_TIMEOUT_SECONDS * 3 + 120)) \
        java -cp "$CLIENT_JAR" "$LONG_CLIENT" --base "$BASE" --key "$API_KEY" \
            --management "$MANAGEMENT_BASE" --service-log "$SERVICE_LOG" --label "$name" \
            --turns "$TURNS" --checkpoints "$checkpoints" --repeats "$REPEATS" \
            --warmup-runs "$WARMUP_RUNS" --content-bytes "$CONTENT_BYTES" --snapshot-every "$every" \
            --latency-file "$WORK/$name-turns.csv" --short-session "$short" \
            --timeout-seconds "$BENCH_TIMEOUT_SECONDS"
    journal_stats "$name" "$every" "$checkpoints"
    stop_service
    cp "$SERVICE_LOG" "$WORK/service-$name.log"
}

# journal_stats <name> <snapshot-every> <checkpoints>: the measured session's rows in event_journal
# (up to its last session.waiting) and snapshot, and per wake-up turn the events replayed after
# the newest snapshot; appended to $WORK/<name>.txt as a JOURNAL line (see journal()).
journal_stats() {
    local name=$1 every=$2 checkpoints=$3 session last pid row turn event snap replayed
    session=$(result "$name" session)
    last=$(result "$name" last_seq)
    [[ $session =~ ^[A-Za-z0-9_-]+$ && $last =~ ^[0-9]+$ ]] || die "no session id or last_seq in the $name run"
    pid="Session|$session"
    row=$("${PSQL[@]}" -d "$DB" -AtF ' ' -c "
        SELECT count(*), coalesce(sum(octet_length(event_payload)), 0),
               coalesce(sum(octet_length(event_payload)) FILTER (WHERE sequence_number = 1), 0),
               count(*) FILTER (WHERE event_ser_manifest LIKE '%TranscriptCompacted'),
               coalesce(sum(octet_length(event_payload)) FILTER (WHERE event_ser_manifest LIKE '%TranscriptCompacted'), 0),
               coalesce(max(octet_length(event_payload)) FILTER (WHERE sequence_number > 1), 0)
          FROM event_journal WHERE persistence_id = '$pid' AND sequence_number <= $last")
    read -r j_events j_bytes j_started j_compactions j_compacted_bytes j_max <<<"$row"
    row=$("${PSQL[@]}" -d "$DB" -AtF ' ' -c "
        SELECT count(*), coalesce(sum(octet_length(snapshot_payload)), 0), coalesce(max(sequence_number), 0),
               coalesce((SELECT octet_length(snapshot_payload) FROM snapshot
                          WHERE persistence_id = '$pid' AND sequence_number <= $last
                          ORDER BY sequence_number DESC LIMIT 1), 0)
          FROM snapshot WHERE persistence_id = '$pid' AND sequence_number <= $last")
    read -r s_rows s_bytes s_seq s_latest <<<"$row"
    [[ $j_events == "$last" ]] || die "event_journal has $j_events rows up to event $last of $pid (expected $last)"
    local per_turn per_turn_events
    per_turn=$(awk -v b="$j_bytes" -v s="$j_started" -v t="$TURNS" 'BEGIN { printf "%.0f", (b - s) / t }')
    per_turn_events=$(awk -v e="$j_events" -v t="$TURNS" 'BEGIN { printf "%.2f", (e - 1) / t }')
    printf 'JOURNAL events=%s bytes=%s started_bytes=%s max_event_bytes=%s compactions=%s compacted_bytes=%s' \
        "$j_events" "$j_bytes" "$j_started" "$j_max" "$j_compactions" "$j_compacted_bytes" >>"$WORK/$name.txt"
    printf ' bytes_per_turn=%s events_per_turn=%s snapshots=%s snapshot_bytes=%s snapshot_seq=%s snapshot_latest_bytes=%s replayed=%s' \
        "$per_turn" "$per_turn_events" "$s_rows" "$s_bytes" "$s_seq" "$s_latest" "$((last - s_seq))" >>"$WORK/$name.txt"
    # Only the newest two snapshots are kept (retention): an older wake-up's replay is estimated ("~").
    for turn in ${checkpoints//,/ }; do
        event=$(result "$name" "rec${turn}_event")
        snap=$("${PSQL[@]}" -d "$DB" -Atc "SELECT coalesce(max(sequence_number), 0) FROM snapshot
                                             WHERE persistence_id = '$pid' AND sequence_number <= $event")
        if (( event < every )); then
            replayed=$event
        elif (( snap > 0 && event - snap < every )); then
            replayed=$((event - snap))
        else
            replayed="~$((event % every))"
        fi
        printf ' replayed%s=%s' "$turn" "$replayed" >>"$WORK/$name.txt"
    done
    printf '\n' >>"$WORK/$name.txt"
    tail -n 1 "$WORK/$name.txt"
}

# journal <name> <key>: a value from the JOURNAL line of a run
journal() {
    sed -n "s/^JOURNAL.* $2=\([^ ]*\).*/\1/p" "$WORK/$1.txt"
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
    printf '%-56s %8s  (goal: %s)  %s\n' "$1" "$2" "$5" "$verdict"
}

# recovery_lines <name> <checkpoints>: one line per wake-up turn of a run
recovery_lines() {
    local name=$1 turn
    for turn in ${2//,/ }; do
        printf '%-52s node p50 %8.3f ms  max %8.3f ms   GET p50 %8.3f ms  max %8.3f ms\n' \
            "  recovery at turn $turn (event $(result "$name" "rec${turn}_event"), $(journal "$name" "replayed$turn") replayed)" \
            "$(result "$name" "rec${turn}_node_ms")" "$(result "$name" "rec${turn}_node_max_ms")" \
            "$(result "$name" "rec${turn}_get_ms")" "$(result "$name" "rec${turn}_get_max_ms")"
    done
}

# late_recovery <name> <checkpoints>: "<turn> <p50 ms>" of the slowest (by p50) wake-up at turn
# TURNS-1 or TURNS: right after a snapshot and just before the next one, recovery's two extremes.
late_recovery() {
    local name=$1 turn best="" best_ms=-1 ms
    for turn in ${2//,/ }; do
        (( turn >= TURNS - 1 )) || continue
        ms=$(result "$name" "rec${turn}_node_ms")
        if awk -v a="$ms" -v b="$best_ms" 'BEGIN { exit !(a > b) }'; then
            best=$turn best_ms=$ms
        fi
    done
    echo "$best $best_ms"
}

# turn_lines <name>: per-turn latency, first and last 20 turns and all turns
turn_lines() {
    local name=$1
    printf '%-52s p50 %8.3f ms   p99 %8.3f ms\n' "  per-turn latency, turns 1-20" \
        "$(result "$name" first_p50_ms)" "$(result "$name" first_p99_ms)"
    printf '%-52s p50 %8.3f ms   p99 %8.3f ms\n' "  per-turn latency, turns $((TURNS - 19))-$TURNS" \
        "$(result "$name" last_p50_ms)" "$(result "$name" last_p99_ms)"
    printf '%-52s p50 %8.3f ms   p99 %8.3f ms   (%s compaction(s))\n' "  per-turn latency, all turns" \
        "$(result "$name" all_p50_ms)" "$(result "$name" all_p99_ms)" "$(result "$name" compactions)"
}

print_summary() {
    local line=$SUMMARY_LINE
    print_summary_head
    [[ $PGBENCH_ONLY == 1 ]] && { printf '%s\n' "$line"; return; }

    printf '%s\n' "$line"
    printf 'One session of %s turns, a tool call each (write, edit or read of a ~%s-byte /session file);\n' \
        "$TURNS" "$CONTENT_BYTES"
    printf 'snapshot-every %s events; woken %s times at each of turns %s (passivate-after %s)\n' \
        "$SNAPSHOT_EVERY" "$REPEATS" "$CHECKPOINTS" "$PASSIVATE_AFTER"
    turn_lines snap
    printf '%-52s p50 %8.3f ms   others p50 %8.3f ms\n' "  turns in which a snapshot was taken" \
        "$(result snap snapshot_turn_p50_ms)" "$(result snap other_turn_p50_ms)"
    recovery_lines snap "$CHECKPOINTS"
    if [[ $SHORT_TURNS != 0 ]]; then
        printf '%-52s node p50 %8.3f ms  max %8.3f ms   GET p50 %8.3f ms  max %8.3f ms\n' \
            "  the same, a session with a $SHORT_TURNS-turn script" \
            "$(result snap small_node_ms)" "$(result snap small_node_max_ms)" \
            "$(result snap small_get_ms)" "$(result snap small_get_max_ms)"
    fi
    printf '  (node: the session actor'"'"'s start to the end of its recovery, outboard_session_recovery_seconds;\n'
    printf '   GET: the client'"'"'s GET /v1/sessions/{id} that woke it; p50 and max of %s each)\n' "$REPEATS"
    printf '%-52s %s events (%s per turn), %s bytes\n' "  journal of the session at turn $TURNS" \
        "$(journal snap events)" "$(journal snap events_per_turn)" "$(journal snap bytes)"
    printf '%-52s %s bytes (session.started, %s bytes with the script, left out)\n' "  journal bytes per turn" \
        "$(journal snap bytes_per_turn)" "$(journal snap started_bytes)"
    printf '   (%s TranscriptCompacted event(s): %s bytes; the largest event after the first: %s bytes)\n' \
        "$(journal snap compactions)" "$(journal snap compacted_bytes)" "$(journal snap max_event_bytes)"
    printf '%-52s %s kept, %s bytes; the newest at event %s: %s bytes\n' "  snapshots at turn $TURNS" \
        "$(journal snap snapshots)" "$(journal snap snapshot_bytes)" "$(journal snap snapshot_seq)" \
        "$(journal snap snapshot_latest_bytes)"
    if [[ $NOSNAP_EVERY != 0 ]]; then
        printf '%s\n' "$line"
        printf 'The same with snapshot-every %s: no snapshot, recovery replays the whole journal\n' "$NOSNAP_EVERY"
        turn_lines nosnap
        recovery_lines nosnap "$NOSNAP_CHECKPOINTS"
        printf '%-52s %s kept; %s events, %s bytes per turn\n' "  snapshots; journal" \
            "$(journal nosnap snapshots)" "$(journal nosnap events)" "$(journal nosnap bytes_per_turn)"
    fi
    printf '%s\n' "$line"

    local late late_turn late_ms flat flat_off="" nosnap_first=${NOSNAP_CHECKPOINTS%%,*}
    late=$(late_recovery snap "$CHECKPOINTS")
    read -r late_turn late_ms <<<"$late"
    flat=$(ratio "$late_ms" "$(result snap "rec${FIRST}_node_ms")")
    goal "recovery p50 at turn $late_turn / at turn $FIRST (snapshots)" "$flat" le "$FLAT_GOAL" "<= $FLAT_GOAL"
    local script_ms short_ms flat_short="" flat_real=""
    if [[ $SHORT_TURNS != 0 ]]; then
        # What the long script adds to every recovery (its first event, and every snapshot), measured
        # at turn SHORT_TURNS; taken off the late recovery too, for an estimate without the script.
        short_ms=$(result snap small_node_ms)
        script_ms=$(awk -v a="$(result snap "rec${SHORT_TURNS}_node_ms")" -v b="$short_ms" \
            'BEGIN { printf "%.3f", (a > b ? a - b : 0) }')
        flat_short=$(ratio "$late_ms" "$short_ms")
        flat_real=$(ratio "$(awk -v a="$late_ms" -v b="$script_ms" 'BEGIN { printf "%.3f", a - b }')" "$short_ms")
        printf '%-56s %8s  (for comparison)\n' "the same / a session with a $SHORT_TURNS-turn script" "$flat_short"
        printf '%-56s %8s  (estimate; the script costs %s ms)\n' "the same, the long script's part left out" \
            "$flat_real" "$script_ms"
    fi
    if [[ $NOSNAP_EVERY != 0 ]]; then
        flat_off=$(ratio "$(result nosnap "rec${TURNS}_node_ms")" "$(result nosnap "rec${nosnap_first}_node_ms")")
        printf '%-56s %8s  (for comparison)\n' "the same at turn $TURNS, snapshot-every $NOSNAP_EVERY" "$flat_off"
    fi
    printf '%s\n' "$line"
    printf 'BENCH pg1_latency_ms=%s pg1_tps=%s pg16_tps=%s turns=%s snapshot_every=%s' \
        "$PG1_LATENCY" "$PG1_TPS" "$PG16_TPS" "$TURNS" "$SNAPSHOT_EVERY"
    printf ' first_p50_ms=%s first_p99_ms=%s last_p50_ms=%s last_p99_ms=%s all_p50_ms=%s all_p99_ms=%s' \
        "$(result snap first_p50_ms)" "$(result snap first_p99_ms)" "$(result snap last_p50_ms)" \
        "$(result snap last_p99_ms)" "$(result snap all_p50_ms)" "$(result snap all_p99_ms)"
    local turn
    for turn in ${CHECKPOINTS//,/ }; do
        printf ' rec%s_node_ms=%s rec%s_get_ms=%s rec%s_replayed=%s' "$turn" "$(result snap "rec${turn}_node_ms")" \
            "$turn" "$(result snap "rec${turn}_get_ms")" "$turn" "$(journal snap "replayed$turn")"
    done
    printf ' journal_bytes_per_turn=%s journal_events_per_turn=%s snapshot_bytes=%s recovery_ratio=%s' \
        "$(journal snap bytes_per_turn)" "$(journal snap events_per_turn)" "$(journal snap snapshot_latest_bytes)" "$flat"
    if [[ $SHORT_TURNS != 0 ]]; then
        printf ' short_node_ms=%s short_get_ms=%s short_ratio=%s script_ms=%s real_ratio_estimate=%s' \
            "$short_ms" "$(result snap small_get_ms)" "$flat_short" "$script_ms" "$flat_real"
    fi
    if [[ $NOSNAP_EVERY != 0 ]]; then
        for turn in ${NOSNAP_CHECKPOINTS//,/ }; do
            printf ' nosnap_rec%s_node_ms=%s nosnap_rec%s_get_ms=%s' "$turn" "$(result nosnap "rec${turn}_node_ms")" \
                "$turn" "$(result nosnap "rec${turn}_get_ms")"
        done
        printf ' nosnap_last_p50_ms=%s nosnap_last_p99_ms=%s nosnap_recovery_ratio=%s' \
            "$(result nosnap last_p50_ms)" "$(result nosnap last_p99_ms)" "$flat_off"
    fi
    printf '\n'
}

# ---- main -----------------------------------------------------------------------------------

main() {
    require_tools
    ensure_postgres
    build
    pgbench_baseline
    if [[ $PGBENCH_ONLY != 1 ]]; then
        run_long snap "$SNAPSHOT_EVERY" "$CHECKPOINTS" "$SHORT_TURNS"
        [[ $NOSNAP_EVERY == 0 ]] || run_long nosnap "$NOSNAP_EVERY" "$NOSNAP_CHECKPOINTS"
    fi
    print_summary
    exit_if_bars_missed
}

main "$@"
