package dev.outboard.sandbox.shell;

import com.sun.jna.Native;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Sends signals Java cannot send itself (SIGSTOP, SIGCONT, signals to a process group). It calls
 * libc's {@code kill(2)} through JNA: a system call of a few microseconds, on the path of every
 * resume. Where JNA cannot load its native part (an unusual platform, a temp directory that is
 * mounted noexec), it falls back to one long-lived host shell that runs {@code kill} as a builtin,
 * a pipe round trip of tens of microseconds (forking {@code /bin/kill} would cost a millisecond).
 */
public final class Signaller implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(Signaller.class);

  /** Linux signal numbers (x86-64 and arm64 agree on these). */
  private static final Map<String, Integer> NUMBERS =
      Map.of("KILL", 9, "TERM", 15, "CONT", 18, "STOP", 19);

  private static final boolean NATIVE = LibC.load();

  private Process process;
  private OutputStream in;
  private BufferedReader out;

  public Signaller() throws IOException {
    if (!NATIVE) {
      process =
          new ProcessBuilder(
                  "/usr/bin/bash",
                  "--noprofile",
                  "--norc",
                  "-c",
                  "while read -r s t; do kill -s \"$s\" -- \"$t\" 2>/dev/null; echo $?; done")
              .redirectError(ProcessBuilder.Redirect.DISCARD)
              .start();
      in = process.getOutputStream();
      out =
          new BufferedReader(
              new InputStreamReader(process.getInputStream(), StandardCharsets.US_ASCII));
    }
  }

  /** Whether signals go straight to kill(2) (else through the helper shell). */
  public static boolean isNative() {
    return NATIVE;
  }

  /**
   * Sends {@code signal} (e.g. "STOP") to {@code target}: a pid, or "-pgid" for a process group.
   */
  public boolean send(String signal, String target) {
    Integer number = NUMBERS.get(signal);
    if (NATIVE && number != null) {
      return LibC.kill(Integer.parseInt(target), number) == 0;
    }
    return sendThroughShell(signal, target);
  }

  private synchronized boolean sendThroughShell(String signal, String target) {
    try {
      if (process == null) {
        throw new IllegalStateException("no signal helper shell for " + signal);
      }
      in.write((signal + " " + target + "\n").getBytes(StandardCharsets.US_ASCII));
      in.flush();
      String answer = out.readLine();
      return "0".equals(answer);
    } catch (IOException e) {
      throw new IllegalStateException("the signal helper shell died", e);
    }
  }

  @Override
  public void close() {
    if (process != null) {
      process.destroyForcibly();
    }
  }

  /** libc's kill(2), bound directly (JNA direct mapping). */
  private static final class LibC {
    static native int kill(int pid, int signal);

    static boolean load() {
      try {
        Native.register(LibC.class, "c");
        return true;
      } catch (Throwable e) { // UnsatisfiedLinkError, or JNA's own failure to unpack its library
        log.warn(
            "JNA could not load libc ({}); sandbox signals go through a helper shell",
            e.toString());
        return false;
      }
    }
  }
}
