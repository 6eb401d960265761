#!/usr/bin/env bash
# Rolling deploy and crash of a three-node cluster under load: each session's resume gap at every
# hand-off, how long each node took to leave, and how long the sessions of a SIGKILLed node took
# to resume on the survivors.
#
#   cd loadtest && ./bench-rolling.sh
#
# It runs the suite's RollingDeployTest (three node JVMs on loopback, conf/cluster.conf, a fresh
# PostgreSQL database; SIGTERM-restart each node in turn as a new app version, then kill -9 one
# and restart it) with more load, and judges its measurements against the bars. Knobs
# (environment; defaults in brackets): ROLLING_CONCURRENCY [60] sessions kept running,
# ROLLING_TURNS [40] turns per session, ROLLING_LATENCY_MS [250] scripted model latency,
# BENCH_ENFORCE [0] (1: exit 3 when a bar is missed). Only 127.0.0.1 is used.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

ROLLING_CONCURRENCY=${ROLLING_CONCURRENCY:-60}
ROLLING_TURNS=${ROLLING_TURNS:-40}
ROLLING_LATENCY_MS=${ROLLING_LATENCY_MS:-250}
BENCH_ENFORCE=${BENCH_ENFORCE:-0}
readonly SIGTERM_P99_BAR_MS=1000
readonly KILL_RECOVERY_BAR_MS=15000

if ! pg_isready -h 127.0.0.1 -q; then
    echo "==> starting PostgreSQL"
    # shellcheck disable=SC2012 # version directories are plain numbers
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -q && break; sleep 1; done
fi

report=$(mktemp "${TMPDIR:-/tmp}/outboard-rolling.XXXXXX")
trap 'rm -f "$report"' EXIT

echo "==> RollingDeployTest: $ROLLING_CONCURRENCY sessions running at a time, $ROLLING_TURNS turns, ${ROLLING_LATENCY_MS} ms model latency"
(cd .. && mvn -B -q test -Dtest=RollingDeployTest -Dsurefire.failIfNoSpecifiedTests=false \
    -Doutboard.rolling.concurrency="$ROLLING_CONCURRENCY" -Doutboard.rolling.turns="$ROLLING_TURNS" \
    -Doutboard.rolling.latency-ms="$ROLLING_LATENCY_MS" -Doutboard.rolling.report="$report")

# field <line prefix> <key>: the value of key=value on the report line that starts with the prefix
field() { grep "^RESULT $1" "$report" | head -1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }

line=----------------------------------------------------------------------------------
printf '%s\n' "$line"
sed -n 's/^RESULT rolling_config //p' "$report"
grep '^RESULT rolling_leave ' "$report" | while read -r _ _ node ms; do
    printf '%-40s %s\n' "leave after SIGTERM, ${node/=/ }" "${ms#leave_ms=} ms"
done
printf '%-40s resumes %4s   p50 %6s ms   p99 %6s ms   max %6s ms\n' "resume gap, graceful (SIGTERM, rebalance)" \
    "$(field rolling_sigterm_gap resumes)" "$(field rolling_sigterm_gap p50_ms)" "$(field rolling_sigterm_gap p99_ms)" "$(field rolling_sigterm_gap max_ms)"
printf '%-40s resumes %4s   p50 %6s ms   p99 %6s ms   max %6s ms\n' "resume gap, kill -9" \
    "$(field rolling_kill_gap resumes)" "$(field rolling_kill_gap p50_ms)" "$(field rolling_kill_gap p99_ms)" "$(field rolling_kill_gap max_ms)"
kill_all=$(field rolling_kill all_resumed_after_ms)
printf '%-40s %s ms (%s sessions were running)\n' "kill -9 → every session resumed" "$kill_all" "$(field rolling_kill sessions_running)"
printf '%s\n' "$line"

missed=0
p99=$(field rolling_sigterm_gap p99_ms)
if (( p99 <= SIGTERM_P99_BAR_MS )); then v1=PASS; else v1=FAIL; missed=$((missed + 1)); fi
if (( kill_all <= KILL_RECOVERY_BAR_MS )); then v2=PASS; else v2=FAIL; missed=$((missed + 1)); fi
printf '%-40s %6s ms  (bar: <= %s ms)  %s\n' "SIGTERM resume gap p99" "$p99" "$SIGTERM_P99_BAR_MS" "$v1"
printf '%-40s %6s ms  (bar: <= %s ms)  %s\n' "kill -9 recovery of every session" "$kill_all" "$KILL_RECOVERY_BAR_MS" "$v2"
printf 'BENCH sigterm_gap_p99_ms=%s kill_recovery_ms=%s\n' "$p99" "$kill_all"
if (( missed > 0 && BENCH_ENFORCE == 1 )); then exit 3; fi
