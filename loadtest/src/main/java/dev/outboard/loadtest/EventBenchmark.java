package dev.outboard.loadtest;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.outboard.loadtest.TurnBenchmark.BenchmarkFailure;
import dev.outboard.loadtest.TurnBenchmark.Flags;
import dev.outboard.loadtest.TurnBenchmark.LatencyStats;
import dev.outboard.loadtest.TurnBenchmark.OutboardApi;
import dev.outboard.loadtest.TurnBenchmark.SseEvent;
import dev.outboard.loadtest.TurnBenchmark.SseParser;
import dev.outboard.loadtest.TurnBenchmark.UsageException;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Flow;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.ToDoubleFunction;

/**
 * Measures Outboard's event streams ({@code GET /v1/sessions/{id}/events}) from a client's side.
 *
 * <p>{@code --mode streams}: creates {@code --sessions} idle sessions ({@code keepOpen}, one
 * scripted turn, then {@code waiting}), opens {@code --streams} event streams on them (stream i
 * follows session i mod sessions), then sends {@code --rate} messages per second for
 * {@code --seconds}, round-robin over the sessions. Each message makes its session record
 * {@code message.added}, {@code model.responded} and {@code session.waiting}. Every such event
 * is timed on every stream that follows its session: from its {@code at} (taken by the session
 * before the journal write, so the write counts) to the moment the client has read the event's
 * closing blank line. With {@code --pause}, the client stops twice and waits for a line on
 * standard input: after the sessions are idle ({@code READY sessions}) and after the streams are
 * open ({@code READY streams}), so that a script can sample the database in between.
 *
 * <p>{@code --mode create}: {@code --runs} sequential runs of a {@code --turns}-turn session
 * (TurnBenchmark's script: zero-latency turns that each write a {@code /session} file), twice
 * each: the time from sending {@code POST /v1/sessions} to reading {@code session.completed} on
 * a stream opened right after the create, and to {@code GET /v1/sessions/{id}?wait=30s}
 * answering {@code completed}. Each run also reports the session's own run (from the {@code at}
 * of its session.started to that of session.completed, read back afterwards), so that what a
 * stream costs the session shows apart from what it costs the client.
 *
 * <p>Streams are read with {@link java.net.http.HttpClient} (HTTP/1.1, one connection each) and a
 * line subscriber, so a thousand open streams need no thread each. Prints a human summary and one
 * {@code RESULT key=value ...} line. Exits 1 when anything goes wrong (a stream that fails,
 * closes early, skips or repeats a sequence number, misses events; an unexpected HTTP status; a
 * timeout), 2 on bad arguments.
 */
public final class EventBenchmark {

