package dev.outboard.testing;

import dev.outboard.Json;
import io.modelcontextprotocol.common.McpTransportContext;
import io.modelcontextprotocol.json.jackson2.JacksonMcpJsonMapper;
import io.modelcontextprotocol.server.McpServer;
import io.modelcontextprotocol.server.McpServerFeatures.SyncToolSpecification;
import io.modelcontextprotocol.server.McpSyncServer;
import io.modelcontextprotocol.server.McpSyncServerExchange;
import io.modelcontextprotocol.server.transport.HttpServletStreamableServerTransportProvider;
import io.modelcontextprotocol.spec.McpSchema;
import jakarta.servlet.DispatcherType;
import jakarta.servlet.Filter;
import jakarta.servlet.http.HttpServletRequest;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BiFunction;
import org.eclipse.jetty.ee10.servlet.FilterHolder;
import org.eclipse.jetty.ee10.servlet.ServletContextHandler;
import org.eclipse.jetty.ee10.servlet.ServletHolder;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

/**
 * A real MCP server for the tests, built from the official SDK's server side (Streamable HTTP
 * servlet transport on Jetty, loopback only). Its tools:
 *
 * <ul>
 *   <li>{@code whoami}: {@code bearer-ok} if the request's {@code Authorization} is {@code Bearer
 *       <token>} (the token it was started with), {@code bearer-wrong} for another, {@code
 *       no-bearer} without one;
 *   <li>{@code echo {text}}: the text;
 *   <li>{@code leak}: the {@code Authorization} header it received, as a careless server might;
 *   <li>{@code refuse}: an error result;
 *   <li>{@code slow {ms, label}}: honours the idempotency key: the first call of a key runs (sleeps
 *       {@code ms}, counts a run), a repeated key waits for and answers that run's result.
 * </ul>
 *
 * It records the {@code Authorization} of every HTTP request, the idempotency keys of the calls,
 * and how many times tools/list was answered.
 */
public final class McpTestServer implements AutoCloseable {
  private final String token;
  private final Server jetty;
  private final int port;

  /** The Authorization header of every HTTP request (empty string: none). */
  public final List<String> authorizations = Collections.synchronizedList(new ArrayList<>());

  /** The Idempotency-Key header, and the key in _meta, of every tool call, in order. */
  public final List<String> headerKeys = Collections.synchronizedList(new ArrayList<>());

  public final List<String> metaKeys = Collections.synchronizedList(new ArrayList<>());

  /** How many times {@code slow} really ran, by idempotency key. */
  public final Map<String, AtomicInteger> slowRuns = new ConcurrentHashMap<>();

  private final Map<String, CompletableFuture<String>> slowResults = new ConcurrentHashMap<>();

  /** Counts down when a {@code slow} run starts. */
  public volatile CountDownLatch slowStarted = new CountDownLatch(1);

  public final AtomicInteger toolCalls = new AtomicInteger();

  private McpTestServer(String token, int port) throws Exception {
    this.token = token;
    HttpServletStreamableServerTransportProvider transport =
        HttpServletStreamableServerTransportProvider.builder()
            .jsonMapper(new JacksonMcpJsonMapper(Json.MAPPER))
            .mcpEndpoint("/mcp")
            .contextExtractor(McpTestServer::context)
            .build();
    McpSyncServer server =
        McpServer.sync(transport)
            .serverInfo("outboard-test-mcp", "1.0.0")
            .capabilities(McpSchema.ServerCapabilities.builder().tools(true).build())
            .tools(
                tool(
                    "whoami",
                    "Says whether the request carried the right bearer token",
                    Map.of(),
                    this::whoami),
                tool(
                    "echo",
                    "Answers its text",
                    Map.of("text", Map.of("type", "string")),
                    (ex, req) -> {
                      recordCall(ex, req);
                      return text(String.valueOf(req.arguments().get("text")), false);
                    }),
                tool(
                    "leak",
                    "Answers the Authorization header it received",
                    Map.of(),
                    (ex, req) -> {
                      recordCall(ex, req);
                      return text(header(ex, "authorization"), false);
                    }),
                tool(
                    "refuse",
                    "Always refuses",
                    Map.of(),
                    (ex, req) -> {
                      recordCall(ex, req);
                      return text("nope", true);
                    }),
                tool(
                    "slow",
                    "Sleeps ms milliseconds, once per idempotency key",
                    Map.of("ms", Map.of("type", "integer"), "label", Map.of("type", "string")),
                    this::slow))
            .build();
    jetty = new Server();
    ServerConnector connector = new ServerConnector(jetty);
    connector.setHost("127.0.0.1");
    connector.setPort(port);
    jetty.addConnector(connector);
    ServletContextHandler context = new ServletContextHandler();
    context.setContextPath("/");
    ServletHolder holder = new ServletHolder(transport);
    holder.setAsyncSupported(true);
    context.addServlet(holder, "/mcp");
    Filter record =
        (request, response, chain) -> {
          String auth = ((HttpServletRequest) request).getHeader("Authorization");
          authorizations.add(auth == null ? "" : auth);
          chain.doFilter(request, response);
        };
    FilterHolder filter = new FilterHolder(record);
    filter.setAsyncSupported(true);
    context.addFilter(filter, "/*", EnumSet.of(DispatcherType.REQUEST));
    jetty.setHandler(context);
    jetty.start();
    this.port = connector.getLocalPort();
    if (server == null) throw new IllegalStateException("no server");
  }

