#!/usr/bin/env bash
# The bubblewrap sandbox provider in-process (inprocess/SandboxBenchmark.java, compiled against the
# service jar): warm exec round trip (`true`), resume from suspended to the first byte of output
# (`echo x` right after suspend; the provider's firstOutput) and to the whole result, and cold
# start (create + first `true`), p50/p99.
#
#   cd loadtest && ./bench-sandbox.sh
#
# Knobs: SANDBOX_TRIALS [500], SANDBOX_IDLE_MS [5] (the idle time of the second resume series),
# SANDBOX_RECORDS [1] (0: commands without execution ids, so without the execution records that a
# session's commands write; to show what the records cost),
# OUTBOARD_JAR [../target/outboard.jar]. Needs bwrap; no database.
# Bars (the issue): resume p99 < 1 ms, cold start p99 < 50 ms.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

SANDBOX_TRIALS=${SANDBOX_TRIALS:-500}
SANDBOX_IDLE_MS=${SANDBOX_IDLE_MS:-5}
SANDBOX_RECORDS=${SANDBOX_RECORDS:-1}
OUTBOARD_JAR=${OUTBOARD_JAR:-../target/outboard.jar}

command -v bwrap >/dev/null || { echo "bubblewrap (bwrap) is not installed; install the Debian/Ubuntu package 'bubblewrap'" >&2; exit 2; }
if [[ ! -f $OUTBOARD_JAR ]]; then
    [[ $OUTBOARD_JAR == ../target/outboard.jar ]] || { echo "OUTBOARD_JAR=$OUTBOARD_JAR does not exist" >&2; exit 2; }
    echo "building the service jar (mvn package -DskipTests)" >&2
    (cd .. && timeout 1800 mvn -q -B package -DskipTests)
fi

work=$(mktemp -d /tmp/outboard-bench-sandbox.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 711 "$work" # bwrap runs as uid 65534 under root and must reach the sandbox root
mkdir -p "$work/classes"
javac -nowarn -d "$work/classes" -cp "$OUTBOARD_JAR" inprocess/SandboxBenchmark.java
java -cp "$work/classes:$OUTBOARD_JAR" SandboxBenchmark "$work/sandboxes" "$SANDBOX_TRIALS" "$SANDBOX_IDLE_MS" "$SANDBOX_RECORDS" | tee "$work/result.txt"

p99() { awk -v n="$1" '$2 == n { for (i = 3; i <= NF; i++) if ($i ~ /^p99_ms=/) { sub(/p99_ms=/, "", $i); print $i } }' "$work/result.txt"; }
status=0
echo "INFO resume alone (SIGCONT, no command) p99: $(p99 resume_only) ms;" \
    "resume to the whole result p99: $(p99 resume_to_result) ms (warm exec round trip p99: $(p99 warm_exec) ms)"
echo "INFO after ${SANDBOX_IDLE_MS} ms idle: resume to first output p99 $(p99 resume_after_idle_to_first_output) ms," \
    "bare resume p99 $(p99 resume_after_idle_only) ms (waking idle CPUs and threads)"
awk -v v="$(p99 resume_to_first_output)" 'BEGIN { exit !(v < 1.0) }' \
    && echo "BAR resume p99 < 1 ms: met ($(p99 resume_to_first_output) ms)" \
    || { echo "BAR resume p99 < 1 ms: MISSED ($(p99 resume_to_first_output) ms)"; status=1; }
awk -v v="$(p99 cold_start)" 'BEGIN { exit !(v < 50.0) }' \
    && echo "BAR cold start p99 < 50 ms: met ($(p99 cold_start) ms)" \
    || { echo "BAR cold start p99 < 50 ms: MISSED ($(p99 cold_start) ms)"; status=1; }
exit $status
