package dev.outboard.model;

import static dev.outboard.model.AnthropicWire.error;
import static dev.outboard.model.AnthropicWire.message;
import static dev.outboard.model.AnthropicWire.raw;
import static dev.outboard.model.AnthropicWire.text;
import static dev.outboard.model.AnthropicWire.toolUse;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.typesafe.config.ConfigFactory;
import dev.outboard.Json;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.ScriptedSessions;
import dev.outboard.tools.ToolCatalog;
import dev.outboard.tools.ToolSpec;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The Anthropic provider against {@link AnthropicWire}: the client alone (request and response
 * mapping, failure classification, retries, connection limits), then whole sessions through a
 * one-node Outboard whose {@code outboard.model.anthropic.base-url} points at the wire server.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class AnthropicModelTest {
  static final String KEY = "sk-ant-test-FAKE-KEY-1234567890";
  static final RetryPolicy FAST =
      new RetryPolicy(4, Duration.ofMillis(10), Duration.ofMillis(50), Duration.ofSeconds(5));
  static final Duration WAIT = Duration.ofSeconds(30);

  AnthropicWire wire;
  AnthropicModel model;
  RetryingModelClient retrying;
  InProcessNode node;
  ApiClient api;

  @BeforeAll
  void start() throws Exception {
    wire = new AnthropicWire(KEY);
    ProviderSettings settings =
        ProviderSettings.from(
            ConfigFactory.parseMap(
                Map.of(
                    "anthropic.base-url",
                    wire.baseUrl(),
                    "anthropic.api-key",
                    KEY,
                    "anthropic.default-model",
                    "claude-default",
                    "anthropic.max-tokens",
                    1024,
                    "request-timeout",
                    "10s",
                    "max-concurrent-requests",
                    1000)),
            "anthropic");
    model = new AnthropicModel(settings);
    retrying = new RetryingModelClient(model, FAST);
    Map<String, Object> overrides = new LinkedHashMap<>();
    overrides.put("outboard.model.anthropic.base-url", wire.baseUrl());
    overrides.put("outboard.model.anthropic.api-key", KEY);
    overrides.put("outboard.model.request-timeout", "10s");
    overrides.put("outboard.model.retry.max-attempts", 4);
    overrides.put("outboard.model.retry.base-delay", "10ms");
    overrides.put("outboard.model.retry.max-delay", "50ms");
    overrides.put("outboard.model.retry.max-retry-after", "5s");
    node = InProcessNode.start("", overrides);
    api = node.client(node.admin().createOrgWithKey("acme"));
  }

  @AfterAll
  void stop() {
    if (node != null) node.close();
    if (wire != null) wire.close();
  }

  @BeforeEach
  void resetWire() {
    wire.reset();
  }

  /** Every request of every test was checked against the documented shape. */
  @AfterEach
  void everyRequestHadTheDocumentedShape() {
    assertThat(wire.violations()).isEmpty();
  }

  // ================================================================== the client alone

  private static JsonNode json(String s) {
    try {
      return Json.MAPPER.readTree(s.replace('\'', '"'));
    } catch (Exception e) {
      throw new IllegalArgumentException(s, e);
    }
  }

  private static ModelRequest request(String name, List<Message> messages) {
    return new ModelRequest(
        "s-1",
        1,
        new ModelSpec("anthropic", name, null),
        "You are a test agent.\n# Skills\n- none",
        ToolCatalog.ALL,
        messages);
  }

  private static List<Message> hello() {
    return List.of(Message.user(List.of(new Block.Text("hello"))));
  }

  private ModelResponse call(ModelClient client, ModelRequest request) throws Exception {
    return client.complete(request).toCompletableFuture().get(30, TimeUnit.SECONDS);
  }

  private ModelCallException failure(ModelClient client, ModelRequest request) throws Exception {
    try {
      ModelResponse r = call(client, request);
      throw new AssertionError("expected a failure, got " + r);
    } catch (ExecutionException e) {
      assertThat(e.getCause()).isInstanceOf(ModelCallException.class);
      return (ModelCallException) e.getCause();
    }
  }

  @Test
  void requestMatchesTheDocumentedShapeFieldByField() throws Exception {
    List<Message> transcript =
        List.of(
            Message.user(List.of(new Block.Text("write two files"))),
            Message.assistant(
                List.of(
                    new Block.Text("on it"),
                    new Block.ToolUse(
                        "toolu_01A", "write", json("{'path': '/session/a.md', 'content': 'A'}")),
                    new Block.ToolUse("toolu_01B", "read", json("{'path': 'relative.md'}")))),
            Message.user(
                List.of(
                    new Block.ToolResult("toolu_01A", "wrote /session/a.md", false),
                    new Block.ToolResult("toolu_01B", "path must be absolute", true))),
            Message.assistant(List.of()), // an empty answer recorded in the transcript
            Message.user(List.of(new Block.Text("go on"))));
    wire.enqueue(
        req ->
            message(
                req,
                List.of(
                    text("reading both"),
                    toolUse("toolu_02A", "read", json("{'path': '/session/a.md'}")),
                    toolUse("toolu_02B", "ls", json("{'path': '/session'}"))),
                "tool_use"));

    ModelResponse r = call(model, request("claude-test", transcript));

    assertThat(wire.violations()).isEmpty();
    AnthropicWire.Recorded rec = wire.requests().get(0);
    assertThat(rec.method()).isEqualTo("POST");
    assertThat(rec.path()).isEqualTo("/v1/messages");
    assertThat(rec.header("Authorization"))
        .isEqualTo("Bearer " + KEY); // what anthropic-java 3.14.0 sends
    assertThat(rec.header("anthropic-version")).matches("\\d{4}-\\d{2}-\\d{2}");
    JsonNode body = rec.body();
    assertThat(body.path("model").asText()).isEqualTo("claude-test");
    assertThat(body.path("max_tokens").asLong()).isEqualTo(1024);
    assertThat(body.has("stream")).isFalse();
    // system: one text block, cached
    assertThat(body.path("system")).hasSize(1);
    assertThat(body.path("system").get(0).path("type").asText()).isEqualTo("text");
    assertThat(body.path("system").get(0).path("text").asText())
        .startsWith("You are a test agent.");
    assertThat(body.path("system").get(0).path("cache_control"))
        .isEqualTo(json("{'type': 'ephemeral'}"));
    // tools: the shared definitions, in order, schema identical to ToolSpec.inputSchema();
    // breakpoint on the last one
    JsonNode tools = body.path("tools");
    assertThat(tools).hasSize(ToolCatalog.ALL.size());
    for (int i = 0; i < ToolCatalog.ALL.size(); i++) {
      ToolSpec spec = ToolCatalog.ALL.get(i);
      JsonNode t = tools.get(i);
      assertThat(t.path("name").asText()).isEqualTo(spec.name());
      assertThat(t.path("description").asText()).isEqualTo(spec.description());
      assertThat(t.path("input_schema")).isEqualTo(spec.inputSchema());
      assertThat(t.has("cache_control")).isEqualTo(i == ToolCatalog.ALL.size() - 1);
    }
    // messages: the empty assistant message is dropped and the two user messages around it merged
    JsonNode messages = body.path("messages");
    assertThat(messages).hasSize(3);
    assertThat(messages.get(0).path("role").asText()).isEqualTo("user");
    assertThat(messages.get(0).path("content").get(0))
        .isEqualTo(json("{'type': 'text', 'text': 'write two files'}"));
    JsonNode assistant = messages.get(1);
    assertThat(assistant.path("role").asText()).isEqualTo("assistant");
    assertThat(assistant.path("content")).hasSize(3);
    assertThat(assistant.path("content").get(1))
        .isEqualTo(
            json(
                "{'type': 'tool_use', 'id': 'toolu_01A', 'name': 'write', 'input': {'path':"
                    + " '/session/a.md', 'content': 'A'}}"));
    JsonNode results = messages.get(2).path("content");
    assertThat(messages.get(2).path("role").asText()).isEqualTo("user");
    assertThat(results).hasSize(3);
    assertThat(results.get(0))
        .isEqualTo(
            json(
                "{'type': 'tool_result', 'tool_use_id': 'toolu_01A', 'content': 'wrote"
                    + " /session/a.md'}"));
    assertThat(results.get(1))
        .isEqualTo(
            json(
                "{'type': 'tool_result', 'tool_use_id': 'toolu_01B', 'content': 'path must be"
                    + " absolute', 'is_error': true}"));
    // the newest block carries the conversation's cache breakpoint
    assertThat(results.get(2))
        .isEqualTo(
            json("{'type': 'text', 'text': 'go on', 'cache_control': {'type': 'ephemeral'}}"));

    assertThat(r.stopReason()).isEqualTo(ModelResponse.StopReason.TOOL_USE);
    assertThat(r.content())
        .containsExactly(
            new Block.Text("reading both"),
            new Block.ToolUse("toolu_02A", "read", json("{'path': '/session/a.md'}")),
            new Block.ToolUse("toolu_02B", "ls", json("{'path': '/session'}")));
    assertThat(r.usage().inputTokens() + r.usage().cacheWriteTokens()).isPositive();
    assertThat(r.usage().outputTokens()).isPositive();
  }

  @Test
  void sessionsWithoutAModelNameGetTheConfiguredDefault() throws Exception {
    call(model, request(null, hello()));
    assertThat(wire.requests().get(0).body().path("model").asText()).isEqualTo("claude-default");
  }

  @Test
  void stopReasonsAndUsageAreMapped() throws Exception {
    wire.enqueue(req -> message(req, List.of(text("bye")), "stop_sequence"));
    wire.enqueue(req -> message(req, List.of(text("cut")), "max_tokens"));
    ModelResponse a = call(model, request("m", hello()));
    ModelResponse b = call(model, request("m", hello()));
    assertThat(a.stopReason()).isEqualTo(ModelResponse.StopReason.END_TURN);
    assertThat(b.stopReason()).isEqualTo(ModelResponse.StopReason.MAX_TOKENS);
    AnthropicWire.Recorded second = wire.requests().get(1);
    assertThat(b.usage())
        .isEqualTo(
            new Usage(
                second.inputTokens(),
                b.usage().outputTokens(),
                second.cacheRead(),
                second.cacheWrite()));
  }

  @Test
  void aToolCallCutOffAtMaxTokensIsNeverReturned() throws Exception {
    wire.enqueue(
        req ->
            message(
                req,
                List.of(
                    text("writing"),
                    toolUse("toolu_cut", "write", json("{'path': '/session/x.md'}"))),
                "max_tokens"));
    ModelResponse r = call(model, request("m", hello()));
    assertThat(r.stopReason()).isEqualTo(ModelResponse.StopReason.MAX_TOKENS);
    assertThat(r.toolCalls()).isEmpty();
    assertThat(r.text()).isEqualTo("writing");
  }

  @Test
  void retryAfterIsHonouredAndOneAnswerComesBack() throws Exception {
    wire.enqueue(
        error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            Map.of("retry-after", "1")));
    long t0 = System.nanoTime();
    ModelResponse r = call(retrying, request("m", hello()));
    long ms = (System.nanoTime() - t0) / 1_000_000;
    assertThat(r.text()).isEqualTo("done");
    List<AnthropicWire.Recorded> reqs = wire.requests();
    assertThat(reqs).hasSize(2);
    assertThat((reqs.get(1).atNanos() - reqs.get(0).atNanos()) / 1_000_000)
        .isGreaterThanOrEqualTo(950);
    assertThat(reqs.get(1).body()).isEqualTo(reqs.get(0).body());
    System.out.println("[anthropic] 429 + retry-after: 1 -> answered after " + ms + " ms");
  }

  @Test
  void retryAfterMsIsPreferred() throws Exception {
    wire.enqueue(
        error(
            429,
            "rate_limit_error",
            "slow down",
            Map.of("retry-after-ms", "300", "retry-after", "30")));
    long t0 = System.nanoTime();
    call(retrying, request("m", hello()));
    assertThat((System.nanoTime() - t0) / 1_000_000).isBetween(290L, 5_000L);
  }

  @Test
  void anOverloadStormExhaustsTheBudgetWithTheProvidersMessage() throws Exception {
    for (int i = 0; i < 10; i++)
      wire.enqueue(error(529, "overloaded_error", "Overloaded", Map.of()));
    ModelCallException e = failure(retrying, request("m", hello()));
    assertThat(e.code()).isEqualTo("overloaded");
    assertThat(e.retryable()).isFalse();
    assertThat(e.getMessage())
        .contains("gave up after 4 attempts")
        .contains("anthropic answered 529: Overloaded");
    assertThat(wire.requests()).hasSize(4);
  }

  @Test
  void serverErrorsAreRetriedAndClientErrorsAreNot() throws Exception {
    wire.enqueue(error(500, "api_error", "Internal server error", Map.of()));
    assertThat(call(retrying, request("m", hello())).text()).isEqualTo("done");
    assertThat(wire.requests()).hasSize(2);
    wire.reset();
    wire.enqueue(error(400, "invalid_request_error", "messages: roles must alternate", Map.of()));
    ModelCallException e = failure(retrying, request("m", hello()));
    assertThat(e.code()).isEqualTo("model_request_rejected");
    assertThat(e.getMessage()).isEqualTo("anthropic answered 400: messages: roles must alternate");
    assertThat(wire.requests()).hasSize(1);
  }

  @Test
  void malformedJsonFailsTheCallAtOnce() throws Exception {
    wire.enqueue(
        raw(
            200,
            "{\"id\": \"msg_01\", \"type\": \"message\", \"role\": \"assistant\", \"content\":"
                + " [}"));
    ModelCallException e = failure(retrying, request("m", hello()));
    assertThat(e.code()).isEqualTo("model_bad_response");
    assertThat(e.retryable()).isFalse();
    assertThat(wire.requests()).hasSize(1);
  }

  @Test
  void aWellFormedButWrongShapedAnswerFailsTheCall() throws Exception {
    wire.enqueue(
        raw(
            200,
            "{\"id\": \"msg_01\", \"type\": \"message\", \"role\": \"assistant\", \"stop_reason\":"
                + " \"end_turn\"}"));
    ModelCallException e = failure(retrying, request("m", hello()));
    assertThat(e.code()).isEqualTo("model_bad_response");
    assertThat(wire.requests()).hasSize(1);
  }

  @Test
  void aConnectionDroppedMidBodyIsRetried() throws Exception {
    wire.enqueue(AnthropicWire.cutOff(40));
    ModelCallException first = failure(model, request("m", hello()));
    assertThat(first.retryable()).isTrue();
    assertThat(first.code()).isEqualTo("model_unreachable");
    wire.reset();
    wire.enqueue(AnthropicWire.cutOff(40));
    assertThat(call(retrying, request("m", hello())).text()).isEqualTo("done");
    assertThat(wire.requests()).hasSize(2);
  }

  @Test
  void theKeyNeverAppearsInAFailure() throws Exception {
    wire.enqueue(error(401, "authentication_error", "invalid x-api-key " + KEY, Map.of()));
    ModelCallException e = failure(retrying, request("m", hello()));
    assertThat(e.code()).isEqualTo("model_auth");
    assertThat(e.getMessage()).doesNotContain(KEY).contains("[redacted]");
    assertThat(String.valueOf(model)).doesNotContain(KEY);
  }

  @Test
  void aThousandCallsCanBeInFlightToOneHost() throws Exception {
    // A client of its own: the JDK server keeps at most 200 idle connections and drops the rest,
    // which would leave stale connections in the shared client's pool for the other tests.
    AnthropicModel model =
        new AnthropicModel(
            ProviderSettings.from(
                ConfigFactory.parseMap(
                    Map.of(
                        "anthropic.base-url",
                        wire.baseUrl(),
                        "anthropic.api-key",
                        KEY,
                        "anthropic.default-model",
                        "claude-default",
                        "anthropic.max-tokens",
                        1024,
                        "request-timeout",
                        "20s",
                        "max-concurrent-requests",
                        1000)),
                "anthropic"));
    assertThat(model.maxRequestsPerHost()).isEqualTo(1000);
    int n = 1000; // the configured limit; OkHttp's default would let only 64 through at once
    CountDownLatch all = new CountDownLatch(n);
    wire.fallback(
        req -> {
          all.countDown();
          try {
            all.await(20, TimeUnit.SECONDS); // every answer waits until all n calls are in flight
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
          }
          return message(req, List.of(text("ok")), "end_turn");
        });
    List<CompletableFuture<ModelResponse>> calls = new ArrayList<>();
    long t0 = System.nanoTime();
    for (int i = 0; i < n; i++)
      calls.add(model.complete(request("m", hello())).toCompletableFuture());
    CompletableFuture.allOf(calls.toArray(CompletableFuture[]::new)).get(30, TimeUnit.SECONDS);
    assertThat(all.getCount()).isZero();
    System.out.println(
        "[anthropic] "
            + n
            + " concurrent calls in flight at once, all answered in "
            + (System.nanoTime() - t0) / 1_000_000
            + " ms");
    model.close();
  }

  // ================================================================== whole sessions

  private String create(String prompt, int maxTurns) {
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("prompt", prompt);
    body.put("user", "alice");
    body.put("maxTurns", maxTurns);
    body.put("model", Map.of("provider", "anthropic", "name", "claude-test"));
    return ScriptedSessions.create(api, body);
  }

  private JsonNode awaitFinished(String id) {
    return ScriptedSessions.await(
        api,
        id,
        s ->
            List.of("completed", "failed", "cancelled").contains(s.path("status").asText())
                || s.path("status").asText().equals("waiting"),
        WAIT,
        "finished");
  }

  private JsonNode awaitFailed(String id) {
    long deadline = System.nanoTime() + WAIT.toNanos();
    JsonNode s;
    do {
      s = api.get("/v1/sessions/" + id).json();
      if (s.path("status").asText().equals("failed")) return s;
      ScriptedSessions.sleep(50);
    } while (System.nanoTime() < deadline);
    throw new AssertionError("session did not fail: " + s);
  }

  private List<ApiClient.SseEvent> events(String id) {
    return api.events("/v1/sessions/" + id + "/events", WAIT);
  }

  private static List<ApiClient.SseEvent> ofType(List<ApiClient.SseEvent> events, String type) {
    return events.stream().filter(e -> type.equals(e.event())).toList();
  }

  private JsonNode transcript(String id) {
    return api.get("/v1/sessions/" + id + "/transcript").json();
  }

  @Test
  void aFollowedSessionSeesTheAnswersStreamAsModelDeltas() {
    wire.enqueue(req -> message(req, List.of(text("Ready when you are.")), "end_turn"));
    wire.enqueue(
        req ->
            message(
                req,
                List.of(
                    text("Writing it down now."),
                    toolUse(
                        "toolu_01S",
                        "write",
                        json("{'path': '/session/streamed.md', 'content': 'piece by piece'}"))),
                "tool_use"));
    wire.enqueue(req -> message(req, List.of(text("Streamed, and all done.")), "end_turn"));
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("prompt", "wait for me");
    body.put("keepOpen", true);
    body.put("model", Map.of("provider", "anthropic", "name", "claude-test"));
    String id = ScriptedSessions.create(api, body);
    ScriptedSessions.awaitStatus(api, id, "waiting", WAIT);

    List<ApiClient.SseEvent> events =
        StreamedSessions.followWhileAnswering(api, id, "write it", "Streamed, and all done.", WAIT);

    StreamedSessions.assertDeltasAddUp(events);
    assertThat(ofType(events, "model.delta")).hasSizeGreaterThanOrEqualTo(6);
    assertThat(ofType(events, "model.responded")).hasSize(2);
    // Unfollowed, the first answer came whole; followed, the next two were streamed.
    List<AnthropicWire.Recorded> reqs = wire.requests();
    assertThat(reqs)
        .extracting(r -> r.body().path("stream").asBoolean(false))
        .containsExactly(false, true, true);
    // Without the deltas, the live stream is what the journal has.
    assertThat(api.post("/v1/sessions/" + id + "/cancel", Map.of()).status()).isEqualTo(202);
    List<ApiClient.SseEvent> recorded = events(id);
    int from = recorded.indexOf(events.get(0));
    assertThat(events.stream().filter(e -> !e.event().equals("model.delta")).toList())
        .isEqualTo(recorded.subList(from, recorded.size() - 1));
  }

  @Test
  void aSessionWithTwoToolCallsInOneTurnAndAToolError() {
    wire.enqueue(
        req ->
            message(
                req,
                List.of(
                    text("two things at once"),
                    toolUse(
                        "toolu_01W",
                        "write",
                        json("{'path': '/session/notes.md', 'content': 'hello'}")),
                    toolUse("toolu_01R", "read", json("{'path': 'not/absolute.md'}"))),
                "tool_use"));
    wire.enqueue(req -> message(req, List.of(text("all done")), "end_turn"));

    String id = create("write a note, then read a bad path", 10);
    JsonNode s = awaitFinished(id);

    assertThat(s.path("status").asText()).isEqualTo("completed");
    assertThat(s.path("turns").asInt()).isEqualTo(2);
    assertThat(wire.violations()).isEmpty();
    List<AnthropicWire.Recorded> reqs = wire.requests();
    assertThat(reqs).hasSize(2);
    JsonNode second = reqs.get(1).body().path("messages");
    assertThat(second).hasSize(3);
    JsonNode uses = second.get(1).path("content");
    assertThat(uses.get(1).path("id").asText()).isEqualTo("toolu_01W");
    assertThat(uses.get(2).path("id").asText()).isEqualTo("toolu_01R");
    JsonNode results = second.get(2).path("content");
    assertThat(results).hasSize(2);
    assertThat(results.get(0).path("tool_use_id").asText()).isEqualTo("toolu_01W");
    assertThat(results.get(0).path("is_error").asBoolean(false)).isFalse();
    assertThat(results.get(1).path("tool_use_id").asText()).isEqualTo("toolu_01R");
    assertThat(results.get(1).path("is_error").asBoolean()).isTrue();
    assertThat(results.get(1).path("content").asText()).isNotBlank();
    // the system prompt the session built (skills and memory index included) went out cached
    assertThat(reqs.get(0).body().path("system").get(0).path("cache_control").path("type").asText())
        .isEqualTo("ephemeral");

    List<ScriptedSessions.ToolCall> calls = ScriptedSessions.toolCalls(api, id);
    assertThat(calls)
        .extracting(ScriptedSessions.ToolCall::id)
        .containsExactly("toolu_01W", "toolu_01R");
    assertThat(calls).extracting(ScriptedSessions.ToolCall::isError).containsExactly(false, true);
    assertThat(calls).extracting(ScriptedSessions.ToolCall::results).containsExactly(1, 1);
  }

  @Test
  void aRateLimitWithRetryAfterThenSuccessRecordsOneTurn() {
    wire.enqueue(
        req ->
            message(
                req, List.of(toolUse("toolu_1", "ls", json("{'path': '/session'}"))), "tool_use"));
    wire.enqueue(error(429, "rate_limit_error", "rate limited", Map.of("retry-after", "1")));
    wire.enqueue(req -> message(req, List.of(text("finished")), "end_turn"));

    String id = create("list and finish", 10);
    JsonNode s = awaitFinished(id);

    assertThat(s.path("status").asText()).isEqualTo("completed");
    assertThat(s.path("turns").asInt()).isEqualTo(2);
    List<AnthropicWire.Recorded> reqs = wire.requests();
    assertThat(reqs).hasSize(3);
    assertThat((reqs.get(2).atNanos() - reqs.get(1).atNanos()) / 1_000_000)
        .isGreaterThanOrEqualTo(950);
    assertThat(reqs.get(2).body()).isEqualTo(reqs.get(1).body());
    List<ApiClient.SseEvent> responded = ofType(events(id), "model.responded");
    assertThat(responded).hasSize(2);
    assertThat(responded).extracting(e -> e.json().path("turn").asInt()).containsExactly(1, 2);
    assertThat(transcript(id).path("messages")).hasSize(4);
  }

  @Test
  void anOverloadStormFailsTheSessionWithTheProvidersMessage() {
    for (int i = 0; i < 10; i++)
      wire.enqueue(error(529, "overloaded_error", "Overloaded", Map.of()));
    String id = create("anything", 10);
    JsonNode s = awaitFailed(id);

    assertThat(s.path("error").path("code").asText()).isEqualTo("overloaded");
    assertThat(s.path("error").path("message").asText())
        .contains("Overloaded")
        .contains("after 4 attempts");
    assertThat(s.path("error").path("message").asText()).doesNotContain(KEY);
    assertThat(s.path("turns").asInt()).isZero();
    assertThat(wire.requests()).hasSize(4);
    List<ApiClient.SseEvent> ev = events(id);
    assertThat(ofType(ev, "model.responded")).isEmpty();
    assertThat(ofType(ev, "session.failed")).hasSize(1);
    assertThat(ofType(ev, "session.failed").get(0).json().path("error").path("message").asText())
        .contains("Overloaded");
  }

  @Test
  void malformedJsonFailsTheTurnAndLeavesTheTranscriptAsRecorded() {
    wire.enqueue(
        req ->
            message(
                req,
                List.of(
                    text("first"),
                    toolUse("toolu_1", "write", json("{'path': '/session/a.md', 'content': 'x'}"))),
                "tool_use"));
    wire.enqueue(
        raw(
            200,
            "{\"id\": \"msg_01\", \"type\": \"message\", \"role\": \"assistant\", \"content\":"
                + " [}"));

    String id = create("one good turn, then garbage", 10);
    JsonNode s = awaitFailed(id);

    assertThat(s.path("error").path("code").asText()).isEqualTo("model_bad_response");
    assertThat(s.path("turns").asInt()).isEqualTo(1);
    assertThat(wire.requests()).hasSize(2); // a malformed answer is not retried
    JsonNode messages = transcript(id).path("messages");
    assertThat(messages).hasSize(3); // prompt, turn 1, its tool result: nothing from the bad answer
    assertThat(messages.get(1).path("content").get(1).path("id").asText()).isEqualTo("toolu_1");
    assertThat(ofType(events(id), "model.responded")).hasSize(1);
  }

  @Test
  void maxTokensWithoutToolCallsFailsTheSession() {
    wire.enqueue(
        req -> message(req, List.of(text("a very long answer that was cut")), "max_tokens"));
    String id = create("say a lot", 10);
    JsonNode s = awaitFailed(id);
    assertThat(s.path("error").path("code").asText()).isEqualTo("max_tokens");
    assertThat(s.path("turns").asInt()).isEqualTo(1);
    assertThat(wire.requests()).hasSize(1);
  }

  @Test
  void aToolCallCutOffAtMaxTokensIsNotRunAndFailsTheSession() {
    wire.enqueue(
        req ->
            message(
                req,
                List.of(
                    text("writing the file"),
                    toolUse("toolu_cut", "write", json("{'path': '/session/big.md'}"))),
                "max_tokens"));
    String id = create("write a big file", 10);
    JsonNode s = awaitFailed(id);
    assertThat(s.path("error").path("code").asText()).isEqualTo("max_tokens");
    List<ApiClient.SseEvent> ev = events(id);
    assertThat(ofType(ev, "tool.started")).isEmpty();
    assertThat(ScriptedSessions.toolCalls(api, id)).isEmpty();
  }

  @Test
  void aConnectionResetMidResponseIsRetriedAndTheSessionCompletes() {
    wire.enqueue(AnthropicWire.cutOff(60));
    wire.enqueue(req -> message(req, List.of(text("second try worked")), "end_turn"));
    String id = create("hello", 10);
    JsonNode s = awaitFinished(id);
    assertThat(s.path("status").asText()).isEqualTo("completed");
    assertThat(s.path("turns").asInt()).isEqualTo(1);
    assertThat(s.path("result").asText()).isEqualTo("second try worked");
    assertThat(wire.requests()).hasSize(2);
    assertThat(ofType(events(id), "model.responded")).hasSize(1);
  }

  @Test
  void aTwentyTurnSessionReadsItsPrefixFromTheCache() {
    int turns = 20;
    // The documented minimum cacheable prefix (1024 tokens for Sonnet/Opus) applies, as in the
    // wire's default.
    wire.minCacheTokens(1024);
    wire.fallback(
        req -> {
          int turn = (req.path("messages").size() + 1) / 2;
          if (turn >= turns) return message(req, List.of(text("twenty turns done")), "end_turn");
          return message(
              req,
              List.of(
                  text("step " + turn),
                  toolUse(
                      "toolu_" + turn,
                      "write",
                      json(
                          "{'path': '/session/step"
                              + turn
                              + ".md', 'content': 'notes of step "
                              + turn
                              + "'}"))),
              "tool_use");
        });
    String id = create("work for twenty turns", 30);
    JsonNode s = awaitFinished(id);
    assertThat(s.path("status").asText()).isEqualTo("completed");
    assertThat(s.path("turns").asInt()).isEqualTo(turns);
    assertThat(wire.violations()).isEmpty();

    List<AnthropicWire.Recorded> reqs = wire.requests();
    assertThat(reqs).hasSize(turns);
    long prefix = reqs.get(0).prefixTokens();
    assertThat(reqs.get(0).cacheRead()).isZero();
    assertThat(reqs.get(0).cacheWrite()).isGreaterThanOrEqualTo(prefix);
    for (int i = 1; i < turns; i++) {
      assertThat(reqs.get(i).prefixTokens())
          .as("stable prefix of turn %d", i + 1)
          .isEqualTo(prefix);
      assertThat(reqs.get(i).cacheRead())
          .as("cache read of turn %d", i + 1)
          .isGreaterThanOrEqualTo(prefix);
    }

    List<ApiClient.SseEvent> responded = ofType(events(id), "model.responded");
    assertThat(responded).hasSize(turns);
    long in = 0, out = 0, read = 0, write = 0;
    for (ApiClient.SseEvent e : responded) {
      JsonNode u = e.json().path("usage");
      in += u.path("inputTokens").asLong();
      out += u.path("outputTokens").asLong();
      read += u.path("cacheReadTokens").asLong();
      write += u.path("cacheWriteTokens").asLong();
    }
    JsonNode usage = s.path("usage");
    assertThat(usage.path("inputTokens").asLong()).isEqualTo(in);
    assertThat(usage.path("outputTokens").asLong()).isEqualTo(out);
    assertThat(usage.path("cacheReadTokens").asLong()).isEqualTo(read);
    assertThat(usage.path("cacheWriteTokens").asLong()).isEqualTo(write);
    assertThat(in).isEqualTo(reqs.stream().mapToLong(AnthropicWire.Recorded::inputTokens).sum());
    assertThat(read).isEqualTo(reqs.stream().mapToLong(AnthropicWire.Recorded::cacheRead).sum());

    long allInput = in + read + write;
    double ratio = (double) read / allInput;
    long prefixReads = prefix * (turns - 1);
    System.out.printf(
        "[anthropic] 20-turn session: stable prefix %d tokens; usage input=%d cacheRead=%d"
            + " cacheWrite=%d output=%d; cache hit ratio = cacheRead / (input + cacheRead +"
            + " cacheWrite) = %.3f (stable prefix alone: %.3f)%n",
        prefix, in, read, write, out, ratio, (double) prefixReads / allInput);
    assertThat(ratio).isGreaterThan(0.5);
  }
}
