package dev.outboard.mcp;

import java.util.Comparator;
import java.util.List;

/**
 * Hides the secrets of one MCP request in what comes back from it: a tool's result, an error's
 * message. Each value becomes {@code [secret:NAME]}, longest first (so that a secret inside another
 * is not half-replaced), before the text reaches the journal, the transcript, events or logs.
 */
public final class Redactor {
  /** A secret's name and value. */
  public record Secret(String name, String value) {
    @Override
    public String toString() {
      return "Secret[" + name + "]"; // never the value
    }
  }

  public static final Redactor NONE = new Redactor(List.of());

  private final List<Secret> secrets;

  public Redactor(List<Secret> secrets) {
    this.secrets =
        secrets.stream()
            .filter(s -> !s.value().isEmpty())
            .sorted(Comparator.comparingInt((Secret s) -> s.value().length()).reversed())
            .toList();
  }

  /** {@code text} with every secret replaced by its name; null stays null. */
  public String redact(String text) {
    if (text == null || secrets.isEmpty()) return text;
    String out = text;
    for (Secret s : secrets) out = out.replace(s.value(), "[secret:" + s.name() + "]");
    return out;
  }
}
