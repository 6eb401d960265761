package dev.outboard.session;

import static dev.outboard.session.SessionSandbox.ending;

import dev.outboard.JsonSerializable;
import dev.outboard.model.Block;
import dev.outboard.model.Message;
import dev.outboard.model.ModelClient;
import dev.outboard.model.ModelDelta;
import dev.outboard.model.ModelResponse;
import dev.outboard.model.Secrets;
import dev.outboard.model.Usage;
import dev.outboard.ops.LiveStates;
import dev.outboard.ops.LogContext;
import dev.outboard.ops.Metrics;
import dev.outboard.sandbox.SandboxHandle;
import dev.outboard.sandbox.SandboxStatus;
import dev.outboard.session.Holds.Approval;
import dev.outboard.session.Holds.Task;
import dev.outboard.session.Holds.Wait;
import dev.outboard.session.SessionState.SandboxInfo;
import dev.outboard.tools.ApprovalPolicy;
import dev.outboard.tools.ToolCall;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
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
 * <p>This file holds the protocol, the command handlers per state and recovery; the work they
 * decide on lives beside it: {@link TurnTools} (the turn's tool calls), {@link ModelTurn} and
 * {@link BudgetChecks} (the model call), {@link HeldCalls} (approvals and waits), {@link
 * Subagents}, {@link Compaction}, {@link SessionSandbox} and {@link Followers}.
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

  /**
   * What became of a delivered event: the wait it resolved ({@code toolUseId}), or {@code queued}.
   */
  public record EventAccepted(String name, String toolUseId, boolean queued)
      implements JsonSerializable {}

  /**
   * From {@link WaitWakeups}: a wait of this session is due (the message alone wakes a passivated
   * session).
   */
  public enum Wake implements Command {
    INSTANCE
  }

  /** Sent by sharding when the entity must stop (passivation or hand-off). */
  public enum Stop implements Command {
    INSTANCE
  }

  /**
   * The model's answer of turn {@code turn}, and the org's approval policy as read for it (null:
   * unreadable).
   */
  private record ModelAnswered(int turn, ModelResponse response, ApprovalPolicy orgPolicy)
      implements Command {}

  record ModelFailed(int turn, String code, String message) implements Command {}

  /** A piece of the answer of turn {@code turn}'s model call, while it streams. */
  private record DeltaArrived(int turn, ModelDelta delta) implements Command {}

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

  /**
   * Raises the session's budget (null: that limit unchanged); one that paused over its budget goes
   * on.
   */
  public record RaiseBudget(
      Long maxTokens, Integer maxTurns, ActorRef<StatusReply<Summary>> replyTo)
      implements Command {}

  /** The model call of {@code turn} is not made: the budget's {@code kind} limit is reached. */
  record OverBudget(int turn, String kind, long limit, long used, boolean pause)
      implements Command {}

  /**
   * The summary of {@code messages[0, replaced)} for the call of turn {@code turn} came back
   * (compaction).
   */
  private record Summarised(int turn, int replaced, String summary, Usage usage)
      implements Command {}

  /** The summary call of turn {@code turn} failed: the turn goes on uncompacted. */
  private record SummaryFailed(int turn, String reason) implements Command {}

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
  // calls of a turn, the model call (with the budget and the org's policy), compaction.
  private final SessionSandbox sandbox;
  private final Subagents subagents;
  private final TurnTools tools;
  private final ModelTurn modelTurn;
  private final Compaction compaction;

  /**
   * The turn whose model call is in flight, so that it is never asked twice by this incarnation.
   */
  private int callInFlight;

  private long turnStartNanos;

  /**
   * The status this incarnation last reported to the observer, and the holds it showed
   * (HeldCalls.shown).
   */
  private SessionStatus reported;

  private List<Object> reportedHolds = List.of();

  /** The org, once known: for the MDC of log lines. */
  private String orgId;

  /** The turn whose duration turnStartNanos times (0: none), see afterPersist. */
  private int timedTurn;

  /** This entity asked sharding to passivate it: the Stop that follows is not a hand-off. */
  private boolean passivating;

  /**
   * Sharding asked this entity to stop while a step was in flight: it records the step, then stops.
   */
  private boolean handingOff;

  private final LiveStates.Member liveStatus = LiveStates.SESSIONS.member();

  /** The event streams that follow this session, and the callers waiting for it to settle. */
  private final Followers followers;

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
    this.modelTurn = new ModelTurn(services, sessionId, subagents);
    this.compaction = new Compaction(services.settings(), services.models(), sessionId);
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
    CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState> fresh =
        newCommandHandlerWithReplyBuilder().forState(s -> s.status() == SessionStatus.NEW);
    fresh
        .onCommand(Create.class, this::onCreate)
        .onCommand(Get.class, (s, c) -> refuse(c.replyTo(), notFound()))
        .onCommand(GetTranscript.class, (s, c) -> refuse(c.replyTo(), notFound()))
        .onCommand(AddMessage.class, (s, c) -> refuse(c.replyTo(), notFound()))
        .onCommand(Cancel.class, (s, c) -> refuse(c.replyTo(), notFound()))
        .onCommand(Follow.class, (s, c) -> refuse(c.replyTo(), notFound()))
        .onCommand(GetPosition.class, (s, c) -> refuse(c.replyTo(), notFound()))
        .onCommand(AwaitSettled.class, (s, c) -> refuse(c.replyTo(), notFound()))
        .onCommand(Decide.class, (s, c) -> refuse(c.replyTo(), notFound()))
        .onCommand(DeliverEvent.class, (s, c) -> refuse(c.replyTo(), notFound()));
    return fresh;
  }

  /** The turn loop: model answers, tool results, decisions, events, subagents, budget. */
  private CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState>
      running() {
    CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState> running =
        newCommandHandlerWithReplyBuilder().forState(s -> s.status() == SessionStatus.RUNNING);
    running
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
        .onCommand(CheckChildren.class, this::onCheckChildren)
        .onCommand(Wake.class, this::onWake);
    return running;
  }

  /** Waiting for a message (keepOpen): it takes messages, events and a new budget. */
  private CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState>
      waiting() {
    CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState> waiting =
        newCommandHandlerWithReplyBuilder().forState(s -> s.status() == SessionStatus.WAITING);
    waiting
        .onCommand(AddMessage.class, this::onMessage)
        .onCommand(Cancel.class, this::onCancel)
        .onCommand(DeliverEvent.class, this::onEvent)
        .onCommand(RaiseBudget.class, this::onRaiseBudget);
    return waiting;
  }

  /** Completed, failed or cancelled: what would change it is refused. */
  private CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState>
      finished() {
    CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState> finished =
        newCommandHandlerWithReplyBuilder().forState(s -> s.status().finished());
    finished
        .onCommand(AddMessage.class, (s, c) -> refuse(c.replyTo(), finishedError(s)))
        .onCommand(Cancel.class, (s, c) -> refuse(c.replyTo(), finishedError(s)))
        .onCommand(DeliverEvent.class, (s, c) -> refuse(c.replyTo(), finishedError(s)));
    return finished;
  }

  /**
   * In every state: reads, followers, the sandbox child, stopping; and what came too late for the
   * state it found (a model answer for a cancelled session...) is dropped or refused.
   */
  private CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState>
      anyState() {
    CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState> any =
        newCommandHandlerWithReplyBuilder().forAnyState();
    any.onCommand(Create.class, (s, c) -> answer(c.replyTo(), services.summary(s)))
        .onCommand(Get.class, (s, c) -> answer(c.replyTo(), services.summary(s)))
        .onCommand(GetTranscript.class, (s, c) -> answer(c.replyTo(), s.transcript()))
        .onCommand(GetPosition.class, this::onGetPosition)
        .onCommand(Follow.class, this::onFollow)
        .onCommand(FollowerGone.class, this::onFollowerGone)
        .onCommand(DeltaArrived.class, this::onDelta)
        .onCommand(AwaitSettled.class, this::onAwaitSettled)
        .onCommand(WaitDue.class, this::onWaitDue)
        .onCommand(IdleTimeout.class, this::onIdleTimeout)
        .onCommand(SandboxReported.class, this::onSandboxReported)
        .onCommand(SandboxStopped.class, this::onSandboxStopped)
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
        .onCommand(RaiseBudget.class, (s, c) -> refuse(c.replyTo(), notRaised(s)))
        .onCommand(CheckChildren.class, this::ignore)
        .onCommand(Nothing.class, this::ignore)
        .onCommand(Wake.class, this::ignore);
    return any;
  }

  private ReplyEffect<Event, SessionState> onCreate(SessionState state, Create cmd) {
    Metrics.SESSIONS_STARTED.inc();
    orgId = cmd.org();
    return record(
            state,
            List.of(
                new SessionStarted(sessionId, cmd.org(), cmd.user(), cmd.spec(), Instant.now())),
            this::afterPersist)
        .thenReply(cmd.replyTo(), s -> StatusReply.success(services.summary(s)));
  }

  private ReplyEffect<Event, SessionState> onMessage(SessionState state, AddMessage cmd) {
    return record(
            state, List.of(new UserMessageAdded(cmd.text(), Instant.now())), this::afterPersist)
        .thenReply(cmd.replyTo(), s -> StatusReply.success(services.summary(s)));
  }

  private ReplyEffect<Event, SessionState> onCancel(SessionState state, Cancel cmd) {
    return record(
            state,
            ending(state, new SessionCancelled(Instant.now())),
            s -> {
              afterPersist(s);
              subagents.cancelChildren(s);
            })
        .thenReply(cmd.replyTo(), s -> StatusReply.success(services.summary(s)));
  }

  /**
   * The model answered: record the answer, start its tool calls, and complete those that need no
   * outside system, all in one write; then either continue the loop or stop it.
   */
  private ReplyEffect<Event, SessionState> onModelAnswered(SessionState state, ModelAnswered msg) {
    callInFlight = 0;
    if (msg.turn() != state.turns() + 1 || !state.readyForModel())
      return Effect().none().thenNoReply();
    Instant now = Instant.now();
    ModelResponse response = msg.response();
    List<Event> events = new ArrayList<>();
    events.add(
        new ModelResponded(
            msg.turn(),
            response.content(),
            response.usage(),
            response.stopReason().name().toLowerCase(),
            now));
    List<Block.ToolUse> calls = response.toolCalls();
    for (Block.ToolUse call : calls)
      events.add(new ToolCallStarted(msg.turn(), call.id(), call.name(), now));
    // Calls held for a decision or an event wait; the others run at once.
    List<Block.ToolUse> runNow = tools.hold(state, events, msg.turn(), calls, msg.orgPolicy(), now);
    if (runNow.stream().anyMatch(use -> tools.runsLater(state, use))) {
      // Record the answer and the starts now; the results follow in one more write.
      return record(
              state,
              events,
              s -> {
                services.observer().usage(s.org(), response.usage(), now);
                runLater(s, msg.turn(), runNow);
                afterPersist(s);
              })
          .thenNoReply();
    }
    events.addAll(
        tools.executeTools(state.files(), msg.turn(), runNow, now)); // holds change no file
    if (calls.isEmpty() && response.stopReason() == ModelResponse.StopReason.MAX_TOKENS) {
      events.addAll(
          ending(
              fold(state, events),
              new SessionFailed(
                  "max_tokens", "the model's answer was cut off at its output token limit", now)));
    } else {
      events.addAll(decideNext(fold(state, events), response.text(), now));
    }
    return record(
            state,
            events,
            s -> {
              services.observer().usage(s.org(), response.usage(), now);
              afterPersist(s);
            })
        .thenNoReply();
  }

  /**
   * Runs {@code calls} of {@code turn}, recorded as started, off the actor's thread; while handing
   * off, the next incarnation runs them instead (recovery).
   */
  private void runLater(SessionState state, int turn, List<Block.ToolUse> calls) {
    if (handingOff) ctx.getSelf().tell(HandOffNow.INSTANCE);
    else runTools(state, turn, calls);
  }

  /** Runs {@code calls} off the actor's thread; their completions come back as ToolsFinished. */
  private void runTools(SessionState state, int turn, List<Block.ToolUse> calls) {
    if (state.status() != SessionStatus.RUNNING) return;
    ctx.pipeToSelf(tools.run(state, turn, calls), (done, error) -> new ToolsFinished(turn, done));
  }

  /**
   * A person decided on a held call: an allowed one runs now, a denied one gets its error result.
   */
  private ReplyEffect<Event, SessionState> onDecide(SessionState state, Decide cmd) {
    Approval pending = state.holds().approval(cmd.toolUseId());
    if (pending == null) return refuse(cmd.replyTo(), HeldCalls.notPending(state, cmd.toolUseId()));
    Instant now = Instant.now();
    List<Event> events = new ArrayList<>();
    events.add(
        new ApprovalDecided(pending.turn(), pending.callId(), cmd.allow(), cmd.message(), now));
    Block.ToolUse use =
        state.lastToolUses().stream()
            .filter(u -> u.id().equals(pending.callId()))
            .findFirst()
            .orElseThrow();
    if (cmd.allow()
        && TurnTools.parsed(use).orElse(null) instanceof ToolCall.Task t
        && subagents.maySpawn(state)) {
      String child = subagents.childId(pending.callId());
      events.add(new TaskStarted(pending.turn(), pending.callId(), child, t.description(), now));
      return record(state, events, this::afterPersist)
          .thenReply(cmd.replyTo(), s -> StatusReply.success(services.summary(s)));
    }
    if (cmd.allow() && tools.runsLater(state, use)) {
      return record(
              state,
              events,
              s -> {
                runLater(s, pending.turn(), List.of(use));
                afterPersist(s);
              })
          .thenReply(cmd.replyTo(), s -> StatusReply.success(services.summary(s)));
    }
    if (cmd.allow()) {
      events.addAll(tools.executeTools(state.files(), pending.turn(), List.of(use), now));
    } else {
      events.add(HeldCalls.denied(pending, cmd.message(), now));
    }
    events.addAll(decideNext(fold(state, events), "", now));
    return record(state, events, this::afterPersist)
        .thenReply(cmd.replyTo(), s -> StatusReply.success(services.summary(s)));
  }

  /** Event {@code name} arrived: it resolves the first wait for it, or is kept for the next one. */
  private ReplyEffect<Event, SessionState> onEvent(SessionState state, DeliverEvent cmd) {
    Wait wait = state.status() == SessionStatus.RUNNING ? state.holds().waitFor(cmd.name()) : null;
    int max = services.settings().waits().maxQueuedEvents();
    if (wait == null && state.holds().inbox().size() >= max)
      return refuse(cmd.replyTo(), HeldCalls.inboxFull(max));
    Instant now = Instant.now();
    List<Event> events = new ArrayList<>();
    events.add(new EventReceived(cmd.name(), cmd.payload(), now));
    if (wait != null) {
      events.add(
          new ToolCallCompleted(wait.turn(), wait.callId(), cmd.payload(), false, null, now));
      events.addAll(decideNext(fold(state, events), "", now));
    }
    EventAccepted accepted =
        new EventAccepted(cmd.name(), wait == null ? null : wait.callId(), wait == null);
    return record(state, events, this::afterPersist)
        .thenReply(cmd.replyTo(), s -> StatusReply.success(accepted));
  }

  /** A wait's deadline came without its event: the call's result says so. */
  private ReplyEffect<Event, SessionState> onWaitTimedOut(SessionState state, WaitTimedOut msg) {
    Wait wait = state.holds().waitCall(msg.callId());
    if (wait == null) return Effect().none().thenNoReply();
    Instant now = Instant.now();
    if (wait.deadline().isAfter(now)) { // woken early (a clock ahead, or a Wake): wait on
      HeldCalls.arm(state, timers);
      return Effect().none().thenNoReply();
    }
    List<Event> events = new ArrayList<>();
    events.add(HeldCalls.timedOut(wait, now));
    events.addAll(decideNext(fold(state, events), "", now));
    return record(state, events, this::afterPersist).thenNoReply();
  }

  /**
   * Re-executes tool calls that were started but not completed before a crash (not those held for a
   * decision or an event). Session files are recomputed from the recorded state; org-file writes
   * are idempotent by (session, call id).
   */
  private ReplyEffect<Event, SessionState> onResumeOpenCalls(
      SessionState state, ResumeOpenCalls msg) {
    List<String> running = state.runningCalls();
    List<Block.ToolUse> open =
        state.lastToolUses().stream().filter(u -> running.contains(u.id())).toList();
    if (open.isEmpty()) return Effect().none().thenNoReply();
    runTools(state, state.turns(), open);
    return Effect().none().thenNoReply();
  }

  /** Records the results of a turn's tool calls that went to outside systems, in one write. */
  private ReplyEffect<Event, SessionState> onToolsFinished(SessionState state, ToolsFinished msg) {
    List<Event> events = new ArrayList<>();
    for (Event e : msg.completions()) {
      if (e instanceof ToolCallCompleted c
          && c.turn() == state.turns()
          && state.openCalls().contains(c.callId())) events.add(e);
    }
    if (events.isEmpty()) return Effect().none().thenNoReply();
    events.addAll(decideNext(fold(state, events), "", Instant.now()));
    return record(state, events, this::afterPersist).thenNoReply();
  }

  private ReplyEffect<Event, SessionState> onCheckChildren(SessionState state, CheckChildren msg) {
    subagents.forget();
    subagents.start(state);
    return Effect().none().thenNoReply();
  }

  private ReplyEffect<Event, SessionState> onWake(SessionState state, Wake msg) {
    HeldCalls.arm(state, timers);
    return Effect().none().thenNoReply();
  }

  /** Records what the sandbox child reported: a new sandbox id and/or a new state. */
  private ReplyEffect<Event, SessionState> onSandboxReported(
      SessionState state, SandboxReported msg) {
    // A finished session records nothing after its terminal event (which says its sandbox is
    // destroyed).
    if (state.status() == SessionStatus.NEW || state.status().finished())
      return Effect().none().thenNoReply();
    SandboxHandle.Report r = msg.report();
    List<Event> events = SessionSandbox.reported(state, r, Instant.now());
    if (events.isEmpty()) return Effect().none().thenNoReply();
    SandboxInfo known = state.sandbox();
    boolean newSandbox =
        r.sandboxId() != null && !r.sandboxId().equals(known == null ? null : known.id());
    // The list knows each session's current sandbox, for the sandbox sweep (SandboxSweeper).
    return record(
            state,
            events,
            s -> {
              if (newSandbox)
                services.observer().detailsChanged(services.summary(s), lastSequenceNumber(ctx));
            })
        .thenNoReply();
  }

  private ReplyEffect<Event, SessionState> onSandboxStopped(
      SessionState state, SandboxStopped msg) {
    sandbox.stopped(msg.child());
    return Effect().none().thenNoReply();
  }

  private ReplyEffect<Event, SessionState> onModelFailed(SessionState state, ModelFailed msg) {
    callInFlight = 0;
    if (msg.turn() != state.turns() + 1 || !state.readyForModel())
      return Effect().none().thenNoReply();
    return record(
            state,
            ending(state, new SessionFailed(msg.code(), msg.message(), Instant.now())),
            this::afterPersist)
        .thenNoReply();
  }

  /**
   * Passivates an idle session, but not while its sandbox still has processes: the sandbox child
   * (started for it if need be) hibernates it first, and the next idle timeout passivates. The stay
   * is bounded (SessionSandbox.holdsSession).
   */
  private ReplyEffect<Event, SessionState> onIdleTimeout(SessionState state, IdleTimeout msg) {
    if (state.busy()) return Effect().none().thenNoReply();
    if (!state.status().finished() && !followers.none()) {
      // Someone follows it: it stays (its sandbox still parks on its own timers).
      timers.startSingleTimer(IdleTimeout.INSTANCE, services.settings().passivateAfter());
    } else if (sandbox.holdsSession(state)) {
      // A finished session whose sandbox outlived it (a crash came between the two) destroys it.
      if (state.status().finished()) {
        sandbox.destroy(state);
      } else {
        sandbox.child(state);
      }
      timers.startSingleTimer(IdleTimeout.INSTANCE, services.settings().passivateAfter());
    } else {
      passivating = true;
      shard.tell(new ClusterSharding.Passivate<>(ctx.getSelf()));
    }
    return Effect().none().thenNoReply();
  }

  /** After a turn's events: stop the loop (completed / waiting / budget spent) or let it go on. */
  private List<Event> decideNext(SessionState after, String text, Instant now) {
    if (!after.readyForModel()) return List.of();
    boolean modelDone =
        after.messages().get(after.messages().size() - 1).role().equals(Message.ASSISTANT);
    if (modelDone) {
      return after.spec().keepOpen()
          ? List.of(new SessionWaiting(text, now))
          : ending(after, new SessionCompleted(text, now));
    }
    // The session's own maxTurns fails it as API.md says, unless its budget pauses instead (then
    // the check before the next model call holds it) or the limit was raised.
    if (after.budget().maxTurns() == null
        && !after.spec().ownBudget().pauses()
        && after.turns() >= after.spec().maxTurns()) {
      return ending(
          after,
          new SessionFailed(
              "max_turns",
              "the session used its budget of " + after.spec().maxTurns() + " turns",
              now));
    }
    return List.of();
  }

  /**
   * The events that end the session: {@code terminal}, after the sandbox's end if it has one, so
   * that the terminal event is the last thing the session records. The sandbox is destroyed right
   * after the write (and again, idempotently, if the session recovers finished).
   */
  /** Side effects after a write: next model call, idle timer, sessions list. */
  private void afterPersist(SessionState state) {
    long seq = lastSequenceNumber(ctx);
    if (timedTurn != 0 && timedTurn == state.turns() && state.openCalls().isEmpty()) {
      Metrics.TURN_SECONDS.observe(
          Metrics.secondsSince(turnStartNanos)); // the turn's last result is recorded
      timedTurn = 0;
    }
    SessionStatus shown = state.shown();
    if (state.status().finished()) sandbox.destroy(state);
    if (shown != SessionStatus.RUNNING) followers.release(() -> services.summary(state));
    if (state.busy()) {
      timers.cancel(IdleTimeout.INSTANCE);
      sandbox.busy();
      if (state.readyForModel() && !handingOff) callModel(state);
    } else {
      // Finished, waiting for a message, or only held calls left: it may passivate (holds wake it).
      timers.startSingleTimer(
          IdleTimeout.INSTANCE, services.settings().idleTimeout(state.status().finished()));
    }
    HeldCalls.arm(state, timers);
    subagents.start(state);
    Summary summary = null;
    if (shown != reported && state.status().finished())
      subagents.notifyParent(state, services.summary(state));
    if (shown != reported) {
      reported = shown;
      liveStatus.set(shown.wire());
      if (state.status() == SessionStatus.FAILED && state.error() != null) {
        ctx.getLog().warn("session failed: {}: {}", state.error().code(), state.error().message());
      }
      summary = services.summary(state);
      services.observer().statusChanged(summary, seq);
    }
    // The list shows what a session waits for, and wakes it when a wait is due (WaitWakeups).
    List<Object> holdsNow = HeldCalls.shown(state);
    if (!holdsNow.equals(reportedHolds)) {
      reportedHolds = holdsNow;
      if (summary == null) services.observer().detailsChanged(services.summary(state), seq);
    }
    if (handingOff && (!state.busy() || state.readyForModel()))
      ctx.getSelf().tell(HandOffNow.INSTANCE);
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

  private ReplyEffect<Event, SessionState> onGetPosition(SessionState state, GetPosition cmd) {
    return answer(cmd.replyTo(), new Position(state.status().finished(), lastSequenceNumber(ctx)));
  }

  private ReplyEffect<Event, SessionState> onFollowerGone(SessionState state, FollowerGone msg) {
    followers.gone(msg.follower());
    return Effect().none().thenNoReply();
  }

  private ReplyEffect<Event, SessionState> onFollow(SessionState state, Follow cmd) {
    followers.follow(cmd.follower());
    return Effect()
        .reply(
            cmd.replyTo(),
            StatusReply.success(new SessionFeed.Followed(lastSequenceNumber(ctx), ctx.getSelf())));
  }

  /** A piece of the model's answer in flight: live to the followers, never recorded. */
  private ReplyEffect<Event, SessionState> onDelta(SessionState state, DeltaArrived msg) {
    if (msg.turn() != callInFlight || followers.none()) return Effect().none().thenNoReply();
    SessionFeed.Live push =
        new SessionFeed.Live(
            lastSequenceNumber(ctx), SessionEventStream.delta(msg.turn(), msg.delta()));
    followers.push(push);
    return Effect().none().thenNoReply();
  }

  private ReplyEffect<Event, SessionState> onAwaitSettled(SessionState state, AwaitSettled cmd) {
    if (state.shown() != SessionStatus.RUNNING)
      return Effect().reply(cmd.replyTo(), StatusReply.success(services.summary(state)));
    followers.await(cmd.replyTo(), cmd.waitMillis());
    return Effect().noReply();
  }

  private ReplyEffect<Event, SessionState> onWaitDue(SessionState state, WaitDue msg) {
    if (followers.due(msg.waiter()))
      msg.waiter().tell(StatusReply.success(services.summary(state)));
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
    boolean stepInFlight = callInFlight == state.turns() + 1 || !state.runningCalls().isEmpty();
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

  private void callModel(SessionState state) {
    int turn = state.turns() + 1;
    if (callInFlight == turn) return;
    int cut = compaction.cut(state, turn, modelTurn.tools(state));
    if (cut > 0) {
      summarise(state, turn, cut);
      return;
    }
    callInFlight = turn;
    turnStartNanos = System.nanoTime();
    timedTurn = turn;
    ModelClient client = services.models().get(state.spec().model().provider()).orElse(null);
    if (client == null) {
      ctx.getSelf()
          .tell(
              new ModelFailed(
                  turn,
                  "model_unavailable",
                  "model provider '"
                      + state.spec().model().provider()
                      + "' is not available on this node"));
      return;
    }
    ActorRef<Command> self = ctx.getSelf();
    Consumer<ModelDelta> deltas =
        followers.none() ? null : delta -> self.tell(new DeltaArrived(turn, delta));
    ctx.pipeToSelf(
        modelTurn.call(state, turn, client, deltas),
        (answer, error) -> {
          if (error != null) return ModelTurn.failed(turn, error);
          Metrics.MODEL_CALL_SECONDS.observe(Metrics.secondsSince(turnStartNanos));
          return new ModelAnswered(turn, answer.response(), answer.orgPolicy());
        });
  }

  /**
   * Asks for a summary of {@code messages[0, cut)} before the call of {@code turn} (compaction).
   */
  private void summarise(SessionState state, int turn, int cut) {
    callInFlight = turn;
    ctx.pipeToSelf(
        compaction.summarise(state, turn, cut),
        (response, error) ->
            error == null
                ? new Summarised(turn, cut, response.text(), response.usage())
                : new SummaryFailed(turn, Secrets.redact(String.valueOf(error.getMessage()))));
  }

  /**
   * The summary is in: record the compaction (the history file with it), then make the turn's call.
   */
  private ReplyEffect<Event, SessionState> onSummarised(SessionState state, Summarised msg) {
    callInFlight = 0;
    if (msg.turn() != state.turns() + 1
        || !state.readyForModel()
        || msg.replaced() >= state.messages().size()) {
      return Effect().none().thenNoReply();
    }
    TranscriptCompacted compacted =
        compaction.compacted(state, msg.replaced(), msg.summary(), msg.usage());
    Metrics.COMPACTIONS.inc();
    return record(
            state,
            List.of(compacted),
            s -> {
              services.observer().usage(s.org(), msg.usage(), compacted.at());
              afterPersist(s);
            })
        .thenNoReply();
  }

  private ReplyEffect<Event, SessionState> onSummaryFailed(SessionState state, SummaryFailed msg) {
    callInFlight = 0;
    if (msg.turn() != state.turns() + 1 || !state.readyForModel())
      return Effect().none().thenNoReply();
    log.warn(
        "session {}: the summary for compaction failed ({}); turn {} goes on without it",
        sessionId,
        msg.reason(),
        msg.turn());
    compaction.summaryFailed(msg.turn());
    callModel(state);
    return Effect().none().thenNoReply();
  }

  /** A subagent finished: its final text (or why there is none) is the result of the task call. */
  private ReplyEffect<Event, SessionState> onChildFinished(SessionState state, ChildFinished msg) {
    Task task = state.holds().taskOf(msg.childId());
    if (task == null) return Effect().none().thenNoReply(); // reported before, or not ours
    Instant now = Instant.now();
    List<Event> events = new ArrayList<>(Subagents.finished(task, msg, now));
    events.addAll(decideNext(fold(state, events), "", now));
    return record(state, events, this::afterPersist).thenNoReply();
  }

  /** The session reached a limit of its budget before the model call of {@code turn}. */
  private ReplyEffect<Event, SessionState> onOverBudget(SessionState state, OverBudget msg) {
    callInFlight = 0;
    if (msg.turn() != state.turns() + 1 || !state.readyForModel())
      return Effect().none().thenNoReply();
    List<Event> events = BudgetChecks.exceeded(state, msg, Instant.now());
    return record(state, events, this::afterPersist).thenNoReply();
  }

  /** New limits for a session (one over its budget goes on if they are above what it used). */
  private ReplyEffect<Event, SessionState> onRaiseBudget(SessionState state, RaiseBudget cmd) {
    String refused = BudgetChecks.refused(state, cmd);
    if (refused != null) return refuse(cmd.replyTo(), refused);
    return record(
            state,
            List.of(new BudgetRaised(cmd.maxTokens(), cmd.maxTurns(), Instant.now())),
            this::afterPersist)
        .thenReply(cmd.replyTo(), s -> StatusReply.success(services.summary(s)));
  }

  private String notFound() {
    return NOT_FOUND + ": no session " + sessionId;
  }

  /** Why a budget is not raised outside a running session. */
  private String notRaised(SessionState s) {
    if (s.status() == SessionStatus.NEW) return notFound();
    return CONFLICT + ": the session is " + s.shown().wire() + "; a budget is raised while it runs";
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

  /** A message that needs nothing in this state (it came too late, or is only a wake-up). */
  private ReplyEffect<Event, SessionState> ignore(SessionState state, Command msg) {
    return Effect().none().thenNoReply();
  }

  // ---------------------------------------------------------------- events → state

  @Override
  public EventHandler<SessionState, Event> eventHandler() {
    return SessionState::apply;
  }

  private static SessionState fold(SessionState state, List<Event> events) {
    for (Event e : events) state = state.apply(e);
    return state;
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
   * send every later call to dead letters, and a stale callInFlight would never ask the model
   * again.
   */
  private void freshIncarnation() {
    sandbox.forget();
    callInFlight = 0;
    subagents.forget();
    handingOff = false;
    passivating = false;
    timedTurn = 0;
  }

  /** This incarnation stops: its waiters and followers go on with the next one. */
  private void onStopped(SessionState state) {
    liveStatus.clear();
    followers.release(() -> services.summary(state));
    followers.clear(); // they watch this incarnation and follow the next
  }

  private void onRecovered(SessionState state) {
    freshIncarnation();
    if (state.status() == SessionStatus.NEW) {
      timers.startSingleTimer(IdleTimeout.INSTANCE, services.settings().passivateAfter());
      return;
    }
    reported = state.shown();
    reportedHolds = HeldCalls.shown(state);
    orgId = state.org();
    liveStatus.set(state.shown().wire());
    Metrics.SESSION_RECOVERIES.inc();
    double recoverySeconds = Metrics.secondsSince(startedNanos);
    Metrics.SESSION_RECOVERY_SECONDS.observe(recoverySeconds);
    ctx.getLog()
        .info(
            "session {} ({}) recovered at event {} in {} ms",
            sessionId,
            state.shown().wire(),
            lastSequenceNumber(ctx),
            Math.round(recoverySeconds * 1000));
    services.observer().recovered(services.summary(state), lastSequenceNumber(ctx));
    if (state.status().finished())
      sandbox.destroy(state); // in case the node stopped before it could
    HeldCalls.arm(state, timers); // a wait that came due while the session was away times out now
    subagents.start(state); // and the subagents it waits for are asked where they stand
    subagents.notifyParent(
        state,
        services.summary(state)); // a finished subagent reports again (its parent ignores a repeat)
    subagents.cancelChildren(state); // a cancelled session's subagents are cancelled (again)
    if (!state.busy()) {
      timers.startSingleTimer(
          IdleTimeout.INSTANCE, services.settings().idleTimeout(state.status().finished()));
    } else if (!state.openCalls().isEmpty()) {
      ctx.getSelf().tell(ResumeOpenCalls.INSTANCE);
    } else {
      callModel(state);
    }
  }
}
