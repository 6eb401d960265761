package dev.outboard.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Json;
import dev.outboard.model.OpenAiWire.Call;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.SseEvent;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.ScriptedSessions;
import dev.outboard.tools.ToolCatalog;
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
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The OpenAI-compatible provider against {@link OpenAiWire}: the request mapping field by field,
 * the answer mapping, failure classification and retries — directly, and through whole sessions on
 * an in-process node.
 */
class OpenAiModelTest {
  private static final Duration WAIT = Duration.ofSeconds(30);
  private static final RetryPolicy FAST =
      new RetryPolicy(3, Duration.ofMillis(20), Duration.ofMillis(100), Duration.ofSeconds(5));

  static ProviderSettings settings(String baseUrl, String key, Duration timeout) {
    return new ProviderSettings("openai", baseUrl, key, "gpt-default", 4096, timeout, 1000);
  }

  static ModelRequest request(List<Message> messages) {
    return new ModelRequest(
        "s-1",
        1,
        new ModelSpec("openai", "gpt-test", null),
        "You are a test.",
        ToolCatalog.ALL,
        messages);
  }

  static ModelResponse await(ModelClient client, ModelRequest request) throws Exception {
    try {
      return client.complete(request).toCompletableFuture().get(30, TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      throw (Exception) e.getCause();
    }
  }

  static JsonNode obj(String json) {
    try {
      return Json.MAPPER.readTree(json);
    } catch (Exception e) {
      throw new IllegalArgumentException(e);
    }
  }

  @Nested
  @TestInstance(TestInstance.Lifecycle.PER_CLASS)
  class Direct {
    OpenAiWire wire;
    OpenAiModel model;
    ModelClient retrying;

    @BeforeAll
    void start() throws Exception {
      wire = new OpenAiWire();
      model = new OpenAiModel(settings(wire.baseUrl(), OpenAiWire.KEY, Duration.ofSeconds(10)));
      retrying = new RetryingModelClient(model, FAST);
    }

    @AfterAll
    void stop() {
      wire.close();
    }

    @BeforeEach
    void clean() {
      wire.clearReplies();
    }

    @Test
    void requestAndAnswerAreMappedFieldByField() throws Exception {
      wire.enqueue(
          wire.toolCalls(
              "Reading both.",
              100,
              40,
              new Call("call_a1", "read", "{\"path\": \"/session/a.md\"}"),
              new Call("call_b2", "ls", "{\"path\":\"/session\"}")));
      List<Message> messages =
          List.of(
              Message.user(List.of(new Block.Text("please look"))),
              Message.assistant(
                  List.of(
                      new Block.Text("I will."),
                      new Block.ToolUse(
                          "call_x",
                          "write",
                          obj("{\"path\":\"/session/a.md\",\"content\":\"hi\"}")),
                      new Block.ToolUse("call_y", "read", obj("{\"path\":\"/session/none.md\"}")))),
              Message.user(
                  List.of(
                      new Block.ToolResult("call_x", "wrote 2 bytes", false),
                      new Block.ToolResult("call_y", "no such file: /session/none.md", true))),
              Message.assistant(List.of()),
              Message.user(List.of(new Block.Text("and now?"))));
      int before = wire.requests().size();

      ModelResponse r = await(model, request(messages));

      OpenAiWire.Recorded req = wire.requests().get(before);
      assertThat(req.problems()).isEmpty();
      assertThat(req.header("authorization")).isEqualTo("Bearer " + OpenAiWire.KEY);
      JsonNode body = req.body();
      assertThat(body.path("model").asText()).isEqualTo("gpt-test");
      assertThat(body.path("max_completion_tokens").asLong()).isEqualTo(4096);
      assertThat(body.has("max_tokens")).isFalse();
      JsonNode m = body.path("messages");
      List<String> roles = new ArrayList<>();
      m.forEach(x -> roles.add(x.path("role").asText()));
      // the empty assistant message is left out
      assertThat(roles).containsExactly("system", "user", "assistant", "tool", "tool", "user");
      assertThat(m.get(0).path("content").asText()).isEqualTo("You are a test.");
      assertThat(m.get(1).path("content").asText()).isEqualTo("please look");
      assertThat(m.get(2).path("content").asText()).isEqualTo("I will.");
      JsonNode calls = m.get(2).path("tool_calls");
      assertThat(calls).hasSize(2);
      assertThat(calls.get(0).path("id").asText()).isEqualTo("call_x");
      assertThat(calls.get(0).path("type").asText()).isEqualTo("function");
      assertThat(calls.get(0).path("function").path("name").asText()).isEqualTo("write");
      assertThat(obj(calls.get(0).path("function").path("arguments").asText()))
          .isEqualTo(obj("{\"path\":\"/session/a.md\",\"content\":\"hi\"}"));
      assertThat(calls.get(1).path("id").asText()).isEqualTo("call_y");
      assertThat(m.get(3).path("tool_call_id").asText()).isEqualTo("call_x");
      assertThat(m.get(3).path("content").asText()).isEqualTo("wrote 2 bytes");
      assertThat(m.get(4).path("tool_call_id").asText()).isEqualTo("call_y");
      assertThat(m.get(4).path("content").asText())
          .isEqualTo("ERROR: no such file: /session/none.md");
      assertThat(m.get(5).path("content").asText()).isEqualTo("and now?");
      assertThat(body.path("tools")).hasSize(ToolCatalog.ALL.size());
      assertThat(body.path("tools").get(0).path("function").path("parameters"))
          .isEqualTo(ToolCatalog.ALL.get(0).inputSchema());

      assertThat(r.stopReason()).isEqualTo(ModelResponse.StopReason.TOOL_USE);
      assertThat(r.text()).isEqualTo("Reading both.");
      assertThat(r.toolCalls())
          .containsExactly(
              new Block.ToolUse("call_a1", "read", obj("{\"path\":\"/session/a.md\"}")),
              new Block.ToolUse("call_b2", "ls", obj("{\"path\":\"/session\"}")));
      assertThat(r.usage()).isEqualTo(new Usage(60, 30, 40, 0));
    }

    @Test
    void defaultModelWhenTheSessionNamesNone() throws Exception {
      wire.enqueue(wire.text("hi"));
      int before = wire.requests().size();
      ModelRequest req =
          new ModelRequest(
              "s",
              1,
              new ModelSpec("openai", null, null),
              null,
              ToolCatalog.ALL,
              List.of(Message.user(List.of(new Block.Text("hello")))));
      ModelResponse r = await(model, req);
      assertThat(wire.requests().get(before).body().path("model").asText())
          .isEqualTo("gpt-default");
      assertThat(wire.requests().get(before).body().path("messages").get(0).path("role").asText())
          .isEqualTo("user");
      assertThat(wire.requests().get(before).problems()).isEmpty();
      assertThat(r.stopReason()).isEqualTo(ModelResponse.StopReason.END_TURN);
      assertThat(r.text()).isEqualTo("hi");
      assertThat(r.usage()).isEqualTo(new Usage(19, 10, 0, 0));
    }

    @Test
    void rateLimitedWithRetryAfterThenSuccess() throws Exception {
      wire.enqueue(OpenAiWire.rateLimited("0.4"), wire.text("after the wait"));
      int before = wire.requests().size();
      long t0 = System.nanoTime();
      ModelResponse r =
          await(retrying, request(List.of(Message.user(List.of(new Block.Text("go"))))));
      long ms = (System.nanoTime() - t0) / 1_000_000;
      assertThat(r.text()).isEqualTo("after the wait");
      assertThat(wire.requests().size() - before).isEqualTo(2);
      assertThat(ms).isGreaterThanOrEqualTo(400);
      // the same request both times
      assertThat(wire.requests().get(before).body())
          .isEqualTo(wire.requests().get(before + 1).body());
    }

    @Test
    void rateLimitClassification() {
      wire.enqueue(
          OpenAiWire.error(
              429,
              "requests",
              "rate_limit_exceeded",
              "slow down",
              Map.of("retry-after-ms", "250")));
      assertThatThrownBy(
              () -> await(model, request(List.of(Message.user(List.of(new Block.Text("go")))))))
          .isInstanceOfSatisfying(
              ModelCallException.class,
              e -> {
                assertThat(e.code()).isEqualTo("rate_limited");
                assertThat(e.retryable()).isTrue();
                assertThat(e.retryAfter()).contains(Duration.ofMillis(250));
                assertThat(e.getMessage()).isEqualTo("openai answered 429: slow down");
              });
    }

    @Test
    void overloadStormExhaustsTheBudget() {
      wire.enqueue(
          OpenAiWire.overloaded(),
          OpenAiWire.overloaded(),
          OpenAiWire.overloaded(),
          OpenAiWire.overloaded());
      int before = wire.requests().size();
      assertThatThrownBy(
              () -> await(retrying, request(List.of(Message.user(List.of(new Block.Text("go")))))))
          .isInstanceOfSatisfying(
              ModelCallException.class,
              e -> {
                assertThat(e.code()).isEqualTo("model_unavailable");
                assertThat(e.retryable()).isFalse();
                assertThat(e.getMessage())
                    .contains("gave up after 3 attempts")
                    .contains("The engine is currently overloaded, please try again later");
              });
      assertThat(wire.requests().size() - before).isEqualTo(3);
    }

    @Test
    void authFailureIsNotRetriedAndNeverShowsTheKey() {
      wire.enqueue(
          OpenAiWire.error(
              401,
              "invalid_request_error",
              "invalid_api_key",
              "Incorrect API key provided: "
                  + OpenAiWire.KEY
                  + ". You can find your API key at https://platform.openai.com/account/api-keys.",
              Map.of()));
      int before = wire.requests().size();
      assertThatThrownBy(
              () -> await(retrying, request(List.of(Message.user(List.of(new Block.Text("go")))))))
          .isInstanceOfSatisfying(
              ModelCallException.class,
              e -> {
                assertThat(e.code()).isEqualTo("model_auth");
                assertThat(e.getMessage())
                    .contains("Incorrect API key provided")
                    .doesNotContain(OpenAiWire.KEY);
              });
      assertThat(wire.requests().size() - before).isEqualTo(1);
    }

    @Test
    void malformedJsonFailsCleanlyWithoutRetry() {
      wire.enqueue(OpenAiWire.raw("{\"id\": \"chatcmpl-1\", \"object\": chat.completion, }"));
      int before = wire.requests().size();
      assertThatThrownBy(
              () -> await(retrying, request(List.of(Message.user(List.of(new Block.Text("go")))))))
          .isInstanceOfSatisfying(
              ModelCallException.class,
              e -> {
                assertThat(e.code()).isEqualTo("model_bad_response");
                assertThat(e.retryable()).isFalse();
              });
      assertThat(wire.requests().size() - before).isEqualTo(1);
    }

    @Test
    void jsonOfTheWrongShapeFailsCleanly() {
      wire.enqueue(OpenAiWire.raw("{\"object\": \"list\", \"data\": []}"));
      assertThatThrownBy(
              () -> await(retrying, request(List.of(Message.user(List.of(new Block.Text("go")))))))
          .isInstanceOfSatisfying(
              ModelCallException.class, e -> assertThat(e.code()).isEqualTo("model_bad_response"));
      wire.enqueue(
          OpenAiWire.raw(
              "{\"id\": \"chatcmpl-2\", \"object\": \"chat.completion\", \"created\": 1, \"model\":"
                  + " \"m\", \"choices\": []}"));
      assertThatThrownBy(
              () -> await(retrying, request(List.of(Message.user(List.of(new Block.Text("go")))))))
          .isInstanceOfSatisfying(
              ModelCallException.class,
              e -> {
                assertThat(e.code()).isEqualTo("model_bad_response");
                assertThat(e.getMessage()).contains("without choices");
              });
    }

    @Test
    void connectionClosedMidBodyIsRetried() throws Exception {
      wire.enqueue(wire.cutOff(), wire.text("whole this time"));
      int before = wire.requests().size();
      ModelResponse r =
          await(retrying, request(List.of(Message.user(List.of(new Block.Text("go"))))));
      assertThat(r.text()).isEqualTo("whole this time");
      assertThat(wire.requests().size() - before).isEqualTo(2);
    }

    @Test
    void connectionClosedMidBodyIsClassifiedRetryable() {
      wire.enqueue(wire.cutOff());
      assertThatThrownBy(
              () -> await(model, request(List.of(Message.user(List.of(new Block.Text("go")))))))
          .isInstanceOfSatisfying(
              ModelCallException.class,
              e -> {
                assertThat(e.retryable()).as(e.getMessage()).isTrue();
                assertThat(e.code()).isIn("model_unavailable", "model_timeout");
              });
    }

    @Test
    void lengthMeansMaxTokens() throws Exception {
      wire.enqueue(wire.length("and then the"));
      ModelResponse r = await(model, request(List.of(Message.user(List.of(new Block.Text("go"))))));
      assertThat(r.stopReason()).isEqualTo(ModelResponse.StopReason.MAX_TOKENS);
      assertThat(r.text()).isEqualTo("and then the");
    }

    @Test
    void unparseableArgumentsBecomeACallTheCatalogRefuses() throws Exception {
      wire.enqueue(
          wire.toolCalls(
              null,
              10,
              0,
              new Call("call_bad", "write", "{\"path\": \"/session/a.md\", \"content\": \"x")));
      ModelResponse r = await(model, request(List.of(Message.user(List.of(new Block.Text("go"))))));
      assertThat(r.toolCalls()).hasSize(1);
      Block.ToolUse use = r.toolCalls().get(0);
      assertThat(use.id()).isEqualTo("call_bad");
      assertThat(use.input().path(OpenAiModel.UNPARSEABLE).asText())
          .isEqualTo("{\"path\": \"/session/a.md\", \"content\": \"x");
      assertThatThrownBy(() -> ToolCatalog.parse(use.name(), use.input()))
          .isInstanceOf(ToolCatalog.InvalidToolCallException.class)
          .hasMessageContaining(OpenAiModel.UNPARSEABLE);
    }

    @Test
    void requestTimeoutIsRetryable() {
      try (OpenAiWire slow = new OpenAiWire()) {
        OpenAiModel impatient =
            new OpenAiModel(settings(slow.baseUrl(), OpenAiWire.KEY, Duration.ofMillis(300)));
        slow.enqueue(OpenAiWire.delayed(1500, slow.text("too late")));
        assertThatThrownBy(
                () ->
                    await(impatient, request(List.of(Message.user(List.of(new Block.Text("go")))))))
            .isInstanceOfSatisfying(
                ModelCallException.class,
                e -> {
                  assertThat(e.code()).isEqualTo("model_timeout");
                  assertThat(e.retryable()).isTrue();
                });
      } catch (java.io.IOException e) {
        throw new java.io.UncheckedIOException(e);
      }
    }

    @Test
    void okHttpAllowsAThousandCallsToOneHost() throws Exception {
      assertThat(model.http().dispatcher().getMaxRequestsPerHost()).isEqualTo(1000);
      assertThat(model.http().dispatcher().getMaxRequests()).isEqualTo(1000);
      // More calls in flight at once than OkHttp's default of 64 per host: each answer waits until
      // all arrived.
      int n = 150;
      CountDownLatch arrived = new CountDownLatch(n);
      OpenAiWire.Reply gate =
          (ex, req) -> {
            arrived.countDown();
            try {
              arrived.await(20, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
              Thread.currentThread().interrupt();
            }
            wire.text("together").write(ex, req);
          };
      for (int i = 0; i < n; i++) wire.enqueue(gate);
      List<CompletableFuture<ModelResponse>> calls = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        calls.add(
            model
                .complete(request(List.of(Message.user(List.of(new Block.Text("go " + i))))))
                .toCompletableFuture());
      }
      CompletableFuture.allOf(calls.toArray(CompletableFuture[]::new)).get(30, TimeUnit.SECONDS);
      assertThat(arrived.getCount()).isZero();
      assertThat(calls).allSatisfy(c -> assertThat(c.join().text()).isEqualTo("together"));
    }
  }

  @Nested
  @TestInstance(TestInstance.Lifecycle.PER_CLASS)
  class Sessions {
    OpenAiWire wire;
    InProcessNode node;
    ApiClient acme;

    @BeforeAll
    void start() throws Exception {
      wire = new OpenAiWire();
      node = InProcessNode.start("", nodeOverrides(wire));
      acme = node.client(node.admin().createOrgWithKey("acme"));
    }

    @AfterAll
    void stop() {
      if (node != null) node.close();
      if (wire != null) wire.close();
    }

    @BeforeEach
    void clean() {
      wire.clearReplies();
    }

    String create(String prompt) {
      Map<String, Object> body = new LinkedHashMap<>();
      body.put("prompt", prompt);
      body.put("user", "alice");
      body.put("maxTurns", 10);
      body.put("model", Map.of("provider", "openai", "name", "gpt-test"));
      return ScriptedSessions.create(acme, body);
    }

    JsonNode awaitEnd(String id) {
      long deadline = System.nanoTime() + WAIT.toNanos();
      while (System.nanoTime() < deadline) {
        JsonNode s = acme.get("/v1/sessions/" + id).json();
        String status = s.path("status").asText();
        if (status.equals("completed") || status.equals("failed") || status.equals("cancelled"))
          return s;
        ScriptedSessions.sleep(50);
      }
      throw new AssertionError("session " + id + " did not end within " + WAIT);
    }

    List<String> types(String id) {
      List<String> out = new ArrayList<>();
      for (SseEvent e : acme.events("/v1/sessions/" + id + "/events", WAIT, "Last-Event-ID", "0"))
        out.add(e.event());
      return out;
    }

    JsonNode transcript(String id) {
      return acme.get("/v1/sessions/" + id + "/transcript").json().path("messages");
    }

    @Test
    void aFollowedSessionSeesTheAnswersStreamAsModelDeltas() {
      wire.enqueue(
          wire.text("Ready when you are."),
          wire.toolCalls(
              "Writing it down now.",
              50,
              0,
              new Call(
                  "call_s1",
                  "write",
                  "{\"path\":\"/session/streamed.md\",\"content\":\"piece by piece\"}")),
          wire.text("Streamed, and all done."));
      int before = wire.requests().size();
      Map<String, Object> body = new LinkedHashMap<>();
      body.put("prompt", "wait for me");
      body.put("keepOpen", true);
      body.put("model", Map.of("provider", "openai", "name", "gpt-test"));
      String id = ScriptedSessions.create(acme, body);
      ScriptedSessions.awaitStatus(acme, id, "waiting", WAIT);

      List<SseEvent> events =
          StreamedSessions.followWhileAnswering(
              acme, id, "write it", "Streamed, and all done.", WAIT);

      StreamedSessions.assertDeltasAddUp(events);
      assertThat(events)
          .filteredOn(e -> e.event().equals("model.delta"))
          .hasSizeGreaterThanOrEqualTo(6);
      assertThat(events).filteredOn(e -> e.event().equals("model.responded")).hasSize(2);
      List<OpenAiWire.Recorded> reqs = wire.requests().subList(before, wire.requests().size());
      assertThat(reqs)
          .extracting(r -> r.body().path("stream").asBoolean(false))
          .containsExactly(false, true, true);
      assertThat(wire.problems()).isEmpty();
    }

    @Test
    void multiToolTurnWithAToolError() {
      wire.enqueue(
          wire.toolCalls(
              "Writing and reading.",
              100,
              40,
              new Call(
                  "call_w1", "write", "{\"path\":\"/session/notes.md\",\"content\":\"hello\"}"),
              new Call("call_r2", "read", "{\"path\":\"/session/missing.md\"}")),
          wire.text("All done."));
      int before = wire.requests().size();
      String id = create("write a note, then read a missing file");
      JsonNode s = awaitEnd(id);

      assertThat(s.path("status").asText()).as(s.toString()).isEqualTo("completed");
      assertThat(s.path("result").asText()).isEqualTo("All done.");
      assertThat(s.path("turns").asInt()).isEqualTo(2);
      assertThat(s.path("usage").path("inputTokens").asLong()).isEqualTo(60 + 19);
      assertThat(s.path("usage").path("outputTokens").asLong()).isEqualTo(30 + 10);
      assertThat(s.path("usage").path("cacheReadTokens").asLong()).isEqualTo(40);

      List<ScriptedSessions.ToolCall> calls = ScriptedSessions.toolCalls(acme, id);
      assertThat(calls)
          .extracting(ScriptedSessions.ToolCall::id)
          .containsExactly("call_w1", "call_r2");
      assertThat(calls.get(0).isError()).isFalse();
      assertThat(calls.get(1).isError()).isTrue();
      assertThat(calls).allSatisfy(c -> assertThat(c.results()).isEqualTo(1));

      List<OpenAiWire.Recorded> reqs = wire.requests().subList(before, wire.requests().size());
      assertThat(reqs).hasSize(2);
      assertThat(wire.problems()).isEmpty();
      JsonNode second = reqs.get(1).body().path("messages");
      List<String> roles = new ArrayList<>();
      second.forEach(x -> roles.add(x.path("role").asText()));
      assertThat(roles).containsExactly("system", "user", "assistant", "tool", "tool");
      assertThat(second.get(3).path("tool_call_id").asText()).isEqualTo("call_w1");
      assertThat(second.get(4).path("tool_call_id").asText()).isEqualTo("call_r2");
      assertThat(second.get(4).path("content").asText()).startsWith("ERROR: ");
      assertThat(reqs.get(0).body().path("model").asText()).isEqualTo("gpt-test");
      assertThat(types(id))
          .containsSubsequence(
              "session.started",
              "model.responded",
              "tool.completed",
              "tool.completed",
              "model.responded",
              "session.completed");
    }

    @Test
    void rateLimitedThenSuccessRecordsOneTurn() {
      wire.enqueue(OpenAiWire.rateLimited("0.2"), wire.text("patience pays"));
      int before = wire.requests().size();
      String id = create("hello");
      JsonNode s = awaitEnd(id);
      assertThat(s.path("status").asText()).as(s.toString()).isEqualTo("completed");
      assertThat(s.path("turns").asInt()).isEqualTo(1);
      assertThat(wire.requests().size() - before).isEqualTo(2);
      assertThat(types(id).stream().filter("model.responded"::equals).count()).isEqualTo(1);
      assertThat(transcript(id)).hasSize(2);
    }

    @Test
    void overloadStormFailsTheSessionWithTheProvidersMessage() {
      for (int i = 0; i < 5; i++) wire.enqueue(OpenAiWire.overloaded());
      String id = create("hello");
      JsonNode s = awaitEnd(id);
      assertThat(s.path("status").asText()).isEqualTo("failed");
      assertThat(s.path("error").path("code").asText()).isEqualTo("model_unavailable");
      assertThat(s.path("error").path("message").asText())
          .contains("gave up after 3 attempts")
          .contains("The engine is currently overloaded");
      assertThat(types(id)).contains("session.failed").doesNotContain("model.responded");
      assertThat(transcript(id)).hasSize(1);
    }

    @Test
    void malformedJsonFailsTheSessionCleanly() {
      wire.enqueue(
          OpenAiWire.raw(
              "{\"id\": \"chatcmpl-9\", \"choices\": [{\"index\": 0, \"message\": {\"role\":"
                  + " \"assistant\", \"content\": \"hi\"}, }]"));
      String id = create("hello");
      JsonNode s = awaitEnd(id);
      assertThat(s.path("status").asText()).isEqualTo("failed");
      assertThat(s.path("error").path("code").asText()).isEqualTo("model_bad_response");
      JsonNode t = transcript(id);
      assertThat(t).hasSize(1);
      assertThat(t.get(0).path("role").asText()).isEqualTo("user");
    }

    @Test
    void cutOffAtMaxTokensFailsTheSession() {
      wire.enqueue(wire.length("Once upon a"));
      String id = create("tell me a long story");
      JsonNode s = awaitEnd(id);
      assertThat(s.path("status").asText()).isEqualTo("failed");
      assertThat(s.path("error").path("code").asText()).isEqualTo("max_tokens");
    }

    @Test
    void connectionResetMidResponseIsRetried() {
      wire.enqueue(wire.cutOff(), wire.text("second time lucky"));
      String id = create("hello");
      JsonNode s = awaitEnd(id);
      assertThat(s.path("status").asText()).as(s.toString()).isEqualTo("completed");
      assertThat(s.path("result").asText()).isEqualTo("second time lucky");
      assertThat(types(id).stream().filter("model.responded"::equals).count()).isEqualTo(1);
    }

    @Test
    void unparseableToolArgumentsAreAToolErrorAndTheSessionGoesOn() {
      wire.enqueue(
          wire.toolCalls(
              null,
              50,
              0,
              new Call("call_cut", "write", "{\"path\": \"/session/a.md\", \"content\": \"x")),
          wire.text("Sorry, fixed."));
      int before = wire.requests().size();
      String id = create("write something");
      JsonNode s = awaitEnd(id);
      assertThat(s.path("status").asText()).as(s.toString()).isEqualTo("completed");
      List<ScriptedSessions.ToolCall> calls = ScriptedSessions.toolCalls(acme, id);
      assertThat(calls).hasSize(1);
      assertThat(calls.get(0).isError()).isTrue();
      assertThat(calls.get(0).content()).contains(OpenAiModel.UNPARSEABLE);
      JsonNode second = wire.requests().get(before + 1).body().path("messages");
      assertThat(second.get(second.size() - 1).path("role").asText()).isEqualTo("tool");
      assertThat(second.get(second.size() - 1).path("content").asText()).startsWith("ERROR: ");
      assertThat(wire.problems()).isEmpty();
    }
  }

  static Map<String, Object> nodeOverrides(OpenAiWire wire) {
    Map<String, Object> o = new LinkedHashMap<>();
    o.put("outboard.model.openai.base-url", wire.baseUrl());
    o.put("outboard.model.openai.api-key", OpenAiWire.KEY);
    o.put("outboard.model.request-timeout", "10s");
    o.put("outboard.model.retry.max-attempts", 3);
    o.put("outboard.model.retry.base-delay", "20ms");
    o.put("outboard.model.retry.max-delay", "100ms");
    o.put("outboard.model.retry.max-retry-after", "2s");
    return o;
  }
}
