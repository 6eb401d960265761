package dev.outboard.session;

import static dev.outboard.testing.ScriptedSessions.call;
import static dev.outboard.testing.ScriptedSessions.create;
import static dev.outboard.testing.ScriptedSessions.say;
import static dev.outboard.testing.ScriptedSessions.sleep;
import static dev.outboard.testing.ScriptedSessions.toolCalls;
import static dev.outboard.testing.ScriptedSessions.tools;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.Response;
import dev.outboard.testing.ApiClient.SseEvent;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.NodeProcess;
import dev.outboard.testing.Ports;
import dev.outboard.testing.ScriptedSessions.ToolCall;
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
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/**
 * Subagents across a {@code kill -9} of the node's JVM (its own process, on PostgreSQL): a scripted
 * parent asks for three {@code task} calls at once (prompts alpha, beta, gamma); the node is killed
 * while all three children are in the middle of their four one-second turns, and started again.
 * Nothing but polling follows the restart (no request ever goes to a child), and then:
 *
 * <ul>
 *   <li>every child completes once, with each of its turns recorded exactly once (its journal's
 *       {@code model.responded} events are turns 1 to 4, each scripted tool call has exactly one
 *       result, its {@code /session} holds what its turns wrote) and its answer {@code "answer to
 *       <prompt>"}, finishing after the kill (so it was resumed, not done before);
 *   <li>the parent completes, and each of its three task calls has exactly one result, the answer
 *       of its own child, in call order; its event history has exactly three {@code task.started}
 *       and three {@code task.finished} events (one per call, none repeated at recovery); it lists
 *       its three children as {@code completed}; its usage is its own model calls' plus exactly
 *       each child's once.
 * </ul>
 *
 * <p>Two ways back, one per test. With remember-entities on (as configured) only the sessions list
 * is polled: sharding restarts the parent and the children by itself (the parent's recovery asks
 * its children again too; both reach them within milliseconds, and each session recovers exactly
 * once, which the node's log shows). With remember-entities off nothing restarts by itself
 * (checked: no session recovers while only the list is polled); one GET of the parent wakes it, and
 * its recovery asks its children to start again (a {@code Create} to their derived ids), which
 * recovers them where they were. In both the periodic re-ask ({@code
 * outboard.subagents.check-interval}) is set to 10 minutes, so it cannot be what resumed them.
 */
class SubagentCrashRecoveryTest {
  private static final Duration READY = Duration.ofSeconds(90);
  private static final Duration WAIT = Duration.ofSeconds(30);
  private static final List<String> PROMPTS = List.of("alpha", "beta", "gamma");
  private static final List<String> DESCRIPTIONS = List.of("first", "second", "third");

  /** The turns every child plays; each but the last writes to or lists its /session. */
  private static final int CHILD_TURNS = 4;

  private static final long CHILD_LATENCY_MS = 1000;
  private static final String NO_PERIODIC_CHECK = "-Doutboard.subagents.check-interval=10m";

  @Test
  void childrenKilledMidRunCompleteOnceAndTheParentGetsEachResultOnce() throws Exception {
    run("subagent-crash-node", List.of(NO_PERIODIC_CHECK), false);
  }

  @Test
  void withoutRememberEntitiesTheParentsRecoveryResumesItsChildren() throws Exception {
    run(
        "subagent-reask-node",
        List.of(NO_PERIODIC_CHECK, "-Dpekko.cluster.sharding.remember-entities=off"),
        true);
  }

  private void run(String name, List<String> jvmArgs, boolean wakeParentByGet) throws Exception {
    try (TestPostgres postgres = TestPostgres.create()) {
      Path dataDir = Files.createTempDirectory("outboard-subagent-crash-");
      String adminToken = "subagent-admin-" + Long.toHexString(new SecureRandom().nextLong());
      NodeProcess node =
          new NodeProcess(
              name, postgresEnv(postgres, adminToken, dataDir), jvmArgs, List.of("serve"));
      try (node) {
        crashAndRecover(node, adminToken, wakeParentByGet);
      } catch (AssertionError | Exception e) {
        throw new AssertionError(e + "\n" + node.logTails(60), e);
      } finally {
        InProcessNode.deleteRecursively(dataDir);
      }
    }
  }

