package dev.outboard.testing;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * Faults of the local PostgreSQL cluster (the one {@link TestPostgres} uses), for fault campaigns:
 * a fast restart through {@code pg_ctlcluster}, and a pause (SIGSTOP of the postmaster and every
 * process below it, SIGCONT after a while). This needs root (the processes belong to {@code
 * postgres}) and Debian's {@code pg_ctlcluster}; {@link #local()} says why it cannot when it
 * cannot.
 *
 * <p>A paused server is always continued: by {@link #pause} itself (try/finally), by {@link
 * #resume()}, which callers also run in their own finally, and by a JVM shutdown hook.
 */
public final class PostgresControl {
  private static final Path ETC = Path.of("/etc/postgresql");
  private static final Duration READY = Duration.ofSeconds(60);

  /** Every pid this class stopped and has not yet continued; the shutdown hook continues them. */
  private static final Set<Long> STOPPED = new LinkedHashSet<>();

  private static boolean hookInstalled;

  private final String version;
  private final String cluster;

  private PostgresControl(String version, String cluster) {
    this.version = version;
    this.cluster = cluster;
  }

  /** What {@link #local()} found: a control, or why there is none. */
  public record Availability(Optional<PostgresControl> control, String reason) {}

  /**
   * The local cluster ({@code main} of the newest version under {@code /etc/postgresql}) if this
   * process may restart and signal it: {@code pg_ctlcluster} on the PATH, the cluster's pid file
   * readable, and {@code kill -0} of its postmaster allowed.
   */
  public static Availability local() {
    if (!onPath("pg_ctlcluster")) return none("pg_ctlcluster is not on the PATH");
    String version;
    try (Stream<Path> dirs = Files.list(ETC)) {
      version =
          dirs.map(p -> p.getFileName().toString())
              .filter(v -> v.matches("\\d+(\\.\\d+)?"))
              .max(Comparator.comparingDouble(Double::parseDouble))
              .orElse(null);
    } catch (IOException e) {
      return none(ETC + " is not readable (" + e.getMessage() + ")");
    }
    if (version == null) return none("no cluster version under " + ETC);
    PostgresControl control = new PostgresControl(version, "main");
    long pid;
    try {
      pid = control.postmasterPid();
    } catch (IllegalStateException e) {
      return none(e.getMessage());
    }
    if (run(List.of("kill", "-0", Long.toString(pid)), Duration.ofSeconds(5)) != 0) {
      return none("this user may not signal the postmaster (pid " + pid + "; run as root)");
    }
    installHook();
    return new Availability(
        Optional.of(control), "PostgreSQL " + version + "/main, postmaster pid " + pid);
  }

  private static Availability none(String why) {
    return new Availability(Optional.empty(), why);
  }

  public String describe() {
    return version + "/" + cluster;
  }

  /**
   * {@code pg_ctlcluster ... restart -m fast} (every connection is cut), then waits until it
   * accepts connections.
   */
  public void restart() {
    int exit =
        run(
            List.of(
                "pg_ctlcluster",
                "--skip-systemctl-redirect",
                version,
                cluster,
                "restart",
                "-m",
                "fast"),
            Duration.ofSeconds(120));
    if (exit != 0) throw new AssertionError("pg_ctlcluster restart exited with " + exit);
    awaitReady();
  }

  /**
   * SIGSTOP of the postmaster and all its processes for {@code duration}, then SIGCONT; returns how
   * many processes were stopped.
   */
  public int pause(Duration duration) throws InterruptedException {
    List<Long> pids = processes();
    try {
      synchronized (STOPPED) {
        STOPPED.addAll(pids);
      }
      // The postmaster first, so that it starts no new backend while the others are being stopped.
      signal("STOP", pids);
      Thread.sleep(duration.toMillis());
    } finally {
      resume();
    }
    return pids.size();
  }

  /** SIGCONT of every process this class stopped and of the cluster's current processes. */
  public void resume() {
    resumeStopped();
    try {
      signal("CONT", processes());
    } catch (IllegalStateException notRunning) {
      // no postmaster (a restart in progress or failed): nothing is stopped
    }
  }

  /** Continues anything stopped, then starts the cluster if it does not accept connections. */
  public void ensureRunning() {
    resume();
    if (ready()) return;
    run(
        List.of("pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "start"),
        Duration.ofSeconds(120));
    awaitReady();
  }

  public static boolean ready() {
    return run(List.of("pg_isready", "-h", "127.0.0.1", "-q"), Duration.ofSeconds(10)) == 0;
  }

  private void awaitReady() {
    long deadline = System.nanoTime() + READY.toNanos();
    while (!ready()) {
      if (System.nanoTime() > deadline)
        throw new AssertionError("PostgreSQL " + describe() + " not ready within " + READY);
      ScriptedSessions.sleep(100);
    }
  }

  /** The postmaster and every process below it, the postmaster first. */
  private List<Long> processes() {
    long pid = postmasterPid();
    List<Long> out = new ArrayList<>(List.of(pid));
    ProcessHandle.of(pid).ifPresent(p -> p.descendants().forEach(d -> out.add(d.pid())));
    return out;
  }

  private long postmasterPid() {
    Path pidFile = Path.of("/var/run/postgresql", version + "-" + cluster + ".pid");
    try {
      return Long.parseLong(
          Files.readString(pidFile, StandardCharsets.UTF_8).strip().lines().findFirst().orElse(""));
    } catch (IOException | NumberFormatException e) {
      throw new IllegalStateException(
          "the postmaster's pid file " + pidFile + " is not readable (" + e + ")");
    }
  }

  private static void resumeStopped() {
    List<Long> pids;
    synchronized (STOPPED) {
      pids = new ArrayList<>(STOPPED);
      STOPPED.clear();
    }
    if (!pids.isEmpty()) signal("CONT", pids);
  }

  private static synchronized void installHook() {
    if (hookInstalled) return;
    hookInstalled = true;
    Runtime.getRuntime()
        .addShutdownHook(new Thread(PostgresControl::resumeStopped, "postgres-sigcont"));
  }

  private static void signal(String signal, List<Long> pids) {
    if (pids.isEmpty()) return;
    List<String> command = new ArrayList<>(List.of("kill", "-" + signal));
    pids.forEach(p -> command.add(Long.toString(p)));
    run(
        command,
        Duration.ofSeconds(
            10)); // a backend that ended meanwhile makes kill exit 1; the rest got it
  }

  private static boolean onPath(String program) {
    String path = System.getenv("PATH");
    if (path == null) return false;
    for (String dir : path.split(":")) if (Files.isExecutable(Path.of(dir, program))) return true;
    return false;
  }

  /**
   * Runs {@code command} to its end (even when this thread is interrupted: a SIGCONT must get out);
   * its exit code, -1 if it could not.
   */
  private static int run(List<String> command, Duration timeout) {
    Process p;
    try {
      p =
          new ProcessBuilder(command)
              .redirectErrorStream(true)
              .redirectOutput(ProcessBuilder.Redirect.DISCARD)
              .start();
    } catch (IOException e) {
      return -1;
    }
    boolean interrupted = Thread.interrupted();
    try {
      long deadline = System.nanoTime() + timeout.toNanos();
      while (true) {
        try {
          if (p.waitFor(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS))
            return p.exitValue();
          p.destroyForcibly();
          return -1;
        } catch (InterruptedException e) {
          interrupted = true;
        }
      }
    } finally {
      if (interrupted) Thread.currentThread().interrupt();
    }
  }
}
