package dev.outboard.sandbox;

import dev.outboard.ops.LiveStates;
import dev.outboard.sandbox.SandboxHandle.Report;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * What the session and the node know of a {@link SandboxHandle}'s sandbox: its status and the id
 * last reported. A change is told to the session ({@link Report}) and counted in the node's
 * sandboxes-by-state gauge; a repeat of what the session knows is not. Used from the handle's actor
 * only.
 */
final class StatusReports {
  private final ActorRef<Report> session;

  /** This handle's sandbox in the node's sandboxes-by-state gauge. */
  private final LiveStates.Member liveState = LiveStates.SANDBOXES.member();

  private SandboxStatus status;

  /** The sandbox id the session knows. */
  private String reportedId;

  StatusReports(ActorRef<Report> session, String knownId, SandboxStatus known) {
    this.session = session;
    this.reportedId = knownId;
    this.status = known;
    liveState.set(known.wire());
  }

  SandboxStatus status() {
    return status;
  }

  /** Whether the session knows of a sandbox (this handle's, or an earlier handle's). */
  boolean knowsASandbox() {
    return reportedId != null;
  }

  /** Tells the session about a new status or a new sandbox id, and nothing else. */
  void changed(SandboxStatus next, String sandboxId, String replacedId) {
    boolean newId = sandboxId != null && !sandboxId.equals(reportedId);
    if (next == status && !newId) return;
    status = next;
    liveState.set(next.wire());
    reportedId = sandboxId == null ? reportedId : sandboxId;
    session.tell(new Report(next, sandboxId, replacedId));
  }

  /** The handle stopped: it no longer counts in the gauge. */
  void stopped() {
    liveState.clear();
  }
}
