package dev.outboard.sandbox.bwrap;

import dev.outboard.sandbox.shell.ShellSandboxProvider;
import dev.outboard.sandbox.shell.ShellSupport;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Sandboxes on this machine with bubblewrap (DESIGN.md §4, §7): each sandbox's shell ({@link
 * ShellSandboxProvider}: commands, limits, suspend, files) runs in one long-lived {@code bwrap}
 * process.
 *
 * <p><b>Isolation.</b> {@code --unshare-all} gives each sandbox its own user, mount, pid, network
 * (loopback only, and not the host's), ipc, uts and cgroup namespaces; {@code --die-with-parent}
 * and {@code --new-session} (so the shell has a process group of its own, which suspend stops). The
 * visible filesystem is: {@code /usr} read-only (with the {@code /bin}, {@code /lib}, {@code
 * /lib64} symlinks), a synthetic {@code /etc} (our own passwd/group/hosts plus read-only {@code
 * ld.so.cache}, {@code alternatives} and {@code localtime} — never the host's {@code /etc} as a
 * whole), a fresh {@code /proc} and {@code /dev}, a private tmpfs {@code /tmp} (which holds the
 * shell's state files), and the workspace at {@code /workspace}. The environment is cleared down to
 * PATH, HOME=/workspace and LANG=C.UTF-8.
 *
 * <p><b>User and process limit.</b> Inside, the shell runs as uid/gid 65534. RLIMIT_NPROC is
 * counted per real uid and is ignored for host root: if bwrap ran as root, uid 65534 inside would
 * be root outside and a fork bomb would be unbounded. So when the service runs as root, bwrap is
 * started through {@code setpriv} as host uid/gid 65534 (an unprivileged user namespace), the
 * workspace and what the file tools write in it are owned by 65534, snapshots are unpacked as
 * 65534, and {@code ulimit -u} in the shell really bounds the process count (per user namespace, so
 * one sandbox's count does not eat another's).
 */
public final class BwrapSandboxProvider extends ShellSandboxProvider {
  public static final String NOT_INSTALLED =
      "bubblewrap (bwrap) is not installed; install the Debian/Ubuntu package 'bubblewrap'";
  static final int SANDBOX_ID = 65534;
  private static final List<String> AS_SANDBOX_USER =
      List.of(
          "/usr/bin/setpriv",
          "--reuid=" + SANDBOX_ID,
          "--regid=" + SANDBOX_ID,
          "--clear-groups",
          "--");

  /** How long the start-up probe's trivial sandbox may take. */
  static final Duration PROBE_TIMEOUT = Duration.ofSeconds(10);

  private final Optional<Path> bwrap;
  private final Executor executor;
  private final boolean hostRoot;
  private Path etc;

  public BwrapSandboxProvider(Path root, Executor executor) {
    this(root, executor, findOnPath("bwrap"));
  }

  /** With {@code bwrap} given (tests: empty stands for a host without bubblewrap). */
  BwrapSandboxProvider(Path root, Executor executor, Optional<Path> bwrap) {
    super(root, executor, "bwrap");
    this.bwrap = bwrap;
    this.executor = executor;
    this.hostRoot = currentUid() == 0;
  }

  /**
   * Whether bubblewrap is on PATH (without it, {@link #create} fails with {@link #NOT_INSTALLED}).
   */
  public boolean available() {
    return bwrap.isPresent();
  }

  /** Whether bubblewrap is on this machine's PATH. */
  public static boolean installed() {
    return findOnPath("bwrap").isPresent();
  }

  @Override
  public CompletionStage<String> create(Limits limits, byte[] snapshot) {
    if (bwrap.isEmpty()) {
      return CompletableFuture.failedFuture(new IllegalStateException(NOT_INSTALLED));
    }
    return super.create(limits, snapshot);
  }

  // ---- the shell in bwrap -----------------------------------------------------------------

  @Override
  protected ShellCommand shellCommand(Path workspace) {
    return new ShellCommand(
        argv(workspace, List.of("/usr/bin/bash", "--noprofile", "--norc")),
        root,
        Map.of("PATH", SANDBOX_PATH));
  }

  /** The command line of a sandbox with {@code workspace} that runs {@code command}. */
  private List<String> argv(Path workspace, List<String> command) {
    List<String> argv = new ArrayList<>();
    if (hostRoot) {
      argv.addAll(AS_SANDBOX_USER);
    }
    argv.add(bwrap.orElseThrow().toString());
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
    argv.addAll(
        List.of("--clearenv", "--setenv", "PATH", SANDBOX_PATH, "--setenv", "HOME", "/workspace"));
    argv.addAll(List.of("--setenv", "LANG", "C.UTF-8"));
    argv.addAll(List.of("--uid", String.valueOf(SANDBOX_ID), "--gid", String.valueOf(SANDBOX_ID)));
    argv.addAll(List.of("--hostname", "sandbox"));
    argv.addAll(command);
    return argv;
  }

  /**
   * Whether sandboxes can start here: one trivial sandbox ({@code true}) with the same command
   * line, user and namespaces as every sandbox, in a scratch workspace under the root that is
   * removed again. Not usable: {@link BwrapDiagnosis} says why, quoting bwrap's stderr.
   */
  public Probe probe() {
    if (bwrap.isEmpty()) {
      return new Probe(false, NOT_INSTALLED);
    }
    Path dir = root.resolve(".probe");
    try {
      ShellSupport.deleteTree(dir);
      Path workspace = dir.resolve("workspace");
      createWorkspace(workspace);
      long started = System.nanoTime();
      Run run = run(argv(workspace, List.of("/usr/bin/true")));
      long millis = (System.nanoTime() - started) / 1_000_000;
      if (run.exitCode() == 0) {
        String version = run(List.of(bwrap.get().toString(), "--version")).output().strip();
        return new Probe(
            true,
            bwrap.get()
                + (version.isEmpty() ? "" : ", " + version)
                + "; a trivial sandbox started in "
                + millis
                + " ms");
      }
      String said =
          run.exitCode() < 0
              ? run.output() + " (no exit within " + PROBE_TIMEOUT.toSeconds() + " s)"
              : run.output();
      return new Probe(
          false,
          BwrapDiagnosis.explain(said, BwrapDiagnosis::procSys) + " (exit " + run.exitCode() + ")");
    } catch (IOException | RuntimeException e) {
      return new Probe(false, "the probe could not run: " + e.getMessage());
    } finally {
      ShellSupport.deleteTree(dir);
    }
  }

  /**
   * What {@link #probe} found; {@code detail} says which bwrap, or why it cannot start sandboxes.
   */
  public record Probe(boolean usable, String detail) {}

  private record Run(int exitCode, String output) {}

  /** Runs {@code argv} to its end (stdout and stderr together; exit -1: killed at the timeout). */
  private Run run(List<String> argv) throws IOException {
    ProcessBuilder builder =
        new ProcessBuilder(argv).redirectErrorStream(true).directory(root.toFile());
    builder.environment().clear();
    builder.environment().put("PATH", SANDBOX_PATH);
    Process process = builder.start();
    process.getOutputStream().close();
    CompletableFuture<byte[]> output =
        CompletableFuture.supplyAsync(
            () -> ShellSupport.readAll(process.getInputStream()), executor);
    try {
      if (!process.waitFor(PROBE_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
        process.toHandle().descendants().forEach(ProcessHandle::destroyForcibly);
        process.destroyForcibly();
        return new Run(-1, new String(output.get(5, TimeUnit.SECONDS), StandardCharsets.UTF_8));
      }
      return new Run(
          process.exitValue(), new String(output.get(5, TimeUnit.SECONDS), StandardCharsets.UTF_8));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      process.destroyForcibly();
      throw new IllegalStateException("interrupted", e);
    } catch (ExecutionException | TimeoutException e) {
      return new Run(process.isAlive() ? -1 : process.exitValue(), "");
    }
  }

  /** bwrap → bwrap (pid 1 inside) → bash. */
  @Override
  protected ProcessHandle shellOf(Process process) {
    ProcessHandle init = process.toHandle().children().findFirst().orElse(null);
    return init == null ? null : init.children().findFirst().orElse(null);
  }

  @Override
  protected String stateDir(Path workspace) {
    return "/tmp";
  }

  /**
   * The shell may have two processes more than a command: a fork bomb that used up the command's
   * count still leaves the shell room to fork the subshell for the next command.
   */
  @Override
  protected String extraInit(Limits limits) {
    return "ulimit -u " + (limits.maxProcesses() + 2) + "; ";
  }

  @Override
  protected String commandInit(Limits limits) {
    return "ulimit -u " + limits.maxProcesses() + "; ";
  }

  @Override
  protected String startFailure() {
    return "bwrap could not start the sandbox";
  }

  @Override
  protected void createWorkspace(Path workspace) throws IOException {
    checkTraversable();
    super.createWorkspace(workspace);
    Files.setPosixFilePermissions(
        workspace.getParent(), PosixFilePermissions.fromString("rwx--x--x"));
    handOver(workspace);
  }

  @Override
  protected void handOver(Path path) throws IOException {
    if (hostRoot) {
      Files.setAttribute(path, "unix:uid", SANDBOX_ID, LinkOption.NOFOLLOW_LINKS);
      Files.setAttribute(path, "unix:gid", SANDBOX_ID, LinkOption.NOFOLLOW_LINKS);
    }
  }

  @Override
  protected List<String> untarAs() {
    return hostRoot ? AS_SANDBOX_USER : List.of();
  }

  // ---- helpers ----------------------------------------------------------------------------

  /** Our own /etc files for sandboxes (the host's /etc is not shown). */
  private synchronized Path syntheticEtc() {
    if (etc == null) {
      Path dir = root.resolve(".etc");
      try {
        Files.createDirectories(dir);
        Files.writeString(
            dir.resolve("passwd"),
            "root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:"
                + SANDBOX_ID
                + ":"
                + SANDBOX_ID
                + ":sandbox:/workspace:/usr/bin/bash\n");
        Files.writeString(dir.resolve("group"), "root:x:0:\nsandbox:x:" + SANDBOX_ID + ":\n");
        Files.writeString(dir.resolve("hosts"), "127.0.0.1 localhost sandbox\n::1 localhost\n");
        Files.writeString(
            dir.resolve("nsswitch.conf"), "passwd: files\ngroup: files\nhosts: files\n");
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
            "sandbox root "
                + root
                + " is not reachable by the sandbox user (uid "
                + SANDBOX_ID
                + "): "
                + p
                + " lacks the search bit; chmod o+x "
                + p
                + " or choose another root");
      }
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
