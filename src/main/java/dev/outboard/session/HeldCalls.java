package dev.outboard.session;

import dev.outboard.model.Block;
import dev.outboard.session.Holds.Approval;
import dev.outboard.session.Holds.Wait;
import dev.outboard.session.SessionEntity.Command;
import dev.outboard.session.SessionEntity.ToolCallCompleted;
import dev.outboard.session.SessionEntity.WaitTimedOut;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;

/**
 * The tool calls a session holds for a person's decision or an event: the results of a denial and
 * of a timed-out wait, why a decision or an event is refused, the timers of the waits' deadlines,
 * and what the sessions list shows of the holds.
 */
final class HeldCalls {

  private HeldCalls() {}

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
  static ToolCallCompleted denied(Approval pending, String message, Instant now) {
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
  static String inboxFull(int max) {
    return SessionEntity.CONFLICT
        + ": "
        + max
        + " events are kept for this session already and no wait takes them; send"
        + " more once a wait has taken some";
  }

  /** The result of {@code wait}, whose deadline came without its event. */
  static ToolCallCompleted timedOut(Wait wait, Instant now) {
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
  static void arm(SessionState state, TimerScheduler<Command> timers) {
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
