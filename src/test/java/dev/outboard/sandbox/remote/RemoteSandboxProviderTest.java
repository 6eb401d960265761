package dev.outboard.sandbox.remote;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Json;
import dev.outboard.sandbox.SandboxHandle;
import dev.outboard.sandbox.SandboxProvider;
import dev.outboard.sandbox.SandboxProvider.ExecResult;
import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.sandbox.SandboxProvider.SandboxGoneException;
import dev.outboard.sandbox.SandboxProvider.State;
import dev.outboard.sandbox.SandboxSettings;
import dev.outboard.sandbox.bwrap.BwrapSandboxProvider;
import dev.outboard.sandbox.host.SandboxHostServer;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.Ports;
import dev.outboard.testing.Sandboxes;
import dev.outboard.testing.ScriptedSessions;
import dev.outboard.testing.TestPostgres;
import dev.outboard.testing.UnitTestConfig;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The remote provider against an in-process sandbox host (real bubblewrap behind {@link
 * SandboxHostServer} on a local, non-cluster ActorSystem): every SPI operation over HTTP, the
 * token, 410 → gone, and sandbox ids that outlive the harness node that created them. Skipped (with
 * a notice) where bwrap is missing, except under CI=true.
 */
class RemoteSandboxProviderTest {
  static final Limits LIMITS =
      new Limits(512L << 20, 64, Duration.ofSeconds(20), 64 * 1024, Duration.ofSeconds(20));
  static final Duration T = Duration.ofSeconds(20);

  @TempDir static Path tmp;
  static ExecutorService executor;
  static BwrapSandboxProvider bwrap;
  static ActorSystem<Void> system;
  static String token;
  static String url;
  static RemoteSandboxProvider remote;

  @BeforeAll
  static void start() throws Exception {
    executor = Executors.newCachedThreadPool();
    Files.setPosixFilePermissions(
        tmp, java.nio.file.attribute.PosixFilePermissions.fromString("rwx--x--x"));
    bwrap = new BwrapSandboxProvider(tmp.resolve("sandboxes"), executor);
    Sandboxes.requireBwrap(RemoteSandboxProviderTest.class);
    byte[] secret = new byte[16];
    new SecureRandom().nextBytes(secret);
    token = "host-token-" + HexFormat.of().formatHex(secret);
    system = ActorSystem.create(Behaviors.empty(), "sandbox-host-test", UnitTestConfig.local());
    int port = Ports.free(1)[0];
    new SandboxHostServer(bwrap, token, 64L << 20)
        .start(system, "127.0.0.1", port)
        .toCompletableFuture()
        .get(20, TimeUnit.SECONDS);
    url = "http://127.0.0.1:" + port;
    remote = new RemoteSandboxProvider(url, token);
  }

  @AfterAll
  static void stop() throws Exception {
    if (system != null) {
      system.terminate();
      system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
    }
    if (bwrap != null) bwrap.close();
    if (executor != null) executor.shutdownNow();
  }

  static <V> V await(CompletionStage<V> stage) {
    return stage.toCompletableFuture().orTimeout(60, TimeUnit.SECONDS).join();
  }

  static Throwable failure(CompletionStage<?> stage) {
    CompletionException e = assertThrows(CompletionException.class, () -> await(stage));
    Throwable c = e;
    while (c instanceof CompletionException && c.getCause() != null) c = c.getCause();
    return c;
  }

  static ExecResult exec(SandboxProvider p, String id, String command) {
    return await(p.exec(id, null, command, T));
  }

  static HttpResponse<String> raw(String method, String path, String body, String bearer)
      throws Exception {
    HttpRequest.Builder b =
        HttpRequest.newBuilder(URI.create(url + path))
            .timeout(T)
            .method(
                method,
                body == null
                    ? HttpRequest.BodyPublishers.noBody()
                    : HttpRequest.BodyPublishers.ofString(body));
    if (body != null) b.header("Content-Type", "application/json");
    if (bearer != null) b.header("Authorization", "Bearer " + bearer);
    return HttpClient.newHttpClient().send(b.build(), HttpResponse.BodyHandlers.ofString());
  }

