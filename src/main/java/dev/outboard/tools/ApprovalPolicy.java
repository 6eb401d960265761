package dev.outboard.tools;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

/**
 * Which tool calls wait for a person's approval: a list of patterns, each {@code all}, a tool name
 * ({@code bash}), or a tool name and a path glob ({@code write /memory/**}). A tool name may use
 * {@code *}; in a path glob {@code *} stays within one directory and {@code **} crosses them. A
 * pattern with a path applies only to the file tools ({@code read write edit ls glob grep}), on the
 * path they name. An MCP server's tools go by their name as the model sees it: {@code github__*}
 * holds every tool of server {@code github}, {@code *__delete_*} every deleting tool of any server.
 */
public final class ApprovalPolicy {
  public static final int MAX_PATTERNS = 100;
  public static final int MAX_PATTERN_CHARS = 256;
  public static final ApprovalPolicy NONE = new ApprovalPolicy(List.of());

  private record Rule(Pattern tool, Pattern path) {
    boolean matches(String name, ToolCall call) {
      if (!tool.matcher(name).matches()) return false;
      if (path == null) return true;
      if (call instanceof ToolCall.Bash
          || call instanceof ToolCall.Wait
          || call instanceof ToolCall.Mcp) return false;
      return path.matcher(call.path().toString()).matches();
    }
  }

  private final List<Rule> rules;

  private ApprovalPolicy(List<Rule> rules) {
    this.rules = rules;
  }

  /** The policy of {@code patterns}, which must be valid (see {@link #problem}). */
  public static ApprovalPolicy of(List<String> patterns) {
    if (patterns == null || patterns.isEmpty()) return NONE;
    List<Rule> rules = new ArrayList<>();
    for (String p : patterns) rules.add(rule(p.trim()));
    return new ApprovalPolicy(rules);
  }

  /** The union of both policies: a call needs approval if either says so. */
  public ApprovalPolicy and(ApprovalPolicy other) {
    if (other.rules.isEmpty()) return this;
    if (rules.isEmpty()) return other;
    List<Rule> all = new ArrayList<>(rules);
    all.addAll(other.rules);
    return new ApprovalPolicy(all);
  }

  public boolean isEmpty() {
    return rules.isEmpty();
  }

  /** True if the call {@code name} with the valid arguments {@code call} needs approval. */
  public boolean requires(String name, ToolCall call) {
    for (Rule r : rules) if (r.matches(name, call)) return true;
    return false;
  }

  /** What is wrong with {@code patterns} as a policy, for a 400 that names the pattern. */
  public static Optional<String> problem(List<String> patterns) {
    if (patterns == null) return Optional.empty();
    if (patterns.size() > MAX_PATTERNS)
      return Optional.of("at most " + MAX_PATTERNS + " approval patterns");
    for (String raw : patterns) {
      if (raw == null || raw.isBlank()) return Optional.of("an approval pattern must not be empty");
      if (raw.length() > MAX_PATTERN_CHARS)
        return Optional.of("approval pattern longer than " + MAX_PATTERN_CHARS + " characters");
      String p = raw.trim();
      String[] parts = p.split("\\s+");
      if (parts.length > 2)
        return Optional.of(
            "approval pattern '" + p + "' is not 'all', 'tool' or 'tool /path/glob'");
      if (parts[0].equals("all") && parts.length == 1) continue;
      if (!parts[0].matches("[A-Za-z0-9_*.-]+"))
        return Optional.of(
            "approval pattern '" + p + "': tool names are letters, digits, _ - . and *");
      if (!parts[0].contains("*")
          && ToolCatalog.spec(parts[0]).isEmpty()
          && !ToolCatalog.isMcpName(parts[0])) {
        return Optional.of(
            "approval pattern '"
                + p
                + "': unknown tool '"
                + parts[0]
                + "'; tools: "
                + ToolCatalog.ALL.stream().map(ToolSpec::name).collect(Collectors.joining(", "))
                + ", and an MCP server's as <server>__<tool> (e.g. github__* for all of one"
                + " server's)");
      }
      if (parts.length == 2 && !parts[1].startsWith("/"))
        return Optional.of("approval pattern '" + p + "': the path glob must start with /");
    }
    return Optional.empty();
  }

  private static Rule rule(String pattern) {
    String[] parts = pattern.split("\\s+");
    if (parts[0].equals("all") && parts.length == 1) return new Rule(Pattern.compile(".*"), null);
    Pattern tool =
        Pattern.compile(
            parts[0]
                .chars()
                .mapToObj(c -> c == '*' ? ".*" : Pattern.quote(String.valueOf((char) c)))
                .collect(Collectors.joining()));
    return new Rule(tool, parts.length == 2 ? Pattern.compile(pathRegex(parts[1])) : null);
  }

  /**
   * A path glob as a regular expression: {@code **} any characters, {@code *} any but {@code /},
   * {@code ?} one.
   */
  static String pathRegex(String glob) {
    StringBuilder re = new StringBuilder();
    for (int i = 0; i < glob.length(); i++) {
      char c = glob.charAt(i);
      if (c == '*' && i + 1 < glob.length() && glob.charAt(i + 1) == '*') {
        // "/**" also matches the directory itself: "/memory/**" covers "/memory".
        if (re.length() >= 1 && re.charAt(re.length() - 1) == '/' && i + 2 == glob.length()) {
          re.setLength(re.length() - 1);
          re.append("(/.*)?");
        } else {
          re.append(".*");
        }
        i++;
      } else if (c == '*') {
        re.append("[^/]*");
      } else if (c == '?') {
        re.append("[^/]");
      } else if (Character.isLetterOrDigit(c) || c == '/') {
        re.append(c);
      } else {
        re.append(Pattern.quote(String.valueOf(c)));
      }
    }
    return re.toString();
  }
}
