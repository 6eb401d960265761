package dev.outboard.sandbox.shell;

import dev.outboard.sandbox.SandboxProvider.ExecResult;
import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.sandbox.SandboxProvider.SandboxGoneException;
import dev.outboard.sandbox.SandboxProvider.State;
import dev.outboard.sandbox.shell.ShellSandboxProvider.ShellCommand;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * One sandbox's long-lived shell, as its {@link ShellSandboxProvider} started it: the process, its
 * pipes, the {@link LoopScript loop} it runs, one command at a time framed by the end marker
 * ({@link EndMarkerScanner}), the kill of a command past its deadline, and suspend, resume and stop
 * of its processes. Hibernated, it has no process until the next command starts one. Once its shell
 * died it is gone, for good. The sandbox's lock (this object) is held to start the shell, run a
 * command, suspend or resume; see {@link ShellSandboxProvider} for what the sandbox promises.
 */
final class ShellProcess {
  /** How long a killed command may take to end before the sandbox is given up. */
  static final long KILL_GRACE_MS = 5000;

  final String id;
  final Path workspace;
  final Limits limits;
  final ExecLedger ledger;
  final ExecOnce execs;
  volatile State state = State.HIBERNATED;
  volatile String goneBecause;

  /** When it was created or last ran a command (epoch milliseconds), for the sweep. */
  volatile long lastUsed = System.currentTimeMillis();

  private final ShellSandboxProvider provider;
  private final String stateFile;
  private final String startedFile;
  private final String namesFile;
  private final String nonce = HexFormat.of().formatHex(ShellSupport.randomBytes(16));
  private volatile Process process;
  private OutputStream stdin;
  private InputStream stdout;
  private byte[] pending = new byte[0];
  private final byte[] readBuffer = new byte[64 * 1024];
  private long commandSeq;
  // The command being run (0: none), so that a late kill hits nothing else.
  private volatile long running;
  private volatile long deadline; // System.nanoTime() by which the running command must end
  private volatile AtomicBoolean timedOut;
  private volatile boolean hopeless; // the watchdog gave up on the shell
  private final Object killing = new Object(); // held while a timed-out command is being killed
  private volatile ProcessHandle shell;
  private long processGroup;

  ShellProcess(ShellSandboxProvider provider, String id, Path workspace, Limits limits) {
    this.provider = provider;
    this.id = id;
    this.workspace = workspace;
    String dir = provider.stateDir(workspace);
    this.stateFile = ShellSupport.ansiQuote(dir + "/.ob-state");
    this.startedFile = ShellSupport.ansiQuote(dir + "/.ob-started");
    this.namesFile = ShellSupport.ansiQuote(dir + "/.ob-names");
    this.limits = limits;
    this.ledger = new ExecLedger(workspace);
    this.execs = new ExecOnce(this, provider.executor);
  }

  // ---- start ------------------------------------------------------------------------------

  /** Starts the shell and waits for it to answer. Called holding the lock. */
  void start() {
    ShellCommand command = provider.shellCommand(workspace);
    ProcessBuilder builder =
        new ProcessBuilder(command.argv())
            .redirectErrorStream(true)
            .directory(command.directory().toFile());
    builder.environment().clear(); // never the service's environment
    builder.environment().putAll(command.environment());
    shell = null;
    processGroup = 0;
    hopeless = false;
    try {
      process = builder.start();
    } catch (IOException e) {
      throw new UncheckedIOException(provider.startFailure() + ": " + e.getMessage(), e);
    }
    stdin = process.getOutputStream();
    stdout = process.getInputStream();
    pending = new byte[0];
    EndMarkerScanner ready = new EndMarkerScanner(nonce, 64 * 1024);
    try {
      sendStart(loop());
      readUntilMarker(ready);
    } catch (SandboxGoneException e) {
      String why = ready.output().strip();
      stopProcesses();
      throw new IllegalStateException(
          provider.startFailure()
              + ": "
              + (why.isEmpty() ? e.getMessage() : ShellSupport.capped(why)));
    }
    state = State.ACTIVE;
    processGroup(); // looked up now, while the shell is bwrap's init's only child
  }

  /** The shell's one loop, given once at the start. */
  private String loop() {
    return LoopScript.render(
        Map.of(
            "MEMORY_KB", Long.toString(Math.max(1, limits.memoryBytes() / 1024)),
            "EXTRA_INIT", provider.extraInit(limits),
            "COMMAND_INIT", provider.commandInit(limits),
            "CPU_SECONDS", Long.toString(cpuSeconds()),
            "CPU_SECONDS_HARD", Long.toString(cpuSeconds() + 1),
            "NONCE", nonce,
            "NAMES_FILE", namesFile,
            "STATE_FILE", stateFile,
            "STARTED_FILE", startedFile));
  }

