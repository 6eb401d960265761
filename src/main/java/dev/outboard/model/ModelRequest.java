package dev.outboard.model;

import dev.outboard.tools.ToolSpec;
import java.util.List;

/**
 * Everything one model call needs. {@code turn} is the number this call will get (1-based); a call
 * repeated after a crash or a retry carries the same turn and the same transcript. A {@link
 * Purpose#SUMMARY} call (compaction) asks for a summary of {@code messages} and offers no tools.
 */
public record ModelRequest(
    String sessionId,
    int turn,
    ModelSpec model,
    String system,
    List<ToolSpec> tools,
    List<Message> messages,
    Purpose purpose) {

  public enum Purpose {
    TURN,
    SUMMARY
  }

  public ModelRequest(
      String sessionId,
      int turn,
      ModelSpec model,
      String system,
      List<ToolSpec> tools,
      List<Message> messages) {
    this(sessionId, turn, model, system, tools, messages, Purpose.TURN);
  }
}
