package dev.outboard.loadtest;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.time.Instant;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntSupplier;
import java.util.stream.Stream;

/**
 * Measures the per-turn overhead of Outboard sessions driven by the scripted model.
 *
 * <p>Creates {@code --sessions} sessions at once, each with a script of {@code --turns} turns
 * (every turn but the last writes a file, the last ends the loop), polls them to completion and
 * then derives per-turn latencies from the {@code at} timestamps of the {@code session.started}
 * and {@code model.responded} events. Prints a human summary and one {@code RESULT key=value ...}
 * line for scripts. Exits 1 when anything goes wrong (a session failed, the wrong number of turns,
 * a timeout, an unexpected HTTP status), 2 on bad arguments.
 */
public final class TurnBenchmark {

    private static final ObjectMapper JSON = new ObjectMapper();
    static final Set<String> TERMINAL_EVENTS =
            Set.of("session.completed", "session.failed", "session.cancelled");
    private static final Duration REQUEST_TIMEOUT = Duration.ofSeconds(30);

    private static final String USAGE = """
            usage: TurnBenchmark --base http://127.0.0.1:PORT --key API_KEY
                                 [--sessions N (1)] [--turns T (200)]
                                 [--poll-ms MS (50)] [--timeout-seconds S (600)]""";

    private TurnBenchmark() {
    }

    public static void main(String[] args) {
        exit(USAGE, () -> run(Options.parse(args)));
    }

    /**
     * Runs a client's main work and exits with its status: 2 and the usage text on a
     * {@link UsageException}, 1 and {@code BENCHMARK FAILED: ...} on a {@link BenchmarkFailure}.
     */
    static void exit(String usage, IntSupplier run) {
        int exitCode;
        try {
            exitCode = run.getAsInt();
        } catch (UsageException e) {
            System.err.println(e.getMessage());
            System.err.println(usage);
            exitCode = 2;
        } catch (BenchmarkFailure e) {
            System.err.println("BENCHMARK FAILED: " + e.getMessage());
            exitCode = 1;
        }
        System.exit(exitCode);
    }

    private static int run(Options options) {
        var api = new OutboardApi(options.base(), options.key());
        ExecutorService pool = Executors.newFixedThreadPool(options.sessions(), daemonThreads());
        try {
            System.out.printf("Running %d session(s) x %d turns against %s%n",
                    options.sessions(), options.turns(), options.base());
            api.warmUp();
            RunTiming timing = runSessions(api, pool, options);
            Turns turns = collectTurnLatencies(api, pool, options, timing.sessionIds());
            report(options, timing, turns.serverSpan(), LatencyStats.of(turns.latenciesMs()));
            return 0;
        } finally {
            pool.shutdownNow();
        }
    }

    // ---- phase 1: create all sessions at once and wait for them -----------------------------

    /** Session ids plus the wall time from the first create to the last observed completion. */
    record RunTiming(List<String> sessionIds, Duration wall) {
    }

    /** A session that the poller saw complete, and when (System.nanoTime). */
    record CompletedSession(String id, long completedAtNanos) {
    }

    private static RunTiming runSessions(OutboardApi api, ExecutorService pool, Options options) {
        String body = sessionRequest(options.turns()).toString();
        var startGate = new CountDownLatch(1);
        List<Future<CompletedSession>> futures = new ArrayList<>();
        for (int i = 0; i < options.sessions(); i++) {
            futures.add(pool.submit(() -> {
                startGate.await();
                String id = api.createSession(body);
                return awaitCompletion(api, id, options);
            }));
        }
        long startNanos = System.nanoTime();
        startGate.countDown();
        long deadline = startNanos + options.timeout().toNanos() + TimeUnit.SECONDS.toNanos(5);

        List<String> ids = new ArrayList<>();
        long lastCompletion = startNanos;
        for (Future<CompletedSession> future : futures) {
            CompletedSession done = await(future, deadline, "sessions to finish");
            ids.add(done.id());
            lastCompletion = Math.max(lastCompletion, done.completedAtNanos());
        }
        return new RunTiming(ids, Duration.ofNanos(lastCompletion - startNanos));
    }

