package dev.outboard.sandbox.remote;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Futures;
import dev.outboard.Json;
import dev.outboard.model.Secrets;
import dev.outboard.sandbox.SandboxProvider;
import dev.outboard.sandbox.host.HostWire.CreateRequest;
import dev.outboard.sandbox.host.HostWire.Created;
import dev.outboard.sandbox.host.HostWire.ExecRequest;
import dev.outboard.sandbox.host.HostWire.ExecResultJson;
import dev.outboard.sandbox.host.HostWire.FileContent;
import dev.outboard.sandbox.host.HostWire.HeldJson;
import dev.outboard.sandbox.host.HostWire.LimitsJson;
import dev.outboard.sandbox.host.HostWire.Listing;
import dev.outboard.sandbox.host.HostWire.Snapshot;
import dev.outboard.sandbox.host.HostWire.StateJson;
import dev.outboard.sandbox.host.SandboxHostServer;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;

/**
 * Sandboxes on a sandbox host (DESIGN.md §1, §4), over its internal HTTP API ({@link
 * SandboxHostServer}), authenticated by the shared host token. Sandbox ids belong to the host, not
 * to this node: any harness node with a provider for the same host reaches the same live sandbox by
 * id, so a session that restarts or moves re-attaches to it.
 *
 * <p><b>Failures.</b> 410 from the host → {@link SandboxGoneException} (code {@code
 * gone_before_command}: the command surely never ran). A host that cannot be reached (connection
 * refused or reset, no answer within the request's timeout) is treated as gone too: a host that
 * restarted has lost every sandbox it ran, and the session's handle then replaces the sandbox
 * (restoring the last snapshot) instead of failing every call until the host is back. A request
 * that fails at the connection level is retried once first (every operation but create is
 * idempotent; exec through its execution id), so a stale pooled connection does not cost a sandbox.
 * The cost of the rule: during a network partition the host keeps an orphaned sandbox that nobody
 * uses. create never reports gone: it fails with {@link IllegalStateException}. 400 → {@link
 * IllegalArgumentException} (a missing file, a path outside /workspace: tool-level errors); 401 and
 * other statuses → {@link IllegalStateException}. The token is registered with {@link Secrets} and
 * never appears in a message.
 */
public final class RemoteSandboxProvider implements SandboxProvider {
  static final Duration CONNECT_TIMEOUT = Duration.ofSeconds(5);
  static final Duration REQUEST_TIMEOUT = Duration.ofSeconds(60);

  /** Snapshots can be large; archiving and unpacking them takes longer than a file call. */
  static final Duration SNAPSHOT_TIMEOUT = Duration.ofMinutes(5);

  /**
   * exec waits for the command's timeout plus this (no timeout given: the sandbox's default, up to
   * an hour).
   */
  static final Duration EXEC_MARGIN = Duration.ofSeconds(30);

  private final String baseUrl;
  private final String authorization;
  private final HttpClient http;

  public RemoteSandboxProvider(String baseUrl, String token) {
    if (baseUrl == null || baseUrl.isBlank())
      throw new IllegalArgumentException("no sandbox host URL");
    SandboxHostServer.requireToken(token);
    Secrets.register(token);
    URI uri = URI.create(baseUrl.strip());
    if (!"http".equals(uri.getScheme()) && !"https".equals(uri.getScheme())) {
      throw new IllegalArgumentException(
          "the sandbox host URL must be http:// or https://, not " + baseUrl);
    }
    this.baseUrl = baseUrl.strip().replaceAll("/+$", "");
    this.authorization = "Bearer " + token.strip();
    this.http =
        HttpClient.newBuilder()
            .version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(CONNECT_TIMEOUT)
            .followRedirects(HttpClient.Redirect.NEVER)
            .build();
  }

  public String baseUrl() {
    return baseUrl;
  }

  @Override
  public CompletionStage<String> create(Limits limits, byte[] snapshot) {
    String encoded =
        snapshot == null || snapshot.length == 0
            ? null
            : Base64.getEncoder().encodeToString(snapshot);
    return call(
            null, "POST", null, new CreateRequest(LimitsJson.of(limits), encoded), SNAPSHOT_TIMEOUT)
        .thenApply(body -> parse(body, Created.class).id());
  }

  @Override
  public CompletionStage<ExecResult> exec(
      String sandboxId, String executionId, String command, Duration timeout) {
    Duration wait = (timeout == null ? Duration.ofHours(1) : timeout).plus(EXEC_MARGIN);
    Long millis = timeout == null ? null : Math.max(1, timeout.toMillis());
    return call(sandboxId, "POST", "/exec", new ExecRequest(executionId, command, millis), wait)
        .thenApply(body -> parse(body, ExecResultJson.class).toResult());
  }

