package dev.outboard.session;

import dev.outboard.JsonSerializable;
import dev.outboard.model.Block;
import dev.outboard.model.Message;
import dev.outboard.model.Usage;
import dev.outboard.sandbox.SandboxStatus;
import dev.outboard.session.Holds.Approval;
import dev.outboard.session.Holds.Inbound;
import dev.outboard.session.Holds.Task;
import dev.outboard.session.Holds.Wait;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.function.Consumer;

/**
 * Immutable session state, and how each event changes it ({@link #apply}). {@code messages} is the
 * recorded transcript; the current turn's tool calls that have not completed are {@code openCalls},
 * the results so far {@code results}, and user messages that arrived while the session ran wait in
 * {@code queued} until the turn ends. {@code holds}: what the session waits for from outside
 * (approvals, waits, kept events).
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

  public static SessionState empty(String id) {
    return fresh(id, null, null, SessionStatus.NEW, null, List.of(), null);
  }

  /** A state before any turn: no calls, files, usage, outcome, sandbox, holds or children. */
  private static SessionState fresh(
      String id,
      String org,
      String user,
      SessionStatus status,
      SessionSpec spec,
      List<Message> messages,
      Instant at) {
    return new SessionState(
        id,
        org,
        user,
        status,
        spec,
        0,
        messages,
        List.of(),
        List.of(),
        List.of(),
        SessionFiles.EMPTY,
        Usage.ZERO,
        null,
        null,
        at,
        at,
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
    return Summary.of(this);
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

  // ---------------------------------------------------------------- events → state

  /**
   * The state after {@code event}: how the entity, the event stream and recovery fold a journal.
   * Journals replay through this, so what an event does here never changes.
   */
  public SessionState apply(SessionEntity.Event event) {
    Instant at = event.at();
    if (event instanceof SessionEntity.SessionStarted e) {
      List<Message> prompt = List.of(Message.user(List.of(new Block.Text(e.spec().prompt()))));
      return fresh(e.sessionId(), e.org(), e.user(), SessionStatus.RUNNING, e.spec(), prompt, at);
    } else if (event instanceof SessionEntity.UserMessageAdded e) {
      if (status == SessionStatus.WAITING) {
        return withStatus(SessionStatus.RUNNING, at)
            .withMessages(append(messages, Message.user(List.of(new Block.Text(e.text())))))
            .withResult(null, error);
      }
      return withQueued(append(queued, e.text())).withUpdatedAt(at);
    } else if (event instanceof SessionEntity.ModelResponded e) {
      SessionState next =
          withTurn(e.turn())
              .withMessages(append(messages, Message.assistant(e.content())))
              .withUsage(usage.plus(e.usage()))
              .withUpdatedAt(at);
      boolean asksForTools = e.content().stream().anyMatch(Block.ToolUse.class::isInstance);
      return asksForTools ? next : next.flushQueued();
    } else if (event instanceof SessionEntity.ToolCallStarted e) {
      return withOpenCalls(append(openCalls, e.callId())).withUpdatedAt(at);
    } else if (event instanceof SessionEntity.ToolCallCompleted e) {
      List<String> open = new ArrayList<>(openCalls);
      open.remove(e.callId());
      SessionState next =
          withOpenCalls(open)
              .withResults(
                  append(results, new Block.ToolResult(e.callId(), e.content(), e.isError())))
              .withFiles(e.change() == null ? files : files.apply(e.change()))
              .withHolds(holds.without(e.callId()))
              .withUpdatedAt(at);
      return open.isEmpty() ? next.flushResults() : next;
    } else if (event instanceof SessionEntity.TranscriptCompacted e) {
      int replaced = Math.min(e.replaced(), messages.size());
      List<Message> kept = new ArrayList<>();
      kept.add(Message.user(List.of(new Block.Text(Compaction.compactedHead(e)))));
      kept.addAll(messages.subList(replaced, messages.size()));
      String history = Compaction.render(messages.subList(0, replaced), e.historyChars());
      return withMessages(List.copyOf(kept))
          .withFiles(files.apply(new SessionFiles.Change(e.historyPath(), history)))
          .withUsage(usage.plus(e.usage()));
    } else if (event instanceof SessionEntity.BudgetExceeded e) {
      String exceeded = e.action().equals(Budget.PAUSE) ? e.kind() : null;
      return withBudget(
          new BudgetState(budget.maxTokens(), budget.maxTurns(), exceeded, e.limit(), e.used()));
    } else if (event instanceof SessionEntity.BudgetRaised e) {
      return withBudget(
          new BudgetState(
              e.maxTokens() != null ? e.maxTokens() : budget.maxTokens(),
              e.maxTurns() != null ? e.maxTurns() : budget.maxTurns(),
              null,
              0,
              0));
    } else if (event instanceof SessionEntity.TaskStarted e) {
      return withHolds(
              holds.withTasks(append(holds.tasks(), new Task(e.callId(), e.turn(), e.childId()))))
          .withChildren(
              append(children, new Child(e.callId(), e.childId(), e.description(), "running")));
    } else if (event instanceof SessionEntity.TaskFinished e) {
      return withChildren(
              children.stream()
                  .map(
                      c ->
                          c.sessionId().equals(e.childId())
                              ? new Child(c.toolUseId(), c.sessionId(), c.description(), e.status())
                              : c)
                  .toList())
          .withUsage(usage.plus(e.usage()));
    } else if (event instanceof SessionEntity.ApprovalRequested e) {
      return withHolds(
          holds.withApprovals(
              append(holds.approvals(), new Approval(e.callId(), e.turn(), e.name(), at))));
    } else if (event instanceof SessionEntity.ApprovalDecided e) {
      return withHolds(
          holds.withApprovals(
              holds.approvals().stream().filter(a -> !a.callId().equals(e.callId())).toList()));
    } else if (event instanceof SessionEntity.WaitStarted e) {
      Inbound kept = holds.kept(e.event());
      if (kept != null) { // it takes the kept event: its result follows in the same write
        List<Inbound> rest = new ArrayList<>(holds.inbox());
        rest.remove(kept);
        return withHolds(holds.withInbox(List.copyOf(rest)));
      }
      Wait wait = new Wait(e.callId(), e.turn(), e.event(), e.timeoutSeconds(), e.deadline());
      return withHolds(holds.withWaits(append(holds.waits(), wait)));
    } else if (event instanceof SessionEntity.EventReceived e) {
      // A wait takes it (its result follows in the same write), or it is kept for the next one.
      if (status == SessionStatus.RUNNING && holds.waitFor(e.name()) != null) return this;
      return withHolds(
          holds.withInbox(append(holds.inbox(), new Inbound(e.name(), e.payload(), at))));
    } else if (event instanceof SessionEntity.SessionWaiting e) {
      return withStatus(SessionStatus.WAITING, at).withResult(e.text(), null);
    } else if (event instanceof SessionEntity.SessionCompleted e) {
      return withStatus(SessionStatus.COMPLETED, at).withResult(e.result(), null);
    } else if (event instanceof SessionEntity.SessionFailed e) {
      return withStatus(SessionStatus.FAILED, at)
          .withResult(result, new Summary.ErrorView(e.code(), e.message()));
    } else if (event instanceof SessionEntity.SessionCancelled) {
      return withStatus(SessionStatus.CANCELLED, at);
    } else if (event instanceof SessionEntity.SandboxAttached e) {
      return withSandbox(
          new SandboxInfo(
              e.sandboxId(), sandbox == null ? SandboxStatus.PROVISIONING : sandbox.state()));
    } else if (event instanceof SessionEntity.SandboxReplaced e) {
      return withSandbox(
          new SandboxInfo(e.newId(), sandbox == null ? SandboxStatus.REPLACING : sandbox.state()));
    } else if (event instanceof SessionEntity.SandboxChanged e) {
      return withSandbox(new SandboxInfo(sandbox == null ? null : sandbox.id(), e.state()));
    }
    throw new IllegalStateException("unknown event " + event.getClass());
  }

  /**
   * The turn's tool results (in the order the model asked) plus queued messages become one user
   * message.
   */
  private SessionState flushResults() {
    List<Block.ToolUse> order = lastToolUses();
    List<Block> blocks = new ArrayList<>(results);
    blocks.sort(Comparator.comparingInt(b -> indexOf(order, ((Block.ToolResult) b).toolUseId())));
    for (String q : queued) blocks.add(new Block.Text(q));
    return withMessages(append(messages, Message.user(blocks)))
        .withResults(List.of())
        .withQueued(List.of());
  }

  /** Messages that arrived during a turn that ended without tool calls start the next turn. */
  private SessionState flushQueued() {
    if (queued.isEmpty()) return this;
    List<Block> blocks = new ArrayList<>();
    for (String q : queued) blocks.add(new Block.Text(q));
    return withMessages(append(messages, Message.user(blocks))).withQueued(List.of());
  }

  private static int indexOf(List<Block.ToolUse> uses, String id) {
    for (int i = 0; i < uses.size(); i++) if (uses.get(i).id().equals(id)) return i;
    return Integer.MAX_VALUE;
  }

  private static <T> List<T> append(List<T> list, T item) {
    return Transcripts.append(list, item);
  }

  // ---------------------------------------------------------------- with…

  /** A finished session waits for nothing any more: it drops its holds. */
  SessionState withStatus(SessionStatus status, Instant at) {
    return copy(
        c -> {
          c.status = status;
          c.updatedAt = at;
          if (status.finished()) c.holds = Holds.NONE;
        });
  }

  SessionState withTurn(int turns) {
    return copy(c -> c.turns = turns);
  }

  SessionState withMessages(List<Message> messages) {
    return copy(c -> c.messages = messages);
  }

  SessionState withOpenCalls(List<String> openCalls) {
    return copy(c -> c.openCalls = openCalls);
  }

  SessionState withResults(List<Block.ToolResult> results) {
    return copy(c -> c.results = results);
  }

  SessionState withQueued(List<String> queued) {
    return copy(c -> c.queued = queued);
  }

  SessionState withFiles(SessionFiles files) {
    return copy(c -> c.files = files);
  }

  SessionState withUsage(Usage usage) {
    return copy(c -> c.usage = usage);
  }

  /** The session's outcome: its answer, or its error. */
  SessionState withResult(String result, Summary.ErrorView error) {
    return copy(
        c -> {
          c.result = result;
          c.error = error;
        });
  }

  SessionState withUpdatedAt(Instant updatedAt) {
    return copy(c -> c.updatedAt = updatedAt);
  }

  /** Sandbox events leave {@code updatedAt}: they are the sandbox's life, not the session's. */
  SessionState withSandbox(SandboxInfo sandbox) {
    return copy(c -> c.sandbox = sandbox);
  }

  SessionState withHolds(Holds holds) {
    return copy(c -> c.holds = holds);
  }

  SessionState withChildren(List<Child> children) {
    return copy(c -> c.children = children);
  }

  SessionState withBudget(BudgetState budget) {
    return copy(c -> c.budget = budget);
  }

  /** This state with the fields {@code change} sets; id, org, user, spec and createdAt stay. */
  private SessionState copy(Consumer<Copy> change) {
    Copy c = new Copy(this);
    change.accept(c);
    return new SessionState(
        id,
        org,
        user,
        c.status,
        spec,
        c.turns,
        c.messages,
        c.openCalls,
        c.results,
        c.queued,
        c.files,
        c.usage,
        c.result,
        c.error,
        createdAt,
        c.updatedAt,
        c.sandbox,
        c.holds,
        c.children,
        c.budget);
  }

  /** The fields a {@code with…} may change, starting from a state's. */
  private static final class Copy {
    SessionStatus status;
    int turns;
    List<Message> messages;
    List<String> openCalls;
    List<Block.ToolResult> results;
    List<String> queued;
    SessionFiles files;
    Usage usage;
    String result;
    Summary.ErrorView error;
    Instant updatedAt;
    SandboxInfo sandbox;
    Holds holds;
    List<Child> children;
    BudgetState budget;

    Copy(SessionState s) {
      status = s.status;
      turns = s.turns;
      messages = s.messages;
      openCalls = s.openCalls;
      results = s.results;
      queued = s.queued;
      files = s.files;
      usage = s.usage;
      result = s.result;
      error = s.error;
      updatedAt = s.updatedAt;
      sandbox = s.sandbox;
      holds = s.holds;
      children = s.children;
      budget = s.budget;
    }
  }

  /** The session's sandbox as recorded: its id (null before the first) and state. */
  public record SandboxInfo(String id, SandboxStatus state) implements JsonSerializable {}

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