    /** The create body: T-1 turns that each write a file, then a final turn without tool calls. */
    static ObjectNode sessionRequest(int turns) {
        ObjectNode request = JSON.createObjectNode();
        request.put("prompt", "bench");
        // Explicit budget above the script length so a low configured default cannot cut it short.
        request.put("maxTurns", turns + 1);
        ObjectNode model = request.putObject("model");
        model.put("provider", "scripted");
        ArrayNode script = model.putArray("script");
        for (int i = 1; i < turns; i++) {
            ObjectNode turn = script.addObject();
            turn.put("text", "t" + i);
            ObjectNode input = turn.putArray("toolCalls").addObject()
                    .put("name", "write")
                    .putObject("input");
            input.put("path", "/session/bench.md");
            input.put("content", "turn " + i);
            turn.put("latencyMs", 0);
        }
        script.addObject().put("text", "done");
        return request;
    }

    private static CompletedSession awaitCompletion(OutboardApi api, String id, Options options)
            throws InterruptedException {
        long deadline = System.nanoTime() + options.timeout().toNanos();
        while (true) {
            JsonNode session = api.getSession(id);
            String status = session.path("status").asText();
            switch (status) {
                case "completed" -> {
                    long completedAt = System.nanoTime();
                    requireTurns(id, session, options.turns());
                    return new CompletedSession(id, completedAt);
                }
                case "failed", "cancelled" -> throw new BenchmarkFailure(
                        "session " + id + " ended " + status + ": " + session.path("error"));
                default -> {
                    if (System.nanoTime() > deadline) {
                        throw new BenchmarkFailure("session " + id + " not finished within "
                                + options.timeout().toSeconds() + " s (status " + status
                                + ", turns " + session.path("turns") + ")");
                    }
                    Thread.sleep(options.pollInterval().toMillis());
                }
            }
        }
    }

    private static void requireTurns(String id, JsonNode session, int expected) {
        JsonNode turns = session.get("turns");
        if (turns == null || !turns.canConvertToInt() || turns.asInt() != expected) {
            throw new BenchmarkFailure("session " + id + " completed with turns=" + turns
                    + ", expected exactly " + expected);
        }
    }

    // ---- phase 2: read each session's events and derive per-turn latencies ------------------

    /** Per-turn latencies of all sessions, and the server-side span from the first start to the last answer. */
    record Turns(double[] latenciesMs, Duration serverSpan) {
    }

    /** One session's turns: latencies and the times of its first and last recorded event. */
    record SessionTurns(List<Double> latenciesMs, Instant first, Instant last) {
    }

    private static Turns collectTurnLatencies(OutboardApi api, ExecutorService pool,
                                              Options options, List<String> ids) {
        long deadline = System.nanoTime() + options.timeout().toNanos();
        List<Future<SessionTurns>> futures = ids.stream()
                .map(id -> pool.submit((Callable<SessionTurns>) () ->
                        sessionTurns(id, api.events(id), options.turns())))
                .toList();
        List<SessionTurns> sessions = futures.stream().map(f -> await(f, deadline, "event streams")).toList();
        Instant first = sessions.stream().map(SessionTurns::first).min(Instant::compareTo).orElseThrow();
        Instant last = sessions.stream().map(SessionTurns::last).max(Instant::compareTo).orElseThrow();
        double[] latencies = sessions.stream().flatMap(t -> t.latenciesMs().stream())
                .mapToDouble(Double::doubleValue).toArray();
        return new Turns(latencies, Duration.between(first, last));
    }

    /**
     * Latency of each turn: the time between consecutive {@code at} timestamps in the sequence
     * session.started, model.responded turn 1, turn 2, ... turn T.
     */
    static SessionTurns sessionTurns(String id, List<SseEvent> events, int expectedTurns) {
        List<Double> latencies = new ArrayList<>(expectedTurns);
        Instant previous = null;
        Instant first = null;
        for (SseEvent event : events) {
            switch (event.type()) {
                case "session.started" -> {
                    if (previous != null) {
                        throw new BenchmarkFailure("session " + id + ": second session.started");
                    }
                    previous = at(id, event);
                    first = previous;
                }
                case "model.responded" -> {
                    if (previous == null) {
                        throw new BenchmarkFailure("session " + id + ": model.responded before "
                                + "session.started (is session.started replayed after Last-Event-ID: 0?)");
                    }
                    int turn = event.data().path("turn").asInt(-1);
                    if (turn != latencies.size() + 1) {
                        throw new BenchmarkFailure("session " + id + ": model.responded turn "
                                + turn + " where turn " + (latencies.size() + 1) + " was expected");
                    }
                    Instant at = at(id, event);
                    latencies.add(Duration.between(previous, at).toNanos() / 1e6);
                    previous = at;
                }
                default -> {
                    // other event types do not delimit turns
                }
            }
        }
        if (latencies.size() != expectedTurns) {
            throw new BenchmarkFailure("session " + id + ": " + latencies.size()
                    + " model.responded events, expected " + expectedTurns);
        }
        return new SessionTurns(latencies, first, previous);
    }

