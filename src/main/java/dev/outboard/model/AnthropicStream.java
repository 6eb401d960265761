package dev.outboard.model;

import com.anthropic.core.http.AsyncStreamResponse;
import com.anthropic.helpers.MessageAccumulator;
import com.anthropic.models.messages.Message;
import com.anthropic.models.messages.MessageCreateParams;
import com.anthropic.models.messages.RawContentBlockDelta;
import com.anthropic.models.messages.RawContentBlockStartEvent;
import com.anthropic.models.messages.RawMessageStreamEvent;
import com.anthropic.models.messages.ToolUseBlock;
import com.anthropic.services.async.MessageServiceAsync;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;

/**
 * One streamed Messages call: the SDK's server-sent events are folded by its {@link
 * MessageAccumulator} into the same {@link Message} a non-streaming call returns, and passed on as
 * {@link ModelDelta}s while they arrive. The caller converts the message exactly as it converts a
 * non-streaming one.
 *
 * <p>Block indexes are positions in the answer as {@link AnthropicModel#toResponse} builds it: text
 * and tool_use blocks in stream order, other kinds (thinking, server tools — never requested) not
 * counted. A tool_use block's {@code content_block_start} sends a {@link ModelDelta.ToolInput} with
 * empty {@code partialJson}, announcing the call's id and name; each {@code input_json_delta}
 * follows with the same id and name. A tool call cut off at max_tokens is streamed but left out of
 * the answer, as in a non-streaming call.
 *
 * <p>Failures complete the future with the SDK's own exception (an HTTP status, an {@code error}
 * event as {@link com.anthropic.errors.SseException}, a dropped connection), which {@link
 * AnthropicModel#classify} turns into a {@link ModelCallException}. A stream that ends cleanly but
 * without {@code message_stop} was cut off and is retryable.
 */
final class AnthropicStream extends StreamedCall<RawMessageStreamEvent, Message>
    implements AsyncStreamResponse.Handler<RawMessageStreamEvent> {
  private final DeltaSink deltas;
  private final MessageAccumulator accumulator = MessageAccumulator.create();

  /** Stream index of each text or tool_use block → its index in the answer. */
  private final Map<Long, Integer> blocks = new HashMap<>();

  private final Map<Integer, ToolUseBlock> toolUses = new HashMap<>();

  private AnthropicStream(DeltaSink deltas, AsyncStreamResponse<RawMessageStreamEvent> response) {
    super(response::close);
    this.deltas = deltas;
  }

  /** Starts the call; the future completes with the accumulated message or the SDK's failure. */
  static CompletableFuture<Message> start(
      MessageServiceAsync messages, MessageCreateParams params, DeltaSink deltas) {
    AsyncStreamResponse<RawMessageStreamEvent> response = messages.createStreaming(params);
    AnthropicStream stream = new AnthropicStream(deltas, response);
    response.subscribe(stream);
    return stream.done;
  }

  @Override
  public void onNext(RawMessageStreamEvent event) {
    next(event);
  }

  @Override
  public void onComplete(Optional<Throwable> error) {
    end(error);
  }

  @Override
  void accept(RawMessageStreamEvent event) {
    accumulator.accumulate(event);
    if (event.isContentBlockStart()) onBlockStart(event.asContentBlockStart());
    else if (event.isContentBlockDelta())
      onBlockDelta(event.asContentBlockDelta().index(), event.asContentBlockDelta().delta());
  }

  @Override
  Message result() {
    return accumulator.message();
  }

  @Override
  ModelCallException cutOff(IllegalStateException cause) {
    return new ModelCallException(
        "model_unreachable",
        "anthropic's stream ended before message_stop: the answer was cut off",
        true,
        null,
        cause);
  }

  private void onBlockStart(RawContentBlockStartEvent start) {
    RawContentBlockStartEvent.ContentBlock block = start.contentBlock();
    if (!block.isText() && !block.isToolUse()) return;
    int index = blocks.size();
    blocks.put(start.index(), index);
    if (block.isText()) {
      String text = block.asText().text();
      if (!text.isEmpty()) deltas.accept(new ModelDelta.Text(index, text));
    } else {
      ToolUseBlock use = block.asToolUse();
      toolUses.put(index, use);
      deltas.accept(new ModelDelta.ToolInput(index, use.id(), use.name(), ""));
    }
  }

  private void onBlockDelta(long streamIndex, RawContentBlockDelta delta) {
    Integer index = blocks.get(streamIndex);
    if (index == null) return;
    if (delta.isText()) {
      deltas.accept(new ModelDelta.Text(index, delta.asText().text()));
    } else if (delta.isInputJson()) {
      ToolUseBlock use = toolUses.get(index);
      if (use != null)
        deltas.accept(
            new ModelDelta.ToolInput(
                index, use.id(), use.name(), delta.asInputJson().partialJson()));
    }
  }
}
