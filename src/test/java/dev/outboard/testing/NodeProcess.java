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
 * An Outboard node as a separate JVM ({@code dev.outboard.Main serve} on this test's classpath, or
 * the packaged jar: {@link #ofJar}), configured only through {@code OUTBOARD_*} environment
 * variables, as in production. Each start writes its own log file; {@link #logTails} shows them
 * when a test fails.
 */
public final class NodeProcess implements AutoCloseable {
  private final String name;
  private final Map<String, String> env;
  private final List<String> jvmArgs;
  private final Path logDir;
  private final String baseUrl;
  private final List<String> main;
  private final List<String> args;
  private final List<Path> logs = new ArrayList<>();
  private Process process;

  /**
   * {@code env} must hold at least {@code OUTBOARD_HTTP_PORT}; other {@code OUTBOARD_*} variables
   * (and the model providers' {@code ANTHROPIC_*} / {@code OPENAI_*}) are not inherited.
   */
  public NodeProcess(String name, Map<String, String> env) {
    this(name, env, List.of(), List.of("serve"));
  }

  /** With the command line {@code args} (e.g. {@code serve --role sandbox-host}). */
  public NodeProcess(String name, Map<String, String> env, List<String> args) {
    this(name, env, List.of(), args);
  }

  /**
   * {@code jvmArgs} go before the main class (e.g. {@code -Dconfig.file=conf/cluster.conf}), {@code
   * args} after it.
   */
  public NodeProcess(
      String name, Map<String, String> env, List<String> jvmArgs, List<String> args) {
    this(
        name,
        env,
        jvmArgs,
        List.of("-cp", System.getProperty("java.class.path"), "dev.outboard.Main"),
        args);
  }

  /** The packaged service instead: {@code java -jar jar args}. */
  public static NodeProcess ofJar(
      String name, Path jar, Map<String, String> env, List<String> args) {
    return new NodeProcess(name, env, List.of(), List.of("-jar", jar.toString()), args);
  }

  private NodeProcess(
      String name,
      Map<String, String> env,
      List<String> jvmArgs,
      List<String> main,
      List<String> args) {
    this.name = name;
    this.main = List.copyOf(main);
    this.args = List.copyOf(args);
    this.env = new java.util.HashMap<>(env);
    this.jvmArgs = List.copyOf(jvmArgs);
    this.logDir = Path.of(System.getProperty("basedir", "."), "target", "it-logs");
    this.baseUrl = "http://127.0.0.1:" + env.get("OUTBOARD_HTTP_PORT");
  }

  public String baseUrl() {
    return baseUrl;
  }

  public String name() {
    return name;
  }

  /** The management port's base URL ({@code OUTBOARD_MANAGEMENT_PORT}). */
  public String managementUrl() {
    return "http://127.0.0.1:" + env.get("OUTBOARD_MANAGEMENT_PORT");
  }

  /**
   * Changes one variable for the next {@link #start}, e.g. {@code OUTBOARD_APP_VERSION} for a new
   * release.
   */
  public void setEnv(String key, String value) {
    env.put(key, value);
  }

  /** Starts the JVM (again) with the same environment. */
  public void start() throws IOException {
    if (process != null && process.isAlive())
      throw new IllegalStateException(name + " is running already");
    Files.createDirectories(logDir);
    Path log = logDir.resolve(name + "-" + (logs.size() + 1) + ".log");
    logs.add(log);
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    List<String> command =
        new ArrayList<>(List.of(java, "-Xmx512m", "-XX:+ExitOnOutOfMemoryError"));
    // The test classpath holds logback-test.xml, which only buffers; a node logs as in production.
    if (jvmArgs.stream().noneMatch(a -> a.startsWith("-Dlogback.configurationFile=")))
      command.add("-Dlogback.configurationFile=logback.xml");
    command.addAll(jvmArgs);
    command.addAll(main);
    command.addAll(args);
    ProcessBuilder pb =
        new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile());
    pb.environment()
        .keySet()
        .removeIf(
            k ->
                k.startsWith("OUTBOARD_") || k.startsWith("ANTHROPIC_") || k.startsWith("OPENAI_"));
    pb.environment().putAll(env);
    process = pb.start();
  }

  /** Waits until the API answers an anonymous request with 401; fails early if the JVM exits. */
  public void awaitReady(Duration timeout) {
    awaitAnswer(new ApiClient(baseUrl, null), "/v1/sessions", 401, timeout);
  }

  /**
   * Waits until the management port's {@code /ready} answers 200 (member Up, sharding registered
   * with its coordinator, no shutdown under way); fails early if the JVM exits.
   */
  public void awaitReadyProbe(Duration timeout) {
    awaitAnswer(new ApiClient(managementUrl(), null), "/ready", 200, timeout);
  }

  /**
   * Waits until {@code GET baseUrl + path}, without a token, answers {@code status} (e.g. a sandbox
   * host's {@code /v1/health} answering 401); fails early if the JVM exits.
   */
  public void awaitAnswer(String baseUrl, String path, int status, Duration timeout) {
    awaitAnswer(new ApiClient(baseUrl, null), path, status, timeout);
  }

  private void awaitAnswer(ApiClient client, String path, int status, Duration timeout) {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (System.nanoTime() < deadline) {
      if (!process.isAlive()) {
        throw new AssertionError(
            name + " exited with " + process.exitValue() + " during start-up\n" + logTails(80));
      }
      try {
        if (client.get(path).status() == status) return;
      } catch (UncheckedIOException notYet) {
        // not listening yet
      }
      sleep(100);
    }
    throw new AssertionError(name + " was not ready within " + timeout + "\n" + logTails(80));
  }

  /**
   * SIGTERM and waits for the JVM to exit; returns how long that took. Fails if it outlives {@code
   * timeout}.
   */
  public Duration terminate(Duration timeout) throws InterruptedException {
    long t0 = System.nanoTime();
    process.destroy();
    if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
      process.destroyForcibly();
      throw new AssertionError(
          name + " did not exit within " + timeout + " of SIGTERM\n" + logTails(60));
    }
    return Duration.ofNanos(System.nanoTime() - t0);
  }

  /** SIGKILL on Linux: no shutdown hooks, no coordinated shutdown, open transactions lost. */
  public int kill() throws InterruptedException {
    process.destroyForcibly();
    if (!process.waitFor(30, TimeUnit.SECONDS))
      throw new AssertionError(name + " did not die within 30 s of SIGKILL");
    return process.exitValue();
  }

  /**
   * Waits for the JVM to end by itself; its exit code, or an AssertionError (the JVM is killed)
   * after {@code timeout}.
   */
  public int awaitExit(Duration timeout) throws InterruptedException {
    if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
      process.destroyForcibly();
      throw new AssertionError(name + " did not exit within " + timeout + "\n" + logTails(80));
    }
    return process.exitValue();
  }

  /** The log files of every start so far, oldest first. */
  public List<Path> logs() {
    return List.copyOf(logs);
  }

  /** The whole log of the latest start. */
  public String log() throws IOException {
    return Files.readString(logs.get(logs.size() - 1), StandardCharsets.UTF_8);
  }

  /** The running JVM's process (its descendants: e.g. a sandbox host's bwrap trees). */
  public ProcessHandle handle() {
    if (process == null) throw new IllegalStateException(name + " was never started");
    return process.toHandle();
  }

  public boolean isAlive() {
    return process != null && process.isAlive();
  }

  /** The last {@code lines} lines of every log this node wrote, newest start last. */
  public String logTails(int lines) {
    StringBuilder out = new StringBuilder();
    for (Path log : logs) {
      out.append("----- last ")
          .append(lines)
          .append(" lines of ")
          .append(log.toAbsolutePath())
          .append(" -----\n");
      try {
        List<String> all = Files.readAllLines(log, StandardCharsets.UTF_8);
        all.subList(Math.max(0, all.size() - lines), all.size())
            .forEach(l -> out.append(l).append('\n'));
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
