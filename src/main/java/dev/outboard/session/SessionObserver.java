package dev.outboard.session;

/**
 * Told when a session's status changes (and when a session recovers), so that the sessions list
 * can follow without adding a synchronous write to a turn. {@code seq} is the journal sequence
 * number of the change; a listener keeps the highest one it has seen.
 */
public interface SessionObserver {
  void statusChanged(Summary summary, long seq);
}
