package dev.outboard.sandbox.bwrap;

import dev.outboard.sandbox.shell.EndMarkerScanner;
import dev.outboard.sandbox.shell.ShellSupport;
import dev.outboard.sandbox.shell.Signaller;
import dev.outboard.sandbox.shell.WorkspacePaths;
import dev.outboard.sandbox.SandboxProvider;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Supplier;

/**
 * Sandboxes on this machine with bubblewrap (DESIGN.md §4, §7). A sandbox is one long-lived
 * {@code bwrap} process running {@code bash}, which reads commands from a pipe.
 *
 * <p><b>Isolation.</b> {@code --unshare-all} gives each sandbox its own user, mount, pid, network
 * (loopback only, and not the host's), ipc, uts and cgroup namespaces; {@code --die-with-parent}
 * and {@code --new-session}. The visible filesystem is: {@code /usr} read-only (with the
 * {@code /bin}, {@code /lib}, {@code /lib64} symlinks), a synthetic {@code /etc} (our own
 * passwd/group/hosts plus read-only {@code ld.so.cache}, {@code alternatives} and
 * {@code localtime} — never the host's {@code /etc} as a whole), a fresh {@code /proc} and
 * {@code /dev}, a private tmpfs {@code /tmp}, and the workspace at {@code /workspace}. The
 * environment is cleared down to PATH, HOME=/workspace and LANG=C.UTF-8.
 *
 * <p><b>User and process limit.</b> Inside, the shell runs as uid/gid 65534. RLIMIT_NPROC is
 * counted per real uid and is ignored for host root: if bwrap ran as root, uid 65534 inside would
 * be root outside and a fork bomb would be unbounded. So when the service runs as root, bwrap is
 * started through {@code setpriv} as host uid/gid 65534 (an unprivileged user namespace), the
 * workspace is owned by 65534, and {@code ulimit -u} in the shell really bounds the process count
 * (per user namespace, so one sandbox's count does not eat another's).
 *
 * <p><b>Limits.</b> {@code ulimit -v} (RLIMIT_AS, per process) and {@code ulimit -u} in the shell;
 * {@code ulimit -t} (RLIMIT_CPU) in each command's subshell, so it is per command. No cgroups: they
 * are often unavailable to containers; memory is therefore capped per process, not per sandbox.
 *
 * <p><b>Commands.</b> Each command runs in a subshell of the long-lived shell, with stdin from
 * /dev/null; on exit the subshell writes its working directory and exported variables to a state
 * file that the parent shell sources, so {@code cd} and {@code export} persist as in a terminal,
 * while a timed-out command can be killed (its subshell and descendants) without losing the shell.
 * Output ends with a random per-sandbox marker carrying the exit code.
 *
 * <p><b>Suspend.</b> SIGSTOP/SIGCONT of the sandbox's process group (the session bwrap created),
 * sent through one long-lived host shell ({@link Signaller}) because Java cannot send SIGSTOP; a
 * cgroup freezer would also catch processes that leave the group with setsid, but needs a
 * writable cgroup hierarchy.
 */
public final class BwrapSandboxProvider implements SandboxProvider {
  public static final String NOT_INSTALLED =
      "bubblewrap (bwrap) is not installed; install the Debian/Ubuntu package 'bubblewrap'";
  static final int SANDBOX_ID = 65534;
  private static final int EXEC_CACHE = 1000;
  private static final long WATCHDOG_MS = 20;
  private static final long MAX_READ_BYTES = 10L << 20;
  private static final String SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin";
  private static final String STATE_FILE = "/tmp/.ob";

  private final Path root;
  private final Executor executor;
  private final Optional<Path> bwrap;
  private final boolean hostRoot;
  private final ScheduledExecutorService timers;
  private final Map<String, Sandbox> sandboxes = new ConcurrentHashMap<>();
  private final long ownProcessGroup = processGroupOf(ProcessHandle.current().pid());
  private Path etc;
  private Signaller signaller;

  public BwrapSandboxProvider(Path root, Executor executor) {
    this(root, executor, findOnPath("bwrap"));
  }

