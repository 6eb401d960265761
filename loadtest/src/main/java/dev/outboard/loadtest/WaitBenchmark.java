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

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;
import java.util.function.ToDoubleFunction;
import java.util.regex.Pattern;

/**
 * Measures approvals and durable waits (issue 11) from a client's side.
 *
 * <p>{@code --mode approval}: sessions created with {@code "approvals": ["bash"]} and a script of
 * three turns: {@code write /workspace/x} (a file tool on the sandbox: it provisions the sandbox
 * and needs no approval), {@code bash "date +%s%N"} (held: the session shows
 * {@code requires_action}), and a last turn without tools. The client takes t0 from its clock
 * right before {@code POST /v1/sessions/{id}/approvals {"decision": "allow"}}; the latency is the
 * nanosecond time that {@code date} printed in the sandbox (the same machine's clock, read back
 * from the transcript) minus t0.
 *
 * <p>{@code --mode event}: the same first turn, then {@code wait {"event": "go",
 * "timeoutSeconds": 600}} (the session shows {@code waiting}), then {@code bash "date +%s%N"} and a
 * last turn. t0 is taken right before {@code POST /v1/sessions/{id}/events/go {}}; the latency, to
 * the command's time, includes the wait's result, one scripted model call (latency 0) and bash.
 *
 * <p>{@code --condition suspended}: the sessions are created {@code --batch} at a time; once each
 * shows its sandbox {@code suspended} (frozen: outboard.sandbox.suspend-after) the client decides
 * (or sends the event to) one session at a time, each after the previous has completed, checking
 * just before t0 that the sandbox is still suspended. {@code --condition passivated}: all sessions
 * are created at once and left alone (no request touches them, since one would wake them) until the
 * node's metrics ({@code --metrics}) show no live sandbox handle and no live session entity: a
 * held session passivates only after its sandbox hibernated. Then one at a time, as above; the
 * node's session recoveries must have gone up by at least one per session. Each session's
 * transcript and events are read right after it completed, before a finished session passivates
 * (outboard.session.passivate-finished-after), so that reading them does not wake it again.
 * Either way the session's events must show the sandbox {@code suspended} (or {@code hibernated})
 * last before the decision (or the event), and the milestones in between are reported too: the
 * decision's (event's) {@code at}, the {@code at} of turn 3's model answer (event mode), the
 * sandbox's {@code active}, the command's time and the tool result's {@code at}. The first
 * {@code --warmup-sessions} sessions go through the same steps untimed.
 *
 * <p>{@code --mode park}: creates {@code --sessions} sessions whose one turn is {@code wait
 * {"event": "never", "timeoutSeconds": 3600}} (no sandbox), {@value #CREATORS} creates at a time,
 * and waits until the sessions list ({@code ?status=waiting&limit=500}, paged with its cursor)
 * shows every one waiting. With {@code --pause} it stops and waits for a line on standard input
 * at three points, so that a script can read the node's heap: {@code READY warmed-up} (after
 * {@code --warmup-sessions} such sessions were created, listed waiting and cancelled),
 * {@code READY waiting} (all sessions listed waiting) and {@code READY check} (after which it checks
 * that the list still shows every session waiting: none timed out or failed meanwhile).
 *
 * <p>Prints a human summary and one {@code RESULT key=value ...} line. Exits 1 when anything goes
 * wrong (an unexpected HTTP status, a session that fails or ends otherwise than completed, a tool
 * result that is not a timestamp, a sandbox not in the state the condition needs, a timeout), 2 on
 * bad arguments.
 */
