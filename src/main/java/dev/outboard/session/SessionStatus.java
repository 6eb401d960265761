package dev.outboard.session;

import com.fasterxml.jackson.annotation.JsonValue;

/**
 * A session's status as recorded (and, through {@link SessionState#shown()}, as the API shows it).
 */
public enum SessionStatus {
  NEW,
  RUNNING,
  /** Shown while a tool call of the turn waits for approval (recorded status: running). */
  REQUIRES_ACTION,
  WAITING,
  COMPLETED,
  FAILED,
  CANCELLED;

  @JsonValue
  public String wire() {
    return name().toLowerCase();
  }

  public boolean finished() {
    return this == COMPLETED || this == FAILED || this == CANCELLED;
  }
}
