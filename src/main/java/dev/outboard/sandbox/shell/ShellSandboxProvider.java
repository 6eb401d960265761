package dev.outboard.sandbox.shell;

import dev.outboard.Futures;
import dev.outboard.sandbox.SandboxProvider;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
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
import java.util.function.Supplier;
import java.util.regex.Pattern;

/**
 * Sandboxes on this machine as long-lived shells (DESIGN.md §4): what the bubblewrap and the
 * unisolated providers share. A sandbox is one {@code bash} that reads commands from a pipe, with
 * its workspace at {@code <root>/<id>/workspace}. A subclass says how the shell is started and so
 * how isolated it is; everything else is here: this class keeps the sandboxes and answers the SPI,
 * each sandbox's shell is a {@link ShellProcess}, which runs the loop in {@link LoopScript}.
 *
 * <p><b>Commands.</b> Each command runs in a subshell of the long-lived shell, with stdin from
 * /dev/null; on exit the subshell writes its working directory and exported variables to a state
 * file (outside the workspace) that the parent shell sources, so {@code cd} and {@code export}
 * persist as in a terminal, while a timed-out command can be killed (its subshell and descendants)
 * without losing the shell. The subshell is forked ahead, while the sandbox idles, and reads its
 * command itself; the command line is a single ANSI-C quoted word. A command that outlives its kill
 * by {@value ShellProcess#KILL_GRACE_MS} ms costs the sandbox: its processes are stopped and it is
 * gone. Output ends with a random per-sandbox marker carrying the exit code, and is capped at
 * {@code maxOutputBytes} with a truncation note. A repeated execution id answers the first run's
 * result (the last 1000 ids per sandbox are kept).
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
 * inside the workspace directory ({@link WorkspaceFiles}). Hibernate stops the processes and
 * answers a tar archive of the workspace; create unpacks one ({@link WorkspaceArchive}).
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

  private static final long WATCHDOG_MS = 20;

  /** The ids this provider hands out; also the names of their directories under the root. */
  private static final Pattern SANDBOX_ID = Pattern.compile("sbx-[0-9a-f]{32}");

  /**
   * How a sandbox's shell is started: {@code argv} in {@code directory}, with {@code environment}
   * as its whole environment (the service's own is never passed on).
   */
  public record ShellCommand(List<String> argv, Path directory, Map<String, String> environment) {}

  /** Where the sandboxes' directories are: {@code <root>/<id>/workspace}. */
  protected final Path root;

  final Executor executor;
  private final ScheduledExecutorService timers;
  private final Map<String, ShellProcess> sandboxes = new ConcurrentHashMap<>();
  final long ownProcessGroup = ShellSupport.processGroupOf(ProcessHandle.current().pid());
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
          ShellProcess sandbox = new ShellProcess(this, id, workspace, limits);
          try {
            createWorkspace(workspace);
            if (snapshot != null && snapshot.length > 0) {
              WorkspaceArchive.untar(workspace, snapshot, untarAs());
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
    // A gone sandbox still answers for the commands it ran (or died during); see ExecOnce.
    ShellProcess sandbox = sandboxId == null ? null : sandboxes.get(sandboxId);
    if (sandbox == null) {
      return CompletableFuture.failedFuture(new SandboxGoneException(sandboxId, "no such sandbox"));
    }
    return sandbox.execs.exec(
        executionId, command, timeout == null ? sandbox.limits.defaultTimeout() : timeout);
  }

  @Override
  public CompletionStage<String> read(String sandboxId, String path) {
    return async(() -> WorkspaceFiles.read(sandbox(sandboxId).workspace, path));
  }

  @Override
  public CompletionStage<Void> write(String sandboxId, String path, String content) {
    return async(
        () -> {
          WorkspaceFiles.write(sandbox(sandboxId).workspace, path, content, this::handOver);
          return null;
        });
  }

  @Override
  public CompletionStage<List<Entry>> list(String sandboxId, String path) {
    return async(() -> WorkspaceFiles.list(sandbox(sandboxId).workspace, path));
  }

  @Override
  public CompletionStage<Void> suspend(String sandboxId) {
    return async(
        () -> {
          ShellProcess sandbox = sandbox(sandboxId);
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
          ShellProcess sandbox = sandbox(sandboxId);
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
          ShellProcess sandbox = sandbox(sandboxId);
          synchronized (sandbox) {
            sandbox.hibernate();
          }
          return WorkspaceArchive.tar(sandbox.workspace);
        });
  }

  @Override
  public CompletionStage<Void> destroy(String sandboxId) {
    return async(
        () -> {
          ShellProcess sandbox = sandboxes.get(sandboxId);
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
          ShellProcess known = sandboxId == null ? null : sandboxes.get(sandboxId);
          Optional<Path> workspace =
              known != null ? Optional.of(known.workspace) : leftoverWorkspace(sandboxId);
          if (workspace.isEmpty()
              || !Files.isDirectory(workspace.get(), LinkOption.NOFOLLOW_LINKS)) {
            return null;
          }
          return WorkspaceArchive.tar(workspace.get());
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
          for (ShellProcess s : sandboxes.values()) {
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
    return Futures.attempt(
        () -> CompletableFuture.completedFuture(sandbox(sandboxId).checkedState()));
  }

  /** Stops every sandbox's processes; workspaces stay on disk. */
  @Override
  public void close() {
    for (ShellProcess sandbox : sandboxes.values()) {
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

  private ShellProcess sandbox(String id) {
    ShellProcess sandbox = id == null ? null : sandboxes.get(id);
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

  synchronized Signaller signaller() {
    if (signaller == null) {
      try {
        signaller = new Signaller();
      } catch (IOException e) {
        throw new UncheckedIOException("cannot start the signal helper", e);
      }
    }
    return signaller;
  }
}
