package dev.outboard.sandbox.shell;

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
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
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
import java.util.regex.Pattern;

/**
 * Sandboxes on this machine as long-lived shells (DESIGN.md §4): what the bubblewrap and the
 * unisolated providers share. A sandbox is one {@code bash} that reads commands from a pipe, with
 * its workspace at {@code <root>/<id>/workspace}. A subclass says how the shell is started and so
 * how isolated it is; everything else is here.
 *
 * <p><b>Commands.</b> Each command runs in a subshell of the long-lived shell, with stdin from
 * /dev/null; on exit the subshell writes its working directory and exported variables to a state
 * file (outside the workspace) that the parent shell sources, so {@code cd} and {@code export}
 * persist as in a terminal, while a timed-out command can be killed (its subshell and descendants)
 * without losing the shell. The subshell is forked ahead, while the sandbox idles, and reads its
 * command itself; the command line is a single ANSI-C quoted word. A command that outlives its kill
 * by {@value #KILL_GRACE_MS} ms costs the sandbox: its processes are stopped and it is gone. Output
 * ends with a random per-sandbox marker carrying the exit code, and is capped at {@code
 * maxOutputBytes} with a truncation note. A repeated execution id answers the first run's result
 * (the last 1000 ids per sandbox are kept).
 *
 * <p><b>Limits.</b> {@code ulimit -v} (RLIMIT_AS, per process) in the shell, plus whatever the
 * subclass adds; {@code ulimit -t} (RLIMIT_CPU) in each command's subshell, so it is per command.
 * No cgroups: they are often unavailable to containers; memory is therefore capped per process, not
 * per sandbox.
 *
 * <p><b>Suspend.</b> SIGSTOP/SIGCONT of the shell's process group, sent through one long-lived host
 * shell ({@link Signaller}) because Java cannot send SIGSTOP; a cgroup freezer would also catch
 * processes that leave the group with setsid, but needs a writable cgroup hierarchy. A sandbox
 * whose process group is unknown (or would be the service's own) cannot be suspended.
 *
 * <p><b>Files.</b> read / write / list take {@code /workspace/...} (or relative) paths and stay
 * inside the workspace directory ({@link WorkspacePaths}). Hibernate stops the processes and
 * answers a tar archive of the workspace; create unpacks one.
 *
 * <p><b>Gone.</b> A sandbox whose shell died (killed, out of memory) is gone: the next exec answers
 * {@link SandboxGoneException}, and so does {@link #state}, which looks at the processes of an
 * active or suspended sandbox, for periodic health checks. The exception says whether the command
 * may have run: not if the shell was found dead before the command was sent (the caller may run it
 * on a replacement); yes if it died during the command, and then asking again with the same
 * execution id answers the same. Its files stay on disk until destroy: {@link #salvage} archives
 * them, also for a sandbox id this provider no longer knows because it restarted.
 */
public abstract class ShellSandboxProvider implements SandboxProvider {
  /** PATH inside every sandbox. */
  protected static final String SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin";

  private static final int EXEC_CACHE = 1000;
  private static final long WATCHDOG_MS = 20;

  /** How long a killed command may take to end before the sandbox is given up. */
  static final long KILL_GRACE_MS = 5000;

  private static final long MAX_READ_BYTES = 10L << 20;

  /** How much of what a shell printed when it failed to start goes into the error. */
  static final int START_OUTPUT_CHARS = 2000;

  /** The ids this provider hands out; also the names of their directories under the root. */
  private static final Pattern SANDBOX_ID = Pattern.compile("sbx-[0-9a-f]{32}");

  /**
   * How a sandbox's shell is started: {@code argv} in {@code directory}, with {@code environment}
   * as its whole environment (the service's own is never passed on).
   */
  public record ShellCommand(List<String> argv, Path directory, Map<String, String> environment) {}

  /** Where the sandboxes' directories are: {@code <root>/<id>/workspace}. */
  protected final Path root;

  private final Executor executor;
  private final ScheduledExecutorService timers;
  private final Map<String, Sandbox> sandboxes = new ConcurrentHashMap<>();
  private final long ownProcessGroup = processGroupOf(ProcessHandle.current().pid());
  private Signaller signaller;

