package dev.outboard.loadtest;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.outboard.loadtest.TurnBenchmark.BenchmarkFailure;
import dev.outboard.loadtest.TurnBenchmark.Flags;
import dev.outboard.loadtest.TurnBenchmark.LatencyStats;
import dev.outboard.loadtest.TurnBenchmark.OutboardApi;
import dev.outboard.loadtest.TurnBenchmark.SseEvent;
import dev.outboard.loadtest.TurnBenchmark.UsageException;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

/**
 * One long scripted session: per-turn latency early and late, and the time the session takes to
 * recover (wake up from the journal and its snapshots) early and late.
 *
 * <p>Creates one {@code keepOpen} session whose script has {@code --turns} zero-latency turns. Every
 * turn makes one small tool call on the session's own files, in a cycle of {@code write} (a file of
 * {@code --content-bytes}), {@code edit} (a line of that file) and {@code read} (the file), over
 * {@code --files} files {@code /session/notes-<i>.md}; except the turns listed in
 * {@code --checkpoints}, which only say something, so the session goes to {@code waiting} there.
 * At each checkpoint the client lets the session passivate (the service runs with a short
 * {@code outboard.session.passivate-after}; the node's {@code outboard_sessions} gauge, read from
 * {@code --management}'s {@code /metrics}, shows when no session entity is live), then wakes it
 * with {@code GET /v1/sessions/{id}}, {@code --repeats} times. Each wake-up is timed three ways:
 * the GET as the client sees it; the node's own recovery time (the growth of
 * {@code outboard_session_recovery_seconds_sum}: the session actor's start to the end of its
 * recovery from snapshot and journal); and the node's log line
 * {@code session <id> (waiting) recovered at event N in X ms} (read from {@code --service-log}),
 * which also says how many events the session had. Then a message makes it go on to the next
 * checkpoint; the last checkpoint is the last turn.
 *
 * <p>Afterwards the client cancels the session, reads its events from the start and derives each
 * turn's latency from the {@code at} times: {@code model.responded} of turn t minus that of turn
 * t-1 (turn 1: minus {@code session.started}), so a turn's time includes the previous turn's tool
 * call. The turn after a checkpoint is left out (it follows the client's pause). It reports p50/p99
 * for the first and the last {@code --window} turns, for all turns and per block of
 * {@code --block} turns; the turns before which the transcript was compacted; and checks that no
 * tool call failed. {@code --warmup-runs} whole runs (with {@code --warmup-repeats} wake-ups per
 * checkpoint) come first, untimed, so that the JIT has compiled the turn and the recovery paths.
 * With {@code --short-session N}, a last session plays only the script's first N turns (N a
 * checkpoint) and is woken there {@code --repeats} times: the scripted model's script is part of
 * the session's first event and of its snapshots (a real model's spec is a few hundred bytes), so
 * this is recovery at turn N without the long script.
 *
 * <p>Prints a human summary and one {@code RESULT key=value ...} line, with the session's id and
 * the sequence number of its last {@code session.waiting} (for the journal's byte count). Exits 1
 * when anything goes wrong (a session that fails, turns that do not add up, a tool call that
 * fails, a wake-up the node does not report, a timeout, an unexpected HTTP status), 2 on bad
 * arguments.
 */
public final class LongSessionBenchmark {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Duration SETTLE_WAIT = Duration.ofSeconds(60);
    private static final long POLL_NANOS = TimeUnit.MILLISECONDS.toNanos(25);
    private static final String FILLER = "Keep the deploy notes short: what changed, who approved it, how to roll it back. "
            + "Check the canary for ten minutes before the rest. Page the owner on a failed health check. ";

    private static final String USAGE = """
            usage: LongSessionBenchmark --base http://127.0.0.1:PORT --key API_KEY
                                        --management http://127.0.0.1:MGMT_PORT --service-log PATH
                                        [--turns T (2000)] [--checkpoints C1,C2,... (20,T)]
                                        [--repeats N (5)] [--warmup-runs N (1)] [--warmup-repeats N (2)]
                                        [--content-bytes B (300)] [--files N (8)]
                                        [--window W (20)] [--block B (250)] [--snapshot-every N (0: unknown)]
                                        [--short-session TURNS (0: none)]
                                        [--label NAME (run)] [--latency-file CSV] [--timeout-seconds S (600)]""";

