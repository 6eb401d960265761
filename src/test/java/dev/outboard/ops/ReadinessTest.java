package dev.outboard.ops;

import static org.assertj.core.api.Assertions.assertThat;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.Ports;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.Done;
import org.apache.pekko.actor.CoordinatedShutdown;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.Entity;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityTypeKey;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.apache.pekko.management.javadsl.PekkoManagement;
import org.junit.jupiter.api.Test;

/**
 * The management port's {@code /ready}, as Kubernetes and load balancers read it: a joining node is
 * ready only once its {@code Session} shard region has registered with the coordinator, and a node
 * that begins to shut down is not ready from that moment, while it is still an {@code Up} member
 * that has not started to leave.
 */
class ReadinessTest {
  private static final Duration WAIT = Duration.ofSeconds(30);

  /** What pekko-management answers while a check fails ("Not Healthy"). */
  private static final int NOT_READY = 500;

  @Test
  void aNodeIsNotReadyUntilItsSessionShardingIsUp() throws Exception {
    int management = Ports.free();
    Config config =
        ConfigFactory.parseMap(
                Map.of(
                    "pekko.management.http.hostname", "127.0.0.1",
                    "pekko.management.http.port", management,
                    "pekko.management.http.bind-hostname", "127.0.0.1",
                    "pekko.management.http.bind-port", management,
                    "pekko.remote.artery.canonical.port", 0,
                    // sharding without remember-entities: this node has no journal
                    "pekko.cluster.sharding.remember-entities", "off",
                    "pekko.coordinated-shutdown.exit-jvm", "off",
                    "pekko.coordinated-shutdown.run-by-jvm-shutdown-hook", "off",
                    "pekko.cluster.jmx.multi-mbeans-in-same-jvm", "on"))
            .withFallback(ConfigFactory.load())
            .resolve();
    ActorSystem<Void> system = ActorSystem.create(Behaviors.empty(), "outboard", config);
    try {
      PekkoManagement.get(system).start().toCompletableFuture().get(30, TimeUnit.SECONDS);
      Cluster cluster = Cluster.get(system);
      cluster.manager().tell(Join.create(cluster.selfMember().address()));
      ApiClient probe = new ApiClient("http://127.0.0.1:" + management, null);
      awaitMemberUp(system);

      // Up, but no Session region yet: the probe keeps answering pekko-management's "not healthy".
      for (int i = 0; i < 10; i++) {
        assertThat(ready(probe))
            .as("/ready of an Up node without its Session region")
            .isEqualTo(NOT_READY);
        Thread.sleep(100);
      }

      ClusterSharding.get(system)
          .init(
              Entity.of(
                  EntityTypeKey.create(String.class, "Session"),
                  ctx -> Behaviors.<String>ignore()));
      assertThat(awaitReady(probe, 200))
          .as("/ready once the Session region registered")
          .isEqualTo(200);
    } finally {
      system.terminate();
      system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
    }
  }

  @Test
  void aNodeThatBeginsToShutDownIsNotReadyBeforeItLeaves() throws Exception {
    // The phase before the cluster leave is held open, so that the node stays Up meanwhile.
    try (InProcessNode node =
        InProcessNode.start(
            "",
            Map.of("pekko.coordinated-shutdown.phases.before-cluster-shutdown.timeout", "30s"))) {
      int management = node.system().settings().config().getInt("pekko.management.http.port");
      ApiClient probe = new ApiClient("http://127.0.0.1:" + management, null);
      assertThat(awaitReady(probe, 200)).as("/ready of a started node").isEqualTo(200);

      CompletableFuture<Done> release = new CompletableFuture<>();
      CoordinatedShutdown shutdown = CoordinatedShutdown.get(node.system());
      shutdown.addTask(
          CoordinatedShutdown.PhaseBeforeClusterShutdown(), "hold-for-test", () -> release);
      shutdown.run(CoordinatedShutdown.unknownReason());
      try {
        assertThat(awaitReady(probe, NOT_READY))
            .as("/ready once the shutdown began")
            .isEqualTo(NOT_READY);
        assertThat(Cluster.get(node.system()).selfMember().status())
            .as("the node has not started to leave yet")
            .isEqualTo(MemberStatus.up());
      } finally {
        release.complete(Done.getInstance());
      }
    }
  }

  private static void awaitMemberUp(ActorSystem<?> system) throws InterruptedException {
    long deadline = System.nanoTime() + WAIT.toNanos();
    while (Cluster.get(system).selfMember().status() != MemberStatus.up()) {
      if (System.nanoTime() > deadline)
        throw new AssertionError("the node did not become Up within " + WAIT);
      Thread.sleep(50);
    }
  }

  /**
   * Polls {@code /ready} until it answers {@code status}; returns the last answer (-1: no
   * connection).
   */
  private static int awaitReady(ApiClient probe, int status) throws InterruptedException {
    long deadline = System.nanoTime() + WAIT.toNanos();
    int last;
    do {
      last = ready(probe);
      if (last == status) return last;
      Thread.sleep(50);
    } while (System.nanoTime() < deadline);
    return last;
  }

  private static int ready(ApiClient probe) {
    try {
      return probe.get("/ready").status();
    } catch (UncheckedIOException e) {
      return -1;
    }
  }
}
