package dev.outboard.session;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.Response;
import dev.outboard.testing.AppendingSessions;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.NodeProcess;
import dev.outboard.testing.Ports;
import dev.outboard.testing.TestPostgres;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/**
 * The end-to-end crash test: a node (its own JVM, on PostgreSQL) runs 20 scripted sessions of 30
 * turns, is killed with SIGKILL in the middle of them, and is started again. Without any request to
 * a single session (remember-entities must bring them back by themselves) every session finishes,
 * with every turn recorded exactly once, every tool call answered exactly once, its {@code
 * /session} files holding exactly what the turns wrote, and its event history intact.
 */
class SessionCrashRecoveryTest {
  private static final int SESSIONS = 20;
  private static final int TURNS = 30;
  private static final long LATENCY_MS = 50;
  private static final double KILL_AT_AVERAGE_TURNS = 5;
  private static final Duration READY = Duration.ofSeconds(90);
  private static final Duration RECOVERY = Duration.ofSeconds(120);

  @Test
  void sessionsResumeAfterANodeCrashWithoutLosingOrRepeatingATurn() throws Exception {
    try (TestPostgres postgres = TestPostgres.create()) {
      Path dataDir = Files.createTempDirectory("outboard-crash-");
      int[] ports = Ports.free(3);
      String adminToken = "crash-admin-" + Long.toHexString(new SecureRandom().nextLong());
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

      NodeProcess node = new NodeProcess("crash-node", env);
      try (node) {
        crashAndRecover(node, adminToken);
      } catch (AssertionError | Exception e) {
        // The node's own view of what went wrong, next to the assertion.
        throw new AssertionError(e + "\n" + node.logTails(60), e);
      } finally {
        InProcessNode.deleteRecursively(dataDir);
      }
    }
  }

  private void crashAndRecover(NodeProcess node, String adminToken) throws Exception {
    long t0 = System.nanoTime();
    node.start();
    node.awaitReady(READY);
    log("node up after %d ms", elapsedMs(t0));
    ApiClient api =
        new ApiClient(
            node.baseUrl(), new ApiClient(node.baseUrl(), adminToken).createOrgWithKey("crash"));

    List<String> ids = createSessions(api);
    log("%d sessions created after %d ms", ids.size(), elapsedMs(t0));

    // Kill the node once the sessions are well under way, but far from done. (The sessions list
    // changes only with a session's status, so progress is read from the sessions themselves.)
    Map<String, JsonNode> beforeKill = awaitProgress(api, ids);
    Instant killedAt = Instant.now();
    int exit = node.kill();
    log("killed (exit %d) after %d ms; turns then: %s", exit, elapsedMs(t0), turnsOf(beforeKill));
    Set<String> interrupted =
        beforeKill.values().stream()
            // (a margin of turns: none of these can have finished between the snapshot and the
            // kill)
            .filter(
                s ->
                    s.path("status").asText().equals("running")
                        && s.path("turns").asInt() <= TURNS - 3)
            .map(s -> s.path("id").asText())
            .collect(Collectors.toSet());
    assertThat(interrupted)
        .as("sessions still running when the node was killed (else the test proves nothing)")
        .hasSizeGreaterThanOrEqualTo(SESSIONS / 2);

    node.start();
    node.awaitReady(READY);
    log("node up again after %d ms", elapsedMs(t0));

    // Only the sessions list: no request may wake a single session.
    Map<String, JsonNode> completed = awaitCompleted(api);
    log("all %d sessions completed after %d ms", completed.size(), elapsedMs(t0));
    assertThat(completed.keySet()).containsExactlyInAnyOrderElementsOf(ids);
    for (JsonNode s : completed.values()) {
      assertThat(s.path("turns").asInt())
          .as("turns of %s in the list", s.path("id").asText())
          .isEqualTo(TURNS);
    }
    for (String id : interrupted) {
      assertThat(Instant.parse(completed.get(id).path("updatedAt").asText()))
          .as("session %s, interrupted by the crash, finished after the restart", id)
          .isAfter(killedAt);
    }

    for (String id : ids) SCRIPT.check(api, id);
    log("all sessions checked after %d ms", elapsedMs(t0));
  }

