package dev.outboard.session;

import static dev.outboard.testing.ScriptedSessions.await;
import static dev.outboard.testing.ScriptedSessions.awaitStatus;
import static dev.outboard.testing.ScriptedSessions.body;
import static dev.outboard.testing.ScriptedSessions.call;
import static dev.outboard.testing.ScriptedSessions.create;
import static dev.outboard.testing.ScriptedSessions.say;
import static dev.outboard.testing.ScriptedSessions.sleep;
import static dev.outboard.testing.ScriptedSessions.toolCalls;
import static dev.outboard.testing.ScriptedSessions.tools;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.Response;
import dev.outboard.testing.ApiClient.SseEvent;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.NodeProcess;
import dev.outboard.testing.Ports;
import dev.outboard.testing.Sandboxes;
import dev.outboard.testing.ScriptedSessions.ToolCall;
import dev.outboard.testing.TestPostgres;
import java.io.IOException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Timestamp;
import java.time.Duration;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Approvals and waits across a {@code kill -9} of the node's JVM.
 *
 * <ul>
 *   <li>A {@code bash} call held for approval (embedded mode, bubblewrap sandbox) survives the
 *       crash as it was: after the restart the session is still {@code requires_action} with the
 *       same pending call, nothing ran for it (no result, no sandbox, no file), the call of the
 *       same turn that needed no approval has its one result; once allowed it runs exactly once; a
 *       second decision on it answers 409, one on an unknown call 404; a denied call reaches the
 *       model as an error carrying the reviewer's message.
 *   <li>A 5-second {@code wait} whose node is killed while it waits times out exactly once, no
 *       earlier than its deadline, after a restart that no request to the session prompts (only the
 *       sessions list is polled): with remember-entities as configured, and with remember-entities
 *       off, where only the durable wake-up ({@code session_index.wake_at}, {@code WaitWakeups})
 *       can bring the session back.
 * </ul>
 *
 * <p>The approval test kills the node right after the writes it depends on: embedded H2 runs with
 * {@code WRITE_DELAY=0} (see {@code StoreSettings}), so what it acknowledged survives a kill -9.
 */
class ApprovalCrashRecoveryTest {
  private static final Duration READY = Duration.ofSeconds(90);
  private static final Duration WAIT = Duration.ofSeconds(30);

  // ------------------------------------------------------------------ approvals (embedded, bwrap)

  @Test
  void anApprovalSurvivesANodeCrashAndTheApprovedCommandRunsOnce() throws Exception {
    Sandboxes.requireBwrap(ApprovalCrashRecoveryTest.class);
    Path dataDir = Files.createTempDirectory("outboard-approval-crash-");
    // The sandbox's unprivileged user must be able to reach its workspace below the data dir.
    Files.setPosixFilePermissions(dataDir, PosixFilePermissions.fromString("rwx--x--x"));
    String adminToken = "approval-admin-" + Long.toHexString(new SecureRandom().nextLong());
    Map<String, String> env = baseEnv(adminToken, dataDir);
    NodeProcess node = new NodeProcess("approval-crash-node", env);
    try (node) {
      approvalAcrossACrash(node, adminToken, dataDir);
    } catch (AssertionError | Exception e) {
      throw new AssertionError(e + "\n" + node.logTails(60), e);
    } finally {
      InProcessNode.deleteRecursively(dataDir);
    }
  }

