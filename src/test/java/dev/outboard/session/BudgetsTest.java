package dev.outboard.session;

import static dev.outboard.testing.ScriptedSessions.awaitStatus;
import static dev.outboard.testing.ScriptedSessions.body;
import static dev.outboard.testing.ScriptedSessions.call;
import static dev.outboard.testing.ScriptedSessions.create;
import static dev.outboard.testing.ScriptedSessions.say;
import static dev.outboard.testing.ScriptedSessions.tools;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.SseEvent;
import dev.outboard.testing.InProcessNode;
import java.time.Duration;
import java.time.LocalDate;
import java.time.ZoneOffset;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Budgets, daily usage and the todo list over the HTTP API of one embedded node: a session's own
 * token budget fails it ({@code budget_exceeded}) or pauses it ({@code requires_action}) until it
 * is raised; an org's budget applies to its sessions; usage is totalled per org and day; the {@code
 * /session/todo.md} checklist shows on the session.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class BudgetsTest {
  private static final Duration WAIT = Duration.ofSeconds(30);

  private InProcessNode node;
  private ApiClient admin;
  private ApiClient api;

  @BeforeAll
  void start() throws Exception {
    node = InProcessNode.start(null, Map.of("outboard.usage.flush-interval", "100ms"));
    admin = node.admin();
    api = node.client(admin.createOrgWithKey("budgets"));
  }

  @AfterAll
  void stop() {
    if (node != null) node.close();
  }

  private static final List<Map<String, Object>> THREE_TURNS =
      List.of(
          tools("one", 0, call("ls", Map.of("path", "/session"))),
          tools("two", 0, call("ls", Map.of("path", "/session"))),
          say("three"));

  private static Map<String, Object> withBudget(
      Map<String, Object> body, Map<String, Object> budget) {
    Map<String, Object> b = new LinkedHashMap<>(body);
    b.put("budget", budget);
    return b;
  }

  private static List<String> types(List<SseEvent> events) {
    return events.stream().map(SseEvent::event).toList();
  }

  @Test
  void reachingItsTokenBudgetFailsASession() {
    String id = create(api, withBudget(body("fay", false, THREE_TURNS), Map.of("maxTokens", 10)));
    JsonNode failed = awaitStatus(api, id, "failed", WAIT);
    assertThat(failed.path("error").path("code").asText()).isEqualTo("budget_exceeded");
    assertThat(failed.path("error").path("message").asText()).contains("10 tokens");
    assertThat(failed.path("turns").asInt())
        .as("the first turn ran, the second did not")
        .isEqualTo(1);
    List<SseEvent> events = api.events("/v1/sessions/" + id + "/events", WAIT);
    SseEvent exceeded =
        events.stream().filter(e -> e.event().equals("budget.exceeded")).findFirst().orElseThrow();
    assertThat(exceeded.json().path("kind").asText()).isEqualTo("tokens");
    assertThat(exceeded.json().path("action").asText()).isEqualTo("fail");
    assertThat(types(events)).endsWith("budget.exceeded", "session.failed");
  }

  @Test
  void aPausedSessionGoesOnOnceItsBudgetIsRaised() {
    String id =
        create(
            api,
            withBudget(
                body("pia", false, THREE_TURNS), Map.of("maxTokens", 10, "onExceeded", "pause")));
    JsonNode paused = awaitStatus(api, id, "requires_action", WAIT);
    assertThat(paused.path("budget").path("exceeded").asText()).isEqualTo("tokens");
    assertThat(paused.path("budget").path("limit").asLong()).isEqualTo(10);
    long used = paused.path("budget").path("used").asLong();
    assertThat(used).isGreaterThanOrEqualTo(10);
    String budget = "/v1/sessions/" + id + "/budget";
    assertThat(api.post(budget, Map.of("maxTokens", used)).status())
        .as("not above what it used")
        .isEqualTo(409);
    assertThat(api.post(budget, Map.of()).status()).isEqualTo(400);
    assertThat(api.post(budget, Map.of("maxTokens", -1)).status()).isEqualTo(400);
    assertThat(api.post(budget, Map.of("maxTokens", 1_000_000)).status()).isEqualTo(202);
    JsonNode done = awaitStatus(api, id, "completed", WAIT);
    assertThat(done.path("turns").asInt()).isEqualTo(3);
    assertThat(done.has("budget")).isFalse();
    assertThat(types(api.events("/v1/sessions/" + id + "/events", WAIT)))
        .contains("budget.exceeded", "budget.raised");
    assertThat(api.post(budget, Map.of("maxTokens", 2_000_000)).status())
        .as("a finished session")
        .isEqualTo(409);
    assertThat(
            api.post(
                    "/v1/sessions",
                    withBudget(body("x", false, THREE_TURNS), Map.of("onExceeded", "explode")))
                .status())
        .isEqualTo(400);
  }

  @Test
  void anOrgsBudgetAppliesToItsSessionsAndTurnBudgetsPauseToo() {
    ApiClient thrifty = node.client(admin.createOrgWithKey("thrifty"));
    assertThat(
            admin
                .put("/v1/admin/orgs/thrifty/policy", Map.of("budget", Map.of("maxTurns", 0)))
                .status())
        .isEqualTo(400);
    assertThat(
            admin
                .put("/v1/admin/orgs/thrifty/policy", Map.of("budget", Map.of("maxTurns", 1)))
                .status())
        .isEqualTo(200);
    assertThat(
            admin
                .get("/v1/admin/orgs/thrifty/policy")
                .json()
                .path("budget")
                .path("maxTurns")
                .asInt())
        .isEqualTo(1);
    String capped = create(thrifty, body("org", false, THREE_TURNS));
    JsonNode failed = awaitStatus(thrifty, capped, "failed", WAIT);
    assertThat(failed.path("error").path("code").asText()).isEqualTo("budget_exceeded");
    assertThat(failed.path("turns").asInt()).isEqualTo(1);

    // The session's own maxTurns pauses when its budget says so, and goes on with more turns.
    Map<String, Object> pausing =
        withBudget(body("turns", false, THREE_TURNS), Map.of("onExceeded", "pause"));
    pausing.put("maxTurns", 1);
    assertThat(admin.put("/v1/admin/orgs/thrifty/policy", Map.of("budget", Map.of())).status())
        .as("budget removed")
        .isEqualTo(200);
    String paused = create(thrifty, pausing);
    JsonNode held = awaitStatus(thrifty, paused, "requires_action", WAIT);
    assertThat(held.path("budget").path("exceeded").asText()).isEqualTo("turns");
    assertThat(thrifty.post("/v1/sessions/" + paused + "/budget", Map.of("maxTurns", 5)).status())
        .isEqualTo(202);
    assertThat(awaitStatus(thrifty, paused, "completed", WAIT).path("turns").asInt()).isEqualTo(3);
  }

  @Test
  void usageIsTotalledPerOrgAndDay() {
    ApiClient counted = node.client(admin.createOrgWithKey("counted"));
    String id = create(counted, body("u", false, THREE_TURNS));
    JsonNode done = awaitStatus(counted, id, "completed", WAIT);
    JsonNode report = counted.get("/v1/usage").json();
    assertThat(report.path("org").asText()).isEqualTo("counted");
    JsonNode today = report.path("days").get(0);
    assertThat(today.path("date").asText()).isEqualTo(LocalDate.now(ZoneOffset.UTC).toString());
    assertThat(today.path("turns").asLong()).isEqualTo(3);
    assertThat(today.path("inputTokens").asLong())
        .isEqualTo(done.path("usage").path("inputTokens").asLong());
    assertThat(today.path("outputTokens").asLong())
        .isEqualTo(done.path("usage").path("outputTokens").asLong());
    assertThat(counted.get("/v1/usage?from=2020-01-01&to=2020-01-31").json().path("days"))
        .isEmpty();
    assertThat(counted.get("/v1/usage?from=yesterday").status()).isEqualTo(400);
    assertThat(counted.get("/v1/usage?from=2026-02-01&to=2026-01-01").status()).isEqualTo(400);
  }

  @Test
  void theTodoChecklistShowsOnTheSession() {
    String id =
        create(
            api,
            body(
                "tod",
                true,
                List.of(
                    tools(
                        "planning",
                        0,
                        call(
                            "write",
                            Map.of(
                                "path",
                                "/session/todo.md",
                                "content",
                                "# Plan\n"
                                    + "- [x] read the ticket\n"
                                    + "- [ ] fix the bug\n"
                                    + "notes\n"
                                    + "* [ ] ship it\n"))),
                    say("planned"))));
    JsonNode waiting = awaitStatus(api, id, "waiting", WAIT);
    assertThat(waiting.path("todo")).hasSize(3);
    assertThat(waiting.path("todo").get(0).path("text").asText()).isEqualTo("read the ticket");
    assertThat(waiting.path("todo").get(0).path("done").asBoolean()).isTrue();
    assertThat(waiting.path("todo").get(1).path("done").asBoolean()).isFalse();
    assertThat(waiting.path("todo").get(2).path("text").asText()).isEqualTo("ship it");
  }
}
