package dev.outboard.model;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.outboard.model.OpenAiWire.Call;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Streamed OpenAI chat completions against {@link OpenAiWire}'s chunk streams: the deltas and their
 * block indexes, the answer (the same as the unstreamed call's), and the failures (the same
 * classification, plus errors and cuts that arrive mid-stream).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class OpenAiModelStreamingTest {
  private static final RetryPolicy FAST =
      new RetryPolicy(3, Duration.ofMillis(20), Duration.ofMillis(100), Duration.ofSeconds(5));
  private static final String READ_ARGS = "{\"path\": \"/session/notes.md\"}";
  private static final String WRITE_ARGS =
      "{\"path\":\"/session/summary.md\",\"content\":\"Three notes: \u00e9t\u00e9, \ud83d\ude80,"
          + " done.\"}";

  OpenAiWire wire;
  OpenAiModel model;
  ModelClient retrying;

  @BeforeAll
  void start() throws Exception {
    wire = new OpenAiWire();
    model =
        new OpenAiModel(
            OpenAiModelTest.settings(wire.baseUrl(), OpenAiWire.KEY, Duration.ofSeconds(10)));
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

  @AfterEach
  void everyRequestHadTheDocumentedShape() {
    assertThat(wire.problems()).isEmpty();
  }

  private static ModelRequest request() {
    return OpenAiModelTest.request(
        List.of(Message.user(List.of(new Block.Text("read the notes, then write the summary")))));
  }

  private OpenAiWire.Reply textAndTools() {
    return wire.toolCalls(
        "Reading the notes, then writing the summary.",
        100,
        40,
        new Call("call_r1", "read", READ_ARGS),
        new Call("call_w2", "write", WRITE_ARGS));
  }

  private static JsonNode obj(String json) {
    return OpenAiModelTest.obj(json);
  }

  private JsonNode lastBody() {
    List<OpenAiWire.Recorded> all = wire.requests();
    return all.get(all.size() - 1).body();
  }

  @Test
  void textAndToolCallsArriveAsDeltasOfTheirBlocksInOrder() throws Exception {
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

    JsonNode body = lastBody();
    assertThat(body.path("stream").asBoolean()).isTrue();
    assertThat(body.path("stream_options").path("include_usage").asBoolean()).isTrue();
    assertThat(r.content())
        .containsExactly(
            new Block.Text("Reading the notes, then writing the summary."),
            new Block.ToolUse("call_r1", "read", obj(READ_ARGS)),
            new Block.ToolUse("call_w2", "write", obj(WRITE_ARGS)));
    assertThat(r.usage()).isEqualTo(new Usage(60, 30, 40, 0)); // from the include_usage chunk
    // text is block 0, in (at least) the wire's three pieces
    assertThat(deltas.texts(0)).hasSizeGreaterThanOrEqualTo(3);
    assertThat(deltas.text(0)).isEqualTo("Reading the notes, then writing the summary.");
    // tool call i is block i + 1 (text came first), with the id and name of its first chunk on
    // every piece
    assertThat(deltas.toolInputs(1))
        .allSatisfy(
            d -> {
              assertThat(d.toolUseId()).isEqualTo("call_r1");
              assertThat(d.name()).isEqualTo("read");
            });
    assertThat(deltas.toolInputs(1).stream().filter(d -> !d.partialJson().isEmpty()).count())
        .isGreaterThanOrEqualTo(2);
    assertThat(deltas.toolInput(1)).isEqualTo(READ_ARGS);
    assertThat(deltas.toolInputs(2))
        .allSatisfy(
            d -> {
              assertThat(d.toolUseId()).isEqualTo("call_w2");
              assertThat(d.name()).isEqualTo("write");
            });
    assertThat(deltas.toolInput(2)).isEqualTo(WRITE_ARGS);
    assertThat(deltas.all()).allSatisfy(d -> assertThat(d.index()).isBetween(0, 2));
    deltas.assertRebuilds(r);
    assertThat(seenWhenDone.get()).isEqualTo(deltas.all().size());
    assertThat(deltas.threads()).doesNotContain(Thread.currentThread().getName());
  }

  @Test
  void toolCallsWithoutTextStartAtBlockZero() throws Exception {
    wire.enqueue(
        wire.toolCalls(
            null,
            10,
            0,
            new Call("call_a", "ls", "{\"path\":\"/session\"}"),
            new Call("call_b", "read", READ_ARGS)));
    DeltaRecorder deltas = new DeltaRecorder();
    ModelResponse r = ModelCalls.streamed(model, request(), deltas);
    assertThat(r.content())
        .containsExactly(
            new Block.ToolUse("call_a", "ls", obj("{\"path\":\"/session\"}")),
            new Block.ToolUse("call_b", "read", obj(READ_ARGS)));
    assertThat(deltas.texts(0)).isEmpty();
    assertThat(deltas.toolInputs(0))
        .extracting(ModelDelta.ToolInput::toolUseId)
        .containsOnly("call_a");
    assertThat(deltas.toolInputs(1))
        .extracting(ModelDelta.ToolInput::toolUseId)
        .containsOnly("call_b");
    deltas.assertRebuilds(r);
  }

  @Test
  void aStreamedAnswerIsTheUnstreamedAnswer() throws Exception {
    for (OpenAiWire.Reply reply :
        List.of(
            textAndTools(),
            wire.text("just text"),
            wire.length("and then the"),
            wire.toolCalls(
                null,
                10,
                0,
                new Call("call_bad", "write", "{\"path\": \"/session/a.md\", \"content\": \"x")))) {
      wire.enqueue(reply, reply);
      ModelResponse unstreamed = ModelCalls.plain(model, request());
      JsonNode plainBody = lastBody();
      DeltaRecorder deltas = new DeltaRecorder();
      ModelResponse r = ModelCalls.streamed(model, request(), deltas);
      assertThat(r).isEqualTo(unstreamed);
      if (r.toolCalls().stream().noneMatch(u -> u.input().has(OpenAiModel.UNPARSEABLE)))
        deltas.assertRebuilds(r);
      // the same request, but for the two stream fields
      ObjectNode streamedBody = lastBody().deepCopy();
      assertThat(streamedBody.remove("stream").asBoolean()).isTrue();
      assertThat(streamedBody.remove("stream_options")).isEqualTo(obj("{\"include_usage\": true}"));
      assertThat(streamedBody).isEqualTo(plainBody);
    }
  }

  @Test
  void anErrorMidStreamIsARetryableFailure() throws Exception {
    wire.enqueue(wire.streamError());
    DeltaRecorder deltas = new DeltaRecorder();
    ModelCallException e = ModelCalls.failure(model, request(), deltas);
    assertThat(e.code()).isEqualTo("model_unavailable");
    assertThat(e.retryable()).isTrue();
    assertThat(e.getMessage())
        .isEqualTo(
            "openai's stream failed mid-way: server_error: The server had an error while processing"
                + " your request. Sorry about that!");
    assertThat(deltas.text(0)).isNotEmpty(); // it broke off after the answer had begun

    wire.enqueue(wire.streamError());
    DeltaRecorder retried = new DeltaRecorder();
    assertThat(ModelCalls.streamed(retrying, request(), retried).text()).isEqualTo("done");
    // the broken-off attempt's text, then the second attempt's, both as block 0
    assertThat(retried.all()).allSatisfy(d -> assertThat(d.index()).isZero());
    assertThat(retried.text(0)).endsWith("done").hasSizeGreaterThan("done".length());
  }

  @Test
  void aConnectionCutMidStreamIsRetryable() throws Exception {
    wire.enqueue(wire.streamCutOff());
    DeltaRecorder deltas = new DeltaRecorder();
    ModelCallException e = ModelCalls.failure(model, request(), deltas);
    assertThat(e.retryable()).as(e.getMessage()).isTrue();
    assertThat(e.code()).isIn("model_unavailable", "model_timeout");
    assertThat(deltas.all()).isNotEmpty();

    wire.enqueue(wire.streamCutOff());
    int before = wire.requests().size();
    assertThat(ModelCalls.streamed(retrying, request(), new DeltaRecorder()).text())
        .isEqualTo("done");
    assertThat(wire.requests().size() - before).isEqualTo(2);
  }

  @Test
  void httpErrorsOnAStreamingRequestAreClassifiedAsUnstreamed() throws Exception {
    List<OpenAiWire.Reply> errors =
        List.of(
            OpenAiWire.error(
                429,
                "requests",
                "rate_limit_exceeded",
                "slow down",
                Map.of("retry-after-ms", "250")),
            OpenAiWire.overloaded(),
            OpenAiWire.error(
                400,
                "invalid_request_error",
                null,
                "Invalid 'messages[1]': unknown role",
                Map.of()),
            OpenAiWire.error(
                401,
                "invalid_request_error",
                "invalid_api_key",
                "Incorrect API key provided: " + OpenAiWire.KEY,
                Map.of()));
    for (OpenAiWire.Reply reply : errors) {
      wire.enqueue(reply, reply);
      ModelCallException unstreamed = ModelCalls.failure(model, request(), null);
      ModelCallException e = ModelCalls.failure(model, request(), new DeltaRecorder());
      assertThat(e.code()).as(unstreamed.getMessage()).isEqualTo(unstreamed.code());
      assertThat(e.retryable()).as(unstreamed.getMessage()).isEqualTo(unstreamed.retryable());
      assertThat(e.retryAfter()).as(unstreamed.getMessage()).isEqualTo(unstreamed.retryAfter());
      assertThat(e.getMessage()).isEqualTo(unstreamed.getMessage()).doesNotContain(OpenAiWire.KEY);
    }
    wire.enqueue(errors.get(0));
    ModelCallException limited = ModelCalls.failure(model, request(), new DeltaRecorder());
    assertThat(limited.code()).isEqualTo("rate_limited");
    assertThat(limited.retryable()).isTrue();
    assertThat(limited.retryAfter()).contains(Duration.ofMillis(250));
    assertThat(limited.getMessage()).isEqualTo("openai answered 429: slow down");
    wire.enqueue(errors.get(2));
    ModelCallException rejected = ModelCalls.failure(model, request(), new DeltaRecorder());
    assertThat(rejected.code()).isEqualTo("model_request_rejected");
    assertThat(rejected.retryable()).isFalse();
  }

  @Test
  void aConsumerThatThrowsDoesNotBreakTheCall() throws Exception {
    wire.enqueue(textAndTools(), textAndTools());
    AtomicInteger calls = new AtomicInteger();
    ModelResponse r =
        ModelCalls.streamed(
            model,
            request(),
            d -> {
              calls.incrementAndGet();
              throw new IllegalStateException("the consumer is broken");
            });
    assertThat(r).isEqualTo(ModelCalls.plain(model, request()));
    assertThat(calls.get()).as("deltas offered after the first throw").isGreaterThan(1);
  }
}
