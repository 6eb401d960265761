package dev.outboard.memory;

import static org.assertj.core.api.Assertions.assertThat;

import dev.outboard.memory.OrgFileOp.Origin;
import dev.outboard.memory.OrgFileOp.Outcome;
import dev.outboard.store.Database;
import dev.outboard.store.Migrations;
import dev.outboard.store.StoreSettings;
import dev.outboard.testing.FreshDatabase;
import dev.outboard.testing.UnitTestConfig;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.extension.RegisterExtension;
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

  @RegisterExtension static final FreshDatabase postgres = FreshDatabase.create();

  private ActorTestKit kit;
  private Database db;
  private OrgFileStore store;

  @BeforeAll
  void start() {
    kit = ActorTestKit.create("OrgMemoryWriterTest", UnitTestConfig.local());
    db =
        new Database(
            new StoreSettings(postgres.url(), postgres.user(), "", Path.of("."), false, 4),
            kit.system()
                .dispatchers()
                .lookup(DispatcherSelector.fromConfig("outboard-blocking-dispatcher")));
    Migrations.migrate(db.dataSource(), true);
    store = new OrgFileStore(db, 256 * 1024);
  }

  @AfterAll
  void stop() {
    if (kit != null) kit.shutdownTestKit();
    if (db != null) db.close();
  }

  // ------------------------------------------------------------------ fixtures

  /** A writer of a new org, spawned directly (sharding plays no part in what is tested here). */
  private final class Writer {
    final String org = "org-" + UUID.randomUUID();
    final ActorRef<OrgMemory.Command> ref;

    Writer() {
      this(store, 1000);
    }

    Writer(OrgFileStore store, int maxQueuedWrites) {
      ref =
          kit.spawn(
              OrgMemory.create(
                  org,
                  kit.<ClusterSharding.ShardCommand>createTestProbe().ref(),
                  store,
                  new OrgMemory.Settings(Duration.ofMinutes(1), maxQueuedWrites)));
    }

    TestProbe<Outcome> write(String path, String content) {
      return write(path, content, Duration.ofSeconds(30));
    }

    /** A write whose caller waits {@code waits} for the writer to take it. */
    TestProbe<Outcome> write(String path, String content, Duration waits) {
      TestProbe<Outcome> reply = kit.createTestProbe();
      ref.tell(
          new OrgMemory.Apply(
              new OrgFileOp.Write(OrgFileStore.MEMORY, path, content, null),
              API,
              Instant.now().plus(waits),
              reply.ref()));
      return reply;
    }

    boolean exists(String path) {
      return store.read(org, OrgFileStore.MEMORY, path).toCompletableFuture().join().isPresent();
    }

    int versions(String path) {
      return store.history(org, OrgFileStore.MEMORY, path).toCompletableFuture().join().size();
    }
  }

  /**
   * Holds org_files locked from another connection until closed: every org write waits behind it.
   */
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

  /**
   * Until the writer's transaction waits on the lock (so that what is sent next queues behind it).
   */
  private void awaitWaitingOnLock() throws SQLException {
    long deadline = System.nanoTime() + AWAIT.toNanos();
    try (Connection c = postgres.connection();
        Statement st = c.createStatement()) {
      while (System.nanoTime() < deadline) {
        var rs =
            st.executeQuery(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND"
                    + " wait_event_type = 'Lock'");
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

  /**
   * A database restart is ridden out: the write goes again until its caller stops waiting, and
   * lands once.
   */
  @Test
  void aWriteSentWhileTheDatabaseRestartsLandsOnceItIsBack() throws Exception {
    dev.outboard.testing.PostgresControl.Availability local =
        dev.outboard.testing.PostgresControl.local();
    if (local.control().isEmpty()) {
      String why = "cannot restart PostgreSQL here: " + local.reason();
      if ("true".equalsIgnoreCase(System.getenv("CI")))
        org.junit.jupiter.api.Assertions.fail(why + "; CI=true requires it");
      System.err.println("SKIPPED " + getClass().getSimpleName() + ": " + why);
      throw new TestAbortedException(why);
    }
    Writer w = new Writer();
    assertThat(w.write("before.md", "warm").receiveMessage(AWAIT).ok()).isTrue();
    Thread restart = new Thread(() -> local.control().get().restart(), "pg-restart");
    restart.start();
    try {
      Thread.sleep(150); // the restart is under way: connections are cut, then refused
      Outcome during =
          w.write("during.md", "landed", Duration.ofSeconds(30))
              .receiveMessage(Duration.ofSeconds(45));
      assertThat(during.ok()).as(during.message()).isTrue();
    } finally {
      restart.join(120_000);
    }
    assertThat(store.read(w.org, OrgFileStore.MEMORY, "during.md").toCompletableFuture().join())
        .hasValueSatisfying(f -> assertThat(f.content()).isEqualTo("landed"));
    assertThat(store.history(w.org, OrgFileStore.MEMORY, "during.md").toCompletableFuture().join())
        .hasSize(1);
  }

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
      // the second one's call id (longer than its column), which fails that whole transaction.
      good = w.write("good.md", "fine");
      bad = kit.createTestProbe();
      w.ref.tell(
          new OrgMemory.Apply(
              new OrgFileOp.Write(OrgFileStore.MEMORY, "bad.md", "fine too", null),
              new Origin("alice", "s-1", "c".repeat(200)),
              Instant.now().plus(Duration.ofSeconds(30)),
              bad.ref()));
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

  // ------------------------------------------------------------------ a database that does not
  // answer

  @Test
  void writesBeyondTheQueueBoundAreRefusedAtOnceAndTheQueuedOnesLandLater() throws SQLException {
    Writer w = new Writer(store, 3);
    TestProbe<Outcome> first;
    List<TestProbe<Outcome>> queued = new ArrayList<>();
    List<TestProbe<Outcome>> beyond = new ArrayList<>();
    try (Blockage blocked = new Blockage()) {
      first = w.write("first.md", "in the transaction that waits");
      awaitWaitingOnLock();
      for (int i = 0; i < 3; i++) queued.add(w.write("queued-" + i + ".md", "x"));
      for (int i = 0; i < 2; i++) beyond.add(w.write("beyond-" + i + ".md", "x"));
      for (TestProbe<Outcome> p : beyond) {
        Outcome o = p.receiveMessage(Duration.ofSeconds(2)); // while the database still blocks
        assertThat(o.ok()).isFalse();
        assertThat(o.code()).isEqualTo("overloaded");
        assertThat(o.message()).contains("nothing was written");
      }
      for (TestProbe<Outcome> p : queued) p.expectNoMessage(Duration.ofMillis(50));
    }
    assertThat(first.receiveMessage(AWAIT).ok()).isTrue();
    for (TestProbe<Outcome> p : queued) assertThat(p.receiveMessage(AWAIT).ok()).isTrue();
    for (int i = 0; i < 3; i++) assertThat(w.exists("queued-" + i + ".md")).isTrue();
    for (int i = 0; i < 2; i++) assertThat(w.versions("beyond-" + i + ".md")).isZero();
  }

  @Test
  void aWriteWhoseCallerStoppedWaitingWhileItQueuedIsNeverApplied() throws SQLException {
    Writer w = new Writer();
    TestProbe<Outcome> first;
    TestProbe<Outcome> late;
    try (Blockage blocked = new Blockage()) {
      first = w.write("first.md", "in the transaction that waits");
      awaitWaitingOnLock();
      late = w.write("late.md", "its caller waits 200 ms", Duration.ofMillis(200));
      pause(600);
    }
    assertThat(first.receiveMessage(AWAIT).ok()).isTrue();
    Outcome o = late.receiveMessage(AWAIT);
    assertThat(o.ok()).isFalse();
    assertThat(o.code()).isEqualTo("timed_out");
    assertThat(o.message()).contains("not written: timed out waiting for the org's writer");
    // Nothing lands later either: the writer is idle, and a write after it goes through.
    assertThat(w.write("after.md", "x").receiveMessage(AWAIT).ok()).isTrue();
    assertThat(w.exists("late.md")).isFalse();
    assertThat(w.versions("late.md")).isZero();
  }

  @Test
  void aTransactionThatTheDatabaseHoldsUpIsAbandonedWithinItsBoundAndWritesNothing()
      throws SQLException {
    OrgFileStore bounded = new OrgFileStore(db, 256 * 1024, Duration.ofMillis(500));
    Writer w = new Writer(bounded, 1000);
    try (Blockage blocked = new Blockage()) {
      long start = System.nanoTime();
      TestProbe<Outcome> stuck = w.write("stuck.md", "x", Duration.ofMillis(100));
      Outcome o = stuck.receiveMessage(Duration.ofSeconds(3)); // the lock is still held
      assertThat(o.ok()).isFalse();
      assertThat(o.message()).contains("nothing was written");
      assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofMillis(1500));
    }
    pause(200); // the abandoned backend gets the lock now, and its transaction must not commit
    assertThat(w.exists("stuck.md")).isFalse();
    assertThat(w.versions("stuck.md")).isZero();
    assertThat(w.write("after.md", "x").receiveMessage(AWAIT).ok()).isTrue();
  }
}