    static Instant at(String id, SseEvent event) {
        String text = event.data().path("at").asText("");
        try {
            return DateTimeFormatter.ISO_OFFSET_DATE_TIME.parse(text, Instant::from);
        } catch (DateTimeParseException e) {
            throw new BenchmarkFailure("session " + id + ": event " + event.id() + " ("
                    + event.type() + ") has no valid ISO-8601 'at': '" + text + "'");
        }
    }

    // ---- reporting ---------------------------------------------------------------------------

    /** Per-turn latency distribution in milliseconds (nearest-rank percentiles). */
    record LatencyStats(int count, double mean, double p50, double p90, double p99, double max) {
        static LatencyStats of(double[] values) {
            if (values.length == 0) {
                throw new BenchmarkFailure("no turn latencies collected");
            }
            double[] sorted = values.clone();
            Arrays.sort(sorted);
            return new LatencyStats(sorted.length, Arrays.stream(sorted).average().orElseThrow(),
                    percentile(sorted, 50), percentile(sorted, 90), percentile(sorted, 99),
                    sorted[sorted.length - 1]);
        }

        private static double percentile(double[] sorted, double p) {
            int rank = (int) Math.ceil(p / 100.0 * sorted.length);
            return sorted[Math.max(0, rank - 1)];
        }
    }

    /**
     * turns/s is measured on the server's clock: total turns over the span from the first
     * session.started to the last model.responded, so that the client's polling interval does not
     * count. The client's wall time (first create to the last completion it saw) is shown too.
     */
    private static void report(Options options, RunTiming timing, Duration serverSpan, LatencyStats latency) {
        int totalTurns = options.sessions() * options.turns();
        double wallSeconds = timing.wall().toNanos() / 1e9;
        double spanSeconds = serverSpan.toNanos() / 1e9;
        double turnsPerSecond = totalTurns / spanSeconds;
        System.out.printf(Locale.ROOT, """
                        sessions            %d
                        turns per session   %d
                        total turns         %d
                        client wall seconds %.3f
                        server span seconds %.3f
                        turns/s             %.1f
                        per-turn latency    p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (mean %.3f ms, n=%d)
                        """,
                options.sessions(), options.turns(), totalTurns, wallSeconds, spanSeconds, turnsPerSecond,
                latency.p50(), latency.p90(), latency.p99(), latency.max(), latency.mean(),
                latency.count());
        System.out.printf(Locale.ROOT,
                "RESULT sessions=%d turns=%d total_turns=%d wall_s=%.3f turns_per_s=%.1f "
                        + "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f%n",
                options.sessions(), options.turns(), totalTurns, wallSeconds, turnsPerSecond,
                latency.p50(), latency.p90(), latency.p99(), latency.max());
    }

    // ---- HTTP --------------------------------------------------------------------------------

    /** One server-sent event; {@code data} is the parsed JSON payload (missing node if empty). */
    record SseEvent(String id, String type, JsonNode data) {
    }

    /**
     * Parses text/event-stream one line at a time (id/event/data fields, ':' comments, multi-line
     * data), so that a reader can act on each event as soon as its blank line has arrived.
     */
    static final class SseParser {
        private String id;
        private String type;
        private final StringBuilder data = new StringBuilder();

