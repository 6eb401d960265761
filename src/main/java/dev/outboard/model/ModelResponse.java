package dev.outboard.model;

import java.util.List;

/** One whole model answer: its content blocks, why it stopped, and what it cost. */
public record ModelResponse(List<Block> content, StopReason stopReason, Usage usage) {

  public enum StopReason {
    END_TURN,
    TOOL_USE,
    MAX_TOKENS
  }

  public List<Block.ToolUse> toolCalls() {
    return content.stream()
        .filter(Block.ToolUse.class::isInstance)
        .map(Block.ToolUse.class::cast)
        .toList();
  }

  public String text() {
    StringBuilder sb = new StringBuilder();
    for (Block b : content) if (b instanceof Block.Text t) sb.append(t.text());
    return sb.toString();
  }
}