  private static Map<String, Object> task(String description, String prompt) {
    return call("task", Map.of("description", description, "prompt", prompt));
  }

  private static List<Map<String, Object>> childScript() {
    return List.of(
        tools(
            "noting",
            CHILD_LATENCY_MS,
            call("write", Map.of("path", "/session/one.md", "content", "1 of ${prompt}"))),
        tools(
            "noting more",
            CHILD_LATENCY_MS,
            call("write", Map.of("path", "/session/two.md", "content", "2"))),
        tools("looking", CHILD_LATENCY_MS, call("ls", Map.of("path", "/session"))),
        Map.of("text", "answer to ${prompt}", "latencyMs", CHILD_LATENCY_MS));
  }

  private void crashAndRecover(NodeProcess node, String adminToken, boolean wakeParentByGet)
      throws Exception {
    long t0 = System.nanoTime();
    node.start();
    node.awaitReady(READY);
    log("%s: node up after %d ms", node.name(), elapsedMs(t0));
    ApiClient api =
        new ApiClient(
            node.baseUrl(),
            new ApiClient(node.baseUrl(), adminToken).createOrgWithKey("subagents"));

    Map<String, Object> body = new LinkedHashMap<>();
    body.put("prompt", "split the work");
    body.put("user", "pia");
    body.put(
        "model",
        Map.of(
            "provider",
            "scripted",
            "script",
            List.of(
                tools(
                    "three at once",
                    0,
                    task(DESCRIPTIONS.get(0), PROMPTS.get(0)),
                    task(DESCRIPTIONS.get(1), PROMPTS.get(1)),
                    task(DESCRIPTIONS.get(2), PROMPTS.get(2))),
                say("done")),
            "subagentScript",
            childScript()));
    String parent = create(api, body);

    // Kill once all three children are running and have recorded a turn, but are at least two
    // one-second turns away from their end (so none can finish between this look and the kill).
    List<String> children = awaitChildren(api, parent);
    Map<String, JsonNode> atKill = awaitChildrenUnderWay(api, children);
    Instant killedAt = Instant.now();
    assertThat(node.kill()).isNotZero();
    log(
        "%s: killed after %d ms; children's turns then: %s",
        node.name(), elapsedMs(t0), turnsOf(atKill));
    assertThat(atKill.values())
        .as("the children when the node was killed")
        .allSatisfy(
            c -> {
              assertThat(c.path("status").asText()).isEqualTo("running");
              assertThat(c.path("turns").asInt()).isBetween(1, CHILD_TURNS - 2);
            });

    node.start();
    node.awaitReady(READY);
    log("%s: node up again after %d ms", node.name(), elapsedMs(t0));
    if (wakeParentByGet) {
      // Without remember-entities nothing comes back by itself: the list alone wakes no one...
      long quiet = System.nanoTime() + Duration.ofSeconds(2).toNanos();
      while (System.nanoTime() < quiet) {
        Map<String, JsonNode> listed = list(api);
        for (String id : children) {
          assertThat(listed.get(id).path("status").asText())
              .as("listed status of child %s before the parent's GET", id)
              .isEqualTo("running");
        }
        sleep(200);
      }
      assertThat(recoveredLines(node))
          .as("sessions recovered before the parent was asked")
          .isEmpty();
      // ...until the parent is asked (a GET); its recovery asks its children where they stand.
      Response got = api.get("/v1/sessions/" + parent);
      assertThat(got.status()).as(got.toString()).isEqualTo(200);
    }
    // Only the sessions list from here on (the parent's GET above is all a child ever gets, through
    // it).
    Map<String, JsonNode> listed = awaitListedCompleted(api, parent, WAIT);
    log("%s: parent completed after %d ms", node.name(), elapsedMs(t0));
    List<String> recovered = recoveredLines(node);
    recovered.forEach(l -> log("%s: %s", node.name(), l));
    for (String id : children) {
      assertThat(listed.get(id).path("status").asText())
          .as("listed status of child %s", id)
          .isEqualTo("completed");
      assertThat(recovered)
          .as("the restarted node's log lines of child %s's recovery", id)
          .filteredOn(l -> l.contains("session " + id + " (running) recovered"))
          .hasSize(1);
    }
    assertThat(recovered)
        .as("the restarted node's log lines of the parent's recovery")
        .filteredOn(l -> l.contains("session " + parent + " (running) recovered"))
        .hasSize(1);

    checkParent(api, parent, children);
    for (int i = 0; i < children.size(); i++)
      checkChild(api, children.get(i), parent, PROMPTS.get(i), killedAt);
    checkUsage(api, parent, children);
    log("%s: all checked after %d ms", node.name(), elapsedMs(t0));
  }

