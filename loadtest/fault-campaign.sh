#!/usr/bin/env bash
# Issue 13's fault campaign, long version: sessions mixing /session, /memory edits and bash on one
# harness node and one sandbox host (two JVMs on loopback, a fresh PostgreSQL database), 100+
# random faults (kill -9 of the harness, of the sandbox host and of one sandbox; PostgreSQL
# restarted, PostgreSQL paused for 5 s), then the journal, the org-file history and the
# workspaces are checked. Prints the faults by kind, the counts and every violation (goal: 0).
#
#   cd loadtest && ./fault-campaign.sh
#
# It runs the suite's FaultCampaignTest with the long settings. Knobs (environment; defaults in
# brackets): CAMPAIGN_SESSIONS [32], CAMPAIGN_FAULTS [100], CAMPAIGN_TURNS [10] work turns per
# session, CAMPAIGN_SEED [random; printed, repeats the scripts and the fault schedule],
# CAMPAIGN_GAP_MS [2500] longest pause between two faults, CAMPAIGN_REPORT [a temp file; the
# whole report, with the journals of the sessions that have violations]. PostgreSQL faults need
# root and pg_ctlcluster: without them they are left out (with a notice). Only 127.0.0.1 is used.
# Exit status: 0 without violations, 1 with violations (or another failure of the test).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

CAMPAIGN_SESSIONS=${CAMPAIGN_SESSIONS:-32}
CAMPAIGN_FAULTS=${CAMPAIGN_FAULTS:-100}
CAMPAIGN_TURNS=${CAMPAIGN_TURNS:-10}
CAMPAIGN_SEED=${CAMPAIGN_SEED:-$(od -An -N7 -tu8 /dev/urandom | tr -d ' ')}
CAMPAIGN_GAP_MS=${CAMPAIGN_GAP_MS:-2500}
pg_version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)

# Whatever happens to the test JVM, PostgreSQL is left running and not stopped: SIGCONT to the
# postmaster of the cluster and the processes below it (the test pauses them with SIGSTOP).
resume_postgres() {
    local pidfile="/var/run/postgresql/${pg_version}-main.pid" pid
    [[ -n "$pg_version" && -r "$pidfile" ]] || return 0
    pid=$(head -n 1 "$pidfile")
    kill -CONT "$pid" $(pgrep -P "$pid" || true) 2>/dev/null || true
    if ! pg_isready -h 127.0.0.1 -q; then
        pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start || true
    fi
}

if ! pg_isready -h 127.0.0.1 -q; then
    echo "==> starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -q && break; sleep 1; done
fi

keep_report=1
if [[ -z "${CAMPAIGN_REPORT:-}" ]]; then
    CAMPAIGN_REPORT=$(mktemp "${TMPDIR:-/tmp}/outboard-campaign.XXXXXX")
    keep_report=0
fi
cleanup() {
    resume_postgres
    pg_isready -h 127.0.0.1 || echo "WARNING: PostgreSQL does not accept connections"
    if (( keep_report == 0 )) && [[ -s "$CAMPAIGN_REPORT" ]] && ! grep -q '^VIOLATION' "$CAMPAIGN_REPORT"; then
        rm -f "$CAMPAIGN_REPORT"
    fi
}
trap cleanup EXIT

echo "==> FaultCampaignTest: $CAMPAIGN_SESSIONS sessions of $CAMPAIGN_TURNS work turns, $CAMPAIGN_FAULTS faults, seed $CAMPAIGN_SEED"
status=0
(cd .. && mvn -B -q test -Dtest=FaultCampaignTest -Dsurefire.failIfNoSpecifiedTests=false \
    -Doutboard.campaign.sessions="$CAMPAIGN_SESSIONS" -Doutboard.campaign.faults="$CAMPAIGN_FAULTS" \
    -Doutboard.campaign.turns="$CAMPAIGN_TURNS" -Doutboard.campaign.seed="$CAMPAIGN_SEED" \
    -Doutboard.campaign.gap-ms="$CAMPAIGN_GAP_MS" -Doutboard.campaign.report="$CAMPAIGN_REPORT" \
    > "$CAMPAIGN_REPORT.mvn.log" 2>&1) || status=$?

if ! grep -q '^RESULT campaign ' "$CAMPAIGN_REPORT" 2>/dev/null; then
    echo "the campaign did not get to its checks (exit $status); the end of Maven's output:"
    tail -n 80 "$CAMPAIGN_REPORT.mvn.log"
    exit 1
fi
rm -f "$CAMPAIGN_REPORT.mvn.log"

# field <key>: the value of key=value on the RESULT campaign line
field() { grep '^RESULT campaign ' "$CAMPAIGN_REPORT" | head -1 | tr ' ' '\n' | sed -n "s/^$1=//p"; }

line=----------------------------------------------------------------------------------
printf '%s\n' "$line"
printf 'Faults injected (seed %s)\n' "$(field seed)"
for kind in harness host sandbox pg_restart pg_pause; do
    case $kind in
        harness) what="kill -9 of the harness JVM (restarted)" ;;
        host) what="kill -9 of the sandbox host JVM (restarted)" ;;
        sandbox) what="kill -9 of one sandbox's process tree" ;;
        pg_restart) what="PostgreSQL restart (-m fast)" ;;
        pg_pause) what="PostgreSQL paused (SIGSTOP) for 5 s" ;;
    esac
    printf '  %-48s %5s\n' "$what" "$(field "faults_$kind")"
done
printf 'Checked\n'
printf '  %-48s %5s\n' "sessions" "$(field sessions)" "tool calls" "$(field tool_calls)" "bash calls" "$(field bash_calls)" \
    "  of which answered \"interrupted\"" "$(field interrupted)" "    ... whose line is in the file (it ran)" "$(field interrupted_ran)" \
    "    ... without a host or sandbox kill around it" "$(field interrupted_no_sandbox_fault)" "memory edits" "$(field memory_edits)"
sed -n 's/^RESULT campaign_harness_log /harness logs: /p' "$CAMPAIGN_REPORT"
printf '%s\n' "$line"
violations=$(field violations)
printf 'Violations: %s (goal: 0)\n' "$violations"
sed -n 's/^RESULT campaign_violations /  by kind: /p' "$CAMPAIGN_REPORT"
sed -n 's/^CAUSE /  /p' "$CAMPAIGN_REPORT"
grep '^VIOLATION ' "$CAMPAIGN_REPORT" || true
printf '%s\n' "$line"
grep '^RESULT campaign ' "$CAMPAIGN_REPORT"
if (( violations > 0 )); then
    echo "report (faults, violations, notes and the journals of the sessions with violations): $CAMPAIGN_REPORT"
    exit 1
fi
exit "$status"
