package dev.outboard.sandbox.host;

import dev.outboard.Futures;
import dev.outboard.Json;
import dev.outboard.api.ApiError;
import dev.outboard.api.ApiKeys;
import dev.outboard.api.HttpServer;
import dev.outboard.api.JsonSupport;
import dev.outboard.model.Secrets;
import dev.outboard.sandbox.SandboxProvider;
import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.sandbox.SandboxProvider.SandboxGoneException;
import dev.outboard.sandbox.host.HostWire.CreateRequest;
import dev.outboard.sandbox.host.HostWire.Created;
import dev.outboard.sandbox.host.HostWire.ExecRequest;
import dev.outboard.sandbox.host.HostWire.ExecResultJson;
import dev.outboard.sandbox.host.HostWire.FileContent;
import dev.outboard.sandbox.host.HostWire.HeldJson;
import dev.outboard.sandbox.host.HostWire.Listing;
import dev.outboard.sandbox.host.HostWire.Snapshot;
import dev.outboard.sandbox.host.HostWire.StateJson;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.Base64;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CompletionStage;
import java.util.function.Function;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.http.javadsl.Http;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.apache.pekko.http.javadsl.model.ContentTypes;
import org.apache.pekko.http.javadsl.model.HttpEntities;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.model.StatusCode;
import org.apache.pekko.http.javadsl.model.StatusCodes;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.PathMatchers;
import org.apache.pekko.http.javadsl.server.Route;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The sandbox host's internal HTTP API (DESIGN.md §1, §4): every {@link SandboxProvider} operation
 * as JSON, for harness nodes that reach it through {@code RemoteSandboxProvider}. Not a cluster
 * member; trust is one shared token, sent as {@code Authorization: Bearer <token>} and compared in
 * constant time.
 *
 * <pre>
 * GET    /v1/health                      → {status: "ok"} (checks the token)
 * POST   /v1/sandboxes                   {limits, snapshot (base64 tar, optional)} → 201 {id}
 * GET    /v1/sandboxes                   → {sandboxes: [{id, lastUsed}]}
 * POST   /v1/sandboxes/{id}/exec         {executionId, command, timeoutMs}
 *                                        → {exitCode, output, truncated, timedOut, tookNanos,
 *                                           firstOutputNanos}
 * GET    /v1/sandboxes/{id}/files?path=  → {content}
 * PUT    /v1/sandboxes/{id}/files?path=  {content} → 204
 * GET    /v1/sandboxes/{id}/list?path=   → {entries: [{path, directory, size}]}
 * POST   /v1/sandboxes/{id}/suspend | resume → 204
 * POST   /v1/sandboxes/{id}/hibernate    → {snapshot (base64 tar)}
 * POST   /v1/sandboxes/{id}/salvage      → {snapshot (base64 tar, or null: nothing left)}
 * GET    /v1/sandboxes/{id}/state        → {state}
 * DELETE /v1/sandboxes/{id}              → 204
 * </pre>
 *
 * Errors are {@code {"error": {"code", "message"}}}: a gone sandbox → 410 {@code gone}, or {@code
 * gone_before_command} when an exec's command surely never ran; an exec whose earlier run (same
 * execution id) was cut off → 409 {@code interrupted}; bad input (JSON, a missing parameter, a path
 * outside /workspace, a missing file, ...) → 400; a wrong or missing token → 401; the provider
 * failing otherwise (e.g. bwrap cannot start) → 500 {@code sandbox_error} with its message.
 */
public final class SandboxHostServer extends AllDirectives {
  private static final Logger log = LoggerFactory.getLogger(SandboxHostServer.class);
  public static final String TOKEN_ENV = "OUTBOARD_SANDBOX_HOST_TOKEN";
  public static final int MIN_TOKEN_LENGTH = 16;

  /** Beyond a command's own timeout, how long the request may take (the answer, queueing). */
  static final Duration EXEC_MARGIN = Duration.ofSeconds(60);

  /** The 410 error code when the command surely never ran (plain {@code gone}: it may have). */
  public static final String GONE_BEFORE_COMMAND = "gone_before_command";

  /** The 409 error code of an exec whose earlier run with the same execution id was cut off. */
  public static final String INTERRUPTED = "interrupted";

  private final SandboxProvider provider;
  private final String token;
  private final long maxBodyBytes;