  /**
   * The parent's children, once it lists all three (it does as soon as it recorded its task calls).
   */
  private static List<String> awaitChildren(ApiClient api, String parent) {
    long deadline = System.nanoTime() + WAIT.toNanos();
    JsonNode last;
    do {
      last = api.get("/v1/sessions/" + parent).json();
      if (last.path("children").size() == 3) return last.path("children").findValuesAsText("id");
      sleep(20);
    } while (System.nanoTime() < deadline);
    throw new AssertionError(
        "parent " + parent + " did not list 3 children within " + WAIT + ": " + last);
  }

  /** The children's GETs once each is running with 1 to CHILD_TURNS - 2 turns recorded. */
  private static Map<String, JsonNode> awaitChildrenUnderWay(ApiClient api, List<String> children) {
    long deadline = System.nanoTime() + WAIT.toNanos();
    Map<String, JsonNode> seen = new LinkedHashMap<>();
    do {
      seen.clear();
      for (String id : children) {
        Response r = api.get("/v1/sessions/" + id);
        if (r.status() == 200) seen.put(id, r.json()); // 404 until the child recorded its start
      }
      if (seen.size() == children.size()
          && seen.values().stream()
              .allMatch(
                  c ->
                      c.path("status").asText().equals("running")
                          && c.path("turns").asInt() >= 1
                          && c.path("turns").asInt() <= CHILD_TURNS - 2)) {
        return new LinkedHashMap<>(seen);
      }
      if (seen.values().stream().anyMatch(c -> c.path("turns").asInt() > CHILD_TURNS - 2)) {
        throw new AssertionError(
            "a child got too far before all three were under way: " + turnsOf(seen));
      }
      sleep(20);
    } while (System.nanoTime() < deadline);
    throw new AssertionError("the children were not all under way within " + WAIT + ": " + seen);
  }

