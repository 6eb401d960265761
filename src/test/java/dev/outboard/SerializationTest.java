package dev.outboard;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.typesafe.config.Config;
import dev.outboard.model.Block;
import dev.outboard.model.Message;
import dev.outboard.model.ModelSpec;
import dev.outboard.model.Usage;
import dev.outboard.sandbox.SandboxStatus;
import dev.outboard.session.Holds;
import dev.outboard.session.SessionEntity;
import dev.outboard.session.SessionEntity.Command;
import dev.outboard.session.SessionEntity.Event;
import dev.outboard.session.SessionFeed;
import dev.outboard.session.SessionFiles;
import dev.outboard.session.SessionSpec;
import dev.outboard.session.SessionState;
import dev.outboard.session.SessionStatus;
import dev.outboard.session.Summary;
import dev.outboard.session.Transcript;
import dev.outboard.testing.UnitTestConfig;
import java.lang.reflect.Modifier;
import java.time.Instant;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.TreeMap;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.serialization.Serialization;
import org.apache.pekko.serialization.SerializationExtension;
import org.apache.pekko.serialization.Serializer;
import org.apache.pekko.serialization.Serializers;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every command, event and the state of a session survive Pekko's configured serializer (the one
 * used for the journal, snapshots and messages between nodes) unchanged.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class SerializationTest {

  static Config config() {
    return UnitTestConfig.local();
  }

  private ActorTestKit testKit;
  private Serialization serialization;
  private TestProbe<StatusReply<Summary>> summaryProbe;
  private TestProbe<StatusReply<Transcript>> transcriptProbe;
  private TestProbe<SessionFeed.Message> feedProbe;
  private TestProbe<StatusReply<SessionFeed.Followed>> followedProbe;
  private TestProbe<StatusReply<SessionEntity.Position>> positionProbe;
  private TestProbe<StatusReply<SessionEntity.EventAccepted>> acceptedProbe;

  @BeforeAll
  void start() {
    testKit = ActorTestKit.create("SerializationTest", config());
    serialization = SerializationExtension.get(testKit.system());
    summaryProbe = testKit.createTestProbe();
    transcriptProbe = testKit.createTestProbe();
    feedProbe = testKit.createTestProbe();
    followedProbe = testKit.createTestProbe();
    positionProbe = testKit.createTestProbe();
    acceptedProbe = testKit.createTestProbe();
  }

  @AfterAll
  void stop() {
    testKit.shutdownTestKit();
  }

  private static final Instant T0 = Instant.parse("2025-01-02T03:04:05.123456789Z");
  private static final Instant T1 = Instant.parse("2025-01-02T03:04:06Z");

  private static JsonNode json(String text) {
    try {
      return Json.MAPPER.readTree(text.replace('\'', '"'));
    } catch (Exception e) {
      throw new IllegalArgumentException(text, e);
    }
  }

  private static final JsonNode METADATA =
      json(
          "{'ticket': 'OPS-1', 'n': 3, 'big': 12345678901234, 'ratio': 2.5, 'ok': true, 'none':"
              + " null, 'nested': {'list': [1, 'two', false, null, {'x': []}]}, 'unicode': 'héllo"
              + " \\u2603 \\ud83d\\ude00'}");

  private static final SessionSpec SPEC =
      new SessionSpec(
          "plan the release",
          new ModelSpec(
              "scripted",
              "replay-1",
              List.of(
                  new ModelSpec.ScriptedTurn(
                      "writing",
                      List.of(
                          new ModelSpec.ScriptedCall(
                              "write", json("{'path': '/session/p.md', 'content': 'x'}"))),
                      25L),
                  new ModelSpec.ScriptedTurn("done", null, null))),
          "be brief",
          12,
          true,
          METADATA);

  private static final Block.ToolUse WRITE =
      new Block.ToolUse(
          "toolu_1_0",
          "write",
          json(
              "{'path': '/session/plan.md', 'content': 'line 1\\n"
                  + "\\tline 2', 'extra': [1, {'deep': null}]}"));
  private static final Block.ToolUse READ =
      new Block.ToolUse("toolu_1_1", "read", json("{'path': '/session/plan.md', 'offset': 1}"));
  private static final Block.ToolResult RESULT =
      new Block.ToolResult("toolu_1_0", "wrote /session/plan.md (15 bytes)", false);
  private static final Block.ToolResult FAILED_RESULT =
      new Block.ToolResult("toolu_1_1", "file not found: /session/x", true);

  static List<Event> events() {
    return List.of(
        new SessionEntity.SessionStarted("s-1", "acme", "alice", SPEC, T0),
        new SessionEntity.SessionStarted(
            "s-2",
            "acme",
            null,
            new SessionSpec(
                "p",
                new ModelSpec("anthropic", "claude", null),
                null,
                500,
                false,
                Json.MAPPER.createObjectNode()),
            T0),
        new SessionEntity.UserMessageAdded("and also this", T1),
        new SessionEntity.ModelResponded(
            1,
            List.of(new Block.Text("I'll write the plan."), WRITE, READ, RESULT),
            new Usage(1200, 340, 7, 9),
            "tool_use",
            T1),
        new SessionEntity.ModelResponded(2, List.of(), Usage.ZERO, "end_turn", T1),
        new SessionEntity.ToolCallStarted(1, "toolu_1_0", "write", T1),
        new SessionEntity.ToolCallCompleted(
            1,
            "toolu_1_0",
            "wrote /session/plan.md (15 bytes)",
            false,
            new SessionFiles.Change("/session/plan.md", "line 1\nline \"2\""),
            T1),
        new SessionEntity.ToolCallCompleted(1, "toolu_1_1", "file not found", true, null, T1),
        new SessionEntity.ToolCallCompleted(
            1, "toolu_1_2", "removed", false, new SessionFiles.Change("/session/old.md", null), T1),
        new SessionEntity.SessionWaiting("what next?", T1),
        new SessionEntity.SessionCompleted("all done", T1),
        new SessionEntity.SessionCompleted("", T1),
        new SessionEntity.SessionFailed("max_turns", "the session used its budget of 12 turns", T1),
        new SessionEntity.SessionCancelled(T1),
        new SessionEntity.SandboxAttached("sbx-1", T1),
        new SessionEntity.SandboxReplaced("sbx-1", "sbx-2", T1),
        new SessionEntity.SandboxChanged(SandboxStatus.SUSPENDED, T1),
        new SessionEntity.SessionStarted(
            "s-3",
            "acme",
            "bob",
            new SessionSpec(
                "p",
                new ModelSpec("scripted", null, null),
                null,
                5,
                false,
                Json.MAPPER.createObjectNode(),
                List.of("bash", "write /memory/**")),
            T0),
        new SessionEntity.ApprovalRequested(3, "toolu_3_0", "bash", T1),
        new SessionEntity.ApprovalDecided(3, "toolu_3_0", true, null, T1),
        new SessionEntity.ApprovalDecided(3, "toolu_3_1", false, "not on prod ☃", T1),
        new SessionEntity.WaitStarted(3, "toolu_3_2", "ci.finished", 600, T1.plusSeconds(600), T1),
        new SessionEntity.EventReceived("ci.finished", "{\"ok\":true,\"runs\":[1,2]}", T1),
        new SessionEntity.SessionStarted(
            "s-4",
            "acme",
            "bob",
            new SessionSpec(
                "p",
                new ModelSpec(
                    "scripted",
                    null,
                    List.of(),
                    List.of(new ModelSpec.ScriptedTurn("child", null, null))),
                null,
                5,
                false,
                Json.MAPPER.createObjectNode(),
                List.of("bash"),
                "s-3",
                1,
                List.of("read", "ls")),
            T0),
        new SessionEntity.TaskStarted(2, "toolu_2_0", "s_0123", "find the bug", T1),
        new SessionEntity.TaskFinished(
            2, "toolu_2_0", "s_0123", "completed", new Usage(10, 2, 0, 0), T1),
        new SessionEntity.TranscriptCompacted(
            12,
            "the plan so far ☃",
            "/session/history/001.md",
            524_288,
            new Usage(300, 40, 0, 0),
            T1),
        new SessionEntity.BudgetExceeded("tokens", 50_000, 50_210, "pause", T1),
        new SessionEntity.BudgetRaised(100_000L, null, T1),
        new SessionEntity.BudgetRaised(null, 40, T1));
  }

  List<Command> commands() {
    return List.of(
        new SessionEntity.Create("acme", "alice", SPEC, summaryProbe.ref()),
        new SessionEntity.Get(summaryProbe.ref()),
        new SessionEntity.GetTranscript(transcriptProbe.ref()),
        new SessionEntity.AddMessage("one more thing", summaryProbe.ref()),
        new SessionEntity.Cancel(summaryProbe.ref()),
        new SessionEntity.Follow(feedProbe.ref(), followedProbe.ref()),
        new SessionEntity.GetPosition(positionProbe.ref()),
        new SessionEntity.AwaitSettled(30_000, summaryProbe.ref()),
        new SessionEntity.Decide("toolu_3_0", false, "no", summaryProbe.ref()),
        new SessionEntity.DeliverEvent("ci.finished", "{\"ok\":true}", acceptedProbe.ref()),
        SessionEntity.Wake.INSTANCE,
        new SessionEntity.ChildFinished("s_0123", richState().summary()),
        new SessionEntity.RaiseBudget(100_000L, 40, summaryProbe.ref()),
        SessionEntity.Stop.INSTANCE);
  }

  @Test
  void whatASessionPushesToItsStreamsSurvivesTheSerializerUnchanged() {
    TestProbe<SessionEntity.Command> entity = testKit.createTestProbe();
    List<Object> messages =
        List.of(
            new SessionFeed.Followed(42, entity.ref()),
            new SessionFeed.Recorded(
                43,
                List.of(
                    new SessionFeed.Item("43", "model.responded", "{\"turn\":3}"),
                    new SessionFeed.Item(null, "turn.started", "{\"turn\":4}"))),
            new SessionFeed.Live(
                43,
                new SessionFeed.Item(null, "model.delta", "{\"type\":\"text\",\"text\":\"he\"}")),
            new SessionEntity.Position(true, 44));
    for (Object m : messages) assertThat(viaSerializer(m)).isEqualTo(m);
  }

  static SessionState richState() {
    TreeMap<String, String> files = new TreeMap<>();
    files.put("/session/plan.md", "# Plan\n- [ ] ship\n");
    files.put("/session/notes/ünïcode.md", "☃ \uD83D\uDE00");
    files.put("/session/empty", "");
    List<Message> messages =
        List.of(
            Message.user(List.of(new Block.Text("plan the release"))),
            Message.assistant(List.of(new Block.Text("I'll write the plan."), WRITE, READ)),
            Message.user(List.of(RESULT, FAILED_RESULT, new Block.Text("queued message"))),
            Message.assistant(List.of(new Block.Text("done"))));
    return new SessionState(
        "s-1",
        "acme",
        "alice",
        SessionStatus.FAILED,
        SPEC,
        2,
        messages,
        List.of("toolu_2_0", "toolu_2_1"),
        List.of(RESULT, FAILED_RESULT),
        List.of("later", "even later"),
        new SessionFiles(files),
        new Usage(1200, 340, 7, 9),
        "done",
        new Summary.ErrorView("max_turns", "the session used its budget of 12 turns"),
        T0,
        T1,
        new SessionState.SandboxInfo("sbx-2", SandboxStatus.HIBERNATED),
        new Holds(
            List.of(new Holds.Approval("toolu_2_0", 2, "bash", T1)),
            List.of(new Holds.Wait("toolu_2_1", 2, "ci.finished", 60, T1.plusSeconds(60))),
            List.of(new Holds.Inbound("deploy.done", "{\"env\":\"prod\"}", T1)),
            List.of(new Holds.Task("toolu_2_2", 2, "s_0456"))),
        List.of(
            new SessionState.Child("toolu_2_2", "s_0456", "find the bug", "running"),
            new SessionState.Child("toolu_1_9", "s_0789", "read the logs", "completed")),
        new SessionState.BudgetState(100_000L, 40, "tokens", 50_000, 50_210));
  }

  private Object roundTrip(Object original) {
    Serializer serializer = serialization.findSerializerFor(original);
    assertThat(serializer.getClass().getName())
        .as("serializer of %s", original.getClass())
        .isEqualTo("org.apache.pekko.serialization.jackson.JacksonJsonSerializer");
    return viaSerializer(original);
  }

  /**
   * Serialises with the serializer configured for {@code original} and reads back with its
   * manifest.
   */
  private Object viaSerializer(Object original) {
    Serializer serializer = serialization.findSerializerFor(original);
    byte[] bytes = serialization.serialize(original).get();
    String manifest = Serializers.manifestFor(serializer, original);
    return serialization.deserialize(bytes, serializer.identifier(), manifest).get();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("events")
  void everyEventSurvivesTheSerializerUnchanged(Event event) {
    assertThat(roundTrip(event)).isEqualTo(event);
  }

  @Test
  void everyPublicCommandSurvivesTheSerializerUnchanged() {
    for (Command command : commands()) {
      assertThat(roundTrip(command)).as(command.toString()).isEqualTo(command);
    }
  }

  @Test
  void aRichStateSurvivesTheSerializerUnchanged() {
    SessionState state = richState();
    Object back = roundTrip(state);
    assertThat(back).isEqualTo(state);
    SessionState s = (SessionState) back;
    assertThat(s.messages().get(2).content())
        .containsExactly(RESULT, FAILED_RESULT, new Block.Text("queued message"));
    assertThat(s.files().files()).isEqualTo(state.files().files());
    assertThat(s.spec().metadata()).isEqualTo(METADATA);
  }

  @Test
  void theEmptyStateSurvivesTheSerializerUnchanged() {
    SessionState empty = SessionState.empty("s-empty");
    assertThat(roundTrip(empty)).isEqualTo(empty);
  }

  @Test
  void aSnapshotRecordedUnderTheStatesOldClassNameLoadsAsTheSessionState() {
    // Before the state had its own file, snapshots named it SessionEntity$State.
    SessionState state = richState();
    Serializer serializer = serialization.findSerializerFor(state);
    byte[] bytes = serialization.serialize(state).get();
    Object back =
        serialization
            .deserialize(bytes, serializer.identifier(), "dev.outboard.session.SessionEntity$State")
            .get();
    assertThat(back).isEqualTo(state);
  }

  @Test
  void sandboxStatesRecordedAsStringsLoadAsTheirStatus() {
    // The journal spells a sandbox state in lower case, as it did when the field was a string.
    byte[] older =
        "{\"state\":\"hibernated\",\"at\":\"2025-01-02T03:04:06Z\"}"
            .getBytes(java.nio.charset.StandardCharsets.UTF_8);
    SessionEntity.SandboxChanged sample = new SessionEntity.SandboxChanged(SandboxStatus.NONE, T1);
    Serializer serializer = serialization.findSerializerFor(sample);
    String manifest = Serializers.manifestFor(serializer, sample);
    Object back = serialization.deserialize(older, serializer.identifier(), manifest).get();
    assertThat(back).isEqualTo(new SessionEntity.SandboxChanged(SandboxStatus.HIBERNATED, T1));
    assertThat(
            new String(
                serialization.serialize(back).get(), java.nio.charset.StandardCharsets.UTF_8))
        .contains("\"state\":\"hibernated\"");
  }

  @Test
  void sessionFilesFromASnapshotWithoutTotalBytesKnowTheirTrueSize() {
    // Snapshots written before SessionFiles carried its total have only the files.
    byte[] older =
        "{\"files\":{\"/session/a\":\"hello\",\"/session/b\":\"\u00e9\"}}"
            .getBytes(java.nio.charset.StandardCharsets.UTF_8);
    Serializer serializer = serialization.findSerializerFor(SessionFiles.EMPTY);
    String manifest = Serializers.manifestFor(serializer, SessionFiles.EMPTY);
    SessionFiles files =
        (SessionFiles) serialization.deserialize(older, serializer.identifier(), manifest).get();
    assertThat(files.files()).containsOnlyKeys("/session/a", "/session/b");
    assertThat(files.totalBytes()).isEqualTo(7);
    assertThat(files).isEqualTo(new SessionFiles(new TreeMap<>(files.files())));
  }

  @Test
  void repliesSurviveTheSerializerUnchanged() {
    SessionState state = richState();
    assertThat(roundTrip(state.summary())).isEqualTo(state.summary());
    assertThat(roundTrip(state.transcript())).isEqualTo(state.transcript());
    StatusReply<Summary> ok = StatusReply.success(state.summary());
    assertThat(viaSerializer(ok)).isEqualTo(ok);
    StatusReply<Summary> error = StatusReply.error("not_found: no session s-9");
    StatusReply<?> backError = (StatusReply<?>) viaSerializer(error);
    assertThat(backError.isError()).isTrue();
    assertThat(backError.getError().getMessage()).isEqualTo("not_found: no session s-9");
  }

  @Test
  void everyPublicEventTypeIsCoveredHere() {
    Set<Class<?>> covered = events().stream().map(Object::getClass).collect(Collectors.toSet());
    assertThat(publicSubtypes(Event.class))
        .isNotEmpty()
        .allSatisfy(c -> assertThat(covered).as("events()").contains(c));
  }

  @Test
  void everyPublicCommandTypeIsCoveredHere() {
    Set<Class<?>> covered = commands().stream().map(Object::getClass).collect(Collectors.toSet());
    assertThat(publicSubtypes(Command.class))
        .isNotEmpty()
        .allSatisfy(c -> assertThat(covered).as("commands()").contains(c));
  }

  private static Set<Class<?>> publicSubtypes(Class<?> sealed) {
    assertThat(sealed.isSealed()).isTrue();
    return Arrays.stream(sealed.getPermittedSubclasses())
        .filter(c -> Modifier.isPublic(c.getModifiers()))
        .flatMap(
            c ->
                c.isSealed()
                    ? Stream.concat(Stream.of(c), publicSubtypes(c).stream())
                    : Stream.of(c))
        .collect(Collectors.toSet());
  }
}
