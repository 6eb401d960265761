package dev.outboard.sandbox.shell;

import dev.outboard.sandbox.SandboxProvider.ExecResult;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What a sandbox ran, kept in its workspace ({@value #FILE}), so that the workspace itself answers
 * whether a command with a given execution id never ran, ran (and what it printed), or was cut off
 * — also after the provider, its host or the harness died, and in a replacement sandbox created
 * from the salvaged workspace (the records travel in its tar archive like every other file).
 *
 * <p>One append-only file. Just before a command line is sent to the shell, a {@code R <key>}
 * record; when it ended, a {@code D <key> <exit> <truncated> <timedOut> <tookNanos> <bytes>} record
 * followed by its output; {@code N <key>} takes back an R whose line never reached the shell.
 * Received without done: the command was cut off (it may have run in part). Neither: it never ran.
 * A record cut short by a crash reads as if it were not there (a done record cut short leaves its
 * command "cut off", never "never ran"). Appending to one file changes no directory, which kept the
 * resume of a frozen sandbox under a millisecond; the records are as durable as the workspace's own
 * files (a killed process loses neither; they are not fsynced, as the command's own writes are
 * not). The file is read once, when a ledger first looks (the records a salvaged workspace
 * brought), and then followed in memory, this ledger being its only writer; outputs are read back
 * only when a command is asked again. The newest {@value #KEEP} or so done records are kept (the
 * file is rewritten past twice that). The key is a hash of the execution id. Not thread-safe: its
 * sandbox's lock guards it.
 */
final class ExecLedger {
  /** The records' file, relative to the workspace. */
  static final String FILE = ".outboard/exec.log";

  /**
   * Done records kept: a command is only ever asked again while its turn is open, and the records
   * travel in every snapshot, so few and recent suffice.
   */
  static final int KEEP = 64;

  /** What the ledger knows of one execution id. */
  enum Status {
    NEVER_RAN,
    CUT_OFF,
    DONE
  }

  record Entry(Status status, ExecResult result) {}

  /** A record in memory: a done one knows where its output is in the file. */
  private record Known(
      boolean done,
      int exitCode,
      boolean truncated,
      boolean timedOut,
      long tookNanos,
      long offset,
      int length) {}

  private final Path file;

  /** By key, in the order recorded; null until first used. */
  private Map<String, Known> known;

  private long size;
  private int done;

  ExecLedger(Path workspace) {
    this.file = workspace.resolve(FILE);
  }

  Entry lookup(String executionId) {
    if (executionId == null) return new Entry(Status.NEVER_RAN, null);
    Known k = known().get(key(executionId));
    if (k == null) return new Entry(Status.NEVER_RAN, null);
    if (!k.done()) return new Entry(Status.CUT_OFF, null);
    try {
      return new Entry(Status.DONE, read(k));
    } catch (IOException e) {
      return new Entry(Status.CUT_OFF, null); // its fate cannot be read: not "never ran"
    }
  }

  /** Notes that the command is about to be sent to the shell. */
  void received(String executionId) {
    if (executionId == null) return;
    String key = key(executionId);
    known();
    try {
      append(("R " + key + "\n").getBytes(StandardCharsets.UTF_8));
    } catch (IOException e) {
      throw new UncheckedIOException(
          "the sandbox could not note the command in /workspace/"
              + FILE
              + " ("
              + e.getMessage()
              + "); it did not run",
          e);
    }
    known.put(key, new Known(false, 0, false, false, 0, 0, 0));
  }

  /**
   * The command surely never reached the shell (an {@code N <key>} record): it may run later after
   * all.
   */
  void notSent(String executionId) {
    if (executionId == null) return;
    String key = key(executionId);
    try {
      append(("N " + key + "\n").getBytes(StandardCharsets.UTF_8));
      known().remove(key);
    } catch (IOException ignored) {
      // then it reads as cut off, which is still honest
    }
  }

  /** Records the command's result; a failure to record leaves it "cut off", never "never ran". */
  void done(String executionId, ExecResult result) {
    if (executionId == null) return;
    String key = key(executionId);
    byte[] output = result.output().getBytes(StandardCharsets.UTF_8);
    String head =
        "D "
            + key
            + " "
            + result.exitCode()
            + " "
            + result.truncated()
            + " "
            + result.timedOut()
            + " "
            + result.took().toNanos()
            + " "
            + output.length
            + "\n";
    byte[] h = head.getBytes(StandardCharsets.UTF_8);
    byte[] record = new byte[h.length + output.length + 1];
    System.arraycopy(h, 0, record, 0, h.length);
    System.arraycopy(output, 0, record, h.length, output.length);
    record[record.length - 1] = '\n';
    try {
      long at = size;
      append(record);
      known().remove(key); // re-inserted last, in record order
      known.put(
          key,
          new Known(
              true,
              result.exitCode(),
              result.truncated(),
              result.timedOut(),
              result.took().toNanos(),
              at + h.length,
              output.length));
      if (++done > 2 * KEEP) compact();
    } catch (IOException | RuntimeException ignored) {
      // the R record stays: asked again, the command is reported cut off, not run again
    }
  }

  private void append(byte[] bytes) throws IOException {
    try {
      appendTo(file, bytes);
    } catch (NoSuchFileException e) {
      Files.createDirectories(file.getParent()); // the first record, or the directory was removed
      appendTo(file, bytes);
    }
    size += bytes.length;
  }

  private static void appendTo(Path file, byte[] bytes) throws IOException {
    Files.write(
        file,
        bytes,
        StandardOpenOption.CREATE,
        StandardOpenOption.APPEND,
        StandardOpenOption.WRITE);
  }

  /** Rewrites the file with the newest {@value #KEEP} done records and every cut-off one. */
  private void compact() throws IOException {
    List<Map.Entry<String, Known>> all = new ArrayList<>(known.entrySet());
    long doneCount = all.stream().filter(e -> e.getValue().done()).count();
    long skip = Math.max(0, doneCount - KEEP);
    Path tmp = file.resolveSibling("exec.log.tmp");
    Map<String, Known> kept = new LinkedHashMap<>();
    long at = 0;
    try (var out =
        Files.newOutputStream(
            tmp,
            StandardOpenOption.CREATE,
            StandardOpenOption.TRUNCATE_EXISTING,
            StandardOpenOption.WRITE)) {
      for (Map.Entry<String, Known> e : all) {
        Known k = e.getValue();
        if (k.done() && skip > 0) {
          skip--;
          continue;
        }
        byte[] h;
        if (k.done()) {
          ExecResult r = read(k);
          h =
              ("D "
                      + e.getKey()
                      + " "
                      + k.exitCode()
                      + " "
                      + k.truncated()
                      + " "
                      + k.timedOut()
                      + " "
                      + k.tookNanos()
                      + " "
                      + k.length()
                      + "\n")
                  .getBytes(StandardCharsets.UTF_8);
          out.write(h);
          out.write(r.output().getBytes(StandardCharsets.UTF_8));
          out.write('\n');
          kept.put(
              e.getKey(),
              new Known(
                  true,
                  k.exitCode(),
                  k.truncated(),
                  k.timedOut(),
                  k.tookNanos(),
                  at + h.length,
                  k.length()));
          at += h.length + k.length() + 1;
        } else {
          h = ("R " + e.getKey() + "\n").getBytes(StandardCharsets.UTF_8);
          out.write(h);
          kept.put(e.getKey(), k);
          at += h.length;
        }
      }
    }
    Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    known = kept;
    size = at;
    done = (int) kept.values().stream().filter(Known::done).count();
  }

  /** A done record's result, its output read from the file. */
  private ExecResult read(Known k) throws IOException {
    byte[] output = new byte[k.length()];
    try (var channel = java.nio.channels.FileChannel.open(file, StandardOpenOption.READ)) {
      java.nio.ByteBuffer buffer = java.nio.ByteBuffer.wrap(output);
      while (buffer.hasRemaining() && channel.read(buffer, k.offset() + buffer.position()) > 0) {
        // reads on
      }
      if (buffer.hasRemaining()) throw new IOException("the record's output is cut short");
    }
    return new ExecResult(
        k.exitCode(),
        new String(output, StandardCharsets.UTF_8),
        k.truncated(),
        k.timedOut(),
        Duration.ofNanos(k.tookNanos()),
        Duration.ZERO);
  }

  /** The records, read from the file the first time. */
  private Map<String, Known> known() {
    if (known != null) return known;
    known = new LinkedHashMap<>();
    byte[] bytes;
    try {
      bytes = Files.readAllBytes(file);
    } catch (NoSuchFileException e) {
      return known;
    } catch (IOException e) {
      throw new UncheckedIOException(
          "the sandbox's execution records cannot be read (" + e.getMessage() + ")", e);
    }
    size = bytes.length;
    int at = 0;
    while (at < bytes.length) {
      int nl = indexOf(bytes, (byte) '\n', at);
      if (nl < 0) break; // a record cut short
      String[] head = new String(bytes, at, nl - at, StandardCharsets.UTF_8).split(" ");
      if (head.length == 2 && head[0].equals("R")) {
        known.putIfAbsent(head[1], new Known(false, 0, false, false, 0, 0, 0));
        at = nl + 1;
      } else if (head.length == 2 && head[0].equals("N")) {
        if (known.get(head[1]) != null && !known.get(head[1]).done()) known.remove(head[1]);
        at = nl + 1;
      } else if (head.length == 7 && head[0].equals("D")) {
        try {
          int length = Integer.parseInt(head[6]);
          if (nl + 1 + length + 1 > bytes.length)
            break; // its output cut short: the R record says cut off
          known.remove(head[1]);
          known.put(
              head[1],
              new Known(
                  true,
                  Integer.parseInt(head[2]),
                  Boolean.parseBoolean(head[3]),
                  Boolean.parseBoolean(head[4]),
                  Long.parseLong(head[5]),
                  nl + 1,
                  length));
          done++;
          at = nl + 1 + length + 1;
        } catch (NumberFormatException e) {
          break;
        }
      } else {
        break; // not ours (changed by hand): what came before stands
      }
    }
    return known;
  }

  private static int indexOf(byte[] bytes, byte b, int from) {
    for (int i = from; i < bytes.length; i++) {
      if (bytes[i] == b) return i;
    }
    return -1;
  }

  static String key(String executionId) {
    try {
      byte[] hash =
          MessageDigest.getInstance("SHA-256").digest(executionId.getBytes(StandardCharsets.UTF_8));
      return HexFormat.of().formatHex(hash, 0, 16);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