  private void checkParent(ApiClient api, String parent, List<String> children) {
    JsonNode done = api.get("/v1/sessions/" + parent).json();
    assertThat(done.path("status").asText()).as("parent: %s", done).isEqualTo("completed");
    assertThat(done.path("result").asText()).isEqualTo("done");
    assertThat(done.path("turns").asInt()).as("parent's turns").isEqualTo(2);

    List<ToolCall> calls = toolCalls(api, parent);
    assertThat(calls).extracting(ToolCall::name).containsExactly("task", "task", "task");
    assertThat(calls)
        .extracting(ToolCall::results)
        .as("results per task call")
        .containsExactly(1, 1, 1);
    assertThat(calls)
        .extracting(ToolCall::isError)
        .as("isError per task call")
        .containsExactly(false, false, false);
    assertThat(calls)
        .extracting(ToolCall::content)
        .as("result per task call")
        .containsExactly("answer to alpha", "answer to beta", "answer to gamma");

    JsonNode listed = done.path("children");
    assertThat(listed).as("children of the parent: %s", listed).hasSize(3);
    for (int i = 0; i < 3; i++) {
      JsonNode c = listed.get(i);
      assertThat(c.path("id").asText()).isEqualTo(children.get(i));
      assertThat(c.path("toolUseId").asText()).isEqualTo(calls.get(i).id());
      assertThat(c.path("description").asText()).isEqualTo(DESCRIPTIONS.get(i));
      assertThat(c.path("status").asText())
          .as("status of child %s in the parent", c.path("id").asText())
          .isEqualTo("completed");
    }
    assertThat(children).doesNotHaveDuplicates();

    List<SseEvent> events =
        api.events("/v1/sessions/" + parent + "/events", WAIT, "Last-Event-ID", "0");
    List<SseEvent> started = ofType(events, "task.started");
    List<SseEvent> finished = ofType(events, "task.finished");
    assertThat(started).as("task.started events of the parent").hasSize(3);
    assertThat(finished).as("task.finished events of the parent").hasSize(3);
    assertThat(started)
        .extracting(e -> e.json().path("toolUseId").asText())
        .containsExactly(calls.get(0).id(), calls.get(1).id(), calls.get(2).id());
    assertThat(started)
        .extracting(e -> e.json().path("session").asText())
        .containsExactlyElementsOf(children);
    assertThat(started)
        .extracting(e -> e.json().path("description").asText())
        .containsExactlyElementsOf(DESCRIPTIONS);
    assertThat(finished)
        .extracting(e -> e.json().path("session").asText())
        .containsExactlyInAnyOrderElementsOf(children);
    assertThat(finished)
        .extracting(e -> e.json().path("status").asText())
        .containsOnly("completed");
    for (ToolCall c : calls) {
      assertThat(
              ofType(events, "tool.completed").stream()
                  .filter(e -> e.json().path("toolUseId").asText().equals(c.id())))
          .as("tool.completed of task call %s", c.id())
          .hasSize(1);
    }
    assertThat(ofType(events, "model.responded"))
        .extracting(e -> e.json().path("turn").asInt())
        .as("the parent's model.responded turns")
        .containsExactly(1, 2);
    assertThat(ofType(events, "session.completed")).hasSize(1);
    assertThat(events.get(events.size() - 1).event()).isEqualTo("session.completed");
  }

  private void checkChild(
      ApiClient api, String id, String parent, String prompt, Instant killedAt) {
    JsonNode child = api.get("/v1/sessions/" + id).json();
    assertThat(child.path("status").asText()).as("child %s: %s", id, child).isEqualTo("completed");
    assertThat(child.path("parent").asText()).isEqualTo(parent);
    assertThat(child.path("result").asText()).isEqualTo("answer to " + prompt);
    assertThat(child.path("turns").asInt()).as("turns of child %s", id).isEqualTo(CHILD_TURNS);
    assertThat(Instant.parse(child.path("updatedAt").asText()))
        .as("child %s, interrupted by the kill, finished after it", id)
        .isAfter(killedAt);

    List<ToolCall> calls = toolCalls(api, id);
    assertThat(calls)
        .extracting(ToolCall::name)
        .as("tool calls of child %s", id)
        .containsExactly("write", "write", "ls");
    assertThat(calls)
        .extracting(ToolCall::results)
        .as("results per tool call of child %s", id)
        .containsExactly(1, 1, 1);
    assertThat(calls)
        .extracting(ToolCall::isError)
        .as("isError per tool call of child %s", id)
        .containsExactly(false, false, false);
    assertThat(calls.get(2).content())
        .as("ls /session of child %s", id)
        .contains("one.md")
        .contains("two.md");

    List<SseEvent> events =
        api.events("/v1/sessions/" + id + "/events", WAIT, "Last-Event-ID", "0");
    assertThat(ofType(events, "model.responded"))
        .extracting(e -> e.json().path("turn").asInt())
        .as("model.responded turns of child %s", id)
        .containsExactlyElementsOf(IntStream.rangeClosed(1, CHILD_TURNS).boxed().toList());
    assertThat(ofType(events, "tool.completed"))
        .as("tool.completed events of child %s", id)
        .hasSize(3);
    assertThat(ofType(events, "session.started")).hasSize(1);
    assertThat(ofType(events, "session.completed")).hasSize(1);
    assertThat(events.get(events.size() - 1).event()).isEqualTo("session.completed");
  }