  private void approvalAcrossACrash(NodeProcess node, String adminToken, Path dataDir)
      throws Exception {
    long t0 = System.nanoTime();
    node.start();
    node.awaitReady(READY);
    log("approval: node up after %d ms", elapsedMs(t0));
    ApiClient api =
        new ApiClient(
            node.baseUrl(),
            new ApiClient(node.baseUrl(), adminToken).createOrgWithKey("approvals"));

    Map<String, Object> body =
        body(
            "ann",
            false,
            List.of(
                tools(
                    "run it",
                    0,
                    call("bash", Map.of("command", "echo ran >> /workspace/approved.txt")),
                    call(
                        "write",
                        Map.of("path", "/session/notes.txt", "content", "no approval needed"))),
                tools(
                    "count",
                    0,
                    call("bash", Map.of("command", "cat /workspace/approved.txt | wc -l"))),
                say("done")));
    body.put("approvals", List.of("bash"));
    String id = create(api, body);

    JsonNode held = awaitStatus(api, id, "requires_action", WAIT);
    JsonNode pending = held.path("pendingApprovals");
    assertThat(pending).as("pending approvals: %s", held).hasSize(1);
    String bashId = pending.get(0).path("toolUseId").asText();
    assertThat(pending.get(0).path("name").asText()).isEqualTo("bash");
    assertThat(pending.get(0).path("turn").asInt()).isEqualTo(1);
    assertThat(pending.get(0).path("input").path("command").asText())
        .isEqualTo("echo ran >> /workspace/approved.txt");
    assertThat(held.path("waits")).as("waits of a session that waits for approval only").isEmpty();
    assertThat(held.path("sandbox").path("state").asText())
        .as("sandbox before the approval")
        .isEqualTo("none");
    // The call of the same turn that needs no approval has run; the held one has not.
    List<ToolCall> before = toolCalls(api, id);
    assertThat(before).extracting(ToolCall::name).containsExactly("bash", "write");
    assertThat(before.get(0).id()).isEqualTo(bashId);
    assertThat(before.get(0).results()).as("results of the held bash call").isZero();
    assertThat(before.get(1).results()).as("results of the /session write").isEqualTo(1);
    assertThat(before.get(1).isError()).as(before.get(1).content()).isFalse();

    assertThat(node.kill()).isNotZero();
    log("approval: killed after %d ms", elapsedMs(t0));
    node.start();
    node.awaitReady(READY);
    log("approval: node up again after %d ms", elapsedMs(t0));

    JsonNode after = api.get("/v1/sessions/" + id).json();
    assertThat(after.path("status").asText())
        .as("after the restart: %s", after)
        .isEqualTo("requires_action");
    assertThat(after.path("pendingApprovals")).hasSize(1);
    assertThat(after.path("pendingApprovals").get(0).path("toolUseId").asText()).isEqualTo(bashId);
    assertThat(after.path("pendingApprovals").get(0).path("requestedAt").asText())
        .isEqualTo(pending.get(0).path("requestedAt").asText());
    assertThat(after.path("sandbox").path("state").asText())
        .as("sandbox after the restart")
        .isEqualTo("none");
    // Still nothing ran for the held call, and it stays so for a moment (the recovery runs no held
    // call).
    Thread.sleep(1000);
    List<ToolCall> recovered = toolCalls(api, id);
    assertThat(recovered.get(0).results())
        .as("results of the held bash call after the restart")
        .isZero();
    assertThat(recovered.get(1).results())
        .as("results of the /session write after the restart")
        .isEqualTo(1);
    assertThat(filesNamed(dataDir, "approved.txt"))
        .as("approved.txt before the approval")
        .isEmpty();

    Response allowed =
        api.post(
            "/v1/sessions/" + id + "/approvals", Map.of("toolUseId", bashId, "decision", "allow"));
    assertThat(allowed.status()).as(allowed.toString()).isEqualTo(202);
    assertThat(allowed.json().path("id").asText()).isEqualTo(id);
    assertThat(allowed.json().path("pendingApprovals"))
        .as("pending once allowed: %s", allowed)
        .isEmpty();

    // The count call of turn 2 is a bash call too: it waits for its own approval.
    JsonNode second =
        await(
            api,
            id,
            s ->
                s.path("status").asText().equals("requires_action") && s.path("turns").asInt() == 2,
            WAIT,
            "requires_action in turn 2");
    assertThat(second.path("pendingApprovals")).hasSize(1);
    String countId = second.path("pendingApprovals").get(0).path("toolUseId").asText();
    assertThat(countId).isNotEqualTo(bashId);
    assertThat(second.path("pendingApprovals").get(0).path("input").path("command").asText())
        .isEqualTo("cat /workspace/approved.txt | wc -l");
    Response again =
        api.post(
            "/v1/sessions/" + id + "/approvals", Map.of("toolUseId", bashId, "decision", "allow"));
    assertThat(again.status())
        .as("a second decision on %s while the session runs: %s", bashId, again)
        .isEqualTo(409);
    Response count =
        api.post(
            "/v1/sessions/" + id + "/approvals", Map.of("toolUseId", countId, "decision", "allow"));
    assertThat(count.status()).as(count.toString()).isEqualTo(202);

    JsonNode done = awaitStatus(api, id, "completed", WAIT);
    log("approval: completed after %d ms", elapsedMs(t0));
    assertThat(done.path("result").asText()).isEqualTo("done");
    List<ToolCall> calls = toolCalls(api, id);
    assertThat(calls).extracting(ToolCall::name).containsExactly("bash", "write", "bash");
    assertThat(calls).extracting(ToolCall::results).as("results per call").containsExactly(1, 1, 1);
    assertThat(calls.get(0).isError()).as(calls.get(0).content()).isFalse();
    assertThat(calls.get(2).isError()).as(calls.get(2).content()).isFalse();
    assertThat(calls.get(2).content().trim())
        .as("lines in approved.txt: the approved command ran once")
        .isEqualTo("1");

    List<SseEvent> events =
        api.events("/v1/sessions/" + id + "/events", WAIT, "Last-Event-ID", "0");
    assertThat(ofType(events, "approval.requested", bashId))
        .as("approval.requested of %s (not again at recovery)", bashId)
        .hasSize(1);
    List<SseEvent> decided = ofType(events, "approval.decided", bashId);
    assertThat(decided).hasSize(1);
    assertThat(decided.get(0).json().path("decision").asText()).isEqualTo("allow");
    assertThat(ofType(events, "tool.completed", bashId)).hasSize(1);
    assertThat(events.get(events.size() - 1).event()).isEqualTo("session.completed");

    Response twice =
        api.post(
            "/v1/sessions/" + id + "/approvals", Map.of("toolUseId", bashId, "decision", "allow"));
    assertThat(twice.status())
        .as("a second decision on %s once completed: %s", bashId, twice)
        .isEqualTo(409);
    Response unknown =
        api.post(
            "/v1/sessions/" + id + "/approvals",
            Map.of("toolUseId", "toolu_9_9", "decision", "allow"));
    assertThat(unknown.status()).as("a decision on an unknown call: %s", unknown).isEqualTo(404);
    assertThat(toolCalls(api, id))
        .extracting(ToolCall::results)
        .as("results per call after the late decisions")
        .containsExactly(1, 1, 1);

    // A denied call: the model gets an error with the reviewer's message, and the session goes on.
    Map<String, Object> deniedBody =
        body(
            "dan",
            false,
            List.of(
                tools(
                    "delete",
                    0,
                    call("bash", Map.of("command", "echo denied >> /workspace/denied.txt"))),
                say("understood")));
    deniedBody.put("approvals", List.of("bash"));
    String denied = create(api, deniedBody);
    JsonNode deniedHeld = awaitStatus(api, denied, "requires_action", WAIT);
    String deniedCall = deniedHeld.path("pendingApprovals").get(0).path("toolUseId").asText();
    Response deny =
        api.post(
            "/v1/sessions/" + denied + "/approvals",
            Map.of("toolUseId", deniedCall, "decision", "deny", "message", "not on a Friday"));
    assertThat(deny.status()).as(deny.toString()).isEqualTo(202);
    JsonNode deniedDone = awaitStatus(api, denied, "completed", WAIT);
    assertThat(deniedDone.path("result").asText()).isEqualTo("understood");
    assertThat(deniedDone.path("sandbox").path("state").asText())
        .as("sandbox of the denied session")
        .isEqualTo("none");
    List<ToolCall> deniedCalls = toolCalls(api, denied);
    assertThat(deniedCalls).hasSize(1);
    assertThat(deniedCalls.get(0).results()).isEqualTo(1);
    assertThat(deniedCalls.get(0).isError()).isTrue();
    assertThat(deniedCalls.get(0).content()).contains("denied").contains("not on a Friday");
    assertThat(filesNamed(dataDir, "denied.txt")).as("denied.txt").isEmpty();
    Response denyAgain =
        api.post(
            "/v1/sessions/" + denied + "/approvals",
            Map.of("toolUseId", deniedCall, "decision", "allow"));
    assertThat(denyAgain.status())
        .as("allowing a denied call afterwards: %s", denyAgain)
        .isEqualTo(409);
    log("approval: all checked after %d ms", elapsedMs(t0));
  }

