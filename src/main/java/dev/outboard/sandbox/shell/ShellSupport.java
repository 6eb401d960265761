package dev.outboard.sandbox.shell;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.security.SecureRandom;

/** Small process and file helpers shared by the process-based sandbox providers. */
public final class ShellSupport {
  private static final SecureRandom RANDOM = new SecureRandom();

  /** How much of what a shell (or bwrap) printed when it failed to start goes into an error. */
  public static final int START_OUTPUT_CHARS = 2000;

  private ShellSupport() {}

  public static byte[] readAll(InputStream in) {
    try {
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      in.transferTo(out);
      return out.toByteArray();
    } catch (IOException e) {
      return new byte[0];
    }
  }

  public static void deleteTree(Path dir) {
    if (!Files.exists(dir, LinkOption.NOFOLLOW_LINKS)) {
      return;
    }
    try {
      Files.walkFileTree(
          dir,
          new SimpleFileVisitor<>() {
            @Override
            public FileVisitResult visitFile(Path file, BasicFileAttributes attrs)
                throws IOException {
              Files.delete(file);
              return FileVisitResult.CONTINUE;
            }

            @Override
            public FileVisitResult postVisitDirectory(Path d, IOException e) throws IOException {
              Files.delete(d);
              return FileVisitResult.CONTINUE;
            }
          });
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** {@code text} as a bash {@code $'...'} word: one line, no expansion. NUL cannot be passed. */
  public static String ansiQuote(String text) {
    StringBuilder b = new StringBuilder(text.length() + 8).append("$'");
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      switch (c) {
        case '\\' -> b.append("\\\\");
        case '\'' -> b.append("\\'");
        case '\n' -> b.append("\\n");
        case '\t' -> b.append("\\t");
        case '\0' -> {}
        default -> {
          if (c < 0x20 || c == 0x7f) {
            b.append(String.format("\\x%02x", (int) c));
          } else {
            b.append(c);
          }
        }
      }
    }
    return b.append('\'').toString();
  }

  public static byte[] randomBytes(int n) {
    byte[] bytes = new byte[n];
    RANDOM.nextBytes(bytes);
    return bytes;
  }

  /** The process group of process {@code pid}, from /proc; 0 if it cannot be read. */
  public static long processGroupOf(long pid) {
    try {
      String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
      String[] fields = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
      return Long.parseLong(fields[2]);
    } catch (IOException | RuntimeException e) {
      return 0;
    }
  }

  /**
   * A process's output (bwrap's stderr, say) on one line, capped at {@value #START_OUTPUT_CHARS}
   * characters.
   */
  public static String capped(String output) {
    String line = output.strip().replaceAll("\\s*[\\r\\n]+\\s*", " | ");
    return line.length() <= START_OUTPUT_CHARS
        ? line
        : line.substring(0, START_OUTPUT_CHARS)
            + "… ["
            + (line.length() - START_OUTPUT_CHARS)
            + " more characters]";
  }
}
