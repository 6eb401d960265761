package dev.outboard.session;

import static dev.outboard.session.SessionSandbox.ending;

import dev.outboard.session.SessionEntity.BudgetExceeded;
import dev.outboard.session.SessionEntity.Event;
import dev.outboard.session.SessionEntity.OverBudget;
import dev.outboard.session.SessionEntity.RaiseBudget;
import dev.outboard.session.SessionEntity.SessionFailed;
import dev.outboard.session.SessionState.BudgetState;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;

/**
 * A session's budget (its own and its org's, raised by RaiseBudget): whether the next model call
 * may be made, what reaching a limit records, and whether new limits are acceptable.
 */
final class BudgetChecks {

  private BudgetChecks() {}

  /**
   * Why turn {@code turn} may not call the model, under the session's and the org's budget; null if
   * it may.
   */
  static OverBudget overBudget(SessionState state, int turn, Budget orgBudget) {
    Budget budget = state.spec().ownBudget().and(orgBudget);
    BudgetState raised = state.budget();
    Long maxTokens = raised.maxTokens() != null ? raised.maxTokens() : budget.maxTokens();
    Integer maxTurns = raised.maxTurns() != null ? raised.maxTurns() : budget.maxTurns();
    long used = used(state);
    if (maxTokens != null && used >= maxTokens)
      return new OverBudget(turn, "tokens", maxTokens, used, budget.pauses());
    if (maxTurns != null && state.turns() >= maxTurns)
      return new OverBudget(turn, "turns", maxTurns, state.turns(), budget.pauses());
    return null;
  }

  /** What reaching the limit {@code msg} records: a pause, or the session's failure. */
  static List<Event> exceeded(SessionState state, OverBudget msg, Instant now) {
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
    return events;
  }

  /** Why the new limits of {@code cmd} are refused (not above what the session used); null: not. */
  static String refused(SessionState state, RaiseBudget cmd) {
    long used = used(state);
    if (cmd.maxTokens() != null && cmd.maxTokens() <= used) {
      return SessionEntity.CONFLICT
          + ": the session has used "
          + used
          + " tokens already; maxTokens must be above that";
    }
    if (cmd.maxTurns() != null && cmd.maxTurns() <= state.turns()) {
      return SessionEntity.CONFLICT
          + ": the session is at turn "
          + state.turns()
          + " already; maxTurns must be above that";
    }
    return null;
  }

  /** Why a budget is not raised outside a running session. */
  static String notRaised(SessionState s) {
    if (s.status() == SessionStatus.NEW) return SessionEntity.notFound(s.id());
    return SessionEntity.CONFLICT
        + ": the session is "
        + s.shown().wire()
        + "; a budget is raised while it runs";
  }

  private static long used(SessionState state) {
    return state.usage().inputTokens() + state.usage().outputTokens();
  }
}