  // ------------------------------------------------------------------ waits (PostgreSQL)

  /**
   * The node stays down past the 5-second deadline: the restarted node must time the wait out
   * without being asked. Remember-entities restarts the session, and the scan of the sessions list
   * wakes it too; either may come first (the node's log says when it recovered).
   */
  @Test
  void aWaitAcrossANodeCrashTimesOutOnceAfterItsDeadline() throws Exception {
    waitAcrossACrash("wait-crash-node", List.of(), 5, false);
  }

  /**
   * Without remember-entities, and with the node back before the 20-second deadline: nothing
   * restarts the session but the scan of {@code session_index.wake_at}, which must not do so before
   * the deadline, and must do so within a few scan intervals after it.
   */
  @Test
  void aWaitAcrossANodeCrashIsWokenByTheSessionsListAloneAtItsDeadline() throws Exception {
    waitAcrossACrash(
        "wait-wakeup-node", List.of("-Dpekko.cluster.sharding.remember-entities=off"), 20, true);
  }

  private void waitAcrossACrash(
      String name, List<String> jvmArgs, int seconds, boolean backBeforeDeadline) throws Exception {
    try (TestPostgres postgres = TestPostgres.create()) {
      Path dataDir = Files.createTempDirectory("outboard-wait-crash-");
      String adminToken = "wait-admin-" + Long.toHexString(new SecureRandom().nextLong());
      NodeProcess node =
          new NodeProcess(
              name, postgresEnv(postgres, adminToken, dataDir), jvmArgs, List.of("serve"));
      try (node) {
        waitAcrossACrash(node, adminToken, postgres, seconds, backBeforeDeadline);
      } catch (AssertionError | Exception e) {
        throw new AssertionError(e + "\n" + node.logTails(60), e);
      } finally {
        InProcessNode.deleteRecursively(dataDir);
      }
    }
  }

