package dev.outboard.tools;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.outboard.Json;
import dev.outboard.vfs.VirtualPath;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class ToolCatalogTest {

  private static JsonNode json(String text) {
    try {
      return Json.MAPPER.readTree(text.replace('\'', '"'));
    } catch (Exception e) {
      throw new IllegalArgumentException(text, e);
    }
  }

  private static ToolCall parse(String name, String input) {
    return ToolCatalog.parse(name, json(input));
  }

  @Test
  void theCatalogHasTheToolsOfTheApiWithTheirArguments() {
    Map<String, List<String>> expected =
        Map.of(
            "read", List.of("path", "offset?", "limit?"),
            "write", List.of("path", "content"),
            "edit", List.of("path", "old_string", "new_string", "replace_all?"),
            "ls", List.of("path"),
            "glob", List.of("pattern", "path?"),
            "grep", List.of("pattern", "path?", "glob?"),
            "bash", List.of("command", "timeout_ms?"),
            // Beyond API.md's tools (README "Approvals and waits", "Subagents"):
            "wait", List.of("event", "timeoutSeconds"),
            "task", List.of("description", "prompt", "tools?"));
    assertThat(ToolCatalog.ALL)
        .extracting(ToolSpec::name)
        .containsExactlyInAnyOrderElementsOf(expected.keySet());
    for (ToolSpec spec : ToolCatalog.ALL) {
      assertThat(spec.params())
          .extracting(p -> p.name() + (p.required() ? "" : "?"))
          .as(spec.name())
          .containsExactlyElementsOf(expected.get(spec.name()));
      assertThat(spec.description()).as(spec.name()).isNotBlank();
      assertThat(ToolCatalog.spec(spec.name())).contains(spec);
    }
    assertThat(ToolCatalog.spec("nope")).isEmpty();
  }

  @Test
  void everyToolsSchemaIsDerivedFromItsParams() {
    for (ToolSpec spec : ToolCatalog.ALL) {
      ObjectNode schema = spec.inputSchema();
      assertThat(schema.path("type").asText()).as(spec.name()).isEqualTo("object");
      assertThat(
              schema.path("additionalProperties").isBoolean()
                  && !schema.path("additionalProperties").asBoolean())
          .as(spec.name() + " refuses additional properties")
          .isTrue();

      List<String> properties = new ArrayList<>();
      schema.path("properties").fieldNames().forEachRemaining(properties::add);
      assertThat(properties)
          .as(spec.name())
          .containsExactlyElementsOf(spec.params().stream().map(ToolSpec.Param::name).toList());

      List<String> required = new ArrayList<>();
      schema.path("required").forEach(n -> required.add(n.asText()));
      assertThat(required)
          .as(spec.name())
          .containsExactlyElementsOf(
              spec.params().stream()
                  .filter(ToolSpec.Param::required)
                  .map(ToolSpec.Param::name)
                  .toList())
          .isNotEmpty();

      for (ToolSpec.Param p : spec.params()) {
        JsonNode prop = schema.path("properties").path(p.name());
        String expectedType =
            switch (p.type()) {
              case STRING -> "string";
              case INTEGER -> "integer";
              case BOOLEAN -> "boolean";
              case STRING_LIST -> "array";
            };
        assertThat(prop.path("type").asText())
            .as(spec.name() + "." + p.name())
            .isEqualTo(expectedType);
        if (p.type() == ToolSpec.Type.STRING_LIST) {
          assertThat(prop.at("/items/type").asText())
              .as(spec.name() + "." + p.name() + " items")
              .isEqualTo("string");
        }
        assertThat(prop.path("description").asText())
            .as(spec.name() + "." + p.name())
            .isEqualTo(p.description())
            .isNotBlank();
      }
    }
  }

  @Test
  void schemaTypesMatchTheApiContract() {
    JsonNode read = ToolCatalog.spec("read").orElseThrow().inputSchema();
    assertThat(read.at("/properties/offset/type").asText()).isEqualTo("integer");
    assertThat(read.at("/properties/path/type").asText()).isEqualTo("string");
    JsonNode edit = ToolCatalog.spec("edit").orElseThrow().inputSchema();
    assertThat(edit.at("/properties/replace_all/type").asText()).isEqualTo("boolean");
    JsonNode bash = ToolCatalog.spec("bash").orElseThrow().inputSchema();
    assertThat(bash.at("/properties/timeout_ms/type").asText()).isEqualTo("integer");
  }

  @Test
  void validArgumentsBecomeTypedCallsWithDefaultsAndNormalisedPaths() {
    assertThat(parse("read", "{'path': '/session//notes/./a.md'}"))
        .isEqualTo(new ToolCall.Read(VirtualPath.parse("/session/notes/a.md"), 1, null));
    assertThat(parse("read", "{'path': '/session/a.md', 'offset': 3, 'limit': 10}"))
        .isEqualTo(new ToolCall.Read(VirtualPath.parse("/session/a.md"), 3, 10));
    assertThat(parse("read", "{'path': '/session/a.md', 'offset': null}"))
        .isEqualTo(new ToolCall.Read(VirtualPath.parse("/session/a.md"), 1, null));
    assertThat(parse("write", "{'path': '/session/a.md', 'content': ''}"))
        .isEqualTo(new ToolCall.Write(VirtualPath.parse("/session/a.md"), ""));
    assertThat(parse("edit", "{'path': '/session/a.md', 'old_string': 'x', 'new_string': ''}"))
        .isEqualTo(new ToolCall.Edit(VirtualPath.parse("/session/a.md"), "x", "", false));
    assertThat(
            parse(
                "edit",
                "{'path': '/session/a.md', 'old_string': 'x', 'new_string': 'y', 'replace_all':"
                    + " true}"))
        .isEqualTo(new ToolCall.Edit(VirtualPath.parse("/session/a.md"), "x", "y", true));
    assertThat(parse("ls", "{'path': '/session'}"))
        .isEqualTo(new ToolCall.Ls(VirtualPath.parse("/session")));
    assertThat(parse("glob", "{'pattern': '**/*.md'}"))
        .isEqualTo(new ToolCall.Glob(VirtualPath.ROOT, "**/*.md"));
    assertThat(parse("grep", "{'pattern': 'TODO', 'path': '/session', 'glob': '*.md'}"))
        .isEqualTo(new ToolCall.Grep(VirtualPath.parse("/session"), "TODO", "*.md"));
    assertThat(parse("bash", "{'command': 'ls -la', 'timeout_ms': 5000}"))
        .isEqualTo(new ToolCall.Bash(VirtualPath.parse("/workspace"), "ls -la", 5000));
  }

  @Test
  void anUnknownToolIsRefusedNamingItAndTheAvailableTools() {
    assertThatThrownBy(() -> parse("rm", "{'path': '/session/a'}"))
        .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
        .hasMessageContaining("unknown tool 'rm'")
        .hasMessageContaining("read, write, edit, ls, glob, grep, bash");
    assertThatThrownBy(() -> ToolCatalog.parse(null, json("{}")))
        .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
        .hasMessageContaining("unknown tool");
  }

  @ParameterizedTest
  @CsvSource(
      delimiter = '|',
      value = {
        "read  | {}                                               | missing required argument"
            + " 'path' (string)",
        "read  | {'path': null}                                   | missing required argument"
            + " 'path' (string)",
        "write | {'path': '/session/a'}                           | missing required argument"
            + " 'content' (string)",
        "edit  | {'path': '/session/a', 'old_string': 'x'}        | missing required argument"
            + " 'new_string' (string)",
        "glob  | {'path': '/session'}                             | missing required argument"
            + " 'pattern' (string)",
        "bash  | {}                                               | missing required argument"
            + " 'command' (string)",
      })
  void missingRequiredArgumentsAreNamed(String tool, String input, String message) {
    assertThatThrownBy(() -> parse(tool, input))
        .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
        .hasMessage("invalid arguments for tool '" + tool + "': " + message);
  }

  @ParameterizedTest
  @CsvSource(
      delimiter = '|',
      value = {
        "read  | {'path': 42}                                          | argument 'path' must be a"
            + " string, got an integer",
        "read  | {'path': '/session/a', 'offset': '2'}                 | argument 'offset' must be"
            + " an integer, got a string",
        "read  | {'path': '/session/a', 'limit': 1.5}                  | argument 'limit' must be"
            + " an integer, got a number",
        "read  | {'path': '/session/a', 'limit': 10000000000}          | argument 'limit' must be"
            + " an integer of at most 2147483647, got 10000000000",
        "write | {'path': '/session/a', 'content': ['x']}              | argument 'content' must be"
            + " a string, got an array",
        "edit  | {'path': '/session/a', 'old_string': 'a', 'new_string': 'b', 'replace_all': 'yes'}"
            + " | argument 'replace_all' must be a boolean, got a string",
        "grep  | {'pattern': 'x', 'glob': {}}                          | argument 'glob' must be a"
            + " string, got an object",
        "bash  | {'command': 'ls', 'timeout_ms': true}                 | argument 'timeout_ms' must"
            + " be an integer, got a boolean",
      })
  void illTypedArgumentsAreNamedWithTheExpectedAndActualType(
      String tool, String input, String message) {
    assertThatThrownBy(() -> parse(tool, input))
        .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
        .hasMessage("invalid arguments for tool '" + tool + "': " + message);
  }

  @Test
  void unknownArgumentsAreNamedWithWhatTheToolTakes() {
    assertThatThrownBy(
            () -> parse("read", "{'path': '/session/a', 'file_path': '/session/b', 'lines': 3}"))
        .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
        .hasMessageContaining("unknown argument(s) [file_path, lines]")
        .hasMessageContaining("it takes path, offset?, limit?");
  }

  @Test
  void outOfRangeAndEmptyValuesAreRefused() {
    assertThatThrownBy(() -> parse("read", "{'path': '/session/a', 'offset': 0}"))
        .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
        .hasMessageContaining("argument 'offset' must be at least 1");
    assertThatThrownBy(() -> parse("read", "{'path': '/session/a', 'limit': -5}"))
        .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
        .hasMessageContaining("argument 'limit' must be at least 1");
    assertThatThrownBy(
            () -> parse("edit", "{'path': '/session/a', 'old_string': '', 'new_string': 'x'}"))
        .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
        .hasMessageContaining("argument 'old_string' must not be empty");
    assertThatThrownBy(() -> parse("grep", "{'pattern': ''}"))
        .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
        .hasMessageContaining("argument 'pattern' must not be empty");
    assertThatThrownBy(() -> parse("bash", "{'command': ''}"))
        .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
        .hasMessageContaining("argument 'command' must not be empty");
  }

  @Test
  void argumentsThatAreNotAnObjectAreRefused() {
    for (String input : List.of("[]", "'just text'", "null", "7")) {
      assertThatThrownBy(() -> parse("read", input))
          .as(input)
          .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
          .hasMessage("tool 'read' takes a JSON object of arguments");
    }
    assertThatThrownBy(() -> ToolCatalog.parse("read", null))
        .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
        .hasMessage("tool 'read' takes a JSON object of arguments");
  }

  @Test
  void badPathsAreRefusedNamingTheToolAndThePath() {
    assertThatThrownBy(() -> parse("write", "{'path': '/session/../etc/passwd', 'content': 'x'}"))
        .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
        .hasMessageStartingWith("tool 'write': ")
        .hasMessageContaining("\"/session/../etc/passwd\"")
        .hasMessageContaining("'..'");
    assertThatThrownBy(() -> parse("read", "{'path': 'notes.md'}"))
        .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
        .hasMessageStartingWith("tool 'read': ")
        .hasMessageContaining("not absolute");
    assertThatThrownBy(() -> parse("grep", "{'pattern': 'x', 'path': '/session/%2e%2e'}"))
        .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
        .hasMessageStartingWith("tool 'grep': ");
    assertThatThrownBy(() -> parse("ls", "{'path': ''}"))
        .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
        .hasMessage("tool 'ls': path is empty");
  }
}