  /** With {@code bwrap} given (tests: empty stands for a host without bubblewrap). */
  BwrapSandboxProvider(Path root, Executor executor, Optional<Path> bwrap) {
    this.root = root.toAbsolutePath();
    this.executor = executor;
    this.bwrap = bwrap;
    this.hostRoot = currentUid() == 0;
    this.timers =
        Executors.newSingleThreadScheduledExecutor(
            r -> {
              Thread t = new Thread(r, "bwrap-sandbox-timeouts");
              t.setDaemon(true);
              return t;
            });
    // One periodic check instead of a timer per command: scheduling a timer wakes the timer thread
    // on every exec, which showed in the warm exec round trip. Timeouts are precise to WATCHDOG.
    timers.scheduleAtFixedRate(
        () -> {
          long now = System.nanoTime();
          sandboxes.values().forEach(s -> s.checkDeadline(now));
        },
        WATCHDOG_MS,
        WATCHDOG_MS,
        TimeUnit.MILLISECONDS);
  }

  /** Whether bubblewrap is on PATH (without it, {@link #create} fails with {@link #NOT_INSTALLED}). */
  public boolean available() {
    return bwrap.isPresent();
  }

  // ---- SPI --------------------------------------------------------------------------------

  @Override
  public CompletionStage<String> create(Limits limits, byte[] snapshot) {
    if (bwrap.isEmpty()) {
      return CompletableFuture.failedFuture(new IllegalStateException(NOT_INSTALLED));
    }
    return async(
        () -> {
          String id = "sbx-" + HexFormat.of().formatHex(ShellSupport.randomBytes(16));
          Path workspace = root.resolve(id).resolve("workspace");
          try {
            checkTraversable();
            Files.createDirectories(workspace);
            Files.setPosixFilePermissions(workspace.getParent(), PosixFilePermissions.fromString("rwx--x--x"));
            chown(workspace);
            if (snapshot != null && snapshot.length > 0) {
              untar(workspace, snapshot);
            }
          } catch (IOException e) {
            throw new UncheckedIOException(e);
          }
          Sandbox sandbox = new Sandbox(id, workspace, limits);
          sandboxes.put(id, sandbox);
          synchronized (sandbox) {
            sandbox.start();
          }
          return id;
        });
  }

