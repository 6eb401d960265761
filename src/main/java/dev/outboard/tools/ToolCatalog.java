package dev.outboard.tools;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.tools.ToolSpec.Param;
import dev.outboard.tools.ToolSpec.Type;
import dev.outboard.vfs.VirtualPath;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.Function;
import java.util.stream.Collectors;

/**
 * The tools of API.md: their definitions, and the parsing of a model's arguments into a {@link
 * ToolCall}. Anything wrong — unknown tool, missing or ill-typed argument, unknown argument, bad
 * path — becomes a {@link InvalidToolCallException} whose message is shown to the model.
 */
public final class ToolCatalog {
  private ToolCatalog() {}

  public static final class InvalidToolCallException extends IllegalArgumentException {
    public InvalidToolCallException(String message) {
      super(message);
    }
  }

  private static Param req(String name, Type type, String description) {
    return new Param(name, type, true, description);
  }

  private static Param opt(String name, Type type, String description) {
    return new Param(name, type, false, description);
  }

  private static final String PATHS =
      " Paths are absolute: /workspace/** (the sandbox), /memory/** and /skills/** (shared by the"
          + " organisation), /session/** (private notes of this session).";

  public static final List<ToolSpec> ALL =
      List.of(
          new ToolSpec(
              "read",
              "Read a text file; lines come back numbered." + PATHS,
              List.of(
                  req("path", Type.STRING, "absolute path of the file"),
                  opt("offset", Type.INTEGER, "first line to return, 1-based"),
                  opt("limit", Type.INTEGER, "number of lines to return"))),
          new ToolSpec(
              "write",
              "Create or overwrite a text file." + PATHS,
              List.of(
                  req("path", Type.STRING, "absolute path of the file"),
                  req("content", Type.STRING, "the whole new content"))),
          new ToolSpec(
              "edit",
              "Replace an exact string in a file. old_string must occur exactly once unless"
                  + " replace_all is true."
                  + PATHS,
              List.of(
                  req("path", Type.STRING, "absolute path of the file"),
                  req("old_string", Type.STRING, "the exact text to replace"),
                  req("new_string", Type.STRING, "the replacement text"),
                  opt("replace_all", Type.BOOLEAN, "replace every occurrence"))),
          new ToolSpec(
              "ls",
              "List a directory." + PATHS,
              List.of(req("path", Type.STRING, "absolute path of the directory"))),
          new ToolSpec(
              "glob",
              "Find files whose path matches a glob pattern (** crosses directories)." + PATHS,
              List.of(
                  req("pattern", Type.STRING, "glob pattern, relative to path (e.g. **/*.md)"),
                  opt("path", Type.STRING, "directory to search; default /"))),
          new ToolSpec(
              "grep",
              "Search file contents with a regular expression; answers path:line:text." + PATHS,
              List.of(
                  req("pattern", Type.STRING, "Java regular expression"),
                  opt("path", Type.STRING, "directory or file to search; default /"),
                  opt("glob", Type.STRING, "only files whose path matches this glob"))),
          new ToolSpec(
              "bash",
              "Run a shell command in the sandbox, cwd /workspace; the working directory and"
                  + " exported variables persist between calls.",
              List.of(
                  req("command", Type.STRING, "the command line"),
                  opt("timeout_ms", Type.INTEGER, "timeout in milliseconds"))),
          new ToolSpec(
              "wait",
              "Wait for an outside event (CI finished, a reply from another system): the session"
                  + " pauses until the event is sent to it and this call's result is the event's"
                  + " JSON payload, or an error once timeoutSeconds have passed without it. An"
                  + " event sent before the wait starts is kept for it.",
              List.of(
                  req(
                      "event",
                      Type.STRING,
                      "the event's name, e.g. ci.finished (letters, digits and . _ : -)"),
                  req("timeoutSeconds", Type.INTEGER, "how long to wait at most, in seconds"))),
          new ToolSpec(
              "task",
              "Hand a self-contained sub-problem to a subagent: a fresh session of your"
                  + " organisation (same /memory and /skills, its own /session and sandbox) that"
                  + " works on the prompt alone and whose final answer is this call's result."
                  + " Several task calls in one answer run in parallel.",
              List.of(
                  req("description", Type.STRING, "a few words on what the subagent is for"),
                  req(
                      "prompt",
                      Type.STRING,
                      "everything the subagent needs to know: it sees nothing else"),
                  opt("tools", Type.STRING_LIST, "the tools it may use (default: all of yours)"))));

