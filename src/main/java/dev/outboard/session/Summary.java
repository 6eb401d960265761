package dev.outboard.session;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.JsonSerializable;
import dev.outboard.model.Block;
import dev.outboard.model.Usage;
import dev.outboard.sandbox.SandboxStatus;
import java.time.Instant;
import java.util.List;

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
    Instant updatedAt,
    @JsonInclude(JsonInclude.Include.NON_EMPTY) List<PendingApproval> pendingApprovals,
    @JsonInclude(JsonInclude.Include.NON_EMPTY) List<WaitView> waits,
    @JsonInclude(JsonInclude.Include.NON_NULL) String parent,
    @JsonInclude(JsonInclude.Include.NON_EMPTY) List<ChildView> children,
    @JsonInclude(JsonInclude.Include.NON_NULL) BudgetView budget,
    @JsonInclude(JsonInclude.Include.NON_EMPTY) List<Todo.Item> todo)
    implements JsonSerializable {

  /** A session paused at its budget's {@code exceeded} limit ({@code tokens} or {@code turns}). */
  public record BudgetView(String exceeded, long limit, long used) implements JsonSerializable {}

  public Summary {
    pendingApprovals = pendingApprovals == null ? List.of() : pendingApprovals;
    waits = waits == null ? List.of() : waits;
    children = children == null ? List.of() : children;
    todo = todo == null ? List.of() : todo;
  }

  /** How the API shows {@code s}. */
  static Summary of(SessionState s) {
    List<PendingApproval> pending = List.of();
    List<WaitView> waitViews = List.of();
    Holds holds = s.holds();
    if (s.status() == SessionStatus.RUNNING
        && !(holds.approvals().isEmpty() && holds.waits().isEmpty())) {
      List<Block.ToolUse> uses = s.lastToolUses();
      pending =
          holds.approvals().stream()
              .map(
                  a ->
                      new PendingApproval(
                          a.callId(),
                          a.turn(),
                          a.name(),
                          uses.stream()
                              .filter(u -> u.id().equals(a.callId()))
                              .map(Block.ToolUse::input)
                              .findFirst()
                              .orElse(null),
                          a.requestedAt()))
              .toList();
      waitViews =
          holds.waits().stream()
              .map(w -> new WaitView(w.callId(), w.turn(), w.event(), w.deadline()))
              .toList();
    }
    Usage usage = s.usage();
    SessionState.SandboxInfo sandbox = s.sandbox();
    SessionState.BudgetState budget = s.budget();
    return new Summary(
        s.id(),
        s.org(),
        s.user(),
        s.shown().wire(),
        s.turns(),
        new UsageView(
            usage.inputTokens(),
            usage.outputTokens(),
            usage.cacheReadTokens(),
            usage.cacheWriteTokens()),
        sandbox == null
            ? new SandboxView(SandboxStatus.NONE.wire())
            : new SandboxView(sandbox.state().wire(), sandbox.id()),
        s.result(),
        s.error(),
        s.spec() == null ? null : s.spec().metadata(),
        s.createdAt(),
        s.updatedAt(),
        pending,
        waitViews,
        s.spec() == null ? null : s.spec().parent(),
        // A cancelled session cancelled the children still running (their reports come after its
        // end).
        s.children().stream()
            .map(
                c ->
                    new ChildView(
                        c.sessionId(),
                        c.toolUseId(),
                        c.description(),
                        s.status() == SessionStatus.CANCELLED && c.status().equals("running")
                            ? "cancelled"
                            : c.status()))
            .toList(),
        s.status() == SessionStatus.RUNNING && budget.exceeded() != null
            ? new BudgetView(budget.exceeded(), budget.limit(), budget.used())
            : null,
        Todo.parse(s.files().files().get(Todo.PATH)));
  }

  /**
   * A subagent of this session: its session id, the task call it answers, and its status as last
   * reported.
   */
  public record ChildView(String id, String toolUseId, String description, String status)
      implements JsonSerializable {}

  /** A tool call waiting for a person's decision ({@code POST /v1/sessions/{id}/approvals}). */
  public record PendingApproval(
      String toolUseId, int turn, String name, JsonNode input, Instant requestedAt)
      implements JsonSerializable {}

  /** A {@code wait} tool call waiting for event {@code event} until {@code deadline}. */
  public record WaitView(String toolUseId, int turn, String event, Instant deadline)
      implements JsonSerializable {}

  /** The earliest deadline of the session's waits, if it has any. */
  @com.fasterxml.jackson.annotation.JsonIgnore
  public Instant wakeAt() {
    return waits.stream().map(WaitView::deadline).min(Instant::compareTo).orElse(null);
  }

  public record UsageView(
      long inputTokens, long outputTokens, long cacheReadTokens, long cacheWriteTokens)
      implements JsonSerializable {}

  /** The session's sandbox: its state and, once it has one, its id. */
  /** {@code isolation} is present only when sandboxes are not isolated ({@code "none"}). */
  @com.fasterxml.jackson.annotation.JsonInclude(
      com.fasterxml.jackson.annotation.JsonInclude.Include.NON_NULL)
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
    return new Summary(
        id,
        org,
        user,
        status,
        turns,
        usage,
        new SandboxView(sandbox.state(), sandbox.id(), isolation),
        result,
        error,
        metadata,
        createdAt,
        updatedAt,
        pendingApprovals,
        waits,
        parent,
        children,
        budget,
        todo);
  }

  public record ErrorView(String code, String message) implements JsonSerializable {}

  public boolean finished() {
    return status.equals("completed") || status.equals("failed") || status.equals("cancelled");
  }
}
