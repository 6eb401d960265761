package dev.outboard.sandbox;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletionStage;

/**
 * Where sandboxes come from (DESIGN.md §4): an isolated process tree with a private {@code
 * /workspace}, no network and an environment scrubbed of every secret. Implementations: local
 * bubblewrap today; remote (a sandbox host over HTTP) and microVMs or pods later. Every call is
 * asynchronous; blocking process work runs on the provider's own threads.
 *
 * <p>Sandbox ids outlive the caller: a session that restarts, or moves to another node, asks for
 * the same id again. A sandbox that is gone answers {@link SandboxGoneException}.
 */
public interface SandboxProvider extends AutoCloseable {

  enum State {
    ACTIVE,
    SUSPENDED,
    HIBERNATED
  }

  /** Limits of one sandbox. */
  record Limits(
      long memoryBytes,
      int maxProcesses,
      Duration cpuTime,
      long maxOutputBytes,
      Duration defaultTimeout) {}

  /**
   * The outcome of one command; {@code truncated} says the output cap cut it. {@code took} is the
   * command's own run time; {@code firstOutput}, when the provider measures it, the time from the
   * exec call to the sandbox's first answering byte (its output, or the end of a silent command),
   * resuming or starting the sandbox included.
   */
  record ExecResult(
      int exitCode,
      String output,
      boolean truncated,
      boolean timedOut,
      Duration took,
      Duration firstOutput) {}

  /** A directory entry below {@code /workspace}. */
  record Entry(String path, boolean directory, long size) {}

  /** How isolated this provider's sandboxes are, as sessions show it; null = fully isolated. */
  default String isolation() {
    return null;
  }

  /**
   * Creates a sandbox with an empty workspace (or restores one from {@code snapshot}, when given).
   */
  CompletionStage<String> create(Limits limits, byte[] snapshot);

  /**
   * Runs {@code command} in the sandbox's shell (cwd and exported variables persist between calls).
   * {@code executionId} makes the call idempotent: asking again with the same id returns the first
   * run's result instead of running it twice, also in a sandbox created from this one's salvaged
   * workspace; one whose first run was cut off answers {@link CommandInterruptedException}.
   */
  CompletionStage<ExecResult> exec(
      String sandboxId, String executionId, String command, Duration timeout);

  CompletionStage<String> read(String sandboxId, String path);

  CompletionStage<Void> write(String sandboxId, String path, String content);

  CompletionStage<List<Entry>> list(String sandboxId, String path);

  /** Freezes the process tree; the next call resumes it. */
  CompletionStage<Void> suspend(String sandboxId);

  CompletionStage<Void> resume(String sandboxId);

  /** Stops the processes and keeps the workspace; returns a snapshot of it (a tar archive). */
  CompletionStage<byte[]> hibernate(String sandboxId);

  CompletionStage<Void> destroy(String sandboxId);

  /**
   * The workspace of a sandbox that is gone, as a snapshot, when its files outlived its processes
   * (they died, or the provider restarted, and the disk is intact); null when nothing is left. A
   * replacement created from it keeps everything written before the loss, not only what the last
   * hibernation saved. The default: nothing is ever left.
   */
  default CompletionStage<byte[]> salvage(String sandboxId) {
    return java.util.concurrent.CompletableFuture.completedFuture(null);
  }

  /**
   * A sandbox this provider holds: running, frozen, hibernated, gone with its files still on disk,
   * or left over from before a restart; {@code lastUsed} is when it was last created, used or
   * changed. The sweep ({@code SandboxSweeper}) destroys the ones no running session holds.
   */
  record Held(String id, java.time.Instant lastUsed) {}

  /** Every sandbox this provider holds (default: none it could tell of). */
  default CompletionStage<List<Held>> held() {
    return java.util.concurrent.CompletableFuture.completedFuture(List.of());
  }

  /** The sandbox's state; a health check: a sandbox whose processes died answers it is gone. */
  CompletionStage<State> state(String sandboxId);

  /**
   * An earlier run of this execution id was cut off: the sandbox (or its host, or the service
   * around it) died while the command ran, so it may have run in part. Answered instead of running
   * it again; the execution record in the workspace ({@code .outboard/exec}) says so.
   */
  final class CommandInterruptedException extends RuntimeException {
    public CommandInterruptedException(String sandboxId) {
      super(
          "an earlier run of this command in sandbox "
              + sandboxId
              + " was cut off when its sandbox was lost",
          null,
          false,
          false);
    }
  }

  /**
   * The sandbox is gone: its processes died, its host restarted, or it was destroyed. Two facts
   * decide what the caller may do next: whether the provider is sure ({@link #confirmed()} is false
   * when the host could not be asked at all), and whether the command of a failed {@code exec} may
   * have run ({@link #commandMayHaveRun()}: the sandbox died during it, or the host stopped
   * answering while it ran). A command that surely never ran can run again on a replacement.
   */
  final class SandboxGoneException extends RuntimeException {
    private final boolean confirmed;
    private final boolean commandMayHaveRun;

    /**
     * Confirmed gone; a command asked of it may have run (an unknown id may be one that a previous
     * run of the provider knew, and ran commands in).
     */
    public SandboxGoneException(String sandboxId, String why) {
      this(sandboxId, why, true, true);
    }

    public SandboxGoneException(
        String sandboxId, String why, boolean confirmed, boolean commandMayHaveRun) {
      super("sandbox " + sandboxId + " is gone: " + why, null, false, false);
      this.confirmed = confirmed;
      this.commandMayHaveRun = commandMayHaveRun;
    }

    /** The provider knows the sandbox died before this command was sent to it. */
    public static SandboxGoneException beforeCommand(String sandboxId, String why) {
      return new SandboxGoneException(sandboxId, why, true, false);
    }

    public boolean confirmed() {
      return confirmed;
    }

    public boolean commandMayHaveRun() {
      return commandMayHaveRun;
    }
  }
}