    private LongSessionBenchmark() {
    }

    public static void main(String[] args) {
        TurnBenchmark.exit(USAGE, () -> run(Options.parse(args)));
    }

    private static int run(Options options) {
        var api = new OutboardApi(options.base(), options.key());
        var node = new NodeMetrics(options.management());
        var log = new ServiceLog(options.serviceLog());
        api.warmUp();
        System.out.printf("Long session: %d turns, checkpoints %s, %d wake-up(s) each, against %s%n",
                options.turns(), options.checkpoints(), options.repeats(), options.base());
        String body = sessionRequest(options, options.turns(), options.checkpoints()).toString();
        System.out.printf("  create body %d bytes (the script: %d turns)%n", body.getBytes(StandardCharsets.UTF_8).length,
                options.turns());
        for (int w = 1; w <= options.warmupRuns(); w++) {
            long start = System.nanoTime();
            Run warm = runOnce(api, node, log, body, options.checkpoints(), options.warmupRepeats(), options);
            System.out.printf(Locale.ROOT, "  warm-up run %d: session %s, %.1f s (not reported)%n", w, warm.id(),
                    (System.nanoTime() - start) / 1e9);
        }
        long start = System.nanoTime();
        Run run = runOnce(api, node, log, body, options.checkpoints(), options.repeats(), options);
        double wallSeconds = (System.nanoTime() - start) / 1e9;
        Checkpoint small = null;
        if (options.smallTurns() > 0) {
            // The same first turns with a script of only those: recovery without the long script in its first event.
            int turns = options.smallTurns();
            String smallBody = sessionRequest(options, turns, List.of(turns)).toString();
            small = runOnce(api, node, log, smallBody, List.of(turns), options.repeats(), options).checkpoints().get(0);
            System.out.printf("  short session: %d turns, create body %d bytes%n", turns,
                    smallBody.getBytes(StandardCharsets.UTF_8).length);
        }
        report(options, run, small, wallSeconds);
        return 0;
    }

    // ---- the script --------------------------------------------------------------------------

    /**
     * The create body: a keepOpen session whose turn t plays a checkpoint's text (no tool calls:
     * the session waits) when t is a checkpoint, else the next step of the write / edit / read cycle.
     */
    static ObjectNode sessionRequest(Options options, int turns, List<Integer> checkpointTurns) {
        ObjectNode request = JSON.createObjectNode();
        request.put("prompt", "bench: keep the deploy notes in /session up to date");
        request.put("keepOpen", true);
        request.put("maxTurns", turns + 10);
        ObjectNode model = request.putObject("model");
        model.put("provider", "scripted");
        ArrayNode script = model.putArray("script");
        Set<Integer> checkpoints = new TreeSet<>(checkpointTurns);
        int step = 0;
        int lastWrite = 0;
        for (int turn = 1; turn <= turns; turn++) {
            ObjectNode entry = script.addObject();
            if (checkpoints.contains(turn)) {
                entry.put("text", "Checkpoint at turn " + turn + ": the notes are up to date.");
                entry.put("latencyMs", 0);
                continue;
            }
            int kind = step % 3;
            String path = "/session/notes-" + (step / 3) % options.files() + ".md";
            step++;
            entry.put("text", "Turn " + turn + ": " + switch (kind) {
                case 0 -> "writing";
                case 1 -> "editing";
                default -> "reading";
            } + " " + path + ".");
            ObjectNode call = entry.putArray("toolCalls").addObject();
            ObjectNode input;
            switch (kind) {
                case 0 -> {
                    input = call.put("name", "write").putObject("input");
                    input.put("path", path);
                    input.put("content", noteContent(turn, options.contentBytes()));
                    lastWrite = turn;
                }
                case 1 -> {
                    input = call.put("name", "edit").putObject("input");
                    input.put("path", path);
                    input.put("old_string", "turn " + lastWrite + ":");
                    input.put("new_string", "turn " + lastWrite + " (revised in turn " + turn + "):");
                }
                default -> {
                    input = call.put("name", "read").putObject("input");
                    input.put("path", path);
                }
            }
            entry.put("latencyMs", 0);
        }
        return request;
    }

