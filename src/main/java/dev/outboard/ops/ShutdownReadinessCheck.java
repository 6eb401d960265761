package dev.outboard.ops;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.function.Supplier;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.actor.CoordinatedShutdown;

/**
 * A readiness check (pekko-management, {@code /ready}) that fails from the first moment of a
 * coordinated shutdown: a node that got SIGTERM reports not-ready before it unbinds its API and
 * before it starts leaving the cluster, so that load balancers stop sending it requests while its
 * sessions hand off. Pekko's own membership check only fails once the node is {@code Leaving}.
 */
public final class ShutdownReadinessCheck implements Supplier<CompletionStage<Boolean>> {
  private final CoordinatedShutdown shutdown;

  public ShutdownReadinessCheck(ActorSystem system) {
    this.shutdown = CoordinatedShutdown.get(system);
  }

  @Override
  public CompletionStage<Boolean> get() {
    return CompletableFuture.completedFuture(shutdown.getShutdownReason().isEmpty());
  }
}
