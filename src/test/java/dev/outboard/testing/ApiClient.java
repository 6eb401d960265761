package dev.outboard.testing;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Json;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpHeaders;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Stream;

/**
 * A small client of the Outboard HTTP API for tests: one base URL, one bearer token (an org key,
 * the admin token, or none), JSON through {@link Json#MAPPER}, and a reader for the event stream.
 * Headers are given as name/value pairs, as in {@link HttpRequest.Builder#headers(String...)}.
 */
public final class ApiClient {
  private static final HttpClient HTTP =
      HttpClient.newBuilder()
          .version(HttpClient.Version.HTTP_1_1)
          .connectTimeout(Duration.ofSeconds(5))
          .build();
  private static final Duration REQUEST_TIMEOUT = Duration.ofSeconds(20);

  private final String baseUrl;
  private final String bearer;

  /** {@code bearer} may be null: requests then carry no {@code Authorization} header. */
  public ApiClient(String baseUrl, String bearer) {
    this.baseUrl = baseUrl.endsWith("/") ? baseUrl.substring(0, baseUrl.length() - 1) : baseUrl;
    this.bearer = bearer;
  }

  public ApiClient withBearer(String token) {
    return new ApiClient(baseUrl, token);
  }

  public String baseUrl() {
    return baseUrl;
  }

  /** An answer: status, body text and headers. */
  public record Response(int status, String body, HttpHeaders headers) {
    public JsonNode json() {
      try {
        return Json.MAPPER.readTree(body);
      } catch (JsonProcessingException e) {
        throw new AssertionError("not JSON (status " + status + "): " + body, e);
      }
    }

    public Optional<String> header(String name) {
      return headers.firstValue(name);
    }

    @Override
    public String toString() {
      return status + " " + (body.length() > 2000 ? body.substring(0, 2000) + "..." : body);
    }
  }

  /** One Server-Sent Event; {@code id} is null when the event carried no {@code id:} line. */
  public record SseEvent(String id, String event, String data) {
    public JsonNode json() {
      try {
        return Json.MAPPER.readTree(data);
      } catch (JsonProcessingException e) {
        throw new AssertionError("SSE data is not JSON: " + data, e);
      }
    }

    public long seq() {
      if (id == null) throw new AssertionError("event " + event + " has no id");
      return Long.parseLong(id);
    }
  }

  // ------------------------------------------------------------------ requests

  public Response get(String path, String... headers) {
    return send(request(path, headers).GET());
  }

  /** POST with {@code body} serialised as JSON ({@code Map}s, records, {@code JsonNode}s). */
  public Response post(String path, Object body, String... headers) {
    return postRaw(path, json(body), headers);
  }

