package dev.outboard.sandbox.remote;

import static dev.outboard.testing.ScriptedSessions.await;
import static dev.outboard.testing.ScriptedSessions.body;
import static dev.outboard.testing.ScriptedSessions.call;
import static dev.outboard.testing.ScriptedSessions.create;
import static dev.outboard.testing.ScriptedSessions.say;
import static dev.outboard.testing.ScriptedSessions.toolCalls;
import static dev.outboard.testing.ScriptedSessions.tools;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.sandbox.bwrap.BwrapSandboxProvider;
import dev.outboard.sandbox.host.SandboxHostServer;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.SseEvent;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.NodeProcess;
import dev.outboard.testing.Ports;
import dev.outboard.testing.Sandboxes;
import dev.outboard.testing.ScriptedSessions.ToolCall;
import dev.outboard.testing.TestPostgres;
import dev.outboard.testing.UnitTestConfig;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.junit.jupiter.api.Test;

/**
 * The proof with a sandbox host that outlives the harness: {@code kill -9} of the harness
 * node's JVM while a 5-second {@code bash} command (appending one line to a file) runs on a remote
 * sandbox host. After the restart the session resumes the open call on the recorded sandbox with
 * the same execution id, so it receives that command's own single result (not a re-run, not an
 * "interrupted" error), SSE replay has exactly one tool.completed for it, and the file has one
 * line. The sandbox host runs in the test JVM (real bubblewrap); the harness is a separate JVM.
 * Skipped (with a notice) without bwrap or PostgreSQL, except under CI=true.
 */
class RemoteSandboxCrashRecoveryTest {
  private static final Duration READY = Duration.ofSeconds(90);
  private static final Duration WAIT = Duration.ofSeconds(60);

  @Test
  void aBashCommandRunningOnASandboxHostSurvivesAHarnessCrashWithExactlyOneResult()
      throws Exception {
    Path root = Files.createTempDirectory("outboard-remote-sbx-crash-");
    // The sandbox's unprivileged user must be able to reach its workspace below the root.
    Files.setPosixFilePermissions(
        root, java.nio.file.attribute.PosixFilePermissions.fromString("rwx--x--x"));
    ExecutorService executor = Executors.newCachedThreadPool();
    BwrapSandboxProvider bwrap = new BwrapSandboxProvider(root.resolve("sandboxes"), executor);
    ActorSystem<Void> system = null;
    try {
      Sandboxes.requireBwrap(RemoteSandboxCrashRecoveryTest.class);
      try (TestPostgres postgres = TestPostgres.create()) {
        byte[] secret = new byte[16];
        new SecureRandom().nextBytes(secret);
        String hostToken = "host-token-" + HexFormat.of().formatHex(secret);
        system =
            ActorSystem.create(Behaviors.empty(), "remote-sbx-crash-host", UnitTestConfig.local());
        int hostPort = Ports.free(1)[0];
        new SandboxHostServer(bwrap, hostToken, 64L << 20)
            .start(system, "127.0.0.1", hostPort)
            .toCompletableFuture()
            .get(20, TimeUnit.SECONDS);

        Path dataDir = Files.createDirectory(root.resolve("node-data"));
        int[] ports = Ports.free(3);
        String adminToken =
            "remote-sbx-crash-admin-" + Long.toHexString(new SecureRandom().nextLong());
        Map<String, String> env = new HashMap<>();
        env.put("OUTBOARD_DB_URL", postgres.url());
        env.put("OUTBOARD_DB_USER", postgres.user());
        env.put("OUTBOARD_DB_PASSWORD", "");
        env.put("OUTBOARD_ALLOW_SCRIPTED", "true");
        env.put("OUTBOARD_ADMIN_TOKEN", adminToken);
        env.put("OUTBOARD_HTTP_PORT", Integer.toString(ports[0]));
        env.put("OUTBOARD_MANAGEMENT_PORT", Integer.toString(ports[1]));
        env.put("OUTBOARD_REMOTE_PORT", Integer.toString(ports[2]));
        env.put("OUTBOARD_DATA_DIR", dataDir.toString());
        env.put("OUTBOARD_SANDBOX_HOST_URL", "http://127.0.0.1:" + hostPort);
        env.put("OUTBOARD_SANDBOX_HOST_TOKEN", hostToken);

        NodeProcess node = new NodeProcess("remote-sbx-crash-node", env);
        try (node) {
          crashAndRecover(node, adminToken, root.resolve("sandboxes"));
        } catch (AssertionError | Exception e) {
          throw new AssertionError(e + "\n" + node.logTails(60), e);
        }
      }
    } finally {
      if (system != null) {
        system.terminate();
        system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
      }
      bwrap.close();
      executor.shutdownNow();
      InProcessNode.deleteRecursively(root);
    }
  }

