package dev.outboard.ops;

import static org.assertj.core.api.Assertions.assertThat;

import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.encoder.JsonEncoder;
import ch.qos.logback.classic.joran.JoranConfigurator;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.classic.spi.LoggingEvent;
import ch.qos.logback.core.AppenderBase;
import ch.qos.logback.core.OutputStreamAppender;
import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Json;
import dev.outboard.memory.OrgFileOp;
import dev.outboard.memory.OrgFileStore;
import dev.outboard.memory.OrgMemory;
import dev.outboard.model.ModelClients;
import dev.outboard.model.ModelSpec;
import dev.outboard.model.ModelSpec.ScriptedCall;
import dev.outboard.model.ModelSpec.ScriptedTurn;
import dev.outboard.model.ScriptedModel;
import dev.outboard.sandbox.SandboxProvider;
import dev.outboard.sandbox.SandboxSettings;
import dev.outboard.session.SessionEntity;
import dev.outboard.session.SessionFiles;
import dev.outboard.session.SessionServices;
import dev.outboard.session.SessionSettings;
import dev.outboard.session.SessionSpec;
import dev.outboard.session.Summary;
import dev.outboard.store.Database;
import dev.outboard.store.StoreSettings;
import dev.outboard.testing.TestServices;
import dev.outboard.testing.UnitTestConfig;
import dev.outboard.vfs.Namespace;
import dev.outboard.vfs.PathRouter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.CopyOnWriteArrayList;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.pattern.StatusReply;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.io.TempDir;
import org.slf4j.LoggerFactory;

