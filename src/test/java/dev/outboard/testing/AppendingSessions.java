package dev.outboard.testing;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.testing.ApiClient.Response;
import dev.outboard.testing.ApiClient.SseEvent;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

/**
 * The scripted sessions of the crash and rolling-deploy tests, and the checks that each ran exactly
 * its turns. A session of {@code turns} turns: turns 1..turns-2 each write {@code
 * /session/turn-i.md}, append "line i" to {@code /session/log.md} by an edit before a marker and
 * read the previous turn's file; turn turns-1 reads the log; the last turn ends the session with
 * "done". After any crash or hand-off the session must show each turn once, each tool call with
 * exactly one result, the log holding each line once and in order, and an event history that
 * replays complete and ordered.
 */
public final class AppendingSessions {
  private static final String MARKER = "<<end of log>>";

  private final int turns;
  private final long latencyMs;

  public AppendingSessions(int turns, long latencyMs) {
    if (turns < 3) throw new IllegalArgumentException("at least 3 turns");
    this.turns = turns;
    this.latencyMs = latencyMs;
  }

  public int turns() {
    return turns;
  }

  private int logLines() {
    return turns - 2;
  }

  /** The create body of session number {@code n}. */
  public Map<String, Object> body(String user, int n) {
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("prompt", user + " session " + n);
    body.put("user", user);
    body.put("maxTurns", turns + 10);
    body.put("model", Map.of("provider", "scripted", "script", script()));
    return body;
  }

  public List<Map<String, Object>> script() {
    List<Map<String, Object>> script = new ArrayList<>();
    for (int i = 1; i <= logLines(); i++) {
      List<Map<String, Object>> calls = new ArrayList<>();
      if (i == 1)
        calls.add(
            ScriptedSessions.call(
                "write", Map.of("path", "/session/log.md", "content", "START\n" + MARKER)));
      calls.add(
          ScriptedSessions.call(
              "write", Map.of("path", "/session/turn-" + i + ".md", "content", "turn " + i)));
      calls.add(
          ScriptedSessions.call(
              "edit",
              Map.of(
                  "path",
                  "/session/log.md",
                  "old_string",
                  MARKER,
                  "new_string",
                  "line " + i + "\n" + MARKER)));
      if (i > 1)
        calls.add(
            ScriptedSessions.call("read", Map.of("path", "/session/turn-" + (i - 1) + ".md")));
      script.add(Map.of("text", "turn " + i, "toolCalls", calls, "latencyMs", latencyMs));
    }
    script.add(
        Map.of(
            "text",
            "turn " + (turns - 1),
            "toolCalls",
            List.of(ScriptedSessions.call("read", Map.of("path", "/session/log.md"))),
            "latencyMs",
            latencyMs));
    script.add(Map.of("text", "done", "latencyMs", latencyMs));
    return script;
  }

  private int toolCallsInScript() {
    return script().stream()
        .mapToInt(t -> ((List<?>) t.getOrDefault("toolCalls", List.of())).size())
        .sum();
  }

  /** Checks the summary, transcript and replayed events of a completed session. */
  public void check(ApiClient api, String id) {
    Response got = api.get("/v1/sessions/" + id);
    assertThat(got.status()).as(got.toString()).isEqualTo(200);
    JsonNode summary = got.json();
    assertThat(summary.path("status").asText()).as(id).isEqualTo("completed");
    assertThat(summary.path("turns").asInt()).as("turns of " + id).isEqualTo(turns);
    assertThat(summary.path("result").asText()).as(id).isEqualTo("done");
    assertThat(summary.path("error").isNull() || summary.path("error").isMissingNode())
        .as("error of " + id)
        .isTrue();

    checkTranscript(id, api.get("/v1/sessions/" + id + "/transcript").json());
    checkEvents(
        id,
        api.events("/v1/sessions/" + id + "/events", Duration.ofSeconds(30), "Last-Event-ID", "0"));
  }

