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
 *   <li>resume: {@code echo x} right after suspend, call to result (exec resumes transparently);
 *   <li>cold start: create + first {@code true}.
 * </ul>
 *
 * <p>Compiled and run by bench-sandbox.sh against ../target/outboard.jar:
 * {@code SandboxBenchmark <root dir> <trials>}. Prints {@code RESULT <name> p50_ms=.. p99_ms=..}.
 */
public final class SandboxBenchmark {
  public static void main(String[] args) throws Exception {
    Path root = Path.of(args[0]);
    int trials = Integer.parseInt(args[1]);
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
      long[] resume = new long[trials];
      for (int i = 0; i < 200; i++) { // JIT warm-up, untimed
        exec(provider, id, "true");
      }
      for (int i = 0; i < trials; i++) {
        long t0 = System.nanoTime();
        exec(provider, id, "true");
        warm[i] = System.nanoTime() - t0;
      }
      for (int i = 0; i < trials; i++) {
        provider.suspend(id).toCompletableFuture().join();
        long t0 = System.nanoTime();
        String out = exec(provider, id, "echo x");
        resume[i] = System.nanoTime() - t0;
        if (!out.equals("x\n")) {
          throw new IllegalStateException("unexpected output after resume: " + out);
        }
      }
      // The resume step alone (SIGCONT through the signal helper), without the command.
      long[] resumeOnly = new long[trials];
      for (int i = 0; i < trials; i++) {
        provider.suspend(id).toCompletableFuture().join();
        long t0 = System.nanoTime();
        provider.resume(id).toCompletableFuture().join();
        resumeOnly[i] = System.nanoTime() - t0;
      }
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
      report("resume_to_first_output", resume);
      report("resume_only", resumeOnly);
      report("cold_start", cold);
    } finally {
      executor.shutdownNow();
    }
  }

  static String exec(BwrapSandboxProvider provider, String id, String command) {
    return provider.exec(id, null, command, null).toCompletableFuture().join().output();
  }

  static void report(String name, long[] nanos) {
    long[] sorted = nanos.clone();
    Arrays.sort(sorted);
    System.out.println(String.format(Locale.ROOT, "RESULT %s trials=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f",
        name, sorted.length, pct(sorted, 50), pct(sorted, 99), sorted[sorted.length - 1] / 1e6));
  }

  static double pct(long[] sorted, int p) {
    int index = (int) Math.ceil(p / 100.0 * sorted.length) - 1;
    return sorted[Math.max(0, index)] / 1e6;
  }
}