    /** About {@code bytes} of markdown: a heading, the marker line that the next edit changes, then lines of filler. */
    private static String noteContent(int turn, int bytes) {
        var text = new StringBuilder(bytes + 80);
        text.append("# Deploy notes\n\nturn ").append(turn).append(": updated\n");
        int from = turn % FILLER.length();
        while (text.length() < bytes) {
            int lineEnd = Math.min(text.length() + 72, bytes);
            while (text.length() < lineEnd) {
                text.append(FILLER.charAt(from));
                from = (from + 1) % FILLER.length();
            }
            text.append('\n');
        }
        return text.toString();
    }

    // ---- one run -----------------------------------------------------------------------------

    /** One wake-up of a passivated session. */
    record Recovery(double getMs, double nodeMs, long event, long logMs) {
    }

    /** A checkpoint: the turn, how long the run to it took (client side), its wake-ups. */
    record Checkpoint(int turn, double runSeconds, List<Recovery> recoveries) {
        LatencyStats node() {
            return LatencyStats.of(recoveries.stream().mapToDouble(Recovery::nodeMs).toArray());
        }

        LatencyStats get() {
            return LatencyStats.of(recoveries.stream().mapToDouble(Recovery::getMs).toArray());
        }

        long event() {
            return recoveries.get(0).event();
        }
    }

    record Run(String id, List<Checkpoint> checkpoints, List<SseEvent> events) {
    }

    /** One session to the last of {@code checkpointTurns}, woken {@code repeats} times at each; then cancelled. */
    private static Run runOnce(OutboardApi api, NodeMetrics node, ServiceLog log, String body,
                               List<Integer> checkpointTurns, int repeats, Options options) {
        String id = api.createSession(body);
        List<Checkpoint> checkpoints = new ArrayList<>();
        long phaseStart = System.nanoTime();
        int lastTurn = checkpointTurns.get(checkpointTurns.size() - 1);
        for (int turn : checkpointTurns) {
            awaitWaiting(api, id, turn, options.timeout());
            double runSeconds = (System.nanoTime() - phaseStart) / 1e9;
            List<Recovery> recoveries = new ArrayList<>();
            for (int r = 0; r < repeats; r++) {
                recoveries.add(wakeUp(api, node, log, id, turn, options.timeout()));
            }
            checkpoints.add(new Checkpoint(turn, runSeconds, recoveries));
            if (turn != lastTurn) {
                phaseStart = System.nanoTime();
                TurnBenchmark.await(api.sendMessage(id, "Go on after turn " + turn + "."),
                        System.nanoTime() + options.timeout().toNanos(), "the message after turn " + turn);
            }
        }
        api.cancel(id); // then its stream ends, and it passivates soon
        return new Run(id, checkpoints, api.events(id));
    }

