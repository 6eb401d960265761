package dev.outboard.model;

import dev.outboard.JsonSerializable;

/**
 * A piece of a model answer while it streams: text as it is written, or a tool call's input JSON as
 * it is typed. Deltas are live only (SSE {@code model.delta}); the answer the session records is
 * the whole {@link ModelResponse}. {@code index} is the block's position in the answer. After a
 * retried call the deltas start again from index 0.
 */
public sealed interface ModelDelta extends JsonSerializable {
  int index();

  /** More text of text block {@code index}. */
  record Text(int index, String text) implements ModelDelta {}

  /**
   * More of the input JSON of tool call {@code toolUseId} (block {@code index}), as the model types
   * it.
   */
  record ToolInput(int index, String toolUseId, String name, String partialJson)
      implements ModelDelta {}
}