  /**
   * @throws IllegalArgumentException without a token (or one shorter than {@value
   *     #MIN_TOKEN_LENGTH} characters): the host refuses to start rather than serve sandboxes to
   *     anyone.
   */
  public SandboxHostServer(SandboxProvider provider, String token, long maxBodyBytes) {
    requireToken(token);
    this.provider = provider;
    this.token = token;
    this.maxBodyBytes = maxBodyBytes;
    Secrets.register(token);
  }

  /** Checks a configured token; the message says how to set one. */
  public static void requireToken(String token) {
    if (token == null || token.isBlank()) {
      throw new IllegalArgumentException(
          "no sandbox host token: set "
              + TOKEN_ENV
              + " (at least "
              + MIN_TOKEN_LENGTH
              + " random characters) on the sandbox host and on every harness node");
    }
    if (token.strip().length() < MIN_TOKEN_LENGTH) {
      throw new IllegalArgumentException(
          TOKEN_ENV + " is too short; use at least " + MIN_TOKEN_LENGTH + " random characters");
    }
  }

  /** Binds the API; the binding is unbound by the system's coordinated shutdown. */
  public CompletionStage<ServerBinding> start(ActorSystem<?> system, String host, int port) {
    return Http.get(system)
        .newServerAt(host, port)
        .bind(routes())
        .whenComplete(
            (b, error) -> {
              // A failure is the caller's to report (SandboxHostMain names the variable).
              if (error == null) {
                b.addToCoordinatedShutdown(Duration.ofSeconds(10), system);
                InetSocketAddress address = b.localAddress();
                log.info(
                    "sandbox host API listening on http://{}:{}",
                    address.getHostString(),
                    address.getPort());
              }
            });
  }

  public Route routes() {
    return HttpServer.api(
        authenticated(
            () -> concat(health(), pathPrefix("sandboxes", () -> concat(sandboxes(), sandbox())))));
  }

  /** {@code /v1/sandboxes}: create one, or list those the host holds. */
  private Route sandboxes() {
    return pathEnd(
        () ->
            concat(
                post(() -> JsonSupport.body(CreateRequest.class, maxBodyBytes, this::create)),
                get(() -> ok(provider::held, HeldJson::of))));
  }

  /** {@code /v1/sandboxes/{id}...}: the operations on one sandbox. */
  private Route sandbox() {
    return pathPrefix(
        PathMatchers.segment(),
        id ->
            concat(
                pathEnd(() -> delete(() -> noContent(() -> provider.destroy(id)))),
                postAt(
                    "exec",
                    () -> JsonSupport.body(ExecRequest.class, maxBodyBytes, r -> exec(id, r))),
                path("files", () -> pathParam(p -> files(id, p))),
                path(
                    "list",
                    () -> get(() -> pathParam(p -> ok(() -> provider.list(id, p), Listing::new)))),
                postAt("suspend", () -> noContent(() -> provider.suspend(id))),
                postAt("resume", () -> noContent(() -> provider.resume(id))),
                postAt(
                    "hibernate",
                    () ->
                        withoutBody(
                            () -> provider.hibernate(id),
                            bytes -> Snapshot.of(Objects.requireNonNull(bytes)))),
                postAt("salvage", () -> withoutBody(() -> provider.salvage(id), Snapshot::of)),
                path("state", () -> get(() -> ok(() -> provider.state(id), StateJson::new)))));
  }

  /** {@code /files?path=}: read or write one file. */
  private Route files(String id, String p) {
    return concat(
        get(() -> ok(() -> provider.read(id, p), FileContent::new)),
        put(
            () ->
                JsonSupport.body(
                    FileContent.class,
                    maxBodyBytes,
                    f -> {
                      if (f.content() == null) throw ApiError.badRequest("content is required");
                      return noContentReply(() -> provider.write(id, p, f.content()));
                    })));
  }

  /** {@code POST .../{name}}. */
  private Route postAt(String name, Supplier<Route> inner) {
    return path(name, () -> post(inner));
  }

  /** A call without a request body, answered 200 with {@code body}. */
  private <T> Route withoutBody(Supplier<CompletionStage<T>> call, Function<T, Object> body) {
    return JsonSupport.noBody(() -> ok(call, body));
  }

  private <T> Route ok(Supplier<CompletionStage<T>> call, Function<T, Object> body) {
    return reply(call, StatusCodes.OK, body);
  }

  /** A call without a request body, answered 204. */
  private Route noContent(Supplier<CompletionStage<Void>> call) {
    return JsonSupport.noBody(() -> noContentReply(call));
  }