  @Override
  public CompletionStage<ExecResult> exec(String sandboxId, String executionId, String command, Duration timeout) {
    Sandbox sandbox;
    try {
      sandbox = sandbox(sandboxId);
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
    return sandbox.exec(executionId, command, timeout == null ? sandbox.limits.defaultTimeout() : timeout);
  }

  @Override
  public CompletionStage<String> read(String sandboxId, String path) {
    return async(
        () -> {
          Sandbox sandbox = sandbox(sandboxId);
          Path file = WorkspacePaths.resolve(sandbox.workspace, path);
          try {
            BasicFileAttributes attributes =
                Files.readAttributes(file, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
            if (attributes.isDirectory()) {
              throw new IllegalArgumentException(path + " is a directory; use list");
            }
            if (attributes.size() > MAX_READ_BYTES) {
              throw new IllegalArgumentException(
                  path + " is " + attributes.size() + " bytes; read handles files up to " + MAX_READ_BYTES);
            }
            byte[] bytes;
            try (InputStream in = Files.newInputStream(file, LinkOption.NOFOLLOW_LINKS)) {
              bytes = in.readNBytes((int) MAX_READ_BYTES);
            }
            return StandardCharsets.UTF_8
                .newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT)
                .decode(ByteBuffer.wrap(bytes))
                .toString();
          } catch (NoSuchFileException e) {
            throw new IllegalArgumentException("no such file: " + path);
          } catch (CharacterCodingException e) {
            throw new IllegalArgumentException(path + " is not UTF-8 text");
          } catch (IOException e) {
            throw new UncheckedIOException(e);
          }
        });
  }

  @Override
  public CompletionStage<Void> write(String sandboxId, String path, String content) {
    return async(
        () -> {
          Sandbox sandbox = sandbox(sandboxId);
          Path file = WorkspacePaths.resolve(sandbox.workspace, path);
          if (WorkspacePaths.relative(path).isEmpty()) {
            throw new IllegalArgumentException("cannot write /workspace itself; give a file path");
          }
          try {
            createDirectoriesOwned(file.getParent());
            if (Files.isDirectory(file, LinkOption.NOFOLLOW_LINKS)) {
              throw new IllegalArgumentException(path + " is a directory");
            }
            Files.write(
                file,
                content.getBytes(StandardCharsets.UTF_8),
                StandardOpenOption.CREATE,
                StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE,
                LinkOption.NOFOLLOW_LINKS);
            chown(file);
            return null;
          } catch (IOException e) {
            throw new UncheckedIOException(e);
          }
        });
  }

  @Override
  public CompletionStage<List<Entry>> list(String sandboxId, String path) {
    return async(
        () -> {
          Sandbox sandbox = sandbox(sandboxId);
          Path dir = WorkspacePaths.resolve(sandbox.workspace, path);
          if (!Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) {
            throw new IllegalArgumentException(
                Files.exists(dir, LinkOption.NOFOLLOW_LINKS) ? path + " is not a directory" : "no such directory: " + path);
          }
          List<Entry> entries = new ArrayList<>();
          try (var children = Files.list(dir)) {
            for (Path child : (Iterable<Path>) children::iterator) {
              BasicFileAttributes a = Files.readAttributes(child, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
              entries.add(new Entry(WorkspacePaths.sandboxPath(sandbox.workspace, child), a.isDirectory(), a.size()));
            }
          } catch (IOException e) {
            throw new UncheckedIOException(e);
          }
          entries.sort(Comparator.comparing(Entry::path));
          return entries;
        });
  }

  @Override
  public CompletionStage<Void> suspend(String sandboxId) {
    return async(
        () -> {
          Sandbox sandbox = sandbox(sandboxId);
          synchronized (sandbox) {
            sandbox.suspend();
          }
          return null;
        });
  }

  @Override
  public CompletionStage<Void> resume(String sandboxId) {
    return async(
        () -> {
          Sandbox sandbox = sandbox(sandboxId);
          synchronized (sandbox) {
            sandbox.ensureRunning();
          }
          return null;
        });
  }

  @Override
  public CompletionStage<byte[]> hibernate(String sandboxId) {
    return async(
        () -> {
          Sandbox sandbox = sandbox(sandboxId);
          synchronized (sandbox) {
            sandbox.stopProcesses();
            sandbox.state = State.HIBERNATED;
          }
          return tar(sandbox.workspace);
        });
  }

  @Override
  public CompletionStage<Void> destroy(String sandboxId) {
    return async(
        () -> {
          Sandbox sandbox = sandboxes.get(sandboxId);
          if (sandbox == null) {
            throw new SandboxGoneException(sandboxId, "no such sandbox");
          }
          sandbox.gone("destroyed");
          sandbox.stopProcesses();
          sandboxes.remove(sandboxId);
          ShellSupport.deleteTree(sandbox.workspace.getParent());
          return null;
        });
  }

  @Override
  public CompletionStage<State> state(String sandboxId) {
    try {
      return CompletableFuture.completedFuture(sandbox(sandboxId).state);
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  /** Stops every sandbox's processes; workspaces stay on disk. */
  @Override
  public void close() {
    for (Sandbox sandbox : sandboxes.values()) {
      sandbox.gone("the provider closed");
      sandbox.stopProcesses();
    }
    sandboxes.clear();
    timers.shutdownNow();
    synchronized (this) {
      if (signaller != null) {
        signaller.close();
      }
    }
  }

  // ---- one sandbox ------------------------------------------------------------------------

  private final class Sandbox {
    final String id;
    final Path workspace;
    final Limits limits;
    final String nonce = HexFormat.of().formatHex(ShellSupport.randomBytes(16));
    final Map<String, CompletableFuture<ExecResult>> results =
        new LinkedHashMap<>() {
          @Override
          protected boolean removeEldestEntry(Map.Entry<String, CompletableFuture<ExecResult>> eldest) {
            return size() > EXEC_CACHE;
          }
        };
    volatile State state = State.HIBERNATED;
    volatile String goneBecause;
    Process process;
    OutputStream stdin;
    InputStream stdout;
    byte[] pending = new byte[0];
    final byte[] readBuffer = new byte[64 * 1024];
    long commandSeq;
    volatile long running; // the command being run (0: none), so a late kill hits nothing else
    volatile long deadline; // System.nanoTime() by which the running command must end
    volatile AtomicBoolean timedOut;

    /** Called by the watchdog: kills the running command once it is past its deadline. */
    void checkDeadline(long now) {
      long seq = running;
      AtomicBoolean flag = timedOut;
      if (seq != 0 && now - deadline > 0 && flag != null && flag.compareAndSet(false, true) && running == seq) {
        executor.execute(() -> killCommand(seq));
      }
    }
    ProcessHandle shell;
    long processGroup;

    Sandbox(String id, Path workspace, Limits limits) {
      this.id = id;
      this.workspace = workspace;
      this.limits = limits;
    }

    /** Starts bwrap and the shell and waits for the shell to answer. Called holding the lock. */
    void start() {
      List<String> argv = new ArrayList<>();
      if (hostRoot) {
        argv.addAll(List.of("/usr/bin/setpriv", "--reuid=" + SANDBOX_ID, "--regid=" + SANDBOX_ID, "--clear-groups", "--"));
      }
      argv.add(bwrap.get().toString());
      argv.addAll(List.of("--unshare-all", "--die-with-parent", "--new-session"));
      argv.addAll(List.of("--ro-bind", "/usr", "/usr"));
      for (String dir : List.of("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")) {
        Path p = Path.of(dir);
        if (Files.isSymbolicLink(p)) {
          try {
            argv.addAll(List.of("--symlink", Files.readSymbolicLink(p).toString(), dir));
          } catch (IOException e) {
            throw new UncheckedIOException(e);
          }
        } else if (Files.isDirectory(p)) {
          argv.addAll(List.of("--ro-bind", dir, dir));
        }
      }
      Path etcDir = syntheticEtc();
      argv.addAll(List.of("--dir", "/etc"));
      for (String name : List.of("passwd", "group", "hosts", "nsswitch.conf")) {
        argv.addAll(List.of("--ro-bind", etcDir.resolve(name).toString(), "/etc/" + name));
      }
      for (String name : List.of("ld.so.cache", "alternatives", "localtime")) {
        argv.addAll(List.of("--ro-bind-try", "/etc/" + name, "/etc/" + name));
      }
      argv.addAll(List.of("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"));
      argv.addAll(List.of("--bind", workspace.toString(), "/workspace", "--chdir", "/workspace"));
      argv.addAll(List.of("--clearenv", "--setenv", "PATH", SANDBOX_PATH, "--setenv", "HOME", "/workspace"));
      argv.addAll(List.of("--setenv", "LANG", "C.UTF-8"));
      argv.addAll(List.of("--uid", String.valueOf(SANDBOX_ID), "--gid", String.valueOf(SANDBOX_ID)));
      argv.addAll(List.of("--hostname", "sandbox"));
      argv.addAll(List.of("/usr/bin/bash", "--noprofile", "--norc"));
      ProcessBuilder builder = new ProcessBuilder(argv).redirectErrorStream(true).directory(root.toFile());
      builder.environment().clear();
      builder.environment().put("PATH", SANDBOX_PATH);
      try {
        process = builder.start();
      } catch (IOException e) {
        throw new UncheckedIOException("cannot start bwrap", e);
      }
      stdin = process.getOutputStream();
      stdout = process.getInputStream();
      pending = new byte[0];
      shell = null;
      processGroup = 0;
      long memoryKb = Math.max(1, limits.memoryBytes() / 1024);
      // Short exec lines matter: bash reads a pipe one byte at a time.
      String init =
          "ulimit -v " + memoryKb + "; ulimit -u " + limits.maxProcesses() + "; "
              + "__ob_save() { { builtin printf 'builtin cd -- %q\\n' \"$PWD\"; builtin export -p; } > " + STATE_FILE + "; }; "
              + "__ob_run() { ( trap __ob_save EXIT; ulimit -S -t " + cpuSeconds() + "; ulimit -H -t " + (cpuSeconds() + 1) + "; eval \"$__ob_cmd\" ) </dev/null; __ob_ec=$?; }; "
              + "__ob_end() { : > " + STATE_FILE + "; builtin printf '\\001" + nonce + ":%d\\n' \"$__ob_ec\"; }; "
              + "__ob_ec=0; __ob_end\n";
      EndMarkerScanner ready = new EndMarkerScanner(nonce, 64 * 1024);
      try {
        send(init);
        readUntilMarker(ready);
      } catch (SandboxGoneException e) {
        String why = ready.output().strip();
        stopProcesses();
        throw new IllegalStateException("bwrap could not start the sandbox: " + (why.isEmpty() ? e.getMessage() : why));
      }
      state = State.ACTIVE;
    }

    CompletionStage<ExecResult> exec(String executionId, String command, Duration timeout) {
      CompletableFuture<ExecResult> result;
      synchronized (results) {
        if (executionId != null) {
          CompletableFuture<ExecResult> first = results.get(executionId);
          if (first != null) {
            return first;
          }
        }
        result = new CompletableFuture<>();
        if (executionId != null) {
          results.put(executionId, result);
        }
      }
      executor.execute(
          () -> {
            try {
              ExecResult r;
              synchronized (this) {
                r = run(command, timeout);
              }
              result.complete(r);
            } catch (Throwable t) {
              synchronized (results) {
                results.remove(executionId, result);
              }
              result.completeExceptionally(t);
            }
          });
      return result;
    }

    /** Runs one command. Called holding the lock. */
    private ExecResult run(String command, Duration timeout) {
      ensureRunning();
      long started = System.nanoTime();
      String line = "__ob_cmd=" + ShellSupport.ansiQuote(command) + "; __ob_run; . " + STATE_FILE + " 2>/dev/null; __ob_end\n";
      EndMarkerScanner scanner = new EndMarkerScanner(nonce, limits.maxOutputBytes());
      AtomicBoolean timedOut = new AtomicBoolean();
      long seq = ++commandSeq;
      deadline = started + timeout.toNanos();
      this.timedOut = timedOut;
      running = seq; // from here the watchdog may kill it
      try {
        send(line);
        readUntilMarker(scanner);
      } finally {
        running = 0;
      }
      StringBuilder output = new StringBuilder(scanner.output());
      boolean truncated = scanner.omittedBytes() > 0;
      if (truncated) {
        output.append(output.length() == 0 || output.charAt(output.length() - 1) == '\n' ? "" : "\n");
        output.append("[output truncated: ").append(scanner.omittedBytes()).append(" bytes omitted]");
      }
      if (scanner.exitCode() == 128 + 24 && !timedOut.get()) { // SIGXCPU
        output.append(output.length() == 0 || output.charAt(output.length() - 1) == '\n' ? "" : "\n");
        output.append("[CPU time limit of ").append(cpuSeconds()).append(" s exceeded; the command was killed]");
      }
      if (timedOut.get()) {
        output.append(output.length() == 0 || output.charAt(output.length() - 1) == '\n' ? "" : "\n");
        output.append("[timed out after ").append(timeout.toMillis()).append(" ms; the command was killed]");
      }
      return new ExecResult(
          scanner.exitCode(), output.toString(), truncated, timedOut.get(), Duration.ofNanos(System.nanoTime() - started));
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
        throw died("its shell no longer reads commands");
      }
    }

    private void readUntilMarker(EndMarkerScanner scanner) {
      byte[] buffer = readBuffer;
      if (pending.length > 0) {
        byte[] carried = pending;
        pending = new byte[0];
        int end = scanner.feed(carried, 0, carried.length);
        if (end >= 0) {
          pending = java.util.Arrays.copyOfRange(carried, end, carried.length);
          return;
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
          throw died("its shell exited");
        }
        int end = scanner.feed(buffer, 0, n);
        if (end >= 0) {
          pending = java.util.Arrays.copyOfRange(buffer, end, n);
          return;
        }
      }
    }

    private SandboxGoneException died(String why) {
      gone(why);
      stopProcesses();
      return new SandboxGoneException(id, why);
    }

    void gone(String why) {
      if (goneBecause == null) {
        goneBecause = why;
      }
    }

    /** Kills the running command: every descendant of the shell, not the shell itself. */
    void killCommand(long seq) {
      ProcessHandle sh = shell();
      if (sh == null) {
        return;
      }
      for (int pass = 0; pass < 50 && running == seq; pass++) {
        List<ProcessHandle> descendants = sh.descendants().toList();
        if (descendants.isEmpty()) {
          return;
        }
        descendants.forEach(ProcessHandle::destroyForcibly);
      }
    }

    /** The host's handle of the sandbox shell: bwrap → bwrap (pid 1 inside) → bash. */
    private ProcessHandle shell() {
      if (shell == null && process != null) {
        ProcessHandle outer = process.toHandle();
        ProcessHandle init = outer.children().findFirst().orElse(null);
        shell = init == null ? null : init.children().findFirst().orElse(null);
      }
      return shell;
    }

    void suspend() {
      if (state != State.ACTIVE) {
        return;
      }
      long group = processGroup();
      if (group <= 0) {
        throw new IllegalStateException("cannot suspend sandbox " + id + ": its process group is unknown");
      }
      signaller().send("STOP", "-" + group);
      state = State.SUSPENDED;
    }

    /** Resumes a suspended sandbox, or cold-starts a hibernated one. Called holding the lock. */
    void ensureRunning() {
      if (goneBecause != null) {
        throw new SandboxGoneException(id, goneBecause);
      }
      if (state == State.SUSPENDED) {
        if (processGroup > 0) {
          signaller().send("CONT", "-" + processGroup);
        }
        state = State.ACTIVE;
      } else if (state == State.HIBERNATED) {
        start();
      }
    }

    /** The shell's process group; 0 when unknown or (never expected) the service's own group. */
    private long processGroup() {
      if (processGroup == 0) {
        ProcessHandle sh = shell();
        if (sh != null) {
          long group = processGroupOf(sh.pid());
          processGroup = group == ownProcessGroup ? 0 : group;
        }
      }
      return processGroup;
    }

    void stopProcesses() {
      Process p = process;
      if (p == null) {
        return;
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

  // ---- helpers ----------------------------------------------------------------------------

  private Sandbox sandbox(String id) {
    Sandbox sandbox = id == null ? null : sandboxes.get(id);
    if (sandbox == null) {
      throw new SandboxGoneException(id, "no such sandbox");
    }
    if (sandbox.goneBecause != null) {
      throw new SandboxGoneException(id, sandbox.goneBecause);
    }
    return sandbox;
  }

  private <T> CompletionStage<T> async(Supplier<T> work) {
    return CompletableFuture.supplyAsync(work, executor);
  }

  private synchronized Signaller signaller() {
    if (signaller == null) {
      try {
        signaller = new Signaller();
      } catch (IOException e) {
        throw new UncheckedIOException("cannot start the signal helper", e);
      }
    }
    return signaller;
  }

  /** Our own /etc files for sandboxes (the host's /etc is not shown). */
  private synchronized Path syntheticEtc() {
    if (etc == null) {
      Path dir = root.resolve(".etc");
      try {
        Files.createDirectories(dir);
        Files.writeString(
            dir.resolve("passwd"),
            "root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:" + SANDBOX_ID + ":" + SANDBOX_ID
                + ":sandbox:/workspace:/usr/bin/bash\n");
        Files.writeString(dir.resolve("group"), "root:x:0:\nsandbox:x:" + SANDBOX_ID + ":\n");
        Files.writeString(dir.resolve("hosts"), "127.0.0.1 localhost sandbox\n::1 localhost\n");
        Files.writeString(dir.resolve("nsswitch.conf"), "passwd: files\ngroup: files\nhosts: files\n");
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
      etc = dir;
    }
    return etc;
  }

  /**
   * bwrap runs as uid 65534 when the service is root, so it must be able to reach the root
   * directory's files; every ancestor needs the search (x) bit for others.
   */
  private void checkTraversable() throws IOException {
    Files.createDirectories(root);
    if (!hostRoot) {
      return;
    }
    Files.setPosixFilePermissions(root, PosixFilePermissions.fromString("rwx--x--x"));
    for (Path p = root; p != null; p = p.getParent()) {
      if (!Files.getPosixFilePermissions(p).contains(PosixFilePermission.OTHERS_EXECUTE)) {
        throw new IllegalStateException(
            "sandbox root " + root + " is not reachable by the sandbox user (uid " + SANDBOX_ID
                + "): " + p + " lacks the search bit; chmod o+x " + p + " or choose another root");
      }
    }
  }

  private void createDirectoriesOwned(Path dir) throws IOException {
    if (dir == null || Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) {
      return;
    }
    createDirectoriesOwned(dir.getParent());
    Files.createDirectory(dir);
    chown(dir);
  }

  private void chown(Path path) throws IOException {
    if (hostRoot) {
      Files.setAttribute(path, "unix:uid", SANDBOX_ID, LinkOption.NOFOLLOW_LINKS);
      Files.setAttribute(path, "unix:gid", SANDBOX_ID, LinkOption.NOFOLLOW_LINKS);
    }
  }

  private byte[] tar(Path workspace) {
    try {
      Process tar =
          new ProcessBuilder("/usr/bin/tar", "-C", workspace.toString(), "-cf", "-", ".")
              .redirectError(ProcessBuilder.Redirect.DISCARD)
              .start();
      tar.getOutputStream().close();
      byte[] bytes = tar.getInputStream().readAllBytes();
      if (tar.waitFor() != 0) {
        throw new IllegalStateException("tar could not archive the workspace (exit " + tar.exitValue() + ")");
      }
      return bytes;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /** Unpacks a snapshot as the sandbox user, so a hostile archive can do no more than the sandbox. */
  private void untar(Path workspace, byte[] snapshot) {
    List<String> argv = new ArrayList<>();
    if (hostRoot) {
      argv.addAll(List.of("/usr/bin/setpriv", "--reuid=" + SANDBOX_ID, "--regid=" + SANDBOX_ID, "--clear-groups", "--"));
    }
    argv.addAll(List.of("/usr/bin/tar", "-C", workspace.toString(), "--no-same-owner", "--no-same-permissions", "-xf", "-"));
    try {
      Process tar = new ProcessBuilder(argv).redirectErrorStream(true).start();
      CompletableFuture<byte[]> messages = CompletableFuture.supplyAsync(() -> ShellSupport.readAll(tar.getInputStream()), executor);
      try (OutputStream in = tar.getOutputStream()) {
        in.write(snapshot);
      } catch (IOException ignored) {
        // tar stopped reading; its exit code and message say why
      }
      int exit = tar.waitFor();
      if (exit != 0) {
        throw new IllegalArgumentException(
            "the snapshot could not be restored: " + new String(messages.join(), StandardCharsets.UTF_8).strip());
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  private static long processGroupOf(long pid) {
    try {
      String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
      String[] fields = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
      return Long.parseLong(fields[2]);
    } catch (IOException | RuntimeException e) {
      return 0;
    }
  }

  private static Optional<Path> findOnPath(String name) {
    String path = System.getenv("PATH");
    for (String dir : (path == null ? "/usr/bin:/bin" : path).split(":")) {
      if (dir.isEmpty()) {
        continue;
      }
      Path candidate = Path.of(dir, name);
      if (Files.isRegularFile(candidate) && Files.isExecutable(candidate)) {
        return Optional.of(candidate);
      }
    }
    return Optional.empty();
  }

  private static int currentUid() {
    try {
      return (Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid");
    } catch (IOException | RuntimeException e) {
      return -1;
    }
  }
}
