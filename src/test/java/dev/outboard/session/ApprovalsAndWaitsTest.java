package dev.outboard.session;

import static dev.outboard.testing.ScriptedSessions.await;
import static dev.outboard.testing.ScriptedSessions.awaitStatus;
import static dev.outboard.testing.ScriptedSessions.body;
import static dev.outboard.testing.ScriptedSessions.call;
import static dev.outboard.testing.ScriptedSessions.create;
import static dev.outboard.testing.ScriptedSessions.say;
import static dev.outboard.testing.ScriptedSessions.toolCalls;
import static dev.outboard.testing.ScriptedSessions.tools;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Json;
import dev.outboard.ops.Metrics;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.SseEvent;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.ScriptedSessions.ToolCall;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Approvals and waits over the HTTP API of one embedded node: a call the policy names waits for a
 * decision while the turn's other calls run; allowed calls run, denied ones get the message as
 * their error; an event resolves a wait, an early one is kept, a wait times out on its deadline,
 * also after its session passivated; every bad request gets a clear 4xx.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ApprovalsAndWaitsTest {
  private static final Duration WAIT = Duration.ofSeconds(30);

  private InProcessNode node;
  private ApiClient admin;
  private ApiClient api;

  @BeforeAll
  void start() throws Exception {
    // Waiting sessions passivate quickly here, and due waits are looked for often.
    node =
        InProcessNode.start(
            null,
            Map.of(
                "outboard.session.passivate-after", "400ms",
                "outboard.waits.scan-interval", "200ms",
                "outboard.waits.max-timeout", "1h",
                "outboard.waits.max-queued-events", 3,
                "outboard.waits.max-payload-bytes", "4KiB"));
    admin = node.admin();
    api = node.client(admin.createOrgWithKey("approvals"));
  }

  @AfterAll
  void stop() {
    if (node != null) node.close();
  }

  private static Map<String, Object> withApprovals(
      Map<String, Object> body, List<String> approvals) {
    Map<String, Object> b = new java.util.LinkedHashMap<>(body);
    b.put("approvals", approvals);
    return b;
  }

  private ApiClient.Response decide(
      String session, String toolUseId, String decision, String message) {
    Map<String, Object> body = new java.util.LinkedHashMap<>();
    body.put("toolUseId", toolUseId);
    body.put("decision", decision);
    if (message != null) body.put("message", message);
    return api.post("/v1/sessions/" + session + "/approvals", body);
  }

  private static ToolCall named(List<ToolCall> calls, String name, String path) {
    return calls.stream()
        .filter(
            c ->
                c.name().equals(name)
                    && (path == null || c.input().path("path").asText().equals(path)))
        .findFirst()
        .orElseThrow(() -> new AssertionError("no " + name + " " + path + " in " + calls));
  }

  @Test
  void aCallThePolicyNamesWaitsForApprovalWhileTheTurnsOtherCallsRun() {
    String id =
        create(
            api,
            withApprovals(
                body(
                    "ann",
                    false,
                    List.of(
                        tools(
                            "two writes",
                            0,
                            call(
                                "write",
                                Map.of(
                                    "path", "/memory/deploy.md", "content", "deploy on fridays")),
                            call("write", Map.of("path", "/session/notes.md", "content", "asked"))),
                        tools("check", 0, call("read", Map.of("path", "/memory/deploy.md"))),
                        say("done"))),
                List.of("write /memory/**")));

    JsonNode held = awaitStatus(api, id, "requires_action", WAIT);
    assertThat(held.path("pendingApprovals")).hasSize(1);
    JsonNode pending = held.path("pendingApprovals").get(0);
    assertThat(pending.path("name").asText()).isEqualTo("write");
    assertThat(pending.path("turn").asInt()).isEqualTo(1);
    assertThat(pending.path("input").path("path").asText()).isEqualTo("/memory/deploy.md");
    String toolUseId = pending.path("toolUseId").asText();
    List<ToolCall> calls = toolCalls(api, id);
    assertThat(named(calls, "write", "/session/notes.md").results())
        .as("the call that needs no approval ran")
        .isEqualTo(1);
    assertThat(named(calls, "write", "/memory/deploy.md").results()).isZero();
    assertThat(api.get("/v1/files/memory/deploy.md").status())
        .as("nothing written before the decision")
        .isEqualTo(404);
    JsonNode listed = api.get("/v1/sessions?status=requires_action").json().path("sessions");
    assertThat(listed.findValuesAsText("id")).contains(id);

    assertThat(decide(id, "toolu_nope", "allow", null).status()).isEqualTo(404);
    assertThat(decide(id, toolUseId, "maybe", null).status()).isEqualTo(400);
    assertThat(api.post("/v1/sessions/" + id + "/approvals", Map.of("decision", "allow")).status())
        .isEqualTo(400);
    ApiClient.Response allowed = decide(id, toolUseId, "allow", "fine");
    assertThat(allowed.status()).as(allowed.toString()).isEqualTo(202);
    assertThat(decide(id, toolUseId, "allow", null).status()).as("decided twice").isEqualTo(409);
    assertThat(decide(id, named(calls, "write", "/session/notes.md").id(), "allow", null).status())
        .as("a call that needed no approval")
        .isEqualTo(409);

    awaitStatus(api, id, "completed", WAIT);
    calls = toolCalls(api, id);
    ToolCall write = named(calls, "write", "/memory/deploy.md");
    assertThat(write.results()).isEqualTo(1);
    assertThat(write.isError()).isFalse();
    assertThat(named(calls, "read", "/memory/deploy.md").content()).contains("deploy on fridays");
    assertThat(decide(id, toolUseId, "deny", null).status())
        .as("a decision on a finished session")
        .isEqualTo(409);

    List<SseEvent> events = api.events("/v1/sessions/" + id + "/events", WAIT);
    SseEvent requested =
        events.stream()
            .filter(e -> e.event().equals("approval.requested"))
            .findFirst()
            .orElseThrow();
    assertThat(requested.json().path("toolUseId").asText()).isEqualTo(toolUseId);
    assertThat(requested.json().path("input").path("content").asText())
        .isEqualTo("deploy on fridays");
    SseEvent decided =
        events.stream().filter(e -> e.event().equals("approval.decided")).findFirst().orElseThrow();
    assertThat(decided.json().path("decision").asText()).isEqualTo("allow");
    assertThat(decided.json().path("message").asText()).isEqualTo("fine");
  }

  @Test
  void theOrgsPolicyAppliesAndADeniedCallReachesTheModelAsAnErrorWithTheMessage() {
    String org = "strict";
    ApiClient strict = node.client(admin.createOrgWithKey(org));
    assertThat(admin.put("/v1/admin/orgs/" + org + "/policy", Map.of()).status()).isEqualTo(400);
    assertThat(
            admin
                .put("/v1/admin/orgs/" + org + "/policy", Map.of("approvals", List.of("bsh")))
                .body())
        .contains("unknown tool 'bsh'");
    assertThat(
            admin
                .put(
                    "/v1/admin/orgs/" + org + "/policy",
                    Map.of("approvals", List.of("write memory")))
                .status())
        .isEqualTo(400);
    assertThat(
            admin.put("/v1/admin/orgs/nobody/policy", Map.of("approvals", List.of("all"))).status())
        .isEqualTo(404);
    ApiClient.Response set =
        admin.put(
            "/v1/admin/orgs/" + org + "/policy",
            Map.of("approvals", List.of("edit", "write /session/**")));
    assertThat(set.status()).as(set.toString()).isEqualTo(200);
    JsonNode policy = admin.get("/v1/admin/orgs/" + org + "/policy").json();
    assertThat(policy.path("approvals").toString()).isEqualTo("[\"edit\",\"write /session/**\"]");
    assertThat(policy.path("agentsMayWriteSkills").asBoolean()).as("left as it was").isFalse();

    String id =
        create(
            strict,
            body(
                "bob",
                false,
                List.of(
                    tools(
                        "write",
                        0,
                        call("write", Map.of("path", "/session/plan.md", "content", "rm -rf"))),
                    tools("look", 0, call("read", Map.of("path", "/session/plan.md"))),
                    say("done"))));
    JsonNode held = awaitStatus(strict, id, "requires_action", WAIT);
    String toolUseId = held.path("pendingApprovals").get(0).path("toolUseId").asText();
    ApiClient.Response denied =
        strict.post(
            "/v1/sessions/" + id + "/approvals",
            Map.of("toolUseId", toolUseId, "decision", "deny", "message", "not in the plan today"));
    assertThat(denied.status()).isEqualTo(202);
    awaitStatus(strict, id, "completed", WAIT);
    List<ToolCall> calls = toolCalls(strict, id);
    ToolCall write = named(calls, "write", null);
    assertThat(write.isError()).isTrue();
    assertThat(write.content()).contains("denied").contains("not in the plan today");
    assertThat(named(calls, "read", null).content())
        .as("the denied write did not happen")
        .contains("not found");
    // Another org's sessions are not bound by this policy, nor can they decide on this one's calls.
    assertThat(
            api.post(
                    "/v1/sessions/" + id + "/approvals",
                    Map.of("toolUseId", toolUseId, "decision", "allow"))
                .status())
        .isEqualTo(404);
  }

  @Test
  void anEventResolvesItsWaitAndOneSentEarlyIsKeptForTheWait() {
    String id =
        create(
            api,
            body(
                "cid",
                false,
                List.of(
                    tools(
                        "slow",
                        1500,
                        call("write", Map.of("path", "/session/started.md", "content", "x"))),
                    tools(
                        "wait for ci",
                        0,
                        call("wait", Map.of("event", "ci.done", "timeoutSeconds", 60))),
                    tools(
                        "wait for review",
                        0,
                        call("wait", Map.of("event", "review", "timeoutSeconds", 60))),
                    say("done"))));
    ApiClient.Response early =
        api.post(
            "/v1/sessions/" + id + "/events/ci.done", Map.of("ok", true, "runs", List.of(1, 2)));
    assertThat(early.status()).as(early.toString()).isEqualTo(202);
    assertThat(early.json().path("queued").asBoolean()).isTrue();
    assertThat(early.json().path("toolUseId").isNull()).isTrue();

    JsonNode waiting =
        await(
            api,
            id,
            s ->
                s.path("status").asText().equals("waiting")
                    && s.path("waits").path(0).path("event").asText().equals("review"),
            WAIT,
            "waiting for review");
    Instant deadline = Instant.parse(waiting.path("waits").get(0).path("deadline").asText());
    assertThat(deadline).isBetween(Instant.now().plusSeconds(50), Instant.now().plusSeconds(61));
    assertThat(
            api.get("/v1/sessions?status=waiting").json().path("sessions").findValuesAsText("id"))
        .contains(id);
    List<ToolCall> calls = toolCalls(api, id);
    ToolCall ci =
        calls.stream()
            .filter(c -> c.input().path("event").asText().equals("ci.done"))
            .findFirst()
            .orElseThrow();
    assertThat(ci.isError()).isFalse();
    assertThat(parse(ci.content())).isEqualTo(parse("{\"ok\":true,\"runs\":[1,2]}"));

    String reviewCall = waiting.path("waits").get(0).path("toolUseId").asText();
    ApiClient.Response review =
        api.post("/v1/sessions/" + id + "/events/review", Map.of("lgtm", true));
    assertThat(review.status()).isEqualTo(202);
    assertThat(review.json().path("toolUseId").asText()).isEqualTo(reviewCall);
    assertThat(review.json().path("queued").asBoolean()).isFalse();
    awaitStatus(api, id, "completed", WAIT);
    ToolCall answered =
        toolCalls(api, id).stream()
            .filter(c -> c.id().equals(reviewCall))
            .findFirst()
            .orElseThrow();
    assertThat(answered.results()).isEqualTo(1);
    assertThat(parse(answered.content()).path("lgtm").asBoolean()).isTrue();

    List<SseEvent> events = api.events("/v1/sessions/" + id + "/events", WAIT);
    assertThat(events.stream().filter(e -> e.event().equals("wait.started")).count()).isEqualTo(2);
    assertThat(
            events.stream()
                .filter(e -> e.event().equals("event.received"))
                .map(e -> e.json().path("queued").asBoolean()))
        .containsExactly(true, false);
    assertThat(api.post("/v1/sessions/" + id + "/events/review", Map.of()).status())
        .as("a finished session")
        .isEqualTo(409);
  }

  @Test
  void aWaitTimesOutOnItsDeadlineEvenAfterItsSessionPassivated() {
    double recoveriesBefore = Metrics.SESSION_RECOVERIES.get();
    String id =
        create(
            api,
            body(
                "tim",
                false,
                List.of(
                    tools("wait", 0, call("wait", Map.of("event", "never", "timeoutSeconds", 3))),
                    tools(
                        "bad waits",
                        0,
                        call("wait", Map.of("event", "x", "timeoutSeconds", 0)),
                        call("wait", Map.of("event", "x", "timeoutSeconds", 7200)),
                        call("wait", Map.of("event", "no spaces", "timeoutSeconds", 5))),
                    say("done"))));
    JsonNode waiting = awaitStatus(api, id, "waiting", WAIT);
    Instant deadline = Instant.parse(waiting.path("waits").get(0).path("deadline").asText());
    // No request touches the session now: it passivates (400 ms), and only its deadline wakes it.
    long start = System.nanoTime();
    while (Metrics.SESSION_RECOVERIES.get() == recoveriesBefore
        && System.nanoTime() - start < WAIT.toNanos()) {
      dev.outboard.testing.ScriptedSessions.sleep(100);
    }
    JsonNode done = awaitStatus(api, id, "completed", WAIT);
    assertThat(Metrics.SESSION_RECOVERIES.get())
        .as("the session passivated and was woken")
        .isGreaterThan(recoveriesBefore);
    List<ToolCall> calls = toolCalls(api, id);
    ToolCall timedOut = calls.get(0);
    assertThat(timedOut.results()).isEqualTo(1);
    assertThat(timedOut.isError()).isTrue();
    assertThat(timedOut.content()).contains("timed out").contains("'never'").contains("3 s");
    assertThat(Instant.parse(done.path("updatedAt").asText())).isAfterOrEqualTo(deadline);
    assertThat(calls.get(1).content()).contains("timeoutSeconds").contains("at least 1");
    assertThat(calls.get(2).content()).contains("at most 3600");
    assertThat(calls.get(3).content()).contains("argument 'event'");
    assertThat(calls.subList(1, 4)).allMatch(ToolCall::isError);
  }

  @Test
  void badEventsGetClearErrorsAndTheKeptEventsAreBounded() {
    String id = create(api, body("eve", true, List.of(say("ready"))));
    awaitStatus(api, id, "waiting", WAIT);
    String events = "/v1/sessions/" + id + "/events/";
    assertThat(api.postRaw(events + "bad%20name", "{}").status()).isEqualTo(400);
    assertThat(api.postRaw(events + "ok", "{not json").body()).contains("not valid JSON");
    assertThat(api.postRaw(events + "ok", "").status()).isEqualTo(400);
    assertThat(api.postRaw(events + "ok", "{\"a\": \"" + "x".repeat(5000) + "\"}").status())
        .isEqualTo(413);
    assertThat(api.postRaw("/v1/sessions/s_nosuch/events/ok", "{}").status()).isEqualTo(404);
    // A keepOpen session waiting for its next message keeps events for a later turn's wait, up to
    // the bound.
    for (int i = 0; i < 3; i++)
      assertThat(api.postRaw(events + "ok", "[" + i + "]").status()).isEqualTo(202);
    ApiClient.Response full = api.postRaw(events + "ok", "[3]");
    assertThat(full.status()).isEqualTo(409);
    assertThat(full.body()).contains("3 events are kept");
    assertThat(
            api.post(
                    "/v1/sessions",
                    withApprovals(body("x", false, List.of(say("hi"))), List.of("rm -rf /")))
                .status())
        .isEqualTo(400);
  }

  private static JsonNode parse(String json) {
    try {
      return Json.MAPPER.readTree(json);
    } catch (Exception e) {
      throw new AssertionError("not JSON: " + json, e);
    }
  }
}
