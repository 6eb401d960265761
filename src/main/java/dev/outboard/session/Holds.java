package dev.outboard.session;

import dev.outboard.JsonSerializable;
import java.time.Instant;
import java.util.List;

/**
 * What the session waits for from outside: the current turn's calls held for approval and its waits
 * (both are open calls, but nothing runs for them), and the events kept for later waits.
 */
public record Holds(
    List<Approval> approvals, List<Wait> waits, List<Inbound> inbox, List<Task> tasks)
    implements JsonSerializable {
  public static final Holds NONE = new Holds(List.of(), List.of(), List.of(), List.of());

  public Holds {
    approvals = approvals == null ? List.of() : approvals;
    waits = waits == null ? List.of() : waits;
    inbox = inbox == null ? List.of() : inbox;
    tasks = tasks == null ? List.of() : tasks;
  }

  public Holds(List<Approval> approvals, List<Wait> waits, List<Inbound> inbox) {
    this(approvals, waits, inbox, List.of());
  }

  /**
   * True if the open call {@code callId} waits for a decision, an event or a subagent (nothing runs
   * for it here).
   */
  public boolean holds(String callId) {
    return parks(callId) || task(callId) != null;
  }

  /**
   * True if the open call {@code callId} waits for a person or an event: the session may passivate
   * meanwhile.
   */
  public boolean parks(String callId) {
    return approval(callId) != null || waits.stream().anyMatch(w -> w.callId().equals(callId));
  }

  public Task task(String callId) {
    return tasks.stream().filter(t -> t.callId().equals(callId)).findFirst().orElse(null);
  }

  public Task taskOf(String childId) {
    return tasks.stream().filter(t -> t.childId().equals(childId)).findFirst().orElse(null);
  }

  public Approval approval(String callId) {
    return approvals.stream().filter(a -> a.callId().equals(callId)).findFirst().orElse(null);
  }

  public Wait waitFor(String event) {
    return waits.stream().filter(w -> w.event().equals(event)).findFirst().orElse(null);
  }

  public Wait waitCall(String callId) {
    return waits.stream().filter(w -> w.callId().equals(callId)).findFirst().orElse(null);
  }

  public Inbound kept(String event) {
    return inbox.stream().filter(i -> i.name().equals(event)).findFirst().orElse(null);
  }

  Holds withApprovals(List<Approval> a) {
    return new Holds(a, waits, inbox, tasks);
  }

  Holds withWaits(List<Wait> w) {
    return new Holds(approvals, w, inbox, tasks);
  }

  Holds withInbox(List<Inbound> i) {
    return new Holds(approvals, waits, i, tasks);
  }

  Holds withTasks(List<Task> t) {
    return new Holds(approvals, waits, inbox, t);
  }

  /** Without the call {@code callId}: it completed. */
  Holds without(String callId) {
    if (!holds(callId)) return this;
    return new Holds(
        approvals.stream().filter(a -> !a.callId().equals(callId)).toList(),
        waits.stream().filter(w -> !w.callId().equals(callId)).toList(),
        inbox,
        tasks.stream().filter(t -> !t.callId().equals(callId)).toList());
  }

  /** A tool call of the current turn waiting for a person's decision. */
  public record Approval(String callId, int turn, String name, Instant requestedAt)
      implements JsonSerializable {}

  /** A {@code wait} call of the current turn: for event {@code event}, until {@code deadline}. */
  public record Wait(String callId, int turn, String event, int timeoutSeconds, Instant deadline)
      implements JsonSerializable {}

  /** A {@code task} call of the current turn: its subagent {@code childId} works on it. */
  public record Task(String callId, int turn, String childId) implements JsonSerializable {}

  /** An event that arrived before any wait took it. */
  public record Inbound(String name, String payload, Instant at) implements JsonSerializable {}
}
