package dev.outboard.memory;

import com.fasterxml.jackson.annotation.JsonSubTypes;
import com.fasterxml.jackson.annotation.JsonTypeInfo;
import dev.outboard.JsonSerializable;

/**
 * A write to an org file, as {@link OrgMemory} applies it. {@code ns} is {@code memory} or {@code
 * skills}; {@code path} is below it, without a leading slash.
 */
@JsonTypeInfo(use = JsonTypeInfo.Id.NAME, property = "op")
@JsonSubTypes({
  @JsonSubTypes.Type(value = OrgFileOp.Write.class, name = "write"),
  @JsonSubTypes.Type(value = OrgFileOp.Edit.class, name = "edit"),
  @JsonSubTypes.Type(value = OrgFileOp.Delete.class, name = "delete"),
  @JsonSubTypes.Type(value = OrgFileOp.Rename.class, name = "rename")
})
public sealed interface OrgFileOp extends JsonSerializable {
  String ns();

  String path();

  /** Creates or replaces a file; with {@code ifVersion}, only if that is the current version. */
  record Write(String ns, String path, String content, Long ifVersion) implements OrgFileOp {}

  /** Exact-string replacement against the current version. */
  record Edit(String ns, String path, String oldString, String newString, boolean replaceAll)
      implements OrgFileOp {}

  record Delete(String ns, String path, Long ifVersion) implements OrgFileOp {}

  record Rename(String ns, String path, String toPath) implements OrgFileOp {}

  /**
   * Who asked: the user, and for an agent's tool call the session and call ids (the idempotency
   * key).
   */
  record Origin(String user, String sessionId, String callId) implements JsonSerializable {
    public boolean isAgent() {
      return sessionId != null;
    }

    public boolean idempotent() {
      return sessionId != null && callId != null;
    }
  }

  /** What an op came to. {@code code} is null when {@code ok}. */
  record Outcome(
      boolean ok, String code, String message, String path, long version, boolean created)
      implements JsonSerializable {
    public static Outcome done(String path, long version, boolean created, String message) {
      return new Outcome(true, null, message, path, version, created);
    }

    public static Outcome failed(String code, String message) {
      return new Outcome(false, code, message, null, 0, false);
    }
  }
}
