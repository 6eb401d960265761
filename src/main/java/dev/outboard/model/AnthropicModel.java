package dev.outboard.model;

import com.anthropic.client.AnthropicClientAsync;
import com.anthropic.client.okhttp.AnthropicOkHttpClientAsync;
import com.anthropic.core.LogLevel;
import com.anthropic.core.Timeout;
import com.anthropic.errors.AnthropicInvalidDataException;
import com.anthropic.errors.AnthropicServiceException;
import com.anthropic.errors.SseException;
import com.anthropic.models.messages.ContentBlock;
import com.anthropic.models.messages.MessageCreateParams;
import com.anthropic.models.messages.StopReason;
import com.anthropic.models.messages.ToolUseBlock;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Json;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletionStage;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The Anthropic Messages API through the official SDK's asynchronous OkHttp client. The SDK never
 * retries ({@code maxRetries(0)}): {@link RetryingModelClient} owns the retry loop, so a retried
 * call is invisible to the session. Failures are classified into {@link ModelCallException}s. The
 * request, with its prompt-caching breakpoints, is built by {@link AnthropicRequest}.
 *
 * <p>Streaming: {@link #complete(ModelRequest, Consumer)} asks for server-sent events on the same
 * client (same connection pool and dispatcher limits) and returns the same answer, or the same
 * failure, as {@link #complete(ModelRequest)}; an {@code error} event mid-stream is retryable.
 */
public final class AnthropicModel
    extends ProviderClient<MessageCreateParams, com.anthropic.models.messages.Message> {
  public static final String PROVIDER = "anthropic";
  private static final Logger log = LoggerFactory.getLogger(AnthropicModel.class);

  private final ProviderSettings settings;
  private final AnthropicClientAsync client;
  private final int maxRequestsPerHost;

  public AnthropicModel(ProviderSettings settings) {
    this.settings = settings;
    Duration timeout = settings.requestTimeout();
    Duration connect = connectTimeout(timeout);
    int limit = Math.max(1, settings.maxConcurrentRequests());
    this.client =
        AnthropicOkHttpClientAsync.builder()
            .baseUrl(settings.baseUrl())
            .apiKey(settings.apiKey())
            .maxRetries(0)
            .timeout(
                Timeout.builder()
                    .connect(connect)
                    .read(timeout)
                    .write(timeout)
                    .request(timeout)
                    .build())
            // Warm connections for HTTP/1.1 servers (HTTP/2 multiplexes on few connections anyway).
            .maxIdleConnections(Math.min(limit, 256))
            .keepAliveDuration(Duration.ofMinutes(1))
            .logLevel(LogLevel.OFF)
            .build();
    this.maxRequestsPerHost =
        OkHttpLimits.raise(PROVIDER, client.options().httpClient(), "com.anthropic.", limit);
  }

  @Override
  public String provider() {
    return PROVIDER;
  }

  /** Releases the HTTP client's threads and connections (the node's shutdown does not need it). */
  public void close() {
    client.close();
  }

  /** The OkHttp dispatcher's per-host limit in effect (-1 if it could not be read). */
  public int maxRequestsPerHost() {
    return maxRequestsPerHost;
  }

  @Override
  public CompletionStage<ModelResponse> complete(ModelRequest request) {
    return call(request, params -> client.messages().create(params));
  }

  /**
   * Streams the answer ({@code "stream": true}) through the SDK's {@code createStreaming} and its
   * {@code MessageAccumulator}: the accumulated message goes through the same {@link #toResponse}
   * and failures through the same {@link #classify} as a non-streaming call's. See {@link
   * AnthropicStream} for the deltas' indexes.
   */
  @Override
  public CompletionStage<ModelResponse> complete(
      ModelRequest request, Consumer<ModelDelta> deltas) {
    DeltaSink sink = new DeltaSink(PROVIDER, deltas);
    return call(request, params -> AnthropicStream.start(client.messages(), params, sink));
  }

  @Override
  MessageCreateParams params(ModelRequest request) {
    return AnthropicRequest.params(request, settings);
  }

  @Override
  ModelCallException unbuildable(RuntimeException e) {
    return ModelCallException.fatal(
        "model_request_invalid", "could not build the Anthropic request: " + e.getMessage());
  }

  @Override
  ModelResponse response(com.anthropic.models.messages.Message message) {
    return toResponse(message);
  }

  @Override
  ModelCallException unmappable(RuntimeException e) {
    return failure(e);
  }

  // ---------------------------------------------------------------------------------------------
  // Response mapping

  static ModelResponse toResponse(com.anthropic.models.messages.Message message) {
    try {
      StopReason reason =
          message
              .stopReason()
              .orElseThrow(
                  () ->
                      ModelCallException.fatal(
                          "model_bad_response", "anthropic answered without a stop_reason"));
      ModelResponse.StopReason stop;
      if (reason.equals(StopReason.END_TURN)
          || reason.equals(StopReason.STOP_SEQUENCE)
          || reason.equals(StopReason.REFUSAL)) {
        stop = ModelResponse.StopReason.END_TURN;
      } else if (reason.equals(StopReason.TOOL_USE)) {
        stop = ModelResponse.StopReason.TOOL_USE;
      } else if (reason.equals(StopReason.MAX_TOKENS)) {
        stop = ModelResponse.StopReason.MAX_TOKENS;
      } else if (reason.equals(StopReason.MODEL_CONTEXT_WINDOW_EXCEEDED)) {
        throw ModelCallException.fatal(
            "model_context_exceeded",
            "anthropic stopped: the conversation no longer fits the model's context window");
      } else {
        throw ModelCallException.fatal(
            "model_bad_response",
            "anthropic answered with unsupported stop_reason '" + reason + "'");
      }
      List<Block> content = new ArrayList<>();
      for (ContentBlock cb : message.content()) {
        if (cb.isText()) {
          content.add(new Block.Text(cb.asText().text()));
        } else if (cb.isToolUse()) {
          ToolUseBlock u = cb.asToolUse();
          JsonNode input = u._input().convert(JsonNode.class);
          if (input == null || input.isNull() || input.isMissingNode())
            input = Json.MAPPER.createObjectNode();
          content.add(new Block.ToolUse(u.id(), u.name(), input));
        }
        // Other block kinds (thinking, server tools) are not requested and not recorded.
      }
      if (stop == ModelResponse.StopReason.MAX_TOKENS
          && !content.isEmpty()
          && content.get(content.size() - 1) instanceof Block.ToolUse cut) {
        // The answer stopped inside this tool call: its input may be incomplete, never run it.
        log.warn(
            "anthropic answer cut off at max_tokens inside tool call {} ({}); dropping that call",
            cut.id(),
            cut.name());
        content.remove(content.size() - 1);
      }
      var u = message.usage();
      Usage usage =
          new Usage(
              u.inputTokens(),
              u.outputTokens(),
              u.cacheReadInputTokens().orElse(0L),
              u.cacheCreationInputTokens().orElse(0L));
      return new ModelResponse(List.copyOf(content), stop, usage);
    } catch (AnthropicInvalidDataException | IllegalArgumentException e) {
      throw new ModelCallException(
          "model_bad_response",
          "anthropic answered with a malformed message: " + e.getMessage(),
          false,
          null,
          e);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Failure classification

  @Override
  ModelCallException classify(Throwable e) {
    if (e instanceof SseException s) return midStream(s);
    if (e instanceof AnthropicServiceException s) {
      Duration retryAfter = retryAfter(s.headers() == null ? null : s.headers()::values);
      return ModelCallException.forStatus(
          PROVIDER, s.statusCode(), providerMessage(s), retryAfter, s);
    }
    // A complete body that is not a valid message: a protocol fault that repeating will not fix.
    Throwable json = find(e, JsonProcessingException.class);
    Throwable io = find(e, IOException.class);
    if (json != null) {
      if (!(json instanceof com.fasterxml.jackson.core.io.JsonEOFException)) {
        return new ModelCallException(
            "model_bad_response",
            "anthropic answered with a malformed body: " + firstLine(json.getMessage()),
            false,
            null,
            e);
      }
      // A body that ends in the middle of the JSON was cut off in transit: try again.
      return new ModelCallException(
          "model_unreachable",
          "anthropic's answer was cut off: " + firstLine(json.getMessage()),
          true,
          null,
          e);
    }
    if (io != null) return transport(PROVIDER, (IOException) io, "model_unreachable", "" + io, e);
    if (e instanceof AnthropicInvalidDataException) {
      return new ModelCallException(
          "model_bad_response",
          "anthropic answered with a malformed message: " + firstLine(e.getMessage()),
          false,
          null,
          e);
    }
    return new ModelCallException("model_error", "anthropic call failed: " + e, true, null, e);
  }

  /**
   * An {@code error} event in a stream that had begun with HTTP 200 (e.g. {@code overloaded_error}
   * while the model writes): retryable whatever the error's type; the type picks the code.
   */
  private static ModelCallException midStream(SseException s) {
    String type = "";
    try {
      JsonNode body = s.body().convert(JsonNode.class);
      if (body != null) type = body.path("error").path("type").asText("");
    } catch (RuntimeException ignored) {
      // no type: a generic code
    }
    String code =
        switch (type) {
          case "overloaded_error" -> "overloaded";
          case "rate_limit_error" -> "rate_limited";
          default -> "model_unavailable";
        };
    return midStream(PROVIDER, code, type, providerMessage(s), s);
  }

  private static String providerMessage(AnthropicServiceException s) {
    try {
      String msg = errorMessage(s.body().convert(JsonNode.class));
      if (msg != null) return msg;
    } catch (RuntimeException ignored) {
      // fall through
    }
    try {
      if (s.apiMessage().isPresent()) return s.apiMessage().get();
    } catch (RuntimeException ignored) {
      // fall through
    }
    return firstLine(s.getMessage());
  }

  private static Throwable find(Throwable e, Class<? extends Throwable> type) {
    Set<Throwable> seen = Collections.newSetFromMap(new IdentityHashMap<>());
    for (Throwable t = e; t != null && seen.add(t); t = t.getCause()) {
      if (type.isInstance(t)) return t;
    }
    return null;
  }

  private static String firstLine(String s) {
    if (s == null) return "";
    int nl = s.indexOf('\n');
    return nl < 0 ? s : s.substring(0, nl);
  }
}
