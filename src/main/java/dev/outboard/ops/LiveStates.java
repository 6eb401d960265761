package dev.outboard.ops;

import dev.outboard.sandbox.SandboxStatus;
import io.prometheus.metrics.core.metrics.Gauge;
import java.util.Objects;
import java.util.Set;

/**
 * A gauge by state of the actors live on this node (sessions by status, sandboxes by state), kept
 * exact in memory: an actor takes a {@link Member}, sets it whenever its state changes and clears
 * it when it stops. No scrape-time query, no write beyond an atomic add.
 */
public final class LiveStates {
  private final Gauge gauge;
  private final Set<String> counted;

  /** Only states in {@code counted} are counted (others, e.g. "none", count as absent). */
  public LiveStates(Gauge gauge, Set<String> counted) {
    this.gauge = gauge;
    this.counted = counted;
  }

  public static final LiveStates SESSIONS =
      new LiveStates(
          Metrics.SESSIONS,
          Set.of("running", "requires_action", "waiting", "completed", "failed", "cancelled"));

  public static final LiveStates SANDBOXES =
      new LiveStates(Metrics.SANDBOXES, SandboxStatus.liveWireForms());

  public Member member() {
    return new Member();
  }

  /** One actor's place in the gauge; used from that actor only. */
  public final class Member {
    private String state;

    private Member() {}

    /**
     * Counts the actor under {@code next} (null or an uncounted state: not at all) instead of its
     * last state.
     */
    public void set(String next) {
      String now = next != null && counted.contains(next) ? next : null;
      if (Objects.equals(state, now)) return;
      if (state != null) gauge.labelValues(state).dec();
      if (now != null) gauge.labelValues(now).inc();
      state = now;
    }

    /** The actor stopped. */
    public void clear() {
      set(null);
    }
  }
}
