package dev.outboard.sandbox;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.sandbox.bwrap.BwrapSandboxProvider;
import dev.outboard.store.Database;
import dev.outboard.store.Migrations;
import dev.outboard.store.StoreSettings;
import dev.outboard.testing.Sandboxes;
import dev.outboard.testing.TestPostgres;
import dev.outboard.tools.ToolCatalog;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Hibernation snapshots in the store: a sandbox hibernates, its session's handle goes away, and a
 * new handle on another provider (another node, or the same one after a restart: the old sandbox id
 * is unknown there) replaces the gone sandbox from the stored snapshot. The store itself is also
 * checked on PostgreSQL when one is running.
 */
class SandboxSnapshotStoreTest {
  static final Duration WAIT = Duration.ofSeconds(30);
  static final ObjectMapper JSON = new ObjectMapper();
  static ActorTestKit testKit;
  static ExecutorService blocking;
  static Database db;
  static SnapshotStore store;

  @BeforeAll
  static void start() {
    testKit = ActorTestKit.create();
    blocking = Executors.newFixedThreadPool(2);
    db =
        new Database(
            new StoreSettings(
                "jdbc:h2:mem:snapshots-" + UUID.randomUUID() + ";DB_CLOSE_DELAY=-1",
                "sa",
                "",
                Path.of("target"),
                false,
                2),
            blocking);
    Migrations.migrate(db.dataSource(), false);
    store = new SnapshotStore(db);
  }

  @AfterAll
  static void stop() {
    if (testKit != null) testKit.shutdownTestKit();
    if (db != null) db.close();
    if (blocking != null) blocking.shutdownNow();
  }

  @Test
  void theStoreKeepsOneSnapshotPerSessionOnH2() {
    roundTrip(store);
  }

  @Test
  void theStoreKeepsOneSnapshotPerSessionOnPostgres() {
    try (TestPostgres pg = TestPostgres.create();
        Database postgres =
            new Database(
                new StoreSettings(pg.url(), pg.user(), "", Path.of("target"), false, 2),
                blocking)) {
      Migrations.migrate(postgres.dataSource(), true);
      roundTrip(new SnapshotStore(postgres));
    }
  }

  private static void roundTrip(SnapshotStore s) {
    String session = "s-" + UUID.randomUUID();
    assertThat(join(s.load(session))).isEmpty();
    byte[] big = new byte[3 * 1024 * 1024];
    for (int i = 0; i < big.length; i++) big[i] = (byte) (i * 31);
    join(s.save(session, "sbx-1", "first".getBytes(StandardCharsets.UTF_8)));
    join(s.save(session, "sbx-2", big));
    Optional<SnapshotStore.Snapshot> loaded = join(s.load(session));
    assertThat(loaded).isPresent();
    assertThat(loaded.get().sandboxId()).isEqualTo("sbx-2");
    assertThat(loaded.get().bytes()).isEqualTo(big);
    assertThat(loaded.get().takenAt()).isNotNull();
    join(s.delete(session));
    assertThat(join(s.load(session))).isEmpty();
  }