        /** The event that this line completes (the blank line after its fields), else null. */
        SseEvent line(String line) {
            if (line.isEmpty()) {
                SseEvent event = finish();
                id = null;
                type = null;
                data.setLength(0);
                return event;
            }
            if (line.startsWith(":")) {
                return null; // comment / keep-alive
            }
            int colon = line.indexOf(':');
            String field = colon < 0 ? line : line.substring(0, colon);
            String value = colon < 0 ? "" : line.substring(colon + 1);
            if (value.startsWith(" ")) {
                value = value.substring(1);
            }
            switch (field) {
                case "id" -> id = value;
                case "event" -> type = value;
                case "data" -> data.append(data.length() > 0 ? "\n" : "").append(value);
                default -> {
                    // "retry" and unknown fields are irrelevant here
                }
            }
            return null;
        }

        /** The event whose fields have been read but whose blank line has not, else null. */
        SseEvent finish() {
            if (type == null && data.length() == 0) {
                return null;
            }
            JsonNode payload = data.length() == 0 ? JSON.missingNode() : OutboardApi.parseJson(data.toString());
            return new SseEvent(id, type == null ? "message" : type, payload);
        }
    }

    /** The slice of the Outboard API the benchmark needs. Loopback only: never via a proxy. */
    static final class OutboardApi {
        private final HttpClient http = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .proxy(HttpClient.Builder.NO_PROXY)
                .connectTimeout(Duration.ofSeconds(5))
                .build();
        private final URI base;
        private final String authorization;

        OutboardApi(URI base, String key) {
            this.base = base;
            this.authorization = "Bearer " + key;
        }

        /**
         * One throwaway request ({@code GET /v1/sessions?limit=1}) so that the client's own class
         * loading and first connection are not counted in the measurement. Only fails if the
         * server cannot be reached; the status does not matter.
         */
        void warmUp() {
            send(request("/v1/sessions?limit=1").GET().build(), HttpResponse.BodyHandlers.discarding());
        }

        /** {@code POST /v1/sessions}; returns the new session's id. */
        String createSession(String body) {
            HttpRequest request = request("/v1/sessions")
                    .header("Content-Type", "application/json; charset=utf-8")
                    .POST(HttpRequest.BodyPublishers.ofString(body))
                    .build();
            HttpResponse<String> response = send(request, HttpResponse.BodyHandlers.ofString());
            requireStatus(response, 201, response.body());
            String id = parseJson(response.body()).path("id").asText("");
            if (id.isEmpty()) {
                throw new BenchmarkFailure("POST /v1/sessions answered without an id: "
                        + response.body());
            }
            return id;
        }

        /** {@code GET /v1/sessions/{id}}. */
        JsonNode getSession(String id) {
            HttpRequest request = request("/v1/sessions/" + id).GET().build();
            HttpResponse<String> response = send(request, HttpResponse.BodyHandlers.ofString());
            requireStatus(response, 200, response.body());
            return parseJson(response.body());
        }

        /**
         * {@code GET /v1/sessions/{id}/events} from the beginning; reads until the terminal
         * event (or the end of the stream, whichever comes first).
         */
        List<SseEvent> events(String id) {
            HttpRequest request = eventsRequest(id, 0, REQUEST_TIMEOUT);
            HttpResponse<Stream<String>> response = send(request, HttpResponse.BodyHandlers.ofLines());
            try (Stream<String> lines = response.body()) {
                if (response.statusCode() != 200) {
                    throw new BenchmarkFailure("GET " + request.uri() + " answered "
                            + response.statusCode() + ": " + String.join("\n", lines.limit(20).toList()));
                }
                return readUntilTerminal(lines.iterator());
            }
        }

        /**
         * {@code GET /v1/sessions/{id}/events} with {@code Last-Event-ID: after}; {@code timeout}
         * bounds the wait for the response to start.
         */
        HttpRequest eventsRequest(String id, long after, Duration timeout) {
            return request("/v1/sessions/" + id + "/events")
                    .timeout(timeout)
                    .header("Accept", "text/event-stream")
                    .header("Last-Event-ID", Long.toString(after))
                    .GET()
                    .build();
        }

        /** {@code GET /v1/sessions/{id}?wait=S}: the session once it has left {@code running} (or when S is over). */
        JsonNode awaitSettled(String id, Duration wait) {
            HttpRequest request = request("/v1/sessions/" + id + "?wait=" + wait.toSeconds() + "s")
                    .timeout(wait.plus(REQUEST_TIMEOUT))
                    .GET()
                    .build();
            HttpResponse<String> response = send(request, HttpResponse.BodyHandlers.ofString());
            requireStatus(response, 200, response.body());
            return parseJson(response.body());
        }

