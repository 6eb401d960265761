import dev.outboard.sandbox.SandboxProvider.ExecResult;
import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.sandbox.bwrap.BwrapSandboxProvider;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The bubblewrap sandbox provider in this JVM, one operation at a time, N trials each:
 *
 * <ul>
 *   <li>warm exec: {@code true} in a running sandbox, call to result;
 *   <li>resume: {@code echo x} right after suspend (exec resumes transparently), from the call to
 *       the first byte of the command's output as the provider measures it ({@code firstOutput},
 *       the definition), and to the whole result;
 *   <li>cold start: create + first {@code true}.
 * </ul>
 *
 * <p>The resume rows are measured twice: right after the suspend (as the bar is judged) and after
 * the sandbox idled {@code idle ms} (default 5), where waking idle CPUs adds to every row, even a
 * bare SIGCONT.
 *
 * <p>Compiled and run by bench-sandbox.sh against ../target/outboard.jar:
 * {@code SandboxBenchmark <root dir> <trials> [idle ms]}. Prints {@code RESULT <name> p50_ms=.. p99_ms=..}.
 */
public final class SandboxBenchmark {
  public static void main(String[] args) throws Exception {
    Path root = Path.of(args[0]);
    int trials = Integer.parseInt(args[1]);
    long idleMillis = args.length > 2 ? Long.parseLong(args[2]) : 5;
    records = args.length <= 3 || !args[3].equals("0");
    Files.createDirectories(root);
    ExecutorService executor = Executors.newCachedThreadPool();
    Limits limits = new Limits(512L << 20, 128, Duration.ofSeconds(60), 64 * 1024, Duration.ofSeconds(30));
    try (BwrapSandboxProvider provider = new BwrapSandboxProvider(root, executor)) {
      if (!provider.available()) {
        System.err.println(BwrapSandboxProvider.NOT_INSTALLED);
        System.exit(2);
      }
      String id = provider.create(limits, null).toCompletableFuture().join();
      long[] warm = new long[trials];
      for (int i = 0; i < 200; i++) { // JIT warm-up, untimed
        exec(provider, id, "true");
      }
      for (int i = 0; i < trials; i++) {
        long t0 = System.nanoTime();
        exec(provider, id, "true");
        warm[i] = System.nanoTime() - t0;
      }
      resumeTrials(provider, id, 200, 0); // JIT warm-up of the suspend/resume path, untimed
      // Resume right after suspend (the established measure), and after the sandbox idled a while.
      long[][] resume = resumeTrials(provider, id, trials, 0);
      long[][] resumeIdle = resumeTrials(provider, id, trials, idleMillis);
      provider.destroy(id).toCompletableFuture().join();
      long[] cold = new long[trials];
      for (int i = 0; i < trials; i++) {
        long t0 = System.nanoTime();
        String fresh = provider.create(limits, null).toCompletableFuture().join();
        exec(provider, fresh, "true");
        cold[i] = System.nanoTime() - t0;
        provider.destroy(fresh).toCompletableFuture().join();
      }
      report("warm_exec", warm);
      report("resume_to_first_output", resume[0]);
      report("resume_to_result", resume[1]);
      report("resume_only", resume[2]);
      report("resume_after_idle_to_first_output", resumeIdle[0]);
      report("resume_after_idle_only", resumeIdle[2]);
      report("cold_start", cold);
    } finally {
      executor.shutdownNow();
    }
  }

  /**
   * {@code trials} resumes, each after a suspend and {@code idleMillis} of idling: {time to the
   * first output of `echo x`, time to its whole result, time of a bare resume (SIGCONT, no command)}.
   */
  static long[][] resumeTrials(BwrapSandboxProvider provider, String id, int trials, long idleMillis) throws InterruptedException {
    long[] first = new long[trials];
    long[] result = new long[trials];
    long[] bare = new long[trials];
    for (int i = 0; i < trials; i++) {
      provider.suspend(id).toCompletableFuture().join();
      if (idleMillis > 0) {
        Thread.sleep(idleMillis);
      }
      long t0 = System.nanoTime();
      ExecResult r = provider.exec(id, executionId(), "echo x", null).toCompletableFuture().join();
      result[i] = System.nanoTime() - t0;
      first[i] = r.firstOutput().toNanos();
      if (!r.output().equals("x\n")) {
        throw new IllegalStateException("unexpected output after resume: " + r.output());
      }
    }
    for (int i = 0; i < trials; i++) {
      provider.suspend(id).toCompletableFuture().join();
      if (idleMillis > 0) {
        Thread.sleep(idleMillis);
      }
      long t0 = System.nanoTime();
      provider.resume(id).toCompletableFuture().join();
      bare[i] = System.nanoTime() - t0;
    }
    return new long[][] {first, result, bare};
  }

  /** Each command with its own execution id, as a session's tool calls have (so its execution records are written). */
  static String exec(BwrapSandboxProvider provider, String id, String command) {
    return provider.exec(id, executionId(), command, null).toCompletableFuture().join().output();
  }

  private static long executions;
  /** False: commands without execution ids, so no execution records are written (to show what they cost). */
  private static boolean records = true;

  static String executionId() {
    return records ? "bench-" + ++executions : null;
  }

  static void report(String name, long[] nanos) {
    long[] sorted = nanos.clone();
    Arrays.sort(sorted);
    System.out.println(String.format(Locale.ROOT, "RESULT %s trials=%d p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f",
        name, sorted.length, pct(sorted, 50), pct(sorted, 90), pct(sorted, 99), sorted[sorted.length - 1] / 1e6));
  }

  static double pct(long[] sorted, int p) {
    int index = (int) Math.ceil(p / 100.0 * sorted.length) - 1;
    return sorted[Math.max(0, index)] / 1e6;
  }
}
