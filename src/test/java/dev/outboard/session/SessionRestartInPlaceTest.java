package dev.outboard.session;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

import dev.outboard.Json;
import dev.outboard.model.ModelClients;
import dev.outboard.model.ModelSpec;
import dev.outboard.model.ModelSpec.ScriptedCall;
import dev.outboard.model.ModelSpec.ScriptedTurn;
import dev.outboard.model.ScriptedModel;
import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.sandbox.SandboxSettings;
import dev.outboard.session.SessionEntity.Command;
import dev.outboard.session.SessionEntity.Create;
import dev.outboard.session.SessionEntity.Event;
import dev.outboard.session.SessionEntity.ToolCallCompleted;
import dev.outboard.testing.EchoSandboxes;
import dev.outboard.testing.TestServices;
import dev.outboard.testing.UnitTestConfig;
import dev.outboard.vfs.Namespace;
import dev.outboard.vfs.PathRouter;
import java.time.Duration;
import java.util.EnumSet;
import java.util.List;
import java.util.UUID;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.persistence.testkit.javadsl.EventSourcedBehaviorTestKit;
import org.apache.pekko.persistence.typed.PersistenceId;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A journal write that fails (the database restarted) restarts the session in place: the entity
 * object stays, its sandbox child is stopped, its model call died. Found by the fault campaign: the
 * restarted session kept the stopped child's ref (every later bash call went to dead letters and
 * failed) and the turn it had in flight (so it never asked the model again). Here the write of turn
 * 2's answer fails; the session must ask again, run turn 2's command on a new sandbox child and
 * complete, each call with one result.
 */
class SessionRestartInPlaceTest {
  static ActorTestKit kit;

  @BeforeAll
  static void start() {
    kit = ActorTestKit.create("SessionRestartInPlaceTest", UnitTestConfig.inMemoryPersistence());
  }

  @AfterAll
  static void stop() {
    kit.shutdownTestKit();
  }

  @Test
  void aFailedJournalWriteRestartsTheSessionWhichAsksAgainAndUsesANewSandboxChild()
      throws Exception {
    String id = "s-" + UUID.randomUUID();
    TestProbe<ClusterSharding.ShardCommand> shard = kit.createTestProbe();
    EchoSandboxes sandboxes = new EchoSandboxes();
    Limits limits =
        new Limits(1L << 30, 64, Duration.ofMinutes(1), 1 << 16, Duration.ofSeconds(30));
    SessionServices services =
        TestServices.builder(
                new ModelClients("scripted", new ScriptedModel()),
                new PathRouter(EnumSet.of(Namespace.SESSION, Namespace.WORKSPACE)),
                (summary, seq) -> {},
                new SessionSettings(
                    Duration.ofMinutes(2),
                    500,
                    10_000,
                    200,
                    new SessionFiles.Limits(1 << 20, 8 << 20, 256 * 1024)))
            .sandboxes(
                sandboxes,
                new SandboxSettings(limits, Duration.ofMinutes(5), Duration.ofMinutes(10)))
            .build();
    EventSourcedBehaviorTestKit<Command, Event, SessionState> es =
        EventSourcedBehaviorTestKit.create(
            kit.system(), SessionEntity.create(id, shard.ref(), services));
    String pid = PersistenceId.of(SessionEntity.ENTITY_KEY.name(), id).id();

    List<ScriptedTurn> turns =
        List.of(
            new ScriptedTurn("", List.of(bash("echo one")), null),
            new ScriptedTurn("", List.of(bash("echo two")), 1000L), // the window for the failure
            new ScriptedTurn("done", null, null));
    es.<org.apache.pekko.pattern.StatusReply<Summary>>runCommand(
        replyTo ->
            new Create(
                "acme",
                "alice",
                new SessionSpec(
                    "go", new ModelSpec("scripted", null, turns), null, 10, false, null),
                replyTo));
    awaitJournal(es, pid, 1);
    es.persistenceTestKit().failNextPersisted(pid); // turn 2's answer

    long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
    while (es.getState().status() != SessionStatus.COMPLETED) {
      if (System.nanoTime() > deadline)
        fail("the session never completed after the failed write; state: " + es.getState());
      Thread.sleep(20);
    }
    List<ToolCallCompleted> results = completed(es, pid);
    assertThat(results).extracting(ToolCallCompleted::content).containsExactly("one", "two");
    assertThat(results).allMatch(r -> !r.isError());
    assertThat(sandboxes.commands).containsExactly("echo one", "echo two");
  }

  private static ScriptedCall bash(String command) {
    return new ScriptedCall("bash", Json.MAPPER.createObjectNode().put("command", command));
  }

  private static void awaitJournal(
      EventSourcedBehaviorTestKit<Command, Event, SessionState> es, String pid, int results)
      throws InterruptedException {
    long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
    while (completed(es, pid).size() < results) {
      if (System.nanoTime() > deadline) fail("turn 1's command never completed");
      Thread.sleep(10);
    }
  }

  private static List<ToolCallCompleted> completed(
      EventSourcedBehaviorTestKit<Command, Event, SessionState> es, String pid) {
    return es.persistenceTestKit().persistedInStorage(pid).stream()
        .filter(ToolCallCompleted.class::isInstance)
        .map(ToolCallCompleted.class::cast)
        .toList();
  }
}