  @Test
  void commandsRunInTheSandboxAndTheShellKeepsItsState() {
    String id = await(remote.create(LIMITS, null));
    assertThat(id).startsWith("sbx-");
    ExecResult first =
        exec(remote, id, "mkdir -p sub && cd sub && export GREETING=hi-there && echo ok");
    assertEquals(0, first.exitCode());
    assertEquals("ok\n", first.output());
    ExecResult second = exec(remote, id, "pwd; echo $GREETING; exit 3");
    assertEquals(3, second.exitCode());
    assertEquals("/workspace/sub\nhi-there\n", second.output());
    assertThat(second.took()).isPositive();
    ExecResult slow = await(remote.exec(id, null, "sleep 5", Duration.ofMillis(300)));
    assertThat(slow.timedOut()).isTrue();
    assertEquals(State.ACTIVE, await(remote.state(id)));
    await(remote.destroy(id));
  }

  @Test
  void filesAreWrittenReadAndListed() {
    String id = await(remote.create(LIMITS, null));
    await(remote.write(id, "/workspace/dir/a b+c.txt", "héllo\nworld\n"));
    assertEquals("héllo\nworld\n", await(remote.read(id, "/workspace/dir/a b+c.txt")));
    assertEquals("héllo\nworld\n", exec(remote, id, "cat 'dir/a b+c.txt'").output());
    List<SandboxProvider.Entry> entries = await(remote.list(id, "/workspace"));
    assertThat(entries)
        .containsExactly(new SandboxProvider.Entry("/workspace/dir", true, entries.get(0).size()));
    assertThat(await(remote.list(id, "/workspace/dir")))
        .extracting(SandboxProvider.Entry::path)
        .containsExactly("/workspace/dir/a b+c.txt");
    // Tool-level errors stay tool-level: 400 → IllegalArgumentException with the provider's
    // message.
    assertThat(failure(remote.read(id, "/workspace/missing.txt")))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("no such file");
    assertThat(failure(remote.read(id, "/etc/passwd")))
        .isInstanceOf(IllegalArgumentException.class);
    await(remote.destroy(id));
  }

  @Test
  void anExecutionIdRunsTheCommandOnce() {
    String id = await(remote.create(LIMITS, null));
    ExecResult a = await(remote.exec(id, "call-1", "echo x >> runs.txt; wc -l < runs.txt", T));
    ExecResult b = await(remote.exec(id, "call-1", "echo x >> runs.txt; wc -l < runs.txt", T));
    assertEquals("1\n", a.output());
    assertEquals(a.output(), b.output());
    assertEquals("1\n", exec(remote, id, "wc -l < runs.txt").output());
    await(remote.destroy(id));
  }

  @Test
  void suspendAndResume() {
    String id = await(remote.create(LIMITS, null));
    exec(remote, id, "cd /tmp && export MARK=kept");
    await(remote.suspend(id));
    assertEquals(State.SUSPENDED, await(remote.state(id)));
    await(remote.resume(id));
    assertEquals(State.ACTIVE, await(remote.state(id)));
    await(remote.suspend(id));
    assertEquals("/tmp kept\n", exec(remote, id, "echo $PWD $MARK").output());
    assertEquals(State.ACTIVE, await(remote.state(id)));
    await(remote.destroy(id));
  }

  @Test
  void hibernateReturnsASnapshotThatRestoresTheWorkspace() {
    String id = await(remote.create(LIMITS, null));
    await(remote.write(id, "/workspace/keep/notes.md", "kept across hosts\n"));
    byte[] snapshot = await(remote.hibernate(id));
    assertThat(snapshot.length).isGreaterThan(0);
    assertEquals(State.HIBERNATED, await(remote.state(id)));
    // The next command cold-starts it with the workspace as it was.
    assertEquals("kept across hosts\n", exec(remote, id, "cat keep/notes.md").output());
    await(remote.destroy(id));

    String restored = await(remote.create(LIMITS, snapshot));
    assertThat(restored).isNotEqualTo(id);
    assertEquals("kept across hosts\n", await(remote.read(restored, "/workspace/keep/notes.md")));
    await(remote.destroy(restored));
  }

  @Test
  void aWrongTokenIsRefusedAndNeverEchoed() throws Exception {
    String wrong = "wrong-token-0123456789abcdef";
    RemoteSandboxProvider intruder = new RemoteSandboxProvider(url, wrong);
    Throwable e = failure(intruder.create(LIMITS, null));
    assertThat(e).isInstanceOf(IllegalStateException.class).hasMessageContaining("401");
    assertThat(e.getMessage()).doesNotContain(wrong).doesNotContain(token);
    assertThat(failure(intruder.state("sbx-any")))
        .isNotInstanceOf(SandboxGoneException.class)
        .hasMessageContaining("401");

    HttpResponse<String> none = raw("GET", "/v1/sandboxes/sbx-any/state", null, null);
    assertEquals(401, none.statusCode());
    assertEquals(
        "unauthorized", Json.MAPPER.readTree(none.body()).path("error").path("code").asText());
    assertEquals(401, raw("GET", "/v1/sandboxes/sbx-any/state", null, token + "x").statusCode());
  }