  @Override
  public CompletionStage<String> read(String sandboxId, String path) {
    return call(sandboxId, "GET", "/files?path=" + query(path), null, REQUEST_TIMEOUT)
        .thenApply(body -> parse(body, FileContent.class).content());
  }

  @Override
  public CompletionStage<Void> write(String sandboxId, String path, String content) {
    return call(
            sandboxId,
            "PUT",
            "/files?path=" + query(path),
            new FileContent(content),
            REQUEST_TIMEOUT)
        .thenApply(body -> null);
  }

  @Override
  public CompletionStage<List<Entry>> list(String sandboxId, String path) {
    return call(sandboxId, "GET", "/list?path=" + query(path), null, REQUEST_TIMEOUT)
        .thenApply(body -> parse(body, Listing.class).entries());
  }

  @Override
  public CompletionStage<Void> suspend(String sandboxId) {
    return call(sandboxId, "POST", "/suspend", null, REQUEST_TIMEOUT).thenApply(body -> null);
  }

  @Override
  public CompletionStage<Void> resume(String sandboxId) {
    return call(sandboxId, "POST", "/resume", null, REQUEST_TIMEOUT).thenApply(body -> null);
  }

  @Override
  public CompletionStage<byte[]> hibernate(String sandboxId) {
    return call(sandboxId, "POST", "/hibernate", null, SNAPSHOT_TIMEOUT)
        .thenApply(body -> Base64.getDecoder().decode(parse(body, Snapshot.class).snapshot()));
  }

  @Override
  public CompletionStage<Void> destroy(String sandboxId) {
    return call(sandboxId, "DELETE", "", null, REQUEST_TIMEOUT).thenApply(body -> null);
  }

  @Override
  public CompletionStage<byte[]> salvage(String sandboxId) {
    return call(sandboxId, "POST", "/salvage", null, SNAPSHOT_TIMEOUT)
        .thenApply(
            body -> {
              String snapshot = parse(body, Snapshot.class).snapshot();
              return snapshot == null ? null : Base64.getDecoder().decode(snapshot);
            });
  }

  /** {@code GET /v1/sandboxes}: what the host holds, for the sweep. */
  @Override
  public CompletionStage<List<Held>> held() {
    return call(null, "GET", null, null, CONNECT_TIMEOUT.plusSeconds(30))
        .thenApply(
            body ->
                parse(body, HeldJson.class).sandboxes().stream()
                    .map(h -> new Held(h.id(), java.time.Instant.parse(h.lastUsed())))
                    .toList());
  }

  @Override
  public CompletionStage<State> state(String sandboxId) {
    return call(sandboxId, "GET", "/state", null, REQUEST_TIMEOUT)
        .thenApply(body -> parse(body, StateJson.class).state());
  }

  /**
   * {@code GET /v1/health} with this node's token, within {@code timeout}: the HTTP status (401:
   * the token is refused); fails when the host cannot be reached. For the start-up check.
   */
  public CompletionStage<Integer> health(Duration timeout) {
    HttpRequest request =
        HttpRequest.newBuilder(URI.create(baseUrl + "/v1/health"))
            .timeout(timeout)
            .header("Authorization", authorization)
            .header("Accept", "application/json")
            .GET()
            .build();
    return http.sendAsync(request, HttpResponse.BodyHandlers.discarding())
        .thenApply(HttpResponse::statusCode);
  }

  /** Nothing to release: the sandboxes belong to the host and outlive this node. */
  @Override
  public void close() {}

  // ---- HTTP ---------------------------------------------------------------------------------

  /**
   * One call; {@code suffix} null = create or the list of sandboxes (not retried, never "gone").
   */
  private CompletionStage<String> call(
      String sandboxId, String method, String suffix, Object body, Duration timeout) {
    HttpRequest request;
    try {
      String path = suffix == null ? "/v1/sandboxes" : sandbox(sandboxId) + suffix;
      HttpRequest.Builder b =
          HttpRequest.newBuilder(URI.create(baseUrl + path))
              .timeout(timeout)
              .header("Authorization", authorization)
              .header("Accept", "application/json");
      if (body != null) {
        b.header("Content-Type", "application/json")
            .method(
                method,
                HttpRequest.BodyPublishers.ofByteArray(Json.MAPPER.writeValueAsBytes(body)));
      } else {
        b.method(method, HttpRequest.BodyPublishers.noBody());
      }
      request = b.build();
    } catch (SandboxGoneException e) {
      return CompletableFuture.failedFuture(e);
    } catch (IOException | RuntimeException e) {
      return CompletableFuture.failedFuture(
          new IllegalArgumentException(Secrets.redact(String.valueOf(e.getMessage())), null));
    }
    boolean create = suffix == null;
    return send(request, !create)
        .handle(
            (response, error) -> {
              if (error != null) throw unreachable(create ? null : sandboxId, error);
              return answer(create ? null : sandboxId, method, response);
            });
  }

