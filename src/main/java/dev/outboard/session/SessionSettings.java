package dev.outboard.session;

import com.typesafe.config.Config;
import java.time.Duration;

/** The {@code outboard.session} settings. */
public record SessionSettings(
    Duration passivateAfter,
    int defaultMaxTurns,
    int maxMaxTurns,
    int snapshotEvery,
    SessionFiles.Limits fileLimits,
    Duration handoffGrace,
    Duration passivateFinishedAfter,
    Waits waits,
    Subagents subagents) {

  /**
   * The {@code outboard.subagents} settings: how deep subagents may nest (a session at
   * {@code maxDepth} cannot start any), and how often a session waiting for subagents asks them
   * where they stand (in case a report was lost).
   */
  public record Subagents(int maxDepth, Duration checkInterval) {
    public static final Subagents DEFAULT = new Subagents(2, Duration.ofSeconds(30));
  }

  public SessionSettings(Duration passivateAfter, int defaultMaxTurns, int maxMaxTurns, int snapshotEvery,
      SessionFiles.Limits fileLimits, Duration handoffGrace, Duration passivateFinishedAfter, Waits waits) {
    this(passivateAfter, defaultMaxTurns, maxMaxTurns, snapshotEvery, fileLimits, handoffGrace, passivateFinishedAfter,
        waits, Subagents.DEFAULT);
  }

  /** The {@code outboard.waits} limits of the wait tool and of events sent to a session. */
  public record Waits(Duration maxTimeout, int maxQueuedEvents, int maxPayloadBytes) {
    public static final Waits DEFAULT = new Waits(Duration.ofDays(7), 100, 256 * 1024);
  }

  public SessionSettings(Duration passivateAfter, int defaultMaxTurns, int maxMaxTurns, int snapshotEvery,
      SessionFiles.Limits fileLimits, Duration handoffGrace, Duration passivateFinishedAfter) {
    this(passivateAfter, defaultMaxTurns, maxMaxTurns, snapshotEvery, fileLimits, handoffGrace, passivateFinishedAfter,
        Waits.DEFAULT);
  }

  /** With the default hand-off grace (5 s), and finished sessions passivating after {@code passivateAfter} too. */
  public SessionSettings(Duration passivateAfter, int defaultMaxTurns, int maxMaxTurns, int snapshotEvery,
      SessionFiles.Limits fileLimits) {
    this(passivateAfter, defaultMaxTurns, maxMaxTurns, snapshotEvery, fileLimits, Duration.ofSeconds(5), passivateAfter);
  }

  /** How long a session idles in {@code status} before it passivates. */
  public Duration idleTimeout(boolean finished) {
    return finished && passivateFinishedAfter.compareTo(passivateAfter) < 0 ? passivateFinishedAfter : passivateAfter;
  }

  public static SessionSettings from(Config config) {
    Config c = config.getConfig("outboard.session");
    return new SessionSettings(
        c.getDuration("passivate-after"),
        c.getInt("default-max-turns"),
        c.getInt("max-max-turns"),
        c.getInt("snapshot-every"),
        new SessionFiles.Limits(
            c.getBytes("max-file-bytes"),
            c.getBytes("max-total-file-bytes"),
            (int) Math.min(Integer.MAX_VALUE, c.getBytes("max-tool-output-bytes"))),
        c.getDuration("handoff-grace"),
        c.getDuration("passivate-finished-after"),
        new Waits(config.getDuration("outboard.waits.max-timeout"), config.getInt("outboard.waits.max-queued-events"),
            (int) Math.min(Integer.MAX_VALUE, config.getBytes("outboard.waits.max-payload-bytes"))),
        new Subagents(config.getInt("outboard.subagents.max-depth"), config.getDuration("outboard.subagents.check-interval")));
  }
}