  private void waitAcrossACrash(
      NodeProcess node,
      String adminToken,
      TestPostgres postgres,
      int seconds,
      boolean backBeforeDeadline)
      throws Exception {
    long t0 = System.nanoTime();
    node.start();
    node.awaitReady(READY);
    log("%s: node up after %d ms", node.name(), elapsedMs(t0));
    ApiClient api =
        new ApiClient(
            node.baseUrl(), new ApiClient(node.baseUrl(), adminToken).createOrgWithKey("waits"));

    String id =
        create(
            api,
            body(
                "wes",
                false,
                List.of(
                    tools(
                        "wait for it",
                        0,
                        call("wait", Map.of("event", "never.comes", "timeoutSeconds", seconds))),
                    say("done"))));
    JsonNode waiting = awaitStatus(api, id, "waiting", WAIT);
    assertThat(waiting.path("waits")).as("waits: %s", waiting).hasSize(1);
    JsonNode wait = waiting.path("waits").get(0);
    String waitId = wait.path("toolUseId").asText();
    assertThat(wait.path("event").asText()).isEqualTo("never.comes");
    Instant deadline = Instant.parse(wait.path("deadline").asText());
    Instant waitedFrom = Instant.parse(waiting.path("updatedAt").asText());
    assertThat(Duration.between(waitedFrom, deadline))
        .as("deadline - updatedAt of the waiting session")
        .isEqualTo(Duration.ofSeconds(seconds));
    // The durable record that lets a node wake the session: the sessions list with its deadline.
    awaitListed(api, "status=waiting", id, WAIT);
    assertThat(wakeAt(postgres, id))
        .as("session_index.wake_at")
        .isCloseTo(deadline, within(1, ChronoUnit.MILLIS));

    Instant killedAt = Instant.now();
    assertThat(node.kill()).isNotZero();
    assertThat(killedAt)
        .as("killed before the deadline (else the test proves nothing)")
        .isBefore(deadline.minusSeconds(2));
    log(
        "%s: killed %d ms before the deadline",
        node.name(), Duration.between(killedAt, deadline).toMillis());
    Thread.sleep(1000);
    node.start();
    node.awaitReady(READY);
    Instant upAt = Instant.now();
    log(
        "%s: node up again %d ms after the deadline",
        node.name(), Duration.between(deadline, upAt).toMillis());
    String recovery = "session " + id + " (waiting) recovered";
    boolean upBeforeDeadline = upAt.isBefore(deadline.minusSeconds(1));
    if (backBeforeDeadline && !upBeforeDeadline) {
      // A slow start: what is left to prove is that the scan alone wakes the session, on time.
      System.err.println(
          "NOTE: "
              + node.name()
              + " was up again only "
              + Duration.between(upAt, deadline).toMillis()
              + " ms before the deadline; the check that nothing wakes the session before it is"
              + " skipped");
    }
    if (backBeforeDeadline && upBeforeDeadline) {
      // Until the deadline nothing wakes the session: it is not in memory, and the list says
      // waiting.
      while (Instant.now().isBefore(deadline.minusMillis(300))) {
        assertThat(list(api).get(id).path("status").asText())
            .as("listed status before the deadline")
            .isEqualTo("waiting");
        sleep(200);
      }
      assertThat(node.log()).as("the node's log just before the deadline").doesNotContain(recovery);
    }

    // Only the sessions list: a request to the session would wake it by itself.
    JsonNode listed = awaitListed(api, "status=completed", id, Duration.ofSeconds(30));
    Instant completedAt = Instant.parse(listed.path("updatedAt").asText());
    log(
        "%s: completed %d ms after the deadline, %d ms after the node was up",
        node.name(),
        Duration.between(deadline, completedAt).toMillis(),
        Duration.between(upAt, completedAt).toMillis());
    assertThat(completedAt).as("completion (updatedAt)").isAfterOrEqualTo(deadline);
    if (backBeforeDeadline) {
      // A scan every second finds it due; the recovery and the write take well under a second more.
      Instant due = upBeforeDeadline ? deadline : upAt;
      assertThat(completedAt)
          .as("completion (updatedAt), woken by the scan")
          .isBefore(due.plusSeconds(4));
    }
    String recoveredLine =
        node.log().lines().filter(l -> l.contains(recovery)).findFirst().orElse(null);
    log("%s: woken: %s", node.name(), recoveredLine);
    assertThat(recoveredLine)
        .as("the restarted node's log line of the session's recovery")
        .isNotNull();

    JsonNode done = api.get("/v1/sessions/" + id).json();
    assertThat(done.path("status").asText()).isEqualTo("completed");
    assertThat(done.path("result").asText()).isEqualTo("done");
    assertThat(done.path("waits")).isEmpty();
    List<ToolCall> calls = toolCalls(api, id);
    assertThat(calls).hasSize(1);
    assertThat(calls.get(0).id()).isEqualTo(waitId);
    assertThat(calls.get(0).results()).as("results of the wait call").isEqualTo(1);
    assertThat(calls.get(0).isError()).isTrue();
    assertThat(calls.get(0).content())
        .isEqualTo("the wait timed out: no event 'never.comes' arrived within " + seconds + " s");

    List<SseEvent> events =
        api.events("/v1/sessions/" + id + "/events", WAIT, "Last-Event-ID", "0");
    assertThat(ofType(events, "wait.started", waitId)).hasSize(1);
    List<SseEvent> completions = ofType(events, "tool.completed", waitId);
    assertThat(completions).as("tool.completed of the wait").hasSize(1);
    Instant timedOutAt = Instant.parse(completions.get(0).json().path("at").asText());
    assertThat(timedOutAt)
        .as("when the wait timed out")
        .isAfterOrEqualTo(deadline)
        .isAfter(killedAt);
    assertThat(events.get(events.size() - 1).event()).isEqualTo("session.completed");
    assertThat(wakeAt(postgres, id)).as("session_index.wake_at once completed").isNull();
  }