  /**
   * What an event's name may be: 1 to 128 of letters, digits and {@code . _ : -}, starting with a
   * letter or digit.
   */
  public static final java.util.regex.Pattern EVENT_NAME =
      java.util.regex.Pattern.compile("[A-Za-z0-9][A-Za-z0-9._:-]{0,127}");

  private static final Map<String, ToolSpec> BY_NAME =
      ALL.stream().collect(Collectors.toMap(ToolSpec::name, Function.identity()));

  public static Optional<ToolSpec> spec(String name) {
    return Optional.ofNullable(BY_NAME.get(name));
  }

  /** Between an MCP server's name and its tool's in the name the model sees. */
  public static final String MCP_SEPARATOR = "__";

  /**
   * What an MCP tool's name is as the model sees it: the server's name (a-z, 0-9, '-'), {@link
   * #MCP_SEPARATOR}, the tool's own name (letters, digits, '_' and '-'); 64 characters at most, the
   * tightest provider limit.
   */
  public static final java.util.regex.Pattern MCP_NAME =
      java.util.regex.Pattern.compile("([a-z0-9][a-z0-9-]{0,31})__([A-Za-z0-9_-]+)");

  public static final int MAX_TOOL_NAME_CHARS = 64;

  /** True if {@code name} is the name of an MCP server's tool (whether or not the org has it). */
  public static boolean isMcpName(String name) {
    return name != null && name.length() <= MAX_TOOL_NAME_CHARS && MCP_NAME.matcher(name).matches();
  }

  /** Validates {@code input} against tool {@code name} and returns the typed call. */
  public static ToolCall parse(String name, JsonNode input) {
    if (spec(name).isEmpty() && isMcpName(name)) {
      java.util.regex.Matcher m = MCP_NAME.matcher(name);
      m.matches();
      if (input != null && !input.isNull() && !input.isObject())
        throw new InvalidToolCallException("tool '" + name + "' takes a JSON object of arguments");
      com.fasterxml.jackson.databind.node.ObjectNode arguments =
          input == null || input.isNull()
              ? dev.outboard.Json.MAPPER.createObjectNode()
              : ((com.fasterxml.jackson.databind.node.ObjectNode) input).deepCopy();
      return new ToolCall.Mcp(VirtualPath.ROOT, m.group(1), m.group(2), arguments);
    }
    ToolSpec spec =
        spec(name)
            .orElseThrow(
                () ->
                    new InvalidToolCallException(
                        "unknown tool '"
                            + name
                            + "'; available tools: "
                            + ALL.stream().map(ToolSpec::name).collect(Collectors.joining(", "))));
    if (input == null || !input.isObject()) {
      throw new InvalidToolCallException("tool '" + name + "' takes a JSON object of arguments");
    }
    Args args = new Args(spec, input);
    return switch (name) {
      case "read" ->
          new ToolCall.Read(
              args.path("path"), args.positiveInt("offset", 1), args.optPositiveInt("limit"));
      case "write" -> new ToolCall.Write(args.path("path"), args.string("content"));
      case "edit" ->
          new ToolCall.Edit(
              args.path("path"),
              args.nonEmptyString("old_string"),
              args.string("new_string"),
              args.bool("replace_all"));
      case "ls" -> new ToolCall.Ls(args.path("path"));
      case "glob" -> new ToolCall.Glob(args.optPath("path"), args.nonEmptyString("pattern"));
      case "grep" ->
          new ToolCall.Grep(
              args.optPath("path"), args.nonEmptyString("pattern"), args.optString("glob"));
      case "bash" ->
          new ToolCall.Bash(
              VirtualPath.parse("/workspace"),
              args.nonEmptyString("command"),
              args.optPositiveInt("timeout_ms"));
      case "wait" ->
          new ToolCall.Wait(
              VirtualPath.ROOT, args.eventName("event"), args.positiveInt("timeoutSeconds", 1));
      case "task" ->
          new ToolCall.Task(
              VirtualPath.ROOT,
              args.nonEmptyString("description"),
              args.nonEmptyString("prompt"),
              args.toolNames("tools"));
      default -> throw new IllegalStateException("tool without a parser: " + name);
    };
  }

  /** Typed access to one call's arguments, checked against the spec. */
  private static final class Args {
    private final ToolSpec spec;
    private final JsonNode input;

