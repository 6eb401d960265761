package dev.outboard.session;

import dev.outboard.JsonSerializable;
import dev.outboard.memory.OrgFiles;
import dev.outboard.model.Block;
import dev.outboard.model.Message;
import dev.outboard.model.ModelCallException;
import dev.outboard.model.ModelClient;
import dev.outboard.model.ModelClients;
import dev.outboard.model.ModelDelta;
import dev.outboard.model.ModelRequest;
import dev.outboard.model.ModelResponse;
import dev.outboard.model.Secrets;
import dev.outboard.model.Usage;
import dev.outboard.ops.LiveStates;
import dev.outboard.ops.LogContext;
import dev.outboard.ops.Metrics;
import dev.outboard.sandbox.SandboxHandle;
import dev.outboard.sandbox.SandboxProvider;
import dev.outboard.sandbox.SandboxSettings;
import dev.outboard.sandbox.SnapshotStore;
import dev.outboard.session.Holds.Approval;
import dev.outboard.session.Holds.Inbound;
import dev.outboard.session.Holds.Task;
import dev.outboard.session.Holds.Wait;
import dev.outboard.session.SessionState.BudgetState;
import dev.outboard.session.SessionState.Child;
import dev.outboard.session.SessionState.SandboxInfo;
import dev.outboard.store.OrgPolicies;
import dev.outboard.tools.ApprovalPolicy;
import dev.outboard.tools.ToolCall;
import dev.outboard.tools.ToolCatalog;
import dev.outboard.vfs.FileTree;
import dev.outboard.vfs.Namespace;
import dev.outboard.vfs.PathRouter;
import dev.outboard.vfs.TextFiles;
import dev.outboard.vfs.VirtualPath;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.SupervisorStrategy;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
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

  private record ModelFailed(int turn, String code, String message) implements Command {}

  /** A piece of the answer of turn {@code turn}'s model call, while it streams. */
  private record DeltaArrived(int turn, ModelDelta delta) implements Command {}

  private record FollowerGone(ActorRef<SessionFeed.Message> follower) implements Command {}

  private record WaitDue(ActorRef<StatusReply<Summary>> waiter) implements Command {}

  /** The deadline of the wait tool call {@code callId} has come. */
  private record WaitTimedOut(String callId) implements Command {}

  private enum IdleTimeout implements Command {
    INSTANCE
  }

  /**
   * Subagent {@code childId} finished: sent by the child through sharding when it does, again each
   * time it recovers finished, and asked for by its parent ({@link CheckChildren}).
   */
  public record ChildFinished(String childId, Summary summary) implements Command {}

  /** Ask every subagent still worked on where it stands (every subagents.check-interval). */
  private enum CheckChildren implements Command {
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
  private record OverBudget(int turn, String kind, long limit, long used, boolean pause)
      implements Command {}

  /** How an over-budget turn leaves the chain of its model call. */
  private static final class BudgetReached extends RuntimeException {
    private final transient OverBudget over;

    BudgetReached(OverBudget over) {
      super("over budget", null, false, false);
      this.over = over;
    }

    OverBudget over() {
      return over;
    }
  }

  /**
   * The summary of {@code messages[0, replaced)} for the call of turn {@code turn} came back
   * (compaction).
   */
  private record Summarised(int turn, int replaced, String summary, Usage usage)
      implements Command {}

  /** The summary call of turn {@code turn} failed: the turn goes on uncompacted. */
  private record SummaryFailed(int turn, String reason) implements Command {}

  /** Nothing to do (the answer of an ask that needs no action). */
  private enum Nothing implements Command {
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
  private record SandboxReported(SandboxHandle.Report report) implements Command {}

  /** The sandbox child stopped (it failed, or was destroyed). */
  private record SandboxStopped(ActorRef<SandboxHandle.Command> child) implements Command {}

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
  public record SandboxChanged(String state, Instant at) implements Event {}

  // ---------------------------------------------------------------- wiring

  /**
   * What a session needs from its node; {@code orgFiles} is null where no org store is mounted,
   * {@code policies} where orgs have no approval policies (only the session's own apply).
   */
  public record Services(
      ModelClients models,
      PathRouter router,
      SessionObserver observer,
      SessionSettings settings,
      OrgFiles orgFiles,
      SandboxProvider sandboxes,
      SandboxSettings sandboxSettings,
      SnapshotStore snapshots,
      OrgPolicies policies) {
    public Services(
        ModelClients models,
        PathRouter router,
        SessionObserver observer,
        SessionSettings settings,
        OrgFiles orgFiles,
        SandboxProvider sandboxes,
        SandboxSettings sandboxSettings,
        SnapshotStore snapshots) {
      this(
          models,
          router,
          observer,
          settings,
          orgFiles,
          sandboxes,
          sandboxSettings,
          snapshots,
          null);
    }

    public Services(
        ModelClients models,
        PathRouter router,
        SessionObserver observer,
        SessionSettings settings) {
      this(models, router, observer, settings, null);
    }

    public Services(
        ModelClients models,
        PathRouter router,
        SessionObserver observer,
        SessionSettings settings,
        OrgFiles orgFiles) {
      this(models, router, observer, settings, orgFiles, null, null);
    }

    public Services(
        ModelClients models,
        PathRouter router,
        SessionObserver observer,
        SessionSettings settings,
        OrgFiles orgFiles,
        SandboxProvider sandboxes,
        SandboxSettings sandboxSettings) {
      this(models, router, observer, settings, orgFiles, sandboxes, sandboxSettings, null);
    }

    /** True when {@code /workspace} and {@code bash} have a sandbox behind them. */
    public boolean hasSandboxes() {
      return sandboxes != null && router.isMounted(Namespace.WORKSPACE);
    }
  }

  public static void init(ActorSystem<?> system, Services services) {
    ClusterSharding.get(system)
        .init(
            Entity.of(ENTITY_KEY, ctx -> create(ctx.getEntityId(), ctx.getShard(), services))
                .withStopMessage(Stop.INSTANCE));
  }

  public static Behavior<Command> create(
      String sessionId, ActorRef<ClusterSharding.ShardCommand> shard, Services services) {
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
  private final Services services;
  private final ActorContext<Command> ctx;
  private final TimerScheduler<Command> timers;

  /**
   * For asks made off the actor's thread (the tool chain), where the context must not be touched.
   */
  private final org.apache.pekko.actor.typed.Scheduler scheduler;

  /** Where grep and glob over the session's own files run (searchesOwnFiles). */
  private final java.util.concurrent.Executor searches;

  /**
   * The turn whose model call is in flight, so that it is never asked twice by this incarnation.
   */
  private int callInFlight;

  private long turnStartNanos;

  /**
   * The status this incarnation last reported to the observer, and the holds it showed
   * (holdsShown).
   */
  private SessionStatus reported;

  private List<Object> reportedHolds = List.of();

  /** The subagents this incarnation asked to start (startChildren); cleared at each check. */
  private final Set<String> askedChildren = new HashSet<>();

  /** The sandbox child, spawned on the first /workspace call (or to destroy a recorded sandbox). */
  private ActorRef<SandboxHandle.Command> sandbox;

  /** When this idle session first stayed for its sandbox (0: it has not), see onIdleTimeout. */
  private long heldSinceNanos;

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

  /** The open event streams that follow this session (SessionFollower), on any node. */
  private final Set<ActorRef<SessionFeed.Message>> followers = new HashSet<>();

  /** Callers waiting for the session to leave running (AwaitSettled). */
  private final List<ActorRef<StatusReply<Summary>>> waiters = new ArrayList<>();

  /** When this incarnation started, for the recovery time. */
  private final long startedNanos;

  private SessionEntity(
      String sessionId,
      ActorRef<ClusterSharding.ShardCommand> shard,
      Services services,
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
    this.scheduler = ctx.getSystem().scheduler();
    this.searches =
        ctx.getSystem().dispatchers().lookup(DispatcherSelector.fromConfig(SEARCH_DISPATCHER));
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
    CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState> fresh =
        newCommandHandlerWithReplyBuilder().forState(s -> s.status() == SessionStatus.NEW);
    fresh
        .onCommand(Create.class, this::onCreate)
        .onCommand(Get.class, (s, c) -> Effect().reply(c.replyTo(), StatusReply.error(notFound())))
        .onCommand(
            GetTranscript.class,
            (s, c) -> Effect().reply(c.replyTo(), StatusReply.error(notFound())))
        .onCommand(
            AddMessage.class, (s, c) -> Effect().reply(c.replyTo(), StatusReply.error(notFound())))
        .onCommand(
            Cancel.class, (s, c) -> Effect().reply(c.replyTo(), StatusReply.error(notFound())))
        .onCommand(
            Follow.class, (s, c) -> Effect().reply(c.replyTo(), StatusReply.error(notFound())))
        .onCommand(
            GetPosition.class, (s, c) -> Effect().reply(c.replyTo(), StatusReply.error(notFound())))
        .onCommand(
            AwaitSettled.class,
            (s, c) -> Effect().reply(c.replyTo(), StatusReply.error(notFound())))
        .onCommand(
            Decide.class, (s, c) -> Effect().reply(c.replyTo(), StatusReply.error(notFound())))
        .onCommand(
            DeliverEvent.class,
            (s, c) -> Effect().reply(c.replyTo(), StatusReply.error(notFound())));

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
        .onCommand(
            CheckChildren.class,
            (s, c) -> {
              askedChildren.clear();
              startChildren(s);
              return Effect().none().thenNoReply();
            })
        .onCommand(
            Wake.class,
            (s, c) -> {
              armWaits(s);
              return Effect().none().thenNoReply();
            });

    CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState> waiting =
        newCommandHandlerWithReplyBuilder().forState(s -> s.status() == SessionStatus.WAITING);
    waiting
        .onCommand(AddMessage.class, this::onMessage)
        .onCommand(Cancel.class, this::onCancel)
        .onCommand(DeliverEvent.class, this::onEvent)
        .onCommand(RaiseBudget.class, this::onRaiseBudget);

    CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState> finished =
        newCommandHandlerWithReplyBuilder().forState(s -> s.status().finished());
    finished
        .onCommand(
            AddMessage.class,
            (s, c) -> Effect().reply(c.replyTo(), StatusReply.error(finishedError(s))))
        .onCommand(
            Cancel.class,
            (s, c) -> Effect().reply(c.replyTo(), StatusReply.error(finishedError(s))))
        .onCommand(
            DeliverEvent.class,
            (s, c) -> Effect().reply(c.replyTo(), StatusReply.error(finishedError(s))));

    CommandHandlerWithReplyBuilderByState<Command, Event, SessionState, SessionState> any =
        newCommandHandlerWithReplyBuilder().forAnyState();
    any.onCommand(
            Create.class, (s, c) -> Effect().reply(c.replyTo(), StatusReply.success(summary(s))))
        .onCommand(
            Get.class, (s, c) -> Effect().reply(c.replyTo(), StatusReply.success(summary(s))))
        .onCommand(
            GetTranscript.class,
            (s, c) -> Effect().reply(c.replyTo(), StatusReply.success(s.transcript())))
        .onCommand(
            GetPosition.class,
            (s, c) ->
                Effect()
                    .reply(
                        c.replyTo(),
                        StatusReply.success(
                            new Position(s.status().finished(), lastSequenceNumber(ctx)))))
        .onCommand(Follow.class, this::onFollow)
        .onCommand(
            FollowerGone.class,
            (s, c) -> {
              followers.remove(c.follower());
              return Effect().none().thenNoReply();
            })
        .onCommand(DeltaArrived.class, this::onDelta)
        .onCommand(AwaitSettled.class, this::onAwaitSettled)
        .onCommand(
            WaitDue.class,
            (s, c) -> {
              if (waiters.remove(c.waiter())) c.waiter().tell(StatusReply.success(summary(s)));
              return Effect().none().thenNoReply();
            })
        .onCommand(IdleTimeout.class, this::onIdleTimeout)
        .onCommand(SandboxReported.class, this::onSandboxReported)
        .onCommand(
            SandboxStopped.class,
            (s, c) -> {
              if (c.child().equals(sandbox)) sandbox = null; // the next use starts another
              return Effect().none().thenNoReply();
            })
        .onCommand(Stop.class, this::onStop)
        .onCommand(HandOffNow.class, (s, c) -> Effect().stop().thenNoReply())
        // A model answer or failure for a session that is no longer running (cancelled) is dropped.
        .onCommand(ModelAnswered.class, (s, c) -> Effect().none().thenNoReply())
        .onCommand(ModelFailed.class, (s, c) -> Effect().none().thenNoReply())
        .onCommand(ResumeOpenCalls.class, (s, c) -> Effect().none().thenNoReply())
        .onCommand(ToolsFinished.class, (s, c) -> Effect().none().thenNoReply())
        // Decisions outside a running turn: on a call that waits for none (409) or no such call
        // (404).
        .onCommand(
            Decide.class,
            (s, c) -> Effect().reply(c.replyTo(), StatusReply.error(notPending(s, c.toolUseId()))))
        .onCommand(WaitTimedOut.class, (s, c) -> Effect().none().thenNoReply())
        .onCommand(ChildFinished.class, (s, c) -> Effect().none().thenNoReply())
        .onCommand(OverBudget.class, (s, c) -> Effect().none().thenNoReply())
        .onCommand(Summarised.class, (s, c) -> Effect().none().thenNoReply())
        .onCommand(SummaryFailed.class, (s, c) -> Effect().none().thenNoReply())
        .onCommand(
            RaiseBudget.class,
            (s, c) ->
                Effect()
                    .reply(
                        c.replyTo(),
                        StatusReply.error(
                            s.status() == SessionStatus.NEW ? notFound() : finishedOrWaiting(s))))
        .onCommand(CheckChildren.class, (s, c) -> Effect().none().thenNoReply())
        .onCommand(Nothing.class, (s, c) -> Effect().none().thenNoReply())
        .onCommand(Wake.class, (s, c) -> Effect().none().thenNoReply());

    return fresh.orElse(running).orElse(waiting).orElse(finished).orElse(any).build();
  }

  private ReplyEffect<Event, SessionState> onCreate(SessionState state, Create cmd) {
    Metrics.SESSIONS_STARTED.inc();
    orgId = cmd.org();
    return record(
            state,
            List.of(
                new SessionStarted(sessionId, cmd.org(), cmd.user(), cmd.spec(), Instant.now())),
            this::afterPersist)
        .thenReply(cmd.replyTo(), s -> StatusReply.success(summary(s)));
  }

  private ReplyEffect<Event, SessionState> onMessage(SessionState state, AddMessage cmd) {
    return record(
            state, List.of(new UserMessageAdded(cmd.text(), Instant.now())), this::afterPersist)
        .thenReply(cmd.replyTo(), s -> StatusReply.success(summary(s)));
  }

  private ReplyEffect<Event, SessionState> onCancel(SessionState state, Cancel cmd) {
    return record(
            state,
            ending(state, new SessionCancelled(Instant.now())),
            s -> {
              afterPersist(s);
              cancelChildren(s);
            })
        .thenReply(cmd.replyTo(), s -> StatusReply.success(summary(s)));
  }

  /**
   * A cancelled session cancels the subagents it started that may still run (each cancels its own).
   */
  private void cancelChildren(SessionState state) {
    if (state.status() != SessionStatus.CANCELLED) return;
    for (Child c : state.children()) {
      if (c.status().equals("running")) {
        ClusterSharding.get(ctx.getSystem())
            .entityRefFor(ENTITY_KEY, c.sessionId())
            .tell(new Cancel(ctx.getSystem().ignoreRef()));
      }
    }
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
    List<Block.ToolUse> runNow = hold(state, events, msg.turn(), calls, msg.orgPolicy(), now);
    if (runNow.stream().anyMatch(use -> needsOutsideSystem(state, use) || searchesOwnFiles(use))) {
      // Record the answer and the starts now; the results follow in one more write.
      return record(
              state,
              events,
              s -> {
                services.observer().usage(s.org(), response.usage(), now);
                if (handingOff)
                  ctx.getSelf()
                      .tell(HandOffNow.INSTANCE); // the next incarnation runs them (recovery)
                else runTools(s, msg.turn(), runNow);
                afterPersist(s);
              })
          .thenNoReply();
    }
    events.addAll(executeTools(state.files(), msg.turn(), runNow, now)); // holds change no file
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
   * Adds to {@code events} the holds of this turn's {@code calls}: a {@code wait} starts (and takes
   * a kept event at once), a call the policy names waits for approval. Returns the calls to run
   * now. An unreadable org policy ({@code orgPolicy} null) holds every call: approvals fail closed.
   */
  private List<Block.ToolUse> hold(
      SessionState state,
      List<Event> events,
      int turn,
      List<Block.ToolUse> calls,
      ApprovalPolicy orgPolicy,
      Instant now) {
    ApprovalPolicy policy =
        ApprovalPolicy.of(state.spec().approvals())
            .and(orgPolicy == null ? ApprovalPolicy.of(List.of("all")) : orgPolicy);
    int maxTimeout =
        (int) Math.min(Integer.MAX_VALUE, services.settings().waits().maxTimeout().toSeconds());
    // The kept events as the turn's waits take them (in the order WaitStarted's event handler
    // does).
    List<Inbound> inbox =
        state.holds().inbox().isEmpty() ? List.of() : new ArrayList<>(state.holds().inbox());
    List<Block.ToolUse> runNow = new ArrayList<>();
    for (Block.ToolUse use : calls) {
      ToolCall call = parsed(use).orElse(null);
      List<Event> held = new ArrayList<>();
      if (ToolCatalog.spec(use.name()).isPresent() && !state.spec().mayUse(use.name())) {
        held.add(
            new ToolCallCompleted(
                turn,
                use.id(),
                "tool '"
                    + use.name()
                    + "' is not available to this session; it may use "
                    + String.join(", ", state.spec().tools()),
                true,
                null,
                now));
      } else if (call instanceof ToolCall.Wait w && w.timeoutSeconds() <= maxTimeout) {
        held.add(
            new WaitStarted(
                turn,
                use.id(),
                w.event(),
                w.timeoutSeconds(),
                now.plusSeconds(w.timeoutSeconds()),
                now));
        Inbound kept =
            inbox.stream().filter(i -> i.name().equals(w.event())).findFirst().orElse(null);
        if (kept != null) {
          inbox.remove(kept);
          held.add(new ToolCallCompleted(turn, use.id(), kept.payload(), false, null, now));
        }
      } else if (call != null && policy.requires(use.name(), call)) {
        held.add(new ApprovalRequested(turn, use.id(), use.name(), now));
      } else if (call instanceof ToolCall.Task t && maySpawn(state)) {
        held.add(new TaskStarted(turn, use.id(), childId(use.id()), t.description(), now));
      } else {
        runNow.add(use);
        continue;
      }
      events.addAll(held);
    }
    return runNow;
  }

  /**
   * A person decided on a held call: an allowed one runs now, a denied one gets its error result.
   */
  private ReplyEffect<Event, SessionState> onDecide(SessionState state, Decide cmd) {
    Approval pending = state.holds().approval(cmd.toolUseId());
    if (pending == null)
      return Effect().reply(cmd.replyTo(), StatusReply.error(notPending(state, cmd.toolUseId())));
    Instant now = Instant.now();
    List<Event> events = new ArrayList<>();
    events.add(
        new ApprovalDecided(pending.turn(), pending.callId(), cmd.allow(), cmd.message(), now));
    Block.ToolUse use =
        state.lastToolUses().stream()
            .filter(u -> u.id().equals(pending.callId()))
            .findFirst()
            .orElseThrow();
    if (cmd.allow() && parsed(use).orElse(null) instanceof ToolCall.Task t && maySpawn(state)) {
      events.add(
          new TaskStarted(
              pending.turn(), pending.callId(), childId(pending.callId()), t.description(), now));
      return record(state, events, this::afterPersist)
          .thenReply(cmd.replyTo(), s -> StatusReply.success(summary(s)));
    }
    if (cmd.allow() && (needsOutsideSystem(state, use) || searchesOwnFiles(use))) {
      return record(
              state,
              events,
              s -> {
                if (handingOff)
                  ctx.getSelf()
                      .tell(HandOffNow.INSTANCE); // the next incarnation runs it (recovery)
                else runTools(s, pending.turn(), List.of(use));
                afterPersist(s);
              })
          .thenReply(cmd.replyTo(), s -> StatusReply.success(summary(s)));
    }
    if (cmd.allow()) {
      events.addAll(executeTools(state.files(), pending.turn(), List.of(use), now));
    } else {
      String why = cmd.message() == null || cmd.message().isBlank() ? "" : ": " + cmd.message();
      events.add(
          new ToolCallCompleted(
              pending.turn(),
              pending.callId(),
              "the call was denied by the person who reviews this session's tool calls" + why,
              true,
              null,
              now));
    }
    events.addAll(decideNext(fold(state, events), "", now));
    return record(state, events, this::afterPersist)
        .thenReply(cmd.replyTo(), s -> StatusReply.success(summary(s)));
  }

  /**
   * Why {@code toolUseId} cannot be decided: it needs no decision now (409), or there is no such
   * call (404).
   */
  private String notPending(SessionState state, String toolUseId) {
    boolean known =
        state.messages().stream()
            .flatMap(m -> m.content().stream())
            .anyMatch(b -> b instanceof Block.ToolUse u && u.id().equals(toolUseId));
    if (!known) return NOT_FOUND + ": no tool call " + toolUseId + " in session " + sessionId;
    return CONFLICT
        + ": tool call "
        + toolUseId
        + " is not waiting for approval (it was decided already, or needed none)";
  }

  /** Event {@code name} arrived: it resolves the first wait for it, or is kept for the next one. */
  private ReplyEffect<Event, SessionState> onEvent(SessionState state, DeliverEvent cmd) {
    Wait wait = state.status() == SessionStatus.RUNNING ? state.holds().waitFor(cmd.name()) : null;
    int max = services.settings().waits().maxQueuedEvents();
    if (wait == null && state.holds().inbox().size() >= max) {
      return Effect()
          .reply(
              cmd.replyTo(),
              StatusReply.error(
                  CONFLICT
                      + ": "
                      + max
                      + " events are kept for this session already and no wait takes them; send"
                      + " more once a wait has taken some"));
    }
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
      armWaits(state);
      return Effect().none().thenNoReply();
    }
    List<Event> events = new ArrayList<>();
    events.add(
        new ToolCallCompleted(
            wait.turn(),
            wait.callId(),
            "the wait timed out: no event '"
                + wait.event()
                + "' arrived within "
                + wait.timeoutSeconds()
                + " s",
            true,
            null,
            now));
    events.addAll(decideNext(fold(state, events), "", now));
    return record(state, events, this::afterPersist).thenNoReply();
  }

  /** Starts a timer for each wait that has none in this incarnation (a due one fires at once). */
  private void armWaits(SessionState state) {
    if (state.status() != SessionStatus.RUNNING) return;
    Instant now = Instant.now();
    for (Wait w : state.holds().waits()) {
      WaitTimedOut key = new WaitTimedOut(w.callId());
      if (timers.isTimerActive(key)) continue;
      long ms = Math.max(0, Duration.between(now, w.deadline()).toMillis());
      timers.startSingleTimer(key, key, Duration.ofMillis(ms));
    }
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

  /** The call, when its arguments are valid (an invalid one gets its error from executeTool). */
  private static Optional<ToolCall> parsed(Block.ToolUse use) {
    try {
      return Optional.of(ToolCatalog.parse(use.name(), use.input()));
    } catch (IllegalArgumentException e) {
      return Optional.empty();
    }
  }

  /**
   * True if {@code call} runs in the session's sandbox: {@code bash}, or a file tool on {@code
   * /workspace}.
   */
  private boolean usesSandbox(ToolCall call) {
    if (!services.hasSandboxes()) return false;
    return call instanceof ToolCall.Bash
        || (!call.path().isRoot() && call.path().top().equals(Namespace.WORKSPACE.dir()));
  }

  /**
   * True if {@code call} is a {@code glob} or {@code grep} over {@code /} that also searches the
   * session's sandbox: only one it already has (a search never provisions one).
   */
  private boolean searchesWorkspace(SessionState state, ToolCall call) {
    if (!services.hasSandboxes() || !call.path().isRoot()) return false;
    if (!(call instanceof ToolCall.Glob || call instanceof ToolCall.Grep)) return false;
    SandboxInfo s = state.sandbox();
    return s != null && s.id() != null && !s.state().equals("destroyed");
  }

  /** True if the call's result comes from outside the session's state (org files, the sandbox). */
  private boolean needsOutsideSystem(SessionState state, Block.ToolUse use) {
    ToolCall call = parsed(use).orElse(null);
    if (call == null || call instanceof ToolCall.Wait || call instanceof ToolCall.Task)
      return false;
    if (usesSandbox(call) || searchesWorkspace(state, call)) return true;
    if (services.orgFiles() == null) return false;
    PathRouter router = services.router();
    if (call.path().isRoot())
      return router.isMounted(Namespace.MEMORY) || router.isMounted(Namespace.SKILLS);
    return Namespace.ofDir(call.path().top())
        .filter(router::isMounted)
        .filter(OrgFiles::isOrgNamespace)
        .isPresent();
  }

  /**
   * True if the call is a {@code grep} or {@code glob} the session answers from its own files: CPU
   * work (a grep may run for its whole budget), so it runs on the search dispatcher, not on the
   * actor's thread, and its result comes in the write after the turn's starts.
   */
  private static boolean searchesOwnFiles(Block.ToolUse use) {
    ToolCall call = parsed(use).orElse(null);
    return call instanceof ToolCall.Grep || call instanceof ToolCall.Glob;
  }

  /**
   * Runs {@code calls} one after the other (a later call sees an earlier one's writes), off the
   * actor's thread, and sends their completions back as {@link ToolsFinished}.
   */
  private void runTools(SessionState state, int turn, List<Block.ToolUse> calls) {
    if (state.status() != SessionStatus.RUNNING) return;
    ActorRef<SandboxHandle.Command> handle =
        calls.stream()
                .map(SessionEntity::parsed)
                .flatMap(Optional::stream)
                .anyMatch(call -> usesSandbox(call) || searchesWorkspace(state, call))
            ? sandbox(state)
            : null;
    record Progress(SessionFiles files, List<Event> completions) {}
    CompletionStage<Progress> chain =
        CompletableFuture.completedFuture(new Progress(state.files(), new ArrayList<>()));
    for (Block.ToolUse use : calls) {
      chain =
          chain.thenCompose(
              p ->
                  timedTool(use, () -> executeToolAsync(state, p.files(), use, handle))
                      .thenApply(
                          outcome -> {
                            ToolCallCompleted done =
                                offloaded(
                                    new ToolCallCompleted(
                                        turn,
                                        use.id(),
                                        outcome.content(),
                                        outcome.isError(),
                                        outcome.change(),
                                        Instant.now()));
                            p.completions().add(done);
                            return new Progress(
                                done.change() == null ? p.files() : p.files().apply(done.change()),
                                p.completions());
                          }));
    }
    ctx.pipeToSelf(
        chain,
        (p, error) -> {
          if (error == null) return new ToolsFinished(turn, p.completions());
          // Not expected (each call turns its failures into an error result); answer every call
          // honestly.
          List<Event> failed = new ArrayList<>();
          for (Block.ToolUse use : calls) {
            failed.add(
                new ToolCallCompleted(
                    turn,
                    use.id(),
                    "the tool failed: " + error.getMessage(),
                    true,
                    null,
                    Instant.now()));
          }
          return new ToolsFinished(turn, failed);
        });
  }

  private CompletionStage<SessionFiles.Outcome> executeToolAsync(
      SessionState state,
      SessionFiles files,
      Block.ToolUse use,
      ActorRef<SandboxHandle.Command> handle) {
    if (!needsOutsideSystem(state, use)) {
      if (!searchesOwnFiles(use)) return CompletableFuture.completedFuture(executeTool(files, use));
      return CompletableFuture.supplyAsync(() -> executeTool(files, use), searches);
    }
    ToolCall call = ToolCatalog.parse(use.name(), use.input());
    OrgFiles orgFiles = services.orgFiles();
    int maxChars = services.settings().fileLimits().maxOutputChars();
    if (usesSandbox(call)) return inSandbox(handle, use.id(), call, maxChars);
    if (call.path().isRoot()) return searchEverything(state, files, call, handle, maxChars);
    return orgFiles
        .execute(
            new OrgFiles.Caller(state.org(), state.user(), sessionId), use.id(), call, maxChars)
        .thenApply(r -> new SessionFiles.Outcome(r.content(), r.isError(), null));
  }

  /**
   * A {@code glob} or {@code grep} over {@code /}: every namespace the session can see, its
   * sandbox's {@code /workspace} included when it has one. Thread-safe (runs inside the tool
   * chain).
   */
  private CompletionStage<SessionFiles.Outcome> searchEverything(
      SessionState state,
      SessionFiles files,
      ToolCall call,
      ActorRef<SandboxHandle.Command> handle,
      int maxChars) {
    OrgFiles orgFiles = services.orgFiles();
    PathRouter router = services.router();
    boolean org =
        orgFiles != null
            && (router.isMounted(Namespace.MEMORY) || router.isMounted(Namespace.SKILLS));
    CompletionStage<? extends Map<String, String>> orgPart =
        org
            ? orgFiles.everything(state.org())
            : CompletableFuture.completedFuture(Map.<String, String>of());
    CompletionStage<SandboxHandle.Collected> workspacePart =
        handle != null && searchesWorkspace(state, call)
            ? AskPattern.<SandboxHandle.Command, SandboxHandle.Collected>ask(
                    handle,
                    replyTo -> new SandboxHandle.Collect(call instanceof ToolCall.Grep, replyTo),
                    services.sandboxSettings().answerMargin(),
                    scheduler)
                .exceptionally(
                    e ->
                        new SandboxHandle.Collected(
                            new java.util.TreeMap<>(), "it did not answer in time"))
            : CompletableFuture.completedFuture(null);
    return orgPart.thenCombine(
        workspacePart,
        (orgFilesFound, workspace) -> {
          java.util.TreeMap<String, String> all = new java.util.TreeMap<>(orgFilesFound);
          all.putAll(files.files());
          Set<String> roots = new java.util.HashSet<>(Set.of("/session", "/memory", "/skills"));
          if (workspace != null && workspace.error() == null) {
            all.putAll(workspace.files());
            roots.add("/workspace");
          }
          FileTree tree = new FileTree(all, roots);
          try {
            String out =
                call instanceof ToolCall.Glob g
                    ? tree.glob(call.path(), g.pattern())
                    : tree.grep(
                        call.path(),
                        ((ToolCall.Grep) call).pattern(),
                        ((ToolCall.Grep) call).glob(),
                        maxChars);
            if (workspace != null && workspace.error() != null) {
              out += "\n[/workspace was not searched: " + workspace.error() + "]";
            }
            return new SessionFiles.Outcome(out, false, null);
          } catch (TextFiles.ToolFailure f) {
            return new SessionFiles.Outcome(f.getMessage(), true, null);
          }
        });
  }

  /**
   * Asks the sandbox child to run {@code call}; thread-safe (runs inside the tool chain). The child
   * starts it only within {@code call-start-timeout} and answers within {@link
   * SandboxSettings#answerWithin}; should that wait still run out, the call may be running, so the
   * result says so, and the child never starts it later.
   */
  private CompletionStage<SessionFiles.Outcome> inSandbox(
      ActorRef<SandboxHandle.Command> handle, String callId, ToolCall call, int maxChars) {
    SandboxSettings settings = services.sandboxSettings();
    Duration command =
        call instanceof ToolCall.Bash b && b.timeoutMs() != null
            ? Duration.ofMillis(b.timeoutMs())
            : settings.limits().defaultTimeout();
    Duration timeout = settings.answerWithin(command);
    long startBy = System.nanoTime() + settings.startTimeout().toNanos();
    return AskPattern.<SandboxHandle.Command, SandboxHandle.Result>ask(
            handle,
            replyTo -> new SandboxHandle.Run(callId, call, maxChars, replyTo, startBy),
            timeout,
            scheduler)
        .handle(
            (r, e) ->
                e == null
                    ? new SessionFiles.Outcome(r.content(), r.isError(), null)
                    : new SessionFiles.Outcome(
                        "interrupted: the sandbox did not answer within "
                            + timeout.toSeconds()
                            + " s; "
                            + (call instanceof ToolCall.Bash
                                ? "the command may or may not have run"
                                : "it may or may not have taken effect"),
                        true,
                        null));
  }

  /** The sandbox child; spawned on first use, knowing the sandbox the session recorded (if any). */
  private ActorRef<SandboxHandle.Command> sandbox(SessionState state) {
    if (sandbox == null) {
      ActorRef<SandboxHandle.Report> reports =
          ctx.messageAdapter(SandboxHandle.Report.class, SandboxReported::new);
      SandboxInfo known = state.sandbox();
      sandbox =
          ctx.spawnAnonymous(
              LogContext.everyMessage(
                  state.org() == null
                      ? Map.of("sessionId", state.id())
                      : Map.of("sessionId", state.id(), "org", state.org()),
                  SandboxHandle.create(
                      services.sandboxes(),
                      services.sandboxSettings(),
                      reports,
                      known == null ? null : known.id(),
                      known == null ? null : known.state(),
                      services.snapshots(),
                      state.id())));
      ctx.watchWith(sandbox, new SandboxStopped(sandbox));
    }
    return sandbox;
  }

  /** Records what the sandbox child reported: a new sandbox id and/or a new state. */
  private ReplyEffect<Event, SessionState> onSandboxReported(
      SessionState state, SandboxReported msg) {
    // A finished session records nothing after its terminal event (which says its sandbox is
    // destroyed).
    if (state.status() == SessionStatus.NEW || state.status().finished())
      return Effect().none().thenNoReply();
    SandboxHandle.Report r = msg.report();
    SandboxInfo known = state.sandbox();
    String knownId = known == null ? null : known.id();
    Instant now = Instant.now();
    List<Event> events = new ArrayList<>();
    if (r.sandboxId() != null && !r.sandboxId().equals(knownId)) {
      events.add(
          knownId == null
              ? new SandboxAttached(r.sandboxId(), now)
              : new SandboxReplaced(knownId, r.sandboxId(), now));
    }
    if (known == null || !r.state().equals(known.state()))
      events.add(new SandboxChanged(r.state(), now));
    if (events.isEmpty()) return Effect().none().thenNoReply();
    boolean newSandbox = r.sandboxId() != null && !r.sandboxId().equals(knownId);
    // The list knows each session's current sandbox, for the sandbox sweep (SandboxSweeper).
    return record(
            state,
            events,
            s -> {
              if (newSandbox)
                services.observer().detailsChanged(summary(s), lastSequenceNumber(ctx));
            })
        .thenNoReply();
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
   * is bounded (hibernate-after plus twice passivate-after): a sandbox that cannot be parked, say
   * its host is unreachable, does not keep the session in memory for ever.
   */
  private ReplyEffect<Event, SessionState> onIdleTimeout(SessionState state, IdleTimeout msg) {
    if (state.busy()) return Effect().none().thenNoReply();
    if (!state.status().finished() && !followers.isEmpty()) {
      // Someone follows it: it stays (its sandbox still parks on its own timers).
      timers.startSingleTimer(IdleTimeout.INSTANCE, services.settings().passivateAfter());
    } else if (sandboxHasProcesses(state) && heldWithinBound()) {
      // A finished session whose sandbox outlived it (a crash came between the two) destroys it.
      if (state.status().finished()) {
        destroySandbox(state);
      } else {
        sandbox(state);
      }
      timers.startSingleTimer(IdleTimeout.INSTANCE, services.settings().passivateAfter());
    } else {
      passivating = true;
      shard.tell(new ClusterSharding.Passivate<>(ctx.getSelf()));
    }
    return Effect().none().thenNoReply();
  }

  /** Whether this idle session has stayed for its sandbox for less than the bound yet. */
  private boolean heldWithinBound() {
    long now = System.nanoTime();
    if (heldSinceNanos == 0) heldSinceNanos = now;
    Duration bound =
        services
            .sandboxSettings()
            .hibernateAfter()
            .plus(services.settings().passivateAfter().multipliedBy(2));
    return now - heldSinceNanos < bound.toNanos();
  }

  private boolean sandboxHasProcesses(SessionState state) {
    SandboxInfo s = state.sandbox();
    return services.hasSandboxes()
        && s != null
        && s.id() != null
        && Set.of("active", "suspended", "provisioning", "replacing").contains(s.state());
  }

  /**
   * Runs the tool calls that the session can answer itself — {@code /session} files and every
   * refusal — against the files as they evolve through the turn, and returns their completions.
   */
  private List<Event> executeTools(
      SessionFiles files, int turn, List<Block.ToolUse> calls, Instant now) {
    List<Event> completions = new ArrayList<>();
    for (Block.ToolUse use : calls) {
      long started = System.nanoTime();
      SessionFiles.Outcome outcome = executeTool(files, use);
      ToolCallCompleted done =
          offloaded(
              new ToolCallCompleted(
                  turn, use.id(), outcome.content(), outcome.isError(), outcome.change(), now));
      if (done.change() != null) files = files.apply(done.change());
      recordToolCall(use, outcome, started);
      completions.add(done);
    }
    return completions;
  }

  /**
   * Runs a tool call that completes later, and records it with {@link #recordToolCall} when it
   * does.
   */
  private static CompletionStage<SessionFiles.Outcome> timedTool(
      Block.ToolUse use, java.util.function.Supplier<CompletionStage<SessionFiles.Outcome>> call) {
    long started = System.nanoTime();
    return call.get()
        .thenApply(
            outcome -> {
              recordToolCall(use, outcome, started);
              return outcome;
            });
  }

  /** Counts a tool call by tool and outcome and records its duration by tool. */
  private static void recordToolCall(
      Block.ToolUse use, SessionFiles.Outcome outcome, long startedNanos) {
    String tool = ToolCatalog.spec(use.name()).isPresent() ? use.name() : "unknown";
    Metrics.TOOL_CALLS.labelValues(tool, outcome.isError() ? "error" : "ok").inc();
    Metrics.TOOL_CALL_SECONDS.labelValues(tool).observe(Metrics.secondsSince(startedNanos));
  }

  private SessionFiles.Outcome executeTool(SessionFiles files, Block.ToolUse use) {
    ToolCall call;
    try {
      call = ToolCatalog.parse(use.name(), use.input());
    } catch (IllegalArgumentException e) {
      return new SessionFiles.Outcome(e.getMessage(), true, null);
    }
    PathRouter router = services.router();
    if (call instanceof ToolCall.Task) { // a task that may start is held, never executed
      return new SessionFiles.Outcome(
          "this session is a subagent at the deepest level allowed (outboard.subagents.max-depth = "
              + services.settings().subagents().maxDepth()
              + "): it cannot start subagents; do the work yourself",
          true,
          null);
    }
    if (call instanceof ToolCall.Wait w) { // a wait within the limit is held, never executed
      return new SessionFiles.Outcome(
          "invalid arguments for tool 'wait': timeoutSeconds must be at most "
              + services.settings().waits().maxTimeout().toSeconds()
              + ", got "
              + w.timeoutSeconds(),
          true,
          null);
    }
    if (call instanceof ToolCall.Bash) {
      return new SessionFiles.Outcome(
          "bash needs a sandbox (/workspace); " + router.notMounted(call.path()), true, null);
    }
    VirtualPath path = call.path();
    boolean searchAll =
        path.isRoot() && (call instanceof ToolCall.Glob || call instanceof ToolCall.Grep);
    if (!searchAll) {
      try {
        if (router.route(path) != Namespace.SESSION) {
          return new SessionFiles.Outcome(router.notMounted(path), true, null);
        }
      } catch (VirtualPath.InvalidPathException e) {
        return new SessionFiles.Outcome(e.getMessage(), true, null);
      }
    }
    return files.execute(call, services.settings().fileLimits());
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
  private static List<Event> ending(SessionState state, Event terminal) {
    SandboxInfo s = state.sandbox();
    if (s == null || s.id() == null || s.state().equals("destroyed")) return List.of(terminal);
    return List.of(new SandboxChanged("destroyed", terminal.at()), terminal);
  }

  /** Side effects after a write: next model call, idle timer, sessions list. */
  private void afterPersist(SessionState state) {
    long seq = lastSequenceNumber(ctx);
    if (timedTurn != 0 && timedTurn == state.turns() && state.openCalls().isEmpty()) {
      Metrics.TURN_SECONDS.observe(
          Metrics.secondsSince(turnStartNanos)); // the turn's last result is recorded
      timedTurn = 0;
    }
    SessionStatus shown = state.shown();
    if (state.status().finished()) destroySandbox(state);
    if (shown != SessionStatus.RUNNING) releaseWaiters(state);
    if (state.busy()) {
      timers.cancel(IdleTimeout.INSTANCE);
      heldSinceNanos = 0;
      if (state.readyForModel() && !handingOff) callModel(state);
    } else {
      // Finished, waiting for a message, or only held calls left: it may passivate (holds wake it).
      timers.startSingleTimer(
          IdleTimeout.INSTANCE, services.settings().idleTimeout(state.status().finished()));
    }
    armWaits(state);
    startChildren(state);
    Summary summary = null;
    if (shown != reported && state.status().finished()) notifyParent(state);
    if (shown != reported) {
      reported = shown;
      liveStatus.set(shown.wire());
      if (state.status() == SessionStatus.FAILED && state.error() != null) {
        ctx.getLog().warn("session failed: {}: {}", state.error().code(), state.error().message());
      }
      summary = summary(state);
      services.observer().statusChanged(summary, seq);
    }
    // The list shows what a session waits for, and wakes it when a wait is due (WaitWakeups).
    List<Object> holdsNow = holdsShown(state);
    if (!holdsNow.equals(reportedHolds)) {
      reportedHolds = holdsNow;
      if (summary == null) services.observer().detailsChanged(summary(state), seq);
    }
    if (handingOff && (!state.busy() || state.readyForModel()))
      ctx.getSelf().tell(HandOffNow.INSTANCE);
  }

  /** What the sessions list shows of the holds: the pending call ids and the earliest deadline. */
  private static List<Object> holdsShown(SessionState state) {
    if (state.status() != SessionStatus.RUNNING) return List.of();
    List<Object> shown =
        new ArrayList<>(state.holds().approvals().stream().map(Approval::callId).toList());
    state.holds().waits().stream()
        .map(Wait::deadline)
        .min(Instant::compareTo)
        .ifPresent(shown::add);
    return shown;
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
        followers.isEmpty()
            ? List.of()
            : SessionEventStream.render(lastSequenceNumber(ctx) + 1, events, before);
    return Effect()
        .persist(events)
        .thenRun(
            s -> {
              Metrics.JOURNAL_WRITE_SECONDS.observe(Metrics.secondsSince(started));
              for (SessionFeed.Recorded push : pushes) {
                for (ActorRef<SessionFeed.Message> follower : followers) follower.tell(push);
              }
              then.apply(s);
            });
  }

  private ReplyEffect<Event, SessionState> onFollow(SessionState state, Follow cmd) {
    if (followers.add(cmd.follower()))
      ctx.watchWith(cmd.follower(), new FollowerGone(cmd.follower()));
    return Effect()
        .reply(
            cmd.replyTo(),
            StatusReply.success(new SessionFeed.Followed(lastSequenceNumber(ctx), ctx.getSelf())));
  }

  /** A piece of the model's answer in flight: live to the followers, never recorded. */
  private ReplyEffect<Event, SessionState> onDelta(SessionState state, DeltaArrived msg) {
    if (msg.turn() != callInFlight || followers.isEmpty()) return Effect().none().thenNoReply();
    SessionFeed.Live push =
        new SessionFeed.Live(
            lastSequenceNumber(ctx), SessionEventStream.delta(msg.turn(), msg.delta()));
    for (ActorRef<SessionFeed.Message> follower : followers) follower.tell(push);
    return Effect().none().thenNoReply();
  }

  private ReplyEffect<Event, SessionState> onAwaitSettled(SessionState state, AwaitSettled cmd) {
    if (state.shown() != SessionStatus.RUNNING)
      return Effect().reply(cmd.replyTo(), StatusReply.success(summary(state)));
    waiters.add(cmd.replyTo());
    timers.startSingleTimer(
        new WaitDue(cmd.replyTo()),
        new WaitDue(cmd.replyTo()),
        Duration.ofMillis(Math.max(0, cmd.waitMillis())));
    return Effect().noReply();
  }

  /**
   * Answers the callers waiting for the session to leave running (it did, or this incarnation
   * stops).
   */
  private void releaseWaiters(SessionState state) {
    for (ActorRef<StatusReply<Summary>> waiter : waiters) {
      timers.cancel(new WaitDue(waiter));
      waiter.tell(StatusReply.success(summary(state)));
    }
    waiters.clear();
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

  /** A finished session destroys its sandbox, if it has or had one. */
  private void destroySandbox(SessionState state) {
    boolean recorded = state.sandbox() != null && state.sandbox().id() != null;
    if (services.sandboxes() == null || (sandbox == null && !recorded)) return;
    sandbox(state).tell(SandboxHandle.Destroy.INSTANCE);
    sandbox = null;
  }

  private void callModel(SessionState state) {
    int turn = state.turns() + 1;
    if (callInFlight == turn) return;
    int cut = compactionCut(state, turn);
    if (cut > 0) {
      summarise(state, turn, cut);
      return;
    }
    callInFlight = turn;
    turnStartNanos = System.nanoTime();
    timedTurn = turn;
    ModelClient client = services.models().get(state.spec().model().provider()).orElse(null);
    ActorRef<Command> self = ctx.getSelf();
    boolean streamed = !followers.isEmpty();
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
    record Answer(ModelResponse response, ApprovalPolicy orgPolicy) {}
    // The org's policy first (cached): a session over its budget makes no call. Its read never
    // fails (unreadable: null), so a failure below is the model call's, or the budget's.
    CompletionStage<Answer> answer =
        orgPolicy(state)
            .thenCompose(
                policy -> {
                  OverBudget over =
                      overBudget(state, turn, policy == null ? Budget.NONE : policy.budget());
                  if (over != null) return CompletableFuture.failedFuture(new BudgetReached(over));
                  return systemPrompt(state)
                      .thenCompose(
                          system -> {
                            ModelRequest request =
                                new ModelRequest(
                                    sessionId,
                                    turn,
                                    state.spec().model(),
                                    system,
                                    tools(state),
                                    state.messages());
                            try {
                              // Streaming costs the provider client a reading thread per call: only
                              // while someone follows.
                              return streamed
                                  ? client.complete(
                                      request, delta -> self.tell(new DeltaArrived(turn, delta)))
                                  : client.complete(request);
                            } catch (RuntimeException e) {
                              return CompletableFuture.<ModelResponse>failedFuture(e);
                            }
                          })
                      .thenApply(
                          response ->
                              new Answer(response, policy == null ? null : policy.approvals()));
                });
    ctx.pipeToSelf(
        answer,
        (both, error) -> {
          if (error == null) {
            Metrics.MODEL_CALL_SECONDS.observe(Metrics.secondsSince(turnStartNanos));
            return new ModelAnswered(turn, both.response(), both.orgPolicy());
          }
          Throwable cause =
              error instanceof java.util.concurrent.CompletionException && error.getCause() != null
                  ? error.getCause()
                  : error;
          if (cause instanceof BudgetReached b) return b.over();
          if (cause instanceof ModelCallException m)
            return new ModelFailed(turn, m.code(), m.getMessage());
          return new ModelFailed(
              turn, "model_error", Secrets.redact(String.valueOf(cause.getMessage())));
        });
  }

  // ------------------------------------------------------------------ compaction

  /** The user message that stands for the messages a compaction replaced. */
  static String compactedHead(TranscriptCompacted e) {
    return "[Summary of the conversation before this point ("
        + e.replaced()
        + " messages; the full text is in "
        + e.historyPath()
        + ")]\n"
        + e.summary();
  }

  /**
   * How many of the oldest messages to summarise before the call of {@code turn}: 0 when its input
   * stays within the threshold of the model's context window, or there is too little to replace.
   * The kept part starts at an answer of the model, so no tool result loses its call.
   */
  private int compactionCut(SessionState state, int turn) {
    SessionSettings.Compaction c = services.settings().compaction();
    if (turn == summaryFailedTurn) return 0;
    // The messages, the tool definitions, the session's system text and the harness's (about 2,000
    // characters).
    long chars = 2_000 + (state.spec().system() == null ? 0 : state.spec().system().length());
    for (dev.outboard.tools.ToolSpec t : tools(state))
      chars += TOOL_CHARS.getOrDefault(t.name(), 0);
    chars += transcriptChars(state.messages());
    long tokens = chars / c.charsPerToken();
    if (tokens <= c.threshold() * c.window(state.spec().model().name())) return 0;
    List<Message> messages = state.messages();
    for (int cut = messages.size() - c.keepMessages(); cut >= 2; cut--) {
      if (messages.get(cut).role().equals(Message.ASSISTANT)) return cut;
    }
    return 0;
  }

  /** The transcript that transcriptChars counted last, and its characters. */
  private List<Message> counted = List.of();

  private long countedChars;

  /**
   * The characters of {@code messages}. The transcript only grows between compactions, so when it
   * starts and goes on with the messages counted last, only the ones appended since are counted
   * (measuring it whole before every call made a long session's turns grow with its length).
   */
  private long transcriptChars(List<Message> messages) {
    int n = counted.size();
    boolean grown =
        n > 0
            && n <= messages.size()
            && messages.get(0) == counted.get(0)
            && messages.get(n - 1) == counted.get(n - 1);
    long chars = grown ? countedChars : 0;
    for (int i = grown ? n : 0; i < messages.size(); i++)
      chars += charsOf(messages.get(i).content());
    counted = messages;
    countedChars = chars;
    return chars;
  }

  /** Each tool's definition as sent: its description and input schema, in characters. */
  private static final Map<String, Integer> TOOL_CHARS =
      ToolCatalog.ALL.stream()
          .collect(
              java.util.stream.Collectors.toMap(
                  dev.outboard.tools.ToolSpec::name,
                  t ->
                      t.name().length()
                          + t.description().length()
                          + t.inputSchema().toString().length()));

  private static long charsOf(List<Block> blocks) {
    long n = 0;
    for (Block b : blocks) {
      if (b instanceof Block.Text t) n += t.text().length();
      else if (b instanceof Block.ToolResult r) n += r.content().length();
      else if (b instanceof Block.ToolUse u) n += u.name().length() + u.input().toString().length();
    }
    return n;
  }

  /** The turn whose summary call failed, so that it goes on without compaction (0: none). */
  private int summaryFailedTurn;

  /**
   * Asks the model for a summary of {@code messages[0, cut)}; the answer comes back as {@link
   * Summarised}.
   */
  private void summarise(SessionState state, int turn, int cut) {
    callInFlight = turn;
    ModelClient client = services.models().get(state.spec().model().provider()).orElse(null);
    if (client == null) {
      ctx.getSelf().tell(new SummaryFailed(turn, "no model client"));
      return;
    }
    String older = render(state.messages().subList(0, cut), Integer.MAX_VALUE);
    String system =
        "You compact the transcript of an agent session. Summarise the conversation below for the"
            + " agent that continues it: the task, what was done and found, decisions and their"
            + " reasons, open questions, files and paths that matter, and what remains to do. Be"
            + " complete but brief; answer with the summary only.";
    ModelRequest request =
        new ModelRequest(
            sessionId,
            turn,
            state.spec().model(),
            system,
            List.of(),
            List.of(Message.user(List.of(new Block.Text(older)))),
            ModelRequest.Purpose.SUMMARY);
    CompletionStage<ModelResponse> answer;
    try {
      answer = client.complete(request);
    } catch (RuntimeException e) {
      answer = CompletableFuture.failedFuture(e);
    }
    ctx.pipeToSelf(
        answer,
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
    int part =
        (int) state.files().files().keySet().stream().filter(f -> f.startsWith(HISTORY_DIR)).count()
            + 1;
    String path = String.format("%s%03d.md", HISTORY_DIR, part);
    TranscriptCompacted compacted =
        new TranscriptCompacted(
            msg.replaced(),
            msg.summary().isBlank() ? "(no summary)" : msg.summary(),
            path,
            services.settings().compaction().maxHistoryChars(),
            msg.usage(),
            Instant.now());
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
    summaryFailedTurn = msg.turn();
    callModel(state);
    return Effect().none().thenNoReply();
  }

  static final String HISTORY_DIR = "/session/history/";

  /** Messages as plain text for a summary or a history file, cut to {@code max} characters. */
  static String render(List<Message> messages, int max) {
    StringBuilder sb = new StringBuilder();
    for (Message m : messages) {
      sb.append("## ").append(m.role()).append('\n');
      for (Block b : m.content()) {
        if (b instanceof Block.Text t) sb.append(t.text()).append('\n');
        else if (b instanceof Block.ToolUse u)
          sb.append("[tool call ")
              .append(u.id())
              .append(": ")
              .append(u.name())
              .append(' ')
              .append(u.input())
              .append("]\n");
        else if (b instanceof Block.ToolResult r)
          sb.append("[result of ")
              .append(r.toolUseId())
              .append(r.isError() ? " (error)" : "")
              .append("]\n")
              .append(r.content())
              .append('\n');
      }
      sb.append('\n');
      if (sb.length() > max) {
        sb.setLength(Math.max(0, max - 200));
        sb.append(
            "\n"
                + "[cut here: the rest of this part is in GET"
                + " /v1/sessions/{id}/transcript?full=true]\n");
        break;
      }
    }
    return sb.toString();
  }

  /**
   * A tool's result longer than compaction.max-tool-result-chars is stored whole as {@code
   * /session/results/<call id>.txt}; the result the model sees is a pointer and a preview.
   */
  private ToolCallCompleted offloaded(ToolCallCompleted c) {
    int max = services.settings().compaction().maxToolResultChars();
    if (c.change() != null || c.content().length() <= max) return c;
    String path = "/session/results/" + c.callId() + ".txt";
    String preview = c.content().substring(0, Math.min(2_000, max));
    String pointer =
        "[this result is "
            + c.content().length()
            + " characters; it is stored whole in "
            + path
            + " (read it with offset and limit, or grep it); its beginning:]\n"
            + preview;
    return new ToolCallCompleted(
        c.turn(),
        c.callId(),
        pointer,
        c.isError(),
        new SessionFiles.Change(path, c.content()),
        c.at());
  }

  /**
   * The tools offered to the model: the session's subset, without {@code task} at the deepest
   * level.
   */
  private List<dev.outboard.tools.ToolSpec> tools(SessionState state) {
    if (state.spec().tools().isEmpty() && maySpawn(state)) return ToolCatalog.ALL;
    return ToolCatalog.ALL.stream()
        .filter(t -> state.spec().mayUse(t.name()) && (maySpawn(state) || !t.name().equals("task")))
        .toList();
  }

  /** Whether this session may start subagents: it is not at outboard.subagents.max-depth. */
  private boolean maySpawn(SessionState state) {
    return state.spec().depth() < services.settings().subagents().maxDepth();
  }

  /**
   * The id of the subagent that answers call {@code callId}: derived, so that starting it again is
   * the same child.
   */
  private String childId(String callId) {
    try {
      byte[] digest =
          java.security.MessageDigest.getInstance("SHA-256")
              .digest((sessionId + "/" + callId).getBytes(java.nio.charset.StandardCharsets.UTF_8));
      return "s_" + java.util.HexFormat.of().formatHex(digest, 0, 16);
    } catch (java.security.NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /**
   * Asks each subagent this session waits for, and that this incarnation has not asked yet, to
   * start (a Create, which a child that exists already answers with where it stands); a finished
   * one's answer is its result. Then every check-interval again, in case a report was lost.
   */
  private void startChildren(SessionState state) {
    if (state.status() != SessionStatus.RUNNING || state.holds().tasks().isEmpty()) return;
    ClusterSharding sharding = ClusterSharding.get(ctx.getSystem());
    List<Block.ToolUse> uses = state.lastToolUses();
    for (Task task : state.holds().tasks()) {
      if (!askedChildren.add(task.childId())) continue;
      Block.ToolUse use =
          uses.stream().filter(u -> u.id().equals(task.callId())).findFirst().orElseThrow();
      ToolCall.Task call = (ToolCall.Task) ToolCatalog.parse(use.name(), use.input());
      List<String> tools =
          call.tools().isEmpty()
              ? state.spec().tools()
              : call.tools().stream().filter(state.spec()::mayUse).toList();
      com.fasterxml.jackson.databind.JsonNode metadata =
          dev.outboard.Json.MAPPER
              .createObjectNode()
              .put("parent", sessionId)
              .put("toolUseId", task.callId())
              .put("description", call.description());
      // A child may spend what is left of its parent's token budget (its usage adds to the
      // parent's).
      Long limit =
          state.budget().maxTokens() != null
              ? state.budget().maxTokens()
              : state.spec().ownBudget().maxTokens();
      long used = state.usage().inputTokens() + state.usage().outputTokens();
      Budget budget =
          limit == null
              ? null
              : new Budget(Math.max(1, limit - used), null, state.spec().ownBudget().onExceeded());
      SessionSpec spec =
          new SessionSpec(
              call.prompt(),
              state.spec().model().forSubagent(),
              state.spec().system(),
              state.spec().maxTurns(),
              false,
              metadata,
              state.spec().approvals(),
              sessionId,
              state.spec().depth() + 1,
              tools,
              budget);
      CompletionStage<Summary> asked =
          sharding
              .entityRefFor(ENTITY_KEY, task.childId())
              .askWithStatus(
                  r -> new Create(state.org(), state.user(), spec, r),
                  services.settings().subagents().checkInterval());
      ctx.pipeToSelf(
          asked,
          (child, error) ->
              error == null && child.finished()
                  ? new ChildFinished(task.childId(), child)
                  : Nothing.INSTANCE);
    }
    if (!timers.isTimerActive(CheckChildren.INSTANCE)) {
      timers.startSingleTimer(
          CheckChildren.INSTANCE, services.settings().subagents().checkInterval());
    }
  }

  /** A subagent finished: its final text (or why there is none) is the result of the task call. */
  private ReplyEffect<Event, SessionState> onChildFinished(SessionState state, ChildFinished msg) {
    Task task = state.holds().taskOf(msg.childId());
    if (task == null) return Effect().none().thenNoReply(); // reported before, or not ours
    Summary child = msg.summary();
    Instant now = Instant.now();
    String content =
        switch (child.status()) {
          case "completed" -> child.result() == null ? "" : child.result();
          case "failed" ->
              "the subagent failed"
                  + (child.error() == null
                      ? ""
                      : ": " + child.error().code() + ": " + child.error().message());
          default -> "the subagent was " + child.status();
        };
    Summary.UsageView u = child.usage();
    List<Event> events = new ArrayList<>();
    events.add(
        new TaskFinished(
            task.turn(),
            task.callId(),
            msg.childId(),
            child.status(),
            new Usage(u.inputTokens(), u.outputTokens(), u.cacheReadTokens(), u.cacheWriteTokens()),
            now));
    events.add(
        new ToolCallCompleted(
            task.turn(), task.callId(), content, !child.status().equals("completed"), null, now));
    events.addAll(decideNext(fold(state, events), "", now));
    return record(state, events, this::afterPersist).thenNoReply();
  }

  /** A finished subagent tells its parent (again on each recovery: the parent ignores a repeat). */
  private void notifyParent(SessionState state) {
    String parent = state.spec() == null ? null : state.spec().parent();
    if (parent == null || !state.status().finished()) return;
    ClusterSharding.get(ctx.getSystem())
        .entityRefFor(ENTITY_KEY, parent)
        .tell(new ChildFinished(sessionId, summary(state)));
  }

  /**
   * The org's approval policy for the answer of the next call, read while the model thinks; null if
   * it could not be read (then every call of the answer waits for approval).
   */
  private CompletionStage<OrgPolicies.ForSessions> orgPolicy(SessionState state) {
    if (services.policies() == null) {
      return CompletableFuture.completedFuture(
          new OrgPolicies.ForSessions(ApprovalPolicy.NONE, Budget.NONE));
    }
    return services
        .policies()
        .forSessions(state.org())
        .exceptionally(
            e -> {
              log.warn(
                  "session {}: the org's policy could not be read; this turn's calls wait for"
                      + " approval, only the session's budget applies: {}",
                  sessionId,
                  e.toString());
              return null;
            });
  }

  /**
   * Why turn {@code turn} may not call the model, under the session's and the org's budget; null if
   * it may.
   */
  private static OverBudget overBudget(SessionState state, int turn, Budget orgBudget) {
    Budget budget = state.spec().ownBudget().and(orgBudget);
    BudgetState raised = state.budget();
    Long maxTokens = raised.maxTokens() != null ? raised.maxTokens() : budget.maxTokens();
    Integer maxTurns = raised.maxTurns() != null ? raised.maxTurns() : budget.maxTurns();
    long used = state.usage().inputTokens() + state.usage().outputTokens();
    if (maxTokens != null && used >= maxTokens)
      return new OverBudget(turn, "tokens", maxTokens, used, budget.pauses());
    if (maxTurns != null && state.turns() >= maxTurns)
      return new OverBudget(turn, "turns", maxTurns, state.turns(), budget.pauses());
    return null;
  }

  /** The session reached a limit of its budget before the model call of {@code turn}. */
  private ReplyEffect<Event, SessionState> onOverBudget(SessionState state, OverBudget msg) {
    callInFlight = 0;
    if (msg.turn() != state.turns() + 1 || !state.readyForModel())
      return Effect().none().thenNoReply();
    Instant now = Instant.now();
    List<Event> events = new ArrayList<>();
    events.add(
        new BudgetExceeded(
            msg.kind(), msg.limit(), msg.used(), msg.pause() ? Budget.PAUSE : Budget.FAIL, now));
    if (!msg.pause()) {
      events.addAll(
          ending(
              state,
              new SessionFailed(
                  "budget_exceeded",
                  "the session used its budget of "
                      + msg.limit()
                      + " "
                      + msg.kind()
                      + " ("
                      + msg.used()
                      + " used)",
                  now)));
    }
    return record(state, events, this::afterPersist).thenNoReply();
  }

  /** New limits for a session (one over its budget goes on if they are above what it used). */
  private ReplyEffect<Event, SessionState> onRaiseBudget(SessionState state, RaiseBudget cmd) {
    long used = state.usage().inputTokens() + state.usage().outputTokens();
    if (cmd.maxTokens() != null && cmd.maxTokens() <= used) {
      return Effect()
          .reply(
              cmd.replyTo(),
              StatusReply.error(
                  CONFLICT
                      + ": the session has used "
                      + used
                      + " tokens already; maxTokens must be above that"));
    }
    if (cmd.maxTurns() != null && cmd.maxTurns() <= state.turns()) {
      return Effect()
          .reply(
              cmd.replyTo(),
              StatusReply.error(
                  CONFLICT
                      + ": the session is at turn "
                      + state.turns()
                      + " already; maxTurns must be above that"));
    }
    return record(
            state,
            List.of(new BudgetRaised(cmd.maxTokens(), cmd.maxTurns(), Instant.now())),
            this::afterPersist)
        .thenReply(cmd.replyTo(), s -> StatusReply.success(summary(s)));
  }

  /**
   * The system prompt of the next call: the harness's, the org's skills and memory, the session's
   * own.
   */
  private CompletionStage<String> systemPrompt(SessionState state) {
    String extra = state.spec().system();
    if (services.orgFiles() == null)
      return CompletableFuture.completedFuture(SystemPrompt.build(services.router(), extra));
    return services
        .orgFiles()
        .promptSection(state.org())
        .thenApply(section -> SystemPrompt.build(services.router(), extra, section))
        .exceptionally(
            e -> {
              log.warn(
                  "session {}: no skills/memory index for this call: {}", sessionId, e.toString());
              return SystemPrompt.build(services.router(), extra);
            });
  }

  /** The state as the API shows it, with the sandbox's isolation when it has none. */
  private Summary summary(SessionState state) {
    return services.sandboxes() == null
        ? state.summary()
        : state.summary().withSandboxIsolation(services.sandboxes().isolation());
  }

  private String notFound() {
    return NOT_FOUND + ": no session " + sessionId;
  }

  private String finishedOrWaiting(SessionState s) {
    return CONFLICT + ": the session is " + s.shown().wire() + "; a budget is raised while it runs";
  }

  private static String finishedError(SessionState s) {
    return CONFLICT + ": the session is " + s.status().wire();
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
    sandbox = null;
    callInFlight = 0;
    askedChildren.clear();
    handingOff = false;
    passivating = false;
    heldSinceNanos = 0;
    timedTurn = 0;
  }

  /** This incarnation stops: its waiters and followers go on with the next one. */
  private void onStopped(SessionState state) {
    liveStatus.clear();
    releaseWaiters(state);
    followers.clear(); // they watch this incarnation and follow the next
  }

  private void onRecovered(SessionState state) {
    freshIncarnation();
    if (state.status() == SessionStatus.NEW) {
      timers.startSingleTimer(IdleTimeout.INSTANCE, services.settings().passivateAfter());
      return;
    }
    reported = state.shown();
    reportedHolds = holdsShown(state);
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
    services.observer().recovered(summary(state), lastSequenceNumber(ctx));
    if (state.status().finished())
      destroySandbox(state); // in case the node stopped before it could
    armWaits(state); // a wait that came due while the session was away times out now
    startChildren(state); // and the subagents it waits for are asked where they stand
    notifyParent(state); // a finished subagent reports again (its parent ignores a repeat)
    cancelChildren(state); // a cancelled session's subagents are cancelled (again)
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
