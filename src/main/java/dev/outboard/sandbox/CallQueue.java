package dev.outboard.sandbox;

import dev.outboard.sandbox.SandboxHandle.Result;
import dev.outboard.sandbox.SandboxHandle.Run;
import dev.outboard.tools.ToolCall;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Iterator;

/**
 * The calls waiting for a session's sandbox, oldest first (the head may be in progress), what
 * happened during the head call (replacements, an unreachable host), and the answers of calls that
 * did not run or whose outcome is unknown. At most {@code maxPending} wait; a call its caller no
 * longer counts on ({@link Run#expired()}) is answered "did not run" and is never started. Used
 * from the {@link SandboxHandle} actor only.
 */
final class CallQueue {
  private static final int MAX_REPLACEMENTS_PER_CALL = 3;

  private final ArrayDeque<Run> pending = new ArrayDeque<>();
  private final int maxPending;
  private final Duration startTimeout;
  private String note;
  private String lastUnreachable;

  /** Losses of the sandbox during the head call. */
  private int replacements;

  CallQueue(int maxPending, Duration startTimeout) {
    this.maxPending = maxPending;
    this.startTimeout = startTimeout;
  }

  /**
   * Adds {@code run} unless the queue is full (then answers it); {@code headRuns}: the head is in
   * progress. Expired waiting calls are answered first.
   */
  boolean add(Run run, boolean headRuns) {
    dropExpired(headRuns);
    if (pending.size() >= maxPending) {
      run.replyTo()
          .tell(
              new Result(
                  "did not run: "
                      + pending.size()
                      + " calls are already waiting for this session's sandbox"
                      + " (outboard.sandbox.max-pending-calls); try again once they are answered",
                  true));
      return false;
    }
    pending.add(run);
    return true;
  }

  /** Answers the waiting calls (not the one in progress) whose callers no longer count on them. */
  void dropExpired(boolean headRuns) {
    Iterator<Run> it = pending.iterator();
    if (headRuns && it.hasNext()) it.next(); // the head is in progress
    while (it.hasNext()) {
      Run r = it.next();
      if (r.expired()) {
        it.remove();
        r.replyTo().tell(notStarted());
      }
    }
  }

  /** The call to start next, once every expired one is answered; null when none waits. */
  Run next() {
    dropExpired(false);
    return pending.peek();
  }

  /** The call at the head (in progress, when the handle is busy), or null. */
  Run head() {
    return pending.peek();
  }

  /**
   * Answers the call at the head ({@code result} null: there is none, e.g. no call waits for a
   * replacement), with the note of a replacement since the last answer, and removes it.
   */
  void answerHead(Result result) {
    Run run = pending.poll();
    if (run == null) return;
    replacements = 0;
    if (note != null && result != null) {
      result = new Result(note + "\n" + result.content(), result.isError());
      note = null;
    }
    run.replyTo().tell(result);
  }

  /**
   * The head call's sandbox was replaced, its workspace {@code restored}. A command that may have
   * run ({@code mayHaveRun}) is asked again only of a salvaged workspace: its execution records say
   * whether it ran (its result), was cut off (interrupted) or never started (it runs); too late to
   * ask the records (that could start it), it may have run. Returns the head's answer when it is
   * not run again, else null: it runs, and the next answer notes the replacement.
   */
  Result replaced(Provisioner.Restored restored, boolean mayHaveRun) {
    Run run = pending.peek();
    if (mayHaveRun
        && (restored != Provisioner.Restored.SALVAGED || (run != null && run.expired()))) {
      note = null; // the answer says so itself
      return lost(restored);
    }
    note = "[the sandbox was lost and replaced" + restored.sentence + "]";
    return null;
  }

  /** The next answer says itself what happened. */
  void dropNote() {
    note = null;
  }

  /**
   * Counts a loss of the sandbox during the head call; true when it was lost too often to replace
   * it again (a sandbox that dies at once every time).
   */
  boolean lostAgain() {
    return ++replacements > MAX_REPLACEMENTS_PER_CALL;
  }

  /** The answer of a call whose sandbox was lost too often ({@code why}: the last time). */
  static Result lostTooOften(String why) {
    return new Result(
        "the sandbox was lost "
            + MAX_REPLACEMENTS_PER_CALL
            + " times in a row during this call; "
            + "the last time: "
            + why,
        true);
  }

  /**
   * The host did not answer the head call {@code run} ({@code why}); true when it is to be asked
   * again: a call that is safe to repeat (a command by its execution id, which the host runs once;
   * a file operation other than edit) until its start deadline. Then, or for an edit, it fails.
   */
  boolean askAgain(Run run, String why) {
    lastUnreachable = why;
    return !(run.call() instanceof ToolCall.Edit) && run.mayWait();
  }

  String lastUnreachable() {
    return lastUnreachable;
  }

  boolean isEmpty() {
    return pending.isEmpty();
  }

  /** Answers every call with {@code why}, an error, and empties the queue. */
  void endAll(String why) {
    for (Run run : pending) run.replyTo().tell(new Result(why, true));
    pending.clear();
  }

  /** The answer of a call that did not start by its deadline. */
  Result notStarted() {
    return new Result(
        "did not run: the sandbox was not ready for it within "
            + startTimeout.toSeconds()
            + " s (outboard.sandbox.call-start-timeout); it will not run",
        true);
  }

  /** The answer of a call whose sandbox could not be started ({@code why}). */
  static Result couldNotStart(String why) {
    return new Result(
        Provisioner.noBwrap(why)
            ? SandboxHandle.BWRAP_MISSING
            : "could not start a sandbox: " + why,
        true);
  }

  /**
   * The answer of a command during which the sandbox was lost; {@code restored}: where its
   * replacement's workspace came from (null: not said).
   */
  static Result lost(Provisioner.Restored restored) {
    return new Result(SandboxHandle.LOST + (restored == null ? "" : restored.sentence), true);
  }

  /** The answer when the sandbox's host stopped answering during the call. */
  static Result unreachable(Run run, String why) {
    if (run.call() instanceof ToolCall.Bash) {
      return new Result(
          "interrupted: the sandbox could not be reached ("
              + why
              + "); the command may or may not have run",
          true);
    }
    return new Result(
        "the sandbox could not be reached (" + why + "); it may or may not have taken effect",
        true);
  }
}
