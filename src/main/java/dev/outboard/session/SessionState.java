package dev.outboard.session;

import dev.outboard.JsonSerializable;
import dev.outboard.model.Block;
import dev.outboard.model.Message;
import dev.outboard.model.Usage;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;

/**
 * Immutable session state. {@code messages} is the recorded transcript; the current turn's tool
 * calls that have not completed are {@code openCalls}, the results so far {@code results}, and user
 * messages that arrived while the session ran wait in {@code queued} until the turn ends. {@code
 * holds}: what the session waits for from outside (approvals, waits, kept events).
 */
public record SessionState(
    String id,
    String org,
    String user,
    SessionStatus status,
    SessionSpec spec,
    int turns,
    List<Message> messages,
    List<String> openCalls,
    List<Block.ToolResult> results,
    List<String> queued,
    SessionFiles files,
    Usage usage,
    String result,
    Summary.ErrorView error,
    Instant createdAt,
    Instant updatedAt,
    SandboxInfo sandbox,
    Holds holds,
    List<Child> children,
    BudgetState budget)
    implements JsonSerializable {

  public SessionState {
    holds = holds == null ? Holds.NONE : holds; // snapshots from before approvals and waits
    children = children == null ? List.of() : children; // and before subagents
    budget = budget == null ? BudgetState.NONE : budget; // and before budgets
  }

  public SessionState(
      String id,
      String org,
      String user,
      SessionStatus status,
      SessionSpec spec,
      int turns,
      List<Message> messages,
      List<String> openCalls,
      List<Block.ToolResult> results,
      List<String> queued,
      SessionFiles files,
      Usage usage,
      String result,
      Summary.ErrorView error,
      Instant createdAt,
      Instant updatedAt,
      SandboxInfo sandbox,
      Holds holds) {
    this(
        id,
        org,
        user,
        status,
        spec,
        turns,
        messages,
        openCalls,
        results,
        queued,
        files,
        usage,
        result,
        error,
        createdAt,
        updatedAt,
        sandbox,
        holds,
        List.of(),
        BudgetState.NONE);
  }

  public static SessionState empty(String id) {
    return new SessionState(
        id,
        null,
        null,
        SessionStatus.NEW,
        null,
        0,
        List.of(),
        List.of(),
        List.of(),
        List.of(),
        SessionFiles.EMPTY,
        Usage.ZERO,
        null,
        null,
        null,
        null,
        null,
        Holds.NONE,
        List.of(),
        BudgetState.NONE);
  }

  /** True when the loop should call the model next. */
  public boolean readyForModel() {
    return status == SessionStatus.RUNNING && openCalls.isEmpty() && budget.exceeded() == null;
  }

  /**
   * The status the API shows: a running session whose turn waits for a decision is {@code
   * requires_action}; one whose open calls are all waits is {@code waiting}.
   */
  public SessionStatus shown() {
    if (status != SessionStatus.RUNNING) return status;
    if (!holds.approvals().isEmpty() || budget.exceeded() != null)
      return SessionStatus.REQUIRES_ACTION;
    if (!holds.waits().isEmpty() && openCalls.size() == holds.waits().size())
      return SessionStatus.WAITING;
    return SessionStatus.RUNNING;
  }

  /**
   * True while the loop has work of its own: a model call to make, or a tool call that does not
   * only wait for a person or an event (a running call, or a subagent's answer).
   */
  public boolean busy() {
    return status == SessionStatus.RUNNING
        && ((openCalls.isEmpty() && budget.exceeded() == null)
            || openCalls.stream().anyMatch(id -> !holds.parks(id)));
  }

  /**
   * The open calls that run (or ran, before a crash): not those held for a decision or an event.
   */
  List<String> runningCalls() {
    return openCalls.stream().filter(id -> !holds.holds(id)).toList();
  }

  public Summary summary() {
    List<Summary.PendingApproval> pending = List.of();
    List<Summary.WaitView> waitViews = List.of();
    if (status == SessionStatus.RUNNING
        && !(holds.approvals().isEmpty() && holds.waits().isEmpty())) {
      List<Block.ToolUse> uses = lastToolUses();
      pending =
          holds.approvals().stream()
              .map(
                  a ->
                      new Summary.PendingApproval(
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
              .map(w -> new Summary.WaitView(w.callId(), w.turn(), w.event(), w.deadline()))
              .toList();
    }
    return new Summary(
        id,
        org,
        user,
        shown().wire(),
        turns,
        new Summary.UsageView(
            usage.inputTokens(),
            usage.outputTokens(),
            usage.cacheReadTokens(),
            usage.cacheWriteTokens()),
        sandbox == null
            ? new Summary.SandboxView("none")
            : new Summary.SandboxView(sandbox.state(), sandbox.id()),
        result,
        error,
        spec == null ? null : spec.metadata(),
        createdAt,
        updatedAt,
        pending,
        waitViews,
        spec == null ? null : spec.parent(),
        // A cancelled session cancelled the children still running (their reports come after its
        // end).
        children.stream()
            .map(
                c ->
                    new Summary.ChildView(
                        c.sessionId(),
                        c.toolUseId(),
                        c.description(),
                        status == SessionStatus.CANCELLED && c.status().equals("running")
                            ? "cancelled"
                            : c.status()))
            .toList(),
        status == SessionStatus.RUNNING && budget.exceeded() != null
            ? new Summary.BudgetView(budget.exceeded(), budget.limit(), budget.used())
            : null,
        Todo.parse(files.files().get(Todo.PATH)));
  }

  /** The transcript, including the finished part of a turn in progress. */
  public Transcript transcript() {
    if (results.isEmpty()) return new Transcript(messages);
    List<Message> all = new ArrayList<>(messages);
    all.add(Message.user(new ArrayList<>(results)));
    return new Transcript(all);
  }

  /** The tool calls of the most recent model response. */
  List<Block.ToolUse> lastToolUses() {
    for (int i = messages.size() - 1; i >= 0; i--) {
      Message m = messages.get(i);
      if (m.role().equals(Message.ASSISTANT)) {
        return m.content().stream()
            .filter(Block.ToolUse.class::isInstance)
            .map(Block.ToolUse.class::cast)
            .toList();
      }
    }
    return List.of();
  }

  SessionState with(SessionStatus status, Instant at) {
    // A finished session waits for nothing any more.
    Holds h = status.finished() ? Holds.NONE : holds;
    return new SessionState(
        id, org, user, status, spec, turns, messages, openCalls, results, queued, files, usage,
        result, error, createdAt, at, sandbox, h, children, budget);
  }

  SessionState with(Holds h) {
    return new SessionState(
        id, org, user, status, spec, turns, messages, openCalls, results, queued, files, usage,
        result, error, createdAt, updatedAt, sandbox, h, children, budget);
  }

  SessionState with(List<Child> c, Usage u) {
    return new SessionState(
        id, org, user, status, spec, turns, messages, openCalls, results, queued, files, u, result,
        error, createdAt, updatedAt, sandbox, holds, c, budget);
  }

  SessionState with(BudgetState b) {
    return new SessionState(
        id, org, user, status, spec, turns, messages, openCalls, results, queued, files, usage,
        result, error, createdAt, updatedAt, sandbox, holds, children, b);
  }

  /** The session's sandbox as recorded: its id (null before the first) and state. */
  public record SandboxInfo(String id, String state) implements JsonSerializable {}

  /**
   * The budget as raised through the API ({@code maxTokens}, {@code maxTurns}; null: as created),
   * and the limit the session is paused at, if it is ({@code exceeded}: tokens or turns).
   */
  public record BudgetState(
      Long maxTokens, Integer maxTurns, String exceeded, long limit, long used)
      implements JsonSerializable {
    public static final BudgetState NONE = new BudgetState(null, null, null, 0, 0);
  }

  /**
   * A subagent this session started, for the API: the call it answers, and its last known status.
   */
  public record Child(String toolUseId, String sessionId, String description, String status)
      implements JsonSerializable {}
}