  private static final AppendingSessions SCRIPT = new AppendingSessions(TURNS, LATENCY_MS);

  /** Creates the sessions concurrently, so that they run side by side. */
  private static List<String> createSessions(ApiClient api) throws Exception {
    ExecutorService pool = Executors.newFixedThreadPool(SESSIONS);
    try {
      List<Callable<String>> creates =
          IntStream.rangeClosed(1, SESSIONS)
              .<Callable<String>>mapToObj(
                  n ->
                      () -> {
                        Response r = api.post("/v1/sessions", SCRIPT.body("crash-test", n));
                        assertThat(r.status()).as(r.toString()).isEqualTo(201);
                        assertThat(r.json().path("status").asText()).isEqualTo("running");
                        return r.json().path("id").asText();
                      })
              .toList();
      List<String> ids = new ArrayList<>();
      for (Future<String> f : pool.invokeAll(creates)) ids.add(f.get());
      return ids;
    } finally {
      pool.shutdownNow();
    }
  }

  // ------------------------------------------------------------------ polling the list

  private static Map<String, JsonNode> awaitCompleted(ApiClient api) {
    long deadline = System.nanoTime() + RECOVERY.toNanos();
    Map<String, JsonNode> completed = Map.of();
    long nextFailureCheck = 0;
    while (System.nanoTime() < deadline) {
      completed = list(api, "status=completed&limit=100");
      if (completed.size() >= SESSIONS) return completed;
      if (System.nanoTime() > nextFailureCheck) {
        Map<String, JsonNode> all = list(api, "limit=100");
        List<JsonNode> broken =
            all.values().stream()
                .filter(
                    s ->
                        s.path("status").asText().equals("failed")
                            || s.path("status").asText().equals("cancelled"))
                .toList();
        assertThat(broken).as("sessions that ended otherwise than completed").isEmpty();
        nextFailureCheck = System.nanoTime() + Duration.ofSeconds(2).toNanos();
      }
      sleep(200);
    }
    throw new AssertionError(
        "only "
            + completed.size()
            + " of "
            + SESSIONS
            + " sessions completed within "
            + RECOVERY
            + " of the restart; now: "
            + turnsOf(list(api, "limit=100")));
  }

  /** Polls every session until they average {@link #KILL_AT_AVERAGE_TURNS} turns. */
  private static Map<String, JsonNode> awaitProgress(ApiClient api, List<String> ids) {
    Duration timeout = Duration.ofSeconds(60);
    long deadline = System.nanoTime() + timeout.toNanos();
    Map<String, JsonNode> now = Map.of();
    while (System.nanoTime() < deadline) {
      now = new LinkedHashMap<>();
      for (String id : ids) {
        Response r = api.get("/v1/sessions/" + id);
        assertThat(r.status()).as(r.toString()).isEqualTo(200);
        now.put(id, r.json());
      }
      if (now.values().stream().mapToInt(s -> s.path("turns").asInt()).average().orElse(0)
          >= KILL_AT_AVERAGE_TURNS) return now;
      sleep(10);
    }
    throw new AssertionError(
        "the sessions did not reach an average of "
            + KILL_AT_AVERAGE_TURNS
            + " turns within "
            + timeout
            + "; now: "
            + turnsOf(now));
  }

  private static Map<String, JsonNode> list(ApiClient api, String query) {
    Response r = api.get("/v1/sessions?" + query);
    assertThat(r.status()).as(r.toString()).isEqualTo(200);
    Map<String, JsonNode> out = new LinkedHashMap<>();
    r.json().path("sessions").forEach(s -> out.put(s.path("id").asText(), s));
    return out;
  }

  private static String turnsOf(Map<String, JsonNode> sessions) {
    return sessions.values().stream()
        .map(s -> s.path("status").asText() + "/" + s.path("turns").asInt())
        .collect(Collectors.joining(" ", "[", "]"));
  }

  private static long elapsedMs(long t0) {
    return (System.nanoTime() - t0) / 1_000_000;
  }

  private static void log(String format, Object... args) {
    System.err.printf("[crash-test] " + format + "%n", args);
  }

  private static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }
}
