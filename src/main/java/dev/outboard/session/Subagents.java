package dev.outboard.session;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Json;
import dev.outboard.model.Block;
import dev.outboard.model.Usage;
import dev.outboard.session.Holds.Task;
import dev.outboard.session.SessionEntity.Cancel;
import dev.outboard.session.SessionEntity.ChildFinished;
import dev.outboard.session.SessionEntity.Command;
import dev.outboard.session.SessionEntity.Create;
import dev.outboard.session.SessionEntity.Event;
import dev.outboard.session.SessionEntity.TaskFinished;
import dev.outboard.session.SessionEntity.ToolCallCompleted;
import dev.outboard.session.SessionState.Child;
import dev.outboard.tools.ToolCall;
import dev.outboard.tools.ToolCatalog;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Instant;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletionStage;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;

/**
 * A session's subagents (the {@code task} tool, outboard.subagents): whether it may start them, the
 * id and spec of each, asking them to start (and again every check-interval, in case a report was
 * lost), what a finished one records in its parent, a finished one's report to its parent and a
 * cancelled session's cancelling of its own. Used on the actor's thread only.
 */
final class Subagents {

  private final SessionSettings.Subagents settings;
  private final String sessionId;
  private final ActorContext<Command> ctx;
  private final TimerScheduler<Command> timers;

  /** The subagents this incarnation asked to start (start); cleared at each check. */
  private final Set<String> askedChildren = new HashSet<>();

  Subagents(
      SessionSettings.Subagents settings,
      String sessionId,
      ActorContext<Command> ctx,
      TimerScheduler<Command> timers) {
    this.settings = settings;
    this.sessionId = sessionId;
    this.ctx = ctx;
    this.timers = timers;
  }

  /** Whether this session may start subagents: it is not at outboard.subagents.max-depth. */
  boolean maySpawn(SessionState state) {
    return state.spec().depth() < settings.maxDepth();
  }

  /**
   * The id of the subagent that answers call {@code callId}: derived, so that starting it again is
   * the same child.
   */
  String childId(String callId) {
    try {
      byte[] digest =
          MessageDigest.getInstance("SHA-256")
              .digest((sessionId + "/" + callId).getBytes(StandardCharsets.UTF_8));
      return "s_" + HexFormat.of().formatHex(digest, 0, 16);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Forgets which subagents were asked, so that the next {@link #start} asks each again. */
  void forget() {
    askedChildren.clear();
  }

  /** Every check-interval: asks each subagent this session waits for again. */
  void check(SessionState state) {
    forget();
    start(state);
  }

  /**
   * Asks each subagent this session waits for, and that this incarnation has not asked yet, to
   * start (a Create, which a child that exists already answers with where it stands); a finished
   * one's answer is its result. Then every check-interval again, in case a report was lost.
   */
  void start(SessionState state) {
    if (state.status() != SessionStatus.RUNNING || state.holds().tasks().isEmpty()) return;
    ClusterSharding sharding = ClusterSharding.get(ctx.getSystem());
    List<Block.ToolUse> uses = state.lastToolUses();
    for (Task task : state.holds().tasks()) {
      if (!askedChildren.add(task.childId())) continue;
      Block.ToolUse use =
          uses.stream().filter(u -> u.id().equals(task.callId())).findFirst().orElseThrow();
      SessionSpec spec = childSpec(state, task, use);
      CompletionStage<Summary> asked =
          sharding
              .entityRefFor(SessionEntity.ENTITY_KEY, task.childId())
              .askWithStatus(
                  r -> new Create(state.org(), state.user(), spec, r), settings.checkInterval());
      ctx.pipeToSelf(
          asked,
          (child, error) ->
              error == null && child.finished()
                  ? new ChildFinished(task.childId(), child)
                  : SessionEntity.Nothing.INSTANCE);
    }
    if (!timers.isTimerActive(SessionEntity.CheckChildren.INSTANCE)) {
      timers.startSingleTimer(SessionEntity.CheckChildren.INSTANCE, settings.checkInterval());
    }
  }

  /** The spec of the subagent that answers {@code task} (its call {@code use}). */
  private SessionSpec childSpec(SessionState state, Task task, Block.ToolUse use) {
    ToolCall.Task call = (ToolCall.Task) ToolCatalog.parse(use.name(), use.input());
    List<String> tools =
        call.tools().isEmpty()
            ? state.spec().tools()
            : call.tools().stream().filter(state.spec()::mayUse).toList();
    JsonNode metadata =
        Json.MAPPER
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
    return new SessionSpec(
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
  }

  /**
   * What the parent records when the subagent of {@code task} finished: its end, and its final text
   * (or why there is none) as the result of the task call.
   */
  static List<Event> finished(Task task, ChildFinished msg, Instant now) {
    Summary child = msg.summary();
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
    return List.of(
        new TaskFinished(
            task.turn(),
            task.callId(),
            msg.childId(),
            child.status(),
            new Usage(u.inputTokens(), u.outputTokens(), u.cacheReadTokens(), u.cacheWriteTokens()),
            now),
        new ToolCallCompleted(
            task.turn(), task.callId(), content, !child.status().equals("completed"), null, now));
  }

  /**
   * The session recovered in {@code state} (shown as {@code summary}): the subagents it waits for
   * are asked where they stand, a finished subagent reports again (its parent ignores a repeat), a
   * cancelled session's subagents are cancelled (again).
   */
  void recovered(SessionState state, Supplier<Summary> summary) {
    start(state);
    notifyParent(state, summary);
    cancelChildren(state);
  }

  /**
   * A finished subagent tells its parent that it ended as {@code summary} (again on each recovery:
   * the parent ignores a repeat).
   */
  void notifyParent(SessionState state, Supplier<Summary> summary) {
    String parent = state.spec() == null ? null : state.spec().parent();
    if (parent == null || !state.status().finished()) return;
    ClusterSharding.get(ctx.getSystem())
        .entityRefFor(SessionEntity.ENTITY_KEY, parent)
        .tell(new ChildFinished(sessionId, summary.get()));
  }

  /**
   * A cancelled session cancels the subagents it started that may still run (each cancels its own).
   */
  void cancelChildren(SessionState state) {
    if (state.status() != SessionStatus.CANCELLED) return;
    for (Child c : state.children()) {
      if (c.status().equals("running")) {
        ClusterSharding.get(ctx.getSystem())
            .entityRefFor(SessionEntity.ENTITY_KEY, c.sessionId())
            .tell(new Cancel(ctx.getSystem().ignoreRef()));
      }
    }
  }
}