  /**
   * Sends the start line. A shell that ended before reading it (bwrap failed at once) is not
   * stopped here, which would close its output: it is read to its end, so that what it printed
   * (bwrap's stderr) makes the error.
   */
  private void sendStart(String init) {
    try {
      stdin.write(init.getBytes(StandardCharsets.UTF_8));
      stdin.flush();
    } catch (IOException e) {
      try {
        if (process.waitFor(5, TimeUnit.SECONDS)) {
          return;
        }
      } catch (InterruptedException interrupted) {
        Thread.currentThread().interrupt();
      }
      throw died("its shell no longer reads commands", false);
    }
  }

  // ---- one command ------------------------------------------------------------------------

  /**
   * Runs one command ({@code called}: when exec was called), resuming or cold-starting the sandbox
   * first; notes it in the ledger just before it is sent. Called holding the lock.
   */
  ExecResult run(String executionId, String command, Duration timeout, long called) {
    ensureRunning(); // SIGCONT before the line: a line longer than the pipe buffer needs a reader
    if (!shellRuns()) {
      throw died("its shell exited", false);
    }
    ledger.received(executionId);
    long started = System.nanoTime();
    String line = nonce + " " + ShellSupport.ansiQuote(command) + "\n";
    EndMarkerScanner scanner = new EndMarkerScanner(nonce, limits.maxOutputBytes());
    AtomicBoolean timedOut = new AtomicBoolean();
    long seq = ++commandSeq;
    deadline = started + timeout.toNanos();
    this.timedOut = timedOut;
    synchronized (killing) { // a kill of the command before has ended, so it cannot hit this one
      running = seq; // from here the watchdog may kill it
    }
    long firstOutput;
    try {
      try {
        send(line);
      } catch (SandboxGoneException notSent) {
        ledger.notSent(executionId);
        throw notSent;
      }
      firstOutput = readUntilMarker(scanner);
    } finally {
      running = 0;
    }
    return new ExecResult(
        scanner.exitCode(),
        scanner.outputWithNotes(timedOut.get(), cpuSeconds(), timeout),
        scanner.omittedBytes() > 0,
        timedOut.get(),
        Duration.ofNanos(System.nanoTime() - started),
        Duration.ofNanos(firstOutput - called));
  }

  private long cpuSeconds() {
    Duration cpu = limits.cpuTime();
    return cpu == null ? 3600 : Math.max(1, (cpu.toMillis() + 999) / 1000);
  }

  private void send(String text) {
    try {
      stdin.write(text.getBytes(StandardCharsets.UTF_8));
      stdin.flush();
    } catch (IOException e) {
      throw died("its shell no longer reads commands", false); // so the command never reached it
    }
  }

  /** Reads up to the end marker; returns when (System.nanoTime()) the first bytes came. */
  private long readUntilMarker(EndMarkerScanner scanner) {
    byte[] buffer = readBuffer;
    long first = 0;
    if (pending.length > 0) {
      first = System.nanoTime();
      byte[] carried = pending;
      pending = new byte[0];
      int end = scanner.feed(carried, 0, carried.length);
      if (end >= 0) {
        pending = Arrays.copyOfRange(carried, end, carried.length);
        return first;
      }
    }
    while (true) {
      int n;
      try {
        n = stdout.read(buffer);
      } catch (IOException e) {
        n = -1;
      }
      if (n < 0) {
        throw died("its shell exited", true);
      }
      if (first == 0) {
        first = System.nanoTime();
      }
      int end = scanner.feed(buffer, 0, n);
      if (end >= 0) {
        pending = Arrays.copyOfRange(buffer, end, n);
        return first;
      }
    }
  }

  // ---- deadlines and kills ----------------------------------------------------------------

  /** Called by the watchdog: kills the running command once it is past its deadline. */
  void checkDeadline(long now) {
    long seq = running;
    AtomicBoolean flag = timedOut;
    if (seq == 0 || now - deadline <= 0 || flag == null) {
      return;
    }
    if (flag.compareAndSet(false, true) && running == seq) {
      provider.executor.execute(() -> killCommand(seq));
    } else if (now - deadline > TimeUnit.MILLISECONDS.toNanos(KILL_GRACE_MS)
        && running == seq
        && !hopeless) {
      // Killed, yet no end marker: the shell is stuck. Ending it ends the wait (the reader sees
      // end of file; the sandbox is gone, the command may have run).
      hopeless = true;
      provider.executor.execute(
          () -> {
            synchronized (killing) {
              if (running == seq) {
                stopProcesses();
              }
            }
          });
    }
  }

