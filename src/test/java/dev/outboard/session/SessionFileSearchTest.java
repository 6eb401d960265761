package dev.outboard.session;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Json;
import dev.outboard.model.ModelClients;
import dev.outboard.model.ModelSpec;
import dev.outboard.model.ModelSpec.ScriptedCall;
import dev.outboard.model.ModelSpec.ScriptedTurn;
import dev.outboard.model.ScriptedModel;
import dev.outboard.session.SessionEntity.Command;
import dev.outboard.session.SessionEntity.Create;
import dev.outboard.session.SessionEntity.Event;
import dev.outboard.session.SessionEntity.ToolCallCompleted;
import dev.outboard.testing.TestServices;
import dev.outboard.testing.UnitTestConfig;
import dev.outboard.vfs.Namespace;
import dev.outboard.vfs.PathRouter;
import java.time.Duration;
import java.util.EnumSet;
import java.util.List;
import java.util.UUID;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.persistence.testkit.javadsl.EventSourcedBehaviorTestKit;
import org.apache.pekko.persistence.typed.PersistenceId;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * grep and glob over {@code /session} run off the session's actor thread (a grep may take its whole
 * time budget, 500 ms), so the session keeps answering while they run; a later call of the turn
 * still sees an earlier call's write.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class SessionFileSearchTest {
  private static final SessionSettings SETTINGS =
      new SessionSettings(
          Duration.ofMinutes(2),
          500,
          10_000,
          200,
          new SessionFiles.Limits(1 << 20, 8 << 20, 256 * 1024));

  private ActorTestKit kit;

  @BeforeAll
  void start() {
    kit = ActorTestKit.create("SessionFileSearchTest", UnitTestConfig.inMemoryPersistence());
  }

  @AfterAll
  void stop() {
    kit.shutdownTestKit();
  }

  private static JsonNode json(String text) {
    try {
      return Json.MAPPER.readTree(text.replace('\'', '"'));
    } catch (Exception e) {
      throw new IllegalArgumentException(text, e);
    }
  }

  @Test
  void aSlowGrepOverSessionFilesDoesNotHoldUpTheSessionAndSeesTheTurnsEarlierWrites() {
    String id = "s-" + UUID.randomUUID();
    SessionServices services =
        TestServices.of(
            new ModelClients("scripted", new ScriptedModel()),
            new PathRouter(EnumSet.of(Namespace.SESSION)),
            (summary, seq) -> {},
            SETTINGS);
    EventSourcedBehaviorTestKit<Command, Event, SessionState> es =
        EventSourcedBehaviorTestKit.create(
            kit.system(),
            SessionEntity.create(
                id, kit.<ClusterSharding.ShardCommand>createTestProbe().ref(), services));
    String slow =
        "{'path': '/session', 'pattern': '(.*a){12}b'}"; // backtracks for ever on a line of a's:
    // runs to the budget
    SessionSpec spec =
        new SessionSpec(
            "search",
            new ModelSpec(
                "scripted",
                null,
                List.of(
                    new ScriptedTurn(
                        "writing",
                        List.of(
                            new ScriptedCall(
                                "write",
                                json(
                                    "{'path': '/session/a.md', 'content': '"
                                        + "a".repeat(40)
                                        + "'}"))),
                        null),
                    new ScriptedTurn(
                        "searching",
                        List.of(
                            new ScriptedCall("grep", json(slow)),
                            new ScriptedCall(
                                "write", json("{'path': '/session/b.md', 'content': 'a needle'}")),
                            new ScriptedCall(
                                "grep", json("{'path': '/session', 'pattern': 'needle'}")),
                            new ScriptedCall(
                                "glob", json("{'path': '/session', 'pattern': '*.md'}")),
                            new ScriptedCall("grep", json(slow))),
                        null),
                    new ScriptedTurn("done", null, null))),
            null,
            10,
            false,
            null);
    assertThat(
            es.<StatusReply<Summary>>runCommand(
                    replyTo -> new Create("acme", "alice", spec, replyTo))
                .reply()
                .isSuccess())
        .isTrue();

    // The session answers all along: no command waits behind a grep.
    long slowest = 0;
    long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
    SessionState state;
    do {
      if (System.nanoTime() > deadline) fail("the session did not complete");
      long asked = System.nanoTime();
      state = es.getState();
      slowest = Math.max(slowest, System.nanoTime() - asked);
    } while (state.status() != SessionStatus.COMPLETED);
    assertThat(Duration.ofNanos(slowest)).isLessThan(Duration.ofMillis(300));

    List<ToolCallCompleted> results =
        es
            .persistenceTestKit()
            .persistedInStorage(PersistenceId.of(SessionEntity.ENTITY_KEY.name(), id).id())
            .stream()
            .filter(ToolCallCompleted.class::isInstance)
            .map(ToolCallCompleted.class::cast)
            .filter(c -> c.turn() == 2)
            .toList();
    assertThat(results)
        .extracting(ToolCallCompleted::callId)
        .containsExactly("toolu_2_0", "toolu_2_1", "toolu_2_2", "toolu_2_3", "toolu_2_4");
    assertThat(results.get(2).content()).isEqualTo("/session/b.md:1:a needle");
    assertThat(results.get(3).content()).isEqualTo("/session/a.md\n/session/b.md");
  }
}
