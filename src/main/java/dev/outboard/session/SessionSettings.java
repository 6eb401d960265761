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
    Subagents subagents,
    Compaction compaction) {

  /**
   * The {@code outboard.compaction} settings: a model call whose input would pass {@code threshold}
   * of its model's context window (tokens estimated as characters / {@code charsPerToken}) first
   * has the older part summarised, keeping the newest {@code keepMessages} messages verbatim; a
   * tool result longer than {@code maxToolResultChars} is stored as a {@code /session} file and the
   * prompt gets a pointer and a preview; each compacted part is kept readable as a {@code
   * /session/history} file of at most {@code maxHistoryChars}.
   */
  public record Compaction(
      double threshold,
      int keepMessages,
      long defaultContextWindow,
      java.util.Map<String, Long> contextWindows,
      int charsPerToken,
      int maxToolResultChars,
      int maxHistoryChars) {
    public static final Compaction DEFAULT =
        new Compaction(0.75, 8, 200_000, java.util.Map.of(), 4, 50_000, 512 * 1024);

    /** The context window of {@code model} (a model name; null: the provider's default model). */
    public long window(String model) {
      return model != null && contextWindows.containsKey(model)
          ? contextWindows.get(model)
          : defaultContextWindow;
    }
  }

  /**
   * The {@code outboard.subagents} settings: how deep subagents may nest (a session at {@code
   * maxDepth} cannot start any), and how often a session waiting for subagents asks them where they
   * stand (in case a report was lost).
   */
  public record Subagents(int maxDepth, Duration checkInterval) {
    public static final Subagents DEFAULT = new Subagents(2, Duration.ofSeconds(30));
  }

  /** The {@code outboard.waits} limits of the wait tool and of events sent to a session. */
  public record Waits(Duration maxTimeout, int maxQueuedEvents, int maxPayloadBytes) {
    public static final Waits DEFAULT = new Waits(Duration.ofDays(7), 100, 256 * 1024);
  }

  /** With the default waits, subagents and compaction settings. */
  public SessionSettings(
      Duration passivateAfter,
      int defaultMaxTurns,
      int maxMaxTurns,
      int snapshotEvery,
      SessionFiles.Limits fileLimits,
      Duration handoffGrace,
      Duration passivateFinishedAfter) {
    this(
        passivateAfter,
        defaultMaxTurns,
        maxMaxTurns,
        snapshotEvery,
        fileLimits,
        handoffGrace,
        passivateFinishedAfter,
        Waits.DEFAULT,
        Subagents.DEFAULT,
        Compaction.DEFAULT);
  }

  /**
   * With the default hand-off grace (5 s), and finished sessions passivating after {@code
   * passivateAfter} too.
   */
  public SessionSettings(
      Duration passivateAfter,
      int defaultMaxTurns,
      int maxMaxTurns,
      int snapshotEvery,
      SessionFiles.Limits fileLimits) {
    this(
        passivateAfter,
        defaultMaxTurns,
        maxMaxTurns,
        snapshotEvery,
        fileLimits,
        Duration.ofSeconds(5),
        passivateAfter);
  }

  /** How long a session idles in {@code status} before it passivates. */
  public Duration idleTimeout(boolean finished) {
    return finished && passivateFinishedAfter.compareTo(passivateAfter) < 0
        ? passivateFinishedAfter
        : passivateAfter;
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
            intBytes(c, "max-tool-output-bytes")),
        c.getDuration("handoff-grace"),
        c.getDuration("passivate-finished-after"),
        new Waits(
            config.getDuration("outboard.waits.max-timeout"),
            config.getInt("outboard.waits.max-queued-events"),
            intBytes(config, "outboard.waits.max-payload-bytes")),
        new Subagents(
            config.getInt("outboard.subagents.max-depth"),
            config.getDuration("outboard.subagents.check-interval")),
        compaction(config.getConfig("outboard.compaction")));
  }

  private static Compaction compaction(Config c) {
    java.util.Map<String, Long> windows = new java.util.HashMap<>();
    Config w = c.getConfig("context-windows");
    for (String model : w.root().keySet()) windows.put(model, w.getLong("\"" + model + "\""));
    return new Compaction(
        c.getDouble("threshold"),
        c.getInt("keep-messages"),
        c.getLong("default-context-window"),
        java.util.Map.copyOf(windows),
        c.getInt("chars-per-token"),
        c.getInt("max-tool-result-chars"),
        intBytes(c, "max-history-chars"));
  }

  /** A size setting ({@code 256k}, {@code 1m}) as an int, at most {@link Integer#MAX_VALUE}. */
  private static int intBytes(Config c, String path) {
    return (int) Math.min(Integer.MAX_VALUE, c.getBytes(path));
  }
}
