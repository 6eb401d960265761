package dev.outboard;

import java.io.IOException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Set;

/** Files only their owner may read: the embedded node's dev API key and dev vault key. */
public final class PrivateFiles {
  private static final Set<PosixFilePermission> OWNER_ONLY =
      PosixFilePermissions.fromString("rw-------");

  private PrivateFiles() {}

  /**
   * Writes {@code text} to {@code file}, created owner-only from the start (no moment in which
   * another user could read it); an existing file is narrowed to owner-only first. On a filesystem
   * without POSIX permissions the file keeps the default ones.
   */
  public static void write(Path file, String text) throws IOException {
    Files.createDirectories(file.toAbsolutePath().getParent());
    try {
      Files.createFile(file, PosixFilePermissions.asFileAttribute(OWNER_ONLY));
    } catch (FileAlreadyExistsException e) {
      narrow(file);
    } catch (UnsupportedOperationException e) {
      if (!Files.exists(file)) Files.createFile(file);
    }
    Files.writeString(file, text);
  }

  private static void narrow(Path file) throws IOException {
    try {
      Files.setPosixFilePermissions(file, OWNER_ONLY);
    } catch (UnsupportedOperationException ignored) {
      // not a POSIX filesystem
    }
  }
}