  /** POST with {@code body} sent exactly as given, as {@code application/json}. */
  public Response postRaw(String path, String body, String... headers) {
    return send(
        request(path, headers)
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body)));
  }

  /** PUT with {@code body} serialised as JSON. */
  public Response put(String path, Object body, String... headers) {
    return send(
        request(path, headers)
            .header("Content-Type", "application/json")
            .PUT(HttpRequest.BodyPublishers.ofString(json(body))));
  }

  /** PUT with {@code text} sent as given, as {@code text/plain} (an org file's content). */
  public Response putText(String path, String text, String... headers) {
    return send(
        request(path, headers)
            .header("Content-Type", "text/plain; charset=utf-8")
            .PUT(HttpRequest.BodyPublishers.ofString(text)));
  }

  public Response delete(String path, String... headers) {
    return send(request(path, headers).DELETE());
  }

  /** Creates org {@code id} and one key for it; this client must carry the admin token. */
  public String createOrgWithKey(String id) {
    Response org = post("/v1/admin/orgs", Map.of("id", id, "name", "Org " + id));
    if (org.status() != 201) throw new AssertionError("create org " + id + ": " + org);
    Response key = post("/v1/admin/orgs/" + id + "/keys", Map.of());
    if (key.status() != 201) throw new AssertionError("issue key for " + id + ": " + key);
    return key.json().path("key").asText();
  }

  // ------------------------------------------------------------------ events

  /**
   * Reads {@code GET path} (an event stream) until the server ends it; fails if it answers with
   * another status than 200 or does not end within {@code timeout}.
   */
  public List<SseEvent> events(String path, Duration timeout, String... headers) {
    EventStream stream = openEvents(path, headers);
    if (stream.status() != 200) {
      throw new AssertionError(
          "GET "
              + path
              + " answered "
              + stream.status()
              + ": "
              + String.join("\n", stream.lines()));
    }
    return stream.awaitEnd(timeout);
  }

  /** Opens {@code path}'s event stream; it is read in the background until it ends or is closed. */
  public EventStream openEvents(String path, String... headers) {
    HttpRequest req = request(path, headers).header("Accept", "text/event-stream").GET().build();
    try {
      return new EventStream(path, HTTP.send(req, HttpResponse.BodyHandlers.ofLines()));
    } catch (IOException e) {
      throw new UncheckedIOException("GET " + path, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /**
   * An open {@code text/event-stream}: the events and raw lines read so far, and when each event
   * arrived.
   */
  public static final class EventStream implements AutoCloseable {
    private final String path;
    private final HttpResponse<Stream<String>> response;
    private final List<SseEvent> events = new ArrayList<>();
    private final List<Long> arrivals = new ArrayList<>();
    private final List<String> lines = Collections.synchronizedList(new ArrayList<>());
    private final CompletableFuture<Void> reading;
    private boolean finished;

    EventStream(String path, HttpResponse<Stream<String>> response) {
      this.path = path;
      this.response = response;
      this.reading =
          CompletableFuture.runAsync(
              this::read,
              task -> {
                Thread t = new Thread(task, "sse-reader");
                t.setDaemon(true);
                t.start();
              });
    }

    public int status() {
      return response.statusCode();
    }

    public HttpHeaders headers() {
      return response.headers();
    }

    /** Every line as received, comments and fields alike. */
    public List<String> lines() {
      synchronized (lines) {
        return List.copyOf(lines);
      }
    }

    public synchronized List<SseEvent> events() {
      return List.copyOf(events);
    }

    /** {@link System#nanoTime()} when each event of {@link #events()} was complete. */
    public synchronized List<Long> arrivals() {
      return List.copyOf(arrivals);
    }

    /** Waits until an event matching {@code condition} has arrived; returns it. */
    public SseEvent await(java.util.function.Predicate<SseEvent> condition, Duration timeout) {
      long deadline = System.nanoTime() + timeout.toNanos();
      synchronized (this) {
        while (true) {
          for (SseEvent e : events) if (condition.test(e)) return e;
          long left = deadline - System.nanoTime();
          if (left <= 0 || finished) break;
          try {
            wait(Math.max(1, left / 1_000_000));
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
          }
        }
        for (SseEvent e : events) if (condition.test(e)) return e;
      }
      throw new AssertionError(
          "no matching event on " + path + " within " + timeout + "; read so far: " + events());
    }

    /** Waits for the server to end the stream; returns all its events. */
    public List<SseEvent> awaitEnd(Duration timeout) {
      try {
        reading.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
      } catch (TimeoutException e) {
        close();
        throw new AssertionError(
            "the event stream "
                + path
                + " did not end within "
                + timeout
                + "; read so far: "
                + events());
      } catch (ExecutionException e) {
        throw new AssertionError(
            "reading the event stream " + path + " failed; read so far: " + events(), e.getCause());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException(e);
      }
      return events();
    }

    public boolean ended() {
      return reading.isDone();
    }

    /** Closes the connection, as a client that goes away does. */
    @Override
    public void close() {
      response.body().close();
    }

    /** The {@code text/event-stream} format: fields until a blank line; comments skipped. */
    private void read() {
      String[] id = {null};
      String[] event = {null};
      StringBuilder[] data = {null};
      try (Stream<String> body = response.body()) {
        body.forEachOrdered(
            line -> {
              lines.add(line);
              if (line.isEmpty()) {
                if (data[0] != null || event[0] != null) {
                  synchronized (this) {
                    events.add(
                        new SseEvent(id[0], event[0], data[0] == null ? "" : data[0].toString()));
                    arrivals.add(System.nanoTime());
                    notifyAll();
                  }
                }
                id[0] = null;
                event[0] = null;
                data[0] = null;
                return;
              }
              if (line.startsWith(":")) return;
              int colon = line.indexOf(':');
              String field = colon < 0 ? line : line.substring(0, colon);
              String value = colon < 0 ? "" : line.substring(colon + 1);
              if (value.startsWith(" ")) value = value.substring(1);
              switch (field) {
                case "id" -> id[0] = value;
                case "event" -> event[0] = value;
                case "data" ->
                    data[0] =
                        data[0] == null
                            ? new StringBuilder(value)
                            : data[0].append('\n').append(value);
                default -> {} // retry and unknown fields: see lines()
              }
            });
      } catch (UncheckedIOException e) {
        // closed by close(), or by the server
      } finally {
        synchronized (this) {
          finished = true;
          notifyAll();
        }
      }
    }
  }

  // ------------------------------------------------------------------ helpers

  public static String json(Object value) {
    try {
      return Json.MAPPER.writeValueAsString(value);
    } catch (JsonProcessingException e) {
      throw new IllegalArgumentException(e);
    }
  }

  private HttpRequest.Builder request(String path, String... headers) {
    HttpRequest.Builder b =
        HttpRequest.newBuilder(URI.create(baseUrl + path)).timeout(REQUEST_TIMEOUT);
    if (bearer != null) b.header("Authorization", "Bearer " + bearer);
    if (headers.length > 0) b.headers(headers);
    return b;
  }

  /**
   * The whole exchange, body included, within {@link #REQUEST_TIMEOUT} (a stream that never ends
   * fails).
   */
  private static Response send(HttpRequest.Builder builder) {
    HttpRequest req = builder.build();
    CompletableFuture<HttpResponse<String>> exchange =
        HTTP.sendAsync(req, HttpResponse.BodyHandlers.ofString());
    try {
      HttpResponse<String> resp = exchange.get(REQUEST_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
      return new Response(resp.statusCode(), resp.body(), resp.headers());
    } catch (ExecutionException e) {
      Throwable cause = e.getCause();
      if (cause instanceof IOException io)
        throw new UncheckedIOException(req.method() + " " + req.uri(), io);
      throw new IllegalStateException(req.method() + " " + req.uri(), cause);
    } catch (TimeoutException e) {
      exchange.cancel(true);
      throw new AssertionError(
          req.method() + " " + req.uri() + " did not complete within " + REQUEST_TIMEOUT);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }
}