  private void crashAndRecover(NodeProcess node, String adminToken, Path sandboxes)
      throws Exception {
    node.start();
    node.awaitReady(READY);
    ApiClient api =
        new ApiClient(
            node.baseUrl(),
            new ApiClient(node.baseUrl(), adminToken).createOrgWithKey("remote-sbx-crash"));

    String id =
        create(
            api,
            body(
                "eve",
                false,
                List.of(
                    tools(
                        "slow",
                        0,
                        call(
                            "bash",
                            Map.of(
                                "command",
                                "sleep 5; echo line >> /workspace/out.txt; echo done-appending",
                                "timeout_ms",
                                30000))),
                    tools(
                        "count", 0, call("bash", Map.of("command", "wc -l < /workspace/out.txt"))),
                    say("done"))));
    // The command is running once the sandbox is active and the call started; kill in the middle of
    // it.
    JsonNode running =
        await(
            api,
            id,
            s -> s.path("sandbox").path("state").asText().equals("active"),
            WAIT,
            "sandbox active");
    String sandboxId = running.path("sandbox").path("id").asText();
    Thread.sleep(1500);
    assertThat(node.kill()).isNotZero();
    long killed = System.nanoTime();

    node.start();
    // The host kept running the command: its line appears within the 5 seconds the first run needs,
    // sooner than any run started after the crash could append it.
    Path out = sandboxes.resolve(sandboxId).resolve("workspace").resolve("out.txt");
    while (!Files.exists(out) && System.nanoTime() - killed < Duration.ofMillis(4800).toNanos())
      Thread.sleep(50);
    assertThat(out).as("the line of the run in flight at the crash").exists();
    assertThat(Files.readAllLines(out)).containsExactly("line");
    node.awaitReady(READY);
    JsonNode done =
        await(api, id, s -> s.path("status").asText().equals("completed"), WAIT, "completed");
    assertThat(done.path("result").asText()).isEqualTo("done");

    List<ToolCall> calls = toolCalls(api, id);
    assertThat(calls).hasSize(2);
    ToolCall slow = calls.get(0);
    assertThat(slow.results()).as("results of the call running during the crash").isEqualTo(1);
    assertThat(slow.isError()).as(slow.content()).isFalse();
    assertThat(slow.content()).contains("done-appending");
    // The command ran exactly once on the surviving sandbox (which the finished session has since
    // destroyed).
    ToolCall count = calls.get(1);
    assertThat(count.isError()).as(count.content()).isFalse();
    assertThat(count.content().trim()).isEqualTo("1");

    List<SseEvent> events =
        api.events("/v1/sessions/" + id + "/events", Duration.ofSeconds(30), "Last-Event-ID", "0");
    assertThat(
            events.stream()
                .filter(
                    e ->
                        e.event().equals("tool.completed")
                            && e.json().path("toolUseId").asText().equals(slow.id())))
        .as("tool.completed of the call running during the crash")
        .hasSize(1);
    assertThat(events.get(events.size() - 1).event()).isEqualTo("session.completed");
  }
}
