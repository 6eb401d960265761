package dev.outboard.testing;

import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.sharding.ShardRegion;
import org.apache.pekko.cluster.sharding.typed.GetShardRegionState;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityTypeKey;
import org.apache.pekko.cluster.typed.Cluster;

/**
 * Several {@link InProcessNode}s in this JVM forming ONE Pekko cluster on one database: every node
 * gets a fixed remote port, and all name the first node as their only seed node (the first node
 * then joins itself, the others join it; {@code ClusterJoin.join} self-joins only when there are no
 * seed nodes). Closed in reverse order, so the first node leaves last.
 */
public final class ClusterNodes implements AutoCloseable {
  private static final Duration FORMED_TIMEOUT = Duration.ofSeconds(60);

  private final List<InProcessNode> nodes;

  private ClusterNodes(List<InProcessNode> nodes) {
    this.nodes = List.copyOf(nodes);
  }

  /** Starts {@code count} nodes on {@code dbUrl} and waits until every node sees all of them Up. */
  public static ClusterNodes start(String dbUrl, int count, Map<String, Object> overrides)
      throws IOException {
    int[] remotePorts = Ports.free(count);
    List<String> seeds = List.of("pekko://outboard@127.0.0.1:" + remotePorts[0]);
    List<InProcessNode> started = new ArrayList<>();
    try {
      for (int i = 0; i < count; i++) {
        Map<String, Object> settings = new HashMap<>(overrides);
        settings.put("pekko.remote.artery.canonical.hostname", "127.0.0.1");
        settings.put("pekko.remote.artery.canonical.port", remotePorts[i]);
        settings.put("pekko.cluster.seed-nodes", seeds);
        started.add(InProcessNode.start(dbUrl, settings));
      }
      ClusterNodes cluster = new ClusterNodes(started);
      cluster.awaitMembersUp(count);
      return cluster;
    } catch (IOException | RuntimeException | Error e) {
      new ClusterNodes(started).close();
      throw e;
    }
  }

  public InProcessNode get(int index) {
    return nodes.get(index);
  }

  public List<InProcessNode> all() {
    return nodes;
  }

  public int size() {
    return nodes.size();
  }

  /** Waits until every node sees {@code count} members, all Up. */
  public void awaitMembersUp(int count) {
    long deadline = System.nanoTime() + FORMED_TIMEOUT.toNanos();
    while (true) {
      boolean formed = true;
      for (InProcessNode node : nodes) {
        var state = Cluster.get(node.system()).state();
        int up = 0;
        for (var m : state.getMembers()) if (m.status() == MemberStatus.up()) up++;
        if (up != count || !state.getUnreachable().isEmpty()) formed = false;
      }
      if (formed) return;
      if (System.nanoTime() > deadline) {
        StringBuilder sb = new StringBuilder();
        for (InProcessNode node : nodes)
          sb.append("\n  ").append(Cluster.get(node.system()).state());
        throw new IllegalStateException(
            "the cluster did not form "
                + count
                + " Up members within "
                + FORMED_TIMEOUT
                + ":"
                + sb);
      }
      sleep(100);
    }
  }

  /** The ids of the {@code type} entities that run on {@code node} right now. */
  public static Set<String> entitiesOn(InProcessNode node, EntityTypeKey<?> type) {
    return entitiesOn(node.system(), type);
  }

  public static Set<String> entitiesOn(ActorSystem<?> system, EntityTypeKey<?> type) {
    try {
      ShardRegion.CurrentShardRegionState state =
          AskPattern
              .<org.apache.pekko.cluster.sharding.typed.ClusterShardingQuery,
                  ShardRegion.CurrentShardRegionState>
                  ask(
                      ClusterSharding.get(system).shardState(),
                      replyTo -> new GetShardRegionState(type, replyTo),
                      Duration.ofSeconds(5),
                      system.scheduler())
              .toCompletableFuture()
              .get(10, TimeUnit.SECONDS);
      Set<String> ids = new HashSet<>();
      for (ShardRegion.ShardState shard : state.getShards()) ids.addAll(shard.getEntityIds());
      return ids;
    } catch (Exception e) {
      throw new IllegalStateException(
          "could not read the " + type.name() + " shard region state", e);
    }
  }

  /** The index of the node that runs entity {@code id} of {@code type}, or -1 if none does. */
  public int hostOf(EntityTypeKey<?> type, String id) {
    int host = -1;
    for (int i = 0; i < nodes.size(); i++) {
      if (entitiesOn(nodes.get(i), type).contains(id)) {
        if (host >= 0)
          throw new AssertionError(
              type.name() + " entity " + id + " runs on node " + host + " and node " + i);
        host = i;
      }
    }
    return host;
  }

  @Override
  public void close() {
    for (int i = nodes.size() - 1; i >= 0; i--) {
      try {
        nodes.get(i).close();
      } catch (RuntimeException e) {
        System.err.println("[ClusterNodes] closing node " + i + " failed: " + e);
      }
    }
  }

  private static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }
}
