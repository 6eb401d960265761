package dev.outboard.session;

import static dev.outboard.session.SessionSandbox.ending;

import dev.outboard.model.Message;
import dev.outboard.session.SessionEntity.Event;
import dev.outboard.session.SessionEntity.SessionCompleted;
import dev.outboard.session.SessionEntity.SessionFailed;
import dev.outboard.session.SessionEntity.SessionWaiting;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;

/**
 * What a session does once a step's events are recorded: it completes (or waits for a message,
 * keepOpen) when the model had the last word, fails at its own maxTurns, or goes on.
 */
final class NextStep {

  private NextStep() {}

  /** {@code events}, decided in {@code before}, and what the session does after them. */
  static List<Event> after(SessionState before, List<Event> events, String text, Instant now) {
    List<Event> all = new ArrayList<>(events);
    all.addAll(decide(fold(before, events), text, now));
    return all;
  }

  /** The state {@code events} lead to from {@code state}. */
  static SessionState fold(SessionState state, List<Event> events) {
    for (Event e : events) state = state.apply(e);
    return state;
  }

  /** After a turn's events: stop the loop (completed / waiting / budget spent) or let it go on. */
  private static List<Event> decide(SessionState after, String text, Instant now) {
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
}
