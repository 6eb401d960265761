package dev.outboard.it;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.Response;
import dev.outboard.testing.ApiClient.SseEvent;
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
import java.util.HashSet;
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
 * turns, is killed with SIGKILL in the middle of them, and is started again. Without any request
 * to a single session (remember-entities must bring them back by themselves) every session
 * finishes, with every turn recorded exactly once, every tool call answered exactly once, its
 * {@code /session} files holding exactly what the turns wrote, and its event history intact.
 */
class SessionCrashRecoveryTest {
  private static final int SESSIONS = 20;
  private static final int TURNS = 30;
  /** Turns 1..LOG_LINES each append "line i" to /session/log.md; turn 29 reads it; turn 30 ends. */
  private static final int LOG_LINES = TURNS - 2;
  private static final long LATENCY_MS = 50;
  private static final String MARKER = "<<end of log>>";
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
        deleteRecursively(dataDir);
      }
    }
  }

  private void crashAndRecover(NodeProcess node, String adminToken) throws Exception {
    long t0 = System.nanoTime();
    node.start();
    node.awaitReady(READY);
    log("node up after %d ms", elapsedMs(t0));
    ApiClient api = new ApiClient(node.baseUrl(), new ApiClient(node.baseUrl(), adminToken).createOrgWithKey("crash"));

    List<String> ids = createSessions(api);
    log("%d sessions created after %d ms", ids.size(), elapsedMs(t0));

    // Kill the node once the sessions are well under way, but far from done. (The sessions list
    // changes only with a session's status, so progress is read from the sessions themselves.)
    Map<String, JsonNode> beforeKill = awaitProgress(api, ids);
    Instant killedAt = Instant.now();
    int exit = node.kill();
    log("killed (exit %d) after %d ms; turns then: %s", exit, elapsedMs(t0), turnsOf(beforeKill));
    Set<String> interrupted = beforeKill.values().stream()
        // (a margin of turns: none of these can have finished between the snapshot and the kill)
        .filter(s -> s.path("status").asText().equals("running") && s.path("turns").asInt() <= TURNS - 3)
        .map(s -> s.path("id").asText()).collect(Collectors.toSet());
    assertThat(interrupted).as("sessions still running when the node was killed (else the test proves nothing)")
        .hasSizeGreaterThanOrEqualTo(SESSIONS / 2);

    node.start();
    node.awaitReady(READY);
    log("node up again after %d ms", elapsedMs(t0));

    // Only the sessions list: no request may wake a single session.
    Map<String, JsonNode> completed = awaitCompleted(api);
    log("all %d sessions completed after %d ms", completed.size(), elapsedMs(t0));
    assertThat(completed.keySet()).containsExactlyInAnyOrderElementsOf(ids);
    for (JsonNode s : completed.values()) {
      assertThat(s.path("turns").asInt()).as("turns of %s in the list", s.path("id").asText()).isEqualTo(TURNS);
    }
    for (String id : interrupted) {
      assertThat(Instant.parse(completed.get(id).path("updatedAt").asText()))
          .as("session %s, interrupted by the crash, finished after the restart", id).isAfter(killedAt);
    }

    for (String id : ids) checkSession(api, id);
    log("all sessions checked after %d ms", elapsedMs(t0));
  }

  // ------------------------------------------------------------------ the script

  /**
   * Turn i (1..28): write /session/turn-i.md, append "line i" to /session/log.md by an edit
   * before the marker, and read the previous turn's file. Turn 29 reads the log; turn 30 ends.
   */
  static List<Map<String, Object>> script() {
    List<Map<String, Object>> turns = new ArrayList<>();
    for (int i = 1; i <= LOG_LINES; i++) {
      List<Map<String, Object>> calls = new ArrayList<>();
      if (i == 1) calls.add(call("write", Map.of("path", "/session/log.md", "content", "START\n" + MARKER)));
      calls.add(call("write", Map.of("path", "/session/turn-" + i + ".md", "content", "turn " + i)));
      calls.add(call("edit", Map.of("path", "/session/log.md", "old_string", MARKER, "new_string", "line " + i + "\n" + MARKER)));
      if (i > 1) calls.add(call("read", Map.of("path", "/session/turn-" + (i - 1) + ".md")));
      turns.add(Map.of("text", "turn " + i, "toolCalls", calls, "latencyMs", LATENCY_MS));
    }
    turns.add(Map.of("text", "turn " + (TURNS - 1), "toolCalls", List.of(call("read", Map.of("path", "/session/log.md"))),
        "latencyMs", LATENCY_MS));
    turns.add(Map.of("text", "done", "latencyMs", LATENCY_MS));
    return turns;
  }

  private static Map<String, Object> call(String name, Map<String, Object> input) {
    return Map.of("name", name, "input", input);
  }

  private static int toolCallsInScript() {
    return script().stream().mapToInt(t -> ((List<?>) t.getOrDefault("toolCalls", List.of())).size()).sum();
  }

  /** Creates the sessions concurrently, so that they run side by side. */
  private static List<String> createSessions(ApiClient api) throws Exception {
    ExecutorService pool = Executors.newFixedThreadPool(SESSIONS);
    try {
      List<Callable<String>> creates = IntStream.rangeClosed(1, SESSIONS).<Callable<String>>mapToObj(n -> () -> {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("prompt", "crash test session " + n);
        body.put("user", "crash-test");
        body.put("maxTurns", TURNS + 10);
        body.put("model", Map.of("provider", "scripted", "script", script()));
        Response r = api.post("/v1/sessions", body);
        assertThat(r.status()).as(r.toString()).isEqualTo(201);
        assertThat(r.json().path("status").asText()).isEqualTo("running");
        return r.json().path("id").asText();
      }).toList();
      List<String> ids = new ArrayList<>();
      for (Future<String> f : pool.invokeAll(creates)) ids.add(f.get());
      return ids;
    } finally {
      pool.shutdownNow();
    }
  }

  // ------------------------------------------------------------------ checks of one session

  private static void checkSession(ApiClient api, String id) {
    Response got = api.get("/v1/sessions/" + id);
    assertThat(got.status()).as(got.toString()).isEqualTo(200);
    JsonNode summary = got.json();
    assertThat(summary.path("status").asText()).as(id).isEqualTo("completed");
    assertThat(summary.path("turns").asInt()).as("turns of " + id).isEqualTo(TURNS);
    assertThat(summary.path("result").asText()).as(id).isEqualTo("done");
    assertThat(summary.path("error").isNull() || summary.path("error").isMissingNode()).as("error of " + id).isTrue();

    checkTranscript(id, api.get("/v1/sessions/" + id + "/transcript").json());
    checkEvents(id, api.events("/v1/sessions/" + id + "/events", Duration.ofSeconds(30), "Last-Event-ID", "0"));
  }

  private static void checkTranscript(String id, JsonNode transcript) {
    List<String> assistantTexts = new ArrayList<>();
    Map<String, JsonNode> toolUses = new LinkedHashMap<>();
    Map<String, Integer> resultCounts = new HashMap<>();
    Map<String, JsonNode> results = new HashMap<>();
    for (JsonNode m : transcript.path("messages")) {
      String role = m.path("role").asText();
      for (JsonNode b : m.path("content")) {
        switch (b.path("type").asText()) {
          case "text" -> {
            if (role.equals("assistant")) assistantTexts.add(b.path("text").asText());
          }
          case "tool_use" -> {
            assertThat(role).isEqualTo("assistant");
            JsonNode previous = toolUses.put(b.path("id").asText(), b);
            assertThat(previous).as("tool_use id %s of %s recorded twice", b.path("id").asText(), id).isNull();
          }
          case "tool_result" -> {
            assertThat(role).isEqualTo("user");
            String useId = b.path("toolUseId").asText();
            resultCounts.merge(useId, 1, Integer::sum);
            results.put(useId, b);
            assertThat(b.path("isError").asBoolean()).as("tool result %s of %s: %s", useId, id, b.path("content").asText()).isFalse();
          }
          default -> throw new AssertionError("unknown block in " + id + ": " + b);
        }
      }
    }
    List<String> expectedTexts = IntStream.rangeClosed(1, TURNS - 1).mapToObj(i -> "turn " + i).collect(Collectors.toList());
    expectedTexts.add("done");
    assertThat(assistantTexts).as("assistant turns of " + id + ", each exactly once, in order").isEqualTo(expectedTexts);
    assertThat(transcript.path("messages")).as("messages of " + id).hasSize(1 + TURNS + (TURNS - 1));
    assertThat(toolUses).as("tool calls of " + id).hasSize(toolCallsInScript());
    assertThat(resultCounts).as("tool results of " + id + " (exactly one per tool call)")
        .isEqualTo(toolUses.keySet().stream().collect(Collectors.toMap(k -> k, k -> 1)));

    // Each turn read the file the turn before wrote.
    for (Map.Entry<String, JsonNode> use : toolUses.entrySet()) {
      JsonNode input = use.getValue().path("input");
      String path = input.path("path").asText();
      if (use.getValue().path("name").asText().equals("read") && path.startsWith("/session/turn-")) {
        String n = path.substring("/session/turn-".length(), path.length() - ".md".length());
        assertThat(results.get(use.getKey()).path("content").asText().strip()).as("%s: read %s", id, path).isEqualTo("1\tturn " + n);
      }
    }

    // Turn 29 read /session/log.md: START, line 1..28 once each in order, the marker.
    JsonNode logRead = results.get(toolUses.entrySet().stream()
        .filter(e -> e.getValue().path("input").path("path").asText().equals("/session/log.md")
            && e.getValue().path("name").asText().equals("read"))
        .map(Map.Entry::getKey).findFirst().orElseThrow());
    List<String> expectedLog = new ArrayList<>();
    expectedLog.add("START");
    for (int i = 1; i <= LOG_LINES; i++) expectedLog.add("line " + i);
    expectedLog.add(MARKER);
    List<String> numbered = logRead.path("content").asText().lines().toList();
    assertThat(numbered).as("/session/log.md of " + id).hasSize(expectedLog.size());
    for (int i = 0; i < numbered.size(); i++) {
      String[] parts = numbered.get(i).strip().split("\t", 2);
      assertThat(parts).as("line %d of /session/log.md of %s: %s", i + 1, id, numbered.get(i)).hasSize(2);
      assertThat(Integer.parseInt(parts[0])).isEqualTo(i + 1);
      assertThat(parts[1]).as("line %d of /session/log.md of %s", i + 1, id).isEqualTo(expectedLog.get(i));
    }
  }

  private static void checkEvents(String id, List<SseEvent> events) {
    List<SseEvent> recorded = events.stream().filter(e -> e.id() != null).toList();
    assertThat(recorded).as("events of " + id).isNotEmpty();
    assertThat(recorded.get(0).event()).as("first event of " + id).isEqualTo("session.started");
    assertThat(recorded.get(0).seq()).isEqualTo(1);
    assertThat(recorded.get(recorded.size() - 1).event()).as("last event of " + id).isEqualTo("session.completed");
    assertThat(events.get(events.size() - 1).event()).as("the stream of " + id + " ends with the terminal event").isEqualTo("session.completed");
    long previous = 0;
    for (SseEvent e : recorded) {
      assertThat(e.seq()).as("event ids of %s strictly increase: %s after %d", id, e, previous).isGreaterThan(previous);
      previous = e.seq();
    }
    List<Integer> modelTurns = recorded.stream().filter(e -> e.event().equals("model.responded"))
        .map(e -> e.json().path("turn").asInt()).toList();
    assertThat(modelTurns).as("model.responded turns of " + id).isEqualTo(IntStream.rangeClosed(1, TURNS).boxed().toList());

    Set<String> started = new HashSet<>();
    Set<String> done = new HashSet<>();
    for (SseEvent e : recorded) {
      if (e.event().equals("tool.started")) assertThat(started.add(e.json().path("toolUseId").asText())).as("tool.started twice: " + e).isTrue();
      if (e.event().equals("tool.completed")) assertThat(done.add(e.json().path("toolUseId").asText())).as("tool.completed twice: " + e).isTrue();
    }
    assertThat(started).as("tool calls started in " + id).hasSize(toolCallsInScript()).isEqualTo(done);
    assertThat(recorded.stream().filter(e -> e.event().startsWith("session.")).map(SseEvent::event))
        .as("session events of " + id).containsExactly("session.started", "session.completed");
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
        List<JsonNode> broken = all.values().stream()
            .filter(s -> s.path("status").asText().equals("failed") || s.path("status").asText().equals("cancelled")).toList();
        assertThat(broken).as("sessions that ended otherwise than completed").isEmpty();
        nextFailureCheck = System.nanoTime() + Duration.ofSeconds(2).toNanos();
      }
      sleep(200);
    }
    throw new AssertionError("only " + completed.size() + " of " + SESSIONS + " sessions completed within " + RECOVERY
        + " of the restart; now: " + turnsOf(list(api, "limit=100")));
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
      if (now.values().stream().mapToInt(s -> s.path("turns").asInt()).average().orElse(0) >= KILL_AT_AVERAGE_TURNS) return now;
      sleep(10);
    }
    throw new AssertionError("the sessions did not reach an average of " + KILL_AT_AVERAGE_TURNS + " turns within " + timeout
        + "; now: " + turnsOf(now));
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

  private static void deleteRecursively(Path dir) {
    try (var files = Files.walk(dir)) {
      files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (java.io.IOException ignored) {
      // a temp directory left behind is harmless
    }
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
