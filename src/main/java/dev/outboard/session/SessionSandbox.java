package dev.outboard.session;

import dev.outboard.ops.LogContext;
import dev.outboard.sandbox.SandboxHandle;
import dev.outboard.sandbox.SandboxStatus;
import dev.outboard.session.SessionEntity.Command;
import dev.outboard.session.SessionEntity.Event;
import dev.outboard.session.SessionEntity.SandboxAttached;
import dev.outboard.session.SessionEntity.SandboxChanged;
import dev.outboard.session.SessionEntity.SandboxReplaced;
import dev.outboard.session.SessionEntity.SandboxReported;
import dev.outboard.session.SessionEntity.SandboxStopped;
import dev.outboard.session.SessionState.SandboxInfo;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.ActorContext;

/**
 * The session's sandbox child ({@link SandboxHandle}): spawned on the first {@code /workspace} call
 * (or to destroy or park a recorded sandbox), what its reports record, and how long an idle session
 * stays in memory for a sandbox that still has processes. Used on the actor's thread only.
 */
final class SessionSandbox {
  /** The states in which the session's sandbox has processes (it is not gone or never was). */
  private static final Set<SandboxStatus> LIVE =
      EnumSet.of(
          SandboxStatus.ACTIVE,
          SandboxStatus.SUSPENDED,
          SandboxStatus.PROVISIONING,
          SandboxStatus.REPLACING);

  private final SessionServices services;
  private final ActorContext<Command> ctx;

  /** The sandbox child, spawned on the first /workspace call (or to destroy a recorded sandbox). */
  private ActorRef<SandboxHandle.Command> child;

  /** When this idle session first stayed for its sandbox (0: it has not), see heldWithinBound. */
  private long heldSinceNanos;

  SessionSandbox(SessionServices services, ActorContext<Command> ctx) {
    this.services = services;
    this.ctx = ctx;
  }

  /** The sandbox child; spawned on first use, knowing the sandbox the session recorded (if any). */
  ActorRef<SandboxHandle.Command> child(SessionState state) {
    if (child == null) {
      ActorRef<SandboxHandle.Report> reports =
          ctx.messageAdapter(SandboxHandle.Report.class, SandboxReported::new);
      SandboxInfo known = state.sandbox();
      child =
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
                      known == null ? null : known.state().wire(),
                      services.snapshots(),
                      state.id())));
      ctx.watchWith(child, new SandboxStopped(child));
    }
    return child;
  }

  /** The child {@code stopped} (it failed, or was destroyed): the next use starts another. */
  void stopped(ActorRef<SandboxHandle.Command> stopped) {
    if (stopped.equals(child)) child = null;
  }

  /** A finished session destroys its sandbox, if it has or had one. */
  void destroy(SessionState state) {
    boolean recorded = state.sandbox() != null && state.sandbox().id() != null;
    if (services.sandboxes() == null || (child == null && !recorded)) return;
    child(state).tell(SandboxHandle.Destroy.INSTANCE);
    child = null;
  }

  /** Forgets the child of the previous incarnation (stopped with it) and the stay for it. */
  void forget() {
    child = null;
    heldSinceNanos = 0;
  }

  /** The session is busy again: an idle stay for the sandbox starts anew. */
  void busy() {
    heldSinceNanos = 0;
  }

  /**
   * Whether an idle session stays for its sandbox (see {@link #holdsSession}): its sandbox child
   * (started for it if need be) hibernates it, or destroys the sandbox of a finished session that
   * outlived it (a crash came between the two).
   */
  boolean staysFor(SessionState state) {
    if (!holdsSession(state)) return false;
    if (state.status().finished()) {
      destroy(state);
    } else {
      child(state);
    }
    return true;
  }

  /**
   * Whether an idle session stays for its sandbox, which still has processes: for less than the
   * bound (hibernate-after plus twice passivate-after), so that a sandbox that cannot be parked,
   * say its host is unreachable, does not keep the session in memory for ever.
   */
  boolean holdsSession(SessionState state) {
    return hasProcesses(state) && heldWithinBound();
  }

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

  private boolean hasProcesses(SessionState state) {
    SandboxInfo s = state.sandbox();
    return services.hasSandboxes() && s != null && s.id() != null && LIVE.contains(s.state());
  }

  /**
   * What the child's report {@code r} records: a new sandbox id and/or a new state; nothing before
   * the session starts, or after its terminal event (which says its sandbox is destroyed).
   */
  static List<Event> reported(SessionState state, SandboxHandle.Report r, Instant now) {
    if (state.status() == SessionStatus.NEW || state.status().finished()) return List.of();
    SandboxInfo known = state.sandbox();
    String knownId = known == null ? null : known.id();
    List<Event> events = new ArrayList<>();
    if (r.sandboxId() != null && !r.sandboxId().equals(knownId)) {
      events.add(
          knownId == null
              ? new SandboxAttached(r.sandboxId(), now)
              : new SandboxReplaced(knownId, r.sandboxId(), now));
    }
    if (known == null || r.status() != known.state())
      events.add(new SandboxChanged(r.status(), now));
    return events;
  }

  /** Whether {@code events} (of {@link #reported}) record a new sandbox id. */
  static boolean newSandbox(List<Event> events) {
    return events.stream()
        .anyMatch(e -> e instanceof SandboxAttached || e instanceof SandboxReplaced);
  }

  /**
   * The events that end the session: {@code terminal}, after the sandbox's end if it has one, so
   * that the terminal event is the last thing the session records. The sandbox is destroyed right
   * after the write (and again, idempotently, if the session recovers finished).
   */
  static List<Event> ending(SessionState state, Event terminal) {
    SandboxInfo s = state.sandbox();
    if (s == null || s.id() == null || s.state() == SandboxStatus.DESTROYED)
      return List.of(terminal);
    return List.of(new SandboxChanged(SandboxStatus.DESTROYED, terminal.at()), terminal);
  }
}
