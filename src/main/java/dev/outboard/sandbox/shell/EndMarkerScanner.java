package dev.outboard.sandbox.shell;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

/**
 * Splits a shell's output stream into one command's output and its exit code. The shell ends every
 * command with {@code \u0001<nonce>:<exit code>\n}; the nonce is random per sandbox, and its first
 * byte (0x01) occurs nowhere else in the marker, so a failed partial match never hides the start of
 * a real one. Output beyond {@code cap} bytes is counted, not kept.
 */
public final class EndMarkerScanner {
  private final byte[] marker;
  private final long cap;
  private final ByteArrayOutputStream kept = new ByteArrayOutputStream();
  private final StringBuilder exitDigits = new StringBuilder();
  private long omitted;
  private int matched; // bytes of the marker matched so far
  private boolean inExitCode;
  private boolean done;

  public EndMarkerScanner(String nonce, long cap) {
    this.marker = ("\u0001" + nonce + ":").getBytes(StandardCharsets.US_ASCII);
    this.cap = cap;
  }

  /** Feeds bytes; returns the index just past the end marker, or -1 if it has not come yet. */
  public int feed(byte[] buffer, int offset, int length) {
    int end = offset + length;
    int runStart = offset; // start of plain output not yet copied
    for (int i = offset; i < end; i++) {
      byte b = buffer[i];
      if (inExitCode) {
        if (b == '\n') {
          done = true;
          return i + 1;
        }
        exitDigits.append((char) b);
        continue;
      }
      if (matched == 0) {
        if (b != marker[0]) {
          continue; // plain output; copied in runs
        }
        keep(buffer, runStart, i - runStart);
        matched = 1;
      } else if (b == marker[matched]) {
        matched++;
      } else {
        keep(marker, 0, matched); // a false start: it was output after all
        matched = b == marker[0] ? 1 : 0;
        if (matched == 0) {
          runStart = i;
          continue;
        }
      }
      if (matched == marker.length) {
        inExitCode = true;
      }
      runStart = i + 1;
    }
    if (matched == 0 && !inExitCode) {
      keep(buffer, runStart, end - runStart);
    }
    return -1;
  }

  private void keep(byte[] bytes, int offset, int length) {
    if (length <= 0) {
      return;
    }
    long room = Math.max(0, cap - kept.size());
    int take = (int) Math.min(room, length);
    kept.write(bytes, offset, take);
    omitted += length - take;
  }

  public boolean done() {
    return done;
  }

  public int exitCode() {
    try {
      return Integer.parseInt(exitDigits.toString().trim());
    } catch (NumberFormatException e) {
      return -1;
    }
  }

  public String output() {
    return kept.toString(StandardCharsets.UTF_8);
  }

  public long omittedBytes() {
    return omitted;
  }

  /**
   * The output, and after it a note for each way the command was cut short: output beyond the cap,
   * the CPU time limit ({@code cpuSeconds}; exit 152, SIGXCPU), the timeout.
   */
  public String outputWithNotes(boolean timedOut, long cpuSeconds, Duration timeout) {
    StringBuilder output = new StringBuilder(output());
    if (omitted > 0) {
      newline(output);
      output.append("[output truncated: ").append(omitted).append(" bytes omitted]");
    }
    if (exitCode() == 128 + 24 && !timedOut) { // SIGXCPU
      newline(output);
      output
          .append("[CPU time limit of ")
          .append(cpuSeconds)
          .append(" s exceeded; the command was killed]");
    }
    if (timedOut) {
      newline(output);
      output
          .append("[timed out after ")
          .append(timeout.toMillis())
          .append(" ms; the command was killed]");
    }
    return output.toString();
  }

  private static void newline(StringBuilder output) {
    if (output.length() > 0 && output.charAt(output.length() - 1) != '\n') {
      output.append('\n');
    }
  }
}
