package dev.outboard.session;

import static dev.outboard.session.SessionSandbox.ending;

import dev.outboard.JsonSerializable;
import dev.outboard.model.Block;
import dev.outboard.model.ModelDelta;
import dev.outboard.model.ModelResponse;
import dev.outboard.model.Usage;
import dev.outboard.ops.LogContext;
import dev.outboard.ops.Metrics;
import dev.outboard.sandbox.SandboxHandle;
import dev.outboard.sandbox.SandboxStatus;
import dev.outboard.session.Holds.Approval;
import dev.outboard.session.Holds.Task;
import dev.outboard.tools.ApprovalPolicy;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.SupervisorStrategy;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.Entity;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityTypeKey;
import org.apache.pekko.japi.function.Procedure;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.persistence.typed.PersistenceId;
import org.apache.pekko.persistence.typed.RecoveryCompleted;
import org.apache.pekko.persistence.typed.javadsl.CommandHandlerWithReply;
import org.apache.pekko.persistence.typed.javadsl.CommandHandlerWithReplyBuilderByState;
import org.apache.pekko.persistence.typed.javadsl.EffectBuilder;
import org.apache.pekko.persistence.typed.javadsl.EventHandler;
import org.apache.pekko.persistence.typed.javadsl.EventSourcedBehaviorWithEnforcedReplies;
import org.apache.pekko.persistence.typed.javadsl.ReplyEffect;
import org.apache.pekko.persistence.typed.javadsl.RetentionCriteria;
import org.apache.pekko.persistence.typed.javadsl.SignalHandler;

/**
 * One agent session: a sharded, event-sourced actor that drives the turn loop (DESIGN.md §3).
 *
 * <p>A turn is one model call plus the tool calls it asked for. The model call is not an event: if
 * the node dies while it is in flight, recovery simply calls again with the same transcript. The
 * answer, the start of every tool call it asked for and the results of the tools that live in the
 * session's own state ({@code /session}, and every refused call) are persisted in one write. A tool
 * call started but not completed when the node died is executed again on recovery; session files
 * are idempotent by call id because their result depends only on the recorded state.
 *
 * <p>This file holds the protocol, the command handlers per state, the writes and recovery; the
 * work they decide on lives beside it: {@link TurnTools} (the turn's tool calls), {@link
 * ModelCalls}, {@link ModelTurn} and {@link BudgetChecks} (the model call), {@link HeldCalls}
 * (approvals and waits), {@link NextStep} (what follows a step), {@link Subagents}, {@link
 * Compaction}, {@link SessionSandbox}, {@link Followers} and {@link SessionReports} (what the
 * sessions list is told). {@link SessionServices} is what it needs from its node. The file is
 * longer than its neighbours because the protocol stays here: the event and command records (their
 * class names are the journal's manifests) take about 250 lines. The internal messages the
 * collaborators build (ModelAnswered, WaitTimedOut, ...) are package-private for that reason only;
 * nothing outside this package sends them.
 */
