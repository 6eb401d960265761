package dev.outboard.sandbox.shell;

import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A workspace directory as a tar archive and back, with GNU tar on the host: what hibernate and
 * salvage answer, and what create unpacks.
 */
final class WorkspaceArchive {
  private WorkspaceArchive() {}

  /** The workspace's files as a tar archive. */
  static byte[] tar(Path workspace) {
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
   * Unpacks a snapshot, run as the sandbox's user where there is one ({@code untarAs} goes before
   * {@code tar}), so a hostile archive can do no more than the sandbox. GNU tar strips leading
   * {@code /}, refuses {@code ..} members and delays symlinks so none is written through; it keeps
   * neither owners nor permission bits beyond the umask.
   */
  static void untar(Path workspace, byte[] snapshot, List<String> untarAs) {
    List<String> argv = new ArrayList<>(untarAs);
    argv.addAll(
        List.of(
            "/usr/bin/tar",
            "-C",
            workspace.toString(),
            "--no-same-owner",
            "--no-same-permissions",
            "-xf",
            "-"));
    // tar's messages go to a file, not a pipe read on the provider's executor: this runs on that
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
            "the snapshot could not be restored: "
                + ShellSupport.capped(Files.readString(messages)));
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
}
