package dev.outboard.model;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.JsonSerializable;
import java.util.List;

/**
 * Which model a session talks to: {@code provider} and {@code name}; for the scripted provider also
 * the {@code script} it replays (API.md "Scripted model") and the {@code subagentScript} its
 * subagents replay (each of them, and theirs in turn).
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record ModelSpec(
    String provider, String name, List<ScriptedTurn> script, List<ScriptedTurn> subagentScript)
    implements JsonSerializable {

  public ModelSpec {
    script = script == null ? null : List.copyOf(script);
    subagentScript = subagentScript == null ? null : List.copyOf(subagentScript);
  }

  public ModelSpec(String provider, String name, List<ScriptedTurn> script) {
    this(provider, name, script, null);
  }

  /**
   * The model of a subagent of a session with this model: the same, playing the subagent script.
   */
  public ModelSpec forSubagent() {
    return script == null
        ? this
        : new ModelSpec(
            provider, name, subagentScript == null ? List.of() : subagentScript, subagentScript);
  }

  /** One scripted model turn: text, the tool calls to ask for, and a simulated latency. */
  @JsonInclude(JsonInclude.Include.NON_NULL)
  public record ScriptedTurn(String text, List<ScriptedCall> toolCalls, Long latencyMs)
      implements JsonSerializable {
    public ScriptedTurn {
      toolCalls = toolCalls == null ? List.of() : List.copyOf(toolCalls);
    }
  }

  public record ScriptedCall(String name, JsonNode input) implements JsonSerializable {}
}
