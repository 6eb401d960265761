package dev.outboard.model;

import static dev.outboard.model.AnthropicWire.error;
import static dev.outboard.model.AnthropicWire.message;
import static dev.outboard.model.AnthropicWire.text;
import static dev.outboard.model.AnthropicWire.toolUse;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.typesafe.config.ConfigFactory;
import dev.outboard.Json;
import dev.outboard.tools.ToolCatalog;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Streamed Anthropic calls against {@link AnthropicWire}'s event streams: the deltas, the answer
 * (the same as the unstreamed call's), and the failures (the same classification, plus errors that
 * arrive mid-stream).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class AnthropicModelStreamingTest {
  static final String KEY = AnthropicModelTest.KEY;
  static final RetryPolicy FAST =
      new RetryPolicy(4, Duration.ofMillis(10), Duration.ofMillis(50), Duration.ofSeconds(5));

  AnthropicWire wire;
  AnthropicModel model;
  RetryingModelClient retrying;

  @BeforeAll
  void start() throws Exception {
    wire = new AnthropicWire(KEY);
    model =
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
                        "10s",
                        "max-concurrent-requests",
                        1000)),
                "anthropic"));
    retrying = new RetryingModelClient(model, FAST);
  }

  @AfterAll
  void stop() {
    if (model != null) model.close();
    if (wire != null) wire.close();
  }

  @BeforeEach
  void resetWire() {
    wire.reset();
  }

  @AfterEach
  void everyRequestHadTheDocumentedShape() {
    assertThat(wire.violations()).isEmpty();
  }

  private static JsonNode json(String s) {
    try {
      return Json.MAPPER.readTree(s.replace('\'', '"'));
    } catch (Exception e) {
      throw new IllegalArgumentException(s, e);
    }
  }

  private static ModelRequest request() {
    return new ModelRequest(
        "s-1",
        1,
        new ModelSpec("anthropic", "claude-test", null),
        "You are a test agent.",
        ToolCatalog.ALL,
        List.of(Message.user(List.of(new Block.Text("read the notes, then write the summary")))));
  }

  static final JsonNode READ_INPUT = json("{'path': '/session/notes.md'}");
  static final JsonNode WRITE_INPUT =
      json(
          "{'path': '/session/summary.md', 'content': 'Three notes: \\u00e9t\\u00e9,"
              + " \\ud83d\\ude80, done.'}");

  /** Text, then two tool calls. */
  static Function<JsonNode, AnthropicWire.Reply> textAndTools() {
    return req ->
        message(
            req,
            List.of(
                text("Reading the notes, then writing the summary."),
                toolUse("toolu_01R", "read", READ_INPUT),
                toolUse("toolu_01W", "write", WRITE_INPUT)),
            "tool_use");
  }

  @Test
  void textAndToolInputArriveAsDeltasOfTheirBlocksInOrder() throws Exception {
    wire.enqueue(textAndTools());
    DeltaRecorder deltas = new DeltaRecorder();
    AtomicInteger seenWhenDone = new AtomicInteger(-1);

    ModelResponse r =
        ModelCalls.await(
            model
                .complete(request(), deltas)
                .toCompletableFuture()
                .thenApply(
                    response -> {
                      seenWhenDone.set(deltas.all().size());
                      return response;
                    }));

    assertThat(wire.requests().get(0).body().path("stream").asBoolean()).isTrue();
    assertThat(r.content())
        .containsExactly(
            new Block.Text("Reading the notes, then writing the summary."),
            new Block.ToolUse("toolu_01R", "read", READ_INPUT),
            new Block.ToolUse("toolu_01W", "write", WRITE_INPUT));
    // the text in (at least) the wire's three pieces, block 0
    assertThat(deltas.texts(0)).hasSizeGreaterThanOrEqualTo(3);
    assertThat(deltas.text(0)).isEqualTo("Reading the notes, then writing the summary.");
    // each tool call: announced by content_block_start (empty piece), then input_json_delta pieces
    assertThat(deltas.toolInputs(1))
        .allSatisfy(
            d -> {
              assertThat(d.toolUseId()).isEqualTo("toolu_01R");
              assertThat(d.name()).isEqualTo("read");
            });
    assertThat(deltas.toolInputs(1).get(0).partialJson()).isEmpty();
    assertThat(deltas.toolInputs(1).stream().filter(d -> !d.partialJson().isEmpty()).count())
        .isGreaterThanOrEqualTo(2);
    assertThat(deltas.toolInput(1)).isEqualTo(READ_INPUT.toString());
    assertThat(deltas.toolInputs(2))
        .allSatisfy(
            d -> {
              assertThat(d.toolUseId()).isEqualTo("toolu_01W");
              assertThat(d.name()).isEqualTo("write");
            });
    assertThat(deltas.toolInput(2)).isEqualTo(WRITE_INPUT.toString());
    assertThat(deltas.all()).allSatisfy(d -> assertThat(d.index()).isBetween(0, 2));
    deltas.assertRebuilds(r);
    // all of them before the answer, on the SDK's threads
    assertThat(seenWhenDone.get()).isEqualTo(deltas.all().size());
    assertThat(deltas.threads()).doesNotContain(Thread.currentThread().getName());
  }

  @Test
  void aStreamedAnswerIsTheUnstreamedAnswer() throws Exception {
    wire.fallback(textAndTools()).minCacheTokens(1);
    // a cold cache for both: each writes the prefix
    ModelResponse plainCold = ModelCalls.plain(model, request());
    wire.clearCache();
    DeltaRecorder deltas = new DeltaRecorder();
    ModelResponse streamedCold = ModelCalls.streamed(model, request(), deltas);
    assertThat(streamedCold).isEqualTo(plainCold);
    assertThat(streamedCold.usage().cacheWriteTokens()).isPositive();
    assertThat(streamedCold.usage().outputTokens()).isPositive();
    AnthropicWire.Recorded cold = wire.requests().get(1);
    assertThat(streamedCold.usage())
        .isEqualTo(
            new Usage(
                cold.inputTokens(),
                plainCold.usage().outputTokens(),
                cold.cacheRead(),
                cold.cacheWrite()));
    deltas.assertRebuilds(streamedCold);
    // a warm cache for both: each reads it
    ModelResponse streamedWarm = ModelCalls.streamed(model, request(), new DeltaRecorder());
    ModelResponse plainWarm = ModelCalls.plain(model, request());
    assertThat(streamedWarm).isEqualTo(plainWarm);
    assertThat(streamedWarm.usage().cacheReadTokens())
        .isPositive()
        .isEqualTo(wire.requests().get(2).cacheRead());
    // the same request, but for "stream": true
    ObjectNode streamedBody = wire.requests().get(1).body().deepCopy();
    assertThat(streamedBody.remove("stream").asBoolean()).isTrue();
    assertThat(streamedBody).isEqualTo(wire.requests().get(0).body());
  }

  @Test
  void stopReasonsAreTheUnstreamedOnesAndACutToolCallIsDroppedToo() throws Exception {
    wire.fallback(
        req ->
            message(
                req,
                List.of(
                    text("writing"),
                    toolUse("toolu_cut", "write", json("{'path': '/session/x.md'}"))),
                "max_tokens"));
    DeltaRecorder deltas = new DeltaRecorder();
    ModelResponse r = ModelCalls.streamed(model, request(), deltas);
    wire.clearCache(); // the tool definitions pass the cache minimum: both calls see a cold cache
    assertThat(r).isEqualTo(ModelCalls.plain(model, request()));
    assertThat(r.stopReason()).isEqualTo(ModelResponse.StopReason.MAX_TOKENS);
    assertThat(r.toolCalls()).isEmpty();
    // the cut call was streamed as it came, and is not in the answer
    assertThat(deltas.toolInputs(1))
        .isNotEmpty()
        .allSatisfy(d -> assertThat(d.toolUseId()).isEqualTo("toolu_cut"));

    wire.fallback(req -> message(req, List.of(text("bye")), "stop_sequence"));
    ModelResponse end = ModelCalls.streamed(model, request(), new DeltaRecorder());
    assertThat(end).isEqualTo(ModelCalls.plain(model, request()));
    assertThat(end.stopReason()).isEqualTo(ModelResponse.StopReason.END_TURN);
  }

  @Test
  void anErrorEventMidStreamIsARetryableFailure() throws Exception {
    wire.enqueue(AnthropicWire.streamError("overloaded_error", "Overloaded"));
    DeltaRecorder deltas = new DeltaRecorder();
    ModelCallException e = ModelCalls.failure(model, request(), deltas);
    assertThat(e.code()).isEqualTo("overloaded");
    assertThat(e.retryable()).isTrue();
    assertThat(e.getMessage())
        .isEqualTo("anthropic's stream failed mid-way: overloaded_error: Overloaded");
    assertThat(deltas.text(0)).isNotEmpty(); // it broke off after the answer had begun

    wire.enqueue(AnthropicWire.streamError("api_error", "Internal server error"));
    ModelCallException api = ModelCalls.failure(model, request(), new DeltaRecorder());
    assertThat(api.code()).isEqualTo("model_unavailable");
    assertThat(api.retryable()).isTrue();
    assertThat(api.getMessage()).contains("mid-way").contains("Internal server error");
  }

  @Test
  void aRetriedStreamStartsItsDeltasAgainFromTheFirstBlock() throws Exception {
    wire.enqueue(AnthropicWire.streamError("overloaded_error", "Overloaded"));
    DeltaRecorder deltas = new DeltaRecorder();
    ModelResponse r = ModelCalls.streamed(retrying, request(), deltas);
    assertThat(r.text()).isEqualTo("done");
    assertThat(wire.requests()).hasSize(2);
    // the broken-off attempt's text, then the whole answer of the second, both as block 0
    assertThat(deltas.all()).allSatisfy(d -> assertThat(d.index()).isZero());
    String all = deltas.text(0);
    assertThat(all).endsWith("done");
    String firstAttempt = all.substring(0, all.length() - "done".length());
    assertThat(firstAttempt).isNotEmpty();
    assertThat("this answer breaks off half-way through")
        .startsWith(firstAttempt)
        .isNotEqualTo(firstAttempt);
  }

  @Test
  void aConnectionDroppedMidStreamIsRetryable() throws Exception {
    wire.enqueue(AnthropicWire.cutOff(700));
    DeltaRecorder deltas = new DeltaRecorder();
    ModelCallException e = ModelCalls.failure(model, request(), deltas);
    assertThat(e.retryable()).as(e.getMessage()).isTrue();
    assertThat(e.code()).isEqualTo("model_unreachable");
    assertThat(deltas.all()).isNotEmpty();

    wire.enqueue(AnthropicWire.cutOff(700));
    assertThat(ModelCalls.streamed(retrying, request(), new DeltaRecorder()).text())
        .isEqualTo("done");
  }

  @Test
  void httpErrorsOnAStreamingRequestAreClassifiedAsUnstreamed() throws Exception {
    List<AnthropicWire.Reply> errors =
        List.of(
            error(429, "rate_limit_error", "slow down", Map.of("retry-after-ms", "300")),
            error(529, "overloaded_error", "Overloaded", Map.of()),
            error(500, "api_error", "Internal server error", Map.of()),
            error(400, "invalid_request_error", "messages: roles must alternate", Map.of()),
            error(401, "authentication_error", "invalid x-api-key " + KEY, Map.of()));
    for (AnthropicWire.Reply reply : errors) {
      wire.enqueue(reply).enqueue(reply);
      ModelCallException plain = ModelCalls.failure(model, request(), null);
      ModelCallException streamed = ModelCalls.failure(model, request(), new DeltaRecorder());
      assertThat(streamed.code()).as(reply.body()).isEqualTo(plain.code());
      assertThat(streamed.retryable()).as(reply.body()).isEqualTo(plain.retryable());
      assertThat(streamed.retryAfter()).as(reply.body()).isEqualTo(plain.retryAfter());
      assertThat(streamed.getMessage())
          .as(reply.body())
          .isEqualTo(plain.getMessage())
          .doesNotContain(KEY);
    }
    wire.enqueue(errors.get(0));
    ModelCallException limited = ModelCalls.failure(model, request(), new DeltaRecorder());
    assertThat(limited.code()).isEqualTo("rate_limited");
    assertThat(limited.retryable()).isTrue();
    assertThat(limited.retryAfter()).contains(Duration.ofMillis(300));
    assertThat(limited.getMessage()).isEqualTo("anthropic answered 429: slow down");
    wire.enqueue(errors.get(3));
    ModelCallException rejected = ModelCalls.failure(model, request(), new DeltaRecorder());
    assertThat(rejected.code()).isEqualTo("model_request_rejected");
    assertThat(rejected.retryable()).isFalse();
  }

  @Test
  void aConsumerThatThrowsDoesNotBreakTheCall() throws Exception {
    wire.fallback(textAndTools());
    AtomicInteger calls = new AtomicInteger();
    ModelResponse r =
        ModelCalls.streamed(
            model,
            request(),
            d -> {
              calls.incrementAndGet();
              throw new IllegalStateException("the consumer is broken");
            });
    wire.clearCache(); // the tool definitions pass the cache minimum: both calls see a cold cache
    assertThat(r).isEqualTo(ModelCalls.plain(model, request()));
    assertThat(calls.get()).as("deltas offered after the first throw").isGreaterThan(1);
  }
}