  @Test
  void aDestroyedSandboxIsGone() throws Exception {
    String id = await(remote.create(LIMITS, null));
    await(remote.destroy(id));
    assertThat(failure(remote.exec(id, "e", "true", T)))
        .isInstanceOf(SandboxGoneException.class)
        .hasMessageContaining(id);
    assertThat(failure(remote.read(id, "/workspace/x"))).isInstanceOf(SandboxGoneException.class);
    assertThat(failure(remote.state(id))).isInstanceOf(SandboxGoneException.class);
    assertThat(failure(remote.destroy(id))).isInstanceOf(SandboxGoneException.class);
    HttpResponse<String> gone =
        raw(
            "POST",
            "/v1/sandboxes/" + id + "/exec",
            "{\"executionId\":\"x\",\"command\":\"true\"}",
            token);
    assertEquals(410, gone.statusCode());
    JsonNode error = Json.MAPPER.readTree(gone.body()).path("error");
    assertEquals("gone", error.path("code").asText());
    assertThat(error.path("message").asText()).contains(id);
  }

  @Test
  void badInputIs400() throws Exception {
    assertEquals(400, raw("POST", "/v1/sandboxes", "{}", token).statusCode());
    assertEquals(400, raw("POST", "/v1/sandboxes", "{\"limits\": 3}", token).statusCode());
    assertEquals(400, raw("POST", "/v1/sandboxes", "not json", token).statusCode());
    String id = await(remote.create(LIMITS, null));
    assertEquals(400, raw("GET", "/v1/sandboxes/" + id + "/files", null, token).statusCode());
    assertEquals(
        400,
        raw("POST", "/v1/sandboxes/" + id + "/exec", "{\"executionId\":\"x\"}", token)
            .statusCode());
    assertEquals(
        400,
        raw("POST", "/v1/sandboxes/" + id + "/exec", "{\"command\":\"true\",\"bogus\":1}", token)
            .statusCode());
    HttpResponse<String> badSnapshot =
        raw(
            "POST",
            "/v1/sandboxes",
            "{\"limits\":{\"memoryBytes\":1000000,\"maxProcesses\":10,\"maxOutputBytes\":1000},\"snapshot\":\"***\"}",
            token);
    assertEquals(400, badSnapshot.statusCode());
    await(remote.destroy(id));
  }

  @Test
  void sandboxIdsOutliveTheHarnessNodeThatCreatedThem() {
    RemoteSandboxProvider nodeA = new RemoteSandboxProvider(url, token);
    String id = await(nodeA.create(LIMITS, null));
    exec(nodeA, id, "mkdir -p work && cd work && export OWNER=node-a");
    await(nodeA.write(id, "/workspace/work/state.txt", "from node A\n"));
    nodeA.close(); // node A goes away; the sandbox belongs to the host

    RemoteSandboxProvider nodeB = new RemoteSandboxProvider(url, token);
    assertEquals(State.ACTIVE, await(nodeB.state(id)));
    assertEquals(
        "/workspace/work node-a from node A\n",
        exec(nodeB, id, "echo $PWD $OWNER $(cat state.txt)").output());
    assertEquals("from node A\n", await(nodeB.read(id, "/workspace/work/state.txt")));
    await(nodeB.destroy(id));
  }

