package dev.outboard.model;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.openai.client.OpenAIClientAsync;
import com.openai.client.okhttp.OpenAIOkHttpClientAsync;
import com.openai.core.Timeout;
import com.openai.errors.OpenAIInvalidDataException;
import com.openai.errors.OpenAIServiceException;
import com.openai.errors.SseException;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.chat.completions.ChatCompletionFunctionTool;
import com.openai.models.chat.completions.ChatCompletionMessage;
import com.openai.models.chat.completions.ChatCompletionMessageFunctionToolCall;
import com.openai.models.chat.completions.ChatCompletionMessageToolCall;
import com.openai.models.chat.completions.ChatCompletionStreamOptions;
import com.openai.models.completions.CompletionUsage;
import dev.outboard.Json;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import okhttp3.ConnectionPool;
import okhttp3.OkHttpClient;

/**
 * Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp server) through
 * the official SDK's asynchronous client. One call = one HTTP request: the SDK's own retries are
 * off ({@code maxRetries(0)}), {@link RetryingModelClient} decides.
 *
 * <p><b>Transcript mapping.</b> The system prompt is a {@code system} message. A user message
 * becomes one {@code tool} message per tool result (in order, first, since they must directly
 * follow the assistant message whose {@code tool_calls} they answer) and then one {@code user}
 * message with its text, if any. An assistant message becomes {@code content} (its text, or none)
 * plus {@code tool_calls} ({@code id}, {@code type: function}, {@code function.name}, {@code
 * function.arguments} = the input as a JSON string); an assistant message with neither is left out,
 * as the API rejects it. The chat format has no error flag on tool results: a result with {@code
 * isError} is sent as {@code "ERROR: " + content}.
 *
 * <p><b>Answers.</b> {@code choices[0].message}: its content becomes a text block, its tool calls
 * tool_use blocks with the provider's ids. Arguments that are not a JSON object are kept as {@code
 * {"_unparseable_arguments": "<raw>"}}: the call stays in the transcript (so its result has a call
 * to answer), and {@link dev.outboard.tools.ToolCatalog} rejects the unknown argument, telling the
 * model its arguments were not valid JSON. {@code finish_reason} stop → end of turn, tool_calls →
 * tool use (also when a server says stop but returns tool calls), length → max tokens;
 * content_filter fails the turn.
 *
 * <p><b>Failures.</b> HTTP errors are classified by {@link ModelCallException#forStatus} with the
 * provider's {@code error.message} and its {@code retry-after-ms}/{@code retry-after}. A transport
 * failure — refused or reset connection, a body cut off mid-way, a timeout — is retryable: the same
 * request may well succeed, and nothing was recorded. A complete body that is not JSON, or JSON of
 * the wrong shape, is {@code model_bad_response} and not retried: it is what a wrong base URL or a
 * server that does not speak this API sends, and it will send it again.
 *
 * <p><b>Concurrency.</b> The SDK builder does not expose OkHttp's dispatcher limits (its own client
 * keeps OkHttp's default of 64 calls in flight, per host and in all), so this class builds the
 * {@link OkHttpClient} itself — {@link OkHttpLimits#dispatcher dispatcher limits} and an idle pool
 * of {@code max-concurrent-requests} — and hands it to the SDK with {@code okHttpClient(...)}.
 *
 * <p><b>Streaming.</b> {@link #complete(ModelRequest, Consumer)} asks for server-sent chunks on the
 * same client (same dispatcher and pool) and returns the same answer, or the same failure, as
 * {@link #complete(ModelRequest)}; an error object mid-stream, or a stream cut off before its
 * finish_reason, is retryable.
 */
public final class OpenAiModel extends ProviderClient<ChatCompletionCreateParams, ChatCompletion> {
  public static final String PROVIDER = "openai";
  static final String UNPARSEABLE = "_unparseable_arguments";

  /** Sent when no key is configured (keyless local servers); the SDK wants some credential. */
  private static final String NO_KEY = "none";

  private static final ChatCompletionStreamOptions INCLUDE_USAGE =
      ChatCompletionStreamOptions.builder().includeUsage(true).build();

  private final ProviderSettings settings;
  private final OpenAIClientAsync client;
  private final OkHttpClient http;
  private final List<ChatCompletionFunctionTool> tools;

