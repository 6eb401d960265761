package dev.outboard.model;

import static dev.outboard.testing.ScriptedSessions.awaitStatus;
import static dev.outboard.testing.ScriptedSessions.call;
import static dev.outboard.testing.ScriptedSessions.say;
import static dev.outboard.testing.ScriptedSessions.tools;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Json;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.SseEvent;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.ScriptedSessions;
import dev.outboard.testing.ScriptedSessions.ToolCall;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Compaction on one embedded node whose models have a small context window (8,000 tokens,
 * compacting past half of it): with the scripted model, and against the Anthropic wire server,
 * whose every request is checked against the documented shape. Before a call that would pass the
 * threshold the older part is summarised (a request without tools), the next requests are back
 * under the limit, the transcript API still has everything with {@code ?full=true}, the agent can
 * read the replaced part in {@code /session/history}, and a long tool result is stored in {@code
 * /session/results} with a pointer in the prompt.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class CompactionTest {
  private static final String KEY = "sk-ant-test-FAKE-KEY-compaction-123456";
  private static final Duration WAIT = Duration.ofSeconds(60);
  private static final long WINDOW = 8_000;
  private static final int KEEP = 4;

  private AnthropicWire wire;
  private InProcessNode node;
  private ApiClient api;

  @BeforeAll
  void start() throws Exception {
    wire = new AnthropicWire(KEY);
    Map<String, Object> overrides = new LinkedHashMap<>();
    overrides.put("outboard.model.anthropic.base-url", wire.baseUrl());
    overrides.put("outboard.model.anthropic.api-key", KEY);
    overrides.put("outboard.model.request-timeout", "10s");
    overrides.put("outboard.compaction.default-context-window", WINDOW);
    overrides.put("outboard.compaction.threshold", 0.5);
    overrides.put("outboard.compaction.keep-messages", KEEP);
    overrides.put("outboard.compaction.max-tool-result-chars", 3000);
    node = InProcessNode.start(null, overrides);
    api = node.client(node.admin().createOrgWithKey("compaction"));
  }

  @AfterAll
  void stop() {
    if (node != null) node.close();
    if (wire != null) wire.close();
  }

  private static String note(int i) {
    return ("note " + i + ": ").repeat(60); // about 500 characters
  }

  @Test
  void aLongScriptedSessionIsCompactedAndKeepsItsWholeHistory() {
    List<Map<String, Object>> turns = new ArrayList<>();
    for (int i = 0; i < 30; i++) {
      turns.add(
          tools(
              "turn " + i,
              0,
              call("write", Map.of("path", "/session/n" + i + ".md", "content", note(i)))));
    }
    turns.add(
        tools(
            "big",
            0,
            call("write", Map.of("path", "/session/big.md", "content", "B".repeat(5000)))));
    turns.add(tools("read big", 0, call("read", Map.of("path", "/session/big.md"))));
    turns.add(tools("history", 0, call("read", Map.of("path", "/session/history/001.md"))));
    turns.add(say("done"));
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("prompt", "write thirty notes");
    body.put("model", Map.of("provider", "scripted", "script", turns));
    String id = ScriptedSessions.create(api, body);
    awaitStatus(api, id, "completed", WAIT);

    List<SseEvent> events = api.events("/v1/sessions/" + id + "/events", WAIT);
    List<SseEvent> compactions =
        events.stream().filter(e -> e.event().equals("transcript.compacted")).toList();
    assertThat(compactions).as("compactions").isNotEmpty();
    assertThat(compactions.get(0).json().path("historyPath").asText())
        .isEqualTo("/session/history/001.md");
    assertThat(compactions.get(0).json().has("history")).isFalse();

    JsonNode compacted = api.get("/v1/sessions/" + id + "/transcript").json().path("messages");
    JsonNode full = api.get("/v1/sessions/" + id + "/transcript?full=true").json().path("messages");
    assertThat(compacted.get(0).path("content").get(0).path("text").asText())
        .startsWith("[Summary of the conversation");
    assertThat(full.size()).as("every message: the prompt, 34 answers, 33 results").isEqualTo(68);
    assertThat(compacted.size()).isLessThan(full.size());
    assertThat(full.get(0).path("content").get(0).path("text").asText())
        .isEqualTo("write thirty notes");
    assertThat(api.get("/v1/sessions/" + id + "/transcript?full=maybe").status()).isEqualTo(400);

    List<ToolCall> calls = toolCalls(full);
    assertThat(calls).hasSize(33).allSatisfy(c -> assertThat(c.results()).isEqualTo(1));
    ToolCall readBig = calls.get(31);
    assertThat(readBig.content())
        .startsWith("[this result is")
        .contains("/session/results/" + readBig.id() + ".txt");
    assertThat(readBig.content().length()).isLessThan(3000);
    assertThat(calls.get(32).content())
        .as("the agent reads the replaced part")
        .contains("/session/n0.md")
        .contains("note 0:");
  }

  @Test
  void anthropicRequestsStayUnderTheLimitOnceTheOlderPartIsSummarised() {
    AtomicInteger turns = new AtomicInteger();
    List<Integer> sizes = new ArrayList<>();
    wire.fallback(
        req -> {
          synchronized (sizes) {
            sizes.add(req.toString().length());
          }
          if (!req.has("tools") || req.path("tools").isEmpty()) {
            return AnthropicWire.message(
                req, List.of(AnthropicWire.text("SUMMARY: notes were written")), "end_turn");
          }
          int n = turns.incrementAndGet();
          if (n > 24)
            return AnthropicWire.message(
                req, List.of(AnthropicWire.text("all written")), "end_turn");
          return AnthropicWire.message(
              req,
              List.of(
                  AnthropicWire.toolUse(
                      "toolu_" + n,
                      "write",
                      Json.MAPPER.valueToTree(
                          Map.of("path", "/session/w" + n + ".md", "content", note(n))))),
              "tool_use");
        });
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("prompt", "write many notes");
    body.put("model", Map.of("provider", "anthropic", "name", "claude-small"));
    String id = ScriptedSessions.create(api, body);
    JsonNode done = awaitStatus(api, id, "completed", WAIT);
    assertThat(done.path("result").asText()).isEqualTo("all written");
    assertThat(wire.violations()).as("every request had the documented shape").isEmpty();

    List<AnthropicWire.Recorded> requests = wire.requests();
    List<Integer> summaries = new ArrayList<>();
    for (int i = 0; i < requests.size(); i++) {
      JsonNode r = requests.get(i).body();
      if (!r.has("tools") || r.path("tools").isEmpty()) summaries.add(i);
    }
    assertThat(summaries).as("summary requests").isNotEmpty();
    int limitChars = (int) (WINDOW * 4);
    for (int i = 0; i < requests.size(); i++) {
      assertThat(requests.get(i).body().toString().length())
          .as("request %d's size (characters)", i)
          .isLessThan(limitChars);
    }
    int first = summaries.get(0);
    int before = requests.get(first - 1).body().toString().length();
    int after = requests.get(first + 1).body().toString().length();
    assertThat(after)
        .as("the request after the summary is smaller than the one before")
        .isLessThan(before);
    assertThat(requests.get(first + 1).body().path("messages").get(0).toString())
        .contains("SUMMARY: notes were written");
    // The transcript API still has every turn.
    JsonNode full = api.get("/v1/sessions/" + id + "/transcript?full=true").json().path("messages");
    assertThat(toolCalls(full)).hasSize(24).allSatisfy(c -> assertThat(c.results()).isEqualTo(1));
    wire.reset();
  }

  private static List<ToolCall> toolCalls(JsonNode messages) {
    List<JsonNode> uses = new ArrayList<>();
    Map<String, JsonNode> results = new LinkedHashMap<>();
    Map<String, Integer> counts = new LinkedHashMap<>();
    for (JsonNode m : messages) {
      for (JsonNode b : m.path("content")) {
        if (b.path("type").asText().equals("tool_use")) uses.add(b);
        if (b.path("type").asText().equals("tool_result")) {
          results.put(b.path("toolUseId").asText(), b);
          counts.merge(b.path("toolUseId").asText(), 1, Integer::sum);
        }
      }
    }
    List<ToolCall> out = new ArrayList<>();
    for (JsonNode u : uses) {
      String id = u.path("id").asText();
      JsonNode res = results.get(id);
      out.add(
          new ToolCall(
              id,
              u.path("name").asText(),
              u.path("input"),
              res == null ? null : res.path("content").asText(),
              res == null ? null : res.path("isError").asBoolean(),
              counts.getOrDefault(id, 0)));
    }
    return out;
  }
}
