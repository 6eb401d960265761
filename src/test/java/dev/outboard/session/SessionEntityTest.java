package dev.outboard.session;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Json;
import dev.outboard.model.Block;
import dev.outboard.model.Message;
import dev.outboard.model.ModelClient;
import dev.outboard.model.ModelClients;
import dev.outboard.model.ModelRequest;
import dev.outboard.model.ModelResponse;
import dev.outboard.model.ModelSpec;
import dev.outboard.model.ModelSpec.ScriptedCall;
import dev.outboard.model.ModelSpec.ScriptedTurn;
import dev.outboard.model.ScriptedModel;
import dev.outboard.model.Usage;
import dev.outboard.session.SessionEntity.AddMessage;
import dev.outboard.session.SessionEntity.Cancel;
import dev.outboard.session.SessionEntity.Command;
import dev.outboard.session.SessionEntity.Create;
import dev.outboard.session.SessionEntity.Event;
import dev.outboard.session.SessionEntity.Get;
import dev.outboard.session.SessionEntity.GetTranscript;
import dev.outboard.session.SessionEntity.ModelResponded;
import dev.outboard.session.SessionEntity.SessionCancelled;
import dev.outboard.session.SessionEntity.SessionCompleted;
import dev.outboard.session.SessionEntity.SessionFailed;
import dev.outboard.session.SessionEntity.SessionStarted;
import dev.outboard.session.SessionEntity.SessionWaiting;
import dev.outboard.session.SessionEntity.ToolCallCompleted;
import dev.outboard.session.SessionEntity.ToolCallStarted;
import dev.outboard.session.SessionEntity.UserMessageAdded;
import dev.outboard.testing.TestServices;
import dev.outboard.testing.UnitTestConfig;
import dev.outboard.vfs.Namespace;
import dev.outboard.vfs.PathRouter;
import java.time.Duration;
import java.time.Instant;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;
import java.util.function.Predicate;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.japi.Pair;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.persistence.testkit.JournalOperation;
import org.apache.pekko.persistence.testkit.ProcessingPolicy;
import org.apache.pekko.persistence.testkit.ProcessingResult;
import org.apache.pekko.persistence.testkit.ProcessingSuccess;
import org.apache.pekko.persistence.testkit.SnapshotMeta;
import org.apache.pekko.persistence.testkit.WriteEvents;
import org.apache.pekko.persistence.testkit.javadsl.EventSourcedBehaviorTestKit;
import org.apache.pekko.persistence.testkit.javadsl.EventSourcedBehaviorTestKit.CommandResultWithReply;
import org.apache.pekko.persistence.typed.PersistenceId;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The turn loop of DESIGN.md §3 on the persistence testkit: replies, the exact events in the
 * journal, and the state, including what recovery does after a crash at each point of a turn.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class SessionEntityTest {

  private ActorTestKit kit;

  @BeforeAll
  void start() {
    kit = ActorTestKit.create("SessionEntityTest", UnitTestConfig.inMemoryPersistence());
  }

  @AfterAll
  void stop() {
    kit.shutdownTestKit();
  }

  // ------------------------------------------------------------------ fixtures

  private static final Duration AWAIT = Duration.ofSeconds(10);
  private static final SessionFiles.Limits LIMITS =
      new SessionFiles.Limits(1 << 20, 8 << 20, 256 * 1024);
  private static final JsonNode METADATA = json("{'ticket': 'OPS-1', 'tags': ['a', 'b']}");
  private static final String PROMPT = "plan the release";

  private static SessionSettings settings(Duration passivateAfter, int snapshotEvery) {
    return new SessionSettings(passivateAfter, 500, 10_000, snapshotEvery, LIMITS);
  }

  private static final SessionSettings DEFAULTS = settings(Duration.ofMinutes(2), 200);

  private static JsonNode json(String text) {
    try {
      return Json.MAPPER.readTree(text.replace('\'', '"'));
    } catch (Exception e) {
      throw new IllegalArgumentException(text, e);
    }
  }

  private static ScriptedCall use(String tool, String input) {
    return new ScriptedCall(tool, json(input));
  }

  private static ScriptedTurn say(String text) {
    return new ScriptedTurn(text, null, null);
  }

  private static ScriptedTurn slowly(long latencyMs, String text, ScriptedCall... calls) {
    return new ScriptedTurn(text, List.of(calls), latencyMs);
  }

  private static ScriptedTurn tools(String text, ScriptedCall... calls) {
    return new ScriptedTurn(text, List.of(calls), null);
  }

  private static SessionSpec spec(int maxTurns, boolean keepOpen, ScriptedTurn... turns) {
    return new SessionSpec(
        PROMPT,
        new ModelSpec("scripted", null, List.of(turns)),
        null,
        maxTurns,
        keepOpen,
        METADATA);
  }

  private static SessionSpec spec(ScriptedTurn... turns) {
    return spec(50, false, turns);
  }

  /** Records every summary the entity reports, with its sequence number. */
  static final class RecordingObserver implements SessionObserver {
    final List<Summary> summaries = new CopyOnWriteArrayList<>();
    final List<Long> seqs = new CopyOnWriteArrayList<>();

    @Override
    public void statusChanged(Summary summary, long seq) {
      summaries.add(summary);
      seqs.add(seq);
    }

    List<String> statuses() {
      return summaries.stream().map(Summary::status).toList();
    }
  }

  /** A model client that records every request and counts the answers it gave. */
  static final class RecordingModel implements ModelClient {
    private final Function<ModelRequest, CompletionStage<ModelResponse>> answer;
    final List<ModelRequest> requests = new CopyOnWriteArrayList<>();
    final AtomicInteger answered = new AtomicInteger();

    RecordingModel(Function<ModelRequest, CompletionStage<ModelResponse>> answer) {
      this.answer = answer;
    }

    static RecordingModel scripted() {
      ScriptedModel scripted = new ScriptedModel();
      return new RecordingModel(scripted::complete);
    }

    @Override
    public String provider() {
      return ScriptedModel.PROVIDER;
    }

    @Override
    public CompletionStage<ModelResponse> complete(ModelRequest request) {
      requests.add(request);
      return answer
          .apply(request)
          .thenApply(
              r -> {
                answered.incrementAndGet();
                return r;
              });
    }

    List<Integer> turnsAsked() {
      return requests.stream().map(ModelRequest::turn).toList();
    }
  }

  /**
   * One session under test: its id, its shard probe, observer, model and the testkit driving it.
   */
  final class Session {
    final String id = "s-" + UUID.randomUUID();
    final String pid = PersistenceId.of(SessionEntity.ENTITY_KEY.name(), id).id();
    final TestProbe<ClusterSharding.ShardCommand> shard = kit.createTestProbe();
    final RecordingObserver observer = new RecordingObserver();
    final RecordingModel model;
    final EventSourcedBehaviorTestKit<Command, Event, SessionState> es;

    Session(RecordingModel model, SessionSettings settings) {
      this.model = model;
      SessionServices services =
          TestServices.of(
              new ModelClients("scripted", model),
              new PathRouter(EnumSet.of(Namespace.SESSION)),
              observer,
              settings);
      this.es =
          EventSourcedBehaviorTestKit.create(
              kit.system(), SessionEntity.create(id, shard.ref(), services));
    }

    CommandResultWithReply<Command, Event, SessionState, StatusReply<Summary>> create(
        SessionSpec spec) {
      return es.runCommand(replyTo -> new Create("acme", "alice", spec, replyTo));
    }

    CommandResultWithReply<Command, Event, SessionState, StatusReply<Summary>> addMessage(
        String text) {
      return es.runCommand(replyTo -> new AddMessage(text, replyTo));
    }

    CommandResultWithReply<Command, Event, SessionState, StatusReply<Summary>> cancel() {
      return es.runCommand(Cancel::new);
    }

    CommandResultWithReply<Command, Event, SessionState, StatusReply<Summary>> get() {
      return es.runCommand(Get::new);
    }

    CommandResultWithReply<Command, Event, SessionState, StatusReply<Transcript>> transcript() {
      return es.runCommand(GetTranscript::new);
    }

    /** Polls the state until {@code condition} holds (model calls answer asynchronously). */
    SessionState awaitState(Predicate<SessionState> condition, String what) {
      long deadline = System.nanoTime() + AWAIT.toNanos();
      SessionState s = es.getState();
      while (!condition.test(s)) {
        if (System.nanoTime() > deadline)
          fail("session never became " + what + "; last state: " + s);
        pause(15);
        s = es.getState();
      }
      return s;
    }

    SessionState awaitStatus(SessionStatus status) {
      return awaitState(s -> s.status() == status, status.wire());
    }

    List<Event> journal() {
      return es.persistenceTestKit().persistedInStorage(pid).stream()
          .map(Event.class::cast)
          .toList();
    }

    List<String> journalTypes() {
      return journal().stream().map(e -> e.getClass().getSimpleName()).toList();
    }

    <E extends Event> List<E> journal(Class<E> type) {
      return journal().stream().filter(type::isInstance).map(type::cast).toList();
    }
  }

  private Session session(SessionSettings settings) {
    return new Session(RecordingModel.scripted(), settings);
  }

  private Session session() {
    return session(DEFAULTS);
  }

  private static void pause(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  private static Summary success(StatusReply<Summary> reply) {
    assertThat(reply.isSuccess()).as("reply %s", reply).isTrue();
    return reply.getValue();
  }

  private static String error(StatusReply<?> reply) {
    assertThat(reply.isError()).as("reply %s", reply).isTrue();
    return reply.getError().getMessage();
  }

  private static void awaitTrue(java.util.function.BooleanSupplier condition, String what) {
    long deadline = System.nanoTime() + AWAIT.toNanos();
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() > deadline) fail("never happened: " + what);
      pause(10);
    }
  }

  private static List<String> roles(List<Message> messages) {
    return messages.stream().map(Message::role).toList();
  }

  private static final ScriptedTurn WRITE_THEN_READ =
      tools(
          "writing the plan",
          use("write", "{'path': '/session/notes.md', 'content': 'hello\\nworld'}"),
          use("read", "{'path': '/session/notes.md'}"));

  // ------------------------------------------------------------------ create and the turn loop

  @Test
  void createPersistsSessionStartedAndRepliesWithTheRunningSummary() {
    Session s = session();
    SessionSpec spec = spec(slowly(400, "thinking"), say("done"));
    var result = s.create(spec);

    Summary summary = success(result.reply());
    assertThat(summary.id()).isEqualTo(s.id);
    assertThat(summary.org()).isEqualTo("acme");
    assertThat(summary.user()).isEqualTo("alice");
    assertThat(summary.status()).isEqualTo("running");
    assertThat(summary.turns()).isZero();
    assertThat(summary.metadata()).isEqualTo(METADATA);
    assertThat(summary.sandbox().state()).isEqualTo("none");
    assertThat(summary.result()).isNull();
    assertThat(summary.error()).isNull();
    assertThat(summary.createdAt()).isNotNull().isEqualTo(summary.updatedAt());

    assertThat(result.events()).hasSize(1);
    SessionStarted started = (SessionStarted) result.event();
    assertThat(started.sessionId()).isEqualTo(s.id);
    assertThat(started.org()).isEqualTo("acme");
    assertThat(started.user()).isEqualTo("alice");
    assertThat(started.spec()).isEqualTo(spec);
    assertThat(started.at()).isEqualTo(summary.createdAt());

    SessionState state = result.state();
    assertThat(state.status()).isEqualTo(SessionStatus.RUNNING);
    assertThat(state.turns()).isZero();
    assertThat(state.messages()).containsExactly(Message.user(List.of(new Block.Text(PROMPT))));
    assertThat(state.files().files()).isEmpty();
    assertThat(state.usage()).isEqualTo(Usage.ZERO);

    assertThat(s.observer.statuses()).containsExactly("running");
    assertThat(s.observer.seqs).containsExactly(1L);
    assertThat(s.model.turnsAsked()).containsExactly(1);
  }

  @Test
  void createOnAnExistingSessionRepliesWithItsSummaryAndRecordsNothing() {
    Session s = session();
    s.create(spec(say("done")));
    SessionState done = s.awaitStatus(SessionStatus.COMPLETED);
    var again = s.create(spec(say("something else")));
    assertThat(success(again.reply())).isEqualTo(done.summary());
    assertThat(again.hasNoEvents()).isTrue();
    assertThat(again.state()).isEqualTo(done);
  }

  @Test
  void aTurnWritesAndReadsSessionFilesAndTheReadSeesTheWrite() {
    Session s = session();
    s.create(spec(WRITE_THEN_READ, say("done")));
    SessionState state = s.awaitStatus(SessionStatus.COMPLETED);

    assertThat(s.journalTypes())
        .containsExactly(
            "SessionStarted",
            "ModelResponded",
            "ToolCallStarted",
            "ToolCallStarted",
            "ToolCallCompleted",
            "ToolCallCompleted",
            "ModelResponded",
            "SessionCompleted");
    List<Event> j = s.journal();

    ModelResponded first = (ModelResponded) j.get(1);
    assertThat(first.turn()).isEqualTo(1);
    assertThat(first.stopReason()).isEqualTo("tool_use");
    assertThat(first.content())
        .containsExactly(
            new Block.Text("writing the plan"),
            new Block.ToolUse(
                "toolu_1_0",
                "write",
                json("{'path': '/session/notes.md', 'content': 'hello\\nworld'}")),
            new Block.ToolUse("toolu_1_1", "read", json("{'path': '/session/notes.md'}")));

    ToolCallStarted startWrite = (ToolCallStarted) j.get(2);
    ToolCallStarted startRead = (ToolCallStarted) j.get(3);
    assertThat(List.of(startWrite.turn(), startRead.turn())).containsExactly(1, 1);
    assertThat(List.of(startWrite.callId(), startRead.callId()))
        .containsExactly("toolu_1_0", "toolu_1_1");
    assertThat(List.of(startWrite.name(), startRead.name())).containsExactly("write", "read");

    ToolCallCompleted wrote = (ToolCallCompleted) j.get(4);
    assertThat(wrote.callId()).isEqualTo("toolu_1_0");
    assertThat(wrote.isError()).isFalse();
    assertThat(wrote.content()).isEqualTo("wrote /session/notes.md (11 bytes)");
    assertThat(wrote.change())
        .isEqualTo(new SessionFiles.Change("/session/notes.md", "hello\nworld"));

    ToolCallCompleted read = (ToolCallCompleted) j.get(5);
    assertThat(read.callId()).isEqualTo("toolu_1_1");
    assertThat(read.isError()).isFalse();
    assertThat(read.content()).isEqualTo("     1\thello\n     2\tworld\n");
    assertThat(read.change()).isNull();

    ModelResponded second = (ModelResponded) j.get(6);
    assertThat(second.turn()).isEqualTo(2);
    assertThat(second.stopReason()).isEqualTo("end_turn");
    assertThat(((SessionCompleted) j.get(7)).result()).isEqualTo("done");

    assertThat(state.turns()).isEqualTo(2);
    assertThat(state.result()).isEqualTo("done");
    assertThat(state.files().files())
        .containsExactly(Map.entry("/session/notes.md", "hello\nworld"));
    assertThat(state.openCalls()).isEmpty();
    assertThat(state.results()).isEmpty();
    assertThat(state.usage()).isEqualTo(first.usage().plus(second.usage()));
    assertThat(roles(state.messages())).containsExactly("user", "assistant", "user", "assistant");
    assertThat(state.messages().get(2).content())
        .containsExactly(
            new Block.ToolResult("toolu_1_0", "wrote /session/notes.md (11 bytes)", false),
            new Block.ToolResult("toolu_1_1", "     1\thello\n     2\tworld\n", false));

    // The second call saw the whole first turn, tool results included.
    assertThat(s.model.turnsAsked()).containsExactly(1, 2);
    assertThat(s.model.requests.get(1).messages()).isEqualTo(state.messages().subList(0, 3));
    assertThat(s.model.requests.get(0).messages()).isEqualTo(state.messages().subList(0, 1));

    Transcript transcript = s.transcript().reply().getValue();
    assertThat(transcript.messages()).isEqualTo(state.messages());
    Summary summary = success(s.get().reply());
    assertThat(summary.status()).isEqualTo("completed");
    assertThat(summary.turns()).isEqualTo(2);
    assertThat(summary.result()).isEqualTo("done");
    assertThat(summary.usage().inputTokens()).isEqualTo(state.usage().inputTokens()).isPositive();
  }

  @Test
  void aTurnIsRecordedInOneWriteWithItsToolStartsAndSessionFileResults() {
    Session s = session();
    List<List<Object>> writes = new CopyOnWriteArrayList<>();
    s.es
        .persistenceTestKit()
        .withPolicy(
            new ProcessingPolicy<JournalOperation>() {
              @Override
              public ProcessingResult tryProcess(String persistenceId, JournalOperation op) {
                if (persistenceId.equals(s.pid) && op instanceof WriteEvents w)
                  writes.add(List.copyOf(w.getBatch()));
                return ProcessingSuccess.getInstance();
              }
            });
    try {
      s.create(spec(WRITE_THEN_READ, say("done")));
      s.awaitStatus(SessionStatus.COMPLETED);
    } finally {
      s.es.persistenceTestKit().resetPolicy();
    }
    assertThat(writes)
        .extracting(w -> w.stream().map(e -> e.getClass().getSimpleName()).toList())
        .containsExactly(
            List.of("SessionStarted"),
            List.of(
                "ModelResponded",
                "ToolCallStarted",
                "ToolCallStarted",
                "ToolCallCompleted",
                "ToolCallCompleted"),
            List.of("ModelResponded", "SessionCompleted"));
  }

  @Test
  void theEndOfTheScriptCompletesTheSessionWithTheLastTextAfterExactlyNTurns() {
    Session s = session();
    s.create(
        spec(
            tools("one", use("write", "{'path': '/session/a', 'content': '1'}")),
            tools(
                "two", use("edit", "{'path': '/session/a', 'old_string': '1', 'new_string': '2'}")),
            say("the final answer")));
    SessionState state = s.awaitStatus(SessionStatus.COMPLETED);

    assertThat(state.turns()).isEqualTo(3);
    assertThat(state.result()).isEqualTo("the final answer");
    assertThat(state.files().files()).containsExactly(Map.entry("/session/a", "2"));
    assertThat(s.journal(ModelResponded.class))
        .extracting(ModelResponded::turn)
        .containsExactly(1, 2, 3);
    assertThat(s.journal(SessionCompleted.class))
        .extracting(SessionCompleted::result)
        .containsExactly("the final answer");
    assertThat(s.journalTypes()).last().isEqualTo("SessionCompleted");
    assertThat(s.model.turnsAsked()).containsExactly(1, 2, 3);
    assertThat(roles(state.messages()))
        .containsExactly("user", "assistant", "user", "assistant", "user", "assistant");
  }

  @Test
  void whenTheScriptRunsOutTheNextCallEndsTheSessionWithEmptyText() {
    Session s = session();
    s.create(spec(tools("only tools", use("ls", "{'path': '/session'}"))));
    SessionState state = s.awaitStatus(SessionStatus.COMPLETED);
    assertThat(state.turns()).isEqualTo(2);
    assertThat(state.result()).isEmpty();
    ModelResponded last = s.journal(ModelResponded.class).get(1);
    assertThat(last.content()).isEmpty();
    assertThat(last.usage()).isEqualTo(Usage.ZERO);
  }

  @Test
  void keepOpenWaitsAfterTheAnswerAndAMessageContinuesTheLoop() {
    Session s = session();
    s.create(spec(50, true, say("first answer"), say("second answer")));
    SessionState waiting = s.awaitStatus(SessionStatus.WAITING);
    assertThat(waiting.result()).isEqualTo("first answer");
    assertThat(waiting.turns()).isEqualTo(1);
    assertThat(s.journalTypes())
        .containsExactly("SessionStarted", "ModelResponded", "SessionWaiting");
    assertThat(s.journal(SessionWaiting.class).get(0).text()).isEqualTo("first answer");
    assertThat(success(s.get().reply()).status()).isEqualTo("waiting");

    var added = s.addMessage("and now the changelog");
    Summary running = success(added.reply());
    assertThat(running.status()).isEqualTo("running");
    assertThat(running.result()).isNull();
    assertThat(added.events().get(0)).isInstanceOf(UserMessageAdded.class);
    assertThat(((UserMessageAdded) added.events().get(0)).text())
        .isEqualTo("and now the changelog");

    SessionState again =
        s.awaitState(
            st -> st.status() == SessionStatus.WAITING && st.turns() == 2, "waiting after turn 2");
    assertThat(again.result()).isEqualTo("second answer");
    assertThat(s.journalTypes())
        .containsExactly(
            "SessionStarted",
            "ModelResponded",
            "SessionWaiting",
            "UserMessageAdded",
            "ModelResponded",
            "SessionWaiting");
    assertThat(again.messages())
        .containsExactly(
            Message.user(List.of(new Block.Text(PROMPT))),
            Message.assistant(List.of(new Block.Text("first answer"))),
            Message.user(List.of(new Block.Text("and now the changelog"))),
            Message.assistant(List.of(new Block.Text("second answer"))));
    assertThat(s.model.requests.get(1).messages()).isEqualTo(again.messages().subList(0, 3));

    var cancelled = s.cancel();
    assertThat(success(cancelled.reply()).status()).isEqualTo("cancelled");
    assertThat(cancelled.events()).singleElement().isInstanceOf(SessionCancelled.class);
    assertThat(cancelled.state().status()).isEqualTo(SessionStatus.CANCELLED);
  }

  @Test
  void aMessageSentWhileRunningIsQueuedAndDeliveredAfterTheTurnsToolResults() {
    Session s = session();
    s.create(
        spec(
            slowly(800, "working", use("write", "{'path': '/session/a', 'content': 'x'}")),
            say("done")));
    var added = s.addMessage("also check the tests");
    assertThat(success(added.reply()).status()).isEqualTo("running");
    assertThat(added.events())
        .singleElement()
        .isInstanceOfSatisfying(
            UserMessageAdded.class, e -> assertThat(e.text()).isEqualTo("also check the tests"));
    assertThat(added.state().queued()).containsExactly("also check the tests");
    assertThat(added.state().messages()).hasSize(1);

    SessionState state = s.awaitStatus(SessionStatus.COMPLETED);
    assertThat(state.queued()).isEmpty();
    assertThat(state.messages())
        .containsExactly(
            Message.user(List.of(new Block.Text(PROMPT))),
            Message.assistant(
                List.of(
                    new Block.Text("working"),
                    new Block.ToolUse(
                        "toolu_1_0", "write", json("{'path': '/session/a', 'content': 'x'}")))),
            Message.user(
                List.of(
                    new Block.ToolResult("toolu_1_0", "wrote /session/a (1 bytes)", false),
                    new Block.Text("also check the tests"))),
            Message.assistant(List.of(new Block.Text("done"))));
    assertThat(s.journalTypes())
        .containsExactly(
            "SessionStarted",
            "UserMessageAdded",
            "ModelResponded",
            "ToolCallStarted",
            "ToolCallCompleted",
            "ModelResponded",
            "SessionCompleted");
    // The message did not start a second model call for the turn in flight.
    assertThat(s.model.turnsAsked()).containsExactly(1, 2);
    assertThat(s.model.requests.get(1).messages()).isEqualTo(state.messages().subList(0, 3));
  }

  @Test
  void aMessageQueuedDuringAFinalAnswerStartsAnotherTurnInsteadOfCompleting() {
    Session s = session();
    s.create(spec(slowly(800, "first"), say("second")));
    s.addMessage("wait, one more thing");
    SessionState state = s.awaitStatus(SessionStatus.COMPLETED);
    assertThat(state.turns()).isEqualTo(2);
    assertThat(state.result()).isEqualTo("second");
    assertThat(s.journalTypes())
        .containsExactly(
            "SessionStarted",
            "UserMessageAdded",
            "ModelResponded",
            "ModelResponded",
            "SessionCompleted");
    assertThat(state.messages())
        .containsExactly(
            Message.user(List.of(new Block.Text(PROMPT))),
            Message.assistant(List.of(new Block.Text("first"))),
            Message.user(List.of(new Block.Text("wait, one more thing"))),
            Message.assistant(List.of(new Block.Text("second"))));
  }

  @Test
  void messagesAndCancelToAFinishedSessionAreAConflict() {
    Session s = session();
    s.create(spec(say("done")));
    SessionState done = s.awaitStatus(SessionStatus.COMPLETED);
    int events = s.journal().size();

    var message = s.addMessage("more please");
    assertThat(error(message.reply()))
        .isEqualTo("conflict: the session is completed")
        .startsWith("conflict:");
    assertThat(message.hasNoEvents()).isTrue();
    var cancel = s.cancel();
    assertThat(error(cancel.reply())).isEqualTo("conflict: the session is completed");
    assertThat(cancel.hasNoEvents()).isTrue();

    assertThat(s.es.getState()).isEqualTo(done);
    assertThat(s.journal()).hasSize(events);
  }

  @Test
  void aNeverCreatedSessionIsNotFoundForEveryRequest() {
    Session s = session();
    String expected = "not_found: no session " + s.id;
    assertThat(error(s.get().reply())).isEqualTo(expected);
    assertThat(error(s.transcript().reply())).isEqualTo(expected);
    assertThat(error(s.addMessage("hello?").reply())).isEqualTo(expected);
    var cancel = s.cancel();
    assertThat(error(cancel.reply())).isEqualTo(expected);
    assertThat(cancel.state()).isEqualTo(SessionState.empty(s.id));
    assertThat(s.journal()).isEmpty();
    assertThat(s.model.requests).isEmpty();
    assertThat(s.observer.summaries).isEmpty();
  }

  @Test
  void cancelWhileTheModelIsThinkingEndsTheSessionAndTheLateAnswerIsIgnored() {
    Session s = session();
    s.create(
        spec(
            slowly(800, "too late", use("write", "{'path': '/session/a', 'content': 'x'}")),
            say("done")));
    var cancel = s.cancel();
    Summary summary = success(cancel.reply());
    assertThat(summary.status()).isEqualTo("cancelled");
    assertThat(summary.turns()).isZero();
    assertThat(cancel.events()).singleElement().isInstanceOf(SessionCancelled.class);
    SessionState cancelled = cancel.state();
    assertThat(cancelled.status()).isEqualTo(SessionStatus.CANCELLED);

    awaitTrue(() -> s.model.answered.get() == 1, "the model answered");
    pause(150); // let the answer reach the entity
    assertThat(s.journalTypes()).containsExactly("SessionStarted", "SessionCancelled");
    SessionState after = s.es.getState();
    assertThat(after).isEqualTo(cancelled);
    assertThat(after.turns()).isZero();
    assertThat(after.files().files()).isEmpty();
    assertThat(s.model.turnsAsked()).containsExactly(1);
    assertThat(error(s.addMessage("still there?").reply()))
        .isEqualTo("conflict: the session is cancelled");
  }

  @Test
  void exceedingMaxTurnsFailsTheSessionWithMaxTurns() {
    Session s = session();
    ScriptedCall ls = use("ls", "{'path': '/session'}");
    s.create(spec(2, false, tools("1", ls), tools("2", ls), tools("3", ls), say("never")));
    SessionState state = s.awaitStatus(SessionStatus.FAILED);

    assertThat(state.turns()).isEqualTo(2);
    assertThat(state.error())
        .isEqualTo(new Summary.ErrorView("max_turns", "the session used its budget of 2 turns"));
    assertThat(s.journalTypes())
        .containsExactly(
            "SessionStarted",
            "ModelResponded",
            "ToolCallStarted",
            "ToolCallCompleted",
            "ModelResponded",
            "ToolCallStarted",
            "ToolCallCompleted",
            "SessionFailed");
    assertThat(s.journal(SessionFailed.class).get(0).code()).isEqualTo("max_turns");
    assertThat(s.model.turnsAsked()).containsExactly(1, 2);
    Summary summary = success(s.get().reply());
    assertThat(summary.status()).isEqualTo("failed");
    assertThat(summary.error().code()).isEqualTo("max_turns");
  }

  @Test
  void badToolCallsComeBackAsErrorsAndTheSessionGoesOn() {
    Session s = session();
    s.create(
        spec(
            tools(
                "let me try things",
                use("write", "{'path': '/session/a.md'}"),
                use("frobnicate", "{'x': 1}"),
                use("read", "{'path': '/workspace/x.txt'}"),
                use("read", "{'path': '/session/../etc/passwd'}"),
                use("read", "{'path': '/etc/passwd'}"),
                use("write", "{'path': '/session/a.md', 'content': 'x', 'mode': 'append'}"),
                use("bash", "{'command': 'ls'}"),
                use("read", "{'path': '/session/missing.md'}"),
                use("write", "{'path': '/session/ok.md', 'content': 'fine'}"),
                use("glob", "{'pattern': '**/*.md'}")),
            say("recovered")));
    SessionState state = s.awaitStatus(SessionStatus.COMPLETED);

    List<ToolCallCompleted> done = s.journal(ToolCallCompleted.class);
    assertThat(done)
        .extracting(ToolCallCompleted::callId)
        .containsExactly(
            "toolu_1_0",
            "toolu_1_1",
            "toolu_1_2",
            "toolu_1_3",
            "toolu_1_4",
            "toolu_1_5",
            "toolu_1_6",
            "toolu_1_7",
            "toolu_1_8",
            "toolu_1_9");
    assertThat(done)
        .extracting(ToolCallCompleted::isError)
        .containsExactly(true, true, true, true, true, true, true, true, false, false);
    assertThat(done.get(0).content())
        .contains("tool 'write'")
        .contains("missing required argument 'content'");
    assertThat(done.get(1).content()).contains("unknown tool 'frobnicate'");
    assertThat(done.get(2).content())
        .contains("path \"/workspace/x.txt\" is not in a mounted namespace");
    assertThat(done.get(3).content()).contains("\"/session/../etc/passwd\"").contains("'..'");
    assertThat(done.get(4).content())
        .contains("path \"/etc/passwd\" is not in a mounted namespace");
    assertThat(done.get(5).content()).contains("unknown argument(s) [mode]");
    assertThat(done.get(6).content()).contains("bash needs a sandbox");
    assertThat(done.get(7).content()).isEqualTo("file not found: /session/missing.md");
    assertThat(done.get(8).content()).isEqualTo("wrote /session/ok.md (4 bytes)");
    assertThat(done.get(9).content()).isEqualTo("/session/ok.md");
    assertThat(done.subList(0, 8)).allSatisfy(c -> assertThat(c.change()).isNull());

    assertThat(state.turns()).isEqualTo(2);
    assertThat(state.result()).isEqualTo("recovered");
    assertThat(state.files().files()).containsOnlyKeys("/session/ok.md");
    List<Block> results = state.messages().get(2).content();
    assertThat(results)
        .hasSize(10)
        .allSatisfy(b -> assertThat(b).isInstanceOf(Block.ToolResult.class));
    assertThat(results)
        .extracting(b -> ((Block.ToolResult) b).isError())
        .containsExactly(true, true, true, true, true, true, true, true, false, false);
  }

  @Test
  void aFailingModelFailsTheSessionWithItsMessage() {
    RecordingModel broken =
        new RecordingModel(
            r -> CompletableFuture.failedFuture(new IllegalStateException("provider said 529")));
    Session s = new Session(broken, DEFAULTS);
    s.create(spec(say("never")));
    SessionState state = s.awaitStatus(SessionStatus.FAILED);
    assertThat(state.error()).isEqualTo(new Summary.ErrorView("model_error", "provider said 529"));
    assertThat(state.turns()).isZero();
    assertThat(s.journalTypes()).containsExactly("SessionStarted", "SessionFailed");
  }

  @Test
  void anUnavailableModelProviderFailsTheSession() {
    Session s = session();
    s.create(
        new SessionSpec(PROMPT, new ModelSpec("openai", "gpt", null), null, 10, false, METADATA));
    SessionState state = s.awaitStatus(SessionStatus.FAILED);
    assertThat(state.error().code()).isEqualTo("model_unavailable");
    assertThat(state.error().message()).contains("'openai'");
    assertThat(s.model.requests).isEmpty();
  }

  @Test
  void anAnswerCutOffAtTheTokenLimitFailsTheSession() {
    RecordingModel cut =
        new RecordingModel(
            r ->
                CompletableFuture.completedFuture(
                    new ModelResponse(
                        List.of(new Block.Text("and then we")),
                        ModelResponse.StopReason.MAX_TOKENS,
                        new Usage(10, 4096, 0, 0))));
    Session s = new Session(cut, DEFAULTS);
    s.create(spec(say("unused")));
    SessionState state = s.awaitStatus(SessionStatus.FAILED);
    assertThat(state.error().code()).isEqualTo("max_tokens");
    assertThat(state.turns()).isEqualTo(1);
    assertThat(s.journalTypes())
        .containsExactly("SessionStarted", "ModelResponded", "SessionFailed");
    assertThat(s.journal(ModelResponded.class).get(0).stopReason()).isEqualTo("max_tokens");
  }

  // ------------------------------------------------------------------ observer and passivation

  @Test
  void theObserverIsToldWhenTheStatusChangesWithTheJournalSequenceNumber() {
    Session s = session();
    s.create(
        spec(
            50,
            true,
            tools("1", use("ls", "{'path': '/session'}")),
            tools("2", use("ls", "{'path': '/session'}")),
            say("3")));
    s.awaitStatus(SessionStatus.WAITING);
    s.addMessage("go on");
    s.awaitState(
        st -> st.status() == SessionStatus.WAITING && st.turns() == 4, "waiting after turn 4");
    s.cancel();
    int last = s.journal().size();
    // running (created), waiting, running (message), waiting, cancelled: one report per status
    // change.
    assertThat(s.observer.statuses())
        .containsExactly("running", "waiting", "running", "waiting", "cancelled");
    assertThat(s.observer.seqs).isSorted().first().isEqualTo(1L);
    assertThat(s.observer.seqs).last().isEqualTo((long) last);
    assertThat(s.observer.summaries.get(1).turns()).isEqualTo(3);
  }

  @Test
  void anIdleFinishedSessionAsksItsShardToPassivateItButNotWhileRunning() {
    Session s = session(settings(Duration.ofMillis(500), 200));
    s.create(spec(slowly(1000, "slow answer")));
    // The idle timer is off while the model thinks (it would fire at 500 ms).
    s.shard.expectNoMessage(Duration.ofMillis(800));
    s.awaitStatus(SessionStatus.COMPLETED);
    long completedAt = System.nanoTime();
    ClusterSharding.ShardCommand msg =
        s.shard.expectMessageClass(ClusterSharding.Passivate.class, Duration.ofSeconds(5));
    assertThat(Duration.ofNanos(System.nanoTime() - completedAt).toMillis())
        .isGreaterThanOrEqualTo(300);
    assertThat(((ClusterSharding.Passivate<?>) msg).entity()).isNotNull();
  }

  @Test
  void aFinishedSessionPassivatesSoonerThanAWaitingOne() {
    SessionSettings quick =
        new SessionSettings(
            Duration.ofMinutes(2),
            500,
            10_000,
            200,
            LIMITS,
            Duration.ofSeconds(5),
            Duration.ofMillis(300));
    Session waiting = session(quick);
    waiting.create(spec(50, true, say("waiting for you")));
    waiting.awaitStatus(SessionStatus.WAITING);
    waiting.shard.expectNoMessage(Duration.ofMillis(800));

    Session done = session(quick);
    done.create(spec(say("done")));
    done.awaitStatus(SessionStatus.COMPLETED);
    done.shard.expectMessageClass(ClusterSharding.Passivate.class, Duration.ofSeconds(3));
  }

  @Test
  void aWaitingSessionPassivatesToo() {
    Session s = session(settings(Duration.ofMillis(200), 200));
    s.create(spec(50, true, say("waiting for you")));
    s.awaitStatus(SessionStatus.WAITING);
    s.shard.expectMessageClass(ClusterSharding.Passivate.class, Duration.ofSeconds(5));
  }

  @Test
  void aNeverCreatedEntityPassivatesAfterTheIdleTime() {
    Session s = session(settings(Duration.ofMillis(200), 200));
    assertThat(error(s.get().reply())).startsWith("not_found:");
    s.shard.expectMessageClass(ClusterSharding.Passivate.class, Duration.ofSeconds(5));
  }

  @Test
  void stopFromTheShardStopsTheEntity() {
    TestProbe<ClusterSharding.ShardCommand> shard = kit.createTestProbe();
    TestProbe<StatusReply<Summary>> replies = kit.createTestProbe();
    SessionServices services =
        TestServices.of(
            new ModelClients("scripted", new ScriptedModel()),
            new PathRouter(EnumSet.of(Namespace.SESSION)),
            new RecordingObserver(),
            DEFAULTS);
    ActorRef<Command> entity =
        kit.spawn(SessionEntity.create("s-" + UUID.randomUUID(), shard.ref(), services));
    entity.tell(new Get(replies.ref()));
    assertThat(replies.receiveMessage().isError()).isTrue();
    entity.tell(SessionEntity.Stop.INSTANCE);
    replies.expectTerminated(entity, Duration.ofSeconds(3));
  }

  @Test
  void aHandOffDuringAModelCallRecordsTheAnswerInFlightAndStartsNothingNew() {
    Session s = session();
    s.create(
        spec(
            slowly(600, "writing", use("write", "{'path': '/session/a', 'content': 'x'}")),
            say("done")));
    s.es.runCommand(SessionEntity.Stop.INSTANCE);
    // Still there, the call still in flight: nothing recorded, and it answers.
    assertThat(success(s.get().reply()).turns()).isZero();
    awaitTrue(
        () -> s.journalTypes().contains("ModelResponded"), "the answer in flight was recorded");
    pause(300);
    assertThat(s.journalTypes())
        .as("the answer and its /session tool, then nothing more")
        .containsExactly(
            "SessionStarted", "ModelResponded", "ToolCallStarted", "ToolCallCompleted");
    assertThat(s.model.turnsAsked())
        .as("the next turn is left to the next incarnation")
        .containsExactly(1);
  }

  @Test
  void aHandOffStopsWhenTheGraceRunsOutWithTheCallStillInFlight() {
    TestProbe<ClusterSharding.ShardCommand> shard = kit.createTestProbe();
    TestProbe<StatusReply<Summary>> replies = kit.createTestProbe();
    SessionSettings shortGrace =
        new SessionSettings(
            Duration.ofMinutes(2),
            500,
            10_000,
            200,
            LIMITS,
            Duration.ofMillis(300),
            Duration.ofMinutes(2));
    SessionServices services =
        TestServices.of(
            new ModelClients("scripted", RecordingModel.scripted()),
            new PathRouter(EnumSet.of(Namespace.SESSION)),
            new RecordingObserver(),
            shortGrace);
    ActorRef<Command> entity =
        kit.spawn(SessionEntity.create("s-" + UUID.randomUUID(), shard.ref(), services));
    // A model call that outlasts the grace: the entity stops when the grace runs out, not at its
    // answer.
    entity.tell(
        new Create(
            "acme",
            "alice",
            spec(slowly(5_000, "slow", use("write", "{'path': '/session/a', 'content': 'x'}"))),
            replies.ref()));
    assertThat(replies.receiveMessage().isSuccess()).isTrue();
    long t0 = System.nanoTime();
    entity.tell(SessionEntity.Stop.INSTANCE);
    replies.expectTerminated(entity, Duration.ofSeconds(3));
    assertThat(Duration.ofNanos(System.nanoTime() - t0)).isLessThan(Duration.ofSeconds(3));
  }

  // ------------------------------------------------------------------ recovery (DESIGN.md §3)

  @Test
  void aModelCallInFlightAtACrashIsMadeAgainWithTheSameTranscriptAndNoTurnIsRecordedTwice() {
    Session s = session();
    s.create(
        spec(
            slowly(1000, "writing", use("write", "{'path': '/session/a', 'content': 'x'}")),
            say("done")));
    assertThat(s.journalTypes()).containsExactly("SessionStarted");

    // The node dies while the first model call is in flight: nothing about it was recorded.
    SessionState recovered = s.es.restart().state();
    assertThat(recovered.status()).isEqualTo(SessionStatus.RUNNING);
    assertThat(recovered.turns()).isZero();

    SessionState state = s.awaitStatus(SessionStatus.COMPLETED);
    awaitTrue(
        () -> s.model.answered.get() == 3, "both calls of turn 1 and the call of turn 2 answered");
    pause(100); // the first incarnation's late answer has nowhere to go

    assertThat(s.model.turnsAsked()).containsExactly(1, 1, 2);
    assertThat(s.model.requests.get(1).messages()).isEqualTo(s.model.requests.get(0).messages());
    assertThat(s.model.requests.get(1).system()).isEqualTo(s.model.requests.get(0).system());
    assertThat(s.journal(ModelResponded.class))
        .extracting(ModelResponded::turn)
        .containsExactly(1, 2);
    assertThat(s.journal(ToolCallCompleted.class))
        .extracting(ToolCallCompleted::callId)
        .containsExactly("toolu_1_0");
    assertThat(s.journalTypes())
        .containsExactly(
            "SessionStarted",
            "ModelResponded",
            "ToolCallStarted",
            "ToolCallCompleted",
            "ModelResponded",
            "SessionCompleted");
    assertThat(state.turns()).isEqualTo(2);
    assertThat(success(s.get().reply()).turns()).isEqualTo(2);
  }

  @Test
  void toolCallStartedButNotCompletedIsReplayedOnceOnRecovery() {
    Session s = session();
    JsonNode writeInput = json("{'path': '/session/plan.md', 'content': 'step 1'}");
    SessionSpec spec = spec(tools("planning", new ScriptedCall("write", writeInput)), say("done"));
    Instant t = Instant.parse("2025-01-01T00:00:00Z");
    // The journal of a node that died after recording the turn's start but before its result.
    s.es.initialize(
        new SessionStarted(s.id, "acme", "alice", spec, t),
        new ModelResponded(
            1,
            List.of(
                new Block.Text("planning"), new Block.ToolUse("toolu_1_0", "write", writeInput)),
            new Usage(10, 5, 0, 0),
            "tool_use",
            t),
        new ToolCallStarted(1, "toolu_1_0", "write", t));

    SessionState state = s.awaitStatus(SessionStatus.COMPLETED);
    assertThat(s.journalTypes())
        .containsExactly(
            "SessionStarted",
            "ModelResponded",
            "ToolCallStarted",
            "ToolCallCompleted",
            "ModelResponded",
            "SessionCompleted");
    List<ToolCallCompleted> completed = s.journal(ToolCallCompleted.class);
    assertThat(completed)
        .singleElement()
        .satisfies(
            c -> {
              assertThat(c.callId()).isEqualTo("toolu_1_0");
              assertThat(c.turn()).isEqualTo(1);
              assertThat(c.isError()).isFalse();
              assertThat(c.content()).isEqualTo("wrote /session/plan.md (6 bytes)");
            });
    assertThat(state.files().files()).containsExactly(Map.entry("/session/plan.md", "step 1"));
    assertThat(state.turns()).isEqualTo(2);
    assertThat(state.openCalls()).isEmpty();
    assertThat(state.messages().get(2).content())
        .containsExactly(
            new Block.ToolResult("toolu_1_0", "wrote /session/plan.md (6 bytes)", false));
    // Turn 1 was recorded, so the model is only asked for turn 2.
    assertThat(s.model.turnsAsked()).containsExactly(2);

    // A further restart of the finished session replays nothing.
    SessionState again = s.es.restart().state();
    assertThat(again).isEqualTo(state);
    pause(100);
    assertThat(s.journal(ToolCallCompleted.class)).hasSize(1);
    assertThat(s.model.turnsAsked()).containsExactly(2);
  }

  @Test
  void onlyTheUnfinishedToolCallOfATurnIsReplayedOnRecoveryAgainstTheFilesAsTheyWere() {
    Session s = session();
    JsonNode write = json("{'path': '/session/a', 'content': 'draft'}");
    JsonNode edit = json("{'path': '/session/a', 'old_string': 'draft', 'new_string': 'final'}");
    SessionSpec spec =
        spec(
            tools("", new ScriptedCall("write", write), new ScriptedCall("edit", edit)),
            say("done"));
    Instant t = Instant.parse("2025-01-01T00:00:00Z");
    s.es.initialize(
        new SessionStarted(s.id, "acme", "alice", spec, t),
        new ModelResponded(
            1,
            List.of(
                new Block.ToolUse("toolu_1_0", "write", write),
                new Block.ToolUse("toolu_1_1", "edit", edit)),
            Usage.ZERO,
            "tool_use",
            t),
        new ToolCallStarted(1, "toolu_1_0", "write", t),
        new ToolCallStarted(1, "toolu_1_1", "edit", t),
        new ToolCallCompleted(
            1,
            "toolu_1_0",
            "wrote /session/a (5 bytes)",
            false,
            new SessionFiles.Change("/session/a", "draft"),
            t));

    SessionState state = s.awaitStatus(SessionStatus.COMPLETED);
    assertThat(s.journal(ToolCallCompleted.class))
        .extracting(ToolCallCompleted::callId)
        .containsExactly("toolu_1_0", "toolu_1_1");
    assertThat(s.journal(ToolCallCompleted.class).get(1).content())
        .isEqualTo("edited /session/a (5 bytes)");
    assertThat(state.files().files()).containsExactly(Map.entry("/session/a", "final"));
    assertThat(state.messages().get(2).content())
        .containsExactly(
            new Block.ToolResult("toolu_1_0", "wrote /session/a (5 bytes)", false),
            new Block.ToolResult("toolu_1_1", "edited /session/a (5 bytes)", false));
    assertThat(s.model.turnsAsked()).containsExactly(2);
  }

  @Test
  void aFinishedSessionRecoversWithoutCallingTheModelAndReportsItself() {
    Session s = session();
    s.create(spec(WRITE_THEN_READ, say("done")));
    SessionState before = s.awaitStatus(SessionStatus.COMPLETED);
    int reports = s.observer.summaries.size();

    SessionState after = s.es.restart().state();
    assertThat(after).isEqualTo(before);
    assertThat(s.model.turnsAsked()).containsExactly(1, 2);
    assertThat(s.observer.summaries).hasSize(reports + 1);
    assertThat(s.observer.summaries.get(reports)).isEqualTo(before.summary());
    assertThat(s.observer.seqs.get(reports)).isEqualTo((long) s.journal().size());
  }

  @Test
  void aSessionRecoveredFromItsSnapshotHasTheSameState() {
    Session s = session(settings(Duration.ofMinutes(2), 2));
    s.create(spec(WRITE_THEN_READ, say("done")));
    SessionState before = s.awaitStatus(SessionStatus.COMPLETED);
    assertThat(s.journal()).hasSize(8);

    List<Pair<SnapshotMeta, Object>> snapshots =
        s.es.snapshotTestKit().orElseThrow().persistedInStorage(s.pid);
    assertThat(snapshots).isNotEmpty();
    Pair<SnapshotMeta, Object> latest = snapshots.get(snapshots.size() - 1);
    assertThat(latest.first().sequenceNr()).isEqualTo(8L);
    assertThat(latest.second()).isEqualTo(before);

    // Recovery from the snapshot alone (the events are gone, their sequence numbers kept).
    s.es.persistenceTestKit().clearByIdPreservingSeqNumbers(s.pid);
    SessionState recovered = s.es.restart().state();
    assertThat(recovered).isEqualTo(before);
    assertThat(recovered.files().files())
        .containsExactly(Map.entry("/session/notes.md", "hello\nworld"));
    assertThat(success(s.get().reply())).isEqualTo(before.summary());
    assertThat(s.model.turnsAsked()).containsExactly(1, 2);
  }

  @Test
  void aRunningSessionRecoveredFromASnapshotAndLaterEventsCarriesOn() {
    Session s = session(settings(Duration.ofMinutes(2), 3));
    s.create(
        spec(
            tools("1", use("write", "{'path': '/session/a', 'content': '1'}")),
            slowly(
                600,
                "2",
                use("edit", "{'path': '/session/a', 'old_string': '1', 'new_string': '2'}")),
            say("3")));
    SessionState midway =
        s.awaitState(
            st -> st.turns() == 1 && st.openCalls().isEmpty() && st.messages().size() == 3,
            "after turn 1");
    assertThat(s.es.snapshotTestKit().orElseThrow().persistedInStorage(s.pid)).isNotEmpty();

    SessionState recovered = s.es.restart().state();
    assertThat(recovered).isEqualTo(midway);
    SessionState state = s.awaitStatus(SessionStatus.COMPLETED);
    assertThat(state.turns()).isEqualTo(3);
    assertThat(state.files().files()).containsExactly(Map.entry("/session/a", "2"));
    assertThat(s.journal(ModelResponded.class))
        .extracting(ModelResponded::turn)
        .containsExactly(1, 2, 3);
  }

  // ------------------------------------------------------------------ the pure event handler

  @Test
  void toolResultsArriveInTheOrderTheModelAskedWhateverTheOrderOfCompletion() {
    Instant t = Instant.parse("2025-01-01T00:00:00Z");
    SessionState s =
        SessionState.empty("s").apply(new SessionStarted("s", "acme", "alice", spec(say("x")), t));
    s =
        s.apply(
            new ModelResponded(
                1,
                List.of(
                    new Block.ToolUse("a", "ls", json("{'path': '/session'}")),
                    new Block.ToolUse("b", "ls", json("{'path': '/session'}"))),
                Usage.ZERO,
                "tool_use",
                t));
    s = s.apply(new ToolCallStarted(1, "a", "ls", t));
    s = s.apply(new ToolCallStarted(1, "b", "ls", t));
    s = s.apply(new UserMessageAdded("queued", t));
    s = s.apply(new ToolCallCompleted(1, "b", "B", false, null, t));
    assertThat(s.openCalls()).containsExactly("a");
    assertThat(s.transcript().messages())
        .last()
        .isEqualTo(Message.user(List.of(new Block.ToolResult("b", "B", false))));
    s = s.apply(new ToolCallCompleted(1, "a", "A", true, null, t));
    assertThat(s.openCalls()).isEmpty();
    assertThat(s.results()).isEmpty();
    assertThat(s.queued()).isEmpty();
    assertThat(s.messages())
        .last()
        .isEqualTo(
            Message.user(
                List.of(
                    new Block.ToolResult("a", "A", true),
                    new Block.ToolResult("b", "B", false),
                    new Block.Text("queued"))));
    assertThat(s.readyForModel()).isTrue();
  }

  @Test
  void usageAddsUpOverTurns() {
    Instant t = Instant.parse("2025-01-01T00:00:00Z");
    SessionState s =
        SessionState.empty("s").apply(new SessionStarted("s", "acme", "alice", spec(say("x")), t));
    s =
        s.apply(
            new ModelResponded(
                1, List.of(new Block.Text("a")), new Usage(100, 10, 5, 1), "end_turn", t));
    s = s.apply(new SessionWaiting("a", t));
    s = s.apply(new UserMessageAdded("more", t));
    s =
        s.apply(
            new ModelResponded(
                2, List.of(new Block.Text("b")), new Usage(200, 20, 0, 2), "end_turn", t));
    assertThat(s.usage()).isEqualTo(new Usage(300, 30, 5, 3));
    assertThat(s.turns()).isEqualTo(2);
    assertThat(s.summary().usage()).isEqualTo(new Summary.UsageView(300, 30, 5, 3));
  }

  // ------------------------------------------------------------------ approvals and waits

  private static SessionSpec held(List<String> approvals, ScriptedTurn... turns) {
    return new SessionSpec(
        PROMPT,
        new ModelSpec("scripted", null, List.of(turns)),
        null,
        50,
        false,
        METADATA,
        approvals);
  }

  private static final Instant T = Instant.parse("2025-01-01T00:00:00Z");

  private StatusReply<Summary> decide(Session s, String callId, boolean allow, String message) {
    return s.es
        .<StatusReply<Summary>>runCommand(r -> new SessionEntity.Decide(callId, allow, message, r))
        .reply();
  }

  @Test
  void aCallThePolicyNamesWaitsForApprovalWhileTheTurnsOtherCallsRun() {
    Session s = session();
    s.create(
        held(
            List.of("edit"),
            tools(
                "",
                use("write", "{'path': '/session/a', 'content': 'x'}"),
                use("edit", "{'path': '/session/a', 'old_string': 'x', 'new_string': 'y'}")),
            say("done")));
    SessionState asking =
        s.awaitState(
            st -> st.shown() == SessionStatus.REQUIRES_ACTION && st.results().size() == 1,
            "requires_action");
    assertThat(s.journalTypes())
        .containsExactly(
            "SessionStarted",
            "ModelResponded",
            "ToolCallStarted",
            "ToolCallStarted",
            "ApprovalRequested",
            "ToolCallCompleted");
    assertThat(asking.holds().approvals())
        .extracting(Holds.Approval::callId)
        .containsExactly("toolu_1_1");
    assertThat(asking.files().files()).containsExactly(Map.entry("/session/a", "x"));
    Summary summary = asking.summary();
    assertThat(summary.status()).isEqualTo("requires_action");
    assertThat(summary.pendingApprovals())
        .singleElement()
        .satisfies(
            p -> {
              assertThat(p.name()).isEqualTo("edit");
              assertThat(p.input().path("new_string").asText()).isEqualTo("y");
            });
    awaitTrue(
        () -> s.observer.statuses().equals(List.of("running", "requires_action")),
        "requires_action reported");
    // Nothing else happens while it waits: no model call, and a restart (from a snapshot or not)
    // keeps it so.
    pause(200);
    assertThat(s.model.turnsAsked()).containsExactly(1);
    assertThat(s.es.restart().state()).isEqualTo(asking);

    Summary after = success(decide(s, "toolu_1_1", true, null));
    assertThat(after.pendingApprovals()).isEmpty();
    SessionState done = s.awaitStatus(SessionStatus.COMPLETED);
    assertThat(done.files().files()).containsExactly(Map.entry("/session/a", "y"));
    assertThat(s.journal(SessionEntity.ApprovalDecided.class))
        .singleElement()
        .satisfies(d -> assertThat(d.allowed()).isTrue());
    assertThat(s.journal(ToolCallCompleted.class))
        .extracting(ToolCallCompleted::callId)
        .containsExactly("toolu_1_0", "toolu_1_1");
    assertThat(s.model.turnsAsked()).containsExactly(1, 2);
    assertThat(s.observer.statuses())
        .containsSubsequence("requires_action", "running", "completed");
  }

  @Test
  void aCallHeldAtACrashIsNotRunOnRecoveryAndRunsOnceWhenAllowed() {
    Session s = session();
    JsonNode write = json("{'path': '/session/plan.md', 'content': 'go'}");
    SessionSpec spec =
        held(List.of("all"), tools("", new ScriptedCall("write", write)), say("done"));
    s.es.initialize(
        new SessionStarted(s.id, "acme", "alice", spec, T),
        new ModelResponded(
            1, List.of(new Block.ToolUse("toolu_1_0", "write", write)), Usage.ZERO, "tool_use", T),
        new ToolCallStarted(1, "toolu_1_0", "write", T),
        new SessionEntity.ApprovalRequested(1, "toolu_1_0", "write", T));
    pause(300);
    assertThat(s.journal(ToolCallCompleted.class)).isEmpty();
    assertThat(s.model.turnsAsked()).isEmpty();
    assertThat(success(s.get().reply()).status()).isEqualTo("requires_action");

    success(decide(s, "toolu_1_0", true, "ok"));
    SessionState done = s.awaitStatus(SessionStatus.COMPLETED);
    assertThat(done.files().files()).containsExactly(Map.entry("/session/plan.md", "go"));
    assertThat(s.journal(ToolCallCompleted.class)).hasSize(1);
    s.es.restart();
    pause(100);
    assertThat(s.journal(ToolCallCompleted.class)).hasSize(1);
  }

  @Test
  void anAllowedCallCutOffByACrashRunsOnRecoveryAndADeniedOneNever() {
    Session s = session();
    JsonNode a = json("{'path': '/session/a', 'content': 'a'}");
    JsonNode b = json("{'path': '/session/b', 'content': 'b'}");
    SessionSpec spec =
        held(
            List.of("write"),
            tools("", new ScriptedCall("write", a), new ScriptedCall("write", b)),
            say("done"));
    s.es.initialize(
        new SessionStarted(s.id, "acme", "alice", spec, T),
        new ModelResponded(
            1,
            List.of(
                new Block.ToolUse("toolu_1_0", "write", a),
                new Block.ToolUse("toolu_1_1", "write", b)),
            Usage.ZERO,
            "tool_use",
            T),
        new ToolCallStarted(1, "toolu_1_0", "write", T),
        new ToolCallStarted(1, "toolu_1_1", "write", T),
        new SessionEntity.ApprovalRequested(1, "toolu_1_0", "write", T),
        new SessionEntity.ApprovalRequested(1, "toolu_1_1", "write", T),
        new SessionEntity.ApprovalDecided(1, "toolu_1_1", false, "no b", T),
        new ToolCallCompleted(1, "toolu_1_1", "denied: no b", true, null, T),
        new SessionEntity.ApprovalDecided(1, "toolu_1_0", true, null, T));
    SessionState done = s.awaitStatus(SessionStatus.COMPLETED);
    assertThat(done.files().files()).containsExactly(Map.entry("/session/a", "a"));
    assertThat(s.journal(ToolCallCompleted.class))
        .extracting(ToolCallCompleted::callId)
        .containsExactly("toolu_1_1", "toolu_1_0");
  }

  @Test
  void aDenialIsTheCallsErrorAndDecidingTwiceOrOnAnUnknownCallIsRefused() {
    Session s = session();
    s.create(
        held(
            List.of("write /session/secret/**"),
            tools(
                "",
                use("write", "{'path': '/session/secret/k', 'content': 'x'}"),
                use("write", "{'path': '/session/open', 'content': 'y'}")),
            say("done")));
    s.awaitState(
        st -> st.shown() == SessionStatus.REQUIRES_ACTION && st.results().size() == 1,
        "requires_action");
    assertThat(decide(s, "toolu_9_9", true, null).getError().getMessage()).startsWith("not_found:");
    assertThat(decide(s, "toolu_1_1", true, null).getError().getMessage()).startsWith("conflict:");
    success(decide(s, "toolu_1_0", false, "secrets stay out"));
    SessionState done = s.awaitStatus(SessionStatus.COMPLETED);
    assertThat(done.files().files()).containsOnlyKeys("/session/open");
    ToolCallCompleted denied = s.journal(ToolCallCompleted.class).get(1);
    assertThat(denied.callId()).isEqualTo("toolu_1_0");
    assertThat(denied.isError()).isTrue();
    assertThat(denied.content()).contains("denied").endsWith(": secrets stay out");
    assertThat(decide(s, "toolu_1_0", true, null).getError().getMessage()).startsWith("conflict:");
  }

  @Test
  void aWaitThatCameDueWhileTheSessionWasAwayTimesOutOnceOnRecovery() {
    Session s = session();
    JsonNode wait = json("{'event': 'ci', 'timeoutSeconds': 5}");
    SessionSpec spec = held(List.of(), tools("", new ScriptedCall("wait", wait)), say("done"));
    Instant started = Instant.now().minusSeconds(10);
    s.es.initialize(
        new SessionStarted(s.id, "acme", "alice", spec, started),
        new ModelResponded(
            1,
            List.of(new Block.ToolUse("toolu_1_0", "wait", wait)),
            Usage.ZERO,
            "tool_use",
            started),
        new ToolCallStarted(1, "toolu_1_0", "wait", started),
        new SessionEntity.WaitStarted(1, "toolu_1_0", "ci", 5, started.plusSeconds(5), started));
    s.awaitStatus(SessionStatus.COMPLETED);
    assertThat(s.journal(ToolCallCompleted.class))
        .singleElement()
        .satisfies(
            c -> {
              assertThat(c.isError()).isTrue();
              assertThat(c.content())
                  .isEqualTo("the wait timed out: no event 'ci' arrived within 5 s");
            });
    s.es.restart();
    s.es.runCommand(SessionEntity.Wake.INSTANCE);
    pause(100);
    assertThat(s.journal(ToolCallCompleted.class)).hasSize(1);
  }

  @Test
  void anEventSentBeforeTheWaitIsKeptAcrossARestartAndTakenWhenTheWaitStarts() {
    Session s = session();
    s.create(
        spec(
            slowly(400, "", use("ls", "{'path': '/session'}")),
            tools("", use("wait", "{'event': 'ci', 'timeoutSeconds': 60}")),
            tools("", use("wait", "{'event': 'ci', 'timeoutSeconds': 60}")),
            say("done")));
    SessionEntity.EventAccepted early =
        s.es
            .<StatusReply<SessionEntity.EventAccepted>>runCommand(
                r -> new SessionEntity.DeliverEvent("ci", "{\"run\":1}", r))
            .reply()
            .getValue();
    assertThat(early.queued()).isTrue();
    assertThat(s.es.restart().state().holds().inbox())
        .extracting(Holds.Inbound::payload)
        .containsExactly("{\"run\":1}");
    // The first wait takes the kept event in the write that starts it; the second waits.
    SessionState waiting = s.awaitState(st -> st.shown() == SessionStatus.WAITING, "waiting");
    assertThat(waiting.holds().inbox()).isEmpty();
    assertThat(waiting.holds().waits()).extracting(Holds.Wait::callId).containsExactly("toolu_3_0");
    List<ToolCallCompleted> results = s.journal(ToolCallCompleted.class);
    assertThat(results.get(1).callId()).isEqualTo("toolu_2_0");
    assertThat(results.get(1).content()).isEqualTo("{\"run\":1}");
    SessionEntity.EventAccepted later =
        s.es
            .<StatusReply<SessionEntity.EventAccepted>>runCommand(
                r -> new SessionEntity.DeliverEvent("ci", "{\"run\":2}", r))
            .reply()
            .getValue();
    assertThat(later.toolUseId()).isEqualTo("toolu_3_0");
    assertThat(later.queued()).isFalse();
    SessionState done = s.awaitStatus(SessionStatus.COMPLETED);
    assertThat(done.holds()).isEqualTo(Holds.NONE);
    assertThat(s.journal(ToolCallCompleted.class))
        .extracting(ToolCallCompleted::content)
        .containsExactly(results.get(0).content(), "{\"run\":1}", "{\"run\":2}");
  }

  @Test
  void aCancelledSessionWaitsForNothing() {
    SessionState st =
        SessionState.empty("s").apply(new SessionStarted("s", "acme", "alice", spec(say("x")), T));
    JsonNode wait = json("{'event': 'e', 'timeoutSeconds': 9}");
    st =
        st.apply(
            new ModelResponded(
                1, List.of(new Block.ToolUse("w", "wait", wait)), Usage.ZERO, "tool_use", T));
    st = st.apply(new ToolCallStarted(1, "w", "wait", T));
    st = st.apply(new SessionEntity.WaitStarted(1, "w", "e", 9, T.plusSeconds(9), T));
    st = st.apply(new SessionEntity.EventReceived("other", "1", T));
    assertThat(st.shown()).isEqualTo(SessionStatus.WAITING);
    assertThat(st.busy()).isFalse();
    assertThat(st.summary().waits())
        .singleElement()
        .satisfies(w -> assertThat(w.deadline()).isEqualTo(T.plusSeconds(9)));
    SessionState cancelled = st.apply(new SessionCancelled(T));
    assertThat(cancelled.holds()).isEqualTo(Holds.NONE);
    assertThat(cancelled.summary().waits()).isEmpty();
    assertThat(cancelled.summary().status()).isEqualTo("cancelled");
  }
}