  // ------------------------------------------------------------------ helpers

  private static Map<String, String> baseEnv(String adminToken, Path dataDir) {
    int[] ports = Ports.free(3);
    Map<String, String> env = new HashMap<>();
    env.put("OUTBOARD_ALLOW_SCRIPTED", "true");
    env.put("OUTBOARD_ADMIN_TOKEN", adminToken);
    env.put("OUTBOARD_HTTP_PORT", Integer.toString(ports[0]));
    env.put("OUTBOARD_MANAGEMENT_PORT", Integer.toString(ports[1]));
    env.put("OUTBOARD_REMOTE_PORT", Integer.toString(ports[2]));
    env.put("OUTBOARD_DATA_DIR", dataDir.toString());
    return env;
  }

  private static Map<String, String> postgresEnv(
      TestPostgres postgres, String adminToken, Path dataDir) {
    Map<String, String> env = baseEnv(adminToken, dataDir);
    env.put("OUTBOARD_DB_URL", postgres.url());
    env.put("OUTBOARD_DB_USER", postgres.user());
    env.put("OUTBOARD_DB_PASSWORD", "");
    return env;
  }

  /** Polls the sessions list (never the session) until {@code id} is listed with {@code query}. */
  private static JsonNode awaitListed(ApiClient api, String query, String id, Duration timeout) {
    long deadline = System.nanoTime() + timeout.toNanos();
    Map<String, JsonNode> all = Map.of();
    do {
      Response r = api.get("/v1/sessions?" + query + "&limit=100");
      assertThat(r.status()).as(r.toString()).isEqualTo(200);
      for (JsonNode s : r.json().path("sessions")) if (s.path("id").asText().equals(id)) return s;
      all = list(api);
      JsonNode s = all.get(id);
      if (s != null) {
        assertThat(s.path("status").asText())
            .as("listed status of %s", id)
            .isNotIn("failed", "cancelled");
      }
      sleep(100);
    } while (System.nanoTime() < deadline);
    throw new AssertionError(
        id + " was not listed with " + query + " within " + timeout + "; listed: " + all);
  }

