package dev.outboard.testing;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityTypeKey;

/**
 * A JUnit 5 extension: {@link ClusterNodes} (one Pekko cluster of in-process nodes) on a {@link
 * FreshDatabase}, formed before the class's {@code @BeforeAll} methods and closed after its
 * {@code @AfterAll} methods: {@code @RegisterExtension static final PostgresCluster cluster =
 * PostgresCluster.of(2).with(...);}. Without PostgreSQL the class's tests are skipped as {@link
 * FreshDatabase} says.
 */
public final class PostgresCluster extends FreshDatabase.Running<ClusterNodes> {
  private final int count;
  private final Map<String, Object> overrides = new HashMap<>();

  private PostgresCluster(int count) {
    this.count = count;
  }

  /** A cluster of {@code count} nodes. */
  public static PostgresCluster of(int count) {
    return new PostgresCluster(count);
  }

  /** Overrides config {@code path} on every node (see {@link InProcessNode#start}). */
  public PostgresCluster with(String path, Object value) {
    overrides.put(path, value);
    return this;
  }

  @Override
  ClusterNodes start(TestPostgres postgres) throws Exception {
    return ClusterNodes.start(postgres.url(), count, overrides);
  }

  /** The running cluster (during the class's tests). */
  public ClusterNodes nodes() {
    return running();
  }

  public InProcessNode get(int index) {
    return nodes().get(index);
  }

  public List<InProcessNode> all() {
    return nodes().all();
  }

  /** The index of the node that hosts entity {@code entityId} (see {@link ClusterNodes}). */
  public int hostOf(EntityTypeKey<?> key, String entityId) {
    return nodes().hostOf(key, entityId);
  }
}
