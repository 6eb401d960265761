package dev.outboard.testing;

import com.fasterxml.jackson.databind.JsonNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;

/**
 * Scripted sessions over the HTTP API for integration tests: create bodies (API.md "Scripted
 * model"), waiting for a state, and the tool calls of a transcript with their results.
 */
public final class ScriptedSessions {
  private ScriptedSessions() {}

  /** A tool call of a scripted turn. */
  public static Map<String, Object> call(String name, Map<String, Object> input) {
    return Map.of("name", name, "input", input);
  }

  /** A turn without tool calls (it ends the loop). */
  public static Map<String, Object> say(String text) {
    return Map.of("text", text);
  }

  /** A turn asking for {@code calls}, answered after {@code latencyMs}. */
  @SafeVarargs
  public static Map<String, Object> tools(
      String text, long latencyMs, Map<String, Object>... calls) {
    return Map.of("text", text, "toolCalls", List.of(calls), "latencyMs", latencyMs);
  }

  /** A create body for {@code user} whose scripted model plays {@code turns}. */
  public static Map<String, Object> body(
      String user, boolean keepOpen, List<Map<String, Object>> turns) {
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("prompt", "prompt of " + user);
    body.put("user", user);
    body.put("keepOpen", keepOpen);
    body.put("maxTurns", turns.size() + 5);
    body.put("model", Map.of("provider", "scripted", "script", turns));
    return body;
  }

  /** Creates a session; fails unless the API answers 201. */
  public static String create(ApiClient api, Map<String, Object> body) {
    ApiClient.Response r = api.post("/v1/sessions", body);
    if (r.status() != 201) throw new AssertionError("create session: " + r);
    return r.json().path("id").asText();
  }

  /** Polls {@code GET /v1/sessions/{id}} until {@code condition} holds. */
  public static JsonNode await(
      ApiClient api, String id, Predicate<JsonNode> condition, Duration timeout, String what) {
    long deadline = System.nanoTime() + timeout.toNanos();
    ApiClient.Response last;
    do {
      last = api.get("/v1/sessions/" + id);
      if (last.status() != 200) throw new AssertionError("GET session " + id + ": " + last);
      JsonNode s = last.json();
      if (condition.test(s)) return s;
      String status = s.path("status").asText();
      if (status.equals("failed") || status.equals("cancelled")) {
        throw new AssertionError(
            "session "
                + id
                + " ended "
                + status
                + " while waiting for it to be "
                + what
                + ": "
                + last);
      }
      sleep(50);
    } while (System.nanoTime() < deadline);
    throw new AssertionError(
        "session " + id + " was not " + what + " within " + timeout + "; last: " + last);
  }

  public static JsonNode awaitStatus(ApiClient api, String id, String status, Duration timeout) {
    return await(api, id, s -> s.path("status").asText().equals(status), timeout, status);
  }

  /** A tool call of a transcript and its result ({@code content} null if it has none). */
  public record ToolCall(
      String id, String name, JsonNode input, String content, Boolean isError, int results) {}

  /** The tool calls of a transcript in order, each with its result and how many results it got. */
  public static List<ToolCall> toolCalls(ApiClient api, String sessionId) {
    ApiClient.Response r = api.get("/v1/sessions/" + sessionId + "/transcript");
    if (r.status() != 200) throw new AssertionError("GET transcript of " + sessionId + ": " + r);
    List<JsonNode> uses = new ArrayList<>();
    Map<String, JsonNode> results = new HashMap<>();
    Map<String, Integer> counts = new HashMap<>();
    for (JsonNode m : r.json().path("messages")) {
      for (JsonNode b : m.path("content")) {
        switch (b.path("type").asText()) {
          case "tool_use" -> uses.add(b);
          case "tool_result" -> {
            results.put(b.path("toolUseId").asText(), b);
            counts.merge(b.path("toolUseId").asText(), 1, Integer::sum);
          }
          default -> {}
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

  public static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }
}