  @Test
  void aRestartedHostKnowsNoSandboxesButSalvagesTheirFiles() throws Exception {
    String id = await(remote.create(LIMITS, null));
    exec(remote, id, "echo written-after-any-snapshot > notes.txt");
    ExecResult ranBefore =
        await(remote.exec(id, "ran-before", "echo once >> once.txt; echo out-$RANDOM", T));

    // The host restarts: a new provider over the same sandbox directory, behind a new server.
    try (BwrapSandboxProvider restarted =
        new BwrapSandboxProvider(tmp.resolve("sandboxes"), executor)) {
      int port = Ports.free(1)[0];
      new SandboxHostServer(restarted, token, 64L << 20)
          .start(system, "127.0.0.1", port)
          .toCompletableFuture()
          .get(20, TimeUnit.SECONDS);
      RemoteSandboxProvider after = new RemoteSandboxProvider("http://127.0.0.1:" + port, token);

      Throwable unknown = failure(after.state(id));
      assertThat(unknown).isInstanceOf(SandboxGoneException.class);
      assertThat(((SandboxGoneException) unknown).confirmed()).isTrue();
      // Whether an earlier run of the host ran this command cannot be known: it may have.
      Throwable exec = failure(after.exec(id, "again", "true", T));
      assertThat(((SandboxGoneException) exec).commandMayHaveRun()).isTrue();

      byte[] salvaged = await(after.salvage(id));
      assertThat(salvaged).isNotNull();
      String replacement = await(after.create(LIMITS, salvaged));
      assertEquals(
          "written-after-any-snapshot\n", await(after.read(replacement, "/workspace/notes.txt")));
      // The salvaged workspace's execution records: a command that ran answers its own result,
      // once.
      assertEquals(
          ranBefore.output(),
          await(after.exec(replacement, "ran-before", "echo once >> once.txt; echo out-$RANDOM", T))
              .output());
      assertEquals("once\n", await(after.read(replacement, "/workspace/once.txt")));

      // The host lists its leftover for the sweep, with the live replacement.
      assertThat(await(after.held()).stream().map(SandboxProvider.Held::id))
          .contains(id, replacement);
      await(after.destroy(id)); // the leftover files go
      assertThat(await(after.salvage(id))).isNull();
      assertThat(tmp.resolve("sandboxes").resolve(id)).doesNotExist();
      assertThat(failure(after.salvage("../../etc"))).isInstanceOf(IllegalArgumentException.class);
      assertThat(await(restarted.salvage("../../etc")))
          .as("only ids of the provider's own format name a directory")
          .isNull();
      assertThat(await(restarted.salvage("sbx-" + "0".repeat(32)))).isNull();
      await(after.destroy(replacement));
    }
  }

  @Test
  void aSandboxThatDiesDuringACommandSaysSoAndOneFoundDeadBeforeItDoesNot() throws Exception {
    String id = await(remote.create(LIMITS, null));
    CompletionStage<ExecResult> running = remote.exec(id, "slow", "sleep 20", T.plusSeconds(20));
    Thread.sleep(300);
    assertThat(Sandboxes.killProcessesOf(id)).isPositive();
    SandboxGoneException during = (SandboxGoneException) failure(running);
    assertThat(during.commandMayHaveRun()).isTrue();
    // Asked again with the same execution id, the answer is the same; a new command never ran.
    assertThat(
            ((SandboxGoneException) failure(remote.exec(id, "slow", "sleep 20", T)))
                .commandMayHaveRun())
        .isTrue();
    assertThat(
            ((SandboxGoneException) failure(remote.exec(id, "next", "true", T)))
                .commandMayHaveRun())
        .isFalse();
    JsonNode again =
        Json.MAPPER.readTree(
            raw(
                    "POST",
                    "/v1/sandboxes/" + id + "/exec",
                    "{\"executionId\":\"slow\",\"command\":\"sleep 20\"}",
                    token)
                .body());
    assertEquals("gone", again.path("error").path("code").asText());
    JsonNode fresh =
        Json.MAPPER.readTree(
            raw(
                    "POST",
                    "/v1/sandboxes/" + id + "/exec",
                    "{\"executionId\":\"fresh\",\"command\":\"true\"}",
                    token)
                .body());
    assertEquals(SandboxHostServer.GONE_BEFORE_COMMAND, fresh.path("error").path("code").asText());
    // On a replacement from its salvaged workspace, the cut-off command is reported, not run again.
    String replacement = await(remote.create(LIMITS, await(remote.salvage(id))));
    assertThat(failure(remote.exec(replacement, "slow", "sleep 20", T)))
        .isInstanceOf(SandboxProvider.CommandInterruptedException.class);
    JsonNode cut =
        Json.MAPPER.readTree(
            raw(
                    "POST",
                    "/v1/sandboxes/" + replacement + "/exec",
                    "{\"executionId\":\"slow\",\"command\":\"sleep 20\"}",
                    token)
                .body());
    assertEquals(SandboxHostServer.INTERRUPTED, cut.path("error").path("code").asText());
    await(remote.destroy(replacement));
    await(remote.destroy(id));
  }