  /** Starts a server on a free loopback port that expects {@code Bearer <token>}. */
  public static McpTestServer start(String token) throws Exception {
    return new McpTestServer(token, 0);
  }

  /** Starts a server on {@code port} (a restart after {@link #close}). */
  public static McpTestServer start(String token, int port) throws Exception {
    return new McpTestServer(token, port);
  }

  public int port() {
    return port;
  }

  public String url() {
    return "http://127.0.0.1:" + port + "/mcp";
  }

  private static McpTransportContext context(HttpServletRequest request) {
    Map<String, Object> headers = new HashMap<>();
    for (String name : List.of("Authorization", "Idempotency-Key")) {
      String v = request.getHeader(name);
      if (v != null) headers.put(name.toLowerCase(), v);
    }
    return McpTransportContext.create(headers);
  }

  private static String header(McpSyncServerExchange ex, String name) {
    Object v = ex.transportContext().get(name);
    return v == null ? "" : v.toString();
  }

  private static SyncToolSpecification tool(
      String name,
      String description,
      Map<String, Object> properties,
      BiFunction<McpSyncServerExchange, McpSchema.CallToolRequest, McpSchema.CallToolResult>
          handler) {
    return SyncToolSpecification.builder()
        .tool(
            McpSchema.Tool.builder()
                .name(name)
                .description(description)
                .inputSchema(Map.of("type", "object", "properties", properties))
                .build())
        .callHandler(handler)
        .build();
  }

  private static McpSchema.CallToolResult text(String text, boolean isError) {
    return McpSchema.CallToolResult.builder()
        .content(List.of(new McpSchema.TextContent(text)))
        .isError(isError)
        .build();
  }

  private void recordCall(McpSyncServerExchange ex, McpSchema.CallToolRequest req) {
    toolCalls.incrementAndGet();
    headerKeys.add(header(ex, "idempotency-key"));
    Object meta = req.meta() == null ? null : req.meta().get("io.outboard/idempotency-key");
    metaKeys.add(meta == null ? "" : meta.toString());
  }

  private McpSchema.CallToolResult whoami(McpSyncServerExchange ex, McpSchema.CallToolRequest req) {
    recordCall(ex, req);
    String auth = header(ex, "authorization");
    if (auth.isEmpty()) return text("no-bearer", false);
    return text(auth.equals("Bearer " + token) ? "bearer-ok" : "bearer-wrong", false);
  }

  private McpSchema.CallToolResult slow(McpSyncServerExchange ex, McpSchema.CallToolRequest req) {
    recordCall(ex, req);
    String key = header(ex, "idempotency-key");
    long ms = ((Number) req.arguments().getOrDefault("ms", 1000)).longValue();
    String label = String.valueOf(req.arguments().get("label"));
    CompletableFuture<String> mine = new CompletableFuture<>();
    CompletableFuture<String> first = key.isEmpty() ? null : slowResults.putIfAbsent(key, mine);
    if (first != null) return text(first.join(), false); // a repeat: the first run's result
    int run = slowRuns.computeIfAbsent(key, k -> new AtomicInteger()).incrementAndGet();
    slowStarted.countDown();
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    String result = "slow " + label + " ran (run " + run + " of key " + key + ")";
    mine.complete(result);
    return text(result, false);
  }

  @Override
  public void close() throws Exception {
    jetty.stop();
  }
}
