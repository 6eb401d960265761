package dev.outboard.sandbox.local;

import dev.outboard.sandbox.shell.ShellSandboxProvider;
import dev.outboard.sandbox.shell.WorkspacePaths;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executor;

/**
 * Sandboxes WITHOUT isolation, for local development on a machine without bubblewrap (DESIGN.md §4;
 * it gives up most of §7). Only wired in embedded mode, and only when {@code
 * outboard.sandbox.allow-unisolated = true}; the service then logs {@link #WARNING} at start and
 * sessions show {@code sandbox.isolation: "none"}. Commands, limits, suspend and the file tools
 * work as in {@link ShellSandboxProvider}.
 *
 * <p><b>What it is.</b> One long-lived {@code bash} per sandbox, a plain child process of the
 * service started through {@code setsid} (its own session and process group, so suspend can stop
 * exactly its processes), with working directory {@code <root>/<id>/workspace}. No namespaces: the
 * commands run as the service's user, see the service's whole filesystem and network, and can
 * signal its processes. The environment is NOT inherited from the service: it is cleared down to
 * PATH, HOME (the workspace directory), LANG=C.UTF-8 and WORKSPACE (the workspace directory), so
 * the service's own variables (API keys, database passwords) are not handed to commands. Files are
 * another matter: a command can read anything the service's user can.
 *
 * <p><b>Paths.</b> There is no mount namespace, so {@code /workspace} does not exist as an absolute
 * path for commands. Commands start in the workspace directory and must use relative paths or
 * {@code $WORKSPACE} (also {@code $HOME} and {@code ~}). The file tools (read / write / list) still
 * take {@code /workspace/...} (or relative) paths and map them to the directory, refusing {@code
 * ..}, other absolute paths and symlinks leading out of it ({@link WorkspacePaths}); listings
 * answer {@code /workspace/...} paths. The shell's state files are in {@code <root>/<id>}, outside
 * the workspace; snapshots are unpacked as the service's user.
 *
 * <p><b>Limits.</b> No process-count limit: RLIMIT_NPROC counts every process of the service's user
 * (and is ignored for root), so it cannot bound one sandbox; {@code maxProcesses} is not enforced.
 *
 * <p><b>Stopping.</b> Hibernate and destroy kill the shell, its descendants and whatever is left in
 * its process group. A process that leaves the group (setsid, a double fork into its own group) is
 * neither frozen by suspend nor killed.
 */
public final class UnisolatedSandboxProvider extends ShellSandboxProvider {
  /** Logged at WARN by {@link dev.outboard.sandbox.SandboxProviders} when it chooses this. */
  public static final String WARNING =
      "sandboxes are NOT isolated: commands run as the service's user with its filesystem and"
          + " network; never use this outside local development (install the Debian/Ubuntu package"
          + " 'bubblewrap' and set outboard.sandbox.allow-unisolated = false for real sandboxes)";

  /** What a session shows as {@code sandbox.isolation} with this provider. */
  public static final String ISOLATION = "none";

  public UnisolatedSandboxProvider(Path root, Executor executor) {
    super(root, executor, "unisolated");
  }

  @Override
  public String isolation() {
    return ISOLATION;
  }

  // ---- the shell as a plain process -------------------------------------------------------

  /**
   * setsid: its own session and process group (a Java child is no group leader, so setsid execs
   * bash in place), so SIGSTOP of the group reaches the sandbox and nothing else.
   */
  @Override
  protected ShellCommand shellCommand(Path workspace) {
    String dir = workspace.toString();
    return new ShellCommand(
        List.of("/usr/bin/setsid", "/usr/bin/bash", "--noprofile", "--norc"),
        workspace,
        Map.of("PATH", SANDBOX_PATH, "HOME", dir, "LANG", "C.UTF-8", "WORKSPACE", dir));
  }

  /** The process itself (setsid execs bash), or its child if setsid had to fork. */
  @Override
  protected ProcessHandle shellOf(Process process) {
    ProcessHandle outer = process.toHandle();
    boolean isSetsid = outer.info().command().map(c -> c.endsWith("/setsid")).orElse(false);
    return isSetsid ? outer.children().findFirst().orElse(null) : outer;
  }

  @Override
  protected String stateDir(Path workspace) {
    return workspace.getParent().toString();
  }

  @Override
  protected String startFailure() {
    return "could not start the sandbox shell";
  }

  /** Kills orphans re-parented away from the shell too: no pid namespace ends them here. */
  @Override
  protected boolean stopKillsProcessGroup() {
    return true;
  }
}