    Args(ToolSpec spec, JsonNode input) {
      this.spec = spec;
      this.input = input;
      List<String> unknown = new ArrayList<>();
      for (Iterator<String> it = input.fieldNames(); it.hasNext(); ) {
        String field = it.next();
        if (spec.params().stream().noneMatch(p -> p.name().equals(field))) unknown.add(field);
      }
      if (!unknown.isEmpty()) fail("unknown argument(s) " + unknown + "; it takes " + names());
      for (Param p : spec.params()) {
        JsonNode v = input.get(p.name());
        if (v == null || v.isNull()) {
          if (p.required())
            fail("missing required argument '" + p.name() + "' (" + p.type().json + ")");
          continue;
        }
        boolean ok =
            switch (p.type()) {
              case STRING -> v.isTextual();
              case INTEGER -> v.isIntegralNumber() && v.canConvertToInt();
              case BOOLEAN -> v.isBoolean();
              case STRING_LIST ->
                  v.isArray()
                      && java.util.stream.StreamSupport.stream(v.spliterator(), false)
                          .allMatch(JsonNode::isTextual);
            };
        if (!ok && p.type() == Type.INTEGER && v.isIntegralNumber()) {
          fail(
              "argument '"
                  + p.name()
                  + "' must be an integer of at most "
                  + Integer.MAX_VALUE
                  + ", got "
                  + v.asText());
        }
        if (!ok)
          fail("argument '" + p.name() + "' must be " + article(p.type()) + ", got " + jsonType(v));
      }
    }

    private String names() {
      return spec.params().stream()
          .map(p -> p.name() + (p.required() ? "" : "?"))
          .collect(Collectors.joining(", "));
    }

    /** The JSON type of {@code v}, as a client of a JSON API says it. */
    private static String jsonType(JsonNode v) {
      if (v.isIntegralNumber()) return "an integer";
      if (v.isNumber()) return "a number";
      if (v.isTextual()) return "a string";
      if (v.isBoolean()) return "a boolean";
      if (v.isArray()) return "an array";
      if (v.isObject()) return "an object";
      return v.getNodeType().name().toLowerCase();
    }

    private static String article(Type t) {
      if (t == Type.STRING_LIST) return "an array of strings";
      return t == Type.INTEGER ? "an integer" : "a " + t.json;
    }

    private void fail(String why) {
      throw new InvalidToolCallException(
          "invalid arguments for tool '" + spec.name() + "': " + why);
    }

    String string(String field) {
      return input.get(field).asText();
    }

    String nonEmptyString(String field) {
      String s = string(field);
      if (s.isEmpty()) fail("argument '" + field + "' must not be empty");
      return s;
    }

    String optString(String field) {
      JsonNode v = input.get(field);
      return v == null || v.isNull() ? null : v.asText();
    }

    boolean bool(String field) {
      JsonNode v = input.get(field);
      return v != null && v.asBoolean();
    }

    Integer optPositiveInt(String field) {
      JsonNode v = input.get(field);
      if (v == null || v.isNull()) return null;
      if (v.asInt() < 1) fail("argument '" + field + "' must be at least 1");
      return v.asInt();
    }

    int positiveInt(String field, int orElse) {
      Integer v = optPositiveInt(field);
      return v == null ? orElse : v;
    }

    /** A list of known tool names (empty if absent). */
    List<String> toolNames(String field) {
      JsonNode v = input.get(field);
      if (v == null || v.isNull()) return List.of();
      List<String> names = new ArrayList<>();
      for (JsonNode n : v) {
        if (spec(n.asText()).isEmpty())
          fail("argument '" + field + "': unknown tool '" + n.asText() + "'");
        names.add(n.asText());
      }
      return List.copyOf(names);
    }

    String eventName(String field) {
      String s = string(field);
      if (!EVENT_NAME.matcher(s).matches()) {
        fail(
            "argument '"
                + field
                + "' must be 1 to 128 of letters, digits and . _ : - (starting with a letter or"
                + " digit)");
      }
      return s;
    }

    VirtualPath path(String field) {
      try {
        return VirtualPath.parse(string(field));
      } catch (VirtualPath.InvalidPathException e) {
        throw new InvalidToolCallException("tool '" + spec.name() + "': " + e.getMessage());
      }
    }

    VirtualPath optPath(String field) {
      return optString(field) == null ? VirtualPath.ROOT : path(field);
    }
  }
}