  public OpenAiModel(ProviderSettings settings) {
    this.settings = settings;
    Secrets.register(settings.apiKey());
    int limit = Math.max(1, settings.maxConcurrentRequests());
    Duration timeout = settings.requestTimeout();
    Duration connect = connectTimeout(timeout);
    this.http =
        new OkHttpClient.Builder()
            .dispatcher(OkHttpLimits.dispatcher("openai-http", limit))
            .connectionPool(new ConnectionPool(limit, 5, TimeUnit.MINUTES))
            .connectTimeout(connect)
            .readTimeout(timeout)
            .writeTimeout(timeout)
            .callTimeout(timeout)
            .build();
    this.client =
        OpenAIOkHttpClientAsync.builder()
            .okHttpClient(http)
            .baseUrl(settings.baseUrl())
            .apiKey(settings.apiKey().isBlank() ? NO_KEY : settings.apiKey())
            .maxRetries(0)
            .timeout(
                Timeout.builder()
                    .connect(connect)
                    .read(timeout)
                    .write(timeout)
                    .request(timeout)
                    .build())
            .build();
    this.tools = OpenAiRequest.toolsOf(dev.outboard.tools.ToolCatalog.ALL);
  }

  @Override
  public String provider() {
    return PROVIDER;
  }

  /** The OkHttp client under the SDK (tests check its limits). */
  OkHttpClient http() {
    return http;
  }

  @Override
  public CompletionStage<ModelResponse> complete(ModelRequest request) {
    return call(request, params -> client.chat().completions().create(params));
  }

  /**
   * Streams the answer ({@code "stream": true}, {@code stream_options.include_usage} so that the
   * last chunk carries the usage) through the SDK's {@code createStreaming} and its {@code
   * ChatCompletionAccumulator}: the accumulated completion goes through the same {@link
   * #toResponse} and failures through the same {@link #classify} as a non-streaming call's. See
   * {@link OpenAiStream} for how tool calls get their block indexes.
   */
  @Override
  public CompletionStage<ModelResponse> complete(
      ModelRequest request, Consumer<ModelDelta> deltas) {
    DeltaSink sink = new DeltaSink(PROVIDER, deltas);
    return call(
        request,
        params ->
            OpenAiStream.start(
                client.chat().completions(),
                params.toBuilder().streamOptions(INCLUDE_USAGE).build(),
                sink));
  }

  @Override
  ChatCompletionCreateParams params(ModelRequest request) {
    return OpenAiRequest.params(request, settings, tools);
  }

  @Override
  ModelCallException unbuildable(RuntimeException e) {
    return ModelCallException.fatal(
        "model_request_rejected", "could not build the openai request: " + e.getMessage());
  }

  @Override
  ModelResponse response(ChatCompletion completion) {
    return toResponse(completion);
  }

  @Override
  ModelCallException unmappable(RuntimeException e) {
    return badResponse(e);
  }

  // ------------------------------------------------------------------ response

  static ModelResponse toResponse(ChatCompletion completion) {
    List<ChatCompletion.Choice> choices = completion.choices();
    if (choices.isEmpty())
      throw ModelCallException.fatal("model_bad_response", "openai answered without choices");
    ChatCompletion.Choice choice = choices.get(0);
    ChatCompletionMessage message = choice.message();
    List<Block> content = new ArrayList<>();
    message.content().filter(s -> !s.isEmpty()).ifPresent(s -> content.add(new Block.Text(s)));
    if (content.isEmpty()) {
      message.refusal().filter(s -> !s.isEmpty()).ifPresent(s -> content.add(new Block.Text(s)));
    }
    List<ChatCompletionMessageToolCall> calls = message.toolCalls().orElse(List.of());
    for (int i = 0; i < calls.size(); i++) {
      ChatCompletionMessageToolCall call = calls.get(i);
      String fallbackId = "call_" + completion._id().asKnown().orElse("x") + "_" + i;
      if (call.isFunction()) {
        ChatCompletionMessageFunctionToolCall f = call.asFunction();
        String id = f._id().asKnown().filter(s -> !s.isBlank()).orElse(fallbackId);
        content.add(
            new Block.ToolUse(
                id,
                f.function().name(),
                parseArguments(f.function()._arguments().asKnown().orElse(""))));
      } else if (call.isCustom()) {
        var c = call.asCustom();
        String id = c._id().asKnown().filter(s -> !s.isBlank()).orElse(fallbackId);
        content.add(new Block.ToolUse(id, c.custom().name(), unparseable(c.custom().input())));
      } else {
        throw ModelCallException.fatal(
            "model_bad_response", "openai answered a tool call of an unknown type");
      }
    }
    boolean hasCalls = !calls.isEmpty();
    String finish =
        choice
            ._finishReason()
            .asKnown()
            .map(ChatCompletion.Choice.FinishReason::asString)
            .orElse("");
    ModelResponse.StopReason stop =
        switch (finish) {
          case "length" -> ModelResponse.StopReason.MAX_TOKENS;
          case "content_filter" ->
              throw ModelCallException.fatal(
                  "model_content_filter",
                  "openai stopped the answer: finish_reason content_filter");
          default ->
              hasCalls ? ModelResponse.StopReason.TOOL_USE : ModelResponse.StopReason.END_TURN;
        };
    return new ModelResponse(content, stop, usage(completion.usage()));
  }

