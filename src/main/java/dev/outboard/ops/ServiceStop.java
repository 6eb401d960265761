package dev.outboard.ops;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.function.Supplier;
import org.apache.pekko.Done;
import org.apache.pekko.actor.CoordinatedShutdown;
import org.apache.pekko.actor.typed.ActorSystem;

/**
 * How a feature stops with its node: a task of Pekko's {@link CoordinatedShutdown}, registered by
 * the factory that started the feature — services in the service-stop phase (before the cluster
 * leaves), resources they use just before the ActorSystem terminates.
 */
public final class ServiceStop {
  private ServiceStop() {}

  /** Runs {@code stop} as task {@code name} of the service-stop phase. */
  public static void register(ActorSystem<?> system, String name, Runnable stop) {
    registerAsync(system, name, () -> run(stop));
  }

  /**
   * Runs {@code stop} as task {@code name} of the service-stop phase; it ends when its stage does.
   */
  public static void registerAsync(
      ActorSystem<?> system, String name, Supplier<CompletionStage<?>> stop) {
    CoordinatedShutdown.get(system)
        .addTask(
            CoordinatedShutdown.PhaseServiceStop(),
            name,
            () -> stop.get().thenApply(v -> Done.getInstance()));
  }

  /** Runs {@code close} as task {@code name} just before the ActorSystem terminates. */
  public static void beforeTerminate(ActorSystem<?> system, String name, Runnable close) {
    CoordinatedShutdown.get(system)
        .addTask(CoordinatedShutdown.PhaseBeforeActorSystemTerminate(), name, () -> run(close));
  }

  private static CompletionStage<Done> run(Runnable task) {
    task.run();
    return CompletableFuture.completedFuture(Done.getInstance());
  }
}
