package dev.outboard.model;

import com.fasterxml.jackson.annotation.JsonSubTypes;
import com.fasterxml.jackson.annotation.JsonTypeInfo;
import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.JsonSerializable;

/** One content block of a transcript message, in API.md's wire shape ({@code "type"} first). */
@JsonTypeInfo(use = JsonTypeInfo.Id.NAME, property = "type")
@JsonSubTypes({
  @JsonSubTypes.Type(value = Block.Text.class, name = "text"),
  @JsonSubTypes.Type(value = Block.ToolUse.class, name = "tool_use"),
  @JsonSubTypes.Type(value = Block.ToolResult.class, name = "tool_result")
})
public sealed interface Block extends JsonSerializable {

  record Text(String text) implements Block {}

  /** A tool call the model asked for; {@code input} is the model's JSON, unvalidated. */
  record ToolUse(String id, String name, JsonNode input) implements Block {}

  record ToolResult(String toolUseId, String content, boolean isError) implements Block {}
}
