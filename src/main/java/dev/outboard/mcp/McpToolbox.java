package dev.outboard.mcp;

import com.fasterxml.jackson.databind.node.ObjectNode;
import com.typesafe.config.Config;
import dev.outboard.Futures;
import dev.outboard.Json;
import dev.outboard.mcp.McpServers.Server;
import dev.outboard.tools.ToolCatalog;
import dev.outboard.tools.ToolSpec;
import dev.outboard.vault.Vault;
import io.modelcontextprotocol.client.McpAsyncClient;
import io.modelcontextprotocol.client.McpClient;
import io.modelcontextprotocol.client.transport.HttpClientStreamableHttpTransport;
import io.modelcontextprotocol.common.McpTransportContext;
import io.modelcontextprotocol.json.jackson2.JacksonMcpJsonMapper;
import io.modelcontextprotocol.spec.McpError;
import io.modelcontextprotocol.spec.McpSchema;
import io.modelcontextprotocol.spec.McpTransportSessionNotFoundException;
import java.net.URI;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;
import java.util.stream.Collectors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.publisher.Mono;
import reactor.util.context.Context;

/**
 * The MCP servers of the orgs, as their sessions use them: the tools of an org's servers, listed
 * over Streamable HTTP with the official MCP Java SDK and cached, and the calls of those tools.
 *
 * <p>One SDK client is kept per server (its MCP session reused by every call); the header templates
 * are resolved from the vault for each request ({@link SecretHeaders#resolve}) and handed to the
 * transport in the request's Reactor context, so no secret is kept in a client or a cache. A call
 * carries {@value #IDEMPOTENCY_HEADER} {@code <session id>/<tool-call id>}, in its header and in
 * the request's {@code _meta} ({@value #IDEMPOTENCY_META}): the same key when the harness repeats a
 * call after a crash, so that a server that honours it answers the first result again. Nothing here
 * fails a session: every failure is the tool's error result, with the secrets redacted.
 *
 * <p>Thread-safe.
 */
