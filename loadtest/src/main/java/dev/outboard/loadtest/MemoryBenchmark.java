package dev.outboard.loadtest;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.outboard.loadtest.TurnBenchmark.BenchmarkFailure;
import dev.outboard.loadtest.TurnBenchmark.LatencyStats;
import dev.outboard.loadtest.TurnBenchmark.UsageException;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Measures org memory write throughput and latency: {@code --writers} closed-loop writers, each
 * doing one {@code PUT /v1/files/memory/{prefix}/w<writer>.md} at a time (the writer rewrites its
 * own file, ~100 bytes of changing content) for {@code --seconds}, all with the same org key.
 *
 * <p>Every writer has its own {@link HttpClient} (HTTP/1.1, so one keep-alive connection per
 * writer). Before the measurement each writer does one untimed PUT (connection set-up, class
 * loading) and, with {@code --warmup-seconds}, the same loop untimed for that long, so the
 * client's JIT is warm too. A write counts when the service answered 2xx; anything else (a
 * non-2xx status, an I/O error, a timeout, a version that is not the previous one + 1) is an
 * error. Errors are counted, the run goes on (it stops early after {@value #MAX_ERRORS}), and
 * any error makes the exit status 1 after the report.
 *
 * <p>Prints a human block and one {@code RESULT writers=N writes_per_s=... p50_ms=... p99_ms=...
 * errors=...} line. Exits 1 on errors, 2 on bad arguments.
 */
public final class MemoryBenchmark {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Duration REQUEST_TIMEOUT = Duration.ofSeconds(30);
    private static final int MAX_ERRORS = 100;
    private static final int MAX_ERRORS_SHOWN = 5;
    private static final int CONTENT_BYTES = 100;

    private static final String USAGE = """
            usage: MemoryBenchmark --base http://127.0.0.1:PORT --key API_KEY
                                   [--writers N (1)] [--seconds S (10)]
                                   [--warmup-seconds W (0)] [--prefix P (bench)]""";

    private MemoryBenchmark() {
    }

    public static void main(String[] args) {
        int exitCode;
        try {
            exitCode = run(Options.parse(args));
        } catch (UsageException e) {
            System.err.println(e.getMessage());
            System.err.println(USAGE);
            exitCode = 2;
        } catch (BenchmarkFailure e) {
            System.err.println("BENCHMARK FAILED: " + e.getMessage());
            exitCode = 1;
        }
        System.exit(exitCode);
    }

    private static int run(Options options) {
        System.out.printf("Running %d writer(s) x %d s (after %d s untimed) of PUT %s against %s%n",
                options.writers(), options.seconds(), options.warmupSeconds(),
                options.filePath("<writer>"), options.base());
        var errors = new Errors();
        List<Writer> writers = new ArrayList<>(options.writers());
        for (int i = 0; i < options.writers(); i++) {
            writers.add(new Writer(i, options, errors));
        }
        var threads = new AtomicInteger();
        ExecutorService pool = Executors.newFixedThreadPool(options.writers(), task -> {
            Thread thread = new Thread(task, "writer-" + threads.incrementAndGet());
            thread.setDaemon(true);
            return thread;
        });
        try {
            // One untimed write each: the connection, the file's current version, class loading.
            runPhase(pool, writers, Writer::prime, Duration.ZERO, "the first writes");
            errors.failIfAny("before the measurement");
            if (options.warmupSeconds() > 0) {
                Duration warmup = Duration.ofSeconds(options.warmupSeconds());
                runPhase(pool, writers, w -> w.loop(warmup, false), warmup, "the untimed writes");
                errors.failIfAny("during the untimed writes");
            }
            Duration measured = Duration.ofSeconds(options.seconds());
            long start = System.nanoTime();
            runPhase(pool, writers, w -> w.loop(measured, true), measured, "the measured writes");
            long end = writers.stream().mapToLong(Writer::lastCompletionNanos).max().orElse(start);
            report(options, writers, Math.max(1, end - start) / 1e9, errors);
            return errors.count() == 0 ? 0 : 1;
        } finally {
            pool.shutdownNow();
        }
    }

    /** A step every writer takes at the same time (they start together behind a gate). */
    private interface Step {
        void run(Writer writer) throws InterruptedException;
    }

    private static void runPhase(ExecutorService pool, List<Writer> writers, Step step, Duration length,
                                 String what) {
        var gate = new CountDownLatch(1);
        List<Future<?>> futures = new ArrayList<>(writers.size());
        for (Writer writer : writers) {
            futures.add(pool.submit(() -> {
                gate.await();
                step.run(writer);
                return null;
            }));
        }
        gate.countDown();
        // Writers stop starting requests at the end of the phase; the last one may take a request timeout.
        long deadline = System.nanoTime() + length.toNanos() + REQUEST_TIMEOUT.toNanos() + TimeUnit.SECONDS.toNanos(10);
        for (Future<?> future : futures) {
            try {
                future.get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            } catch (TimeoutException e) {
                throw new BenchmarkFailure("timed out waiting for " + what);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new BenchmarkFailure("interrupted waiting for " + what);
            } catch (ExecutionException e) {
                throw new BenchmarkFailure(what + ": " + e.getCause());
            }
        }
    }

    // ---- one writer --------------------------------------------------------------------------

    /** A closed-loop writer: one PUT at a time to its own file, over its own connection. */
    static final class Writer {
        private final int index;
        private final Errors errors;
        private final URI uri;
        private final String authorization;
        private final HttpClient http = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .proxy(HttpClient.Builder.NO_PROXY)
                .connectTimeout(Duration.ofSeconds(5))
                .build();
        private final byte[] template;
        private final int digitsEnd;     // the write number's last digit is at digitsEnd - 1
        private long writes;             // acknowledged writes of this writer so far, all phases
        private long lastVersion = -1;   // version of the last acknowledged write; -1 = unknown
        private long[] latenciesNanos = new long[1024];
        private int measured;            // acknowledged writes in the measured phase
        private long lastCompletionNanos;

        Writer(int index, Options options, Errors errors) {
            this.index = index;
            this.errors = errors;
            this.uri = options.base().resolve(options.filePath(Integer.toString(index)).substring(1));
            this.authorization = "Bearer " + options.key();
            this.template = content(index);
            this.digitsEnd = header(index).length();
        }

        private static String header(int index) {
            return String.format(Locale.ROOT, "# bench writer %d, write %09d", index, 0);
        }

        /** ~100 bytes of markdown; the 9 digits at the end of the first line change with every write. */
        private static byte[] content(int index) {
            StringBuilder text = new StringBuilder(header(index)).append('\n');
            while (text.length() < CONTENT_BYTES - 1) {
                text.append('.');
            }
            return text.append('\n').toString().getBytes(StandardCharsets.US_ASCII);
        }

        private byte[] nextContent() {
            byte[] body = template.clone();
            long n = writes % 1_000_000_000L;
            for (int i = digitsEnd - 1; i >= digitsEnd - 9; i--) {
                body[i] = (byte) ('0' + n % 10);
                n /= 10;
            }
            return body;
        }

        void prime() {
            put();
        }

        void loop(Duration length, boolean record) {
            long end = System.nanoTime() + length.toNanos();
            while (System.nanoTime() < end && !errors.tooMany()) {
                long started = System.nanoTime();
                boolean ok = put();
                long done = System.nanoTime();
                if (record) {
                    lastCompletionNanos = done;
                    if (ok) {
                        if (measured == latenciesNanos.length) {
                            latenciesNanos = Arrays.copyOf(latenciesNanos, measured * 2);
                        }
                        latenciesNanos[measured++] = done - started;
                    }
                }
            }
        }

        /** One PUT; true when it was acknowledged as expected, false after recording an error. */
        private boolean put() {
            HttpRequest request = HttpRequest.newBuilder(uri)
                    .timeout(REQUEST_TIMEOUT)
                    .header("Authorization", authorization)
                    .header("Content-Type", "text/markdown; charset=utf-8")
                    .PUT(HttpRequest.BodyPublishers.ofByteArray(nextContent()))
                    .build();
            HttpResponse<String> response;
            try {
                response = http.send(request, HttpResponse.BodyHandlers.ofString());
            } catch (IOException e) {
                errors.add("PUT " + uri + ": " + e);
                lastVersion = -1;
                return false;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new BenchmarkFailure("interrupted during PUT " + uri);
            }
            int status = response.statusCode();
            if (status < 200 || status > 299) {
                errors.add("PUT " + uri + " answered " + status + ": " + abbreviate(response.body()));
                lastVersion = -1;
                return false;
            }
            long version = version(response.body());
            if (version < 1) {
                errors.add("PUT " + uri + " answered " + status + " without a version: " + abbreviate(response.body()));
                lastVersion = -1;
                return false;
            }
            // Only this writer writes this file, so each acknowledged write is the next version.
            if (lastVersion > 0 && version != lastVersion + 1) {
                errors.add("PUT " + uri + " answered version " + version + " after version " + lastVersion);
                lastVersion = version;
                return false;
            }
            lastVersion = version;
            writes++;
            return true;
        }

        private static long version(String body) {
            try {
                JsonNode version = JSON.readTree(body).path("version");
                return version.canConvertToLong() ? version.asLong() : -1;
            } catch (IOException e) {
                return -1;
            }
        }

        int measuredWrites() {
            return measured;
        }

        long lastCompletionNanos() {
            return lastCompletionNanos;
        }

        void addLatenciesMs(double[] into, int offset) {
            for (int i = 0; i < measured; i++) {
                into[offset + i] = latenciesNanos[i] / 1e6;
            }
        }
    }

    private static String abbreviate(String text) {
        String flat = text.replaceAll("\\s+", " ").trim();
        return flat.length() <= 300 ? flat : flat.substring(0, 300) + "...";
    }

    /** Errors of all writers: a count and the first few messages. */
    static final class Errors {
        private final AtomicInteger count = new AtomicInteger();
        private final AtomicBoolean tooMany = new AtomicBoolean();
        private final ConcurrentLinkedQueue<String> first = new ConcurrentLinkedQueue<>();
        private final AtomicLong shown = new AtomicLong();

        void add(String message) {
            if (shown.incrementAndGet() <= MAX_ERRORS_SHOWN) {
                first.add(message);
            }
            if (count.incrementAndGet() >= MAX_ERRORS) {
                tooMany.set(true);
            }
        }

        int count() {
            return count.get();
        }

        boolean tooMany() {
            return tooMany.get();
        }

        List<String> first() {
            return List.copyOf(first);
        }

        void failIfAny(String when) {
            if (count() > 0) {
                throw new BenchmarkFailure(count() + " failed write(s) " + when + "; first: "
                        + String.join(" | ", first()));
            }
        }
    }

    // ---- reporting ---------------------------------------------------------------------------

    /**
     * writes/s = acknowledged writes of the measured phase over the time from its start to the
     * last writer's last answer (writers start no request after the phase's end, but finish the
     * one they are in). Latency = from sending a PUT to having its answer, per write.
     */
    private static void report(Options options, List<Writer> writers, double seconds, Errors errors) {
        int total = writers.stream().mapToInt(Writer::measuredWrites).sum();
        if (total == 0) {
            errors.failIfAny("and none acknowledged");
            throw new BenchmarkFailure("no write was acknowledged in " + options.seconds() + " s");
        }
        double[] latencies = new double[total];
        int offset = 0;
        for (Writer writer : writers) {
            writer.addLatenciesMs(latencies, offset);
            offset += writer.measuredWrites();
        }
        LatencyStats latency = LatencyStats.of(latencies);
        double writesPerSecond = total / seconds;
        System.out.printf(Locale.ROOT, """
                        writers             %d
                        measured seconds    %.3f
                        writes              %d
                        writes/s            %.1f
                        write latency       p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (mean %.3f ms, n=%d)
                        errors              %d
                        """,
                options.writers(), seconds, total, writesPerSecond,
                latency.p50(), latency.p90(), latency.p99(), latency.max(), latency.mean(), latency.count(),
                errors.count());
        for (String message : errors.first()) {
            System.out.println("  error: " + message);
        }
        System.out.printf(Locale.ROOT,
                "RESULT writers=%d seconds=%.3f writes=%d writes_per_s=%.1f "
                        + "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f errors=%d%n",
                options.writers(), seconds, total, writesPerSecond,
                latency.p50(), latency.p90(), latency.p99(), latency.max(), errors.count());
        if (errors.count() > 0) {
            System.err.printf("BENCHMARK FAILED: %d failed write(s)%s; first: %s%n", errors.count(),
                    errors.tooMany() ? " (stopped early)" : "", String.join(" | ", errors.first()));
        }
    }

    // ---- plumbing ----------------------------------------------------------------------------

    record Options(URI base, String key, int writers, int seconds, int warmupSeconds, String prefix) {

        /** The API path of a writer's file, e.g. {@code /v1/files/memory/bench/w3.md}. */
        String filePath(String writer) {
            return "/v1/files/memory/" + prefix + "/w" + writer + ".md";
        }

        static Options parse(String[] args) {
            String base = null;
            String key = null;
            int writers = 1;
            int seconds = 10;
            int warmupSeconds = 0;
            String prefix = "bench";
            for (int i = 0; i < args.length; i++) {
                String flag = args[i];
                if (flag.equals("-h") || flag.equals("--help")) {
                    throw new UsageException("Outboard org memory write benchmark");
                }
                if (i + 1 >= args.length) {
                    throw new UsageException("missing value for " + flag);
                }
                String value = args[++i];
                switch (flag) {
                    case "--base" -> base = value;
                    case "--key" -> key = value;
                    case "--writers" -> writers = intIn(flag, value, 1, 1024);
                    case "--seconds" -> seconds = intIn(flag, value, 1, 3600);
                    case "--warmup-seconds" -> warmupSeconds = intIn(flag, value, 0, 3600);
                    case "--prefix" -> prefix = value;
                    default -> throw new UsageException("unknown flag " + flag);
                }
            }
            if (base == null || key == null || key.isBlank()) {
                throw new UsageException("--base and --key are required");
            }
            if (!prefix.matches("[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*") || prefix.contains("..")) {
                throw new UsageException("--prefix must be a plain relative path like bench or team/bench: " + prefix);
            }
            URI uri = URI.create(base.endsWith("/") ? base : base + "/");
            if (!"http".equals(uri.getScheme()) && !"https".equals(uri.getScheme())) {
                throw new UsageException("--base must be an http(s) URL: " + base);
            }
            return new Options(uri, key, writers, seconds, warmupSeconds, prefix);
        }

        private static int intIn(String flag, String value, int min, int max) {
            try {
                int n = Integer.parseInt(value);
                if (n >= min && n <= max) {
                    return n;
                }
            } catch (NumberFormatException ignored) {
                // reported below
            }
            throw new UsageException(flag + " needs an integer from " + min + " to " + max + ", got '" + value + "'");
        }
    }
}
