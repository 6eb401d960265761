package dev.outboard.sandbox.bwrap;

import dev.outboard.sandbox.shell.ShellSupport;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import java.util.function.Function;
import java.util.regex.Pattern;

/**
 * Why bubblewrap could not start a sandbox, from what it printed and the kernel's settings for
 * unprivileged user namespaces (read from {@code /proc/sys}): names the setting at fault when one
 * is, and always quotes bwrap's own stderr (capped).
 */
public final class BwrapDiagnosis {
  /** How much of bwrap's stderr a message quotes. */
  public static final int MAX_STDERR = ShellSupport.START_OUTPUT_CHARS;

  /** What bwrap prints when it cannot create or map a user namespace. */
  private static final Pattern USERNS =
      Pattern.compile(
          "(?i)no permissions to creat|creating new namespace failed|new namespace|uid map|gid"
              + " map|user namespace|unshare|setgroups");

  private static final Pattern PROC = Pattern.compile("(?i)can't mount proc");

  private BwrapDiagnosis() {}

  /**
   * A sentence saying what went wrong, for {@code stderr} (what bwrap printed) and the kernel
   * settings as {@code sysctl} reads them (dotted name → value; empty where the kernel has none).
   */
  public static String explain(String stderr, Function<String, Optional<String>> sysctl) {
    String said = stderr == null ? "" : stderr.strip();
    String culprit = culprit(sysctl);
    boolean userns = USERNS.matcher(said).find();
    String why;
    if (!userns && PROC.matcher(said).find()) {
      why =
          "bwrap cannot mount /proc in the sandbox; in a container /proc is masked: unmask it (see"
              + " k8s/base/sandbox-host.yaml)";
    } else if (culprit != null) {
      why = "unprivileged user namespaces are off: " + culprit;
    } else if (userns) {
      why =
          "bwrap cannot create its user namespace, although kernel.unprivileged_userns_clone,"
              + " user.max_user_namespaces and kernel.apparmor_restrict_unprivileged_userns allow"
              + " it ("
              + values(sysctl)
              + "); in a container, the runtime's seccomp or AppArmor profile may forbid user"
              + " namespaces (see k8s/base/sandbox-host.yaml)";
    } else {
      why = "bwrap could not start a trivial sandbox";
    }
    return why + "; bwrap said: " + (said.isEmpty() ? "(nothing)" : ShellSupport.capped(said));
  }

  /**
   * The first setting that turns unprivileged user namespaces off, with how to turn them on; null
   * if none.
   */
  static String culprit(Function<String, Optional<String>> sysctl) {
    if (sysctl.apply("kernel.unprivileged_userns_clone").filter("0"::equals).isPresent()) {
      return "kernel.unprivileged_userns_clone = 0 (set it to 1: sysctl -w"
          + " kernel.unprivileged_userns_clone=1)";
    }
    if (sysctl.apply("user.max_user_namespaces").filter("0"::equals).isPresent()) {
      return "user.max_user_namespaces = 0 (set it to a positive number: sysctl -w"
          + " user.max_user_namespaces=10000)";
    }
    if (sysctl
        .apply("kernel.apparmor_restrict_unprivileged_userns")
        .filter("1"::equals)
        .isPresent()) {
      return "kernel.apparmor_restrict_unprivileged_userns = 1 (Ubuntu's AppArmor restriction: set"
          + " it to 0, or give bwrap an AppArmor profile that allows userns)";
    }
    return null;
  }

  /** This machine's setting {@code name} (e.g. {@code user.max_user_namespaces}) from /proc/sys. */
  public static Optional<String> procSys(String name) {
    try {
      return Optional.of(Files.readString(Path.of("/proc/sys", name.replace('.', '/'))).strip());
    } catch (IOException | RuntimeException e) {
      return Optional.empty();
    }
  }

  private static String values(Function<String, Optional<String>> sysctl) {
    StringBuilder out = new StringBuilder();
    for (String name :
        new String[] {
          "kernel.unprivileged_userns_clone",
          "user.max_user_namespaces",
          "kernel.apparmor_restrict_unprivileged_userns"
        }) {
      if (out.length() > 0) out.append(", ");
      out.append(name).append(" = ").append(sysctl.apply(name).orElse("absent"));
    }
    return out.toString();
  }
}