public final class McpToolbox implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(McpToolbox.class);

  public static final String IDEMPOTENCY_HEADER = "Idempotency-Key";
  public static final String IDEMPOTENCY_META = "io.outboard/idempotency-key";

  /** Transport-context keys: the resolved headers, the idempotency key of a call. */
  private static final String HEADERS = "outboard.mcp.headers";

  private static final String IDEMPOTENCY = "outboard.mcp.idempotency-key";

  /** {@code outboard.mcp}. */
  public record Settings(
      Duration toolListTtl,
      Duration serverListTtl,
      Duration callTimeout,
      Duration connectTimeout,
      int maxResponseBytes) {
    public static Settings from(Config config) {
      Config c = config.getConfig("outboard.mcp");
      return new Settings(
          c.getDuration("tool-list-ttl"),
          c.getDuration("server-list-ttl"),
          c.getDuration("call-timeout"),
          c.getDuration("connect-timeout"),
          (int) Math.min(Integer.MAX_VALUE, c.getBytes("max-response-bytes")));
    }
  }

  /** A tool's result as the session records it. */
  public record Outcome(String content, boolean isError) {}

  /** The server could not be reached or did not answer; the message has no secret. */
  public static final class Unavailable extends RuntimeException {
    Unavailable(String message) {
      super(message, null, false, false);
    }
  }

  private record Key(String org, String server) {}

  /** A value computed at {@code atNanos} for the server's configuration {@code version}. */
  private record Cached<T>(CompletableFuture<T> value, long atNanos, Instant version) {
    boolean freshFor(Instant v, Duration ttl) {
      return version.equals(v) && System.nanoTime() - atNanos < ttl.toNanos();
    }
  }

  /** The kept SDK client of one server's configuration {@code version}. */
  private record Connection(McpAsyncClient client, Instant version) {}

  private final McpServers registry;
  private final Vault vault;
  private final Settings settings;
  private final ConcurrentHashMap<String, Cached<List<Server>>> servers = new ConcurrentHashMap<>();
  private final ConcurrentHashMap<Key, Cached<List<McpSchema.Tool>>> toolLists =
      new ConcurrentHashMap<>();

  /** The last list of each server that succeeded: offered while a refresh fails. */
  private final ConcurrentHashMap<Key, Cached<List<McpSchema.Tool>>> lastGood =
      new ConcurrentHashMap<>();

  private final ConcurrentHashMap<Key, Connection> connections = new ConcurrentHashMap<>();

  public McpToolbox(McpServers registry, Vault vault, Settings settings) {
    this.registry = registry;
    this.vault = vault;
    this.settings = settings;
  }

  public McpServers registry() {
    return registry;
  }

  /** Forgets what this node cached of {@code org}'s servers (after an admin change). */
  public void invalidate(String org) {
    servers.remove(org);
  }

  /**
   * The tools of {@code org}'s servers as the model sees them ({@code <server>__<tool>}), from the
   * cache while it is fresh. A server that cannot be listed offers its last list if it has one,
   * else nothing; this never fails.
   */
  public CompletionStage<List<ToolSpec>> tools(String org) {
    return servers(org)
        .thenCompose(
            list -> {
              List<CompletableFuture<List<ToolSpec>>> parts = new ArrayList<>();
              for (Server s : list) {
                parts.add(
                    toolList(org, s, false)
                        .thenApply(tools -> offered(s.name(), tools))
                        .exceptionally(
                            e -> {
                              log.warn(
                                  "org {}: the tools of MCP server {} are not offered this turn:"
                                      + " {}",
                                  org,
                                  s.name(),
                                  Futures.cause(e).getMessage());
                              return List.of();
                            })
                        .toCompletableFuture());
              }
              return CompletableFuture.allOf(parts.toArray(CompletableFuture[]::new))
                  .thenApply(ignored -> parts.stream().flatMap(p -> p.join().stream()).toList());
            })
        .exceptionally(
            e -> {
              log.warn(
                  "org {}: its MCP servers could not be read; none offered this turn: {}",
                  org,
                  Futures.cause(e).toString());
              return List.of();
            });
  }

  /**
   * The tools of server {@code name} of {@code org}, listed now (the cache refreshed); fails with
   * {@link Unavailable}. Empty if the org has no such server.
   */
  public CompletionStage<Optional<List<ToolSpec>>> listNow(String org, String name) {
    invalidate(org);
    return servers(org)
        .thenCompose(
            list -> {
              Optional<Server> s = list.stream().filter(x -> x.name().equals(name)).findFirst();
              if (s.isEmpty()) return CompletableFuture.completedFuture(Optional.empty());
              return toolList(org, s.get(), true)
                  .thenApply(tools -> Optional.of(offered(name, tools)));
            });
  }

  /**
   * Calls tool {@code tool} of server {@code server} of {@code org} for tool call {@code callId} of
   * session {@code sessionId}. Never fails: a missing server or secret, a server that is down or
   * slow, a refusal — each is an error result, its text redacted.
   */
  public CompletionStage<Outcome> call(
      String org,
      String sessionId,
      String callId,
      String server,
      String tool,
      ObjectNode arguments) {
    String key = sessionId + "/" + callId;
    return servers(org)
        .thenCompose(
            list -> {
              Server s =
                  list.stream().filter(x -> x.name().equals(server)).findFirst().orElse(null);
              if (s == null) {
                return CompletableFuture.completedFuture(
                    new Outcome(
                        "no MCP server '"
                            + server
                            + "' in this organisation"
                            + (list.isEmpty()
                                ? ""
                                : "; its servers: "
                                    + list.stream()
                                        .map(Server::name)
                                        .collect(Collectors.joining(", "))),
                        true));
              }
              return SecretHeaders.resolve(vault, org, s.name(), s.headers())
                  .thenCompose(resolved -> callTool(org, s, resolved, key, tool, arguments));
            })
        .exceptionally(e -> new Outcome(failure(server, Futures.cause(e), Redactor.NONE), true));
  }

  private CompletionStage<Outcome> callTool(
      String org,
      Server s,
      SecretHeaders.Resolved resolved,
      String key,
      String tool,
      ObjectNode arguments) {
    Map<String, Object> args = Json.MAPPER.convertValue(arguments, Map.class);
    McpSchema.CallToolRequest request =
        McpSchema.CallToolRequest.builder()
            .name(tool)
            .arguments(args)
            .meta(Map.of(IDEMPOTENCY_META, key))
            .build();
    return withClient(org, s, resolved, key, c -> c.callTool(request))
        .handle(
            (result, error) -> {
              if (error != null)
                return new Outcome(
                    failure(s.name(), Futures.cause(error), resolved.redactor())
                        + "; the call may or may not have taken effect",
                    true);
              return new Outcome(
                  resolved.redactor().redact(text(result)), Boolean.TRUE.equals(result.isError()));
            });
  }

  /** A failure's text for the model and the log: what happened, never a secret. */
  private static String failure(String server, Throwable e, Redactor redactor) {
    if (e instanceof SecretHeaders.MissingSecret
        || e instanceof Vault.Disabled
        || e instanceof Vault.CannotDecrypt) {
      return "MCP server '" + server + "' was not called: " + e.getMessage();
    }
    String why;
    if (e instanceof TimeoutException) why = "it did not answer in time";
    else if (e instanceof McpError m && m.getJsonRpcError() != null)
      why =
          "it answered error " + m.getJsonRpcError().code() + ": " + m.getJsonRpcError().message();
    else why = String.valueOf(McpError.aggregateExceptionMessages(e));
    return redactor.redact("MCP server '" + server + "' failed: " + why);
  }

  /** The text of a tool's result: its text blocks, other content described, in order. */
  static String text(McpSchema.CallToolResult result) {
    List<String> parts = new ArrayList<>();
    if (result.content() != null) {
      for (McpSchema.Content c : result.content()) {
        if (c instanceof McpSchema.TextContent t) parts.add(t.text());
        else if (c instanceof McpSchema.ImageContent i)
          parts.add("[image " + i.mimeType() + ", " + i.data().length() + " base64 characters]");
        else if (c instanceof McpSchema.AudioContent a)
          parts.add("[audio " + a.mimeType() + ", " + a.data().length() + " base64 characters]");
        else if (c instanceof McpSchema.EmbeddedResource r
            && r.resource() instanceof McpSchema.TextResourceContents t) parts.add(t.text());
        else if (c instanceof McpSchema.EmbeddedResource r)
          parts.add("[resource " + r.resource().uri() + "]");
        else if (c instanceof McpSchema.ResourceLink l)
          parts.add("[resource link " + l.uri() + "]");
      }
    }
    if (parts.isEmpty() && result.structuredContent() != null)
      parts.add(Json.write(result.structuredContent()));
    return parts.isEmpty() ? "(the tool returned no content)" : String.join("\n", parts);
  }

  /** The tools of a list that the model can be offered, as {@code <server>__<tool>}. */
  private static List<ToolSpec> offered(String server, List<McpSchema.Tool> tools) {
    List<ToolSpec> out = new ArrayList<>();
    for (McpSchema.Tool t : tools) {
      String name = server + ToolCatalog.MCP_SEPARATOR + t.name();
      if (!ToolCatalog.isMcpName(name)) {
        log.warn(
            "MCP server {}: tool {} is not offered: a name the model sees is at most {}"
                + " characters of letters, digits, '_' and '-'",
            server,
            t.name(),
            ToolCatalog.MAX_TOOL_NAME_CHARS);
        continue;
      }
      ObjectNode schema =
          t.inputSchema() == null
              ? Json.MAPPER.createObjectNode()
              : Json.MAPPER.valueToTree(t.inputSchema());
      schema.put("type", "object");
      String about = t.description() != null ? t.description() : t.title();
      out.add(
          ToolSpec.external(
              name,
              "(MCP server "
                  + server
                  + ") "
                  + (about == null || about.isBlank() ? t.name() : about),
              schema));
    }
    return out;
  }

  private CompletionStage<List<Server>> servers(String org) {
    Cached<List<Server>> c =
        servers.compute(
            org,
            (k, old) ->
                old != null
                        && old.freshFor(Instant.EPOCH, settings.serverListTtl())
                        && !old.value().isCompletedExceptionally()
                    ? old
                    : new Cached<>(
                        registry.servers(org).toCompletableFuture(),
                        System.nanoTime(),
                        Instant.EPOCH));
    return c.value();
  }

  private CompletionStage<List<McpSchema.Tool>> toolList(String org, Server s, boolean now) {
    Key key = new Key(org, s.name());
    Cached<List<McpSchema.Tool>> c =
        toolLists.compute(
            key,
            (k, old) -> {
              if (!now
                  && old != null
                  && old.freshFor(s.updatedAt(), settings.toolListTtl())
                  && !old.value().isCompletedExceptionally()) return old;
              CompletableFuture<List<McpSchema.Tool>> listed =
                  SecretHeaders.resolve(vault, org, s.name(), s.headers())
                      .thenCompose(
                          resolved ->
                              withClient(org, s, resolved, null, McpAsyncClient::listTools)
                                  .exceptionally(
                                      e -> {
                                        throw new Unavailable(
                                            failure(
                                                s.name(), Futures.cause(e), resolved.redactor()));
                                      }))
                      .thenApply(r -> r.tools() == null ? List.<McpSchema.Tool>of() : r.tools())
                      .toCompletableFuture();
              return new Cached<>(listed, System.nanoTime(), s.updatedAt());
            });
    return c.value()
        .whenComplete(
            (tools, e) -> {
              if (e == null) lastGood.put(key, c);
            })
        .exceptionallyCompose(
            e -> {
              Cached<List<McpSchema.Tool>> good = lastGood.get(key);
              if (!now && good != null && good.version().equals(s.updatedAt())) {
                log.warn(
                    "org {}: MCP server {} could not be listed, its last list is offered: {}",
                    org,
                    s.name(),
                    Futures.cause(e).getMessage());
                return good.value();
              }
              return CompletableFuture.failedFuture(Futures.cause(e));
            });
  }

  /**
   * Runs {@code op} on the kept client of {@code s} with {@code resolved} headers (and {@code
   * idempotencyKey}, if not null) in its transport context. A request refused because the server
   * forgot the client's MCP session (it restarted) was not executed: it is sent once more on a new
   * session. On any other failure the client is dropped, so the next request starts afresh.
   */
  private <T> CompletionStage<T> withClient(
      String org,
      Server s,
      SecretHeaders.Resolved resolved,
      String idempotencyKey,
      Function<McpAsyncClient, Mono<T>> op) {
    Key key = new Key(org, s.name());
    Map<String, Object> context = new HashMap<>();
    context.put(HEADERS, resolved.headers());
    if (idempotencyKey != null) context.put(IDEMPOTENCY, idempotencyKey);
    Context reactorContext =
        Context.of(McpTransportContext.KEY, McpTransportContext.create(context));
    Function<Connection, CompletableFuture<T>> attempt =
        conn ->
            conn.client()
                .initialize()
                .then(Mono.defer(() -> op.apply(conn.client())))
                .timeout(settings.callTimeout().plus(settings.connectTimeout()))
                .contextWrite(reactorContext)
                .toFuture();
    Connection first = connection(key, s);
    return attempt
        .apply(first)
        .exceptionallyCompose(
            e -> {
              drop(key, first);
              if (!(Futures.cause(e) instanceof McpTransportSessionNotFoundException))
                return CompletableFuture.failedFuture(Futures.cause(e));
              return attempt
                  .apply(connection(key, s))
                  .whenComplete(
                      (r, again) -> {
                        if (again != null) drop(key, connections.get(key));
                      });
            });
  }

  private Connection connection(Key key, Server s) {
    return connections.compute(
        key,
        (k, old) -> {
          if (old != null && old.version().equals(s.updatedAt())) return old;
          if (old != null) old.client().close();
          return new Connection(client(s), s.updatedAt());
        });
  }

  private void drop(Key key, Connection conn) {
    if (conn == null) return;
    if (connections.remove(key, conn)) conn.client().closeGracefully().subscribe(v -> {}, e -> {});
  }

  /** A client of {@code s}'s endpoint that sets, on each request, the headers of its context. */
  private McpAsyncClient client(Server s) {
    URI uri = URI.create(s.url());
    String base = uri.getScheme() + "://" + uri.getRawAuthority();
    String endpoint =
        (uri.getRawPath() == null || uri.getRawPath().isEmpty() ? "/" : uri.getRawPath())
            + (uri.getRawQuery() == null ? "" : "?" + uri.getRawQuery());
    HttpClientStreamableHttpTransport transport =
        HttpClientStreamableHttpTransport.builder(base)
            .endpoint(endpoint)
            .jsonMapper(new JacksonMcpJsonMapper(Json.MAPPER))
            .connectTimeout(settings.connectTimeout())
            .maxResponseSize(settings.maxResponseBytes())
            .asyncHttpRequestCustomizer(
                (builder, method, endpointUri, body, ctx) -> {
                  if (ctx != null) {
                    if (ctx.get(HEADERS) instanceof Map<?, ?> headers)
                      headers.forEach((h, v) -> builder.setHeader((String) h, (String) v));
                    if (ctx.get(IDEMPOTENCY) instanceof String idem)
                      builder.setHeader(IDEMPOTENCY_HEADER, idem);
                  }
                  return Mono.just(builder);
                })
            .build();
    return McpClient.async(transport)
        .clientInfo(new McpSchema.Implementation("outboard", "0.1.0"))
        .requestTimeout(settings.callTimeout())
        .initializationTimeout(settings.connectTimeout())
        .build();
  }

  @Override
  public void close() {
    connections.values().forEach(c -> c.client().close());
    connections.clear();
  }
}