  /**
   * A sandbox handle over its own host server (so the test can take the host away and bring it back
   * on the same port), after a first command has made its sandbox active.
   */
  private static final class HandleOnOwnHost implements AutoCloseable {
    final SandboxHostServer server = new SandboxHostServer(bwrap, token, 64L << 20);
    final int port = Ports.free(1)[0];
    final ActorTestKit kit = ActorTestKit.create();
    final TestProbe<SandboxHandle.Report> reports = kit.createTestProbe();
    final RemoteSandboxProvider provider =
        new RemoteSandboxProvider("http://127.0.0.1:" + port, token);
    final ServerBinding binding;
    final ActorRef<SandboxHandle.Command> handle;
    final String id;

    HandleOnOwnHost(Duration suspendAfter, String firstCommand) throws Exception {
      binding = bind();
      SandboxSettings settings = new SandboxSettings(LIMITS, suspendAfter, Duration.ofMinutes(10));
      handle = kit.spawn(SandboxHandle.create(provider, settings, reports.ref(), null, null));
      assertThat(run("c0", firstCommand).isError()).isFalse();
      id =
          reports
              .fishForMessage(
                  T,
                  r ->
                      r.state().equals("active")
                          ? FishingOutcomes.complete()
                          : FishingOutcomes.continueAndIgnore())
              .get(0)
              .sandboxId();
    }

    ServerBinding bind() throws Exception {
      return server
          .start(system, "127.0.0.1", port)
          .toCompletableFuture()
          .get(20, TimeUnit.SECONDS);
    }

    SandboxHandle.Result run(String callId, String command) {
      return RemoteSandboxProviderTest.run(kit, handle, callId, command);
    }

    @Override
    public void close() {
      handle.tell(SandboxHandle.Destroy.INSTANCE);
      kit.shutdownTestKit();
    }
  }

  @Test
  void aSessionKeepsItsSandboxWhileTheHostIsBrieflyUnreachable() throws Exception {
    try (HandleOnOwnHost h = new HandleOnOwnHost(Duration.ofMinutes(5), "echo hi > f.txt")) {
      h.binding.terminate(Duration.ofSeconds(5)).toCompletableFuture().get(20, TimeUnit.SECONDS);
      SandboxHandle.Result unreachable = h.run("c2", "cat f.txt");
      assertThat(unreachable.isError()).isTrue();
      assertThat(unreachable.content()).contains("could not be reached", "may or may not have run");

      // The host answers again: the same sandbox, files intact, and no replacement was reported.
      h.bind();
      SandboxHandle.Result back = h.run("c3", "cat f.txt");
      assertThat(back.isError()).as(back.content()).isFalse();
      assertThat(back.content()).isEqualTo("hi\n");
      h.reports.expectNoMessage(Duration.ofMillis(200));
      assertThat(await(h.provider.state(h.id))).isEqualTo(State.ACTIVE);
    }
  }

  @Test
  void aSandboxThatCannotBeFrozenWhileTheHostIsAwayIsFrozenOnceItIsBack() throws Exception {
    try (HandleOnOwnHost h = new HandleOnOwnHost(Duration.ofSeconds(1), "true")) {
      // The host goes away before the idle freeze (after 1 s): the freeze fails, and is retried.
      h.binding.terminate(Duration.ofSeconds(1)).toCompletableFuture().get(20, TimeUnit.SECONDS);
      h.reports.expectNoMessage(Duration.ofMillis(2200));
      assertThat(await(bwrap.state(h.id)))
          .as("not frozen while unreachable")
          .isEqualTo(State.ACTIVE);

      h.bind();
      SandboxHandle.Report frozen =
          h.reports
              .fishForMessage(
                  Duration.ofSeconds(10),
                  r ->
                      r.state().equals("suspended")
                          ? FishingOutcomes.complete()
                          : FishingOutcomes.continueAndIgnore())
              .get(0);
      assertThat(frozen.sandboxId()).isEqualTo(h.id);
      assertThat(await(bwrap.state(h.id))).isEqualTo(State.SUSPENDED);
    }
  }

  private static SandboxHandle.Result run(
      ActorTestKit kit, ActorRef<SandboxHandle.Command> handle, String callId, String command) {
    TestProbe<SandboxHandle.Result> reply = kit.createTestProbe();
    var call =
        dev.outboard.tools.ToolCatalog.parse(
            "bash", Json.MAPPER.valueToTree(Map.of("command", command)));
    handle.tell(new SandboxHandle.Run(callId, call, 100_000, reply.ref()));
    return reply.receiveMessage(Duration.ofSeconds(60));
  }

