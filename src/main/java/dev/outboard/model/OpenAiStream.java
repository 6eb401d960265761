package dev.outboard.model;

import com.openai.core.http.AsyncStreamResponse;
import com.openai.helpers.ChatCompletionAccumulator;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionChunk;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.services.async.chat.ChatCompletionServiceAsync;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;

/**
 * One streamed chat completion: the SDK's chunks are folded by its {@link
 * ChatCompletionAccumulator} into the same {@link ChatCompletion} a non-streaming call returns, and
 * passed on as {@link ModelDelta}s while they arrive. The caller converts the completion exactly as
 * it converts a non-streaming one.
 *
 * <p><b>Block indexes</b> follow {@link OpenAiModel#toResponse}, which puts the text block first
 * and then the tool calls in order. Text ({@code delta.content}, or {@code delta.refusal} while no
 * content has come) is block 0. Tool call {@code i} (OpenAI's {@code tool_calls[].index}) is block
 * {@code i + 1} if text had arrived before the first tool-call delta, else block {@code i}: the
 * offset is fixed at the first tool-call delta, since a streamed block's index cannot change
 * afterwards. Servers send text before tool calls; one that sent text only after a tool call had
 * begun would get indexes that differ from the final answer's (and clash with tool call 0). Every
 * tool-call delta carries the call's id and name (from its first chunk; the non-streaming fallback
 * id {@code call_<completion id>_<i>} if the server sent none) and its piece of {@code
 * function.arguments}, possibly empty (the first piece announces the call).
 *
 * <p>Failures complete the future with the SDK's own exception (an HTTP status, an {@code error}
 * object in the stream as {@link com.openai.errors.SseException}, a dropped connection), which
 * {@link OpenAiModel#classify} turns into a {@link ModelCallException}. A stream that ends without
 * a {@code finish_reason} was cut off and is retryable.
 */
final class OpenAiStream extends StreamedCall<ChatCompletionChunk, ChatCompletion>
    implements AsyncStreamResponse.Handler<ChatCompletionChunk> {
  private final DeltaSink deltas;
  private final ChatCompletionAccumulator accumulator = ChatCompletionAccumulator.create();

  /** OpenAI's tool-call index → the call's block, id and name as first seen. */
  private final Map<Long, ToolCall> calls = new HashMap<>();

  private boolean content;
  private boolean text;
  private int toolOffset = -1;

  private record ToolCall(int block, String id, String name) {}

  private OpenAiStream(DeltaSink deltas, AsyncStreamResponse<ChatCompletionChunk> response) {
    super(response::close);
    this.deltas = deltas;
  }

  /** Starts the call; the future completes with the accumulated completion or the SDK's failure. */
  static CompletableFuture<ChatCompletion> start(
      ChatCompletionServiceAsync completions, ChatCompletionCreateParams params, DeltaSink deltas) {
    AsyncStreamResponse<ChatCompletionChunk> response = completions.createStreaming(params);
    OpenAiStream stream = new OpenAiStream(deltas, response);
    response.subscribe(stream);
    return stream.done;
  }

  @Override
  public void onNext(ChatCompletionChunk chunk) {
    next(chunk);
  }

  @Override
  public void onComplete(Optional<Throwable> error) {
    end(error);
  }

  @Override
  void accept(ChatCompletionChunk chunk) {
    accumulator.accumulate(chunk);
    for (ChatCompletionChunk.Choice choice : chunk.choices()) {
      if (choice.index() == 0) onDelta(chunk.id(), choice.delta());
    }
  }

  @Override
  ChatCompletion result() {
    return accumulator.chatCompletion();
  }

  @Override
  ModelCallException cutOff(IllegalStateException cause) {
    return new ModelCallException(
        "model_unavailable",
        "openai's stream ended before a finish_reason: the answer was cut off",
        true,
        null,
        cause);
  }

  private void onDelta(String completionId, ChatCompletionChunk.Choice.Delta delta) {
    Optional<String> piece = delta.content().filter(s -> !s.isEmpty());
    if (piece.isPresent()) {
      content = true;
    } else if (!content) {
      piece = delta.refusal().filter(s -> !s.isEmpty());
    }
    if (piece.isPresent()) {
      text = true;
      deltas.accept(new ModelDelta.Text(0, piece.get()));
    }
    for (ChatCompletionChunk.Choice.Delta.ToolCall tc : delta.toolCalls().orElse(List.of())) {
      ToolCall call = calls.computeIfAbsent(tc.index(), i -> firstSeen(completionId, tc));
      String arguments =
          tc.function()
              .flatMap(ChatCompletionChunk.Choice.Delta.ToolCall.Function::arguments)
              .orElse("");
      deltas.accept(new ModelDelta.ToolInput(call.block(), call.id(), call.name(), arguments));
    }
  }

  private ToolCall firstSeen(String completionId, ChatCompletionChunk.Choice.Delta.ToolCall tc) {
    if (toolOffset < 0) toolOffset = text ? 1 : 0;
    String id =
        tc.id().filter(s -> !s.isBlank()).orElse("call_" + completionId + "_" + calls.size());
    String name =
        tc.function().flatMap(ChatCompletionChunk.Choice.Delta.ToolCall.Function::name).orElse("");
    return new ToolCall(toolOffset + (int) tc.index(), id, name);
  }
}
