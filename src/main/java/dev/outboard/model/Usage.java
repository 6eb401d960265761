package dev.outboard.model;

import dev.outboard.JsonSerializable;

/** Tokens of one model call, or summed over a session. */
public record Usage(
    long inputTokens, long outputTokens, long cacheReadTokens, long cacheWriteTokens)
    implements JsonSerializable {
  public static final Usage ZERO = new Usage(0, 0, 0, 0);

  public Usage plus(Usage other) {
    return new Usage(
        inputTokens + other.inputTokens,
        outputTokens + other.outputTokens,
        cacheReadTokens + other.cacheReadTokens,
        cacheWriteTokens + other.cacheWriteTokens);
  }
}
