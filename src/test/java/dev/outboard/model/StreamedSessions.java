package dev.outboard.model;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Json;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.EventStream;
import dev.outboard.testing.ApiClient.SseEvent;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Sessions followed over SSE while a real provider client streams: the {@code model.delta} events
 * they see.
 */
final class StreamedSessions {
  private StreamedSessions() {}

  /**
   * Follows waiting session {@code id} from its end, sends {@code message}, and returns the events
   * until the session waits again with {@code result}.
   */
  static List<SseEvent> followWhileAnswering(
      ApiClient api, String id, String message, String result, Duration wait) {
    String path = "/v1/sessions/" + id + "/events";
    try (EventStream stream = api.openEvents(path)) {
      stream.await(e -> e.event().equals("session.waiting"), wait);
      assertThat(api.post("/v1/sessions/" + id + "/messages", Map.of("text", message)).status())
          .isEqualTo(202);
      stream.await(
          e ->
              e.event().equals("session.waiting")
                  && e.json().path("result").asText().equals(result),
          wait);
      List<SseEvent> all = stream.events();
      return all.subList(
          all.indexOf(
              all.stream()
                  .filter(e -> e.event().equals("message.added"))
                  .findFirst()
                  .orElseThrow()),
          all.size());
    }
  }

  /**
   * Checks that every {@code model.responded} of {@code events} came after deltas that add up to
   * it, block by block: text deltas to its text, tool-input deltas to its tool calls' input.
   */
  static void assertDeltasAddUp(List<SseEvent> events) {
    Map<Integer, StringBuilder> text = new LinkedHashMap<>();
    Map<String, StringBuilder> input = new LinkedHashMap<>();
    int responses = 0;
    for (SseEvent e : events) {
      if (e.event().equals("model.delta")) {
        assertThat(e.id()).as("deltas are live only: no id").isNull();
        JsonNode d = e.json();
        if (d.path("type").asText().equals("text")) {
          text.computeIfAbsent(d.path("index").asInt(), i -> new StringBuilder())
              .append(d.path("text").asText());
        } else {
          assertThat(d.path("type").asText()).isEqualTo("tool_input");
          input
              .computeIfAbsent(d.path("toolUseId").asText(), i -> new StringBuilder())
              .append(d.path("partialJson").asText());
        }
      } else if (e.event().equals("model.responded")) {
        responses++;
        JsonNode content = e.json().path("content");
        assertThat(text.size() + input.size()).as("deltas before " + e).isPositive();
        for (int i = 0; i < content.size(); i++) {
          JsonNode block = content.get(i);
          if (block.path("type").asText().equals("text")) {
            assertThat(text.get(i)).as("text deltas of block " + i).isNotNull();
            assertThat(text.get(i).toString()).isEqualTo(block.path("text").asText());
          } else {
            String id = block.path("id").asText();
            assertThat(input.get(id)).as("input deltas of " + id).isNotNull();
            assertThat(parse(input.get(id).toString())).isEqualTo(block.path("input"));
          }
        }
        text.clear();
        input.clear();
      }
    }
    assertThat(responses).isPositive();
  }

  private static JsonNode parse(String json) {
    try {
      return Json.MAPPER.readTree(json.isEmpty() ? "{}" : json);
    } catch (Exception e) {
      throw new AssertionError("tool input deltas are not JSON: " + json, e);
    }
  }
}
