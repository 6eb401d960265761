package dev.outboard.sandbox.shell;

import dev.outboard.sandbox.SandboxProvider.Entry;
import java.io.IOException;
import java.io.InputStream;
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
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * The file tools on a sandbox's workspace directory, from the host side: read, write and list take
 * {@code /workspace/...} (or relative) paths, stay inside the workspace ({@link WorkspacePaths})
 * and follow no symbolic link; read answers UTF-8 text up to {@value #MAX_READ_BYTES} bytes. The
 * execution records ({@code /workspace/.outboard}, {@link ExecLedger}) are neither listed nor
 * written.
 */
final class WorkspaceFiles {
  private static final long MAX_READ_BYTES = 10L << 20;

  /** Gives a file or directory the file tools created to the sandbox's user. */
  @FunctionalInterface
  interface HandOver {
    void handOver(Path path) throws IOException;
  }

  private WorkspaceFiles() {}

  static String read(Path workspace, String path) {
    Path file = WorkspacePaths.resolve(workspace, path);
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
  }

  /** Writes the file, creating its missing parent directories; all it creates is handed over. */
  static void write(Path workspace, String path, String content, HandOver handOver) {
    if (WorkspacePaths.relative(path).isEmpty()) {
      throw new IllegalArgumentException("cannot write /workspace itself; give a file path");
    }
    Path file = WorkspacePaths.resolve(workspace, path);
    if (file.startsWith(workspace.resolve(".outboard"))) {
      throw new IllegalArgumentException(
          "/workspace/.outboard holds the sandbox's execution records; write elsewhere");
    }
    try {
      createDirectoriesHandedOver(file.getParent(), handOver);
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
      handOver.handOver(file);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The directory's entries, sorted by path. */
  static List<Entry> list(Path workspace, String path) {
    Path dir = WorkspacePaths.resolve(workspace, path);
    if (!Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) {
      throw new IllegalArgumentException(
          Files.exists(dir, LinkOption.NOFOLLOW_LINKS)
              ? path + " is not a directory"
              : "no such directory: " + path);
    }
    List<Entry> entries = new ArrayList<>();
    try (var children = Files.list(dir)) {
      for (Path child : (Iterable<Path>) children::iterator) {
        if (child.equals(workspace.resolve(".outboard"))) {
          continue; // the execution records (ExecLedger), not the agent's files
        }
        BasicFileAttributes a =
            Files.readAttributes(child, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        entries.add(
            new Entry(WorkspacePaths.sandboxPath(workspace, child), a.isDirectory(), a.size()));
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    entries.sort(Comparator.comparing(Entry::path));
    return entries;
  }

  private static void createDirectoriesHandedOver(Path dir, HandOver handOver) throws IOException {
    if (dir == null || Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) {
      return;
    }
    createDirectoriesHandedOver(dir.getParent(), handOver);
    Files.createDirectory(dir);
    handOver.handOver(dir);
  }
}