  @Test
  void aNewHandleReplacesAGoneSandboxFromTheStoredSnapshot() throws Exception {
    Path dir1 = Files.createTempDirectory("snap-node1-");
    Path dir2 = Files.createTempDirectory("snap-node2-");
    ExecutorService io = Executors.newCachedThreadPool();
    try (BwrapSandboxProvider first = new BwrapSandboxProvider(dir1, io);
        BwrapSandboxProvider second = new BwrapSandboxProvider(dir2, io)) {
      Sandboxes.requireBwrap(SandboxSnapshotStoreTest.class);
      SandboxSettings settings =
          new SandboxSettings(
              new Limits(
                  512L * 1024 * 1024,
                  128,
                  Duration.ofMinutes(1),
                  256 * 1024,
                  Duration.ofSeconds(30)),
              Duration.ofMillis(200),
              Duration.ofMillis(500));
      String session = "s-" + UUID.randomUUID();

      // Node 1: write a file, go idle until hibernated (the snapshot is stored before that is
      // reported).
      TestProbe<SandboxHandle.Report> reports1 = testKit.createTestProbe();
      ActorRef<SandboxHandle.Command> handle1 =
          testKit.spawn(
              SandboxHandle.create(first, settings, reports1.ref(), null, null, store, session));
      SandboxHandle.Result wrote =
          run(handle1, "c1", "write", Map.of("path", "/workspace/keep.txt", "content", "kept\n"));
      assertThat(wrote.isError()).as(wrote.content()).isFalse();
      String[] firstId = new String[1];
      reports1.fishForMessage(
          WAIT,
          r -> {
            if (r.sandboxId() != null) firstId[0] = r.sandboxId();
            return r.state().equals("hibernated")
                ? FishingOutcomes.complete()
                : FishingOutcomes.continueAndIgnore();
          });
      Optional<SnapshotStore.Snapshot> stored = join(store.load(session));
      assertThat(stored).isPresent();
      assertThat(stored.get().sandboxId()).isEqualTo(firstId[0]);
      testKit.stop(handle1);

      // Node 2 (or node 1 restarted): the recorded sandbox id is unknown, so it is gone.
      TestProbe<SandboxHandle.Report> reports2 = testKit.createTestProbe();
      ActorRef<SandboxHandle.Command> handle2 =
          testKit.spawn(
              SandboxHandle.create(
                  second, settings, reports2.ref(), firstId[0], "hibernated", store, session));
      SandboxHandle.Result lost =
          run(handle2, "c2", "bash", Map.of("command", "echo ran >> /workspace/ran.txt"));
      assertThat(lost.isError()).isTrue();
      assertThat(lost.content())
          .startsWith("interrupted: the sandbox was lost")
          .endsWith("its workspace restored from the last snapshot");
      SandboxHandle.Report replaced =
          reports2
              .fishForMessage(
                  WAIT,
                  r ->
                      r.replacedId() != null
                          ? FishingOutcomes.complete()
                          : FishingOutcomes.continueAndIgnore())
              .get(0);
      assertThat(replaced.replacedId()).isEqualTo(firstId[0]);
      assertThat(replaced.sandboxId()).isNotEqualTo(firstId[0]);

      SandboxHandle.Result read = run(handle2, "c3", "read", Map.of("path", "/workspace/keep.txt"));
      assertThat(read.isError()).as(read.content()).isFalse();
      assertThat(read.content()).contains("1\tkept");
      // The interrupted command was not run again on the replacement.
      SandboxHandle.Result ran = run(handle2, "c4", "bash", Map.of("command", "ls /workspace"));
      assertThat(ran.content()).contains("keep.txt").doesNotContain("ran.txt");

      // The session ended: sandbox and stored snapshot go.
      handle2.tell(SandboxHandle.Destroy.INSTANCE);
      long deadline = System.nanoTime() + WAIT.toNanos();
      while (join(store.load(session)).isPresent() && System.nanoTime() < deadline)
        Thread.sleep(50);
      assertThat(join(store.load(session))).isEmpty();
    } finally {
      io.shutdownNow();
    }
  }

  private static SandboxHandle.Result run(
      ActorRef<SandboxHandle.Command> handle,
      String callId,
      String tool,
      Map<String, Object> input) {
    TestProbe<SandboxHandle.Result> reply = testKit.createTestProbe();
    handle.tell(
        new SandboxHandle.Run(
            callId, ToolCatalog.parse(tool, JSON.valueToTree(input)), 100_000, reply.ref()));
    return reply.receiveMessage(WAIT);
  }

  private static <T> T join(java.util.concurrent.CompletionStage<T> stage) {
    return stage.toCompletableFuture().join();
  }
}
