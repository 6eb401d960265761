package dev.outboard.sandbox.shell;

import dev.outboard.sandbox.SandboxProvider.ExecResult;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.FileTime;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.List;

/**
 * What a sandbox ran, kept in its workspace ({@value #DIR}), so that the workspace itself answers
 * whether a command with a given execution id never ran, ran (and what it printed), or was cut off
 * — also after the provider, its host or the harness died, and in a replacement sandbox created
 * from the salvaged workspace (the records travel in its tar archive like every other file).
 *
 * <p>Per execution id two files: {@code <key>.received}, written just before the command line is
 * sent to the shell, and {@code <key>.done} (exit code, flags, run time, output), written when it
 * ended, then the received note goes. Received without done: the command was cut off (it may have
 * run in part). Neither: it never ran. The done record is written to a temporary name and renamed,
 * so it is whole or absent. The files are as durable as the workspace's own (a killed process
 * loses neither; they are not fsynced, as the command's own writes are not). The newest
 * {@value #KEEP} or so records are kept. The key is a hash of the execution id, so any id is a safe
 * file name.
 */
final class ExecLedger {
  /** The ledger's directory, relative to the workspace. */
  static final String DIR = ".outboard/exec";
  /**
   * Records kept (pruned every {@value #PRUNE_EVERY} commands): a command is only ever asked again
   * while its turn is open, and the records travel in every snapshot, so few and recent suffice.
   */
  static final int KEEP = 64;
  private static final int PRUNE_EVERY = 16;
  private static final String VERSION = "ob-exec-1";

  /** What the ledger knows of one execution id. */
  enum Status {
    NEVER_RAN,
    CUT_OFF,
    DONE
  }

  record Entry(Status status, ExecResult result) {}

  private final Path dir;
  private int writes;

  ExecLedger(Path workspace) {
    this.dir = workspace.resolve(DIR);
  }

  Entry lookup(String executionId) {
    if (executionId == null) return new Entry(Status.NEVER_RAN, null);
    String key = key(executionId);
    try {
      byte[] done = Files.readAllBytes(dir.resolve(key + ".done"));
      return new Entry(Status.DONE, parse(done));
    } catch (NoSuchFileException e) {
      return new Entry(Files.exists(dir.resolve(key + ".received"), LinkOption.NOFOLLOW_LINKS) ? Status.CUT_OFF : Status.NEVER_RAN, null);
    } catch (IOException | RuntimeException e) {
      // A record that cannot be read (the agent changed it): the command's fate is unknown.
      return new Entry(Status.CUT_OFF, null);
    }
  }

  /** Notes that the command is about to be sent to the shell. */
  void received(String executionId) {
    if (executionId == null) return;
    try {
      Files.createDirectories(dir);
      try {
        Files.createFile(dir.resolve(key(executionId) + ".received"));
      } catch (FileAlreadyExistsException ignored) {
        // a note left by a send that failed: it is this attempt's now
      }
    } catch (IOException e) {
      throw new UncheckedIOException("the sandbox could not note the command in " + DIR + " (" + e.getMessage() + "); it did not run", e);
    }
  }

  /** Takes back a received note: the command surely never reached the shell. */
  void notSent(String executionId) {
    if (executionId == null) return;
    try {
      Files.deleteIfExists(dir.resolve(key(executionId) + ".received"));
    } catch (IOException ignored) {
      // then it reads as cut off, which is still honest
    }
  }

  /** Records the command's result; a failure to record leaves it "cut off", never "never ran". */
  void done(String executionId, ExecResult result) {
    if (executionId == null) return;
    String key = key(executionId);
    try {
      Path tmp = dir.resolve(key + ".tmp");
      Files.write(tmp, format(result));
      Files.move(tmp, dir.resolve(key + ".done"), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
      Files.deleteIfExists(dir.resolve(key + ".received"));
      if (++writes % PRUNE_EVERY == 0) prune();
    } catch (IOException | RuntimeException ignored) {
      // the received note stays: asked again, the command is reported cut off, not run again
    }
  }

  /** Deletes the oldest done records beyond {@value #KEEP}. */
  private void prune() throws IOException {
    List<Path> done = new ArrayList<>();
    try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, "*.done")) {
      files.forEach(done::add);
    }
    if (done.size() <= KEEP) return;
    done.sort(Comparator.comparing(ExecLedger::modified));
    for (Path p : done.subList(0, done.size() - KEEP)) Files.deleteIfExists(p);
  }

  private static FileTime modified(Path p) {
    try {
      return Files.getLastModifiedTime(p, LinkOption.NOFOLLOW_LINKS);
    } catch (IOException e) {
      return FileTime.fromMillis(0);
    }
  }

  private static byte[] format(ExecResult r) {
    String head = VERSION + " " + r.exitCode() + " " + r.truncated() + " " + r.timedOut() + " " + r.took().toNanos() + "\n";
    byte[] h = head.getBytes(StandardCharsets.UTF_8);
    byte[] o = r.output().getBytes(StandardCharsets.UTF_8);
    byte[] all = new byte[h.length + o.length];
    System.arraycopy(h, 0, all, 0, h.length);
    System.arraycopy(o, 0, all, h.length, o.length);
    return all;
  }

  private static ExecResult parse(byte[] bytes) {
    String text = new String(bytes, StandardCharsets.UTF_8);
    int nl = text.indexOf('\n');
    String[] head = text.substring(0, nl).split(" ");
    if (!head[0].equals(VERSION) || head.length != 5) throw new IllegalArgumentException("not an execution record");
    Duration took = Duration.ofNanos(Long.parseLong(head[4]));
    return new ExecResult(Integer.parseInt(head[1]), text.substring(nl + 1), Boolean.parseBoolean(head[2]),
        Boolean.parseBoolean(head[3]), took, Duration.ZERO);
  }

  static String key(String executionId) {
    try {
      byte[] hash = MessageDigest.getInstance("SHA-256").digest(executionId.getBytes(StandardCharsets.UTF_8));
      return HexFormat.of().formatHex(hash, 0, 16);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