    private static final ObjectMapper JSON = new ObjectMapper();
    /** A waiting session gets a turn per message; the service allows at most this many. */
    private static final int MAX_TURNS = 10_000;
    private static final Duration SETTLE_WAIT = Duration.ofSeconds(30);
    /** Streams being opened (their replay not yet read) at once. */
    private static final int OPENING_AT_ONCE = 64;
    private static final int CREATORS = 16;
    private static final BufferedReader STDIN =
            new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));

    private static final String USAGE = """
            usage: EventBenchmark --base http://127.0.0.1:PORT --key API_KEY
                                  --mode streams [--sessions N (1)] [--streams N (= sessions)]
                                                 [--rate MESSAGES_PER_S (50)] [--seconds S (20)] [--pause]
                                  --mode create  [--runs N (50)] [--turns T (20)] [--warmup-runs N (5)]
                                  [--timeout-seconds S (120)]""";

    private EventBenchmark() {
    }

    public static void main(String[] args) {
        TurnBenchmark.exit(USAGE, () -> run(Options.parse(args)));
    }

    private static int run(Options options) {
        var api = new OutboardApi(options.base(), options.key());
        api.warmUp();
        if (options.mode().equals("streams")) {
            streams(api, options);
        } else {
            createToResult(api, options);
        }
        return 0;
    }

    // ---- --mode streams: delivery latency on open streams ------------------------------------

    private static void streams(OutboardApi api, Options options) {
        System.out.printf("Streams: %d session(s), %d stream(s), %d message(s)/s for %d s against %s%n",
                options.sessions(), options.streams(), options.rate(), options.seconds(), options.base());
        List<String> ids = createIdleSessions(api, options.sessions());
        pause(options, "sessions");

        List<EventStream> streams = openStreams(api, ids, options);
        pause(options, "streams");
        requireHealthy(streams, "while the streams were idle");
        int pings = streams.stream().mapToInt(EventStream::pings).sum();

        Instant liveFrom = Instant.now();
        streams.forEach(s -> s.timeFrom(liveFrom));
        int[] sent = drive(api, ids, options);
        awaitDelivered(streams, sent, options.timeout());
        requireHealthy(streams, "during the measurement");

        double[] latencies = streams.stream().flatMapToDouble(s -> s.latenciesMs().stream()
                .mapToDouble(Double::doubleValue)).toArray();
        LatencyStats latency = LatencyStats.of(latencies);
        streams.forEach(EventStream::close);
        cancelAll(api, ids);

        int messages = options.rate() * options.seconds();
        System.out.printf(Locale.ROOT, """
                        sessions            %d
                        streams             %d (stream i follows session i mod %d)
                        messages            %d (%d/s for %d s, round-robin over the sessions)
                        events timed        %d (message.added, model.responded, session.waiting on every stream)
                        pings while idle    %d
                        delivery latency    p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (mean %.3f ms, n=%d)
                                            from the event's `at`, taken before its journal write (so the write
                                            counts), to the client having read the whole event
                        """,
                options.sessions(), options.streams(), options.sessions(), messages, options.rate(),
                options.seconds(), latency.count(), pings, latency.p50(), latency.p90(), latency.p99(),
                latency.max(), latency.mean(), latency.count());
        System.out.printf(Locale.ROOT,
                "RESULT mode=streams sessions=%d streams=%d messages=%d events=%d pings=%d "
                        + "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f mean_ms=%.3f%n",
                options.sessions(), options.streams(), messages, latency.count(), pings,
                latency.p50(), latency.p90(), latency.p99(), latency.max(), latency.mean());
    }

    /** A keepOpen session with one scripted turn: it goes to waiting, and each message is one more empty turn. */
    static ObjectNode idleSessionRequest() {
        ObjectNode request = JSON.createObjectNode();
        request.put("prompt", "bench");
        request.put("keepOpen", true);
        request.put("maxTurns", MAX_TURNS);
        ObjectNode model = request.putObject("model");
        model.put("provider", "scripted");
        model.putArray("script").addObject().put("text", "ready").put("latencyMs", 0);
        return request;
    }

    /** Creates the sessions ({@value #CREATORS} at a time) and waits until every one is waiting. */
    private static List<String> createIdleSessions(OutboardApi api, int count) {
        String body = idleSessionRequest().toString();
        ExecutorService pool =
                Executors.newFixedThreadPool(Math.min(CREATORS, count), TurnBenchmark.daemonThreads());
        try {
            List<Future<String>> futures = new ArrayList<>(count);
            for (int i = 0; i < count; i++) {
                futures.add(pool.submit(() -> {
                    String id = api.createSession(body);
                    requireStatus(id, api.awaitSettled(id, SETTLE_WAIT), "waiting");
                    return id;
                }));
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60 + count / 10);
            List<String> ids = futures.stream().map(f -> TurnBenchmark.await(f, deadline, "idle sessions")).toList();
            System.out.printf("%d session(s) waiting%n", ids.size());
            return ids;
        } finally {
            pool.shutdownNow();
        }
    }

    /**
     * Opens the streams ({@value #OPENING_AT_ONCE} at a time), each from {@code Last-Event-ID: 0},
     * and waits until each has read its session's replay up to {@code session.waiting}.
     */
    private static List<EventStream> openStreams(OutboardApi api, List<String> ids, Options options) {
        var opening = new Semaphore(OPENING_AT_ONCE);
        List<EventStream> streams = new ArrayList<>(options.streams());
        long deadline = System.nanoTime() + options.timeout().toNanos();
        for (int i = 0; i < options.streams(); i++) {
            acquire(opening, deadline);
            int session = i % ids.size();
            EventStream stream = EventStream.open(api, ids.get(session), session, options.timeout(), null);
            stream.ready().whenComplete((ok, error) -> opening.release());
            streams.add(stream);
        }
        for (EventStream stream : streams) {
            TurnBenchmark.await(stream.ready(), deadline, "the streams' replay");
        }
        System.out.printf("%d stream(s) open%n", streams.size());
        return streams;
    }

    /**
     * Sends {@code rate x seconds} messages at a steady rate (each on its schedule, without
     * waiting for the previous answer), round-robin over the sessions; returns how many each got.
     */
    private static int[] drive(OutboardApi api, List<String> ids, Options options) {
        int total = options.rate() * options.seconds();
        long period = TimeUnit.SECONDS.toNanos(1) / options.rate();
        int[] sent = new int[ids.size()];
        List<CompletableFuture<Void>> answers = new ArrayList<>(total);
        long start = System.nanoTime();
        for (int k = 0; k < total; k++) {
            long wait = start + k * period - System.nanoTime();
            if (wait > 0) {
                LockSupport.parkNanos(wait);
            }
            answers.add(api.sendMessage(ids.get(k % ids.size()), "m" + k));
            sent[k % ids.size()]++;
        }
        long deadline = System.nanoTime() + options.timeout().toNanos();
        TurnBenchmark.await(CompletableFuture.allOf(answers.toArray(CompletableFuture[]::new)), deadline,
                "the messages' answers");
        return sent;
    }

    /** Waits until every stream has read a message.added per message to its session, then session.waiting. */
    private static void awaitDelivered(List<EventStream> streams, int[] sent, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            List<EventStream> behind = streams.stream().filter(s -> !s.caughtUp(sent[s.sessionIndex()])).toList();
            if (behind.isEmpty()) {
                return;
            }
            requireHealthy(streams, "while waiting for the last events");
            if (System.nanoTime() > deadline) {
                EventStream first = behind.get(0);
                throw new BenchmarkFailure(behind.size() + " stream(s) did not receive all their events within "
                        + timeout.toSeconds() + " s; e.g. " + first.describe(sent[first.sessionIndex()]));
            }
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(20));
        }
    }

    private static void requireHealthy(List<EventStream> streams, String when) {
        List<String> problems = streams.stream().map(EventStream::problem).filter(p -> p != null).toList();
        if (!problems.isEmpty()) {
            throw new BenchmarkFailure(problems.size() + " stream(s) failed " + when + "; first: " + problems.get(0));
        }
    }

    /**
     * Cancels the sessions: a finished session passivates (a database write) 15 s later, before
     * the next measurement, where an idle one would do so after 2 minutes, perhaps in the middle of it.
     */
    private static void cancelAll(OutboardApi api, List<String> ids) {
        ExecutorService pool =
                Executors.newFixedThreadPool(Math.min(CREATORS, ids.size()), TurnBenchmark.daemonThreads());
        try {
            List<CompletableFuture<Void>> futures =
                    ids.stream().map(id -> CompletableFuture.runAsync(() -> api.cancel(id), pool)).toList();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60 + ids.size() / 10);
            futures.forEach(f -> TurnBenchmark.await(f, deadline, "the cancels"));
        } finally {
            pool.shutdownNow();
        }
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

    // ---- --mode create: create -> result seen by a client ------------------------------------

    /**
     * One create -> result run: the client's time, the session's own run (its session.started
     * {@code at} to its terminal event's), and, via a stream, the delivery of session.completed.
     */
    record Run(double totalMs, double sessionMs, double completedDeliveryMs) {
    }

    private static void createToResult(OutboardApi api, Options options) {
        System.out.printf("Create -> result: %d run(s) (after %d untimed) of a %d-turn session, "
                        + "via a stream and via ?wait=30s, against %s%n",
                options.runs(), options.warmupRuns(), options.turns(), options.base());
        String body = TurnBenchmark.sessionRequest(options.turns()).toString();
        List<Run> viaStream = new ArrayList<>();
        List<Run> viaWait = new ArrayList<>();
        for (int run = -options.warmupRuns(); run < options.runs(); run++) {
            Run stream = viaStream(api, body, options);
            Run wait = viaWait(api, body, options);
            if (run >= 0) {
                viaStream.add(stream);
                viaWait.add(wait);
            }
        }
        LatencyStats stream = stats(viaStream, Run::totalMs);
        LatencyStats wait = stats(viaWait, Run::totalMs);
        LatencyStats streamRun = stats(viaStream, Run::sessionMs);
        LatencyStats waitRun = stats(viaWait, Run::sessionMs);
        LatencyStats delivery = stats(viaStream, Run::completedDeliveryMs);
        System.out.printf(Locale.ROOT, """
                        runs                %d (each: one session via the stream, then one via ?wait)
                        turns per session   %d
                        via stream          p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (mean %.3f ms)
                        via ?wait=30s       p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (mean %.3f ms)
                                            from sending POST /v1/sessions to reading session.completed
                                            (stream) or the completed session (?wait)
                        the session's run   p50 %.3f ms with a stream, %.3f ms without  (p99 %.3f / %.3f ms;
                                            session.started `at` to session.completed `at`)
                        completed delivered p50 %.3f ms  p99 %.3f ms  (its `at` to read on the stream)
                        """,
                options.runs(), options.turns(), stream.p50(), stream.p90(), stream.p99(), stream.max(),
                stream.mean(), wait.p50(), wait.p90(), wait.p99(), wait.max(), wait.mean(),
                streamRun.p50(), waitRun.p50(), streamRun.p99(), waitRun.p99(), delivery.p50(), delivery.p99());
        System.out.printf(Locale.ROOT,
                "RESULT mode=create runs=%d turns=%d stream_p50_ms=%.3f stream_p90_ms=%.3f "
                        + "stream_p99_ms=%.3f stream_max_ms=%.3f wait_p50_ms=%.3f wait_p90_ms=%.3f "
                        + "wait_p99_ms=%.3f wait_max_ms=%.3f stream_run_p50_ms=%.3f wait_run_p50_ms=%.3f "
                        + "completed_delivery_p50_ms=%.3f completed_delivery_p99_ms=%.3f%n",
                options.runs(), options.turns(), stream.p50(), stream.p90(), stream.p99(), stream.max(),
                wait.p50(), wait.p90(), wait.p99(), wait.max(), streamRun.p50(), waitRun.p50(),
                delivery.p50(), delivery.p99());
    }

    private static LatencyStats stats(List<Run> runs, ToDoubleFunction<Run> value) {
        return LatencyStats.of(runs.stream().mapToDouble(value).toArray());
    }

    /** Create, then at once a stream from the start, until session.completed has been read. */
    private static Run viaStream(OutboardApi api, String body, Options options) {
        long start = System.nanoTime();
        Instant created = Instant.now();
        String id = api.createSession(body);
        EventStream stream = EventStream.open(api, id, 0, options.timeout(), created);
        long deadline = System.nanoTime() + options.timeout().toNanos();
        SseEvent last = TurnBenchmark.await(stream.ended(), deadline, "session.completed on the stream of " + id);
        if (!last.type().equals("session.completed")) {
            throw new BenchmarkFailure("the stream of " + id + " ended with " + last.type()
                    + ", expected session.completed");
        }
        if (stream.responded() != options.turns()) {
            throw new BenchmarkFailure("the stream of " + id + " had " + stream.responded()
                    + " model.responded events, expected " + options.turns());
        }
        List<Double> delivered = stream.latenciesMs();
        return new Run((stream.endedAtNanos() - start) / 1e6, sessionRunMs(api, id),
                delivered.get(delivered.size() - 1));
    }

    /** Create, then at once {@code ?wait=30s}, until it answered completed. */
    private static Run viaWait(OutboardApi api, String body, Options options) {
        long start = System.nanoTime();
        String id = api.createSession(body);
        JsonNode session = api.awaitSettled(id, SETTLE_WAIT);
        long answered = System.nanoTime();
        requireStatus(id, session, "completed");
        if (session.path("turns").asInt(-1) != options.turns()) {
            throw new BenchmarkFailure("session " + id + " completed with turns=" + session.path("turns")
                    + ", expected " + options.turns());
        }
        return new Run((answered - start) / 1e6, sessionRunMs(api, id), Double.NaN);
    }

    /** The session's own run, read from its recorded events after the timing: session.started to the terminal event. */
    private static double sessionRunMs(OutboardApi api, String id) {
        List<SseEvent> events = api.events(id);
        SseEvent first = events.get(0);
        SseEvent last = events.get(events.size() - 1);
        if (!first.type().equals("session.started") || !TurnBenchmark.TERMINAL_EVENTS.contains(last.type())) {
            throw new BenchmarkFailure("session " + id + ": events run from " + first.type() + " to " + last.type());
        }
        return Duration.between(TurnBenchmark.at(id, first), TurnBenchmark.at(id, last)).toNanos() / 1e6;
    }

    private static void requireStatus(String id, JsonNode session, String expected) {
        String status = session.path("status").asText();
        if (!status.equals(expected)) {
            throw new BenchmarkFailure("session " + id + " is " + status + " (expected " + expected + "): "
                    + session.path("error"));
        }
    }

    // ---- one open stream ---------------------------------------------------------------------

    /**
     * One {@code GET /v1/sessions/{id}/events} read line by line as the bytes arrive. Checks that
     * sequence numbers go up by one from 1, and times each event recorded from {@link #timeFrom}
     * on. Its state is guarded by {@code this}: lines arrive on the HTTP client's threads.
     */
    static final class EventStream implements Flow.Subscriber<String> {
        private final String sessionId;
        private final int sessionIndex;
        private final SseParser parser = new SseParser();
        /** Completes once the replay is read: at session.waiting or a terminal event. */
        private final CompletableFuture<Void> ready = new CompletableFuture<>();
        /** Completes with the terminal event, or fails with the stream's problem. */
        private final CompletableFuture<SseEvent> ended = new CompletableFuture<>();
        private final List<Double> latenciesMs = new ArrayList<>();
        private Flow.Subscription subscription;
        private Instant timeFrom;
        private long lastSeq;
        private int messagesTimed;
        private String lastType;
        private int responded;
        private int pings;
        private long endedAtNanos;
        private boolean closing;
        private String problem;

        private EventStream(String sessionId, int sessionIndex) {
            this.sessionId = sessionId;
            this.sessionIndex = sessionIndex;
        }

        /**
         * Opens the session's stream from {@code Last-Event-ID: 0}; times the events recorded from
         * {@code timeFrom} on (null: none until {@link #timeFrom} is called).
         */
        static EventStream open(OutboardApi api, String sessionId, int sessionIndex, Duration timeout,
                                Instant timeFrom) {
            var stream = new EventStream(sessionId, sessionIndex);
            stream.timeFrom(timeFrom);
            api.sendAsync(api.eventsRequest(sessionId, 0, timeout), stream::bodySubscriber)
                    .whenComplete((response, error) -> {
                        if (error != null) {
                            stream.fail("GET events: " + error);
                        }
                    });
            return stream;
        }

        private HttpResponse.BodySubscriber<Void> bodySubscriber(HttpResponse.ResponseInfo info) {
            if (info.statusCode() != 200) {
                fail("GET events answered " + info.statusCode() + " (expected 200)");
                return HttpResponse.BodySubscribers.replacing(null);
            }
            return HttpResponse.BodySubscribers.fromLineSubscriber(this, s -> null, StandardCharsets.UTF_8, "\n");
        }

        @Override
        public synchronized void onSubscribe(Flow.Subscription subscription) {
            this.subscription = subscription;
            subscription.request(Long.MAX_VALUE);
        }

        @Override
        public synchronized void onNext(String line) {
            long nanos = System.nanoTime();
            Instant now = Instant.now();
            if (line.startsWith(":")) {
                pings++;
            }
            SseEvent event = parser.line(line);
            if (event != null) {
                onEvent(event, now, nanos);
            }
        }

        private void onEvent(SseEvent event, Instant readAt, long readAtNanos) {
            if (event.id() != null) {
                long seq = Long.parseLong(event.id());
                if (seq != lastSeq + 1) {
                    fail("event " + seq + " (" + event.type() + ") after " + lastSeq);
                }
                lastSeq = seq;
                if (!event.data().path("at").isMissingNode()) {
                    Instant at = TurnBenchmark.at(sessionId, event);
                    if (timeFrom != null && !at.isBefore(timeFrom)) {
                        latenciesMs.add(Duration.between(at, readAt).toNanos() / 1e6);
                        if (event.type().equals("message.added")) {
                            messagesTimed++;
                        }
                    }
                }
                lastType = event.type();
            }
            if (event.type().equals("model.responded")) {
                responded++;
            }
            if (event.type().equals("session.waiting")) {
                ready.complete(null);
            }
            if (TurnBenchmark.TERMINAL_EVENTS.contains(event.type())) {
                endedAtNanos = readAtNanos;
                ready.complete(null);
                ended.complete(event);
            }
        }

        @Override
        public synchronized void onError(Throwable error) {
            fail("stream failed: " + error);
        }

        @Override
        public synchronized void onComplete() {
            SseEvent last = parser.finish();
            if (last != null) {
                onEvent(last, Instant.now(), System.nanoTime());
            }
            if (!ended.isDone()) {
                fail("stream closed without a terminal event");
            }
        }

        /** Records the first problem (none once the client closes the stream itself). */
        private synchronized void fail(String what) {
            if (closing || problem != null) {
                return;
            }
            problem = "session " + sessionId + ": " + what;
            ready.completeExceptionally(new BenchmarkFailure(problem));
            ended.completeExceptionally(new BenchmarkFailure(problem));
        }

        /** Times every event recorded at or after {@code from}. */
        synchronized void timeFrom(Instant from) {
            timeFrom = from;
        }

        /** Whether the stream has read a message.added for each of {@code messages}, then session.waiting. */
        synchronized boolean caughtUp(int messages) {
            return messagesTimed >= messages && "session.waiting".equals(lastType);
        }

        synchronized String describe(int messages) {
            return "session " + sessionId + ": " + messagesTimed + " of " + messages
                    + " message.added timed, last event " + lastSeq + " " + lastType;
        }

        /** Closes the connection. */
        synchronized void close() {
            closing = true;
            if (subscription != null) {
                subscription.cancel();
            }
        }

        CompletableFuture<Void> ready() {
            return ready;
        }

        CompletableFuture<SseEvent> ended() {
            return ended;
        }

        int sessionIndex() {
            return sessionIndex;
        }

        synchronized List<Double> latenciesMs() {
            return List.copyOf(latenciesMs);
        }

        synchronized int pings() {
            return pings;
        }

        synchronized int responded() {
            return responded;
        }

        synchronized long endedAtNanos() {
            return endedAtNanos;
        }

        /** What went wrong, or null; a stream that ended before the client closed it counts as wrong. */
        synchronized String problem() {
            if (problem == null && ended.isDone() && !closing) {
                return "session " + sessionId + ": the stream ended early";
            }
            return problem;
        }
    }

    // ---- plumbing ----------------------------------------------------------------------------

    private static void acquire(Semaphore semaphore, long deadlineNanos) {
        try {
            if (!semaphore.tryAcquire(Math.max(0, deadlineNanos - System.nanoTime()), TimeUnit.NANOSECONDS)) {
                throw new BenchmarkFailure("timed out opening the streams");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new BenchmarkFailure("interrupted opening the streams");
        }
    }

    record Options(URI base, String key, String mode, int sessions, int streams, int rate, int seconds,
                   boolean pause, int runs, int turns, int warmupRuns, Duration timeout) {

        static Options parse(String[] args) {
            Flags flags = Flags.parse(args, "Outboard event stream benchmark",
                    Set.of("--mode", "--sessions", "--streams", "--rate", "--seconds", "--runs", "--turns",
                            "--warmup-runs", "--timeout-seconds"),
                    Set.of("--pause"));
            String mode = flags.string("--mode", "");
            if (!mode.equals("streams") && !mode.equals("create")) {
                throw new UsageException("--mode must be streams or create");
            }
            int sessions = flags.positiveInt("--sessions", 1);
            int rate = flags.positiveInt("--rate", 50);
            int seconds = flags.positiveInt("--seconds", 20);
            if ((long) rate * seconds / sessions + 2 > MAX_TURNS) {
                throw new UsageException("--rate x --seconds / --sessions must stay below " + MAX_TURNS
                        + " messages per session (the service's turn limit)");
            }
            return new Options(flags.base(), flags.key(), mode, sessions, flags.positiveInt("--streams", sessions),
                    rate, seconds, flags.has("--pause"), flags.positiveInt("--runs", 50),
                    flags.positiveInt("--turns", 20), flags.nonNegativeInt("--warmup-runs", 5),
                    Duration.ofSeconds(flags.positiveInt("--timeout-seconds", 120)));
        }
    }
}
