package dev.outboard.session;

import dev.outboard.ops.LiveStates;
import dev.outboard.ops.Metrics;
import dev.outboard.session.SessionEntity.Command;
import java.util.List;
import org.apache.pekko.actor.typed.javadsl.ActorContext;

/**
 * What this incarnation told the sessions list ({@link SessionObserver}) and the live-states gauge
 * about the session: its shown status and the holds the list shows (what it waits for, and when a
 * wait is due, for WaitWakeups). Used on the actor's thread only.
 */
final class SessionReports {

  private final SessionServices services;
  private final String sessionId;
  private final ActorContext<Command> ctx;
  private final LiveStates.Member liveStatus = LiveStates.SESSIONS.member();

  /** The status last reported to the observer, and the holds it showed (HeldCalls.shown). */
  private SessionStatus reported;

  private List<Object> reportedHolds = List.of();

  SessionReports(SessionServices services, String sessionId, ActorContext<Command> ctx) {
    this.services = services;
    this.sessionId = sessionId;
    this.ctx = ctx;
  }

  /**
   * The session recovered in {@code state} at event {@code seq}, this incarnation having started at
   * {@code startedNanos}: counted, timed, logged and told to the observer.
   */
  void recovered(SessionState state, long seq, long startedNanos) {
    reported = state.shown();
    reportedHolds = HeldCalls.shown(state);
    liveStatus.set(state.shown().wire());
    Metrics.SESSION_RECOVERIES.inc();
    double recoverySeconds = Metrics.secondsSince(startedNanos);
    Metrics.SESSION_RECOVERY_SECONDS.observe(recoverySeconds);
    ctx.getLog()
        .info(
            "session {} ({}) recovered at event {} in {} ms",
            sessionId,
            state.shown().wire(),
            seq,
            Math.round(recoverySeconds * 1000));
    services.observer().recovered(services.summary(state), seq);
  }

  /** Whether {@code state} shows a status not reported yet. */
  boolean statusChanges(SessionState state) {
    return state.shown() != reported;
  }

  /** After write {@code seq}: a new status, or else new holds, goes to the observer. */
  void recorded(SessionState state, long seq) {
    SessionStatus shown = state.shown();
    Summary summary = null;
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
  }

  /**
   * After write {@code seq} of the sandbox's report: the list knows each session's current sandbox
   * ({@code newSandbox}: it has a new one), for the sandbox sweep (SandboxSweeper).
   */
  void sandboxRecorded(SessionState state, boolean newSandbox, long seq) {
    if (newSandbox) services.observer().detailsChanged(services.summary(state), seq);
  }

  /** This incarnation stops: it no longer counts in the gauge. */
  void stopped() {
    liveStatus.clear();
  }
}