        /** {@code POST /v1/sessions/{id}/messages}, without waiting; the future fails unless it answers 202. */
        CompletableFuture<Void> sendMessage(String id, String text) {
            HttpRequest request = request("/v1/sessions/" + id + "/messages")
                    .header("Content-Type", "application/json; charset=utf-8")
                    .POST(HttpRequest.BodyPublishers.ofString(JSON.createObjectNode().put("text", text).toString()))
                    .build();
            return sendAsync(request, HttpResponse.BodyHandlers.ofString())
                    .thenAccept(response -> requireStatus(response, 202, response.body()));
        }

        /** {@code POST /v1/sessions/{id}/cancel}. */
        void cancel(String id) {
            HttpRequest request = request("/v1/sessions/" + id + "/cancel")
                    .POST(HttpRequest.BodyPublishers.noBody())
                    .build();
            HttpResponse<String> response = send(request, HttpResponse.BodyHandlers.ofString());
            requireStatus(response, 202, response.body());
        }

        /** {@code GET path} (a path below the base, with its query); its JSON, unless it does not answer 200. */
        JsonNode get(String path) {
            HttpResponse<String> response = send(request(path).GET().build(), HttpResponse.BodyHandlers.ofString());
            requireStatus(response, 200, response.body());
            return parseJson(response.body());
        }

        /** {@code POST path} with a JSON body; the answer's JSON, unless its status is not {@code expected}. */
        JsonNode post(String path, String body, int expected) {
            HttpRequest request = request(path)
                    .header("Content-Type", "application/json; charset=utf-8")
                    .POST(HttpRequest.BodyPublishers.ofString(body))
                    .build();
            HttpResponse<String> response = send(request, HttpResponse.BodyHandlers.ofString());
            requireStatus(response, expected, response.body());
            return parseJson(response.body());
        }

        <T> CompletableFuture<HttpResponse<T>> sendAsync(HttpRequest request, HttpResponse.BodyHandler<T> handler) {
            return http.sendAsync(request, handler);
        }

        /** Reads text/event-stream lines until the terminal event or the end of the lines. */
        static List<SseEvent> readUntilTerminal(Iterator<String> lines) {
            List<SseEvent> events = new ArrayList<>();
            var parser = new SseParser();
            while (lines.hasNext()) {
                SseEvent event = parser.line(lines.next());
                if (event != null) {
                    events.add(event);
                    if (TERMINAL_EVENTS.contains(event.type())) {
                        return events;
                    }
                }
            }
            SseEvent last = parser.finish(); // stream closed without a trailing blank line
            if (last != null) {
                events.add(last);
            }
            return events;
        }

        private HttpRequest.Builder request(String path) {
            // relative resolution keeps any path prefix of --base
            return HttpRequest.newBuilder(base.resolve(path.substring(1)))
                    .timeout(REQUEST_TIMEOUT)
                    .header("Authorization", authorization);
        }

        private <T> HttpResponse<T> send(HttpRequest request, HttpResponse.BodyHandler<T> handler) {
            try {
                return http.send(request, handler);
            } catch (IOException e) {
                throw new BenchmarkFailure(request.method() + " " + request.uri() + ": " + e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new BenchmarkFailure("interrupted during " + request.method() + " " + request.uri());
            }
        }

        private static void requireStatus(HttpResponse<?> response, int expected, String body) {
            if (response.statusCode() != expected) {
                throw new BenchmarkFailure(response.request().method() + " " + response.request().uri()
                        + " answered " + response.statusCode() + " (expected " + expected + "): " + body);
            }
        }

        static JsonNode parseJson(String text) {
            try {
                return JSON.readTree(text);
            } catch (IOException e) {
                throw new UncheckedIOException("not JSON: " + text, e);
            }
        }
    }

    // ---- plumbing ----------------------------------------------------------------------------

