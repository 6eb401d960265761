package dev.outboard.session;

import dev.outboard.model.Block;
import dev.outboard.session.Holds.Approval;
import dev.outboard.session.Holds.Wait;
import dev.outboard.session.SessionEntity.ApprovalDecided;
import dev.outboard.session.SessionEntity.Command;
import dev.outboard.session.SessionEntity.Decide;
import dev.outboard.session.SessionEntity.Event;
import dev.outboard.session.SessionEntity.EventAccepted;
import dev.outboard.session.SessionEntity.EventReceived;
import dev.outboard.session.SessionEntity.TaskStarted;
import dev.outboard.session.SessionEntity.ToolCallCompleted;
import dev.outboard.session.SessionEntity.WaitTimedOut;
import dev.outboard.tools.ToolCall;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;

/**
 * The tool calls a session holds for a person's decision or an event: what a decision, a delivered
 * event and a wait's deadline record, why a decision or an event is refused, the timers of the
 * waits' deadlines, and what the sessions list shows of the holds. Used on the actor's thread only.
 */
final class HeldCalls {

  /** What a delivered event records and answers, or why it is refused (then nothing else). */
  record Delivery(String refused, List<Event> events, EventAccepted accepted) {}

  private final TurnTools tools;
  private final Subagents subagents;
  private final SessionSettings.Waits waits;
  private final TimerScheduler<Command> timers;

  HeldCalls(
      TurnTools tools,
      Subagents subagents,
      SessionSettings.Waits waits,
      TimerScheduler<Command> timers) {
    this.tools = tools;
    this.subagents = subagents;
    this.waits = waits;
    this.timers = timers;
  }

  /**
   * A person decided on the held call {@code pending}: an allowed one runs (a task starts its
   * subagent, a call to an outside system runs after the write), a denied one gets its error
   * result; then what comes next.
   */
  TurnTools.Step decided(SessionState state, Approval pending, Decide cmd, Instant now) {
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
      return new TurnTools.Step(events, pending.turn(), List.of());
    }
    if (cmd.allow() && tools.runsLater(state, use))
      return new TurnTools.Step(events, pending.turn(), List.of(use));
    if (cmd.allow()) {
      events.addAll(tools.executeTools(state.files(), pending.turn(), List.of(use), now));
    } else {
      events.add(denied(pending, cmd.message(), now));
    }
    return new TurnTools.Step(NextStep.after(state, events, "", now), pending.turn(), List.of());
  }

  /**
   * Event {@code name} arrived: it resolves the first wait for it (a running session's), or is kept
   * for the next one, unless the kept ones are at waits.max-queued-events.
   */
  Delivery delivered(SessionState state, String name, String payload) {
    Wait wait = state.status() == SessionStatus.RUNNING ? state.holds().waitFor(name) : null;
    int max = waits.maxQueuedEvents();
    if (wait == null && state.holds().inbox().size() >= max)
      return new Delivery(inboxFull(max), List.of(), null);
    Instant now = Instant.now();
    List<Event> events = new ArrayList<>();
    events.add(new EventReceived(name, payload, now));
    if (wait != null) {
      events.add(new ToolCallCompleted(wait.turn(), wait.callId(), payload, false, null, now));
      events = NextStep.after(state, events, "", now);
    }
    EventAccepted accepted =
        new EventAccepted(name, wait == null ? null : wait.callId(), wait == null);
    return new Delivery(null, events, accepted);
  }

  /**
   * The deadline of wait {@code callId} came without its event: its result says so, then what comes
   * next. Nothing if the wait is gone, or not due yet (woken early: its timer starts again).
   */
  List<Event> timedOut(SessionState state, String callId) {
    Wait wait = state.holds().waitCall(callId);
    if (wait == null) return List.of();
    Instant now = Instant.now();
    if (wait.deadline().isAfter(now)) { // woken early (a clock ahead, or a Wake): wait on
      arm(state);
      return List.of();
    }
    return NextStep.after(state, List.of(timedOut(wait, now)), "", now);
  }

  /**
   * Why {@code toolUseId} cannot be decided: it needs no decision now (409), or there is no such
   * call (404).
   */
  static String notPending(SessionState state, String toolUseId) {
    boolean known =
        state.messages().stream()
            .flatMap(m -> m.content().stream())
            .anyMatch(b -> b instanceof Block.ToolUse u && u.id().equals(toolUseId));
    if (!known)
      return SessionEntity.NOT_FOUND + ": no tool call " + toolUseId + " in session " + state.id();
    return SessionEntity.CONFLICT
        + ": tool call "
        + toolUseId
        + " is not waiting for approval (it was decided already, or needed none)";
  }

  /** The result of the call {@code pending} a person denied, with their {@code message}. */
  private static ToolCallCompleted denied(Approval pending, String message, Instant now) {
    String why = message == null || message.isBlank() ? "" : ": " + message;
    return new ToolCallCompleted(
        pending.turn(),
        pending.callId(),
        "the call was denied by the person who reviews this session's tool calls" + why,
        true,
        null,
        now);
  }

  /** Why an event no wait takes is refused: {@code max} are kept already. */
  private static String inboxFull(int max) {
    return SessionEntity.CONFLICT
        + ": "
        + max
        + " events are kept for this session already and no wait takes them; send"
        + " more once a wait has taken some";
  }

  /** The result of {@code wait}, whose deadline came without its event. */
  private static ToolCallCompleted timedOut(Wait wait, Instant now) {
    return new ToolCallCompleted(
        wait.turn(),
        wait.callId(),
        "the wait timed out: no event '"
            + wait.event()
            + "' arrived within "
            + wait.timeoutSeconds()
            + " s",
        true,
        null,
        now);
  }

  /** Starts a timer for each wait that has none in this incarnation (a due one fires at once). */
  void arm(SessionState state) {
    if (state.status() != SessionStatus.RUNNING) return;
    Instant now = Instant.now();
    for (Wait w : state.holds().waits()) {
      WaitTimedOut key = new WaitTimedOut(w.callId());
      if (timers.isTimerActive(key)) continue;
      long ms = Math.max(0, Duration.between(now, w.deadline()).toMillis());
      timers.startSingleTimer(key, key, Duration.ofMillis(ms));
    }
  }

  /** What the sessions list shows of the holds: the pending call ids and the earliest deadline. */
  static List<Object> shown(SessionState state) {
    if (state.status() != SessionStatus.RUNNING) return List.of();
    List<Object> shown =
        new ArrayList<>(state.holds().approvals().stream().map(Approval::callId).toList());
    state.holds().waits().stream()
        .map(Wait::deadline)
        .min(Instant::compareTo)
        .ifPresent(shown::add);
    return shown;
  }
}
