package dev.outboard.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * An Outboard node as a separate JVM ({@code dev.outboard.Main serve} on this test's classpath),
 * configured only through {@code OUTBOARD_*} environment variables, as in production. Each start
 * writes its own log file; {@link #logTails} shows them when a test fails.
 */
public final class NodeProcess implements AutoCloseable {
  private final String name;
  private final Map<String, String> env;
  private final Path logDir;
  private final String baseUrl;
  private final List<Path> logs = new ArrayList<>();
  private Process process;

  /** {@code env} must hold at least {@code OUTBOARD_HTTP_PORT}; other {@code OUTBOARD_*} variables are not inherited. */
  public NodeProcess(String name, Map<String, String> env) {
    this.name = name;
    this.env = Map.copyOf(env);
    this.logDir = Path.of(System.getProperty("basedir", "."), "target", "it-logs");
    this.baseUrl = "http://127.0.0.1:" + env.get("OUTBOARD_HTTP_PORT");
  }

  public String baseUrl() {
    return baseUrl;
  }

  /** Starts the JVM (again) with the same environment. */
  public void start() throws IOException {
    if (process != null && process.isAlive()) throw new IllegalStateException(name + " is running already");
    Files.createDirectories(logDir);
    Path log = logDir.resolve(name + "-" + (logs.size() + 1) + ".log");
    logs.add(log);
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    ProcessBuilder pb = new ProcessBuilder(java, "-Xmx512m", "-XX:+ExitOnOutOfMemoryError",
        "-cp", System.getProperty("java.class.path"), "dev.outboard.Main", "serve")
        .redirectErrorStream(true)
        .redirectOutput(log.toFile());
    pb.environment().keySet().removeIf(k -> k.startsWith("OUTBOARD_"));
    pb.environment().putAll(env);
    process = pb.start();
  }

  /** Waits until the API answers an anonymous request with 401; fails early if the JVM exits. */
  public void awaitReady(Duration timeout) {
    ApiClient anonymous = new ApiClient(baseUrl, null);
    long deadline = System.nanoTime() + timeout.toNanos();
    while (System.nanoTime() < deadline) {
      if (!process.isAlive()) {
        throw new AssertionError(name + " exited with " + process.exitValue() + " during start-up\n" + logTails(80));
      }
      try {
        if (anonymous.get("/v1/sessions").status() == 401) return;
      } catch (UncheckedIOException notYet) {
        // not listening yet
      }
      sleep(200);
    }
    throw new AssertionError(name + " was not ready within " + timeout + "\n" + logTails(80));
  }

  /** SIGKILL on Linux: no shutdown hooks, no coordinated shutdown, open transactions lost. */
  public int kill() throws InterruptedException {
    process.destroyForcibly();
    if (!process.waitFor(30, TimeUnit.SECONDS)) throw new AssertionError(name + " did not die within 30 s of SIGKILL");
    return process.exitValue();
  }

  public boolean isAlive() {
    return process != null && process.isAlive();
  }

  /** The last {@code lines} lines of every log this node wrote, newest start last. */
  public String logTails(int lines) {
    StringBuilder out = new StringBuilder();
    for (Path log : logs) {
      out.append("----- last ").append(lines).append(" lines of ").append(log.toAbsolutePath()).append(" -----\n");
      try {
        List<String> all = Files.readAllLines(log, StandardCharsets.UTF_8);
        all.subList(Math.max(0, all.size() - lines), all.size()).forEach(l -> out.append(l).append('\n'));
      } catch (IOException e) {
        out.append("(unreadable: ").append(e).append(")\n");
      }
    }
    return out.toString();
  }

  /** SIGTERM (graceful leave), then SIGKILL if the JVM is still there after 20 s. */
  @Override
  public void close() {
    if (process == null || !process.isAlive()) return;
    process.destroy();
    try {
      if (!process.waitFor(20, TimeUnit.SECONDS)) {
        process.destroyForcibly();
        process.waitFor(10, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      process.destroyForcibly();
      Thread.currentThread().interrupt();
    }
  }

  private static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }
}
