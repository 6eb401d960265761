package dev.outboard.sandbox;

import static dev.outboard.testing.ScriptedSessions.await;
import static dev.outboard.testing.ScriptedSessions.body;
import static dev.outboard.testing.ScriptedSessions.call;
import static dev.outboard.testing.ScriptedSessions.create;
import static dev.outboard.testing.ScriptedSessions.say;
import static dev.outboard.testing.ScriptedSessions.toolCalls;
import static dev.outboard.testing.ScriptedSessions.tools;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.SseEvent;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.NodeProcess;
import dev.outboard.testing.Ports;
import dev.outboard.testing.Sandboxes;
import dev.outboard.testing.ScriptedSessions.ToolCall;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * {@code kill -9} of the node's JVM while a 5-second {@code bash} command runs in an embedded
 * (bubblewrap) sandbox, which dies with the JVM. After the restart the recorded sandbox id is
 * unknown, so the sandbox is gone: the call gets exactly one result, the honest "interrupted: the
 * sandbox was lost while this command ran" (DESIGN.md §3), the command is not run a second time on
 * the replacement, which has the files the lost sandbox left on disk, and the session completes.
 */
class SandboxCrashRecoveryTest {
  private static final Duration READY = Duration.ofSeconds(90);
  private static final Duration WAIT = Duration.ofSeconds(60);

  @Test
  void aBashCommandInterruptedByANodeCrashGetsOneHonestResultAndIsNotRunTwice() throws Exception {
    Sandboxes.requireBwrap(SandboxCrashRecoveryTest.class);
    Path dataDir = Files.createTempDirectory("outboard-sbx-crash-");
    // The sandbox's unprivileged user must be able to reach its workspace below the data dir.
    Files.setPosixFilePermissions(
        dataDir, java.nio.file.attribute.PosixFilePermissions.fromString("rwx--x--x"));
    int[] ports = Ports.free(3);
    String adminToken = "sbx-crash-admin-" + Long.toHexString(new SecureRandom().nextLong());
    Map<String, String> env = new HashMap<>();
    env.put("OUTBOARD_ALLOW_SCRIPTED", "true");
    env.put("OUTBOARD_ADMIN_TOKEN", adminToken);
    env.put("OUTBOARD_HTTP_PORT", Integer.toString(ports[0]));
    env.put("OUTBOARD_MANAGEMENT_PORT", Integer.toString(ports[1]));
    env.put("OUTBOARD_REMOTE_PORT", Integer.toString(ports[2]));
    env.put("OUTBOARD_DATA_DIR", dataDir.toString());

    NodeProcess node = new NodeProcess("sbx-crash-node", env);
    try (node) {
      crashAndRecover(node, adminToken, dataDir);
    } catch (AssertionError | Exception e) {
      throw new AssertionError(e + "\n" + node.logTails(60), e);
    } finally {
      InProcessNode.deleteRecursively(dataDir);
    }
  }

  private void crashAndRecover(NodeProcess node, String adminToken, Path dataDir) throws Exception {
    node.start();
    node.awaitReady(READY);
    ApiClient api =
        new ApiClient(
            node.baseUrl(),
            new ApiClient(node.baseUrl(), adminToken).createOrgWithKey("sbx-crash"));

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
                                "echo kept > before.txt; sleep 5; echo line >> /workspace/out.txt",
                                "timeout_ms",
                                30000))),
                    tools(
                        "count",
                        0,
                        call(
                            "bash",
                            Map.of(
                                "command",
                                "cat before.txt; cat /workspace/out.txt 2>/dev/null | wc -l"))),
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

    node.start();
    node.awaitReady(READY);
    JsonNode done =
        await(api, id, s -> s.path("status").asText().equals("completed"), WAIT, "completed");
    assertThat(done.path("result").asText()).isEqualTo("done");

    List<ToolCall> calls = toolCalls(api, id);
    assertThat(calls).hasSize(2);
    ToolCall slow = calls.get(0);
    assertThat(slow.results()).as("results of the interrupted call").isEqualTo(1);
    assertThat(slow.isError()).isTrue();
    assertThat(slow.content())
        .startsWith("interrupted: the sandbox was lost while this command ran");
    // The replacement has the files the lost sandbox left on disk (salvaged after the restart),
    // and the command was not run again on it: no out.txt line.
    assertThat(calls.get(1).isError()).as(calls.get(1).content()).isFalse();
    assertThat(calls.get(1).content()).isEqualTo("kept\n0\n");
    assertThat(slow.content()).endsWith("its workspace recovered as the lost sandbox left it");

    List<SseEvent> events =
        api.events("/v1/sessions/" + id + "/events", Duration.ofSeconds(30), "Last-Event-ID", "0");
    assertThat(
            events.stream()
                .filter(
                    e ->
                        e.event().equals("tool.completed")
                            && e.json().path("toolUseId").asText().equals(slow.id())))
        .as("tool.completed of the interrupted call")
        .hasSize(1);
    assertThat(events.get(events.size() - 1).event()).isEqualTo("session.completed");

    // What the first sandbox left on disk was removed once salvaged.
    assertThat(dataDir.resolve("sandboxes").resolve(sandboxId)).doesNotExist();
  }
}
