package dev.outboard.sandbox;

import static org.assertj.core.api.Assertions.assertThat;

import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.sandbox.bwrap.BwrapSandboxProvider;
import dev.outboard.session.SessionIndex;
import dev.outboard.store.Database;
import dev.outboard.store.Migrations;
import dev.outboard.store.StoreSettings;
import dev.outboard.testing.Sandboxes;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.PosixFilePermissions;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.Collection;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.stream.Stream;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Lost and orphaned sandboxes do not stay for ever (issue 13, defect 5). A provider holds four
 * sandboxes when it restarts (the sandbox host was away): one of a running session, one of a
 * session that ended meanwhile, one that no session holds and that has been unused for three hours
 * (a replaced sandbox that never answered salvage), and a fresh one no session lists yet. The
 * restarted provider finds them all on disk; the sweep destroys the ended session's and the
 * abandoned one, and keeps the others. The sessions list is the real one (its sandbox column, on
 * H2).
 */
class SandboxSweeperTest {
  static final Limits LIMITS =
      new Limits(512L << 20, 128, Duration.ofMinutes(1), 256 * 1024, Duration.ofSeconds(30));
  static ActorTestKit testKit;
  static ExecutorService io;
  static Database db;

  @BeforeAll
  static void start() {
    testKit = ActorTestKit.create();
    io = Executors.newCachedThreadPool();
    db =
        new Database(
            new StoreSettings(
                "jdbc:h2:mem:sweep-" + UUID.randomUUID() + ";DB_CLOSE_DELAY=-1",
                "sa",
                "",
                Path.of("target"),
                false,
                2),
            io);
    Migrations.migrate(db.dataSource(), false);
  }

  @AfterAll
  static void stop() {
    if (testKit != null) testKit.shutdownTestKit();
    if (db != null) db.close();
    if (io != null) io.shutdownNow();
  }

  @Test
  void theSweepDestroysTheSandboxesOfEndedSessionsAndAbandonedOnesAndKeepsTheRest()
      throws Exception {
    Sandboxes.requireBwrap(SandboxSweeperTest.class);
    Path root = Files.createTempDirectory("sweep-");
    Files.setPosixFilePermissions(root, PosixFilePermissions.fromString("rwx--x--x"));
    Path dir = root.resolve("sandboxes");
    String running;
    String ended;
    String abandoned;
    String fresh;
    try (BwrapSandboxProvider before = new BwrapSandboxProvider(dir, io)) {
      running = join(before.create(LIMITS, null));
      ended = join(before.create(LIMITS, null));
      abandoned = join(before.create(LIMITS, null));
      fresh = join(before.create(LIMITS, null));
      join(before.exec(abandoned, "toolu_1", "echo x > /workspace/x", null));
    } // the host goes away; the workspaces stay
    backdate(dir.resolve(abandoned), Instant.now().minus(Duration.ofHours(3)));
    backdate(
        dir.resolve(running),
        Instant.now().minus(Duration.ofHours(3))); // idle, but its session runs
    listSession("s-running", "running", running);
    listSession("s-ended", "completed", ended);

    SessionIndex index = new SessionIndex(db, Duration.ofHours(1));
    try (BwrapSandboxProvider after = new BwrapSandboxProvider(dir, io)) {
      assertThat(join(after.held()).stream().map(SandboxProvider.Held::id))
          .containsExactlyInAnyOrder(running, ended, abandoned, fresh);
      SandboxSweeper sweeper =
          new SandboxSweeper(
              testKit.system(),
              after,
              new SandboxSweeper.Owners() {
                @Override
                public CompletionStage<Map<String, String>> of(Collection<String> ids) {
                  return index.sandboxOwners(ids);
                }

                @Override
                public boolean finished(String status) {
                  return SessionIndex.finished(status);
                }
              },
              Duration.ofMinutes(1),
              Duration.ofHours(2));
      SandboxSweeper.Swept swept = join(sweeper.sweep());
      assertThat(swept.destroyed()).containsExactlyInAnyOrder(ended, abandoned);
      assertThat(swept.kept()).isEqualTo(2);
      assertThat(dir.resolve(ended)).doesNotExist();
      assertThat(dir.resolve(abandoned)).doesNotExist();
      assertThat(dir.resolve(running).resolve("workspace")).isDirectory();
      assertThat(dir.resolve(fresh).resolve("workspace")).isDirectory();
      // A second sweep finds nothing more to do.
      assertThat(join(sweeper.sweep()).destroyed()).isEmpty();
    }
  }

  private static void backdate(Path sandboxDir, Instant at) throws Exception {
    try (Stream<Path> all = Files.walk(sandboxDir)) {
      for (Path p : all.toList()) Files.setLastModifiedTime(p, FileTime.from(at));
    }
  }

  private static void listSession(String id, String status, String sandboxId) {
    join(db.transact(c -> insert(c, id, status, sandboxId)));
  }

  private static Integer insert(Connection c, String id, String status, String sandboxId)
      throws java.sql.SQLException {
    try (PreparedStatement ps =
        c.prepareStatement(
            "INSERT INTO session_index (id, org_id, status, seq, created_at, updated_at, "
                + "summary, sandbox_id) VALUES (?, 'org', ?, 1, ?, ?, '{}', ?)")) {
      OffsetDateTime now = OffsetDateTime.now(ZoneOffset.UTC);
      ps.setString(1, id);
      ps.setString(2, status);
      ps.setObject(3, now);
      ps.setObject(4, now);
      ps.setString(5, sandboxId);
      return ps.executeUpdate();
    }
  }

  private static <T> T join(CompletionStage<T> stage) {
    return stage.toCompletableFuture().join();
  }
}
