package dev.outboard.sandbox.shell;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;

/**
 * Maps a tool's path ({@code /workspace/a/b}, {@code a/b} or {@code ./a/b}) to the host path inside
 * one sandbox's workspace directory, and refuses anything that could leave it: {@code ..}, absolute
 * paths outside {@code /workspace}, and paths whose real path (symlinks resolved) is outside the
 * workspace. Host-side file tools run as the service's user, so this check is what keeps a
 * sandbox's symlink from reading the host's files.
 *
 * <p>Known limit: a process inside the sandbox could swap a checked directory for a symlink between
 * the check and the access (a race); the final component is opened without following links, but
 * intermediate directories are not re-checked.
 */
public final class WorkspacePaths {
  public static final String MOUNT = "/workspace";

  private WorkspacePaths() {}

  /** The workspace-relative form of {@code path} ("" for the workspace itself). */
  public static String relative(String path) {
    if (path == null || path.isBlank()) {
      throw new IllegalArgumentException("path is empty; give a path below /workspace");
    }
    if (path.indexOf('\0') >= 0) {
      throw new IllegalArgumentException("path contains a NUL character");
    }
    String rel;
    if (path.equals(MOUNT) || path.equals(MOUNT + "/")) {
      rel = "";
    } else if (path.startsWith(MOUNT + "/")) {
      rel = path.substring(MOUNT.length() + 1);
    } else if (path.startsWith("/")) {
      throw new IllegalArgumentException(
          "path " + path + " is outside /workspace; file tools only reach /workspace");
    } else {
      rel = path;
    }
    for (String segment : rel.split("/+")) {
      if (segment.equals("..")) {
        throw new IllegalArgumentException(
            "path " + path + " contains '..'; give a path below /workspace");
      }
    }
    return rel;
  }

  /**
   * The host path for {@code path}, with every existing part resolved and checked to stay inside
   * {@code workspace}. The returned path may not exist yet (for writes).
   */
  public static Path resolve(Path workspace, String path) {
    String rel = relative(path);
    try {
      Path root = workspace.toRealPath();
      Path target = rel.isEmpty() ? root : root.resolve(rel).normalize();
      if (!target.startsWith(root)) {
        throw new IllegalArgumentException("path " + path + " is outside /workspace");
      }
      // Resolve the longest existing prefix (following symlinks) and require it to stay inside.
      Path existing = target;
      while (existing != null && !Files.exists(existing, LinkOption.NOFOLLOW_LINKS)) {
        existing = existing.getParent();
      }
      if (existing == null) {
        throw new IllegalArgumentException("path " + path + " is outside /workspace");
      }
      Path real;
      try {
        real = existing.toRealPath();
      } catch (IOException dangling) {
        throw new IllegalArgumentException(
            "path " + path + " is a symlink that points outside /workspace or nowhere; refused");
      }
      if (!real.startsWith(root)) {
        throw new IllegalArgumentException(
            "path " + path + " leads outside /workspace through a symlink; refused");
      }
      return real.resolve(existing.relativize(target)).normalize();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** {@code host} (inside {@code workspace}) as the sandbox sees it: {@code /workspace/...}. */
  public static String sandboxPath(Path workspace, Path host) {
    try {
      Path rel = workspace.toRealPath().relativize(host);
      return rel.toString().isEmpty() ? MOUNT : MOUNT + "/" + rel;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
