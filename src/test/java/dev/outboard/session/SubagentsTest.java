package dev.outboard.session;

import static dev.outboard.testing.ScriptedSessions.await;
import static dev.outboard.testing.ScriptedSessions.awaitStatus;
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
import dev.outboard.testing.ScriptedSessions.ToolCall;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Subagents over the HTTP API of one embedded node (max-depth 1): parallel {@code task} calls start
 * child sessions of the same org whose final texts are the calls' results, the API links parent and
 * children, usage adds up, a child cannot start children at the deepest level nor use tools it was
 * not given, and cancelling the parent cancels its children.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class SubagentsTest {
  private static final Duration WAIT = Duration.ofSeconds(30);

  private InProcessNode node;
  private ApiClient api;

  @BeforeAll
  void start() throws Exception {
    node = InProcessNode.start(null, Map.of("outboard.subagents.max-depth", 1));
    api = node.client(node.admin().createOrgWithKey("subagents"));
  }

  @AfterAll
  void stop() {
    if (node != null) node.close();
  }

  private static Map<String, Object> task(String description, String prompt, List<String> tools) {
    Map<String, Object> input =
        new LinkedHashMap<>(Map.of("description", description, "prompt", prompt));
    if (tools != null) input.put("tools", tools);
    return call("task", input);
  }

  /** A scripted parent playing {@code turns} whose subagents each play {@code childTurns}. */
  private static Map<String, Object> parent(
      List<Map<String, Object>> turns, List<Map<String, Object>> childTurns) {
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("prompt", "split the work");
    body.put("user", "pat");
    body.put(
        "model", Map.of("provider", "scripted", "script", turns, "subagentScript", childTurns));
    return body;
  }

  @Test
  void parallelTasksRunAsChildSessionsWhoseAnswersAreTheResults() {
    String id =
        create(
            api,
            parent(
                List.of(
                    tools(
                        "three at once",
                        0,
                        task("first", "alpha", null),
                        task("second", "beta", null),
                        task("third", "gamma", null)),
                    say("all done")),
                List.of(
                    tools(
                        "noting",
                        300,
                        call("write", Map.of("path", "/session/notes.md", "content", "mine"))),
                    tools("deeper", 0, task("grandchild", "too deep", null)),
                    say("answer to ${prompt}"))));
    JsonNode done = awaitStatus(api, id, "completed", WAIT);

    List<ToolCall> calls = toolCalls(api, id);
    assertThat(calls).extracting(ToolCall::name).containsExactly("task", "task", "task");
    assertThat(calls)
        .extracting(ToolCall::content)
        .containsExactly("answer to alpha", "answer to beta", "answer to gamma");
    assertThat(calls)
        .allSatisfy(
            c -> {
              assertThat(c.results()).isEqualTo(1);
              assertThat(c.isError()).isFalse();
            });
    JsonNode children = done.path("children");
    assertThat(children).hasSize(3);
    long childInput = 0;
    for (JsonNode c : children) {
      assertThat(c.path("status").asText()).isEqualTo("completed");
      JsonNode child = api.get("/v1/sessions/" + c.path("id").asText()).json();
      assertThat(child.path("parent").asText()).isEqualTo(id);
      assertThat(child.path("org").asText()).isEqualTo("subagents");
      assertThat(child.path("user").asText()).isEqualTo("pat");
      assertThat(child.path("status").asText()).isEqualTo("completed");
      childInput += child.path("usage").path("inputTokens").asLong();
      // Each child has its own /session; the deepest level may not start subagents.
      List<ToolCall> own = toolCalls(api, c.path("id").asText());
      assertThat(own.get(0).content()).contains("wrote /session/notes.md");
      assertThat(own.get(1).isError()).isTrue();
      assertThat(own.get(1).content()).contains("cannot start subagents");
    }
    assertThat(done.path("usage").path("inputTokens").asLong())
        .as("the children's usage adds to the parent's")
        .isGreaterThan(childInput);

    List<SseEvent> events = api.events("/v1/sessions/" + id + "/events", WAIT);
    assertThat(
            events.stream()
                .filter(e -> e.event().equals("task.started"))
                .map(e -> e.json().path("description").asText()))
        .containsExactly("first", "second", "third");
    assertThat(
            events.stream()
                .filter(e -> e.event().equals("task.finished"))
                .map(e -> e.json().path("status").asText()))
        .containsExactly("completed", "completed", "completed");
    List<String> listed =
        api.get("/v1/sessions?user=pat&limit=100").json().path("sessions").findValuesAsText("id");
    assertThat(listed).contains(id).containsAll(children.findValuesAsText("id"));
  }

  @Test
  void aChildUsesOnlyTheToolsItWasGiven() {
    String id =
        create(
            api,
            parent(
                List.of(
                    tools("", 0, task("reader", "look only", List.of("read", "ls"))), say("ok")),
                List.of(
                    tools(
                        "",
                        0,
                        call("write", Map.of("path", "/session/x", "content", "no")),
                        call("ls", Map.of("path", "/session"))),
                    say("looked"))));
    JsonNode done = awaitStatus(api, id, "completed", WAIT);
    String child = done.path("children").get(0).path("id").asText();
    List<ToolCall> own = toolCalls(api, child);
    assertThat(own.get(0).isError()).isTrue();
    assertThat(own.get(0).content()).contains("tool 'write' is not available").contains("read, ls");
    assertThat(own.get(1).isError()).isFalse();
    assertThat(toolCalls(api, id).get(0).content()).isEqualTo("looked");
    // A task naming a tool that does not exist is refused before any child starts.
    String bad =
        create(
            api,
            parent(
                List.of(tools("", 0, task("x", "y", List.of("teleport"))), say("ok")),
                List.of(say("never"))));
    JsonNode badDone = awaitStatus(api, bad, "completed", WAIT);
    assertThat(badDone.path("children")).isEmpty();
    assertThat(toolCalls(api, bad).get(0).content()).contains("unknown tool 'teleport'");
  }

  @Test
  void cancellingTheParentCancelsItsChildren() {
    String id =
        create(
            api,
            parent(
                List.of(tools("", 0, task("slow", "take your time", null)), say("never")),
                List.of(tools("", 60_000, call("ls", Map.of("path", "/session"))), say("late"))));
    JsonNode running = await(api, id, s -> s.path("children").size() == 1, WAIT, "with its child");
    String child = running.path("children").get(0).path("id").asText();
    // The child is listed by its parent as it is asked to start; its own GET answers once it has.
    long deadline = System.nanoTime() + WAIT.toNanos();
    while (api.get("/v1/sessions/" + child).status() == 404 && System.nanoTime() < deadline) {
      dev.outboard.testing.ScriptedSessions.sleep(20);
    }
    await(api, child, s -> s.path("status").asText().equals("running"), WAIT, "child running");
    assertThat(api.post("/v1/sessions/" + id + "/cancel", Map.of()).status()).isEqualTo(202);
    awaitStatus(api, child, "cancelled", WAIT);
    JsonNode parent = api.get("/v1/sessions/" + id).json();
    assertThat(parent.path("status").asText()).isEqualTo("cancelled");
    assertThat(parent.path("children").get(0).path("status").asText()).isEqualTo("cancelled");
  }
}