public final class WaitBenchmark {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String DATE_COMMAND = "date +%s%N";
    private static final Pattern EPOCH_NANOS = Pattern.compile("\\d{19}");
    private static final String EVENT = "go";
    private static final int WAIT_TIMEOUT_SECONDS = 600;
    private static final Duration SETTLE_WAIT = Duration.ofSeconds(30);
    private static final long POLL_NANOS = TimeUnit.MILLISECONDS.toNanos(20);
    private static final int CREATORS = 16;
    private static final int PAGE = 500;
    private static final BufferedReader STDIN =
            new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));

    private static final String USAGE = """
            usage: WaitBenchmark --base http://127.0.0.1:PORT --key API_KEY
                                 --mode approval|event --condition suspended|passivated
                                        [--sessions N (50)] [--warmup-sessions W (5)] [--batch B (10)]
                                        [--metrics http://127.0.0.1:MANAGEMENT_PORT/metrics] (passivated: required)
                                 --mode park [--sessions N (10000)] [--warmup-sessions W (200)] [--pause]
                                 [--timeout-seconds S (120)]""";

    private WaitBenchmark() {
    }

    public static void main(String[] args) {
        TurnBenchmark.exit(USAGE, () -> run(Options.parse(args)));
    }

    private static int run(Options options) {
        var api = new OutboardApi(options.base(), options.key());
        api.warmUp();
        if (options.mode() == Mode.PARK) {
            park(api, options);
        } else {
            latency(api, options);
        }
        return 0;
    }

    // ---- the two kinds of held call ----------------------------------------------------------

    enum Mode {
        APPROVAL("requires_action", 3), EVENT("waiting", 4), PARK("waiting", 1);

        /** The status a session shows while its call is held. */
        final String heldStatus;
        /** The turns of a completed session. */
        final int turns;

        Mode(String heldStatus, int turns) {
            this.heldStatus = heldStatus;
            this.turns = turns;
        }
    }

    /** The session's script (see the class comment); approval sessions hold bash for approval. */
    static ObjectNode sessionRequest(Mode mode) {
        ObjectNode request = JSON.createObjectNode();
        request.put("prompt", "bench");
        ObjectNode model = request.putObject("model");
        model.put("provider", "scripted");
        ArrayNode script = model.putArray("script");
        if (mode == Mode.PARK) {
            turn(script, "parks", "wait").put("event", "never").put("timeoutSeconds", 3600);
            return request;
        }
        turn(script, "provisions the sandbox", "write").put("path", "/workspace/x").put("content", "x");
        if (mode == Mode.APPROVAL) {
            request.putArray("approvals").add("bash");
        } else {
            turn(script, "waits", "wait").put("event", EVENT).put("timeoutSeconds", WAIT_TIMEOUT_SECONDS);
        }
        turn(script, "runs the command", "bash").put("command", DATE_COMMAND);
        script.addObject().put("text", "done").put("latencyMs", 0);
        return request;
    }

    /** Adds a zero-latency turn with one tool call; returns the call's input. */
    private static ObjectNode turn(ArrayNode script, String text, String tool) {
        ObjectNode turn = script.addObject().put("text", text).put("latencyMs", 0);
        ObjectNode call = turn.putArray("toolCalls").addObject().put("name", tool);
        return call.putObject("input");
    }

    // ---- --mode approval / event: the held call's release to the command's run ---------------

    /** A session whose call is held: its id and the held call's id (the approval's or the wait's). */
    record Held(String id, String toolUseId) {
    }

    /** One release: the client's t0 (epoch nanoseconds) and how long the POST took to answer. */
    record Release(Held held, long t0Nanos, double postMs) {
    }

    /**
     * One timed release, in milliseconds from t0: the decision's or event's {@code at}
     * ({@code acceptedMs}), turn 3's model answer ({@code modelMs}; event mode, else NaN), the
     * sandbox's {@code active} ({@code activeMs}), the command's run ({@code execMs}, the latency)
     * and its result's {@code at} ({@code recordedMs}).
     */
    record Sample(double postMs, double acceptedMs, double modelMs, double activeMs, double execMs,
                  double recordedMs) {
    }

    private static void latency(OutboardApi api, Options options) {
        int total = options.warmupSessions() + options.sessions();
        String body = sessionRequest(options.mode()).toString();
        String expectedBefore = options.passivated() ? "hibernated" : "suspended";
        System.out.printf("%s -> command, sandbox %s%s: %d session(s) (after %d untimed) against %s%n",
                options.mode() == Mode.APPROVAL ? "Approval" : "Event", expectedBefore,
                options.passivated() ? ", session passivated" : ", session in memory", options.sessions(),
                options.warmupSessions(), options.base());
        var metrics = options.metrics() == null ? null : new NodeMetrics(options.metrics());
        double recoveriesBefore = metrics == null ? 0 : metrics.value("outboard_session_recoveries_total");
        long started = System.nanoTime();
        List<Sample> samples = new ArrayList<>();
        if (options.passivated()) {
            List<Held> held = createHeld(api, body, total, options);
            long parked = System.nanoTime();
            awaitPassivated(metrics, total, options.timeout());
            System.out.printf(Locale.ROOT, "%d session(s) passivated %.1f s after they were all held%n",
                    total, (System.nanoTime() - parked) / 1e9);
            for (Held h : held) {
                samples.add(sample(api, options.mode(), release(api, options, h), expectedBefore));
            }
        } else {
            for (int from = 0; from < total; from += options.batch()) {
                List<Held> held = createHeld(api, body, Math.min(options.batch(), total - from), options);
                awaitSuspended(api, held, options.timeout());
                for (Held h : held) {
                    requireSandbox(api, h, "suspended");
                    samples.add(sample(api, options.mode(), release(api, options, h), expectedBefore));
                }
            }
        }
        double wallS = (System.nanoTime() - started) / 1e9;
        double recoveries = metrics == null ? Double.NaN
                : metrics.value("outboard_session_recoveries_total") - recoveriesBefore;
        if (options.passivated() && recoveries < total) {
            throw new BenchmarkFailure("only " + (long) recoveries + " session recoveries for " + total
                    + " releases of passivated sessions");
        }
        report(options, samples.subList(options.warmupSessions(), samples.size()), wallS, recoveries);
    }

    /**
     * Creates {@code count} sessions ({@value #CREATORS} at a time) and waits until each holds its
     * call: {@code requires_action} with the bash call pending, or {@code waiting} on a wait for "go".
     */
    private static List<Held> createHeld(OutboardApi api, String body, int count, Options options) {
        ExecutorService pool = Executors.newFixedThreadPool(Math.min(CREATORS, count), TurnBenchmark.daemonThreads());
        try {
            long deadline = System.nanoTime() + options.timeout().toNanos();
            List<Future<Held>> futures = new ArrayList<>(count);
            for (int i = 0; i < count; i++) {
                futures.add(pool.submit(() -> {
                    String id = api.createSession(body);
                    JsonNode session = settle(api, id, deadline);
                    requireStatus(id, session, options.mode().heldStatus);
                    return new Held(id, heldCall(id, session, options.mode()));
                }));
            }
            return futures.stream().map(f -> TurnBenchmark.await(f, deadline, "the sessions to hold their calls")).toList();
        } finally {
            pool.shutdownNow();
        }
    }

    /** The id of the one held call that a session shows: the pending approval of bash, or the wait for "go". */
    private static String heldCall(String id, JsonNode session, Mode mode) {
        JsonNode held = mode == Mode.APPROVAL ? session.path("pendingApprovals") : session.path("waits");
        if (held.size() != 1) {
            throw new BenchmarkFailure("session " + id + " shows " + held.size() + " held calls, expected 1: " + session);
        }
        JsonNode call = held.get(0);
        boolean right = mode == Mode.APPROVAL ? call.path("name").asText().equals("bash")
                : call.path("event").asText().equals(EVENT);
        String toolUseId = call.path("toolUseId").asText("");
        if (!right || toolUseId.isEmpty()) {
            throw new BenchmarkFailure("session " + id + " holds an unexpected call: " + call);
        }
        return toolUseId;
    }

    /** {@code GET ?wait=30s} until the session has left {@code running}, or the deadline. */
    private static JsonNode settle(OutboardApi api, String id, long deadlineNanos) {
        while (true) {
            JsonNode session = api.awaitSettled(id, SETTLE_WAIT);
            if (!session.path("status").asText().equals("running")) {
                return session;
            }
            if (System.nanoTime() > deadlineNanos) {
                throw new BenchmarkFailure("session " + id + " is still running: " + session);
            }
        }
    }

    /** Polls the sessions until each shows its sandbox suspended. */
    private static void awaitSuspended(OutboardApi api, List<Held> held, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        for (Held h : held) {
            while (true) {
                String state = sandboxState(api, h);
                if (state.equals("suspended")) {
                    break;
                }
                if (!state.equals("active")) {
                    throw new BenchmarkFailure("session " + h.id() + ": sandbox " + state
                            + " while waiting for it to be suspended");
                }
                if (System.nanoTime() > deadline) {
                    throw new BenchmarkFailure("session " + h.id() + ": sandbox not suspended within "
                            + timeout.toSeconds() + " s");
                }
                LockSupport.parkNanos(POLL_NANOS);
            }
        }
    }

    /** Fails unless the session still holds its call and its sandbox is {@code expected}. */
    private static void requireSandbox(OutboardApi api, Held held, String expected) {
        String state = sandboxState(api, held);
        if (!state.equals(expected)) {
            throw new BenchmarkFailure("session " + held.id() + ": sandbox " + state + " just before the release, expected "
                    + expected + " (a batch too large for the time between suspend-after and hibernate-after?)");
        }
    }

    private static String sandboxState(OutboardApi api, Held held) {
        JsonNode session = api.getSession(held.id());
        String status = session.path("status").asText();
        if (!status.equals("requires_action") && !status.equals("waiting")) {
            throw new BenchmarkFailure("session " + held.id() + " is " + status + " while its call should be held: "
                    + session);
        }
        return session.path("sandbox").path("state").asText("");
    }

    /**
     * Waits until the node's metrics show no live sandbox handle and no live session entity (each
     * held session has a handle from its first turn until it passivates; the entity count is
     * sampled every outboard.metrics.shard-stats-interval).
     */
    private static void awaitPassivated(NodeMetrics metrics, int sessions, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            Map<String, Double> now = metrics.scrape();
            double handles = sum(now, "outboard_sandboxes{");
            double entities = now.getOrDefault("outboard_entities{type=\"Session\"}", Double.NaN);
            if (handles == 0 && entities == 0) {
                return;
            }
            if (System.nanoTime() > deadline) {
                throw new BenchmarkFailure(sessions + " session(s) did not passivate within " + timeout.toSeconds()
                        + " s: " + (long) handles + " sandbox handle(s) and " + entities + " session entities live");
            }
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(200));
        }
    }

    /** Approves the held bash call or sends the event, then waits until the session completed. */
    private static Release release(OutboardApi api, Options options, Held held) {
        String path;
        String body;
        if (options.mode() == Mode.APPROVAL) {
            path = "/v1/sessions/" + held.id() + "/approvals";
            body = JSON.createObjectNode().put("toolUseId", held.toolUseId()).put("decision", "allow").toString();
        } else {
            path = "/v1/sessions/" + held.id() + "/events/" + EVENT;
            body = "{}";
        }
        Instant t0 = Instant.now();
        long sent = System.nanoTime();
        JsonNode answer = api.post(path, body, 202);
        double postMs = (System.nanoTime() - sent) / 1e6;
        if (options.mode() == Mode.EVENT && (answer.path("queued").asBoolean(true)
                || !answer.path("toolUseId").asText().equals(held.toolUseId()))) {
            throw new BenchmarkFailure("session " + held.id() + ": event " + EVENT + " was not taken by the wait "
                    + held.toolUseId() + ": " + answer);
        }
        JsonNode session = settle(api, held.id(), System.nanoTime() + options.timeout().toNanos());
        requireStatus(held.id(), session, "completed");
        if (session.path("turns").asInt(-1) != options.mode().turns) {
            throw new BenchmarkFailure("session " + held.id() + " completed with turns=" + session.path("turns")
                    + ", expected " + options.mode().turns);
        }
        return new Release(held, t0.getEpochSecond() * 1_000_000_000L + t0.getNano(), postMs);
    }

    /** The command's time from the transcript, the milestones from the events; checks the sandbox's state before. */
    private static Sample sample(OutboardApi api, Mode mode, Release release, String expectedBefore) {
        String id = release.held().id();
        long execNanos = commandTime(api, id, mode == Mode.APPROVAL ? release.held().toolUseId() : null);
        List<SseEvent> events = api.events(id);
        String markType = mode == Mode.APPROVAL ? "approval.decided" : "event.received";
        int mark = -1;
        for (int i = 0; i < events.size() && mark < 0; i++) {
            SseEvent e = events.get(i);
            boolean ours = mode == Mode.APPROVAL ? e.data().path("toolUseId").asText().equals(release.held().toolUseId())
                    : e.data().path("name").asText().equals(EVENT);
            if (e.type().equals(markType) && ours) {
                mark = i;
            }
        }
        if (mark < 0) {
            throw new BenchmarkFailure("session " + id + ": no " + markType + " event");
        }
        String before = null;
        for (int i = 0; i < mark; i++) {
            if (events.get(i).type().equals("sandbox.changed")) {
                before = events.get(i).data().path("state").asText();
            }
        }
        if (!expectedBefore.equals(before)) {
            throw new BenchmarkFailure("session " + id + ": its sandbox was " + before + " when the " + markType
                    + " was recorded, expected " + expectedBefore);
        }
        Instant model = null;
        Instant active = null;
        Instant recorded = null;
        for (int i = mark + 1; i < events.size(); i++) {
            SseEvent e = events.get(i);
            if (model == null && e.type().equals("model.responded") && e.data().path("turn").asInt() == 3) {
                model = TurnBenchmark.at(id, e);
            }
            if (active == null && e.type().equals("sandbox.changed") && e.data().path("state").asText().equals("active")) {
                active = TurnBenchmark.at(id, e);
            }
            if (recorded == null && active != null && e.type().equals("tool.completed")) {
                recorded = TurnBenchmark.at(id, e);
            }
        }
        if (active == null || recorded == null || (mode == Mode.EVENT && model == null)) {
            throw new BenchmarkFailure("session " + id + ": after its " + markType + " the events lack "
                    + (active == null ? "sandbox.changed active" : recorded == null ? "the command's tool.completed"
                    : "turn 3's model.responded"));
        }
        long t0 = release.t0Nanos();
        return new Sample(release.postMs(), ms(TurnBenchmark.at(id, events.get(mark)), t0),
                model == null ? Double.NaN : ms(model, t0), ms(active, t0), (execNanos - t0) / 1e6, ms(recorded, t0));
    }

    /**
     * The epoch nanoseconds that the bash call printed, from the transcript; {@code toolUseId}: that
     * call's id (null: the session's one bash call).
     */
    private static long commandTime(OutboardApi api, String id, String toolUseId) {
        JsonNode transcript = api.get("/v1/sessions/" + id + "/transcript");
        String bashId = toolUseId;
        String content = null;
        for (JsonNode message : transcript.path("messages")) {
            for (JsonNode block : message.path("content")) {
                String type = block.path("type").asText();
                if (bashId == null && type.equals("tool_use") && block.path("name").asText().equals("bash")) {
                    bashId = block.path("id").asText();
                }
                if (bashId != null && type.equals("tool_result") && block.path("toolUseId").asText().equals(bashId)) {
                    if (block.path("isError").asBoolean(true)) {
                        throw new BenchmarkFailure("session " + id + ": the bash call failed: " + block.path("content"));
                    }
                    content = block.path("content").asText();
                }
            }
        }
        if (content == null || !EPOCH_NANOS.matcher(content.strip()).matches()) {
            throw new BenchmarkFailure("session " + id + ": the bash call's result is not a nanosecond timestamp: "
                    + (content == null ? "no result" : "'" + content + "'"));
        }
        return Long.parseLong(content.strip());
    }

    private static double ms(Instant at, long t0Nanos) {
        return (at.getEpochSecond() * 1_000_000_000L + at.getNano() - t0Nanos) / 1e6;
    }

    private static void report(Options options, List<Sample> samples, double wallS, double recoveries) {
        LatencyStats latency = stats(samples, Sample::execMs);
        LatencyStats post = stats(samples, Sample::postMs);
        LatencyStats accepted = stats(samples, Sample::acceptedMs);
        LatencyStats active = stats(samples, Sample::activeMs);
        LatencyStats recorded = stats(samples, Sample::recordedMs);
        boolean event = options.mode() == Mode.EVENT;
        LatencyStats model = event ? stats(samples, Sample::modelMs) : null;
        String what = event ? "POST events/" + EVENT : "POST approvals";
        String mark = event ? "event.received" : "approval.decided";
        System.out.printf(Locale.ROOT, """
                        mode                %s, sandbox %s%s
                        sessions            %d timed (after %d untimed), one release at a time; %.1f s in all%s
                        latency             p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (mean %.3f ms, n=%d)
                                            from t0 (the client's clock just before %s) to the
                                            time `%s` printed in the sandbox
                        milestones (p50)    POST answered %.3f ms, %s %.3f ms,%s sandbox active %.3f ms,
                                            command %.3f ms, its result recorded %.3f ms (p99: %.3f / %.3f /%s %.3f / %.3f / %.3f)
                        """,
                options.mode().name().toLowerCase(Locale.ROOT), options.passivated() ? "hibernated" : "suspended",
                options.passivated() ? ", session passivated" : ", session in memory",
                latency.count(), options.warmupSessions(), wallS,
                Double.isNaN(recoveries) ? "" : String.format(Locale.ROOT, "; %d recoveries", (long) recoveries),
                latency.p50(), latency.p90(), latency.p99(), latency.max(), latency.mean(), latency.count(),
                what, DATE_COMMAND, post.p50(), mark, accepted.p50(),
                event ? String.format(Locale.ROOT, " turn 3 answered %.3f ms,", model.p50()) : "",
                active.p50(), latency.p50(), recorded.p50(), post.p99(), accepted.p99(),
                event ? String.format(Locale.ROOT, " %.3f /", model.p99()) : "", active.p99(), latency.p99(),
                recorded.p99());
        System.out.printf(Locale.ROOT,
                "RESULT mode=%s condition=%s sessions=%d p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f mean_ms=%.3f "
                        + "post_p50_ms=%.3f accepted_p50_ms=%.3f model_p50_ms=%.3f active_p50_ms=%.3f "
                        + "recorded_p50_ms=%.3f accepted_p99_ms=%.3f active_p99_ms=%.3f wall_s=%.1f%n",
                options.mode().name().toLowerCase(Locale.ROOT), options.passivated() ? "passivated" : "suspended",
                latency.count(), latency.p50(), latency.p90(), latency.p99(), latency.max(), latency.mean(),
                post.p50(), accepted.p50(), event ? model.p50() : Double.NaN, active.p50(), recorded.p50(),
                accepted.p99(), active.p99(), wallS);
    }

    private static LatencyStats stats(List<Sample> samples, ToDoubleFunction<Sample> value) {
        return LatencyStats.of(samples.stream().mapToDouble(value).toArray());
    }

    private static void requireStatus(String id, JsonNode session, String expected) {
        String status = session.path("status").asText();
        if (!status.equals(expected)) {
            throw new BenchmarkFailure("session " + id + " is " + status + " (expected " + expected + "): "
                    + session.path("error"));
        }
    }

    // ---- --mode park: many sessions waiting --------------------------------------------------

    private static void park(OutboardApi api, Options options) {
        String body = sessionRequest(Mode.PARK).toString();
        System.out.printf("Park: %d session(s) waiting for an event (after %d warm-up sessions) against %s%n",
                options.sessions(), options.warmupSessions(), options.base());
        if (options.warmupSessions() > 0) {
            List<String> warm = createAll(api, body, options.warmupSessions());
            awaitListedWaiting(api, warm, options.timeout());
            forAll(warm, api::cancel, "the warm-up sessions' cancels");
            System.out.printf("%d warm-up session(s) waited and were cancelled%n", warm.size());
        }
        pause(options, "warmed-up");

        long started = System.nanoTime();
        List<String> ids = createAll(api, body, options.sessions());
        double createS = (System.nanoTime() - started) / 1e9;
        System.out.printf(Locale.ROOT, "%d session(s) created in %.1f s (%.0f/s, %d at a time)%n",
                ids.size(), createS, ids.size() / createS, CREATORS);
        Duration listing = options.timeout().plusSeconds(ids.size() / 100);
        awaitListedWaiting(api, ids, listing);
        double waitingS = (System.nanoTime() - started) / 1e9;
        System.out.printf(Locale.ROOT, "all listed waiting %.1f s after the first create%n", waitingS);
        pause(options, "waiting");
        pause(options, "check");

        int still = listedWaiting(api, new HashSet<>(ids));
        if (still != ids.size()) {
            throw new BenchmarkFailure((ids.size() - still) + " of " + ids.size() + " session(s) no longer waiting");
        }
        System.out.printf("all %d still listed waiting at the end%n", ids.size());
        System.out.printf(Locale.ROOT, "RESULT mode=park sessions=%d create_s=%.1f creates_per_s=%.1f waiting_s=%.1f%n",
                ids.size(), createS, ids.size() / createS, waitingS);
    }

    /** Creates {@code count} sessions, {@value #CREATORS} at a time; returns their ids. */
    private static List<String> createAll(OutboardApi api, String body, int count) {
        ExecutorService pool = Executors.newFixedThreadPool(Math.min(CREATORS, count), TurnBenchmark.daemonThreads());
        try {
            List<Future<String>> futures = new ArrayList<>(count);
            for (int i = 0; i < count; i++) {
                futures.add(pool.submit(() -> api.createSession(body)));
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60 + count / 10);
            return futures.stream().map(f -> TurnBenchmark.await(f, deadline, "the creates")).toList();
        } finally {
            pool.shutdownNow();
        }
    }

    private static void forAll(List<String> ids, Consumer<String> action, String what) {
        ExecutorService pool = Executors.newFixedThreadPool(Math.min(CREATORS, ids.size()), TurnBenchmark.daemonThreads());
        try {
            List<CompletableFuture<Void>> futures =
                    ids.stream().map(id -> CompletableFuture.runAsync(() -> action.accept(id), pool)).toList();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60 + ids.size() / 10);
            futures.forEach(f -> TurnBenchmark.await(f, deadline, what));
        } finally {
            pool.shutdownNow();
        }
    }

    /** Pages through the list until every one of {@code ids} shows waiting. */
    private static void awaitListedWaiting(OutboardApi api, List<String> ids, Duration timeout) {
        Set<String> wanted = new HashSet<>(ids);
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            int waiting = listedWaiting(api, wanted);
            if (waiting == wanted.size()) {
                return;
            }
            if (System.nanoTime() > deadline) {
                throw new BenchmarkFailure("only " + waiting + " of " + wanted.size() + " session(s) listed waiting after "
                        + timeout.toSeconds() + " s");
            }
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(500));
        }
    }

    /** How many of {@code ids} the sessions list shows waiting ({@code ?status=waiting}, {@value #PAGE} a page). */
    private static int listedWaiting(OutboardApi api, Set<String> ids) {
        int found = 0;
        String cursor = null;
        do {
            JsonNode page = api.get("/v1/sessions?status=waiting&limit=" + PAGE
                    + (cursor == null ? "" : "&cursor=" + URLEncoder.encode(cursor, StandardCharsets.UTF_8)));
            for (JsonNode session : page.path("sessions")) {
                if (ids.contains(session.path("id").asText())) {
                    found++;
                }
            }
            JsonNode next = page.path("next");
            cursor = next.isTextual() && !next.asText().isEmpty() ? next.asText() : null;
        } while (cursor != null);
        return found;
    }

    /** With --pause: says {@code READY <what>} and waits for a line on standard input (or its end). */
    private static void pause(Options options, String what) {
        if (!options.pause()) {
            return;
        }
        System.out.println("READY " + what);
        System.out.flush();
        try {
            STDIN.readLine();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    // ---- the node's metrics ------------------------------------------------------------------

    /** {@code GET /metrics} of the node's management port (Prometheus text), loopback only. */
    static final class NodeMetrics {
        private final HttpClient http = HttpClient.newBuilder()
                .proxy(HttpClient.Builder.NO_PROXY)
                .connectTimeout(Duration.ofSeconds(5))
                .build();
        private final URI uri;

        NodeMetrics(URI uri) {
            this.uri = uri;
        }

        /** Every sample: {@code name{labels}} (as written) to its value. */
        Map<String, Double> scrape() {
            HttpResponse<String> response;
            try {
                response = http.send(HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(10)).GET().build(),
                        HttpResponse.BodyHandlers.ofString());
            } catch (IOException e) {
                throw new BenchmarkFailure("GET " + uri + ": " + e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new BenchmarkFailure("interrupted during GET " + uri);
            }
            if (response.statusCode() != 200) {
                throw new BenchmarkFailure("GET " + uri + " answered " + response.statusCode());
            }
            Map<String, Double> samples = new HashMap<>();
            for (String line : response.body().split("\n")) {
                int space = line.lastIndexOf(' ');
                if (line.isEmpty() || line.startsWith("#") || space < 0) {
                    continue;
                }
                try {
                    samples.put(line.substring(0, space), Double.parseDouble(line.substring(space + 1)));
                } catch (NumberFormatException ignored) {
                    // not a plain sample line
                }
            }
            return samples;
        }

        /** One sample's value; 0 when the node does not show it (a counter not yet touched). */
        double value(String series) {
            return scrape().getOrDefault(series, 0.0);
        }
    }

    private static double sum(Map<String, Double> samples, String prefix) {
        return samples.entrySet().stream().filter(e -> e.getKey().startsWith(prefix))
                .mapToDouble(Map.Entry::getValue).sum();
    }

    // ---- command line ------------------------------------------------------------------------

    record Options(URI base, String key, Mode mode, boolean passivated, int sessions, int warmupSessions, int batch,
                   URI metrics, boolean pause, Duration timeout) {

        static Options parse(String[] args) {
            Flags flags = Flags.parse(args, "Outboard approvals and waits benchmark",
                    Set.of("--mode", "--condition", "--sessions", "--warmup-sessions", "--batch", "--metrics",
                            "--timeout-seconds"),
                    Set.of("--pause"));
            Mode mode = switch (flags.string("--mode", "")) {
                case "approval" -> Mode.APPROVAL;
                case "event" -> Mode.EVENT;
                case "park" -> Mode.PARK;
                default -> throw new UsageException("--mode must be approval, event or park");
            };
            String condition = flags.string("--condition", mode == Mode.PARK ? "" : "suspended");
            if (mode != Mode.PARK && !condition.equals("suspended") && !condition.equals("passivated")) {
                throw new UsageException("--condition must be suspended or passivated");
            }
            boolean passivated = condition.equals("passivated");
            String metrics = flags.string("--metrics", null);
            if (passivated && metrics == null) {
                throw new UsageException("--condition passivated needs --metrics (the node's management /metrics URL)");
            }
            boolean park = mode == Mode.PARK;
            return new Options(flags.base(), flags.key(), mode, passivated,
                    flags.positiveInt("--sessions", park ? 10_000 : 50),
                    flags.nonNegativeInt("--warmup-sessions", park ? 200 : 5), flags.positiveInt("--batch", 10),
                    metrics == null ? null : URI.create(metrics), flags.has("--pause"),
                    Duration.ofSeconds(flags.positiveInt("--timeout-seconds", 120)));
        }
    }
}
