package dev.outboard.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.outboard.Json;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;
import java.util.regex.Pattern;

/**
 * A local stand-in of the Anthropic Messages API ({@code POST /v1/messages}) on 127.0.0.1. Every
 * request is checked field by field against the documented request shape (violations are recorded
 * and answered with a 400 {@code invalid_request_error}, as the real API would) and recorded.
 * Answers come from a queue (then from a fallback function) and are built after the documented
 * example response: {@code {"id": "msg_…", "type": "message", "role": "assistant", "content":
 * [...], "model", "stop_reason", "stop_sequence", "usage": {...}}}. Errors use the documented error
 * body {@code {"type": "error", "error": {"type", "message"}}}.
 *
 * <p>Prompt caching is simulated: every content-block boundary up to a {@code cache_control}
 * breakpoint (tools, then system, then messages) is a cacheable prefix; a request reads the longest
 * prefix written before (looking back up to 20 blocks from each breakpoint, as documented) and
 * writes the prefixes up to its breakpoints. Tokens are counted as characters / 4.
 *
 * <p>A request with {@code "stream": true} gets a 200 answer as the documented server-sent events,
 * built from the same programmed message: {@code message_start} (usage with the input and cache
 * tokens), {@code ping}, per block {@code content_block_start}, {@code content_block_delta}s
 * ({@code text_delta}: the text in three or more pieces; {@code input_json_delta}: the tool input's
 * JSON in three pieces), {@code content_block_stop}, then {@code message_delta} (stop_reason,
 * output tokens) and {@code message_stop}. Error statuses are answered as JSON, as the API does
 * before a stream begins. {@link #streamError} breaks a stream off half-way with an {@code error}
 * event; {@link #cutOff} drops the connection after that many bytes of the event stream.
 */
final class AnthropicWire implements AutoCloseable {
  static final String VERSION_HEADER = "anthropic-version";
  private static final Pattern TOOL_NAME = Pattern.compile("^[a-zA-Z0-9_-]{1,64}$");
  private static final Set<String> TOP_LEVEL =
      Set.of(
          "model",
          "max_tokens",
          "system",
          "tools",
          "messages",
          "tool_choice",
          "temperature",
          "top_k",
          "top_p",
          "stop_sequences",
          "metadata",
          "stream",
          "thinking",
          "service_tier");

  /**
   * One programmed answer. {@code cutAfter} >= 0: send that many body bytes of a longer promised
   * body, then drop the connection. {@code streamError}: if streamed, send half of the events, then
   * this {@code error} event's data, and end the stream.
   */
  record Reply(
      int status, Map<String, String> headers, String body, int cutAfter, String streamError) {
    Reply(int status, Map<String, String> headers, String body, int cutAfter) {
      this(status, headers, body, cutAfter, null);
    }
  }

  /** One request as received, with the simulated cache outcome. */
  record Recorded(
      String method,
      String path,
      Map<String, List<String>> headers,
      JsonNode body,
      long atNanos,
      long inputTokens,
      long cacheRead,
      long cacheWrite,
      long prefixTokens) {
    String header(String name) {
      for (Map.Entry<String, List<String>> e : headers.entrySet()) {
        if (e.getKey().equalsIgnoreCase(name))
          return e.getValue().isEmpty() ? null : e.getValue().get(0);
      }
      return null;
    }
  }

  private final HttpServer server;
  private final ExecutorService executor =
      Executors.newCachedThreadPool(
          r -> {
            Thread t = new Thread(r, "anthropic-wire");
            t.setDaemon(true);
            return t;
          });
  private final String expectedKey;
  private final Deque<Function<JsonNode, Reply>> queue = new ArrayDeque<>();
  private final List<Recorded> requests = new ArrayList<>();
  private final List<String> violations = new ArrayList<>();
  private final Set<String> cache = new HashSet<>();
  private final AtomicInteger ids = new AtomicInteger();
  private volatile Function<JsonNode, Reply> fallback =
      req -> message(req, List.of(text("done")), "end_turn");
  private volatile int minCacheTokens = 1024;

