package dev.outboard.model;

import java.util.ArrayList;
import java.util.List;

/**
 * The secrets this node holds (from its environment), so that any text that might leave the node —
 * an error message recorded in an event, a log line — can be scrubbed of them.
 */
public final class Secrets {
  private static final List<String> NAMES =
      List.of(
          "ANTHROPIC_API_KEY",
          "OPENAI_API_KEY",
          "OUTBOARD_ADMIN_TOKEN",
          "OUTBOARD_DB_PASSWORD",
          "OUTBOARD_SANDBOX_HOST_TOKEN");
  private static volatile List<String> values = load();

  private Secrets() {}

  private static List<String> load() {
    List<String> out = new ArrayList<>();
    for (String name : NAMES) {
      String v = System.getenv(name);
      if (v != null && v.length() >= 8) out.add(v);
    }
    return List.copyOf(out);
  }

  /**
   * Also treats {@code secret} as one (keys given through configuration rather than the
   * environment).
   */
  public static synchronized void register(String secret) {
    if (secret == null || secret.length() < 8 || values.contains(secret)) return;
    List<String> next = new ArrayList<>(values);
    next.add(secret);
    values = List.copyOf(next);
  }

  /** {@code text} with every known secret replaced by {@code [redacted]}. */
  public static String redact(String text) {
    if (text == null) return null;
    String out = text;
    for (String v : values) out = out.replace(v, "[redacted]");
    return out;
  }
}