  private void checkTranscript(String id, JsonNode transcript) {
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
            assertThat(previous)
                .as("tool_use id %s of %s recorded twice", b.path("id").asText(), id)
                .isNull();
          }
          case "tool_result" -> {
            assertThat(role).isEqualTo("user");
            String useId = b.path("toolUseId").asText();
            resultCounts.merge(useId, 1, Integer::sum);
            results.put(useId, b);
            assertThat(b.path("isError").asBoolean())
                .as("tool result %s of %s: %s", useId, id, b.path("content").asText())
                .isFalse();
          }
          default -> throw new AssertionError("unknown block in " + id + ": " + b);
        }
      }
    }
    List<String> expectedTexts =
        IntStream.rangeClosed(1, turns - 1).mapToObj(i -> "turn " + i).collect(Collectors.toList());
    expectedTexts.add("done");
    assertThat(assistantTexts)
        .as("assistant turns of " + id + ", each exactly once, in order")
        .isEqualTo(expectedTexts);
    assertThat(transcript.path("messages"))
        .as("messages of " + id)
        .hasSize(1 + turns + (turns - 1));
    assertThat(toolUses).as("tool calls of " + id).hasSize(toolCallsInScript());
    assertThat(resultCounts)
        .as("tool results of " + id + " (exactly one per tool call)")
        .isEqualTo(toolUses.keySet().stream().collect(Collectors.toMap(k -> k, k -> 1)));

    // Each turn read the file the turn before wrote.
    for (Map.Entry<String, JsonNode> use : toolUses.entrySet()) {
      JsonNode input = use.getValue().path("input");
      String path = input.path("path").asText();
      if (use.getValue().path("name").asText().equals("read")
          && path.startsWith("/session/turn-")) {
        String n = path.substring("/session/turn-".length(), path.length() - ".md".length());
        assertThat(results.get(use.getKey()).path("content").asText().strip())
            .as("%s: read %s", id, path)
            .isEqualTo("1\tturn " + n);
      }
    }

    // The next-to-last turn read /session/log.md: START, each line once in order, the marker.
    JsonNode logRead =
        results.get(
            toolUses.entrySet().stream()
                .filter(
                    e ->
                        e.getValue().path("input").path("path").asText().equals("/session/log.md")
                            && e.getValue().path("name").asText().equals("read"))
                .map(Map.Entry::getKey)
                .findFirst()
                .orElseThrow());
    List<String> expectedLog = new ArrayList<>();
    expectedLog.add("START");
    for (int i = 1; i <= logLines(); i++) expectedLog.add("line " + i);
    expectedLog.add(MARKER);
    List<String> numbered = logRead.path("content").asText().lines().toList();
    assertThat(numbered).as("/session/log.md of " + id).hasSize(expectedLog.size());
    for (int i = 0; i < numbered.size(); i++) {
      String[] parts = numbered.get(i).strip().split("\t", 2);
      assertThat(parts)
          .as("line %d of /session/log.md of %s: %s", i + 1, id, numbered.get(i))
          .hasSize(2);
      assertThat(Integer.parseInt(parts[0])).isEqualTo(i + 1);
      assertThat(parts[1])
          .as("line %d of /session/log.md of %s", i + 1, id)
          .isEqualTo(expectedLog.get(i));
    }
  }

  private void checkEvents(String id, List<SseEvent> events) {
    List<SseEvent> recorded = events.stream().filter(e -> e.id() != null).toList();
    assertThat(recorded).as("events of " + id).isNotEmpty();
    assertThat(recorded.get(0).event()).as("first event of " + id).isEqualTo("session.started");
    assertThat(recorded.get(0).seq()).isEqualTo(1);
    assertThat(recorded.get(recorded.size() - 1).event())
        .as("last event of " + id)
        .isEqualTo("session.completed");
    assertThat(events.get(events.size() - 1).event())
        .as("the stream of " + id + " ends with the terminal event")
        .isEqualTo("session.completed");
    long previous = 0;
    for (SseEvent e : recorded) {
      assertThat(e.seq())
          .as("event ids of %s strictly increase: %s after %d", id, e, previous)
          .isGreaterThan(previous);
      previous = e.seq();
    }
    List<Integer> modelTurns =
        recorded.stream()
            .filter(e -> e.event().equals("model.responded"))
            .map(e -> e.json().path("turn").asInt())
            .toList();
    assertThat(modelTurns)
        .as("model.responded turns of " + id)
        .isEqualTo(IntStream.rangeClosed(1, turns).boxed().toList());

    Set<String> started = new HashSet<>();
    Set<String> done = new HashSet<>();
    for (SseEvent e : recorded) {
      if (e.event().equals("tool.started"))
        assertThat(started.add(e.json().path("toolUseId").asText()))
            .as("tool.started twice: " + e)
            .isTrue();
      if (e.event().equals("tool.completed"))
        assertThat(done.add(e.json().path("toolUseId").asText()))
            .as("tool.completed twice: " + e)
            .isTrue();
    }
    assertThat(started)
        .as("tool calls started in " + id)
        .hasSize(toolCallsInScript())
        .isEqualTo(done);
    assertThat(recorded.stream().filter(e -> e.event().startsWith("session.")).map(SseEvent::event))
        .as("session events of " + id)
        .containsExactly("session.started", "session.completed");
  }
}
