package dev.outboard.testing;

import dev.outboard.store.Database;
import java.util.HashMap;
import java.util.Map;
import org.apache.pekko.actor.typed.ActorSystem;

/**
 * A JUnit 5 extension: one {@link InProcessNode} on a {@link FreshDatabase}, started before the
 * class's {@code @BeforeAll} methods and closed after its {@code @AfterAll} methods.
 *
 * <pre>{@code
 * @RegisterExtension
 * static final PostgresNode node = PostgresNode.create().with("outboard.http.max-body-bytes", "64KiB");
 * }</pre>
 *
 * Without PostgreSQL the class's tests are skipped as {@link FreshDatabase} says.
 */
public final class PostgresNode extends FreshDatabase.Running<InProcessNode> {
  private final Map<String, Object> overrides = new HashMap<>();

  private PostgresNode() {}

  public static PostgresNode create() {
    return new PostgresNode();
  }

  /** Overrides config {@code path} for the node (see {@link InProcessNode#start}). */
  public PostgresNode with(String path, Object value) {
    overrides.put(path, value);
    return this;
  }

  @Override
  InProcessNode start(TestPostgres postgres) throws Exception {
    return InProcessNode.start(postgres.url(), overrides);
  }

  /** The running node (during the class's tests). */
  public InProcessNode node() {
    return running();
  }

  public String baseUrl() {
    return node().baseUrl();
  }

  public ActorSystem<Void> system() {
    return node().system();
  }

  /** The node's database pool. */
  public Database database() {
    return node().database();
  }

  /** A client with the admin token. */
  public ApiClient admin() {
    return node().admin();
  }

  /** A client with {@code key} (null: no key). */
  public ApiClient client(String key) {
    return node().client(key);
  }
}