/**
 * Log lines of a session's actor and of its sandbox handle carry the session id and org in the MDC
 * (on the journal's callbacks too, where {@code Behaviors.withMdc} on the command class does not
 * reach), an org writer's lines carry the org, and {@code conf/logback-json.xml} writes the MDC
 * into each JSON line.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class LogContextTest {
  private ActorTestKit kit;
  private final Captured captured = new Captured();

  @BeforeAll
  void start() {
    kit = ActorTestKit.create("LogContextTest", UnitTestConfig.inMemoryPersistence());
    captured.setContext(root().getLoggerContext());
    captured.start();
    root().addAppender(captured);
  }

  @AfterAll
  void stop() {
    root().detachAppender(captured);
    kit.shutdownTestKit();
  }

  @Test
  void linesOfASessionAndItsSandboxHandleCarryTheSessionIdAndOrg() {
    String id = "s-" + UUID.randomUUID();
    TestProbe<ClusterSharding.ShardCommand> shard = kit.createTestProbe();
    SessionServices services =
        TestServices.builder(
                new ModelClients("scripted", new ScriptedModel()),
                new PathRouter(EnumSet.of(Namespace.SESSION, Namespace.WORKSPACE)),
                (summary, seq) -> {},
                new SessionSettings(
                    Duration.ofMinutes(2),
                    50,
                    10_000,
                    200,
                    new SessionFiles.Limits(1 << 20, 8 << 20, 256 * 1024)))
            .sandboxes(
                new NoSandboxes(),
                new SandboxSettings(
                    new SandboxProvider.Limits(
                        1 << 28, 64, Duration.ofSeconds(10), 1024, Duration.ofSeconds(10)),
                    Duration.ofMinutes(1),
                    Duration.ofMinutes(2),
                    Duration.ZERO,
                    Duration.ofMillis(300),
                    Duration.ofSeconds(5),
                    Duration.ofMillis(100),
                    16))
            .build();
    ActorRef<SessionEntity.Command> session =
        kit.spawn(SessionEntity.create(id, shard.ref(), services));

    // One turn with a bash call (the handle cannot start a sandbox and says so), then the budget
    // of one turn is spent: the session fails, logged from the journal's callback.
    ScriptedTurn bash =
        new ScriptedTurn(
            "running", List.of(new ScriptedCall("bash", json("{\"command\": \"ls\"}"))), null);
    SessionSpec spec =
        new SessionSpec(
            "go",
            new ModelSpec("scripted", null, List.of(bash, new ScriptedTurn("done", null, null))),
            null,
            1,
            false,
            null);
    TestProbe<StatusReply<Summary>> reply = kit.createTestProbe();
    session.tell(new SessionEntity.Create("acme", "alice", spec, reply.ref()));
    assertThat(reply.receiveMessage().isSuccess()).isTrue();
    ILoggingEvent handleLine = captured.await("could not start a sandbox");
    ILoggingEvent failedLine = captured.await("session failed: max_turns");

    // Sharding stops it without its asking: a hand-off, logged on the Stop command.
    session.tell(SessionEntity.Stop.INSTANCE);
    ILoggingEvent handoffLine = captured.await("handed off by sharding");

    for (ILoggingEvent line : List.of(handleLine, failedLine, handoffLine)) {
      assertThat(line.getMDCPropertyMap())
          .as(line.getFormattedMessage())
          .containsEntry("sessionId", id)
          .containsEntry("org", "acme");
    }
  }

  @Test
  void linesOfAnOrgWriterCarryTheOrg(@TempDir Path dir) {
    // A store whose database is gone: every write fails, is tried again until its caller stops
    // waiting (a second here), and the writer says so.
    Database db =
        new Database(
            new StoreSettings("jdbc:h2:file:" + dir.resolve("db"), "sa", "", dir, true, 2),
            kit.system()
                .dispatchers()
                .lookup(DispatcherSelector.fromConfig("outboard-blocking-dispatcher")));
    db.close();
    String org = "org-" + UUID.randomUUID();
    TestProbe<ClusterSharding.ShardCommand> shard = kit.createTestProbe();
    ActorRef<OrgMemory.Command> writer =
        kit.spawn(
            OrgMemory.create(
                org,
                shard.ref(),
                new OrgFileStore(db, 1024),
                new OrgMemory.Settings(Duration.ofMinutes(1), 1000)));
    TestProbe<OrgFileOp.Outcome> replies = kit.createTestProbe();
    // The first write goes alone; the next two queue behind it and go together (then one by one).
    for (int i = 0; i < 3; i++) {
      writer.tell(
          new OrgMemory.Apply(
              new OrgFileOp.Write("memory", "notes/" + i + ".md", "x", null),
              new OrgFileOp.Origin(null, null, null),
              java.time.Instant.now().plusSeconds(1),
              replies.ref()));
    }
    for (int i = 0; i < 3; i++)
      assertThat(replies.receiveMessage(Duration.ofSeconds(10)).ok()).isFalse();

    ILoggingEvent failed = captured.await("org file write could not reach the database", org);
    for (ILoggingEvent line : List.of(failed)) {
      assertThat(line.getMDCPropertyMap()).as(line.getFormattedMessage()).containsEntry("org", org);
    }
  }

  @Test
  void jsonLogLinesCarryTheMdc() throws Exception {
    LoggerContext context = new LoggerContext();
    JoranConfigurator configurator = new JoranConfigurator();
    configurator.setContext(context);
    configurator.doConfigure(Path.of("conf/logback-json.xml").toFile());
    Logger root = context.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME);
    @SuppressWarnings("unchecked")
    OutputStreamAppender<ILoggingEvent> stdout =
        (OutputStreamAppender<ILoggingEvent>) root.getAppender("STDOUT");
    assertThat(stdout.getEncoder()).isInstanceOf(JsonEncoder.class);

    LoggingEvent event =
        new LoggingEvent(
            LogContextTest.class.getName(),
            root,
            ch.qos.logback.classic.Level.WARN,
            "session failed: {}",
            null,
            new Object[] {"max_turns"});
    event.setMDCPropertyMap(Map.of("sessionId", "s-1", "org", "acme"));
    JsonNode line =
        Json.MAPPER.readTree(new String(stdout.getEncoder().encode(event), StandardCharsets.UTF_8));
    assertThat(line.path("mdc").path("sessionId").asText()).isEqualTo("s-1");
    assertThat(line.path("mdc").path("org").asText()).isEqualTo("acme");
    assertThat(line.path("formattedMessage").asText()).isEqualTo("session failed: max_turns");
    context.stop();
  }

  private static Logger root() {
    return (Logger) LoggerFactory.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME);
  }

  private static JsonNode json(String text) {
    try {
      return Json.MAPPER.readTree(text);
    } catch (Exception e) {
      throw new IllegalArgumentException(text, e);
    }
  }

  /** Keeps every log event, with the MDC of the thread that logged it. */
  private static final class Captured extends AppenderBase<ILoggingEvent> {
    private final List<ILoggingEvent> events = new CopyOnWriteArrayList<>();

    @Override
    protected void append(ILoggingEvent event) {
      event.prepareForDeferredProcessing(); // the MDC is read now, on the logging thread
      events.add(event);
    }

    ILoggingEvent await(String text) {
      return await(text, null);
    }

    /**
     * The first line containing {@code text}, of a thread whose MDC has {@code org} (when not
     * null).
     */
    ILoggingEvent await(String text, String org) {
      long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
      while (System.nanoTime() < deadline) {
        for (ILoggingEvent e : events) {
          boolean orgs =
              org == null
                  || e.getFormattedMessage().contains(org)
                  || org.equals(e.getMDCPropertyMap().get("org"));
          if (e.getFormattedMessage().contains(text) && orgs) return e;
        }
        try {
          Thread.sleep(20);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new AssertionError(e);
        }
      }
      throw new AssertionError(
          "no log line containing '"
              + text
              + "'; got: "
              + events.stream().map(ILoggingEvent::getFormattedMessage).toList());
    }
  }

  /** A provider that cannot start sandboxes: every call fails. */
  private static final class NoSandboxes implements SandboxProvider {
    private static <T> CompletionStage<T> no() {
      return CompletableFuture.failedFuture(new IllegalStateException("no sandboxes on this host"));
    }

    @Override
    public CompletionStage<String> create(Limits limits, byte[] snapshot) {
      return no();
    }

    @Override
    public CompletionStage<ExecResult> exec(
        String id, String executionId, String command, Duration timeout) {
      return no();
    }

    @Override
    public CompletionStage<String> read(String id, String path) {
      return no();
    }

    @Override
    public CompletionStage<Void> write(String id, String path, String content) {
      return no();
    }

    @Override
    public CompletionStage<List<Entry>> list(String id, String path) {
      return no();
    }

    @Override
    public CompletionStage<Void> suspend(String id) {
      return no();
    }

    @Override
    public CompletionStage<Void> resume(String id) {
      return no();
    }

    @Override
    public CompletionStage<byte[]> hibernate(String id) {
      return no();
    }

    @Override
    public CompletionStage<Void> destroy(String id) {
      return no();
    }

    @Override
    public CompletionStage<State> state(String id) {
      return no();
    }

    @Override
    public void close() {}
  }
}
