package dev.outboard.testing;

import dev.outboard.sandbox.SandboxProvider;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A sandbox provider without sandboxes, for tests of what drives one: one sandbox, {@code sb-1},
 * whose commands echo ({@code echo x} prints {@code x}) and are recorded with their execution ids;
 * files are empty and every other operation succeeds. Subclasses override what a test controls.
 */
public class EchoSandboxes implements SandboxProvider {
  /** The commands run, in order, and their execution ids. */
  public final List<String> commands = new CopyOnWriteArrayList<>();

  public final List<String> executions = new CopyOnWriteArrayList<>();

  protected static <T> CompletionStage<T> done(T value) {
    return CompletableFuture.completedFuture(value);
  }

  @Override
  public CompletionStage<String> create(Limits limits, byte[] snapshot) {
    return done("sb-1");
  }

  @Override
  public CompletionStage<ExecResult> exec(
      String id, String executionId, String command, Duration timeout) {
    commands.add(command);
    executions.add(executionId);
    return done(
        new ExecResult(
            0, command.replace("echo ", ""), false, false, Duration.ZERO, Duration.ZERO));
  }

  @Override
  public CompletionStage<String> read(String id, String path) {
    return done("");
  }

  @Override
  public CompletionStage<Void> write(String id, String path, String content) {
    return done(null);
  }

  @Override
  public CompletionStage<List<Entry>> list(String id, String path) {
    return done(List.of());
  }

  @Override
  public CompletionStage<Void> suspend(String id) {
    return done(null);
  }

  @Override
  public CompletionStage<Void> resume(String id) {
    return done(null);
  }

  @Override
  public CompletionStage<byte[]> hibernate(String id) {
    return done(new byte[0]);
  }

  @Override
  public CompletionStage<Void> destroy(String id) {
    return done(null);
  }

  @Override
  public CompletionStage<State> state(String id) {
    return done(State.ACTIVE);
  }

  @Override
  public void close() {}
}
