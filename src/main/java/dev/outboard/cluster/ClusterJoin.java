package dev.outboard.cluster;

import com.typesafe.config.Config;
import dev.outboard.ops.StartupChecks;
import java.util.ArrayList;
import java.util.List;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.AddressFromURIString;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.apache.pekko.cluster.typed.JoinSeedNodes;
import org.apache.pekko.management.cluster.bootstrap.ClusterBootstrap;
import org.apache.pekko.management.javadsl.PekkoManagement;

/**
 * Joins this node to its cluster once its sharding has started: starts Pekko Management (the
 * probes, and the endpoint bootstrap contacts), then joins through Kubernetes cluster bootstrap
 * ({@code outboard.cluster.bootstrap}), the seed nodes of {@code outboard.cluster.seed-nodes}, the
 * {@code pekko.cluster.seed-nodes} of the config, or itself when there are none.
 */
public final class ClusterJoin {

  /** The ActorSystem's name, part of every cluster address ({@code pekko://outboard@host:port}). */
  public static final String SYSTEM_NAME = "outboard";

  private ClusterJoin() {}

  /**
   * Starts management and joins. Called only once sharding is up: a member whose sharding has not
   * started yet makes the coordinator's majority writes wait for it, which stalls every hand-off in
   * the cluster for seconds.
   */
  public static void join(ActorSystem<?> system, Config config) {
    StartupChecks.awaitManagement(system, PekkoManagement.get(system).start());
    List<Address> seeds = seedNodes(config);
    if (config.getBoolean("outboard.cluster.bootstrap")) {
      ClusterBootstrap.get(system).start();
    } else if (!seeds.isEmpty()) {
      Cluster.get(system).manager().tell(new JoinSeedNodes(seeds));
    } else if (config.getStringList("pekko.cluster.seed-nodes").isEmpty()) {
      Cluster cluster = Cluster.get(system);
      cluster.manager().tell(Join.create(cluster.selfMember().address()));
    }
  }

  /**
   * {@code outboard.cluster.seed-nodes} ({@code OUTBOARD_SEED_NODES}): comma-separated {@code
   * host:port} or {@code pekko://outboard@host:port}. Joined from {@link #join}, once sharding is
   * up, rather than through {@code pekko.cluster.seed-nodes}, which joins as soon as the
   * ActorSystem starts.
   */
  static List<Address> seedNodes(Config config) {
    List<Address> addresses = new ArrayList<>();
    for (String seed : config.getString("outboard.cluster.seed-nodes").split(",")) {
      String s = seed.strip();
      if (s.isEmpty()) continue;
      try {
        addresses.add(
            AddressFromURIString.parse(
                s.startsWith("pekko://") ? s : "pekko://" + SYSTEM_NAME + "@" + s));
      } catch (RuntimeException e) {
        throw new IllegalArgumentException(
            "OUTBOARD_SEED_NODES: '"
                + s
                + "' is not host:port or pekko://"
                + SYSTEM_NAME
                + "@host:port");
      }
    }
    return addresses;
  }
}