  private CompletableFuture<HttpResponse<String>> send(HttpRequest request, boolean retry) {
    CompletableFuture<HttpResponse<String>> first =
        http.sendAsync(request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
    if (!retry) return first;
    return first
        .handle(
            (r, e) -> {
              Throwable c = Futures.cause(e);
              if (c instanceof IOException && !(c instanceof HttpTimeoutException)) {
                return http.sendAsync(
                    request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
              }
              return e == null
                  ? CompletableFuture.completedFuture(r)
                  : CompletableFuture.<HttpResponse<String>>failedFuture(c);
            })
        .thenCompose(f -> f);
  }

  private RuntimeException unreachable(String sandboxId, Throwable error) {
    Throwable c = Futures.cause(error);
    String why =
        c instanceof HttpTimeoutException
            ? "the sandbox host did not answer in time"
            : "the sandbox host at "
                + baseUrl
                + " cannot be reached ("
                + c.getClass().getSimpleName()
                + (c.getMessage() == null ? "" : ": " + c.getMessage())
                + ")";
    why = Secrets.redact(why);
    // Not confirmed: the sandbox may be fine behind a network blip, and a command may have run.
    return sandboxId == null
        ? new IllegalStateException(why)
        : new SandboxGoneException(sandboxId, why, false, true);
  }

  private static String answer(String sandboxId, String method, HttpResponse<String> response) {
    int status = response.statusCode();
    if (status >= 200 && status < 300) return response.body();
    String message = Secrets.redact(errorMessage(response.body(), status));
    if (status == 410 && sandboxId != null) {
      String prefix = "sandbox " + sandboxId + " is gone: ";
      String why = message.startsWith(prefix) ? message.substring(prefix.length()) : message;
      throw new SandboxGoneException(
          sandboxId,
          why,
          true,
          !SandboxHostServer.GONE_BEFORE_COMMAND.equals(errorCode(response.body())));
    }
    if (status == 409
        && sandboxId != null
        && SandboxHostServer.INTERRUPTED.equals(errorCode(response.body()))) {
      throw new CommandInterruptedException(sandboxId);
    }
    if (status == 400) throw new IllegalArgumentException(message);
    if (status == 401) {
      throw new IllegalStateException(
          "the sandbox host refused this node's token (401); OUTBOARD_SANDBOX_HOST_TOKEN must match"
              + " the host's");
    }
    throw new IllegalStateException(
        "the sandbox host answered " + status + " to " + method + ": " + message);
  }

  private static String errorMessage(String body, int status) {
    try {
      JsonNode node = Json.MAPPER.readTree(body);
      String m = node.path("error").path("message").asText("");
      if (!m.isEmpty()) return m;
    } catch (IOException | RuntimeException ignored) {
      // not our error shape
    }
    return "HTTP " + status;
  }

  private static String errorCode(String body) {
    try {
      return Json.MAPPER.readTree(body).path("error").path("code").asText("");
    } catch (IOException | RuntimeException e) {
      return "";
    }
  }

  private static <T> T parse(String body, Class<T> type) {
    try {
      // Fields a newer host adds are ignored, so hosts can be upgraded before harness nodes.
      return Json.MAPPER
          .readerFor(type)
          .without(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
          .readValue(body);
    } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
      throw new IllegalStateException(
          "the sandbox host's answer is not what was expected: " + e.getOriginalMessage(), null);
    }
  }

  private static String sandbox(String id) {
    if (id == null || id.isEmpty()) throw new SandboxGoneException(id, "no sandbox id");
    return "/v1/sandboxes/" + URLEncoder.encode(id, StandardCharsets.UTF_8).replace("+", "%20");
  }

  private static String query(String value) {
    return URLEncoder.encode(value == null ? "" : value, StandardCharsets.UTF_8)
        .replace("+", "%20");
  }
}
