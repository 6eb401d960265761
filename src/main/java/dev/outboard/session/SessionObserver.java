package dev.outboard.session;

/**
 * Told when a session's status changes (and when a session recovers), so that the sessions list can
 * follow without adding a synchronous write to a turn. {@code seq} is the journal sequence number
 * of the change; a listener keeps the highest one it has seen.
 */
public interface SessionObserver {
  /** The session's status changed with journal event {@code seq}. */
  void statusChanged(Summary summary, long seq);

  /**
   * The session recovered with this status (at its last event {@code seq}): no change of its own,
   * but a change this node may not have passed on before it stopped.
   */
  default void recovered(Summary summary, long seq) {
    statusChanged(summary, seq);
  }

  /**
   * What the session waits for changed without a change of status (another approval is pending, a
   * wait's deadline moved): the list shows it, and no status webhook is owed.
   */
  default void detailsChanged(Summary summary, long seq) {}

  /**
   * A model answer of a session of {@code org} was recorded at {@code at}, costing {@code usage}.
   */
  default void usage(String org, dev.outboard.model.Usage usage, java.time.Instant at) {}
}
