package dev.outboard.sandbox.shell;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

/**
 * The loop a sandbox's shell runs, from the resource {@value #RESOURCE} next to this class: read
 * once, when the class loads, and made into the single line the shell is sent, with each sandbox's
 * values in its {@code @NAME@} placeholders. The resource says how the loop works.
 */
final class LoopScript {
  static final String RESOURCE = "loop.sh";

  private static final Pattern PLACEHOLDER = Pattern.compile("@([A-Z_]+)@");

  /** The resource as one line: comments and blank lines dropped, lines stripped and joined. */
  private static final String TEMPLATE = oneLine(load());

  private LoopScript() {}

  /**
   * The line to send: the loop with every placeholder replaced by its value (taken literally) and a
   * newline. Every placeholder must have a value and every value a placeholder.
   */
  static String render(Map<String, String> values) {
    Set<String> unused = new HashSet<>(values.keySet());
    Matcher m = PLACEHOLDER.matcher(TEMPLATE);
    StringBuilder line = new StringBuilder(TEMPLATE.length() + 512);
    while (m.find()) {
      String value = values.get(m.group(1));
      if (value == null) {
        throw new IllegalArgumentException("no value for @" + m.group(1) + "@ in " + RESOURCE);
      }
      unused.remove(m.group(1));
      m.appendReplacement(line, Matcher.quoteReplacement(value));
    }
    if (!unused.isEmpty()) {
      throw new IllegalArgumentException(RESOURCE + " has no placeholder for " + unused);
    }
    return m.appendTail(line).append('\n').toString();
  }

  private static String load() {
    try (InputStream in = LoopScript.class.getResourceAsStream(RESOURCE)) {
      if (in == null) {
        throw new IllegalStateException(
            "the shell loop script "
                + LoopScript.class.getPackageName().replace('.', '/')
                + "/"
                + RESOURCE
                + " is missing from the classpath");
      }
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read the shell loop script " + RESOURCE, e);
    }
  }

  private static String oneLine(String script) {
    return script
        .lines()
        .map(String::strip)
        .filter(l -> !l.isEmpty() && !l.startsWith("#"))
        .collect(Collectors.joining(" "));
  }
}
