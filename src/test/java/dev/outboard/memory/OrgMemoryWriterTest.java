package dev.outboard.memory;

import static org.assertj.core.api.Assertions.assertThat;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.outboard.memory.OrgFileOp.Origin;
import dev.outboard.memory.OrgFileOp.Outcome;
import dev.outboard.store.Database;
import dev.outboard.store.Migrations;
import dev.outboard.store.StoreSettings;
import dev.outboard.testing.TestPostgres;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.UUID;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.opentest4j.TestAbortedException;

/**
 * {@link OrgMemory} on a fresh PostgreSQL database, with the database blocked where a test needs
 * it: another connection holds {@code org_files} in ACCESS EXCLUSIVE mode, so the writer's
 * transaction waits exactly as it would behind a stuck database, and the writes sent meanwhile
 * queue up behind it.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class OrgMemoryWriterTest {
  private static final Duration AWAIT = Duration.ofSeconds(10);
  private static final Origin API = new Origin(null, null, null);

  private TestPostgres postgres;
  private ActorTestKit kit;
  private Database db;
  private OrgFileStore store;
  private TestAbortedException noPostgres;

  @BeforeAll
  void start() {
    try {
      postgres = TestPostgres.create();
    } catch (TestAbortedException e) {
      noPostgres = e;
      return;
    }
    Config config = ConfigFactory.parseResources("unit-test.conf").withFallback(ConfigFactory.load()).resolve();
    kit = ActorTestKit.create("OrgMemoryWriterTest", config);
    db = new Database(new StoreSettings(postgres.url(), postgres.user(), "", Path.of("."), false, 4),
        kit.system().dispatchers().lookup(DispatcherSelector.fromConfig("outboard-blocking-dispatcher")));
    Migrations.migrate(db.dataSource(), true);
    store = new OrgFileStore(db, 256 * 1024);
  }

  @BeforeEach
  void needsPostgres() {
    if (noPostgres != null) throw noPostgres;
  }

  @AfterAll
  void stop() {
    if (kit != null) kit.shutdownTestKit();
    if (db != null) db.close();
    if (postgres != null) postgres.close();
  }

  // ------------------------------------------------------------------ fixtures

  /** A writer of a new org, spawned directly (sharding plays no part in what is tested here). */
  private final class Writer {
    final String org = "org-" + UUID.randomUUID();
    final ActorRef<OrgMemory.Command> ref =
        kit.spawn(OrgMemory.create(org, kit.<ClusterSharding.ShardCommand>createTestProbe().ref(), store, Duration.ofMinutes(1)));

    TestProbe<Outcome> write(String path, String content) {
      TestProbe<Outcome> reply = kit.createTestProbe();
      ref.tell(new OrgMemory.Apply(new OrgFileOp.Write(OrgFileStore.MEMORY, path, content, null), API, reply.ref()));
      return reply;
    }

    boolean exists(String path) {
      return store.read(org, OrgFileStore.MEMORY, path).toCompletableFuture().join().isPresent();
    }

    int versions(String path) {
      return store.history(org, OrgFileStore.MEMORY, path).toCompletableFuture().join().size();
    }
  }

  /** Holds org_files locked from another connection until closed: every org write waits behind it. */
  private final class Blockage implements AutoCloseable {
    final Connection c;

    Blockage() throws SQLException {
      c = postgres.connection();
      c.setAutoCommit(false);
      try (Statement st = c.createStatement()) {
        st.execute("LOCK TABLE org_files IN ACCESS EXCLUSIVE MODE");
      }
    }

    @Override
    public void close() throws SQLException {
      c.rollback();
      c.close();
    }
  }

  /** Until the writer's transaction waits on the lock (so that what is sent next queues behind it). */
  private void awaitWaitingOnLock() throws SQLException {
    long deadline = System.nanoTime() + AWAIT.toNanos();
    try (Connection c = postgres.connection(); Statement st = c.createStatement()) {
      while (System.nanoTime() < deadline) {
        var rs = st.executeQuery("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
        rs.next();
        if (rs.getInt(1) > 0) return;
        pause(10);
      }
    }
    throw new AssertionError("the writer's transaction never waited on the lock");
  }

  private static void pause(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  // ------------------------------------------------------------------ group commit

  @Test
  void aBadWriteInAGroupFailsAloneAndTheGoodOneIsApplied() throws SQLException {
    Writer w = new Writer();
    TestProbe<Outcome> first;
    TestProbe<Outcome> good;
    TestProbe<Outcome> bad;
    try (Blockage blocked = new Blockage()) {
      first = w.write("first.md", "goes alone");
      awaitWaitingOnLock();
      // These two queue behind it and go together in the next transaction; PostgreSQL refuses
      // the NUL in the second one's text, which fails that whole transaction.
      good = w.write("good.md", "fine");
      bad = w.write("bad.md", "a NUL \u0000 here");
      pause(100);
    }
    assertThat(first.receiveMessage(AWAIT).ok()).isTrue();
    Outcome goodOutcome = good.receiveMessage(AWAIT);
    assertThat(goodOutcome.ok()).as(goodOutcome.toString()).isTrue();
    Outcome badOutcome = bad.receiveMessage(AWAIT);
    assertThat(badOutcome.ok()).isFalse();
    assertThat(badOutcome.message()).contains("nothing was written");
    assertThat(w.exists("good.md")).isTrue();
    assertThat(w.exists("bad.md")).isFalse();
    assertThat(w.versions("bad.md")).isZero();
  }
}