  static JsonNode parseArguments(String raw) {
    if (raw == null || raw.isBlank()) return Json.MAPPER.createObjectNode();
    try {
      JsonNode node = Json.MAPPER.readTree(raw);
      if (node != null && node.isObject()) return node;
    } catch (JsonProcessingException e) {
      // fall through: keep the call, with arguments the tool catalog will refuse
    }
    return unparseable(raw);
  }

  private static JsonNode unparseable(String raw) {
    return Json.MAPPER.createObjectNode().put(UNPARSEABLE, raw);
  }

  static Usage usage(Optional<CompletionUsage> usage) {
    if (usage.isEmpty()) return Usage.ZERO;
    CompletionUsage u = usage.get();
    long prompt = u._promptTokens().asKnown().orElse(0L);
    long completion = u._completionTokens().asKnown().orElse(0L);
    long cached =
        u.promptTokensDetails()
            .flatMap(CompletionUsage.PromptTokensDetails::cachedTokens)
            .orElse(0L);
    return new Usage(Math.max(0, prompt - cached), completion, cached, 0);
  }

  // ------------------------------------------------------------------ failures

  @Override
  ModelCallException classify(Throwable e) {
    if (e instanceof SseException s) return midStream(s);
    if (e instanceof OpenAIServiceException s) {
      return ModelCallException.forStatus(
          PROVIDER,
          s.statusCode(),
          providerMessage(s),
          retryAfter(s.headers() == null ? null : s.headers()::values),
          null);
    }
    IOException io = ioCause(e);
    if (io != null) return transport(PROVIDER, io, "model_unavailable", describe(io), e);
    if (e instanceof OpenAIInvalidDataException) return badResponse(e);
    return new ModelCallException(
        "model_error", PROVIDER + " call failed: " + describe(e), true, null, null);
  }

  /**
   * An {@code error} object in a stream that had begun with HTTP 200: retryable whatever it says;
   * its code or type picks ours.
   */
  private static ModelCallException midStream(SseException s) {
    String kind = s.code().or(s::type).orElse("");
    String code = kind.contains("rate_limit") ? "rate_limited" : "model_unavailable";
    return midStream(PROVIDER, code, kind, providerMessage(s), null);
  }

  private static ModelCallException badResponse(Throwable e) {
    return new ModelCallException(
        "model_bad_response",
        PROVIDER + " answered something that is not a chat completion: " + describe(e),
        false,
        null,
        e);
  }

  /**
   * The transport failure under {@code e}, if any: an {@link IOException} that is not a JSON parse
   * error. A body cut off by a dropped connection shows up here (OkHttp checks the framing —
   * Content-Length or chunks — and reports "unexpected end of stream"); a body that arrived whole
   * but is not valid JSON, even if it merely stops early, is the server's answer, not a transport
   * accident.
   */
  private static IOException ioCause(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof JsonProcessingException) return null;
      if (t instanceof IOException io) return io;
    }
    return null;
  }

  private static String describe(Throwable e) {
    StringBuilder sb = new StringBuilder(e.getClass().getSimpleName());
    String msg = e.getMessage();
    if (msg != null) {
      msg = msg.length() > 300 ? msg.substring(0, 300) + "..." : msg;
      sb.append(": ").append(msg);
    }
    Throwable cause = e.getCause();
    if (cause != null
        && cause != e
        && cause.getMessage() != null
        && (msg == null || !msg.contains(cause.getMessage()))) {
      String c = cause.getMessage();
      sb.append(" (")
          .append(cause.getClass().getSimpleName())
          .append(": ")
          .append(c.length() > 200 ? c.substring(0, 200) + "..." : c)
          .append(')');
    }
    return Secrets.redact(sb.toString());
  }

  /**
   * The provider's own words: {@code error.message} of the error body, else the body, else the
   * status text.
   */
  private static String providerMessage(OpenAIServiceException s) {
    try {
      JsonNode body = s.body().convert(JsonNode.class);
      if (body != null) {
        String msg = errorMessage(body);
        if (msg != null) return msg;
        JsonNode err = body.path("error");
        if (err.isTextual()) return err.asText();
        JsonNode top = body.path("message");
        if (top.isTextual()) return top.asText();
        if (!body.isMissingNode() && !body.isNull()) {
          String text = body.toString();
          return text.length() > 500 ? text.substring(0, 500) + "..." : text;
        }
      }
    } catch (RuntimeException ignored) {
      // fall back to the SDK's message
    }
    return String.valueOf(s.getMessage());
  }
}