  /** {@code name} names the watchdog thread: {@code <name>-sandbox-timeouts}. */
  protected ShellSandboxProvider(Path root, Executor executor, String name) {
    this.root = root.toAbsolutePath();
    this.executor = executor;
    this.timers =
        Executors.newSingleThreadScheduledExecutor(
            r -> {
              Thread t = new Thread(r, name + "-sandbox-timeouts");
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

  // ---- what a subclass supplies -----------------------------------------------------------

  /** How to start the shell of the sandbox whose workspace directory is {@code workspace}. */
  protected abstract ShellCommand shellCommand(Path workspace);

  /**
   * The host's handle of the shell itself, found from the process {@link #shellCommand} started.
   */
  protected abstract ProcessHandle shellOf(Process process);

  /**
   * The directory of the shell's bookkeeping files, as the sandbox's shell names it; never the
   * workspace or inside it.
   */
  protected abstract String stateDir(Path workspace);

  /** The start of the error when a shell does not start or does not answer. */
  protected abstract String startFailure();

  /** Shell commands for the start, after {@code ulimit -v}, each ending in "; " (default: none). */
  protected String extraInit(Limits limits) {
    return "";
  }

  /**
   * Shell commands run before each command, in its subshell, each ending in "; " (default: none);
   * limits set here bind the command and everything it starts, not the shell.
   */
  protected String commandInit(Limits limits) {
    return "";
  }

  /** Creates a new sandbox's {@code workspace} directory (and its parent, {@code <root>/<id>}). */
  protected void createWorkspace(Path workspace) throws IOException {
    Files.createDirectories(workspace);
  }

  /**
   * Gives a file or directory that the file tools created to the sandbox's user (default: no-op).
   */
  protected void handOver(Path path) throws IOException {}

  /** What goes before {@code tar} to unpack a snapshot as the sandbox's user (default: nothing). */
  protected List<String> untarAs() {
    return List.of();
  }

  /** Whether stopping a sandbox also kills what is left in its process group (default: no). */
  protected boolean stopKillsProcessGroup() {
    return false;
  }

  // ---- SPI --------------------------------------------------------------------------------

  @Override
  public CompletionStage<String> create(Limits limits, byte[] snapshot) {
    return async(
        () -> {
          String id = "sbx-" + HexFormat.of().formatHex(ShellSupport.randomBytes(16));
          Path workspace = root.resolve(id).resolve("workspace");
          Sandbox sandbox = new Sandbox(id, workspace, limits);
          try {
            createWorkspace(workspace);
            if (snapshot != null && snapshot.length > 0) {
              untar(workspace, snapshot);
            }
            sandboxes.put(id, sandbox);
            synchronized (sandbox) {
              sandbox.start();
            }
            return id;
          } catch (IOException | RuntimeException e) {
            // Nothing of a sandbox that never started stays behind: no entry, no directory.
            sandboxes.remove(id);
            sandbox.gone("it could not be started");
            ShellSupport.deleteTree(workspace.getParent());
            throw e instanceof IOException io ? new UncheckedIOException(io) : (RuntimeException) e;
          }
        });
  }

  @Override
  public CompletionStage<ExecResult> exec(
      String sandboxId, String executionId, String command, Duration timeout) {
    // A gone sandbox still answers for the commands it ran (or died during); see Sandbox.exec.
    Sandbox sandbox = sandboxId == null ? null : sandboxes.get(sandboxId);
    if (sandbox == null) {
      return CompletableFuture.failedFuture(new SandboxGoneException(sandboxId, "no such sandbox"));
    }
    return sandbox.exec(
        executionId, command, timeout == null ? sandbox.limits.defaultTimeout() : timeout);
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
                  path
                      + " is "
                      + attributes.size()
                      + " bytes; read handles files up to "
                      + MAX_READ_BYTES);
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
          if (WorkspacePaths.relative(path).isEmpty()) {
            throw new IllegalArgumentException("cannot write /workspace itself; give a file path");
          }
          Path file = WorkspacePaths.resolve(sandbox.workspace, path);
          if (file.startsWith(sandbox.workspace.resolve(".outboard"))) {
            throw new IllegalArgumentException(
                "/workspace/.outboard holds the sandbox's execution records; write elsewhere");
          }
          try {
            createDirectoriesHandedOver(file.getParent());
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
            handOver(file);
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
                Files.exists(dir, LinkOption.NOFOLLOW_LINKS)
                    ? path + " is not a directory"
                    : "no such directory: " + path);
          }
          List<Entry> entries = new ArrayList<>();
          try (var children = Files.list(dir)) {
            for (Path child : (Iterable<Path>) children::iterator) {
              if (child.equals(sandbox.workspace.resolve(".outboard"))) {
                continue; // the execution records (ExecLedger), not the agent's files
              }
              BasicFileAttributes a =
                  Files.readAttributes(child, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
              entries.add(
                  new Entry(
                      WorkspacePaths.sandboxPath(sandbox.workspace, child),
                      a.isDirectory(),
                      a.size()));
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
            sandbox.state = State.HIBERNATED; // first, so that state() takes the deaths as ours
            sandbox.stopProcesses();
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
            // Left over from before a restart of the provider: only its files remain.
            Optional<Path> leftover = leftoverWorkspace(sandboxId);
            if (leftover.isEmpty()) {
              throw new SandboxGoneException(sandboxId, "no such sandbox");
            }
            ShellSupport.deleteTree(leftover.get().getParent());
            return null;
          }
          sandbox.gone("destroyed");
          sandbox.stopProcesses();
          sandboxes.remove(sandboxId);
          ShellSupport.deleteTree(sandbox.workspace.getParent());
          return null;
        });
  }

  /**
   * The workspace of a gone sandbox as a tar archive, while its directory is still on disk: its
   * processes died, or this provider restarted and no longer knows it (the sandbox id names the
   * directory). Null when there is nothing left.
   */
  @Override
  public CompletionStage<byte[]> salvage(String sandboxId) {
    return async(
        () -> {
          Sandbox known = sandboxId == null ? null : sandboxes.get(sandboxId);
          Optional<Path> workspace =
              known != null ? Optional.of(known.workspace) : leftoverWorkspace(sandboxId);
          if (workspace.isEmpty()
              || !Files.isDirectory(workspace.get(), LinkOption.NOFOLLOW_LINKS)) {
            return null;
          }
          return tar(workspace.get());
        });
  }

  /**
   * Every sandbox this provider knows (gone ones included, until destroyed) and every workspace
   * directory left over from before a restart; a leftover's last use is its newest directory or
   * execution-record change.
   */
  @Override
  public CompletionStage<List<Held>> held() {
    return async(
        () -> {
          List<Held> held = new ArrayList<>();
          for (Sandbox s : sandboxes.values()) {
            held.add(new Held(s.id, java.time.Instant.ofEpochMilli(s.lastUsed)));
          }
          if (!Files.isDirectory(root)) {
            return held;
          }
          try (var dirs = Files.list(root)) {
            for (Path dir : (Iterable<Path>) dirs::iterator) {
              String id = dir.getFileName().toString();
              if (sandboxes.containsKey(id) || leftoverWorkspace(id).isEmpty()) {
                continue;
              }
              long last =
                  Math.max(
                      modifiedMillis(dir),
                      Math.max(
                          modifiedMillis(dir.resolve("workspace")),
                          modifiedMillis(dir.resolve("workspace").resolve(ExecLedger.FILE))));
              held.add(new Held(id, java.time.Instant.ofEpochMilli(last)));
            }
          } catch (IOException e) {
            throw new UncheckedIOException(e);
          }
          return held;
        });
  }

  private static long modifiedMillis(Path p) {
    try {
      return Files.getLastModifiedTime(p, LinkOption.NOFOLLOW_LINKS).toMillis();
    } catch (IOException e) {
      return 0;
    }
  }

  /** The sandbox's state; gone if it is active or suspended but its shell no longer runs. */
  @Override
  public CompletionStage<State> state(String sandboxId) {
    try {
      return CompletableFuture.completedFuture(sandbox(sandboxId).checkedState());
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
    final String stateFile;
    final String startedFile;
    final String namesFile;
    final Limits limits;
    final ExecLedger ledger;
    final String nonce = HexFormat.of().formatHex(ShellSupport.randomBytes(16));
    final Map<String, CompletableFuture<ExecResult>> results =
        new LinkedHashMap<>() {
          @Override
          protected boolean removeEldestEntry(
              Map.Entry<String, CompletableFuture<ExecResult>> eldest) {
            return size() > EXEC_CACHE;
          }
        };
    volatile State state = State.HIBERNATED;
    volatile String goneBecause;

    /** When it was created or last ran a command (epoch milliseconds), for the sweep. */
    volatile long lastUsed = System.currentTimeMillis();

    volatile Process process;
    OutputStream stdin;
    InputStream stdout;
    byte[] pending = new byte[0];
    final byte[] readBuffer = new byte[64 * 1024];
    long commandSeq;
    volatile long running; // the command being run (0: none), so a late kill hits nothing else
    volatile long deadline; // System.nanoTime() by which the running command must end
    volatile AtomicBoolean timedOut;
    volatile boolean hopeless; // the watchdog gave up on the shell
    final Object killing = new Object(); // held while a timed-out command is being killed
    volatile ProcessHandle shell;
    long processGroup;

    Sandbox(String id, Path workspace, Limits limits) {
      this.id = id;
      this.workspace = workspace;
      String dir = stateDir(workspace);
      this.stateFile = ShellSupport.ansiQuote(dir + "/.ob-state");
      this.startedFile = ShellSupport.ansiQuote(dir + "/.ob-started");
      this.namesFile = ShellSupport.ansiQuote(dir + "/.ob-names");
      this.limits = limits;
      this.ledger = new ExecLedger(workspace);
    }

    /** Called by the watchdog: kills the running command once it is past its deadline. */
    void checkDeadline(long now) {
      long seq = running;
      AtomicBoolean flag = timedOut;
      if (seq == 0 || now - deadline <= 0 || flag == null) {
        return;
      }
      if (flag.compareAndSet(false, true) && running == seq) {
        executor.execute(() -> killCommand(seq));
      } else if (now - deadline > TimeUnit.MILLISECONDS.toNanos(KILL_GRACE_MS)
          && running == seq
          && !hopeless) {
        // Killed, yet no end marker: the shell is stuck. Ending it ends the wait (the reader sees
        // end of file; the sandbox is gone, the command may have run).
        hopeless = true;
        executor.execute(
            () -> {
              synchronized (killing) {
                if (running == seq) {
                  stopProcesses();
                }
              }
            });
      }
    }

    /** Starts the shell and waits for it to answer. Called holding the lock. */
    void start() {
      ShellCommand command = shellCommand(workspace);
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
        throw new UncheckedIOException(startFailure() + ": " + e.getMessage(), e);
      }
      stdin = process.getOutputStream();
      stdout = process.getInputStream();
      pending = new byte[0];
      long memoryKb = Math.max(1, limits.memoryBytes() / 1024);
      // The shell runs one loop, given once here: a subshell, forked ahead, waits for the next
      // command line ("<nonce> <ANSI-C quoted command>": bash reads a pipe one byte at a time, so
      // lines are kept short), notes that it started, runs it and, on exit, saves its cwd and
      // exports; the shell then enters that cwd, takes the exports if they changed, forks the next
      // subshell and only then prints the end marker. So the fork is off the path of the next
      // command (a resumed sandbox answers in a fraction of the time), and a suspend, which comes
      // after a marker, always finds the waiting subshell in the process group.
      //  - A subshell killed before it read a command (a kill aimed at the one before) leaves no
      //    "started" note, so no marker. One killed while reading leaves the rest of the line; the
      //    next subshell sees no nonce in it and ends as that command killed (137).
      //  - No "started" note can be written (a full /tmp): the command does not run, and 254 says
      // so.
      //  - The loop's stderr is /dev/null, so the shell's own notices ("Killed") never reach a
      //    command's output; the subshell's stderr is its stdout again.
      //  - Exports are saved as export lines, never the shell's own variables (__ob_*) nor ones
      //    that would change how the loop itself runs (IFS, TMOUT, SHELLOPTS, ...).
      //  - The cwd is entered again after every command (a directory deleted and made anew is a
      //    new one); re-sourcing unchanged exports would cost about half a millisecond, so it is
      //    skipped.
      //  - Background jobs ignore SIGINT/SIGQUIT; the command gets them back. >| writes despite set
      // -C.
      String init =
          "ulimit -v "
              + memoryKb
              + "; "
              + extraInit(limits)
              + "__ob_save() { local __ob_n; builtin compgen -e >| "
              + namesFile
              + "; { builtin printf 'builtin cd -- %q\\n"
              + "' \"$PWD\"; while IFS= read -r __ob_n; do case $__ob_n in"
              + " __ob_*|IFS|TMOUT|SHELLOPTS|BASHOPTS|POSIXLY_CORRECT|BASH_ENV|ENV|PS4|BASH_XTRACEFD|BASH_COMPAT|BASH_FUNC_*)"
              + " ;; *) builtin printf 'builtin export %s=%q\\n"
              + "' \"$__ob_n\" \"${!__ob_n}\";; esac; done < "
              + namesFile
              + "; } >| "
              + stateFile
              + "; }; __ob_fork() { ( exec 2>&1; trap __ob_save EXIT; trap - INT QUIT; IFS=' ' read"
              + " -r __ob_tok __ob_line || exit 255; [[ $__ob_tok == "
              + nonce
              + " ]] || { builtin printf 1 >| "
              + startedFile
              + "; exit 137; }; "
              + "builtin printf 1 >| "
              + startedFile
              + " || { builtin echo '[the sandbox could not note the command (is /tmp full?); it"
              + " did not run]'; exit 254; }; ulimit -S -t "
              + cpuSeconds()
              + "; ulimit -H -t "
              + (cpuSeconds() + 1)
              + "; "
              + commandInit(limits)
              + "eval \"__ob_cmd=$__ob_line\"; eval \"$__ob_cmd\" </dev/null ) 0<&0 & __ob_pid=$!;"
              + " }; __ob_wait() { wait \"$__ob_pid\"; __ob_ec=$?; }; __ob_started() { local f=;"
              + " IFS= read -r f < "
              + startedFile
              + "; [[ -n $f ]] || (( __ob_ec == 254 )); }; "
              + "__ob_load() { local c= e=; { IFS= read -r c; IFS= read -r -d '' e; } < "
              + stateFile
              + "; [[ -n $c ]] && eval \"$c\"; [[ -n $e && $e != \"$__ob_last\" ]] && __ob_last=$e;"
              + " }; __ob_next() { : >| "
              + stateFile
              + "; : >| "
              + startedFile
              + "; __ob_fork; }; "
              + "__ob_mark() { builtin printf '\\001"
              + nonce
              + ":%d\\n' \"$__ob_ec\"; }; "
              + "__ob_ec=0; __ob_last=; __ob_next; __ob_mark; "
              + "while :; do __ob_wait; if __ob_started; then __ob_load && . "
              + stateFile
              + "; __ob_next; __ob_mark; else __ob_next; fi; done 2>/dev/null\n";
      EndMarkerScanner ready = new EndMarkerScanner(nonce, 64 * 1024);
      try {
        sendStart(init);
        readUntilMarker(ready);
      } catch (SandboxGoneException e) {
        String why = ready.output().strip();
        stopProcesses();
        throw new IllegalStateException(
            startFailure() + ": " + (why.isEmpty() ? e.getMessage() : capped(why)));
      }
      state = State.ACTIVE;
      processGroup(); // looked up now, while the shell is bwrap's init's only child
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

    CompletionStage<ExecResult> exec(String executionId, String command, Duration timeout) {
      CompletableFuture<ExecResult> result;
      synchronized (results) {
        if (executionId != null) {
          CompletableFuture<ExecResult> first = results.get(executionId);
          if (first != null) {
            return first;
          }
        }
        if (goneBecause != null) {
          return CompletableFuture.failedFuture(
              SandboxGoneException.beforeCommand(id, goneBecause));
        }
        result = new CompletableFuture<>();
        if (executionId != null) {
          results.put(executionId, result);
        }
      }
      long called = System.nanoTime();
      lastUsed = System.currentTimeMillis();
      executor.execute(
          () -> {
            try {
              ExecResult r;
              synchronized (this) {
                r = runOnce(executionId, command, timeout, called);
              }
              result.complete(r);
            } catch (Throwable t) {
              // Asked again, a command the sandbox died during answers the same; any other
              // failure left nothing behind, so the command may be tried again.
              if (!(t instanceof SandboxGoneException gone && gone.commandMayHaveRun())
                  && !(t instanceof CommandInterruptedException)) {
                synchronized (results) {
                  results.remove(executionId, result);
                }
              }
              result.completeExceptionally(t);
            }
          });
      return result;
    }

    /**
     * Runs the command unless the workspace's execution records ({@link ExecLedger}) say this id
     * ran (its recorded result) or was cut off (then {@link CommandInterruptedException}): so a
     * command runs at most once per workspace, even across restarts and salvaged replacements.
     * Called holding the lock.
     */
    private ExecResult runOnce(String executionId, String command, Duration timeout, long called) {
      ExecLedger.Entry known = ledger.lookup(executionId);
      if (known.status() == ExecLedger.Status.DONE) {
        return known.result();
      }
      if (known.status() == ExecLedger.Status.CUT_OFF) {
        throw new CommandInterruptedException(id);
      }
      ExecResult r = run(executionId, command, timeout, called);
      ledger.done(executionId, r);
      return r;
    }

    /**
     * Runs one command ({@code called}: when exec was called), resuming or cold-starting the
     * sandbox first; notes it in the ledger just before it is sent. Called holding the lock.
     */
    private ExecResult run(String executionId, String command, Duration timeout, long called) {
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
      StringBuilder output = new StringBuilder(scanner.output());
      boolean truncated = scanner.omittedBytes() > 0;
      if (truncated) {
        newline(output);
        output
            .append("[output truncated: ")
            .append(scanner.omittedBytes())
            .append(" bytes omitted]");
      }
      if (scanner.exitCode() == 128 + 24 && !timedOut.get()) { // SIGXCPU
        newline(output);
        output
            .append("[CPU time limit of ")
            .append(cpuSeconds())
            .append(" s exceeded; the command was killed]");
      }
      if (timedOut.get()) {
        newline(output);
        output
            .append("[timed out after ")
            .append(timeout.toMillis())
            .append(" ms; the command was killed]");
      }
      return new ExecResult(
          scanner.exitCode(),
          output.toString(),
          truncated,
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
     * The state, once an active or suspended sandbox's shell is known to run; if it died, the
     * sandbox is gone, as after a failed exec. Does not take the lock, so a long command does not
     * hold up a health check: hibernate, destroy and close say first that the deaths are theirs.
     */
    State checkedState() {
      State now = state;
      if (now == State.HIBERNATED || shellRuns()) {
        return now;
      }
      if (state != State.HIBERNATED) {
        gone("its shell exited");
        executor.execute(this::stopProcesses); // whatever is left of it
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

    /** Kills the running command: every descendant of the shell, not the shell itself. */
    void killCommand(long seq) {
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
        }
      }
    }

    private ProcessHandle shell() {
      Process p = process;
      if (shell == null && p != null) {
        shell = shellOf(p);
      }
      return shell;
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

    void suspend() {
      if (state != State.ACTIVE) {
        return;
      }
      long group = processGroup();
      if (group <= 0) {
        throw new IllegalStateException(
            "cannot suspend sandbox " + id + ": its process group is unknown");
      }
      if (!signaller().send("STOP", "-" + group)) {
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
      if (processGroup <= 0 || !signaller().send("CONT", "-" + processGroup)) {
        throw died("it could not be resumed", false);
      }
      state = State.ACTIVE;
    }

    /** Kills the shell, its descendants and, if the subclass says so, the rest of its group. */
    void stopProcesses() {
      Process p = process;
      if (p == null) {
        return;
      }
      long group = stopKillsProcessGroup() ? processGroup() : 0;
      if (group > 0) {
        signaller().send("KILL", "-" + group); // also orphans re-parented away from the shell
        signaller().send("CONT", "-" + group); // a stopped group dies only once continued
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

  /** The workspace directory of a sandbox this provider does not know, if one is on disk. */
  private Optional<Path> leftoverWorkspace(String id) {
    if (id == null || !SANDBOX_ID.matcher(id).matches()) {
      return Optional.empty(); // never a path built from anything but our own id format
    }
    Path workspace = root.resolve(id).resolve("workspace");
    return Files.isDirectory(workspace, LinkOption.NOFOLLOW_LINKS)
        ? Optional.of(workspace)
        : Optional.empty();
  }

  private Sandbox sandbox(String id) {
    Sandbox sandbox = id == null ? null : sandboxes.get(id);
    if (sandbox == null) {
      throw new SandboxGoneException(id, "no such sandbox");
    }
    if (sandbox.goneBecause != null) {
      throw new SandboxGoneException(id, sandbox.goneBecause);
    }
    sandbox.lastUsed = System.currentTimeMillis();
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

  private void createDirectoriesHandedOver(Path dir) throws IOException {
    if (dir == null || Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) {
      return;
    }
    createDirectoriesHandedOver(dir.getParent());
    Files.createDirectory(dir);
    handOver(dir);
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
        throw new IllegalStateException(
            "tar could not archive the workspace (exit " + tar.exitValue() + ")");
      }
      return bytes;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /**
   * Unpacks a snapshot, as the sandbox's user where there is one ({@link #untarAs}), so a hostile
   * archive can do no more than the sandbox. GNU tar strips leading {@code /}, refuses {@code ..}
   * members and delays symlinks so none is written through; it keeps neither owners nor permission
   * bits beyond the umask.
   */
  private void untar(Path workspace, byte[] snapshot) {
    List<String> argv = new ArrayList<>(untarAs());
    argv.addAll(
        List.of(
            "/usr/bin/tar",
            "-C",
            workspace.toString(),
            "--no-same-owner",
            "--no-same-permissions",
            "-xf",
            "-"));
    // tar's messages go to a file, not a pipe read on this provider's executor: this runs on that
    // executor, and waiting there for another of its threads deadlocks a bounded one.
    Path messages = null;
    try {
      messages = Files.createTempFile("outboard-untar-", ".log");
      Process tar =
          new ProcessBuilder(argv)
              .redirectErrorStream(true)
              .redirectOutput(ProcessBuilder.Redirect.to(messages.toFile()))
              .start();
      try (OutputStream in = tar.getOutputStream()) {
        in.write(snapshot);
      } catch (IOException ignored) {
        // tar stopped reading; its exit code and message say why
      }
      int exit = tar.waitFor();
      if (exit != 0) {
        throw new IllegalArgumentException(
            "the snapshot could not be restored: " + capped(Files.readString(messages)));
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    } finally {
      if (messages != null) {
        try {
          Files.deleteIfExists(messages);
        } catch (IOException ignored) {
          // a temporary file
        }
      }
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

  /**
   * A start failure's output (bwrap's stderr, say) on one line, capped at {@value
   * #START_OUTPUT_CHARS} characters.
   */
  static String capped(String output) {
    String line = output.strip().replaceAll("\\s*[\\r\\n]+\\s*", " | ");
    return line.length() <= START_OUTPUT_CHARS
        ? line
        : line.substring(0, START_OUTPUT_CHARS)
            + "… ["
            + (line.length() - START_OUTPUT_CHARS)
            + " more characters]";
  }

  private static void newline(StringBuilder output) {
    if (output.length() > 0 && output.charAt(output.length() - 1) != '\n') {
      output.append('\n');
    }
  }
}