  private Route noContentReply(Supplier<CompletionStage<Void>> call) {
    return reply(call, StatusCodes.NO_CONTENT, v -> null);
  }

  /** A harness node's start-up check: the host answers and takes its token. */
  private Route health() {
    return path(
        "health",
        () ->
            get(
                () ->
                    complete(
                        HttpResponse.create()
                            .withEntity(
                                HttpEntities.create(
                                    ContentTypes.APPLICATION_JSON, "{\"status\":\"ok\"}")))));
  }

  private Route create(CreateRequest r) {
    if (r.limits() == null) throw ApiError.badRequest("limits is required");
    Limits limits = r.limits().toLimits();
    byte[] snapshot;
    try {
      snapshot = r.snapshot() == null ? null : Base64.getDecoder().decode(r.snapshot());
    } catch (IllegalArgumentException e) {
      throw ApiError.badRequest("snapshot is not base64: " + e.getMessage());
    }
    return reply(() -> provider.create(limits, snapshot), StatusCodes.CREATED, Created::new);
  }

  private Route exec(String id, ExecRequest r) {
    if (r.command() == null) throw ApiError.badRequest("command is required");
    if (r.timeoutMs() != null && r.timeoutMs() <= 0)
      throw ApiError.badRequest("timeoutMs must be positive");
    Duration timeout = HostWire.duration(r.timeoutMs());
    // The command may run for its whole timeout (no timeout: the sandbox's default, at most an hour
    // here).
    Duration requestTimeout = (timeout == null ? Duration.ofHours(1) : timeout).plus(EXEC_MARGIN);
    return withRequestTimeout(
        requestTimeout,
        () ->
            ok(() -> provider.exec(id, r.executionId(), r.command(), timeout), ExecResultJson::of));
  }

  private Route pathParam(Function<String, Route> inner) {
    return parameterOptional(
        "path",
        p -> {
          Optional<String> path = p.filter(s -> !s.isEmpty());
          if (path.isEmpty()) throw ApiError.badRequest("the query parameter 'path' is required");
          return inner.apply(path.get());
        });
  }

  private Route authenticated(Supplier<Route> inner) {
    return optionalHeaderValueByName(
        "Authorization",
        header -> {
          String given =
              header
                  .filter(h -> h.regionMatches(true, 0, "Bearer ", 0, 7))
                  .map(h -> h.substring(7).strip())
                  .orElse("");
          if (!ApiKeys.secretEquals(given, token)) {
            throw ApiError.unauthorized(
                "a valid sandbox host token is required (Authorization: Bearer <token>)");
          }
          return inner.get();
        });
  }

  private <T> Route reply(
      Supplier<CompletionStage<T>> call, StatusCode ok, Function<T, Object> body) {
    return completeWithFuture(
        Futures.attempt(call)
            .handle(
                (value, error) -> error == null ? success(ok, body.apply(value)) : failure(error)));
  }

  private static HttpResponse success(StatusCode status, Object body) {
    if (body == null) return HttpResponse.create().withStatus(status);
    try {
      return HttpResponse.create()
          .withStatus(status)
          .withEntity(
              HttpEntities.create(
                  ContentTypes.APPLICATION_JSON, Json.MAPPER.writeValueAsBytes(body)));
    } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  /** The provider's failure as an answer: gone → 410, bad input → 400, anything else → 500. */
  static HttpResponse failure(Throwable error) {
    Throwable e = Futures.cause(error);
    String message = Secrets.redact(e.getMessage() == null ? e.toString() : e.getMessage());
    if (e instanceof SandboxGoneException gone) {
      return ApiError.response(
          StatusCodes.GONE, gone.commandMayHaveRun() ? "gone" : GONE_BEFORE_COMMAND, message);
    }
    if (e instanceof SandboxProvider.CommandInterruptedException) {
      return ApiError.response(StatusCodes.CONFLICT, INTERRUPTED, message);
    }
    if (e instanceof ApiError api) return api.toResponse();
    if (e instanceof IllegalArgumentException)
      return ApiError.response(StatusCodes.BAD_REQUEST, "bad_request", message);
    if (e instanceof IllegalStateException || e instanceof UncheckedIOException) {
      log.warn("sandbox operation failed: {}", message);
      return ApiError.response(StatusCodes.INTERNAL_SERVER_ERROR, "sandbox_error", message);
    }
    log.error("sandbox operation failed", e);
    return ApiError.response(StatusCodes.INTERNAL_SERVER_ERROR, "internal", "internal error");
  }
}
