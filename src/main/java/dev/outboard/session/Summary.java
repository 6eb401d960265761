package dev.outboard.session;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.JsonSerializable;
import java.time.Instant;

/** A session as the API shows it (API.md "Response body"). */
public record Summary(
    String id,
    String org,
    String user,
    String status,
    int turns,
    UsageView usage,
    SandboxView sandbox,
    String result,
    ErrorView error,
    JsonNode metadata,
    Instant createdAt,
    Instant updatedAt)
    implements JsonSerializable {

  public record UsageView(long inputTokens, long outputTokens, long cacheReadTokens, long cacheWriteTokens)
      implements JsonSerializable {}

  /** The session's sandbox: its state and, once it has one, its id. */
  public record SandboxView(String state, String id) implements JsonSerializable {
    public SandboxView(String state) {
      this(state, null);
    }
  }

  public record ErrorView(String code, String message) implements JsonSerializable {}

  public boolean finished() {
    return status.equals("completed") || status.equals("failed") || status.equals("cancelled");
  }
}
