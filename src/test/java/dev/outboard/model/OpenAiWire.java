package dev.outboard.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.outboard.Json;
import dev.outboard.tools.ToolCatalog;
import dev.outboard.tools.ToolSpec;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A local server speaking the chat-completions wire format (POST {base}/chat/completions), for
 * tests. Every request is checked field by field against the documented request shape and recorded,
 * with the problems found; answers are queued per call ({@link #enqueue}) and built from the API
 * reference's examples. With nothing queued it ends the turn with "done".
 *
 * <p>A request with {@code "stream": true} gets each completion answer as the documented
 * server-sent chunks instead: {@code data: {chat.completion.chunk}} lines — the role, the content
 * in three or more pieces, each tool call's id and name then its arguments in three pieces, a chunk
 * with the finish_reason, and, if {@code stream_options.include_usage} is set, a last chunk with
 * the usage and no choices ({@code "usage": null} on the others) — then {@code data: [DONE]}.
 * Errors are answered as JSON, as before a stream begins. {@link #streamError} breaks a stream off
 * half-way with an error object; {@link #streamCutOff} drops the connection half-way.
 */
public final class OpenAiWire implements AutoCloseable {
  public static final String KEY = "sk-test-FAKE-OPENAI-KEY-1234567890";
  public static final String PATH = "/v1/chat/completions";

  /**
   * One request as received: headers (lower-case names), its JSON body, and what was wrong with it.
   */
  public record Recorded(
      Map<String, List<String>> headers, String rawBody, JsonNode body, List<String> problems) {
    public String header(String name) {
      List<String> v = headers.get(name.toLowerCase());
      return v == null || v.isEmpty() ? null : v.get(0);
    }
  }

  /** How to answer one call. */
  @FunctionalInterface
  public interface Reply {
    void write(HttpExchange exchange, JsonNode request) throws IOException;
  }

  /**
   * A tool call in an answer: {@code arguments} is sent exactly as given (a JSON string on the
   * wire).
   */
  public record Call(String id, String name, String arguments) {}

  private final HttpServer server;
  private final String expectedKey;
  private final ConcurrentLinkedDeque<Reply> replies = new ConcurrentLinkedDeque<>();
  private final List<Recorded> requests = Collections.synchronizedList(new ArrayList<>());
  private final AtomicInteger ids = new AtomicInteger();

  public OpenAiWire() throws IOException {
    this(KEY);
  }

  /** {@code expectedKey}: the bearer every request must carry (null: none expected). */
  public OpenAiWire(String expectedKey) throws IOException {
    this.expectedKey = expectedKey;
    server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 200);
    server.createContext("/", this::handle);
    server.setExecutor(
        Executors.newCachedThreadPool(
            r -> {
              Thread t = new Thread(r, "openai-wire");
              t.setDaemon(true);
              return t;
            }));
    server.start();
  }

  /** The base URL to configure ({@code .../v1}, as OPENAI_BASE_URL). */
  public String baseUrl() {
    return "http://127.0.0.1:" + server.getAddress().getPort() + "/v1";
  }

  public OpenAiWire enqueue(Reply... next) {
    for (Reply r : next) replies.addLast(r);
    return this;
  }

  public List<Recorded> requests() {
    synchronized (requests) {
      return List.copyOf(requests);
    }
  }

  /** Every problem found in any request so far. */
  public List<String> problems() {
    List<String> out = new ArrayList<>();
    for (Recorded r : requests()) out.addAll(r.problems());
    return out;
  }

  /** Drops queued answers (a test that failed half-way must not leave its answers to the next). */
  public void clearReplies() {
    replies.clear();
  }

  /** Answers with {@code inner} after {@code millis}. */
  public static Reply delayed(long millis, Reply inner) {
    return (ex, req) -> {
      try {
        Thread.sleep(millis);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      inner.write(ex, req);
    };
  }

  public int pending() {
    return replies.size();
  }

  @Override
  public void close() {
    server.stop(0);
  }

  // ------------------------------------------------------------------ serving

  private void handle(HttpExchange ex) throws IOException {
    try {
      byte[] raw = ex.getRequestBody().readAllBytes();
      String text = new String(raw, StandardCharsets.UTF_8);
      List<String> problems = new ArrayList<>();
      JsonNode body = null;
      try {
        body = Json.MAPPER.readTree(text);
      } catch (IOException e) {
        problems.add("body is not JSON: " + e.getMessage());
      }
      Map<String, List<String>> headers = new java.util.TreeMap<>();
      ex.getRequestHeaders().forEach((k, v) -> headers.put(k.toLowerCase(), List.copyOf(v)));
      check(ex, headers, body, problems);
      requests.add(new Recorded(headers, text, body, problems));
      Reply reply = replies.pollFirst();
      if (reply == null) reply = text("done");
      reply.write(ex, body);
    } finally {
      ex.close();
    }
  }

  private void check(
      HttpExchange ex, Map<String, List<String>> headers, JsonNode body, List<String> p) {
    if (!ex.getRequestMethod().equals("POST"))
      p.add("method " + ex.getRequestMethod() + ", expected POST");
    if (!ex.getRequestURI().getPath().equals(PATH))
      p.add("path " + ex.getRequestURI().getPath() + ", expected " + PATH);
    String auth = headers.containsKey("authorization") ? headers.get("authorization").get(0) : null;
    if (expectedKey != null && !("Bearer " + expectedKey).equals(auth))
      p.add("Authorization is not 'Bearer <key>'");
    String ct = headers.containsKey("content-type") ? headers.get("content-type").get(0) : "";
    if (!ct.startsWith("application/json"))
      p.add("Content-Type " + ct + ", expected application/json");
    if (body == null || !body.isObject()) {
      p.add("body is not a JSON object");
      return;
    }
    Set<String> allowed =
        Set.of("model", "messages", "tools", "max_completion_tokens", "stream", "stream_options");
    for (Iterator<String> it = body.fieldNames(); it.hasNext(); ) {
      String f = it.next();
      if (!allowed.contains(f)) p.add("unexpected top-level field " + f);
    }
    if (!body.path("model").isTextual() || body.path("model").asText().isBlank())
      p.add("model must be a non-empty string");
    if (!body.path("max_completion_tokens").isIntegralNumber()
        || body.path("max_completion_tokens").asLong() < 1) {
      p.add("max_completion_tokens must be a positive integer");
    }
    if (body.has("stream") && !body.get("stream").isBoolean()) p.add("stream must be a boolean");
    JsonNode options = body.get("stream_options");
    if (options != null && !options.isNull()) {
      if (!body.path("stream").asBoolean(false)) p.add("stream_options without stream: true");
      if (!options.isObject()) p.add("stream_options must be an object");
      else only(options, "stream_options", p, "include_usage", "include_obfuscation");
      if (options.has("include_usage") && !options.get("include_usage").isBoolean())
        p.add("stream_options.include_usage must be a boolean");
    }
    checkMessages(body.path("messages"), p);
    checkTools(body.path("tools"), p);
  }

  private static void checkMessages(JsonNode messages, List<String> p) {
    if (!messages.isArray() || messages.isEmpty()) {
      p.add("messages must be a non-empty array");
      return;
    }
    Set<String> open =
        new LinkedHashSet<>(); // tool_call ids of the last assistant message still unanswered
    Set<String> seenCallIds = new HashSet<>();
    for (int i = 0; i < messages.size(); i++) {
      JsonNode m = messages.get(i);
      String where = "messages[" + i + "]";
      String role = m.path("role").asText();
      if (!role.equals("tool") && !open.isEmpty())
        p.add(where + ": tool_calls " + open + " not answered by tool messages before it");
      if (!role.equals("tool")) open.clear();
      switch (role) {
        case "system", "user" -> {
          if (role.equals("system") && i != 0) p.add(where + ": system message not first");
          if (!m.path("content").isTextual()) p.add(where + ": content must be a string");
          only(m, where, p, "role", "content");
        }
        case "assistant" -> {
          JsonNode content = m.get("content");
          JsonNode calls = m.get("tool_calls");
          boolean hasText = content != null && content.isTextual() && !content.asText().isEmpty();
          if (content != null && !content.isNull() && !content.isTextual())
            p.add(where + ": content must be a string or absent");
          if (calls != null && (!calls.isArray() || calls.isEmpty()))
            p.add(where + ": tool_calls must be a non-empty array");
          if (!hasText && (calls == null || calls.isEmpty()))
            p.add(where + ": assistant message with neither content nor tool_calls");
          only(m, where, p, "role", "content", "tool_calls");
          if (calls != null) {
            for (int j = 0; j < calls.size(); j++) {
              JsonNode c = calls.get(j);
              String w = where + ".tool_calls[" + j + "]";
              if (!c.path("id").isTextual() || c.path("id").asText().isBlank())
                p.add(w + ": id must be a non-empty string");
              if (!seenCallIds.add(c.path("id").asText()))
                p.add(w + ": duplicate id " + c.path("id").asText());
              open.add(c.path("id").asText());
              if (!c.path("type").asText().equals("function")) p.add(w + ": type must be function");
              if (!c.path("function").path("name").isTextual())
                p.add(w + ": function.name must be a string");
              JsonNode args = c.path("function").path("arguments");
              if (!args.isTextual()) p.add(w + ": function.arguments must be a string");
              else {
                try {
                  if (!Json.MAPPER.readTree(args.asText()).isObject())
                    p.add(w + ": function.arguments is not a JSON object");
                } catch (IOException e) {
                  p.add(w + ": function.arguments is not JSON");
                }
              }
              only(c, w, p, "id", "type", "function");
            }
          }
        }
        case "tool" -> {
          String id = m.path("tool_call_id").asText();
          if (!m.path("tool_call_id").isTextual()) p.add(where + ": tool_call_id must be a string");
          if (!open.remove(id))
            p.add(
                where
                    + ": tool_call_id "
                    + id
                    + " answers no open tool call of the previous assistant message");
          if (!m.path("content").isTextual()) p.add(where + ": content must be a string");
          only(m, where, p, "role", "content", "tool_call_id");
        }
        default -> p.add(where + ": unknown role '" + role + "'");
      }
    }
    if (!open.isEmpty()) p.add("tool_calls " + open + " never answered");
    String last = messages.get(messages.size() - 1).path("role").asText();
    if (!last.equals("user") && !last.equals("tool"))
      p.add("the last message is " + last + ", expected user or tool");
  }

  private static void checkTools(JsonNode tools, List<String> p) {
    if (!tools.isArray()) {
      p.add("tools must be an array");
      return;
    }
    if (tools.size() != ToolCatalog.ALL.size())
      p.add("tools has " + tools.size() + " entries, expected " + ToolCatalog.ALL.size());
    for (int i = 0; i < tools.size() && i < ToolCatalog.ALL.size(); i++) {
      JsonNode t = tools.get(i);
      ToolSpec spec = ToolCatalog.ALL.get(i);
      String w = "tools[" + i + "]";
      if (!t.path("type").asText().equals("function")) p.add(w + ": type must be function");
      only(t, w, p, "type", "function");
      JsonNode f = t.path("function");
      if (!f.path("name").asText().equals(spec.name()))
        p.add(w + ": function.name " + f.path("name") + ", expected " + spec.name());
      if (!f.path("description").asText().equals(spec.description()))
        p.add(w + ": function.description differs from ToolSpec");
      if (!f.path("parameters").equals(spec.inputSchema()))
        p.add(w + ": function.parameters differs from ToolSpec.inputSchema()");
      only(f, w + ".function", p, "name", "description", "parameters");
    }
  }

  private static void only(JsonNode node, String where, List<String> p, String... fields) {
    Set<String> ok = Set.of(fields);
    for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
      String f = it.next();
      if (!ok.contains(f)) p.add(where + ": unexpected field " + f);
    }
  }

  // ------------------------------------------------------------------ answers

  /** A documented-shape completion: {@code message} and {@code finish_reason}, usage as given. */
  public ObjectNode completion(
      JsonNode request,
      ObjectNode message,
      String finishReason,
      long prompt,
      long completion,
      long cached) {
    ObjectNode root = Json.MAPPER.createObjectNode();
    root.put("id", "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJ" + ids.incrementAndGet());
    root.put("object", "chat.completion");
    root.put("created", 1741569952L);
    root.put(
        "model",
        request != null && request.path("model").isTextual()
            ? request.path("model").asText() + "-2025-04-14"
            : "gpt-4.1-2025-04-14");
    ObjectNode choice = root.putArray("choices").addObject();
    choice.put("index", 0);
    choice.set("message", message);
    choice.putNull("logprobs");
    choice.put("finish_reason", finishReason);
    ObjectNode usage = root.putObject("usage");
    usage.put("prompt_tokens", prompt);
    usage.put("completion_tokens", completion);
    usage.put("total_tokens", prompt + completion);
    usage.putObject("prompt_tokens_details").put("cached_tokens", cached).put("audio_tokens", 0);
    usage
        .putObject("completion_tokens_details")
        .put("reasoning_tokens", 0)
        .put("audio_tokens", 0)
        .put("accepted_prediction_tokens", 0)
        .put("rejected_prediction_tokens", 0);
    root.put("service_tier", "default");
    return root;
  }

  private static ObjectNode assistant(String content) {
    ObjectNode m = Json.MAPPER.createObjectNode().put("role", "assistant");
    if (content == null) m.putNull("content");
    else m.put("content", content);
    m.putNull("refusal");
    m.putArray("annotations");
    return m;
  }

  /** An answer that ends the turn with {@code text} (finish_reason stop). */
  public Reply text(String text) {
    return (ex, req) ->
        answer(ex, req, completion(req, assistant(text), "stop", 19, 10, 0), StreamEnd.WHOLE);
  }

  /**
   * An answer asking for {@code calls} (finish_reason tool_calls), with usage {@code prompt}/{@code
   * cached}.
   */
  public Reply toolCalls(String text, long prompt, long cached, Call... calls) {
    return (ex, req) -> {
      ObjectNode m = assistant(text);
      ArrayNode arr = m.putArray("tool_calls");
      for (Call c : calls) {
        ObjectNode tc = arr.addObject().put("id", c.id()).put("type", "function");
        tc.putObject("function").put("name", c.name()).put("arguments", c.arguments());
      }
      answer(ex, req, completion(req, m, "tool_calls", prompt, 30, cached), StreamEnd.WHOLE);
    };
  }

  /** An answer cut off at the output limit (finish_reason length). */
  public Reply length(String partial) {
    return (ex, req) ->
        answer(
            ex, req, completion(req, assistant(partial), "length", 19, 8192, 0), StreamEnd.WHOLE);
  }

  /** An error answer in the documented error shape. */
  public static Reply error(
      int status, String type, String code, String message, Map<String, String> headers) {
    return (ex, req) -> {
      ObjectNode root = Json.MAPPER.createObjectNode();
      ObjectNode err = root.putObject("error");
      err.put("message", message).put("type", type).putNull("param");
      if (code == null) err.putNull("code");
      else err.put("code", code);
      json(ex, status, root, headers);
    };
  }

  /** 429 with {@code retry-after} (seconds). */
  public static Reply rateLimited(String retryAfterSeconds) {
    return error(
        429,
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for gpt-test in organization org-test on requests per min (RPM): Limit"
            + " 3, Used 3, Requested 1.",
        Map.of("retry-after", retryAfterSeconds, "x-ratelimit-limit-requests", "3"));
  }

  /** 503 overloaded. */
  public static Reply overloaded() {
    return error(
        503,
        "server_error",
        "overloaded",
        "The engine is currently overloaded, please try again later",
        Map.of());
  }

  /** 200 with {@code body} sent exactly (malformed JSON, or JSON of the wrong shape). */
  public static Reply raw(String body) {
    return (ex, req) -> send(ex, 200, body.getBytes(StandardCharsets.UTF_8), Map.of());
  }

  /** Headers and part of a valid body (declared at full length), then the connection is closed. */
  public Reply cutOff() {
    return (ex, req) -> {
      byte[] full =
          Json.MAPPER.writeValueAsBytes(
              completion(req, assistant("this answer never arrives whole"), "stop", 19, 10, 0));
      ex.getResponseHeaders().set("Content-Type", "application/json");
      ex.sendResponseHeaders(200, full.length);
      OutputStream out = ex.getResponseBody();
      out.write(full, 0, full.length / 2);
      out.flush();
      // Closing now, short of the declared length, makes the server drop the connection.
      throw new IOException("test: connection closed mid-body");
    };
  }

  /**
   * An answer that, when streamed, breaks off half-way with an error object in the stream (the
   * documented error shape, as OpenAI sends it once a stream has begun); unstreamed it arrives
   * whole.
   */
  public Reply streamError() {
    return (ex, req) ->
        answer(
            ex,
            req,
            completion(
                req, assistant("this answer breaks off half-way through"), "stop", 19, 10, 0),
            StreamEnd.ERROR);
  }

  /**
   * An answer that, when streamed, stops half-way: the connection drops short of the promised
   * length.
   */
  public Reply streamCutOff() {
    return (ex, req) ->
        answer(
            ex,
            req,
            completion(req, assistant("this answer never arrives whole"), "stop", 19, 10, 0),
            StreamEnd.CUT);
  }

  private enum StreamEnd {
    WHOLE,
    ERROR,
    CUT
  }

  private static final String STREAM_ERROR =
      "{\"error\":{\"message\":\"The server had an error while processing your request. Sorry about"
          + " that!\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";

  /** {@code completion} as JSON, or as an event stream if the request asked for one. */
  private static void answer(HttpExchange ex, JsonNode req, ObjectNode completion, StreamEnd end)
      throws IOException {
    if (req == null || !req.path("stream").asBoolean(false)) {
      json(ex, 200, completion, Map.of());
      return;
    }
    List<String> events = new ArrayList<>();
    for (ObjectNode chunk :
        chunks(completion, req.path("stream_options").path("include_usage").asBoolean(false))) {
      events.add("data: " + chunk + "\n\n");
    }
    events.add("data: [DONE]\n\n");
    ex.getResponseHeaders().set("Content-Type", "text/event-stream; charset=utf-8");
    ex.getResponseHeaders().set("x-request-id", "req_test");
    OutputStream out = ex.getResponseBody();
    if (end == StreamEnd.CUT) {
      byte[] all = String.join("", events).getBytes(StandardCharsets.UTF_8);
      ex.sendResponseHeaders(200, all.length);
      out.write(all, 0, all.length / 2);
      out.flush();
      throw new IOException("test: connection closed mid-stream"); // short of the declared length
    }
    ex.sendResponseHeaders(200, 0); // chunked
    int count = end == StreamEnd.ERROR ? events.size() / 2 : events.size();
    for (int i = 0; i < count; i++) {
      out.write(events.get(i).getBytes(StandardCharsets.UTF_8));
      out.flush();
    }
    if (end == StreamEnd.ERROR)
      out.write(("data: " + STREAM_ERROR + "\n\n").getBytes(StandardCharsets.UTF_8));
    out.close();
  }

  /** The documented chunks of one whole completion. */
  static List<ObjectNode> chunks(ObjectNode completion, boolean includeUsage) {
    List<ObjectNode> out = new ArrayList<>();
    JsonNode choice = completion.path("choices").get(0);
    JsonNode message = choice.path("message");
    out.add(
        chunk(
            completion,
            includeUsage,
            Json.MAPPER
                .createObjectNode()
                .put("role", "assistant")
                .put("content", "")
                .putNull("refusal"),
            null));
    if (message.path("content").isTextual()) {
      for (String piece : AnthropicWire.pieces(message.path("content").asText(), 3)) {
        out.add(
            chunk(
                completion,
                includeUsage,
                Json.MAPPER.createObjectNode().put("content", piece),
                null));
      }
    }
    JsonNode calls = message.path("tool_calls");
    for (int j = 0; j < calls.size(); j++) {
      JsonNode call = calls.get(j);
      ObjectNode first = Json.MAPPER.createObjectNode();
      ObjectNode tc =
          first
              .putArray("tool_calls")
              .addObject()
              .put("index", j)
              .put("id", call.path("id").asText())
              .put("type", "function");
      tc.putObject("function")
          .put("name", call.path("function").path("name").asText())
          .put("arguments", "");
      out.add(chunk(completion, includeUsage, first, null));
      for (String piece :
          AnthropicWire.pieces(call.path("function").path("arguments").asText(), 3)) {
        ObjectNode more = Json.MAPPER.createObjectNode();
        more.putArray("tool_calls")
            .addObject()
            .put("index", j)
            .putObject("function")
            .put("arguments", piece);
        out.add(chunk(completion, includeUsage, more, null));
      }
    }
    out.add(
        chunk(
            completion,
            includeUsage,
            Json.MAPPER.createObjectNode(),
            choice.path("finish_reason").asText()));
    if (includeUsage) {
      ObjectNode last = chunkBase(completion);
      last.putArray("choices");
      last.set("usage", completion.path("usage"));
      out.add(last);
    }
    return out;
  }

  private static ObjectNode chunk(
      ObjectNode completion, boolean includeUsage, ObjectNode delta, String finishReason) {
    ObjectNode c = chunkBase(completion);
    ObjectNode choice = c.putArray("choices").addObject();
    choice.put("index", 0);
    choice.set("delta", delta);
    choice.putNull("logprobs");
    if (finishReason == null) choice.putNull("finish_reason");
    else choice.put("finish_reason", finishReason);
    if (includeUsage) c.putNull("usage");
    return c;
  }

  private static ObjectNode chunkBase(ObjectNode completion) {
    ObjectNode c = Json.MAPPER.createObjectNode();
    c.set("id", completion.path("id"));
    c.put("object", "chat.completion.chunk");
    c.set("created", completion.path("created"));
    c.set("model", completion.path("model"));
    c.set("service_tier", completion.path("service_tier"));
    c.putNull("system_fingerprint");
    return c;
  }

  private static void json(HttpExchange ex, int status, JsonNode body, Map<String, String> headers)
      throws IOException {
    send(ex, status, Json.MAPPER.writeValueAsBytes(body), headers);
  }

  private static void send(HttpExchange ex, int status, byte[] body, Map<String, String> headers)
      throws IOException {
    ex.getResponseHeaders().set("Content-Type", "application/json");
    ex.getResponseHeaders().set("x-request-id", "req_test");
    headers.forEach((k, v) -> ex.getResponseHeaders().set(k, v));
    ex.sendResponseHeaders(status, body.length);
    try (OutputStream out = ex.getResponseBody()) {
      out.write(body);
    }
  }
}