  AnthropicWire(String expectedKey) throws IOException {
    this.expectedKey = expectedKey;
    server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 2000);
    server.createContext("/", this::handle);
    server.setExecutor(executor);
    server.start();
  }

  String baseUrl() {
    return "http://127.0.0.1:" + server.getAddress().getPort();
  }

  // ------------------------------------------------------------------ programming

  synchronized AnthropicWire enqueue(Reply reply) {
    queue.add(req -> reply);
    return this;
  }

  synchronized AnthropicWire enqueue(Function<JsonNode, Reply> reply) {
    queue.add(reply);
    return this;
  }

  AnthropicWire fallback(Function<JsonNode, Reply> f) {
    this.fallback = f;
    return this;
  }

  AnthropicWire minCacheTokens(int tokens) {
    this.minCacheTokens = tokens;
    return this;
  }

  /** Forgets the cached prefixes (two calls of one request then see the same cache). */
  synchronized void clearCache() {
    cache.clear();
  }

  synchronized void reset() {
    queue.clear();
    requests.clear();
    violations.clear();
    cache.clear();
    minCacheTokens = 1024;
    fallback = req -> message(req, List.of(text("done")), "end_turn");
  }

  synchronized List<Recorded> requests() {
    return List.copyOf(requests);
  }

  synchronized List<String> violations() {
    return List.copyOf(violations);
  }

  // ------------------------------------------------------------------ answers (documented shapes)

  static ObjectNode text(String text) {
    return Json.MAPPER.createObjectNode().put("type", "text").put("text", text);
  }

  static ObjectNode toolUse(String id, String name, JsonNode input) {
    ObjectNode b =
        Json.MAPPER.createObjectNode().put("type", "tool_use").put("id", id).put("name", name);
    b.set("input", input);
    return b;
  }

  /**
   * A 200 answer in the documented Message shape; usage is filled in when the request is served.
   */
  static Reply message(JsonNode request, List<ObjectNode> content, String stopReason) {
    ObjectNode m = Json.MAPPER.createObjectNode();
    m.put("id", "msg_01" + Long.toHexString(System.nanoTime()));
    m.put("type", "message");
    m.put("role", "assistant");
    ArrayNode c = m.putArray("content");
    content.forEach(c::add);
    m.put("model", request.path("model").asText());
    m.put("stop_reason", stopReason);
    m.putNull("stop_sequence");
    int out = content.stream().mapToInt(b -> b.toString().length() / 4 + 1).sum();
    m.putObject("usage").put("input_tokens", -1).put("output_tokens", out);
    return new Reply(
        200,
        Map.of("content-type", "application/json", "request-id", "req_" + System.nanoTime()),
        m.toString(),
        -1);
  }

  /** The documented error body, e.g. 429 rate_limit_error, 529 overloaded_error. */
  static Reply error(int status, String type, String message, Map<String, String> headers) {
    Map<String, String> h = new LinkedHashMap<>(headers);
    h.put("content-type", "application/json");
    String body =
        "{\"type\":\"error\",\"error\":{\"type\":\""
            + type
            + "\",\"message\":\""
            + message
            + "\"}}";
    return new Reply(status, h, body, -1);
  }

  static Reply raw(int status, String body) {
    return new Reply(status, Map.of("content-type", "application/json"), body, -1);
  }

  /** A documented message answer whose connection drops after {@code bytes} bytes of its body. */
  static Function<JsonNode, Reply> cutOff(int bytes) {
    return req -> {
      Reply full = message(req, List.of(text("this answer never arrives whole")), "end_turn");
      return new Reply(200, full.headers(), full.body(), bytes);
    };
  }

  /**
   * A documented message answer which, when streamed, breaks off half-way with an {@code error}
   * event of the documented shape (e.g. {@code overloaded_error}); unstreamed it arrives whole.
   */
  static Function<JsonNode, Reply> streamError(String type, String message) {
    return req -> {
      Reply full =
          message(req, List.of(text("this answer breaks off half-way through")), "end_turn");
      return new Reply(
          200, full.headers(), full.body(), -1, error(529, type, message, Map.of()).body());
    };
  }

  // ------------------------------------------------------------------ serving

  private void handle(HttpExchange ex) throws IOException {
    try (ex) {
      byte[] raw = ex.getRequestBody().readAllBytes();
      JsonNode body;
      try {
        body = Json.MAPPER.readTree(raw);
      } catch (IOException e) {
        body = Json.MAPPER.createObjectNode();
      }
      List<String> problems = check(ex, body);
      Function<JsonNode, Reply> next;
      long[] usage;
      synchronized (this) {
        usage = problems.isEmpty() ? simulateCache(body) : new long[] {0, 0, 0, 0};
        requests.add(
            new Recorded(
                ex.getRequestMethod(),
                ex.getRequestURI().getPath(),
                Map.copyOf(ex.getRequestHeaders()),
                body,
                System.nanoTime(),
                usage[0],
                usage[1],
                usage[2],
                usage[3]));
        violations.addAll(problems);
        next = queue.poll();
        if (next == null) next = fallback;
      }
      // Answers are built outside the lock: a programmed answer may wait for other requests.
      Reply reply =
          !problems.isEmpty()
              ? error(
                  400,
                  "invalid_request_error",
                  String.join("; ", problems).replace("\"", "'"),
                  Map.of())
              : next.apply(body);
      String out = reply.body();
      if (reply.status() == 200 && out.contains("\"input_tokens\":-1")) {
        ObjectNode m = (ObjectNode) Json.MAPPER.readTree(out);
        ((ObjectNode) m.get("usage"))
            .put("input_tokens", usage[0])
            .put("cache_creation_input_tokens", usage[2])
            .put("cache_read_input_tokens", usage[1]);
        out = m.toString();
      }
      if (body.path("stream").asBoolean(false) && reply.status() == 200 && isMessage(out)) {
        stream(ex, reply, (ObjectNode) Json.MAPPER.readTree(out));
        return;
      }
      byte[] bytes = out.getBytes(StandardCharsets.UTF_8);
      reply.headers().forEach((k, v) -> ex.getResponseHeaders().add(k, v));
      ex.sendResponseHeaders(reply.status(), bytes.length);
      OutputStream os = ex.getResponseBody();
      if (reply.cutAfter() >= 0) {
        os.write(bytes, 0, Math.min(reply.cutAfter(), bytes.length - 1));
        os.flush();
        // Closing the exchange with fewer bytes than promised makes the JDK server drop the
        // connection ("insufficient bytes written to stream"): the client sees a cut-off body.
        ex.close();
        return;
      }
      os.write(bytes);
    } catch (RuntimeException | IOException e) {
      synchronized (this) {
        violations.add("wire server failed: " + e);
      }
      throw e;
    }
  }

  private static boolean isMessage(String body) {
    try {
      return "message".equals(Json.MAPPER.readTree(body).path("type").asText());
    } catch (IOException e) {
      return false;
    }
  }

  /** Sends {@code message} as the documented event stream, flushing event by event. */
  private static void stream(HttpExchange ex, Reply reply, ObjectNode message) throws IOException {
    List<String> events = events(message);
    reply
        .headers()
        .forEach(
            (k, v) -> {
              if (!k.equalsIgnoreCase("content-type")) ex.getResponseHeaders().add(k, v);
            });
    ex.getResponseHeaders().set("content-type", "text/event-stream; charset=utf-8");
    ex.getResponseHeaders().set("cache-control", "no-cache");
    OutputStream os = ex.getResponseBody();
    if (reply.cutAfter() >= 0) {
      byte[] all = String.join("", events).getBytes(StandardCharsets.UTF_8);
      ex.sendResponseHeaders(200, all.length);
      os.write(all, 0, Math.min(reply.cutAfter(), all.length - 1));
      os.flush();
      ex.close(); // short of the promised length: the connection drops (see handle)
      return;
    }
    ex.sendResponseHeaders(200, 0); // chunked
    int count = reply.streamError() != null ? events.size() / 2 : events.size();
    for (int i = 0; i < count; i++) {
      os.write(events.get(i).getBytes(StandardCharsets.UTF_8));
      os.flush();
    }
    if (reply.streamError() != null)
      os.write(sse("error", reply.streamError()).getBytes(StandardCharsets.UTF_8));
    os.flush();
  }

  /** The documented event stream of one whole message. */
  static List<String> events(ObjectNode message) {
    List<String> out = new ArrayList<>();
    JsonNode usage = message.path("usage");
    ObjectNode start = message.deepCopy();
    start.putArray("content");
    start.putNull("stop_reason");
    start.putNull("stop_sequence");
    ObjectNode startUsage = Json.MAPPER.createObjectNode();
    for (String f :
        List.of("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")) {
      if (usage.has(f)) startUsage.set(f, usage.get(f));
    }
    startUsage.put("output_tokens", 1);
    start.set("usage", startUsage);
    out.add(sse("message_start", event("message_start").set("message", start).toString()));
    out.add(sse("ping", event("ping").toString()));
    JsonNode content = message.path("content");
    for (int i = 0; i < content.size(); i++) {
      JsonNode block = content.get(i);
      ObjectNode empty = block.deepCopy();
      List<String> pieces;
      String deltaType;
      String field;
      if ("tool_use".equals(block.path("type").asText())) {
        empty.putObject("input");
        pieces = pieces(block.path("input").toString(), 3);
        deltaType = "input_json_delta";
        field = "partial_json";
      } else {
        empty.put("text", "");
        pieces = pieces(block.path("text").asText(), 3);
        deltaType = "text_delta";
        field = "text";
      }
      out.add(
          sse(
              "content_block_start",
              event("content_block_start").put("index", i).set("content_block", empty).toString()));
      for (String piece : pieces) {
        ObjectNode delta = Json.MAPPER.createObjectNode().put("type", deltaType).put(field, piece);
        out.add(
            sse(
                "content_block_delta",
                event("content_block_delta").put("index", i).set("delta", delta).toString()));
      }
      out.add(sse("content_block_stop", event("content_block_stop").put("index", i).toString()));
    }
    ObjectNode delta = event("message_delta");
    delta
        .putObject("delta")
        .put("stop_reason", message.path("stop_reason").asText())
        .putNull("stop_sequence");
    delta.putObject("usage").put("output_tokens", usage.path("output_tokens").asLong());
    out.add(sse("message_delta", delta.toString()));
    out.add(sse("message_stop", event("message_stop").toString()));
    return out;
  }

  private static ObjectNode event(String type) {
    return Json.MAPPER.createObjectNode().put("type", type);
  }

  private static String sse(String event, String data) {
    return "event: " + event + "\ndata: " + data + "\n\n";
  }

  /**
   * {@code s} in {@code n} pieces of about equal length (fewer if it is shorter), whole code points
   * each.
   */
  static List<String> pieces(String s, int n) {
    List<String> out = new ArrayList<>();
    int points = s.codePointCount(0, s.length());
    int from = 0;
    for (int i = 1; i <= n; i++) {
      int to = s.offsetByCodePoints(0, points * i / n);
      if (to > from) out.add(s.substring(from, to));
      from = to;
    }
    return out;
  }

  // ------------------------------------------------------------------ request checks

  private List<String> check(HttpExchange ex, JsonNode body) {
    List<String> p = new ArrayList<>();
    if (!ex.getRequestMethod().equals("POST"))
      p.add("method " + ex.getRequestMethod() + " (want POST)");
    if (!ex.getRequestURI().getPath().equals("/v1/messages"))
      p.add("path " + ex.getRequestURI().getPath() + " (want /v1/messages)");
    String auth = ex.getRequestHeaders().getFirst("Authorization");
    String xKey = ex.getRequestHeaders().getFirst("x-api-key");
    // anthropic-java 3.14.0 sends the key as a bearer token (DEPENDENCIES.md pitfall 6); x-api-key
    // is the documented one.
    if (!(("Bearer " + expectedKey).equals(auth) || expectedKey.equals(xKey)))
      p.add("no valid credentials (Authorization / x-api-key)");
    String version = ex.getRequestHeaders().getFirst(VERSION_HEADER);
    if (version == null || !version.matches("\\d{4}-\\d{2}-\\d{2}"))
      p.add("anthropic-version header missing or malformed: " + version);
    String ct = ex.getRequestHeaders().getFirst("Content-Type");
    if (ct == null || !ct.startsWith("application/json")) p.add("content-type " + ct);
    if (!body.isObject()) {
      p.add("body is not a JSON object");
      return p;
    }
    body.fieldNames()
        .forEachRemaining(
            f -> {
              if (!TOP_LEVEL.contains(f)) p.add("unknown top-level field " + f);
            });
    if (!body.path("model").isTextual() || body.path("model").asText().isBlank())
      p.add("model missing");
    if (!body.path("max_tokens").isIntegralNumber() || body.path("max_tokens").asLong() < 1)
      p.add("max_tokens missing or < 1");
    if (body.has("stream") && !body.get("stream").isBoolean()) p.add("stream must be a boolean");
    int breakpoints = 0;
    JsonNode system = body.get("system");
    if (system != null) {
      if (system.isArray()) {
        for (JsonNode b : system) {
          if (!"text".equals(b.path("type").asText())
              || !b.path("text").isTextual()
              || b.path("text").asText().isEmpty()) {
            p.add("system block must be a non-empty text block: " + b);
          }
          breakpoints += cacheControl(b, p);
        }
      } else if (!system.isTextual()) {
        p.add("system must be a string or text blocks");
      }
    }
    JsonNode tools = body.get("tools");
    if (tools != null) {
      if (!tools.isArray()) p.add("tools must be an array");
      Set<String> names = new HashSet<>();
      for (JsonNode t : tools) {
        String name = t.path("name").asText();
        if (!TOOL_NAME.matcher(name).matches()) p.add("bad tool name " + name);
        if (!names.add(name)) p.add("duplicate tool " + name);
        if (t.has("description") && !t.get("description").isTextual())
          p.add("tool description not a string: " + name);
        JsonNode schema = t.path("input_schema");
        if (!"object".equals(schema.path("type").asText()))
          p.add("input_schema.type must be object: " + name);
        if (schema.has("properties") && !schema.get("properties").isObject())
          p.add("input_schema.properties not an object: " + name);
        if (schema.has("required") && !schema.get("required").isArray())
          p.add("input_schema.required not an array: " + name);
        t.fieldNames()
            .forEachRemaining(
                f -> {
                  if (!Set.of(
                          "name", "description", "input_schema", "cache_control", "type", "strict")
                      .contains(f)) p.add("unknown tool field " + f);
                });
        breakpoints += cacheControl(t, p);
      }
    }
    JsonNode messages = body.path("messages");
    if (!messages.isArray() || messages.isEmpty()) {
      p.add("messages must be a non-empty array");
      return p;
    }
    String prevRole = null;
    Set<String> pendingToolUses = new HashSet<>();
    for (int i = 0; i < messages.size(); i++) {
      JsonNode m = messages.get(i);
      String role = m.path("role").asText();
      if (!role.equals("user") && !role.equals("assistant"))
        p.add("message " + i + ": role " + role);
      if (i == 0 && !role.equals("user")) p.add("the first message must be from the user");
      if (role.equals(prevRole)) p.add("message " + i + ": two " + role + " messages in a row");
      JsonNode content = m.path("content");
      if (content.isTextual()) {
        if (content.asText().isEmpty()) p.add("message " + i + ": empty content");
        if (role.equals("user") && !pendingToolUses.isEmpty())
          p.add("message " + i + ": tool_use ids without tool_result: " + pendingToolUses);
        pendingToolUses.clear();
        prevRole = role;
        continue;
      }
      if (!content.isArray() || content.isEmpty())
        p.add("message " + i + ": content must be a non-empty array");
      Set<String> answered = new HashSet<>();
      Set<String> uses = new HashSet<>();
      for (JsonNode b : content) {
        String type = b.path("type").asText();
        switch (type) {
          case "text" -> {
            if (!b.path("text").isTextual() || b.path("text").asText().isEmpty())
              p.add("message " + i + ": empty text block");
          }
          case "tool_use" -> {
            if (!role.equals("assistant")) p.add("message " + i + ": tool_use in a user message");
            if (!b.path("id").isTextual() || b.path("id").asText().isEmpty())
              p.add("message " + i + ": tool_use without id");
            if (!TOOL_NAME.matcher(b.path("name").asText()).matches())
              p.add("message " + i + ": tool_use name " + b.path("name"));
            if (!b.path("input").isObject())
              p.add("message " + i + ": tool_use input must be an object");
            if (!uses.add(b.path("id").asText())) p.add("message " + i + ": duplicate tool_use id");
          }
          case "tool_result" -> {
            if (!role.equals("user"))
              p.add("message " + i + ": tool_result in an assistant message");
            String id = b.path("tool_use_id").asText();
            if (!pendingToolUses.contains(id))
              p.add("message " + i + ": tool_result for unknown tool_use_id " + id);
            answered.add(id);
            if (b.has("content") && !(b.get("content").isTextual() || b.get("content").isArray()))
              p.add("message " + i + ": tool_result content");
            if (b.has("is_error") && !b.get("is_error").isBoolean())
              p.add("message " + i + ": is_error must be boolean");
            b.fieldNames()
                .forEachRemaining(
                    f -> {
                      if (!Set.of("type", "tool_use_id", "content", "is_error", "cache_control")
                          .contains(f)) p.add("unknown tool_result field " + f);
                    });
          }
          default -> p.add("message " + i + ": unknown block type " + type);
        }
        breakpoints += cacheControl(b, p);
      }
      if (role.equals("user")
          && !pendingToolUses.isEmpty()
          && !answered.containsAll(pendingToolUses)) {
        p.add("message " + i + ": tool_use ids without tool_result: " + pendingToolUses);
      }
      pendingToolUses = role.equals("assistant") ? uses : new HashSet<>();
      prevRole = role;
    }
    if (!"user".equals(prevRole)) p.add("the last message must be from the user");
    if (breakpoints > 4) p.add("more than 4 cache_control breakpoints: " + breakpoints);
    return p;
  }

  private static int cacheControl(JsonNode block, List<String> p) {
    JsonNode cc = block.get("cache_control");
    if (cc == null || cc.isNull()) return 0;
    if (!"ephemeral".equals(cc.path("type").asText()))
      p.add("cache_control type must be ephemeral: " + cc);
    return 1;
  }

  // ------------------------------------------------------------------ prompt caching

  /**
   * Returns {input_tokens, cache_read, cache_write, stable prefix tokens (tools + system)}. The
   * prefix key of a boundary is the request's content up to that block, cache_control removed.
   */
  private long[] simulateCache(JsonNode body) {
    List<JsonNode> blocks = new ArrayList<>();
    List<Boolean> marked = new ArrayList<>();
    body.path("tools").forEach(b -> add(blocks, marked, b));
    JsonNode system = body.path("system");
    if (system.isTextual()) add(blocks, marked, system);
    else system.forEach(b -> add(blocks, marked, b));
    int stableBlocks = blocks.size();
    for (JsonNode m : body.path("messages")) {
      JsonNode c = m.path("content");
      if (c.isTextual()) add(blocks, marked, c);
      else
        c.forEach(
            b ->
                add(
                    blocks,
                    marked,
                    Json.MAPPER
                        .createObjectNode()
                        .put("role", m.path("role").asText())
                        .set("block", b)));
    }
    String model = body.path("model").asText();
    List<String> keys = new ArrayList<>();
    long[] cumulative = new long[blocks.size() + 1];
    StringBuilder sb = new StringBuilder(model);
    for (int i = 0; i < blocks.size(); i++) {
      String s = blocks.get(i).toString();
      sb.append('\u0000').append(s);
      keys.add(Integer.toHexString(sb.toString().hashCode()) + ":" + sb.length());
      cumulative[i + 1] = cumulative[i] + Math.max(1, s.length() / 4);
    }
    long total = cumulative[blocks.size()];
    int hit = 0; // number of leading blocks read from the cache
    int lastBreakpoint = 0;
    for (int i = 0; i < blocks.size(); i++) {
      if (!marked.get(i)) continue;
      lastBreakpoint = i + 1;
      for (int j = i; j >= Math.max(0, i - 20); j--) {
        if (j + 1 > hit && cache.contains(keys.get(j))) {
          hit = j + 1;
          break;
        }
      }
    }
    for (int i = 0; i < blocks.size(); i++) {
      if (marked.get(i) && cumulative[i + 1] >= minCacheTokens) cache.add(keys.get(i));
    }
    long read = cumulative[hit];
    long write =
        lastBreakpoint > hit && cumulative[lastBreakpoint] >= minCacheTokens
            ? cumulative[lastBreakpoint] - read
            : 0;
    long input = total - read - write;
    return new long[] {input, read, write, cumulative[stableBlocks]};
  }

  private static void add(List<JsonNode> blocks, List<Boolean> marked, JsonNode block) {
    boolean cc = block.has("cache_control") || block.path("block").has("cache_control");
    JsonNode copy = block.deepCopy();
    if (copy instanceof ObjectNode o) {
      o.remove("cache_control");
      if (o.get("block") instanceof ObjectNode inner) inner.remove("cache_control");
    }
    blocks.add(copy);
    marked.add(cc);
  }

  @Override
  public void close() {
    server.stop(0);
    executor.shutdownNow();
  }
}
