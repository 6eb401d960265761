package dev.outboard.model;

import com.anthropic.client.AnthropicClientAsync;
import com.anthropic.client.okhttp.AnthropicOkHttpClientAsync;
import com.anthropic.core.JsonValue;
import com.anthropic.core.LogLevel;
import com.anthropic.core.Timeout;
import com.anthropic.core.http.Headers;
import com.anthropic.errors.AnthropicInvalidDataException;
import com.anthropic.errors.AnthropicServiceException;
import com.anthropic.errors.SseException;
import com.anthropic.models.messages.CacheControlEphemeral;
import com.anthropic.models.messages.ContentBlock;
import com.anthropic.models.messages.ContentBlockParam;
import com.anthropic.models.messages.MessageCreateParams;
import com.anthropic.models.messages.MessageParam;
import com.anthropic.models.messages.StopReason;
import com.anthropic.models.messages.TextBlockParam;
import com.anthropic.models.messages.Tool;
import com.anthropic.models.messages.ToolResultBlockParam;
import com.anthropic.models.messages.ToolUseBlock;
import com.anthropic.models.messages.ToolUseBlockParam;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.outboard.Futures;
import dev.outboard.Json;
import dev.outboard.tools.ToolCatalog;
import dev.outboard.tools.ToolSpec;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Deque;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.function.Consumer;
import java.util.function.Function;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The Anthropic Messages API through the official SDK's asynchronous OkHttp client. The SDK never
 * retries ({@code maxRetries(0)}): {@link RetryingModelClient} owns the retry loop, so a retried
 * call is invisible to the session. Failures are classified into {@link ModelCallException}s.
 *
 * <p>Prompt caching: the stable prefix — tool definitions and system prompt (which carries the
 * skills and memory index) — is marked {@code cache_control: ephemeral} on the last tool and on the
 * system block; the newest transcript block carries a third breakpoint so that the conversation
 * itself is read from the cache on the next turn.
 *
 * <p>Streaming: {@link #complete(ModelRequest, Consumer)} asks for server-sent events on the same
 * client (same connection pool and dispatcher limits) and returns the same answer, or the same
 * failure, as {@link #complete(ModelRequest)}; an {@code error} event mid-stream is retryable.
 */
public final class AnthropicModel implements ModelClient {
  public static final String PROVIDER = "anthropic";
  private static final Logger log = LoggerFactory.getLogger(AnthropicModel.class);
  private static final CacheControlEphemeral EPHEMERAL = CacheControlEphemeral.builder().build();

  private final ProviderSettings settings;
  private final AnthropicClientAsync client;
  private final int maxRequestsPerHost;

  public AnthropicModel(ProviderSettings settings) {
    this.settings = settings;
    Duration timeout = settings.requestTimeout();
    Duration connect =
        timeout.compareTo(Duration.ofSeconds(10)) < 0 ? timeout : Duration.ofSeconds(10);
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
    this.maxRequestsPerHost = raiseDispatcherLimits(client, limit);
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

  private CompletionStage<ModelResponse> call(
      ModelRequest request,
      Function<MessageCreateParams, CompletableFuture<com.anthropic.models.messages.Message>>
          send) {
    MessageCreateParams params;
    try {
      params = toParams(request);
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(
          ModelCallException.fatal(
              "model_request_invalid", "could not build the Anthropic request: " + e.getMessage()));
    }
    CompletableFuture<com.anthropic.models.messages.Message> call;
    try {
      call = send.apply(params);
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(classify(e));
    }
    CompletableFuture<ModelResponse> out = new CompletableFuture<>();
    call.whenComplete(
        (message, error) -> {
          if (error != null) {
            out.completeExceptionally(classify(error));
            return;
          }
          try {
            out.complete(toResponse(message));
          } catch (ModelCallException e) {
            out.completeExceptionally(e);
          } catch (RuntimeException e) {
            out.completeExceptionally(classify(e));
          }
        });
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Request mapping

  MessageCreateParams toParams(ModelRequest request) {
    String model =
        request.model() != null
                && request.model().name() != null
                && !request.model().name().isBlank()
            ? request.model().name()
            : settings.defaultModel();
    MessageCreateParams.Builder b =
        MessageCreateParams.builder().model(model).maxTokens(settings.maxTokens());
    if (request.system() != null && !request.system().isBlank()) {
      b.systemOfTextBlockParams(
          List.of(TextBlockParam.builder().text(request.system()).cacheControl(EPHEMERAL).build()));
    }
    List<ToolSpec> tools = request.tools() == null ? ToolCatalog.ALL : request.tools();
    for (int i = 0; i < tools.size(); i++) {
      ToolSpec t = tools.get(i);
      Tool.Builder tb =
          Tool.builder()
              .name(t.name())
              .description(t.description())
              .inputSchema(inputSchema(t.inputSchema()));
      if (i == tools.size() - 1) tb.cacheControl(EPHEMERAL);
      b.addTool(tb.build());
    }
    List<Message> merged = normalise(request.messages());
    for (int i = 0; i < merged.size(); i++) {
      Message m = merged.get(i);
      boolean last = i == merged.size() - 1;
      List<ContentBlockParam> blocks = new ArrayList<>();
      for (int j = 0; j < m.content().size(); j++) {
        blocks.add(toParam(m.content().get(j), last && j == m.content().size() - 1));
      }
      b.addMessage(
          Message.ASSISTANT.equals(m.role())
              ? MessageParam.ofAssistantOfContentBlockParams(blocks)
              : MessageParam.ofUserOfContentBlockParams(blocks));
    }
    return b.build();
  }

  /** The one shared JSON Schema of a tool, as the SDK's input schema. */
  static Tool.InputSchema inputSchema(ObjectNode schema) {
    Tool.InputSchema.Builder s = Tool.InputSchema.builder();
    Map<String, JsonValue> props = new LinkedHashMap<>();
    JsonNode properties = schema.path("properties");
    for (Iterator<Map.Entry<String, JsonNode>> it = properties.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      props.put(e.getKey(), JsonValue.fromJsonNode(e.getValue()));
    }
    s.properties(Tool.InputSchema.Properties.builder().putAllAdditionalProperties(props).build());
    List<String> required = new ArrayList<>();
    schema.path("required").forEach(r -> required.add(r.asText()));
    s.required(required);
    for (Iterator<Map.Entry<String, JsonNode>> it = schema.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      if (!Set.of("type", "properties", "required").contains(e.getKey())) {
        s.putAdditionalProperty(e.getKey(), JsonValue.fromJsonNode(e.getValue()));
      }
    }
    return s.build();
  }

  /**
   * The transcript as the API accepts it: no empty messages or empty text blocks (an assistant turn
   * may have been recorded with no content), and strictly alternating roles — consecutive messages
   * of one role, which skipping can produce, are merged.
   */
  static List<Message> normalise(List<Message> messages) {
    List<Message> out = new ArrayList<>();
    for (Message m : messages) {
      List<Block> content =
          m.content().stream()
              .filter(
                  bl -> !(bl instanceof Block.Text t) || (t.text() != null && !t.text().isEmpty()))
              .toList();
      if (content.isEmpty()) continue;
      String role = Message.ASSISTANT.equals(m.role()) ? Message.ASSISTANT : Message.USER;
      if (!out.isEmpty() && out.get(out.size() - 1).role().equals(role)) {
        Message prev = out.remove(out.size() - 1);
        List<Block> joined = new ArrayList<>(prev.content());
        joined.addAll(content);
        out.add(new Message(role, joined));
      } else {
        out.add(new Message(role, content));
      }
    }
    return out;
  }

  private static ContentBlockParam toParam(Block block, boolean cacheBreakpoint) {
    if (block instanceof Block.Text t) {
      TextBlockParam.Builder p = TextBlockParam.builder().text(t.text());
      if (cacheBreakpoint) p.cacheControl(EPHEMERAL);
      return ContentBlockParam.ofText(p.build());
    }
    if (block instanceof Block.ToolUse u) {
      ToolUseBlockParam.Input.Builder input = ToolUseBlockParam.Input.builder();
      JsonNode in = u.input();
      if (in != null && in.isObject()) {
        for (Iterator<Map.Entry<String, JsonNode>> it = in.fields(); it.hasNext(); ) {
          Map.Entry<String, JsonNode> e = it.next();
          input.putAdditionalProperty(e.getKey(), JsonValue.fromJsonNode(e.getValue()));
        }
      }
      ToolUseBlockParam.Builder p =
          ToolUseBlockParam.builder().id(u.id()).name(u.name()).input(input.build());
      if (cacheBreakpoint) p.cacheControl(EPHEMERAL);
      return ContentBlockParam.ofToolUse(p.build());
    }
    Block.ToolResult r = (Block.ToolResult) block;
    ToolResultBlockParam.Builder p = ToolResultBlockParam.builder().toolUseId(r.toolUseId());
    if (r.content() != null && !r.content().isEmpty()) p.content(r.content());
    if (r.isError()) p.isError(true);
    if (cacheBreakpoint) p.cacheControl(EPHEMERAL);
    return ContentBlockParam.ofToolResult(p.build());
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

  static ModelCallException classify(Throwable error) {
    Throwable e = Futures.cause(error);
    if (e instanceof ModelCallException m) return m;
    if (e instanceof SseException s) return midStream(s);
    if (e instanceof AnthropicServiceException s) {
      Headers h = s.headers();
      Duration retryAfter =
          ModelCallException.parseRetryAfter(first(h, "retry-after-ms"), first(h, "retry-after"))
              .orElse(null);
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
    if (io != null) {
      boolean timeout = io instanceof InterruptedIOException;
      return new ModelCallException(
          timeout ? "model_timeout" : "model_unreachable",
          "anthropic " + (timeout ? "call timed out" : "connection failed") + ": " + io,
          true,
          null,
          e);
    }
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
   * while the model writes). The request was accepted and nothing was recorded, so it is worth
   * another try whatever the error's type; the type picks the code.
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
    return new ModelCallException(
        code,
        "anthropic's stream failed mid-way: "
            + (type.isEmpty() ? "" : type + ": ")
            + providerMessage(s),
        true,
        null,
        s);
  }

  private static String providerMessage(AnthropicServiceException s) {
    try {
      JsonNode body = s.body().convert(JsonNode.class);
      if (body != null) {
        JsonNode msg = body.path("error").path("message");
        if (msg.isTextual() && !msg.asText().isBlank()) return msg.asText();
      }
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

  private static String first(Headers h, String name) {
    if (h == null) return null;
    List<String> v = h.values(name);
    return v == null || v.isEmpty() ? null : v.get(0);
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

  // ---------------------------------------------------------------------------------------------
  // Connection limits

  /**
   * The SDK (3.14.0) builds its own OkHttp client: the builder exposes the dispatcher's executor,
   * the idle-connection pool and the timeouts, but not the dispatcher's limits, which stay at
   * OkHttp's defaults — 64 calls in flight in all (the SDK copies that to the per-host limit), the
   * rest queued. OkHttp is not on our compile classpath (a runtime dependency of the SDK), so the
   * dispatcher is found in the built client and raised through its public setters by reflection.
   * Returns the per-host limit in effect afterwards, or -1 if the dispatcher was not found (then
   * the SDK defaults apply and a warning is logged).
   */
  static int raiseDispatcherLimits(AnthropicClientAsync client, int limit) {
    try {
      Object dispatcher = findDispatcher(client.options().httpClient());
      if (dispatcher == null) {
        log.warn(
            "anthropic: OkHttp dispatcher not found; at most 64 calls run at once (the SDK's"
                + " default)");
        return -1;
      }
      dispatcher.getClass().getMethod("setMaxRequests", int.class).invoke(dispatcher, limit);
      dispatcher.getClass().getMethod("setMaxRequestsPerHost", int.class).invoke(dispatcher, limit);
      return (Integer) dispatcher.getClass().getMethod("getMaxRequestsPerHost").invoke(dispatcher);
    } catch (ReflectiveOperationException | RuntimeException e) {
      log.warn(
          "anthropic: could not raise OkHttp's request limits ({}); at most 64 calls run at once",
          e.toString());
      return -1;
    }
  }

  /**
   * Walks the SDK's HTTP client wrappers (fields of com.anthropic/okhttp3 classes) to OkHttp's
   * dispatcher.
   */
  private static Object findDispatcher(Object root) throws IllegalAccessException {
    Deque<Object[]> queue = new ArrayDeque<>();
    Set<Object> seen = Collections.newSetFromMap(new IdentityHashMap<>());
    queue.add(new Object[] {root, 0});
    while (!queue.isEmpty()) {
      Object[] item = queue.poll();
      Object o = item[0];
      int depth = (Integer) item[1];
      if (o == null || !seen.add(o)) continue;
      String cls = o.getClass().getName();
      if (cls.equals("okhttp3.Dispatcher")) return o;
      if (depth > 12 || !(cls.startsWith("com.anthropic.") || cls.startsWith("okhttp3."))) continue;
      for (Class<?> c = o.getClass(); c != null && c != Object.class; c = c.getSuperclass()) {
        for (Field f : c.getDeclaredFields()) {
          if (Modifier.isStatic(f.getModifiers()) || f.getType().isPrimitive()) continue;
          try {
            f.setAccessible(true);
          } catch (RuntimeException inaccessible) {
            continue;
          }
          queue.add(new Object[] {f.get(o), depth + 1});
        }
      }
    }
    return null;
  }
}
