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
  /** {@code isolation} is present only when sandboxes are not isolated ({@code "none"}). */
  @com.fasterxml.jackson.annotation.JsonInclude(com.fasterxml.jackson.annotation.JsonInclude.Include.NON_NULL)
  public record SandboxView(String state, String id, String isolation) implements JsonSerializable {
    public SandboxView(String state) {
      this(state, null, null);
    }

    public SandboxView(String state, String id) {
      this(state, id, null);
    }
  }

  /** This summary with the sandbox view marked as {@code isolation}. */
  public Summary withSandboxIsolation(String isolation) {
    if (isolation == null) return this;
    return new Summary(id, org, user, status, turns, usage, new SandboxView(sandbox.state(), sandbox.id(), isolation),
        result, error, metadata, createdAt, updatedAt);
  }

  public record ErrorView(String code, String message) implements JsonSerializable {}

  public boolean finished() {
    return status.equals("completed") || status.equals("failed") || status.equals("cancelled");
  }
}