  /** Kills the running command: every descendant of the shell, not the shell itself. */
  private void killCommand(long seq) {
    ProcessHandle sh = shell();
    if (sh == null) {
      return;
    }
    // Holding the lock: the next command is not sent until this ends, so a pass that finds the
    // command already over kills at most the subshell forked for the next one before it read
    // anything (which ends without a marker; the shell forks another).
    synchronized (killing) {
      for (int pass = 0; pass < 50 && running == seq; pass++) {
        List<ProcessHandle> descendants = sh.descendants().toList();
        if (descendants.isEmpty()) {
          return;
        }
        descendants.forEach(ProcessHandle::destroyForcibly);
        // Killed is not yet gone: a reader that was sent SIGKILL may still take bytes that arrive
        // before it is scheduled, so the next line is sent only once the killed have exited.
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(1); // for all of them together
        for (ProcessHandle d : descendants) {
          try {
            d.onExit().get(Math.max(0, until - System.nanoTime()), TimeUnit.NANOSECONDS);
          } catch (ExecutionException | TimeoutException e) {
            // gone or stuck; the next pass looks again
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return;
          }
        }
      }
    }
  }

  // ---- gone -------------------------------------------------------------------------------

  private SandboxGoneException died(String why, boolean commandMayHaveRun) {
    gone(why);
    stopProcesses();
    return new SandboxGoneException(id, why, true, commandMayHaveRun);
  }

  void gone(String why) {
    if (goneBecause == null) {
      goneBecause = why;
    }
  }

  /**
   * The state, once an active or suspended sandbox's shell is known to run; if it died, the sandbox
   * is gone, as after a failed exec. Does not take the lock, so a long command does not hold up a
   * health check: hibernate, destroy and close say first that the deaths are theirs.
   */
  State checkedState() {
    State now = state;
    if (now == State.HIBERNATED || shellRuns()) {
      return now;
    }
    if (state != State.HIBERNATED) {
      gone("its shell exited");
      provider.executor.execute(this::stopProcesses); // whatever is left of it
    }
    if (goneBecause != null) {
      throw new SandboxGoneException(id, goneBecause);
    }
    return state;
  }

  /** Whether the started process (and the shell, once looked up) still runs; true if none. */
  private boolean shellRuns() {
    Process p = process;
    ProcessHandle sh = shell;
    return p == null || (p.isAlive() && (sh == null || sh.isAlive()));
  }

  // ---- the processes: suspend, resume, stop -----------------------------------------------

  private ProcessHandle shell() {
    Process p = process;
    if (shell == null && p != null) {
      shell = provider.shellOf(p);
    }
    return shell;
  }

  /** The shell's process group; 0 when unknown or (never expected) the service's own group. */
  private long processGroup() {
    if (processGroup == 0) {
      ProcessHandle sh = shell();
      if (sh != null) {
        long group = ShellSupport.processGroupOf(sh.pid());
        processGroup = group == provider.ownProcessGroup ? 0 : group;
      }
    }
    return processGroup;
  }

  void suspend() {
    if (state != State.ACTIVE) {
      return;
    }
    long group = processGroup();
    if (group <= 0) {
      throw new IllegalStateException(
          "cannot suspend sandbox " + id + ": its process group is unknown");
    }
    if (!provider.signaller().send("STOP", "-" + group)) {
      throw new IllegalStateException(
          "cannot suspend sandbox " + id + ": its process group " + group + " is gone");
    }
    state = State.SUSPENDED;
  }

  /** Resumes a suspended sandbox, or cold-starts a hibernated one. Called holding the lock. */
  void ensureRunning() {
    if (goneBecause != null) {
      throw SandboxGoneException.beforeCommand(id, goneBecause);
    }
    if (state == State.SUSPENDED) {
      continueProcesses();
    } else if (state == State.HIBERNATED) {
      start();
    }
  }

  /** SIGCONT; a sandbox that cannot be continued is gone (its processes are then stopped). */
  private void continueProcesses() {
    if (processGroup <= 0 || !provider.signaller().send("CONT", "-" + processGroup)) {
      throw died("it could not be resumed", false);
    }
    state = State.ACTIVE;
  }

  /**
   * Marks the sandbox hibernated (first, so that state() takes the deaths as ours) and stops it.
   */
  void hibernate() {
    state = State.HIBERNATED;
    stopProcesses();
  }

  /** Kills the shell, its descendants and, if the provider says so, the rest of its group. */
  void stopProcesses() {
    Process p = process;
    if (p == null) {
      return;
    }
    long group = provider.stopKillsProcessGroup() ? processGroup() : 0;
    if (group > 0) {
      provider
          .signaller()
          .send("KILL", "-" + group); // also orphans re-parented away from the shell
      provider.signaller().send("CONT", "-" + group); // a stopped group dies only once continued
    }
    p.toHandle().descendants().forEach(ProcessHandle::destroyForcibly);
    p.destroyForcibly();
    try {
      p.waitFor(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    process = null;
  }
}
