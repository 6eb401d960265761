package dev.outboard.sandbox.shell;

import dev.outboard.sandbox.SandboxProvider.CommandInterruptedException;
import dev.outboard.sandbox.SandboxProvider.ExecResult;
import dev.outboard.sandbox.SandboxProvider.SandboxGoneException;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Executor;

/**
 * A sandbox's commands, each run at most once per execution id: a repeated id answers the first
 * run's result, from memory for the last {@value #CACHE} ids, and otherwise from the workspace's
 * execution records ({@link ExecLedger}), also across restarts and salvaged replacements. Runs a
 * command on the executor, holding the sandbox's lock.
 */
final class ExecOnce {
  private static final int CACHE = 1000;

  private final ShellProcess sandbox;
  private final Executor executor;
  private final Map<String, CompletableFuture<ExecResult>> results =
      new LinkedHashMap<>() {
        @Override
        protected boolean removeEldestEntry(
            Map.Entry<String, CompletableFuture<ExecResult>> eldest) {
          return size() > CACHE;
        }
      };

  ExecOnce(ShellProcess sandbox, Executor executor) {
    this.sandbox = sandbox;
    this.executor = executor;
  }

  CompletionStage<ExecResult> exec(String executionId, String command, Duration timeout) {
    CompletableFuture<ExecResult> result;
    synchronized (results) {
      if (executionId != null) {
        CompletableFuture<ExecResult> first = results.get(executionId);
        if (first != null) {
          return first;
        }
      }
      if (sandbox.goneBecause != null) {
        return CompletableFuture.failedFuture(
            SandboxGoneException.beforeCommand(sandbox.id, sandbox.goneBecause));
      }
      result = new CompletableFuture<>();
      if (executionId != null) {
        results.put(executionId, result);
      }
    }
    long called = System.nanoTime();
    sandbox.lastUsed = System.currentTimeMillis();
    executor.execute(
        () -> {
          try {
            ExecResult r;
            synchronized (sandbox) {
              r = runOnce(executionId, command, timeout, called);
            }
            result.complete(r);
          } catch (Throwable t) {
            // Asked again, a command the sandbox died during answers the same; any other
            // failure left nothing behind, so the command may be tried again.
            if (!(t instanceof SandboxGoneException gone && gone.commandMayHaveRun())
                && !(t instanceof CommandInterruptedException)) {
              synchronized (results) {
                results.remove(executionId, result);
              }
            }
            result.completeExceptionally(t);
          }
        });
    return result;
  }

  /**
   * Runs the command unless the workspace's execution records ({@link ExecLedger}) say this id ran
   * (its recorded result) or was cut off (then {@link CommandInterruptedException}): so a command
   * runs at most once per workspace, even across restarts and salvaged replacements. Called holding
   * the lock.
   */
  private ExecResult runOnce(String executionId, String command, Duration timeout, long called) {
    ExecLedger.Entry known = sandbox.ledger.lookup(executionId);
    if (known.status() == ExecLedger.Status.DONE) {
      return known.result();
    }
    if (known.status() == ExecLedger.Status.CUT_OFF) {
      throw new CommandInterruptedException(sandbox.id);
    }
    ExecResult r = sandbox.run(executionId, command, timeout, called);
    sandbox.ledger.done(executionId, r);
    return r;
  }
}
