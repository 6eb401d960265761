package dev.outboard.model;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.JsonSerializable;
import java.util.List;

/**
 * Which model a session talks to: {@code provider} and {@code name}; for the scripted provider
 * also the {@code script} it replays (API.md "Scripted model").
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record ModelSpec(String provider, String name, List<ScriptedTurn> script) implements JsonSerializable {

  public ModelSpec {
    script = script == null ? null : List.copyOf(script);
  }

  /** One scripted model turn: text, the tool calls to ask for, and a simulated latency. */
  @JsonInclude(JsonInclude.Include.NON_NULL)
  public record ScriptedTurn(String text, List<ScriptedCall> toolCalls, Long latencyMs) implements JsonSerializable {
    public ScriptedTurn {
      toolCalls = toolCalls == null ? List.of() : List.copyOf(toolCalls);
    }
  }

  public record ScriptedCall(String name, JsonNode input) implements JsonSerializable {}
}