  @Test
  void anUnreachableHostMeansTheSandboxIsGone() {
    RemoteSandboxProvider nowhere =
        new RemoteSandboxProvider("http://127.0.0.1:" + Ports.free(1)[0], token);
    Throwable e = failure(nowhere.exec("sbx-1", "e", "true", T));
    assertThat(e)
        .isInstanceOf(SandboxGoneException.class)
        .hasMessageContaining("cannot be reached");
    assertThat(((SandboxGoneException) e).confirmed())
        .as("a health check does not act on it")
        .isFalse();
    assertThat(e.getMessage()).doesNotContain(token);
    assertThat(failure(nowhere.create(LIMITS, null))).isInstanceOf(IllegalStateException.class);
  }

  @Test
  void theHostRefusesToStartWithoutAToken() {
    for (String none : new String[] {null, "", "short"}) {
      IllegalArgumentException e =
          assertThrows(
              IllegalArgumentException.class, () -> new SandboxHostServer(bwrap, none, 1024));
      assertThat(e.getMessage()).contains("OUTBOARD_SANDBOX_HOST_TOKEN");
    }
  }

  /**
   * A harness node on PostgreSQL (not embedded) mounts /workspace through the sandbox host; after
   * the node stops, a new node on the same database re-attaches the session to the same live
   * sandbox, shell state included.
   */
  @Test
  void aSessionOnAPostgresNodeUsesTheHostAndReattachesAfterARestart() throws Exception {
    Duration wait = Duration.ofSeconds(60);
    Map<String, Object> settings =
        Map.of(
            "outboard.sandbox.host-url",
            url,
            "outboard.sandbox.host-token",
            token,
            "outboard.sandbox.suspend-after",
            "1h",
            "outboard.sandbox.hibernate-after",
            "2h");
    try (TestPostgres pg = TestPostgres.create()) {
      String sessionId;
      String key;
      String sandboxId;
      try (InProcessNode first = InProcessNode.start(pg.url(), settings)) {
        key = first.admin().createOrgWithKey("remote");
        ApiClient api = first.client(key);
        sessionId =
            ScriptedSessions.create(
                api,
                ScriptedSessions.body(
                    "rita",
                    true,
                    List.of(
                        ScriptedSessions.tools(
                            "w",
                            0,
                            ScriptedSessions.call(
                                "write",
                                Map.of("path", "/workspace/n.txt", "content", "remote file\n"))),
                        ScriptedSessions.tools(
                            "cd",
                            0,
                            ScriptedSessions.call(
                                "bash",
                                Map.of(
                                    "command",
                                    "mkdir -p sub && cd sub && export MARK=first-node"))),
                        ScriptedSessions.say("ready"),
                        ScriptedSessions.tools(
                            "check",
                            0,
                            ScriptedSessions.call(
                                "bash", Map.of("command", "echo $PWD $MARK; cat ../n.txt"))),
                        ScriptedSessions.say("done"))));
        JsonNode waiting = ScriptedSessions.awaitStatus(api, sessionId, "waiting", wait);
        sandboxId = waiting.path("sandbox").path("id").asText();
        assertThat(sandboxId).startsWith("sbx-");
        assertThat(ScriptedSessions.toolCalls(api, sessionId))
            .allSatisfy(c -> assertThat(c.isError()).as(c.toString()).isFalse());
      }
      // The sandbox lives on the host, not on the node that stopped.
      assertThat(await(remote.state(sandboxId))).isIn(State.ACTIVE, State.SUSPENDED);
      try (InProcessNode second = InProcessNode.start(pg.url(), settings)) {
        ApiClient api = second.client(key);
        assertThat(
                api.post("/v1/sessions/" + sessionId + "/messages", Map.of("text", "go on"))
                    .status())
            .isEqualTo(202);
        ScriptedSessions.awaitStatus(api, sessionId, "waiting", wait);
        List<ScriptedSessions.ToolCall> calls = ScriptedSessions.toolCalls(api, sessionId);
        ScriptedSessions.ToolCall check = calls.get(calls.size() - 1);
        assertThat(check.isError()).as(check.toString()).isFalse();
        assertThat(check.content()).contains("/workspace/sub first-node", "remote file");
        JsonNode s = ScriptedSessions.awaitStatus(api, sessionId, "waiting", wait);
        assertThat(s.path("sandbox").path("id").asText()).isEqualTo(sandboxId);
        api.post("/v1/sessions/" + sessionId + "/cancel", Map.of());
      }
    }
  }
}
