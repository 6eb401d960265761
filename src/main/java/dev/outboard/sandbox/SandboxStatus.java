package dev.outboard.sandbox;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;
import java.util.Arrays;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * The state of a session's sandbox as the session records it and the API shows it (API.md: {@code
 * sandbox.state}); in JSON, SSE and the journal it is spelled by its {@link #wire()} form.
 */
public enum SandboxStatus {
  /** No sandbox yet (or the last one could not be started). */
  NONE,
  PROVISIONING,
  ACTIVE,
  SUSPENDED,
  HIBERNATED,
  /** The sandbox was lost; a new one is being started in its place. */
  REPLACING,
  DESTROYED;

  private final String wire = name().toLowerCase(java.util.Locale.ROOT);

  /** The lower-case form JSON, SSE and the API use, e.g. {@code "suspended"}. */
  @JsonValue
  public String wire() {
    return wire;
  }

  /** The status spelled {@code wire}; an unknown spelling is an error that lists the known ones. */
  @JsonCreator
  public static SandboxStatus fromWire(String wire) {
    for (SandboxStatus s : values()) {
      if (s.wire.equals(wire)) return s;
    }
    throw new IllegalArgumentException(
        "unknown sandbox state '"
            + wire
            + "'; known: "
            + Arrays.stream(values()).map(SandboxStatus::wire).collect(Collectors.joining(", ")));
  }

  /** The wire forms of the states a live sandbox handle counts in the node's gauge. */
  public static Set<String> liveWireForms() {
    return Arrays.stream(values())
        .filter(s -> s != NONE && s != DESTROYED)
        .map(SandboxStatus::wire)
        .collect(Collectors.toUnmodifiableSet());
  }

  @Override
  public String toString() {
    return wire;
  }
}
