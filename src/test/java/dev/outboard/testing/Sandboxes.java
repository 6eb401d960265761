package dev.outboard.testing;

import dev.outboard.sandbox.bwrap.BwrapSandboxProvider;
import java.util.List;
import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;

/** What tests of real bubblewrap sandboxes share. */
public final class Sandboxes {
  private Sandboxes() {}

  /**
   * Skips the calling test (with a notice on stderr) where bubblewrap is missing; under {@code
   * CI=true} fails it instead, since CI must run every sandbox test.
   */
  public static void requireBwrap(Class<?> test) {
    if (BwrapSandboxProvider.installed()) return;
    String what = "bubblewrap (bwrap) is not installed; " + test.getSimpleName() + " skipped";
    if ("true".equalsIgnoreCase(System.getenv("CI")))
      Assertions.fail(what + "; CI=true, so sandbox tests must not be skipped");
    System.err.println("SKIPPED: " + what);
    Assumptions.abort("SKIPPED: " + what);
  }

  /**
   * kill -9 of every process whose command line contains {@code needle} (a sandbox id, or its
   * workspace path: both are on its bwrap's command line) and of everything below them.
   *
   * @return how many such processes there were
   */
  public static int killProcessesOf(String needle) {
    List<ProcessHandle> found =
        ProcessHandle.allProcesses()
            .filter(p -> p.info().commandLine().map(c -> c.contains(needle)).orElse(false))
            .toList();
    for (ProcessHandle p : found) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly();
    }
    return found.size();
  }
}