    record Options(URI base, String key, int sessions, int turns, Duration pollInterval,
                   Duration timeout) {

        static Options parse(String[] args) {
            Flags flags = Flags.parse(args, "Outboard per-turn overhead benchmark",
                    Set.of("--sessions", "--turns", "--poll-ms", "--timeout-seconds"), Set.of());
            return new Options(flags.base(), flags.key(), flags.positiveInt("--sessions", 1),
                    flags.positiveInt("--turns", 200), Duration.ofMillis(flags.positiveInt("--poll-ms", 50)),
                    Duration.ofSeconds(flags.positiveInt("--timeout-seconds", 600)));
        }
    }

    /**
     * A client's command line: {@code --flag value} pairs and value-less switches. {@code --base}
     * and {@code --key} are always accepted and required; {@code -h}/{@code --help}, an unknown
     * flag or a missing value are usage errors.
     */
    static final class Flags {
        private final Map<String, String> values = new HashMap<>();
        private final Set<String> switches = new HashSet<>();

        private Flags() {
        }

        static Flags parse(String[] args, String description, Set<String> valued, Set<String> switches) {
            var flags = new Flags();
            for (int i = 0; i < args.length; i++) {
                String flag = args[i];
                if (flag.equals("-h") || flag.equals("--help")) {
                    throw new UsageException(description);
                }
                if (switches.contains(flag)) {
                    flags.switches.add(flag);
                    continue;
                }
                if (!valued.contains(flag) && !flag.equals("--base") && !flag.equals("--key")) {
                    throw new UsageException("unknown flag " + flag);
                }
                if (i + 1 >= args.length) {
                    throw new UsageException("missing value for " + flag);
                }
                flags.values.put(flag, args[++i]);
            }
            return flags;
        }

        /** {@code --base} as a URI ending in '/', so that relative paths keep any prefix. */
        URI base() {
            String base = values.get("--base");
            if (base == null || key() == null) {
                throw new UsageException("--base and --key are required");
            }
            URI uri = URI.create(base.endsWith("/") ? base : base + "/");
            if (!"http".equals(uri.getScheme()) && !"https".equals(uri.getScheme())) {
                throw new UsageException("--base must be an http(s) URL: " + base);
            }
            return uri;
        }

        String key() {
            String key = values.get("--key");
            if (key == null || key.isBlank()) {
                throw new UsageException("--base and --key are required");
            }
            return key;
        }

        String string(String flag, String orElse) {
            return values.getOrDefault(flag, orElse);
        }

        boolean has(String flag) {
            return switches.contains(flag);
        }

        int positiveInt(String flag, int orElse) {
            String value = values.get(flag);
            return value == null ? orElse : atLeast(flag, value, 1);
        }

        int nonNegativeInt(String flag, int orElse) {
            String value = values.get(flag);
            return value == null ? orElse : atLeast(flag, value, 0);
        }

        private static int atLeast(String flag, String value, int min) {
            try {
                int n = Integer.parseInt(value);
                if (n >= min) {
                    return n;
                }
            } catch (NumberFormatException ignored) {
                // reported below
            }
            throw new UsageException(flag + " needs an integer of at least " + min + ", got '" + value + "'");
        }
    }

    /** Waits for a task until an absolute System.nanoTime deadline; failures become BenchmarkFailure. */
    static <T> T await(Future<T> future, long deadlineNanos, String what) {
        try {
            return future.get(Math.max(0, deadlineNanos - System.nanoTime()), TimeUnit.NANOSECONDS);
        } catch (TimeoutException e) {
            throw new BenchmarkFailure("timed out waiting for " + what);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new BenchmarkFailure("interrupted waiting for " + what);
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof BenchmarkFailure failure) {
                throw failure;
            }
            throw new BenchmarkFailure(what + ": " + cause);
        }
    }

    static ThreadFactory daemonThreads() {
        var counter = new AtomicInteger();
        return task -> {
            Thread thread = new Thread(task, "bench-" + counter.incrementAndGet());
            thread.setDaemon(true);
            return thread;
        };
    }

    /** The run did not produce a valid measurement. */
    static final class BenchmarkFailure extends RuntimeException {
        private static final long serialVersionUID = 1L;

        BenchmarkFailure(String message) {
            super(message);
        }
    }

    /** Bad command line. */
    static final class UsageException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        UsageException(String message) {
            super(message);
        }
    }
}