public final class SessionEntity
    extends EventSourcedBehaviorWithEnforcedReplies<
        SessionEntity.Command, SessionEntity.Event, SessionState> {

  /** The dispatcher of CPU-heavy tool calls on the session's own files (outboard.conf). */
  public static final String SEARCH_DISPATCHER = "outboard-search-dispatcher";

  public static final EntityTypeKey<Command> ENTITY_KEY =
      EntityTypeKey.create(Command.class, "Session");
  private static final org.slf4j.Logger log =
      org.slf4j.LoggerFactory.getLogger(SessionEntity.class);

  // ---------------------------------------------------------------- protocol

  public sealed interface Command extends JsonSerializable {}

  public record Create(
      String org, String user, SessionSpec spec, ActorRef<StatusReply<Summary>> replyTo)
      implements Command {}

  public record Get(ActorRef<StatusReply<Summary>> replyTo) implements Command {}

  public record GetTranscript(ActorRef<StatusReply<Transcript>> replyTo) implements Command {}

  public record AddMessage(String text, ActorRef<StatusReply<Summary>> replyTo)
      implements Command {}

  public record Cancel(ActorRef<StatusReply<Summary>> replyTo) implements Command {}

  /** Push this session's events to {@code follower} from now on; the reply says where it stands. */
  public record Follow(
      ActorRef<SessionFeed.Message> follower, ActorRef<StatusReply<SessionFeed.Followed>> replyTo)
      implements Command {}

  /** Where the session stands: whether it finished, and its last recorded event. */
  public record GetPosition(ActorRef<StatusReply<Position>> replyTo) implements Command {}

  public record Position(boolean finished, long seq) implements JsonSerializable {}

  /**
   * Answers as soon as the session is not {@code running}, or after {@code waitMillis} (or when
   * this incarnation stops: the caller asks again, see {@code SessionRoutes}).
   */
  public record AwaitSettled(long waitMillis, ActorRef<StatusReply<Summary>> replyTo)
      implements Command {}

  /**
   * A person's decision on a tool call that waits for approval: an allowed call runs, a denied one
   * reaches the model as a tool error carrying {@code message}.
   */
  public record Decide(
      String toolUseId, boolean allow, String message, ActorRef<StatusReply<Summary>> replyTo)
      implements Command {}

  /**
   * Event {@code name} from outside, its JSON {@code payload}: the result of the first {@code wait}
   * for it, or kept for the next one.
   */
  public record DeliverEvent(
      String name, String payload, ActorRef<StatusReply<EventAccepted>> replyTo)
      implements Command {}

  /** What became of a delivered event: the wait it resolved ({@code toolUseId}), or queued. */
  public record EventAccepted(String name, String toolUseId, boolean queued)
      implements JsonSerializable {}

  /** From {@link WaitWakeups}: a wait is due (the message alone wakes a passivated session). */
  public enum Wake implements Command {
    INSTANCE
  }

  /** Sent by sharding when the entity must stop (passivation or hand-off). */
  public enum Stop implements Command {
    INSTANCE
  }

  /** Turn {@code turn}'s answer, and the org's approval policy read for it (null: unreadable). */
  record ModelAnswered(int turn, ModelResponse response, ApprovalPolicy orgPolicy)
      implements Command {}

  record ModelFailed(int turn, String code, String message) implements Command {}

  /** A piece of the answer of turn {@code turn}'s model call, while it streams. */
  record DeltaArrived(int turn, ModelDelta delta) implements Command {}

  record FollowerGone(ActorRef<SessionFeed.Message> follower) implements Command {}

  record WaitDue(ActorRef<StatusReply<Summary>> waiter) implements Command {}

  /** The deadline of the wait tool call {@code callId} has come. */
  record WaitTimedOut(String callId) implements Command {}

  private enum IdleTimeout implements Command {
    INSTANCE
  }

  /**
   * Subagent {@code childId} finished: sent by the child through sharding when it does, again each
   * time it recovers finished, and asked for by its parent ({@link CheckChildren}).
   */
  public record ChildFinished(String childId, Summary summary) implements Command {}

  /** Ask every subagent still worked on where it stands (every subagents.check-interval). */
  enum CheckChildren implements Command {
    INSTANCE
  }

  /** Raises the budget (null: a limit unchanged); a session paused over its budget goes on. */
  public record RaiseBudget(
      Long maxTokens, Integer maxTurns, ActorRef<StatusReply<Summary>> replyTo)
      implements Command {}

  /** The model call of {@code turn} is not made: the budget's {@code kind} limit is reached. */
  record OverBudget(int turn, String kind, long limit, long used, boolean pause)
      implements Command {}

  /** The summary of {@code messages[0, replaced)} for turn {@code turn}'s call came back. */
  record Summarised(int turn, int replaced, String summary, Usage usage) implements Command {}

  /** The summary call of turn {@code turn} failed: the turn goes on uncompacted. */
  record SummaryFailed(int turn, String reason) implements Command {}

  /** Nothing to do (the answer of an ask that needs no action). */
  enum Nothing implements Command {
    INSTANCE
  }

  private enum ResumeOpenCalls implements Command {
    INSTANCE
  }

  /** The end of a hand-off: the step in flight is recorded, or the grace ran out. */
  private enum HandOffNow implements Command {
    INSTANCE
  }

  /** The session's {@link SandboxHandle} reports a change. */
  record SandboxReported(SandboxHandle.Report report) implements Command {}

  /** The sandbox child stopped (it failed, or was destroyed). */
  record SandboxStopped(ActorRef<SandboxHandle.Command> child) implements Command {}

  /** The tool calls of a turn that needed outside systems have all come back. */
  private record ToolsFinished(int turn, List<Event> completions) implements Command {}

  /** Error strings of the replies: {@code "<code>: <sentence>"}, mapped to HTTP by the routes. */
  public static final String NOT_FOUND = "not_found";

  public static final String CONFLICT = "conflict";

  // ---------------------------------------------------------------- events

  public sealed interface Event extends JsonSerializable {
    Instant at();
  }

  public record SessionStarted(
      String sessionId, String org, String user, SessionSpec spec, Instant at) implements Event {}

  public record UserMessageAdded(String text, Instant at) implements Event {}

  public record ModelResponded(
      int turn, List<Block> content, Usage usage, String stopReason, Instant at) implements Event {}

  public record ToolCallStarted(int turn, String callId, String name, Instant at)
      implements Event {}

  public record ToolCallCompleted(
      int turn,
      String callId,
      String content,
      boolean isError,
      SessionFiles.Change change,
      Instant at)
      implements Event {}

  public record SessionWaiting(String text, Instant at) implements Event {}

  public record SessionCompleted(String result, Instant at) implements Event {}

  public record SessionFailed(String code, String message, Instant at) implements Event {}

  public record SessionCancelled(Instant at) implements Event {}

  /**
   * The {@code task} call {@code callId} is handed to subagent {@code childId} (a session of the
   * same org).
   */
  public record TaskStarted(int turn, String callId, String childId, String description, Instant at)
      implements Event {}

  /**
   * Subagent {@code childId} ended with {@code status}; its {@code usage} adds to this session's.
   * The call's result (the child's final text, or why it has none) follows in the same write.
   */
  public record TaskFinished(
      int turn, String callId, String childId, String status, Usage usage, Instant at)
      implements Event {}

  /**
   * The session reached its budget's {@code kind} ({@code tokens} or {@code turns}) limit before a
   * model call; {@code action} {@code pause} holds it (requires_action), {@code fail} is followed
   * by its failure in the same write.
   */
  public record BudgetExceeded(String kind, long limit, long used, String action, Instant at)
      implements Event {}

  /** New limits (null: unchanged), above what the session used; a paused session goes on. */
  public record BudgetRaised(Long maxTokens, Integer maxTurns, Instant at) implements Event {}

  /**
   * The transcript's first {@code replaced} messages are replaced by {@code summary} (the model's,
   * costing {@code usage}); they stay in the journal (their own events), and as text, at most
   * {@code historyChars}, in the session file {@code historyPath}, rendered from them when this
   * event is applied (so the journal does not hold them twice).
   */
  public record TranscriptCompacted(
      int replaced, String summary, String historyPath, int historyChars, Usage usage, Instant at)
      implements Event {}

  /** Tool call {@code callId} waits for a person's decision (the session shows requires_action). */
  public record ApprovalRequested(int turn, String callId, String name, Instant at)
      implements Event {}

  /**
   * The decision on {@code callId}; a denial is followed by the call's error result in the same
   * write.
   */
  public record ApprovalDecided(
      int turn, String callId, boolean allowed, String message, Instant at) implements Event {}

  /**
   * The {@code wait} call {@code callId} waits for event {@code event} until {@code deadline}; if
   * such an event was kept already, it takes it and its result follows in the same write.
   */
  public record WaitStarted(
      int turn, String callId, String event, int timeoutSeconds, Instant deadline, Instant at)
      implements Event {}

  /**
   * Event {@code name} arrived with {@code payload} (JSON): it resolves the first wait for it
   * (whose result follows in the same write), or is kept for the next.
   */
  public record EventReceived(String name, String payload, Instant at) implements Event {}

  /** The session's sandbox got its first sandbox {@code sandboxId}. */
  public record SandboxAttached(String sandboxId, Instant at) implements Event {}

  /** The sandbox {@code oldId} was gone and {@code newId} took its place. */
  public record SandboxReplaced(String oldId, String newId, Instant at) implements Event {}

  /**
   * The sandbox went to {@code state} (API.md: provisioning, active, suspended, hibernated,
   * replacing, destroyed, none).
   */
  public record SandboxChanged(SandboxStatus state, Instant at) implements Event {}

  // ---------------------------------------------------------------- wiring

  public static void init(ActorSystem<?> system, SessionServices services) {
    ClusterSharding.get(system)
        .init(
            Entity.of(ENTITY_KEY, ctx -> create(ctx.getEntityId(), ctx.getShard(), services))
                .withStopMessage(Stop.INSTANCE));
  }

  public static Behavior<Command> create(
      String sessionId, ActorRef<ClusterSharding.ShardCommand> shard, SessionServices services) {
    return Behaviors.<Command>setup(
        ctx ->
            Behaviors.withTimers(
                timers -> {
                  SessionEntity entity = new SessionEntity(sessionId, shard, services, ctx, timers);
                  return LogContext.everyMessage(
                      Map.of("sessionId", sessionId), entity::orgMdc, entity);
                }));
  }

  private final String sessionId;
  private final ActorRef<ClusterSharding.ShardCommand> shard;
  private final SessionServices services;
  private final ActorContext<Command> ctx;
  private final TimerScheduler<Command> timers;

  // What the handlers delegate to, a file per role: the sandbox child, the subagents, the tool
  // calls of a turn and those it holds, the model call (with the budget and the org's policy,
  // after compaction), the followers and what the sessions list was told.
  private final SessionSandbox sandbox;
  private final Subagents subagents;
  private final TurnTools tools;
  private final HeldCalls held;
  private final Compaction compaction;
  private final ModelCalls modelCalls;
  private final Followers followers;
  private final SessionReports reports;

  /** The org, once known: for the MDC of log lines. */
  private String orgId;

  /** This entity asked sharding to passivate it: the Stop that follows is not a hand-off. */
  private boolean passivating;

  /**
   * Sharding asked this entity to stop while a step was in flight: it records the step, then stops.
   */
  private boolean handingOff;

  /** When this incarnation started, for the recovery time. */
  private final long startedNanos;

  private SessionEntity(
      String sessionId,
      ActorRef<ClusterSharding.ShardCommand> shard,
      SessionServices services,
      ActorContext<Command> ctx,
      TimerScheduler<Command> timers) {
    super(
        PersistenceId.of(ENTITY_KEY.name(), sessionId),
        SupervisorStrategy.restartWithBackoff(Duration.ofMillis(200), Duration.ofSeconds(10), 0.2));
    this.sessionId = sessionId;
    this.shard = shard;
    this.services = services;
    this.ctx = ctx;
    this.timers = timers;
    this.sandbox = new SessionSandbox(services, ctx);
    this.followers = new Followers(ctx, timers);
    this.subagents = new Subagents(services.settings().subagents(), sessionId, ctx, timers);
    this.tools =
        new TurnTools(
            services,
            subagents,
            new OutsideCalls(services, sessionId, ctx.getSystem().scheduler()),
            ctx.getSystem().dispatchers().lookup(DispatcherSelector.fromConfig(SEARCH_DISPATCHER)),
            sandbox::child);
    this.held = new HeldCalls(tools, subagents, services.settings().waits(), timers);
    this.compaction = new Compaction(services.settings(), services.models(), sessionId);
    this.modelCalls =
        new ModelCalls(
            services, ctx, new ModelTurn(services, sessionId, subagents), compaction, followers);
    this.reports = new SessionReports(services, sessionId, ctx);
    this.startedNanos = System.nanoTime();
  }

  @Override
  public SessionState emptyState() {
    return SessionState.empty(sessionId);
  }

  @Override
  public RetentionCriteria retentionCriteria() {
    return RetentionCriteria.snapshotEvery(services.settings().snapshotEvery(), 2);
  }

  // ---------------------------------------------------------------- commands

  @Override
  public CommandHandlerWithReply<Command, Event, SessionState> commandHandler() {
    return fresh()
        .orElse(running())
        .orElse(waiting())
        .orElse(finished())
        .orElse(anyState())
        .build();
  }

  /** Before Create: there is no such session. */
  private CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState>
      fresh() {
    return newCommandHandlerWithReplyBuilder()
        .forState(s -> s.status() == SessionStatus.NEW)
        .onCommand(Create.class, this::onCreate)
        .onCommand(Get.class, (s, c) -> refuse(c.replyTo(), notFound(s.id())))
        .onCommand(GetTranscript.class, (s, c) -> refuse(c.replyTo(), notFound(s.id())))
        .onCommand(AddMessage.class, (s, c) -> refuse(c.replyTo(), notFound(s.id())))
        .onCommand(Cancel.class, (s, c) -> refuse(c.replyTo(), notFound(s.id())))
        .onCommand(Follow.class, (s, c) -> refuse(c.replyTo(), notFound(s.id())))
        .onCommand(GetPosition.class, (s, c) -> refuse(c.replyTo(), notFound(s.id())))
        .onCommand(AwaitSettled.class, (s, c) -> refuse(c.replyTo(), notFound(s.id())))
        .onCommand(Decide.class, (s, c) -> refuse(c.replyTo(), notFound(s.id())))
        .onCommand(DeliverEvent.class, (s, c) -> refuse(c.replyTo(), notFound(s.id())));
  }

  /** The turn loop: model answers, tool results, decisions, events, subagents, budget. */
  private CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState>
      running() {
    return newCommandHandlerWithReplyBuilder()
        .forState(s -> s.status() == SessionStatus.RUNNING)
        .onCommand(ModelAnswered.class, this::onModelAnswered)
        .onCommand(ToolsFinished.class, this::onToolsFinished)
        .onCommand(ModelFailed.class, this::onModelFailed)
        .onCommand(ResumeOpenCalls.class, this::onResumeOpenCalls)
        .onCommand(AddMessage.class, this::onMessage)
        .onCommand(Cancel.class, this::onCancel)
        .onCommand(Decide.class, this::onDecide)
        .onCommand(DeliverEvent.class, this::onEvent)
        .onCommand(WaitTimedOut.class, this::onWaitTimedOut)
        .onCommand(ChildFinished.class, this::onChildFinished)
        .onCommand(OverBudget.class, this::onOverBudget)
        .onCommand(Summarised.class, this::onSummarised)
        .onCommand(SummaryFailed.class, this::onSummaryFailed)
        .onCommand(RaiseBudget.class, this::onRaiseBudget)
        .onCommand(CheckChildren.class, (s, c) -> only(() -> subagents.check(s)))
        .onCommand(Wake.class, (s, c) -> only(() -> held.arm(s)));
  }

  /** Waiting for a message (keepOpen): it takes messages, events and a new budget. */
  private CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState>
      waiting() {
    return newCommandHandlerWithReplyBuilder()
        .forState(s -> s.status() == SessionStatus.WAITING)
        .onCommand(AddMessage.class, this::onMessage)
        .onCommand(Cancel.class, this::onCancel)
        .onCommand(DeliverEvent.class, this::onEvent)
        .onCommand(RaiseBudget.class, this::onRaiseBudget);
  }

  /** Completed, failed or cancelled: what would change it is refused. */
  private CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState>
      finished() {
    return newCommandHandlerWithReplyBuilder()
        .forState(s -> s.status().finished())
        .onCommand(AddMessage.class, (s, c) -> refuse(c.replyTo(), finishedError(s)))
        .onCommand(Cancel.class, (s, c) -> refuse(c.replyTo(), finishedError(s)))
        .onCommand(DeliverEvent.class, (s, c) -> refuse(c.replyTo(), finishedError(s)));
  }

  /**
   * In every state: reads, followers, the sandbox child, stopping; and what came too late for the
   * state it found (a model answer for a cancelled session...) is dropped or refused.
   */
  private CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState>
      anyState() {
    return newCommandHandlerWithReplyBuilder()
        .forAnyState()
        .onCommand(Create.class, (s, c) -> answer(c.replyTo(), services.summary(s)))
        .onCommand(Get.class, (s, c) -> answer(c.replyTo(), services.summary(s)))
        .onCommand(GetTranscript.class, (s, c) -> answer(c.replyTo(), s.transcript()))
        .onCommand(GetPosition.class, this::onGetPosition)
        .onCommand(Follow.class, this::onFollow)
        .onCommand(FollowerGone.class, (s, c) -> only(() -> followers.gone(c.follower())))
        .onCommand(DeltaArrived.class, this::onDelta)
        .onCommand(AwaitSettled.class, this::onAwaitSettled)
        .onCommand(WaitDue.class, (s, c) -> only(() -> followers.due(c.waiter(), summary(s))))
        .onCommand(IdleTimeout.class, this::onIdleTimeout)
        .onCommand(SandboxReported.class, this::onSandboxReported)
        .onCommand(SandboxStopped.class, (s, c) -> only(() -> sandbox.stopped(c.child())))
        .onCommand(Stop.class, this::onStop)
        .onCommand(HandOffNow.class, (s, c) -> Effect().stop().thenNoReply())
        // A model answer or failure for a session that is no longer running (cancelled) is dropped.
        .onCommand(ModelAnswered.class, this::ignore)
        .onCommand(ModelFailed.class, this::ignore)
        .onCommand(ResumeOpenCalls.class, this::ignore)
        .onCommand(ToolsFinished.class, this::ignore)
        // Decisions outside a running turn: on a call that waits for none (409) or no such call
        // (404).
        .onCommand(
            Decide.class, (s, c) -> refuse(c.replyTo(), HeldCalls.notPending(s, c.toolUseId())))
        .onCommand(WaitTimedOut.class, this::ignore)
        .onCommand(ChildFinished.class, this::ignore)
        .onCommand(OverBudget.class, this::ignore)
        .onCommand(Summarised.class, this::ignore)
        .onCommand(SummaryFailed.class, this::ignore)
        .onCommand(RaiseBudget.class, (s, c) -> refuse(c.replyTo(), BudgetChecks.notRaised(s)))
        .onCommand(CheckChildren.class, this::ignore)
        .onCommand(Nothing.class, this::ignore)
        .onCommand(Wake.class, this::ignore);
  }

  private ReplyEffect<Event, SessionState> onCreate(SessionState state, Create cmd) {
    Metrics.SESSIONS_STARTED.inc();
    orgId = cmd.org();
    SessionStarted started =
        new SessionStarted(sessionId, cmd.org(), cmd.user(), cmd.spec(), Instant.now());
    return withSummary(record(state, List.of(started)), cmd.replyTo());
  }

  private ReplyEffect<Event, SessionState> onMessage(SessionState state, AddMessage cmd) {
    return withSummary(
        record(state, List.of(new UserMessageAdded(cmd.text(), Instant.now()))), cmd.replyTo());
  }

  private ReplyEffect<Event, SessionState> onCancel(SessionState state, Cancel cmd) {
    List<Event> events = ending(state, new SessionCancelled(Instant.now()));
    Procedure<SessionState> then =
        s -> {
          afterPersist(s);
          subagents.cancelChildren(s);
        };
    return withSummary(record(state, events, then), cmd.replyTo());
  }

  /**
   * The model answered: record the answer, start its tool calls, and complete those that need no
   * outside system, all in one write; then either continue the loop or stop it.
   */
  private ReplyEffect<Event, SessionState> onModelAnswered(SessionState state, ModelAnswered msg) {
    if (!modelCalls.returned(state, msg.turn())) return Effect().none().thenNoReply();
    Instant now = Instant.now();
    ModelResponse response = msg.response();
    TurnTools.Step step = tools.answered(state, msg.turn(), response, msg.orgPolicy(), now);
    Procedure<SessionState> then =
        s -> {
          services.observer().usage(s.org(), response.usage(), now);
          afterStep(s, step);
        };
    return record(state, step.events(), then).thenNoReply();
  }

  /**
   * After the write of {@code step}: the calls it recorded as started that run later go off the
   * actor's thread (while handing off, the next incarnation runs them instead, on recovery); then
   * the usual.
   */
  private void afterStep(SessionState state, TurnTools.Step step) {
    if (!step.later().isEmpty() && handingOff) ctx.getSelf().tell(HandOffNow.INSTANCE);
    else if (!step.later().isEmpty()) runTools(state, step.turn(), step.later());
    afterPersist(state);
  }

  /** Runs {@code calls} off the actor's thread; their completions come back as ToolsFinished. */
  private void runTools(SessionState state, int turn, List<Block.ToolUse> calls) {
    if (state.status() != SessionStatus.RUNNING) return;
    ctx.pipeToSelf(tools.run(state, turn, calls), (done, error) -> new ToolsFinished(turn, done));
  }

  /**
   * Re-executes tool calls that were started but not completed before a crash (not those held for a
   * decision or an event). Session files are recomputed from the recorded state; org-file writes
   * are idempotent by (session, call id).
   */
  private ReplyEffect<Event, SessionState> onResumeOpenCalls(
      SessionState state, ResumeOpenCalls msg) {
    List<Block.ToolUse> open = TurnTools.running(state);
    if (!open.isEmpty()) runTools(state, state.turns(), open);
    return Effect().none().thenNoReply();
  }

  /** Records the results of a turn's tool calls that went to outside systems, in one write. */
  private ReplyEffect<Event, SessionState> onToolsFinished(SessionState state, ToolsFinished msg) {
    List<Event> events = TurnTools.stillOpen(state, msg.completions());
    if (events.isEmpty()) return Effect().none().thenNoReply();
    return record(state, NextStep.after(state, events, "", Instant.now())).thenNoReply();
  }

  private ReplyEffect<Event, SessionState> onModelFailed(SessionState state, ModelFailed msg) {
    if (!modelCalls.returned(state, msg.turn())) return Effect().none().thenNoReply();
    return record(state, ending(state, new SessionFailed(msg.code(), msg.message(), Instant.now())))
        .thenNoReply();
  }

  /**
   * The summary is in: record the compaction (the history file with it), then make the turn's call.
   */
  private ReplyEffect<Event, SessionState> onSummarised(SessionState state, Summarised msg) {
    if (!modelCalls.returned(state, msg.turn()) || msg.replaced() >= state.messages().size())
      return Effect().none().thenNoReply();
    TranscriptCompacted compacted =
        compaction.compacted(state, msg.replaced(), msg.summary(), msg.usage());
    Metrics.COMPACTIONS.inc();
    Procedure<SessionState> then =
        s -> {
          services.observer().usage(s.org(), msg.usage(), compacted.at());
          afterPersist(s);
        };
    return record(state, List.of(compacted), then).thenNoReply();
  }

  private ReplyEffect<Event, SessionState> onSummaryFailed(SessionState state, SummaryFailed msg) {
    if (!modelCalls.returned(state, msg.turn())) return Effect().none().thenNoReply();
    log.warn(
        "session {}: the summary for compaction failed ({}); turn {} goes on without it",
        sessionId,
        msg.reason(),
        msg.turn());
    compaction.summaryFailed(msg.turn());
    modelCalls.call(state);
    return Effect().none().thenNoReply();
  }

  /** The session reached a limit of its budget before the model call of {@code turn}. */
  private ReplyEffect<Event, SessionState> onOverBudget(SessionState state, OverBudget msg) {
    if (!modelCalls.returned(state, msg.turn())) return Effect().none().thenNoReply();
    return record(state, BudgetChecks.exceeded(state, msg, Instant.now())).thenNoReply();
  }

  /** New limits for a session (one over its budget goes on if they are above what it used). */
  private ReplyEffect<Event, SessionState> onRaiseBudget(SessionState state, RaiseBudget cmd) {
    String refused = BudgetChecks.refused(state, cmd);
    if (refused != null) return refuse(cmd.replyTo(), refused);
    BudgetRaised raised = new BudgetRaised(cmd.maxTokens(), cmd.maxTurns(), Instant.now());
    return withSummary(record(state, List.of(raised)), cmd.replyTo());
  }

  /**
   * A person decided on a held call: an allowed one runs now, a denied one gets its error result.
   */
  private ReplyEffect<Event, SessionState> onDecide(SessionState state, Decide cmd) {
    Approval pending = state.holds().approval(cmd.toolUseId());
    if (pending == null) return refuse(cmd.replyTo(), HeldCalls.notPending(state, cmd.toolUseId()));
    TurnTools.Step step = held.decided(state, pending, cmd, Instant.now());
    return withSummary(record(state, step.events(), s -> afterStep(s, step)), cmd.replyTo());
  }

  /** Event {@code name} arrived: it resolves the first wait for it, or is kept for the next one. */
  private ReplyEffect<Event, SessionState> onEvent(SessionState state, DeliverEvent cmd) {
    HeldCalls.Delivery delivery = held.delivered(state, cmd.name(), cmd.payload());
    if (delivery.refused() != null) return refuse(cmd.replyTo(), delivery.refused());
    return record(state, delivery.events())
        .thenReply(cmd.replyTo(), s -> StatusReply.success(delivery.accepted()));
  }

  /** A wait's deadline came without its event: the call's result says so. */
  private ReplyEffect<Event, SessionState> onWaitTimedOut(SessionState state, WaitTimedOut msg) {
    List<Event> events = held.timedOut(state, msg.callId());
    if (events.isEmpty()) return Effect().none().thenNoReply();
    return record(state, events).thenNoReply();
  }

  /** A subagent finished: its final text (or why there is none) is the result of the task call. */
  private ReplyEffect<Event, SessionState> onChildFinished(SessionState state, ChildFinished msg) {
    Task task = state.holds().taskOf(msg.childId());
    if (task == null) return Effect().none().thenNoReply(); // reported before, or not ours
    Instant now = Instant.now();
    return record(state, NextStep.after(state, Subagents.finished(task, msg, now), "", now))
        .thenNoReply();
  }

  /** Records what the sandbox child reported: a new sandbox id and/or a new state. */
  private ReplyEffect<Event, SessionState> onSandboxReported(
      SessionState state, SandboxReported msg) {
    List<Event> events = SessionSandbox.reported(state, msg.report(), Instant.now());
    if (events.isEmpty()) return Effect().none().thenNoReply();
    boolean newSandbox = SessionSandbox.newSandbox(events);
    Procedure<SessionState> then =
        s -> reports.sandboxRecorded(s, newSandbox, lastSequenceNumber(ctx));
    return record(state, events, then).thenNoReply();
  }

  private ReplyEffect<Event, SessionState> onGetPosition(SessionState state, GetPosition cmd) {
    return answer(cmd.replyTo(), new Position(state.status().finished(), lastSequenceNumber(ctx)));
  }

  private ReplyEffect<Event, SessionState> onFollow(SessionState state, Follow cmd) {
    followers.follow(cmd.follower());
    return answer(cmd.replyTo(), new SessionFeed.Followed(lastSequenceNumber(ctx), ctx.getSelf()));
  }

  /** A piece of the model's answer in flight: live to the followers, never recorded. */
  private ReplyEffect<Event, SessionState> onDelta(SessionState state, DeltaArrived msg) {
    if (modelCalls.inFlight(msg.turn()))
      followers.live(lastSequenceNumber(ctx), msg.turn(), msg.delta());
    return Effect().none().thenNoReply();
  }

  private ReplyEffect<Event, SessionState> onAwaitSettled(SessionState state, AwaitSettled cmd) {
    if (state.shown() != SessionStatus.RUNNING)
      return answer(cmd.replyTo(), services.summary(state));
    followers.await(cmd.replyTo(), cmd.waitMillis());
    return Effect().noReply();
  }

  /**
   * Passivates an idle session, but not while its sandbox still has processes: the sandbox child
   * (started for it if need be) hibernates it first, and the next idle timeout passivates. The stay
   * is bounded (SessionSandbox.holdsSession).
   */
  private ReplyEffect<Event, SessionState> onIdleTimeout(SessionState state, IdleTimeout msg) {
    if (state.busy()) return Effect().none().thenNoReply();
    // Someone follows it: it stays (its sandbox still parks on its own timers).
    boolean followed = !state.status().finished() && !followers.none();
    if (followed || sandbox.staysFor(state)) {
      timers.startSingleTimer(IdleTimeout.INSTANCE, services.settings().passivateAfter());
    } else {
      passivating = true;
      shard.tell(new ClusterSharding.Passivate<>(ctx.getSelf()));
    }
    return Effect().none().thenNoReply();
  }

  /**
   * Sharding stops the entity: after it asked to passivate, or to hand it off (rebalance,
   * shutdown). A running session with a model call or tools in flight first records their outcome
   * (at most {@code handoff-grace}), so that the next incarnation goes on from there instead of
   * making the call again; it starts nothing new meanwhile.
   */
  private ReplyEffect<Event, SessionState> onStop(SessionState state, Stop cmd) {
    if (handingOff) return Effect().none().thenNoReply();
    if (!passivating && state.status() != SessionStatus.NEW) {
      Metrics.HANDOFFS.inc();
      ctx.getLog().info("session {} handed off by sharding (rebalance or shutdown)", sessionId);
    }
    boolean stepInFlight =
        modelCalls.inFlight(state.turns() + 1) || !state.runningCalls().isEmpty();
    if (state.status() == SessionStatus.RUNNING && stepInFlight && !passivating) {
      handingOff = true;
      timers.startSingleTimer(HandOffNow.INSTANCE, services.settings().handoffGrace());
      return Effect().none().thenNoReply();
    }
    return Effect().stop().thenNoReply();
  }

  /** The MDC of this entity's log lines besides its session id: its org, once known. */
  private Map<String, String> orgMdc(Object message) {
    String known = orgId != null ? orgId : message instanceof Create c ? c.org() : null;
    return known == null ? Map.of() : Map.of("org", known);
  }

  // ---------------------------------------------------------------- writes

  /** Side effects after a write: next model call, idle timer, sessions list. */
  private void afterPersist(SessionState state) {
    long seq = lastSequenceNumber(ctx);
    modelCalls.recorded(state);
    if (state.status().finished()) sandbox.destroy(state);
    if (state.shown() != SessionStatus.RUNNING) followers.release(summary(state));
    if (state.busy()) {
      timers.cancel(IdleTimeout.INSTANCE);
      sandbox.busy();
      if (state.readyForModel() && !handingOff) modelCalls.call(state);
    } else {
      // Finished, waiting for a message, or only held calls left: it may passivate (holds wake it).
      timers.startSingleTimer(
          IdleTimeout.INSTANCE, services.settings().idleTimeout(state.status().finished()));
    }
    held.arm(state);
    subagents.start(state);
    if (reports.statusChanges(state) && state.status().finished())
      subagents.notifyParent(state, () -> services.summary(state));
    reports.recorded(state, seq);
    if (handingOff && (!state.busy() || state.readyForModel()))
      ctx.getSelf().tell(HandOffNow.INSTANCE);
  }

  /** Persists {@code events}, decided in state {@code before}, then runs {@link #afterPersist}. */
  private EffectBuilder<Event, SessionState> record(SessionState before, List<Event> events) {
    return record(before, events, this::afterPersist);
  }

  /**
   * Persists {@code events}, decided in state {@code before}; once written, pushes them to the
   * followers and runs {@code then}. Times the journal write, from here to the callback. The
   * followers cannot change in between: commands wait while the entity persists.
   */
  private EffectBuilder<Event, SessionState> record(
      SessionState before, List<Event> events, Procedure<SessionState> then) {
    long started = System.nanoTime();
    List<SessionFeed.Recorded> pushes =
        followers.none()
            ? List.of()
            : SessionEventStream.render(lastSequenceNumber(ctx) + 1, events, before);
    return Effect()
        .persist(events)
        .thenRun(
            s -> {
              Metrics.JOURNAL_WRITE_SECONDS.observe(Metrics.secondsSince(started));
              pushes.forEach(followers::push);
              then.apply(s);
            });
  }

  /** Replies the summary of the state after {@code effect}. */
  private ReplyEffect<Event, SessionState> withSummary(
      EffectBuilder<Event, SessionState> effect, ActorRef<StatusReply<Summary>> replyTo) {
    return effect.thenReply(replyTo, s -> StatusReply.success(services.summary(s)));
  }

  // ---------------------------------------------------------------- replies

  /** The error of a reply about a session that does not exist. */
  static String notFound(String sessionId) {
    return NOT_FOUND + ": no session " + sessionId;
  }

  private static String finishedError(SessionState s) {
    return CONFLICT + ": the session is " + s.status().wire();
  }

  private <T> ReplyEffect<Event, SessionState> refuse(
      ActorRef<StatusReply<T>> replyTo, String why) {
    return Effect().reply(replyTo, StatusReply.error(why));
  }

  private <T> ReplyEffect<Event, SessionState> answer(ActorRef<StatusReply<T>> replyTo, T value) {
    return Effect().reply(replyTo, StatusReply.success(value));
  }

  /** A message that only has {@code sideEffect} (nothing to record, no reply). */
  private ReplyEffect<Event, SessionState> only(Runnable sideEffect) {
    sideEffect.run();
    return Effect().none().thenNoReply();
  }

  /** The state as the API shows it, computed when asked. */
  private Supplier<Summary> summary(SessionState state) {
    return () -> services.summary(state);
  }

  /** A message that needs nothing in this state (it came too late, or is only a wake-up). */
  private ReplyEffect<Event, SessionState> ignore(SessionState state, Command msg) {
    return Effect().none().thenNoReply();
  }

  // ---------------------------------------------------------------- events → state

  @Override
  public EventHandler<SessionState, Event> eventHandler() {
    return SessionState::apply;
  }

  // ---------------------------------------------------------------- recovery

  @Override
  public SignalHandler<SessionState> signalHandler() {
    return newSignalHandlerBuilder()
        .onSignal(RecoveryCompleted.instance(), this::onRecovered)
        .onSignal(PostStop.instance(), this::onStopped)
        .build();
  }

  /**
   * Forgets what the previous incarnation had in flight. After a journal failure the entity is
   * restarted in place (restartWithBackoff): this object stays, its children (the sandbox handle)
   * are stopped, and its model calls, tool chains and asks died with it. A stale sandbox ref would
   * send every later call to dead letters, and a stale call in flight would never ask the model
   * again.
   */
  private void freshIncarnation() {
    sandbox.forget();
    modelCalls.forget();
    subagents.forget();
    handingOff = false;
    passivating = false;
  }

  /** This incarnation stops: its waiters and followers go on with the next one. */
  private void onStopped(SessionState state) {
    reports.stopped();
    followers.release(summary(state));
    followers.clear(); // they watch this incarnation and follow the next
  }

  private void onRecovered(SessionState state) {
    freshIncarnation();
    if (state.status() == SessionStatus.NEW) {
      timers.startSingleTimer(IdleTimeout.INSTANCE, services.settings().passivateAfter());
      return;
    }
    orgId = state.org();
    reports.recovered(state, lastSequenceNumber(ctx), startedNanos);
    if (state.status().finished())
      sandbox.destroy(state); // in case the node stopped before it could
    held.arm(state); // a wait that came due while the session was away times out now
    subagents.recovered(state, () -> services.summary(state));
    if (!state.busy()) {
      timers.startSingleTimer(
          IdleTimeout.INSTANCE, services.settings().idleTimeout(state.status().finished()));
    } else if (!state.openCalls().isEmpty()) {
      ctx.getSelf().tell(ResumeOpenCalls.INSTANCE);
    } else {
      modelCalls.call(state);
    }
  }
}
