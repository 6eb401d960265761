package dev.outboard.memory;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.outboard.Json;
import dev.outboard.memory.OrgFileOp.Origin;
import dev.outboard.memory.OrgFileOp.Outcome;
import dev.outboard.model.Block;
import dev.outboard.model.ModelClients;
import dev.outboard.model.ModelSpec;
import dev.outboard.model.ModelSpec.ScriptedCall;
import dev.outboard.model.ModelSpec.ScriptedTurn;
import dev.outboard.model.ScriptedModel;
import dev.outboard.model.Usage;
import dev.outboard.session.SessionEntity;
import dev.outboard.session.SessionEntity.Command;
import dev.outboard.session.SessionEntity.Event;
import dev.outboard.session.SessionEntity.ModelResponded;
import dev.outboard.session.SessionEntity.SessionStarted;
import dev.outboard.session.SessionEntity.ToolCallCompleted;
import dev.outboard.session.SessionEntity.ToolCallStarted;
import dev.outboard.session.SessionFiles;
import dev.outboard.session.SessionServices;
import dev.outboard.session.SessionSettings;
import dev.outboard.session.SessionSpec;
import dev.outboard.session.SessionState;
import dev.outboard.session.SessionStatus;
import dev.outboard.store.Database;
import dev.outboard.store.Migrations;
import dev.outboard.store.StoreSettings;
import dev.outboard.testing.FreshDatabase;
import dev.outboard.testing.TestServices;
import dev.outboard.testing.UnitTestConfig;
import dev.outboard.vfs.Namespace;
import dev.outboard.vfs.PathRouter;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.apache.pekko.persistence.testkit.javadsl.EventSourcedBehaviorTestKit;
import org.apache.pekko.persistence.typed.PersistenceId;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * DESIGN.md §3: an org-file write is idempotent by (session, call), so a tool call started but not
 * completed when the harness died is replayed without writing twice. The crash is simulated without
 * a race: the write is committed exactly as the session would commit it, then the session is
 * recovered from the journal it would have left (the call started, no result). The session runs on
 * the persistence testkit; OrgMemory is sharded on a one-node cluster; the org files are in a fresh
 * PostgreSQL database.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class OrgMemoryReplayTest {
  private static final Duration AWAIT = Duration.ofSeconds(20);
  private static final String ORG = "replay";
  private static final String USER = "alice";
  private static final SessionSettings SETTINGS =
      new SessionSettings(
          Duration.ofMinutes(2),
          500,
          10_000,
          500,
          new SessionFiles.Limits(1 << 20, 8 << 20, 256 * 1024));

  @RegisterExtension static final FreshDatabase postgres = FreshDatabase.create();

  private ActorTestKit kit;
  private Database db;
  private OrgFileStore store;
  private OrgFiles orgFiles;

  @BeforeAll
  void start() {
    Map<String, Object> cluster = new HashMap<>();
    cluster.put("pekko.actor.provider", "cluster");
    cluster.put("pekko.remote.artery.canonical.hostname", "127.0.0.1");
    cluster.put("pekko.remote.artery.canonical.port", 0);
    cluster.put("pekko.cluster.seed-nodes", List.of());
    cluster.put("pekko.cluster.jmx.multi-mbeans-in-same-jvm", "on");
    Config config =
        ConfigFactory.parseMap(cluster)
            .withFallback(UnitTestConfig.inMemoryPersistence())
            .resolve();
    kit = ActorTestKit.create("OrgMemoryReplayTest", config);
    Cluster node = Cluster.get(kit.system());
    node.manager().tell(Join.create(node.selfMember().address()));
    long deadline = System.nanoTime() + AWAIT.toNanos();
    while (node.selfMember().status() != MemberStatus.up()) {
      if (System.nanoTime() > deadline) fail("the one-node cluster did not come up");
      pause(20);
    }

    db =
        new Database(
            new StoreSettings(postgres.url(), postgres.user(), "", Path.of("."), false, 4),
            kit.system()
                .dispatchers()
                .lookup(DispatcherSelector.fromConfig("outboard-blocking-dispatcher")));
    Migrations.migrate(db.dataSource(), true);
    store = new OrgFileStore(db, 256 * 1024);
    OrgMemory.init(kit.system(), store, new OrgMemory.Settings(Duration.ofMinutes(5), 1000));
    orgFiles =
        new OrgFiles(
            kit.system(),
            store,
            new SkillIndex(store, 4000, Duration.ofSeconds(2)),
            Duration.ofSeconds(10));
  }

  @AfterAll
  void stop() {
    if (kit != null) kit.shutdownTestKit();
    if (db != null) db.close();
  }

  // ------------------------------------------------------------------ a session recovering

  /** A session whose turn 1 writes {@code path} and whose turn 2 ends it, on the testkit. */
  private final class ReplayedSession {
    final String id = "s_replay_" + UUID.randomUUID().toString().replace("-", "");
    final String pid = PersistenceId.of(SessionEntity.ENTITY_KEY.name(), id).id();
    final JsonNode input;
    final SessionSpec spec;
    final EventSourcedBehaviorTestKit<Command, Event, SessionState> es;

    ReplayedSession(String path, String content) {
      input = Json.MAPPER.createObjectNode().put("path", path).put("content", content);
      spec =
          new SessionSpec(
              "remember this",
              new ModelSpec(
                  "scripted",
                  null,
                  List.of(
                      new ScriptedTurn("noting", List.of(new ScriptedCall("write", input)), null),
                      new ScriptedTurn("done", null, null))),
              null,
              10,
              false,
              null);
      TestProbe<ClusterSharding.ShardCommand> shard = kit.createTestProbe();
      SessionServices services =
          TestServices.builder(
                  new ModelClients("scripted", new ScriptedModel()),
                  new PathRouter(EnumSet.of(Namespace.SESSION, Namespace.MEMORY, Namespace.SKILLS)),
                  (summary, seq) -> {},
                  SETTINGS)
              .orgFiles(orgFiles)
              .build();
      es =
          EventSourcedBehaviorTestKit.create(
              kit.system(), SessionEntity.create(id, shard.ref(), services));
    }

    /** What the session would have committed to the org store before the crash. */
    Outcome commitTheWriteAsTheSessionWould(String path, String content) {
      return join(
          orgFiles.write(
              ORG,
              new OrgFileOp.Write("memory", path.substring("/memory/".length()), content, null),
              new Origin(USER, id, "toolu_1_0")));
    }

    /**
     * The journal as it stood when the node died: the call started, no result. Recovers from it.
     */
    void crashAfterToolCallStarted() {
      Instant t = Instant.parse("2025-01-01T00:00:00Z");
      es.initialize(
          new SessionStarted(id, ORG, USER, spec, t),
          new ModelResponded(
              1,
              List.of(new Block.Text("noting"), new Block.ToolUse("toolu_1_0", "write", input)),
              new Usage(10, 5, 0, 0),
              "tool_use",
              t),
          new ToolCallStarted(1, "toolu_1_0", "write", t));
    }

    SessionState awaitCompleted() {
      long deadline = System.nanoTime() + AWAIT.toNanos();
      SessionState s = es.getState();
      while (s.status() != SessionStatus.COMPLETED) {
        if (System.nanoTime() > deadline)
          fail("the session did not complete after recovery; state: " + s);
        pause(20);
        s = es.getState();
      }
      return s;
    }

    List<Event> journal() {
      return es.persistenceTestKit().persistedInStorage(pid).stream()
          .map(Event.class::cast)
          .toList();
    }

    List<ToolCallCompleted> completions() {
      return journal().stream()
          .filter(ToolCallCompleted.class::isInstance)
          .map(ToolCallCompleted.class::cast)
          .toList();
    }

    List<String> journalTypes() {
      return journal().stream().map(e -> e.getClass().getSimpleName()).toList();
    }
  }

  @Test
  void aWriteCommittedBeforeTheCrashIsNotWrittenAgainWhenItsToolCallIsReplayed() throws Exception {
    ReplayedSession s = new ReplayedSession("/memory/replay.md", "v1");
    Outcome committed = s.commitTheWriteAsTheSessionWould("/memory/replay.md", "v1");
    assertThat(committed)
        .isEqualTo(
            Outcome.done(
                "/memory/replay.md", 1, true, "wrote /memory/replay.md (version 1, 2 bytes)"));

    s.crashAfterToolCallStarted();
    SessionState state = s.awaitCompleted();

    assertThat(s.journalTypes())
        .containsExactly(
            "SessionStarted",
            "ModelResponded",
            "ToolCallStarted",
            "ToolCallCompleted",
            "ModelResponded",
            "SessionCompleted");
    assertThat(s.completions())
        .singleElement()
        .satisfies(
            c -> {
              assertThat(c.callId()).isEqualTo("toolu_1_0");
              assertThat(c.turn()).isEqualTo(1);
              assertThat(c.isError()).isFalse();
              assertThat(c.content()).isEqualTo(committed.message()).contains("version 1");
            });
    assertThat(state.messages().get(2).content())
        .containsExactly(
            new Block.ToolResult(
                "toolu_1_0", "wrote /memory/replay.md (version 1, 2 bytes)", false));
    assertStored("replay.md", s.id, 1, "v1", 1);

    // Recovering once more (the finished session) replays nothing and writes nothing.
    assertThat(s.es.restart().state()).isEqualTo(state);
    pause(200);
    assertThat(s.completions()).hasSize(1);
    assertStored("replay.md", s.id, 1, "v1", 1);
  }

  @Test
  void aWriteNotYetCommittedAtTheCrashIsWrittenExactlyOnceWhenItsToolCallIsReplayed()
      throws Exception {
    ReplayedSession s = new ReplayedSession("/memory/unwritten.md", "first");
    s.crashAfterToolCallStarted();
    SessionState state = s.awaitCompleted();

    assertThat(s.completions())
        .singleElement()
        .satisfies(
            c -> {
              assertThat(c.callId()).isEqualTo("toolu_1_0");
              assertThat(c.isError()).isFalse();
              assertThat(c.content()).isEqualTo("wrote /memory/unwritten.md (version 1, 5 bytes)");
            });
    assertStored("unwritten.md", s.id, 1, "first", 1);

    // A second crash after the write landed (the journal as before): still one version.
    s.crashAfterToolCallStarted();
    s.awaitCompleted();
    assertThat(s.completions())
        .singleElement()
        .satisfies(
            c ->
                assertThat(c.content())
                    .isEqualTo(
                        state.messages().get(2).content().stream()
                            .map(Block.ToolResult.class::cast)
                            .findFirst()
                            .orElseThrow()
                            .content()));
    assertStored("unwritten.md", s.id, 1, "first", 1);
  }

  @Test
  void aReplayAfterSomeoneElseWroteTheFileReportsTheFirstOutcomeAndOverwritesNothing()
      throws Exception {
    ReplayedSession s = new ReplayedSession("/memory/contended.md", "mine");
    Outcome committed = s.commitTheWriteAsTheSessionWould("/memory/contended.md", "mine");
    assertThat(committed.version()).isEqualTo(1);
    // While the node was down, a person replaced the file through the API.
    Outcome theirs =
        join(
            orgFiles.write(
                ORG,
                new OrgFileOp.Write("memory", "contended.md", "theirs", null),
                new Origin("bob", null, null)));
    assertThat(theirs.version()).isEqualTo(2);

    s.crashAfterToolCallStarted();
    s.awaitCompleted();
    assertThat(s.completions())
        .singleElement()
        .satisfies(c -> assertThat(c.content()).isEqualTo(committed.message()));
    assertThat(versions("contended.md")).isEqualTo(2);
    assertThat(join(store.read(ORG, "memory", "contended.md")).orElseThrow().content())
        .isEqualTo("theirs");
    assertThat(rowsForCall(s.id, "toolu_1_0")).isEqualTo(1);
  }

  // ------------------------------------------------------------------ the same call twice,
  // directly

  @Test
  void theSameCallAppliedTwiceThroughOrgMemoryYieldsOneVersionAndTheSameOutcome() throws Exception {
    seed("twice.md", "<!-- end -->\n");
    OrgFileOp edit =
        new OrgFileOp.Edit("memory", "twice.md", "<!-- end -->", "once\n<!-- end -->", false);

    // One after the other (a replay after the first ask was answered).
    Origin sequential = new Origin(USER, "s_seq", "toolu_3_0");
    Outcome first = join(orgFiles.write(ORG, edit, sequential));
    Outcome second = join(orgFiles.write(ORG, edit, sequential));
    assertThat(first.ok()).as(first.toString()).isTrue();
    assertThat(first.version()).isEqualTo(2);
    assertThat(second).isEqualTo(first);
    assertThat(versions("twice.md")).isEqualTo(2);
    assertThat(content("twice.md")).isEqualTo("once\n<!-- end -->\n");

    // At the same time (a replay racing the original ask), several rounds.
    for (int round = 1; round <= 5; round++) {
      Origin racing = new Origin(USER, "s_race", "toolu_" + round + "_0");
      OrgFileOp op =
          new OrgFileOp.Edit(
              "memory", "twice.md", "<!-- end -->", "race " + round + "\n<!-- end -->", false);
      CompletableFuture<Outcome> a = orgFiles.write(ORG, op, racing).toCompletableFuture();
      CompletableFuture<Outcome> b = orgFiles.write(ORG, op, racing).toCompletableFuture();
      Outcome oa = a.get(10, TimeUnit.SECONDS);
      Outcome ob = b.get(10, TimeUnit.SECONDS);
      assertThat(oa.ok()).as(oa.toString()).isTrue();
      assertThat(ob).as("round %d", round).isEqualTo(oa);
      assertThat(oa.version()).as("round %d", round).isEqualTo(2 + round);
      assertThat(rowsForCall("s_race", "toolu_" + round + "_0")).isEqualTo(1);
    }
    assertThat(versions("twice.md")).isEqualTo(7);
    assertThat(content("twice.md"))
        .isEqualTo("once\nrace 1\nrace 2\nrace 3\nrace 4\nrace 5\n<!-- end -->\n");
  }

  @Test
  void manyDuplicatesAmongOtherWritesEachCountOnce() throws Exception {
    seed("crowd.md", "<!-- end -->\n");
    List<CompletableFuture<Outcome>> duplicates = new ArrayList<>();
    List<CompletableFuture<Outcome>> others = new ArrayList<>();
    Origin dup = new Origin(USER, "s_dup", "toolu_1_0");
    OrgFileOp dupOp =
        new OrgFileOp.Edit("memory", "crowd.md", "<!-- end -->", "dup\n<!-- end -->", false);
    for (int i = 0; i < 20; i++) {
      duplicates.add(orgFiles.write(ORG, dupOp, dup).toCompletableFuture());
      others.add(
          orgFiles
              .write(
                  ORG,
                  new OrgFileOp.Edit(
                      "memory", "crowd.md", "<!-- end -->", "other " + i + "\n<!-- end -->", false),
                  new Origin(USER, "s_other_" + i, "toolu_1_0"))
              .toCompletableFuture());
    }
    CompletableFuture.allOf(duplicates.toArray(CompletableFuture[]::new)).get(20, TimeUnit.SECONDS);
    CompletableFuture.allOf(others.toArray(CompletableFuture[]::new)).get(20, TimeUnit.SECONDS);
    Outcome one = duplicates.get(0).get();
    assertThat(one.ok()).as(one.toString()).isTrue();
    for (CompletableFuture<Outcome> d : duplicates) assertThat(d.get()).isEqualTo(one);
    for (CompletableFuture<Outcome> o : others)
      assertThat(o.get().ok()).as(o.get().toString()).isTrue();
    assertThat(versions("crowd.md")).isEqualTo(1 + 1 + 20);
    assertThat(rowsForCall("s_dup", "toolu_1_0")).isEqualTo(1);
    assertThat(content("crowd.md").lines().filter(l -> l.equals("dup")).count()).isEqualTo(1);

    // The same request twice in ONE transaction (as a group commit may form it), then once more.
    Origin inBatch = new Origin(USER, "s_batch", "toolu_1_0");
    OrgFileOp batchOp =
        new OrgFileOp.Edit("memory", "crowd.md", "<!-- end -->", "batched\n<!-- end -->", false);
    List<Outcome> both =
        join(
            store.applyBatch(
                ORG,
                List.of(
                    new OrgFileStore.Request(batchOp, inBatch),
                    new OrgFileStore.Request(batchOp, inBatch))));
    assertThat(both.get(0).ok()).as(both.toString()).isTrue();
    assertThat(both.get(1)).isEqualTo(both.get(0));
    assertThat(join(store.applyBatch(ORG, List.of(new OrgFileStore.Request(batchOp, inBatch)))))
        .containsExactly(both.get(0));
    assertThat(versions("crowd.md")).isEqualTo(1 + 1 + 20 + 1);
    assertThat(rowsForCall("s_batch", "toolu_1_0")).isEqualTo(1);
  }

  // ------------------------------------------------------------------ helpers

  private void seed(String path, String content) {
    Outcome o =
        join(
            orgFiles.write(
                ORG,
                new OrgFileOp.Write("memory", path, content, null),
                new Origin("setup", null, null)));
    assertThat(o.ok()).as(o.toString()).isTrue();
    assertThat(o.version()).isEqualTo(1);
  }

  private String content(String path) {
    return join(store.read(ORG, "memory", path)).orElseThrow().content();
  }

  /**
   * One version row for the call, the file at {@code version} with {@code content}, {@code total}
   * versions in all.
   */
  private void assertStored(String path, String session, long version, String content, long total)
      throws Exception {
    assertThat(rowsForCall(session, "toolu_1_0"))
        .as("org_file_versions rows of (%s, toolu_1_0)", session)
        .isEqualTo(1);
    assertThat(versions(path)).as("versions of /memory/%s", path).isEqualTo(total);
    try (Connection c = postgres.connection();
        PreparedStatement ps =
            c.prepareStatement(
                "SELECT version, content, session_id FROM org_files WHERE org_id = ? AND namespace"
                    + " = 'memory' AND path = ?")) {
      ps.setString(1, ORG);
      ps.setString(2, path);
      try (ResultSet rs = ps.executeQuery()) {
        assertThat(rs.next()).isTrue();
        assertThat(rs.getLong(1)).isEqualTo(version);
        assertThat(rs.getString(2)).isEqualTo(content);
        assertThat(rs.getString(3)).isEqualTo(session);
      }
    }
    assertThat(
            count(
                "SELECT count(*) FROM org_file_ops WHERE session_id = ? AND call_id = 'toolu_1_0'",
                session))
        .isEqualTo(1);
  }

  private long rowsForCall(String session, String call) throws Exception {
    return count(
        "SELECT count(*) FROM org_file_versions WHERE session_id = ? AND call_id = ?",
        session,
        call);
  }

  private long versions(String path) throws Exception {
    return count(
        "SELECT count(*) FROM org_file_versions WHERE org_id = ? AND namespace = 'memory' AND path"
            + " = ?",
        ORG,
        path);
  }

  private long count(String sql, String... args) throws Exception {
    try (Connection c = postgres.connection();
        PreparedStatement ps = c.prepareStatement(sql)) {
      for (int i = 0; i < args.length; i++) ps.setString(i + 1, args[i]);
      try (ResultSet rs = ps.executeQuery()) {
        rs.next();
        return rs.getLong(1);
      }
    }
  }

  private static <T> T join(java.util.concurrent.CompletionStage<T> stage) {
    try {
      return stage.toCompletableFuture().get(AWAIT.toMillis(), TimeUnit.MILLISECONDS);
    } catch (Exception e) {
      throw new AssertionError("did not complete: " + e, e);
    }
  }

  private static void pause(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }
}