    /** Waits until the session waits after exactly {@code turn} turns. */
    private static void awaitWaiting(OutboardApi api, String id, int turn, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            JsonNode session = api.awaitSettled(id, SETTLE_WAIT);
            String status = session.path("status").asText();
            int turns = session.path("turns").asInt(-1);
            if (status.equals("waiting") && turns == turn) {
                return;
            }
            boolean earlier = status.equals("running") || (status.equals("waiting") && turns < turn);
            if (!earlier) {
                throw new BenchmarkFailure("session " + id + " is " + status + " after " + turns
                        + " turns, expected waiting after " + turn + ": " + session.path("error"));
            }
            if (System.nanoTime() > deadline) {
                throw new BenchmarkFailure("session " + id + " not waiting after turn " + turn + " within "
                        + timeout.toSeconds() + " s (" + status + ", " + turns + " turns)");
            }
            if (status.equals("waiting")) {
                sleep(POLL_NANOS); // the message is not recorded yet
            }
        }
    }

    /**
     * Waits until no session entity is live on the node (this one passivated), then wakes it with
     * a GET and reads what the node says about the recovery.
     */
    private static Recovery wakeUp(OutboardApi api, NodeMetrics node, ServiceLog log, String id, int turn,
                                   Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        NodeMetrics.Sample before = node.sample();
        while (before.liveSessions() > 0) {
            if (System.nanoTime() > deadline) {
                throw new BenchmarkFailure("session " + id + " did not passivate within " + timeout.toSeconds()
                        + " s (" + before.liveSessions() + " live session entities; is "
                        + "outboard.session.passivate-after short?)");
            }
            sleep(POLL_NANOS);
            before = node.sample();
        }
        int seen = log.recoveries(id).size();
        long start = System.nanoTime();
        JsonNode session = api.getSession(id);
        double getMs = (System.nanoTime() - start) / 1e6;
        if (!session.path("status").asText().equals("waiting") || session.path("turns").asInt(-1) != turn) {
            throw new BenchmarkFailure("session " + id + " woke up " + session.path("status") + " after "
                    + session.path("turns") + " turns, expected waiting after " + turn);
        }
        NodeMetrics.Sample after = node.sample();
        while (after.recoveries() == before.recoveries() && System.nanoTime() < deadline) {
            sleep(POLL_NANOS);
            after = node.sample();
        }
        if (after.recoveries() != before.recoveries() + 1) {
            throw new BenchmarkFailure("outboard_session_recovery_seconds_count went from " + before.recoveries()
                    + " to " + after.recoveries() + " while waking session " + id + " (expected one recovery)");
        }
        double nodeMs = (after.recoverySeconds() - before.recoverySeconds()) * 1000;
        List<long[]> lines = log.recoveries(id);
        while (lines.size() <= seen && System.nanoTime() < deadline) {
            sleep(POLL_NANOS);
            lines = log.recoveries(id);
        }
        if (lines.size() != seen + 1) {
            throw new BenchmarkFailure("the service log has " + (lines.size() - seen) + " new 'session " + id
                    + " (waiting) recovered at event' line(s), expected 1");
        }
        long[] line = lines.get(lines.size() - 1);
        return new Recovery(getMs, nodeMs, line[0], line[1]);
    }

    // ---- per-turn latency --------------------------------------------------------------------

    /**
     * Turn t's latency (index t-1; NaN: left out), whether a snapshot came due within it (index
     * t-1), the turns before which the transcript was compacted, the last session.waiting's id.
     */
    record Turns(double[] latencyMs, boolean[] snapshotted, List<Integer> compactedBefore, long lastWaitingSeq,
                 int events) {
        LatencyStats of(int fromTurn, int toTurn) {
            double[] values = Arrays.stream(latencyMs, fromTurn - 1, toTurn).filter(v -> !Double.isNaN(v)).toArray();
            return LatencyStats.of(values);
        }

        /** The timed turns with ({@code true}) or without a snapshot, or null when there are none. */
        LatencyStats snapshotTurns(boolean with) {
            double[] values = java.util.stream.IntStream.range(0, latencyMs.length)
                    .filter(i -> snapshotted[i] == with && !Double.isNaN(latencyMs[i]))
                    .mapToDouble(i -> latencyMs[i]).toArray();
            return values.length == 0 ? null : LatencyStats.of(values);
        }

        /** The {@code n} slowest timed turns, slowest first. */
        List<Integer> slowest(int n) {
            return java.util.stream.IntStream.rangeClosed(1, latencyMs.length)
                    .filter(t -> !Double.isNaN(latencyMs[t - 1])).boxed()
                    .sorted((a, b) -> Double.compare(latencyMs[b - 1], latencyMs[a - 1])).limit(n).toList();
        }

        double busySeconds() {
            return Arrays.stream(latencyMs).filter(v -> !Double.isNaN(v)).sum() / 1000;
        }

        int counted() {
            return (int) Arrays.stream(latencyMs).filter(v -> !Double.isNaN(v)).count();
        }
    }

    static Turns turns(String id, List<SseEvent> events, Options options) {
        double[] latency = new double[options.turns()];
        Arrays.fill(latency, Double.NaN);
        boolean[] snapshotted = new boolean[options.turns()];
        long previousSeq = 0;
        Set<Integer> resumed = options.checkpoints().stream().map(c -> c + 1).collect(Collectors.toSet());
        List<Integer> compacted = new ArrayList<>();
        Instant previous = null;
        int turn = 0;
        int waits = 0;
        long lastWaitingSeq = -1;
        String toolError = null;
        for (SseEvent event : events) {
            switch (event.type()) {
                case "session.started" -> {
                    previous = TurnBenchmark.at(id, event);
                    previousSeq = Long.parseLong(event.id());
                }
                case "model.responded" -> {
                    int t = event.data().path("turn").asInt(-1);
                    if (t != turn + 1 || previous == null) {
                        throw new BenchmarkFailure("session " + id + ": model.responded turn " + t + " after turn "
                                + turn);
                    }
                    turn = t;
                    Instant at = TurnBenchmark.at(id, event);
                    long seq = Long.parseLong(event.id());
                    if (t <= latency.length && !resumed.contains(t)) {
                        latency[t - 1] = Duration.between(previous, at).toNanos() / 1e6;
                        // A snapshot is taken after the write that reaches a multiple of snapshot-every,
                        // before the next command: it delays the turn whose events from the previous
                        // model.responded on (inclusive) to this one (exclusive) reach it.
                        long every = options.snapshotEvery();
                        long multiple = every > 0 ? (seq - 1) / every * every : 0;
                        snapshotted[t - 1] = multiple > 0 && multiple >= previousSeq;
                    }
                    previous = at;
                    previousSeq = seq;
                }
                case "tool.completed" -> {
                    if (event.data().path("isError").asBoolean(false) && toolError == null) {
                        toolError = "turn " + event.data().path("turn") + ": " + event.data().path("content").asText();
                    }
                }
                case "transcript.compacted" -> compacted.add(turn + 1);
                case "session.waiting" -> {
                    waits++;
                    if (waits == options.checkpoints().size()) {
                        lastWaitingSeq = Long.parseLong(event.id());
                    }
                }
                default -> {
                    // other events do not delimit turns
                }
            }
        }
        if (toolError != null) {
            throw new BenchmarkFailure("session " + id + ": a tool call failed (" + toolError + ")");
        }
        if (turn != options.turns() || waits != options.checkpoints().size()) {
            throw new BenchmarkFailure("session " + id + ": " + turn + " model.responded and " + waits
                    + " session.waiting events, expected " + options.turns() + " and " + options.checkpoints().size());
        }
        return new Turns(latency, snapshotted, compacted, lastWaitingSeq, events.size());
    }

    // ---- reporting ---------------------------------------------------------------------------

    private static void report(Options options, Run run, Checkpoint small, double wallSeconds) {
        Turns turns = turns(run.id(), run.events(), options);
        if (options.latencyFile() != null) {
            writeLatencies(options.latencyFile(), turns);
        }
        int window = Math.min(options.window(), options.turns());
        int lastFrom = options.turns() - window + 1;
        LatencyStats first = turns.of(1, window);
        LatencyStats last = turns.of(lastFrom, options.turns());
        LatencyStats all = turns.of(1, options.turns());
        System.out.printf(Locale.ROOT, """
                        session             %s (%d events read; the last session.waiting is event %d)
                        run                 %.1f s in all; %.3f s in the %d timed turns (%.1f turns/s)
                        per-turn latency    turns 1-%d: p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (n=%d)
                                            turns %d-%d: p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (n=%d)
                                            all turns: p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (n=%d)
                                            (model.responded `at` to the next; the turn after each checkpoint left out)
                        """,
                run.id(), turns.events(), turns.lastWaitingSeq(), wallSeconds, turns.busySeconds(), turns.counted(),
                turns.counted() / turns.busySeconds(),
                window, first.p50(), first.p90(), first.p99(), first.max(), first.count(),
                lastFrom, options.turns(), last.p50(), last.p90(), last.p99(), last.max(), last.count(),
                all.p50(), all.p90(), all.p99(), all.max(), all.count());
        for (int from = 1; from <= options.turns(); from += options.block()) {
            int to = Math.min(options.turns(), from + options.block() - 1);
            LatencyStats block = turns.of(from, to);
            System.out.printf(Locale.ROOT, "    turns %4d-%4d   p50 %7.3f ms  p99 %8.3f ms  max %8.3f ms%n",
                    from, to, block.p50(), block.p99(), block.max());
        }
        System.out.printf(Locale.ROOT, "compactions         %d%s%n", turns.compactedBefore().size(),
                turns.compactedBefore().isEmpty() ? "" : ", before turns " + turns.compactedBefore()
                        .stream().map(t -> t + " (" + latencyText(turns, t) + ")").collect(Collectors.joining(", ")));
        LatencyStats withSnapshot = turns.snapshotTurns(true);
        LatencyStats withoutSnapshot = turns.snapshotTurns(false);
        if (withSnapshot != null && withoutSnapshot != null) {
            System.out.printf(Locale.ROOT, "snapshot turns      p50 %.3f ms  max %.3f ms (n=%d: a snapshot came due in the"
                            + " turn, every %d events); the others p50 %.3f ms%n", withSnapshot.p50(),
                    withSnapshot.max(), withSnapshot.count(), options.snapshotEvery(), withoutSnapshot.p50());
        }
        Set<Integer> compacted = Set.copyOf(turns.compactedBefore());
        System.out.println("slowest turns       " + turns.slowest(8).stream().map(t -> t + " (" + latencyText(turns, t)
                + (turns.snapshotted()[t - 1] ? ", snapshot" : "") + (compacted.contains(t) ? ", compaction" : "")
                + ")").collect(Collectors.joining(", ")));
        System.out.println("recovery            (GET of the passivated session; node = the session actor's start to "
                + "the end of its recovery)");
        for (Checkpoint c : run.checkpoints()) {
            LatencyStats node = c.node();
            LatencyStats get = c.get();
            System.out.printf(Locale.ROOT,
                    "  at turn %4d       event %5d: node p50 %8.3f ms  max %8.3f ms   GET p50 %8.3f ms  max %8.3f ms"
                            + "  (n=%d; log: %s ms)%n",
                    c.turn(), c.event(), node.p50(), node.max(), get.p50(), get.max(), node.count(),
                    c.recoveries().stream().map(r -> Long.toString(r.logMs())).collect(Collectors.joining(",")));
        }
        if (small != null) {
            System.out.printf(Locale.ROOT,
                    "  at turn %4d       event %5d: node p50 %8.3f ms  max %8.3f ms   GET p50 %8.3f ms  max %8.3f ms"
                            + "  (n=%d; a session whose script has only these %d turns)%n",
                    small.turn(), small.event(), small.node().p50(), small.node().max(), small.get().p50(),
                    small.get().max(), small.node().count(), small.turn());
        }
        var result = new StringBuilder(String.format(Locale.ROOT,
                "RESULT label=%s session=%s turns=%d last_seq=%d read_events=%d compactions=%d wall_s=%.1f "
                        + "busy_s=%.3f first_p50_ms=%.3f first_p99_ms=%.3f last_p50_ms=%.3f last_p99_ms=%.3f "
                        + "all_p50_ms=%.3f all_p99_ms=%.3f snapshot_turn_p50_ms=%.3f other_turn_p50_ms=%.3f",
                options.label(), run.id(), options.turns(), turns.lastWaitingSeq(), turns.events(),
                turns.compactedBefore().size(), wallSeconds, turns.busySeconds(), first.p50(), first.p99(),
                last.p50(), last.p99(), all.p50(), all.p99(), withSnapshot == null ? Double.NaN : withSnapshot.p50(),
                withoutSnapshot == null ? Double.NaN : withoutSnapshot.p50()));
        for (Checkpoint c : run.checkpoints()) {
            LatencyStats node = c.node();
            LatencyStats get = c.get();
            result.append(String.format(Locale.ROOT,
                    " rec%d_event=%d rec%d_node_ms=%.3f rec%d_node_min_ms=%.3f rec%d_node_max_ms=%.3f"
                            + " rec%d_get_ms=%.3f rec%d_get_max_ms=%.3f",
                    c.turn(), c.event(), c.turn(), node.p50(), c.turn(),
                    c.recoveries().stream().mapToDouble(Recovery::nodeMs).min().orElseThrow(), c.turn(), node.max(),
                    c.turn(), get.p50(), c.turn(), get.max()));
        }
        if (small != null) {
            result.append(String.format(Locale.ROOT,
                    " small_turns=%d small_event=%d small_node_ms=%.3f small_node_max_ms=%.3f small_get_ms=%.3f"
                            + " small_get_max_ms=%.3f",
                    small.turn(), small.event(), small.node().p50(), small.node().max(), small.get().p50(),
                    small.get().max()));
        }
        System.out.println(result);
    }

    /** {@code turn,latency_ms,snapshot,compaction} per turn (latency empty where left out). */
    private static void writeLatencies(Path file, Turns turns) {
        Set<Integer> compacted = Set.copyOf(turns.compactedBefore());
        var csv = new StringBuilder("turn,latency_ms,snapshot,compaction\n");
        for (int t = 1; t <= turns.latencyMs().length; t++) {
            double ms = turns.latencyMs()[t - 1];
            csv.append(t).append(',').append(Double.isNaN(ms) ? "" : String.format(Locale.ROOT, "%.3f", ms))
                    .append(',').append(turns.snapshotted()[t - 1] ? 1 : 0).append(',')
                    .append(compacted.contains(t) ? 1 : 0).append('\n');
        }
        try {
            java.nio.file.Files.writeString(file, csv);
        } catch (IOException e) {
            throw new BenchmarkFailure("cannot write " + file + ": " + e);
        }
    }

    private static String latencyText(Turns turns, int turn) {
        if (turn < 1 || turn > turns.latencyMs().length || Double.isNaN(turns.latencyMs()[turn - 1])) {
            return "not timed";
        }
        return String.format(Locale.ROOT, "%.1f ms", turns.latencyMs()[turn - 1]);
    }

    private static void sleep(long nanos) {
        try {
            TimeUnit.NANOSECONDS.sleep(nanos);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new BenchmarkFailure("interrupted");
        }
    }

    // ---- what the node says ------------------------------------------------------------------

    /** The node's {@code /metrics} on its management port (loopback only, never via a proxy). */
    static final class NodeMetrics {
        private static final Pattern LINE = Pattern.compile("^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{[^}]*})?\\s+(\\S+).*$");

        /** Live session entities (all statuses), recoveries so far and their total time. */
        record Sample(double liveSessions, double recoveries, double recoverySeconds) {
        }

        private final HttpClient http = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .proxy(HttpClient.Builder.NO_PROXY)
                .connectTimeout(Duration.ofSeconds(5))
                .build();
        private final URI uri;

        NodeMetrics(URI management) {
            this.uri = management.resolve("metrics");
        }

        Sample sample() {
            HttpRequest request = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(10)).GET().build();
            HttpResponse<String> response;
            try {
                response = http.send(request, HttpResponse.BodyHandlers.ofString());
            } catch (IOException e) {
                throw new BenchmarkFailure("GET " + uri + ": " + e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new BenchmarkFailure("interrupted during GET " + uri);
            }
            if (response.statusCode() != 200) {
                throw new BenchmarkFailure("GET " + uri + " answered " + response.statusCode());
            }
            double live = 0;
            double count = Double.NaN;
            double sum = Double.NaN;
            for (String line : response.body().split("\n")) {
                Matcher m = LINE.matcher(line);
                if (line.startsWith("#") || !m.matches()) {
                    continue;
                }
                double value = Double.parseDouble(m.group(3));
                switch (m.group(1)) {
                    case "outboard_sessions" -> live += value;
                    case "outboard_session_recovery_seconds_count" -> count = value;
                    case "outboard_session_recovery_seconds_sum" -> sum = value;
                    default -> {
                        // not needed
                    }
                }
            }
            if (Double.isNaN(count) || Double.isNaN(sum)) {
                throw new BenchmarkFailure("GET " + uri + " has no outboard_session_recovery_seconds _count/_sum");
            }
            return new Sample(live, count, sum);
        }
    }

    /** The node's log, read as it grows: its {@code session <id> (...) recovered at event N in X ms} lines. */
    static final class ServiceLog {
        private static final Pattern RECOVERED =
                Pattern.compile("session (\\S+) \\((\\w+)\\) recovered at event (\\d+) in (\\d+) ms");

        private final Path path;
        private long offset;
        private final StringBuilder partial = new StringBuilder();
        /** Per line found: session id, event, ms. */
        private final List<String[]> found = new ArrayList<>();

        ServiceLog(Path path) {
            this.path = path;
        }

        /** The recoveries of {@code id} logged so far: {event, ms} each. */
        List<long[]> recoveries(String id) {
            readNew();
            return found.stream().filter(f -> f[0].equals(id))
                    .map(f -> new long[] {Long.parseLong(f[1]), Long.parseLong(f[2])}).toList();
        }

        private void readNew() {
            try (RandomAccessFile file = new RandomAccessFile(path.toFile(), "r")) {
                long length = file.length();
                if (length <= offset) {
                    return;
                }
                byte[] bytes = new byte[(int) (length - offset)];
                file.seek(offset);
                file.readFully(bytes);
                offset = length;
                partial.append(new String(bytes, StandardCharsets.UTF_8));
            } catch (IOException e) {
                throw new BenchmarkFailure("cannot read the service log " + path + ": " + e);
            }
            int end;
            while ((end = partial.indexOf("\n")) >= 0) {
                Matcher m = RECOVERED.matcher(partial.substring(0, end));
                if (m.find()) {
                    found.add(new String[] {m.group(1), m.group(3), m.group(4)});
                }
                partial.delete(0, end + 1);
            }
        }
    }

    // ---- plumbing ----------------------------------------------------------------------------

    record Options(URI base, String key, URI management, Path serviceLog, int turns, List<Integer> checkpoints,
                   int repeats, int warmupRuns, int warmupRepeats, int contentBytes, int files, int window,
                   int block, int snapshotEvery, int smallTurns, String label, Path latencyFile,
                   Duration timeout) {

        static Options parse(String[] args) {
            Flags flags = Flags.parse(args, "Outboard long-session benchmark",
                    Set.of("--management", "--service-log", "--turns", "--checkpoints", "--repeats", "--warmup-runs",
                            "--warmup-repeats", "--content-bytes", "--files", "--window", "--block", "--snapshot-every",
                            "--short-session", "--label",
                            "--latency-file",
                            "--timeout-seconds"),
                    Set.of());
            String management = flags.string("--management", "");
            String serviceLog = flags.string("--service-log", "");
            if (management.isEmpty() || serviceLog.isEmpty()) {
                throw new UsageException("--management and --service-log are required");
            }
            int turns = flags.positiveInt("--turns", 2000);
            List<Integer> checkpoints = checkpoints(flags.string("--checkpoints", Math.min(20, turns) + "," + turns),
                    turns);
            return new Options(flags.base(), flags.key(),
                    URI.create(management.endsWith("/") ? management : management + "/"), Path.of(serviceLog), turns,
                    checkpoints, flags.positiveInt("--repeats", 5), flags.nonNegativeInt("--warmup-runs", 1),
                    flags.positiveInt("--warmup-repeats", 2), flags.positiveInt("--content-bytes", 300),
                    flags.positiveInt("--files", 8), flags.positiveInt("--window", 20),
                    flags.positiveInt("--block", 250), flags.nonNegativeInt("--snapshot-every", 0),
                    flags.nonNegativeInt("--short-session", 0),
                    flags.string("--label", "run"),
                    flags.string("--latency-file", "").isEmpty() ? null : Path.of(flags.string("--latency-file", "")),
                    Duration.ofSeconds(flags.positiveInt("--timeout-seconds", 600)));
        }

        /** Ascending, distinct, within 1..turns, ending at turns. */
        private static List<Integer> checkpoints(String text, int turns) {
            List<Integer> list = new ArrayList<>();
            for (String part : text.split(",")) {
                try {
                    list.add(Integer.parseInt(part.trim()));
                } catch (NumberFormatException e) {
                    throw new UsageException("--checkpoints needs turn numbers separated by commas, got '" + text + "'");
                }
            }
            for (int i = 0; i < list.size(); i++) {
                if (list.get(i) < 1 || (i > 0 && list.get(i) <= list.get(i - 1))) {
                    throw new UsageException("--checkpoints must go up, from 1: " + text);
                }
            }
            if (list.get(list.size() - 1) != turns) {
                throw new UsageException("the last of --checkpoints must be --turns (" + turns + "): " + text);
            }
            return List.copyOf(list);
        }
    }
}