  /**
   * The parent's usage is its own model calls' plus each child's, once; so at least the children's
   * sum.
   */
  private void checkUsage(ApiClient api, String parent, List<String> children) {
    JsonNode usage = api.get("/v1/sessions/" + parent).json().path("usage");
    List<SseEvent> events =
        api.events("/v1/sessions/" + parent + "/events", WAIT, "Last-Event-ID", "0");
    for (String field : List.of("inputTokens", "outputTokens")) {
      long childrenSum = 0;
      for (String id : children)
        childrenSum += api.get("/v1/sessions/" + id).json().path("usage").path(field).asLong();
      long own =
          ofType(events, "model.responded").stream()
              .mapToLong(e -> e.json().path("usage").path(field).asLong())
              .sum();
      long reported =
          ofType(events, "task.finished").stream()
              .mapToLong(e -> e.json().path("usage").path(field).asLong())
              .sum();
      assertThat(childrenSum).as("children's %s", field).isPositive();
      assertThat(own).as("parent's own %s", field).isPositive();
      assertThat(reported)
          .as("%s the parent's task.finished events carry", field)
          .isEqualTo(childrenSum);
      assertThat(usage.path(field).asLong())
          .as("parent's %s", field)
          .isGreaterThanOrEqualTo(childrenSum)
          .isEqualTo(own + childrenSum);
    }
  }

  // ------------------------------------------------------------------ helpers

  private static Map<String, String> postgresEnv(
      TestPostgres postgres, String adminToken, Path dataDir) {
    int[] ports = Ports.free(3);
    Map<String, String> env = new HashMap<>();
    env.put("OUTBOARD_ALLOW_SCRIPTED", "true");
    env.put("OUTBOARD_ADMIN_TOKEN", adminToken);
    env.put("OUTBOARD_HTTP_PORT", Integer.toString(ports[0]));
    env.put("OUTBOARD_MANAGEMENT_PORT", Integer.toString(ports[1]));
    env.put("OUTBOARD_REMOTE_PORT", Integer.toString(ports[2]));
    env.put("OUTBOARD_DATA_DIR", dataDir.toString());
    env.put("OUTBOARD_DB_URL", postgres.url());
    env.put("OUTBOARD_DB_USER", postgres.user());
    env.put("OUTBOARD_DB_PASSWORD", "");
    return env;
  }

  /**
   * Polls the sessions list (never a session) until {@code id} is listed completed; the whole list
   * then.
   */
  private static Map<String, JsonNode> awaitListedCompleted(
      ApiClient api, String id, Duration timeout) {
    long deadline = System.nanoTime() + timeout.toNanos();
    Map<String, JsonNode> all;
    do {
      all = list(api);
      JsonNode s = all.get(id);
      assertThat(s).as("%s in the sessions list", id).isNotNull();
      String status = s.path("status").asText();
      assertThat(status).as("listed status of %s", id).isNotIn("failed", "cancelled");
      if (status.equals("completed")) return all;
      sleep(100);
    } while (System.nanoTime() < deadline);
    throw new AssertionError(
        id + " was not listed completed within " + timeout + "; listed: " + all);
  }

  private static Map<String, JsonNode> list(ApiClient api) {
    Response r = api.get("/v1/sessions?limit=100");
    assertThat(r.status()).as(r.toString()).isEqualTo(200);
    Map<String, JsonNode> out = new LinkedHashMap<>();
    r.json().path("sessions").forEach(s -> out.put(s.path("id").asText(), s));
    return out;
  }

  /** The latest start's log lines that say a session recovered. */
  private static List<String> recoveredLines(NodeProcess node) throws Exception {
    return node.log().lines().filter(l -> l.contains(") recovered at event")).toList();
  }

  private static List<SseEvent> ofType(List<SseEvent> events, String type) {
    return events.stream().filter(e -> e.event().equals(type)).toList();
  }

  private static List<Integer> turnsOf(Map<String, JsonNode> sessions) {
    List<Integer> out = new ArrayList<>();
    sessions.values().forEach(s -> out.add(s.path("turns").asInt()));
    return out;
  }

  private static long elapsedMs(long t0) {
    return (System.nanoTime() - t0) / 1_000_000;
  }

  private static void log(String format, Object... args) {
    System.err.printf("[subagent-crash-test] " + format + "%n", args);
  }
}