  private static Map<String, JsonNode> list(ApiClient api) {
    Response r = api.get("/v1/sessions?limit=100");
    assertThat(r.status()).as(r.toString()).isEqualTo(200);
    Map<String, JsonNode> out = new LinkedHashMap<>();
    r.json().path("sessions").forEach(s -> out.put(s.path("id").asText(), s));
    return out;
  }

  private static Instant wakeAt(TestPostgres postgres, String id) throws Exception {
    try (Connection c = postgres.connection();
        PreparedStatement ps =
            c.prepareStatement("SELECT wake_at FROM session_index WHERE id = ?")) {
      ps.setString(1, id);
      try (ResultSet rs = ps.executeQuery()) {
        assertThat(rs.next()).as("session_index row of %s", id).isTrue();
        Timestamp t = rs.getTimestamp(1);
        return t == null ? null : t.toInstant();
      }
    }
  }

  private static List<SseEvent> ofType(List<SseEvent> events, String type, String toolUseId) {
    return events.stream()
        .filter(
            e -> e.event().equals(type) && e.json().path("toolUseId").asText().equals(toolUseId))
        .toList();
  }

  /**
   * Every file called {@code name} below {@code dir}; directories this user may not read are
   * skipped.
   */
  private static List<Path> filesNamed(Path dir, String name) throws Exception {
    List<Path> found = new ArrayList<>();
    Files.walkFileTree(
        dir,
        new SimpleFileVisitor<>() {
          @Override
          public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) {
            if (file.getFileName().toString().equals(name)) found.add(file);
            return FileVisitResult.CONTINUE;
          }

          @Override
          public FileVisitResult visitFileFailed(Path file, IOException e) {
            return FileVisitResult.CONTINUE;
          }
        });
    return found;
  }

  private static long elapsedMs(long t0) {
    return (System.nanoTime() - t0) / 1_000_000;
  }

  private static void log(String format, Object... args) {
    System.err.printf("[approval-crash-test] " + format + "%n", args);
  }
}
