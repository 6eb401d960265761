package dev.outboard.testing;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * Requests {@link ApiClient} does not make: any method with a text body (the files API's PUT) or
 * with exact bytes, and request targets sent exactly as written ({@link URI#create} keeps {@code
 * ..} and percent-escapes as they are), plus a check of what {@link HttpClient} really puts on the
 * wire.
 */
public final class RawHttp {
  private static final HttpClient HTTP =
      HttpClient.newBuilder()
          .version(HttpClient.Version.HTTP_1_1)
          .connectTimeout(Duration.ofSeconds(5))
          .build();
  private static final Duration TIMEOUT = Duration.ofSeconds(20);

  private RawHttp() {}

  /**
   * {@code method baseUrl+rawPath} with {@code bearer} (null: none), a text body (null: none) and
   * header name/value pairs.
   */
  public static ApiClient.Response send(
      String method,
      String baseUrl,
      String rawPath,
      String bearer,
      String body,
      String... headers) {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(baseUrl + rawPath)).timeout(TIMEOUT);
    if (bearer != null) b.header("Authorization", "Bearer " + bearer);
    if (headers.length > 0) b.headers(headers);
    if (body != null) b.header("Content-Type", "text/plain; charset=utf-8");
    b.method(
        method,
        body == null
            ? HttpRequest.BodyPublishers.noBody()
            : HttpRequest.BodyPublishers.ofString(body));
    try {
      HttpResponse<String> r = HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
      return new ApiClient.Response(r.statusCode(), r.body(), r.headers());
    } catch (IOException e) {
      throw new UncheckedIOException(method + " " + rawPath, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /**
   * {@code method baseUrl+rawPath} with {@code bearer} (null: none), {@code body} as these exact
   * bytes (null: none) under {@code contentType} (null: no {@code Content-Type} header), and header
   * name/value pairs. The answer's body is read as UTF-8.
   */
  public static ApiClient.Response sendBytes(
      String method,
      String baseUrl,
      String rawPath,
      String bearer,
      String contentType,
      byte[] body,
      String... headers) {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(baseUrl + rawPath)).timeout(TIMEOUT);
    if (bearer != null) b.header("Authorization", "Bearer " + bearer);
    if (headers.length > 0) b.headers(headers);
    if (contentType != null) b.header("Content-Type", contentType);
    b.method(
        method,
        body == null
            ? HttpRequest.BodyPublishers.noBody()
            : HttpRequest.BodyPublishers.ofByteArray(body));
    try {
      HttpResponse<byte[]> r = HTTP.send(b.build(), HttpResponse.BodyHandlers.ofByteArray());
      return new ApiClient.Response(
          r.statusCode(), new String(r.body(), StandardCharsets.UTF_8), r.headers());
    } catch (IOException e) {
      throw new UncheckedIOException(method + " " + rawPath, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /**
   * The request target that {@link #send} puts on the wire for {@code rawPath}: sends a GET to a
   * throw-away local socket and returns the target of the request line it received.
   */
  public static String targetAsSent(String rawPath) {
    try (ServerSocket server = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      server.setSoTimeout(10_000);
      CompletableFuture<String> requestLine =
          CompletableFuture.supplyAsync(
              () -> {
                try (Socket s = server.accept()) {
                  BufferedReader in =
                      new BufferedReader(
                          new InputStreamReader(s.getInputStream(), StandardCharsets.ISO_8859_1));
                  String line = in.readLine();
                  for (String h = in.readLine(); h != null && !h.isEmpty(); h = in.readLine()) {
                    // headers are not needed
                  }
                  OutputStream out = s.getOutputStream();
                  out.write(
                      "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
                          .getBytes(StandardCharsets.ISO_8859_1));
                  out.flush();
                  return line;
                } catch (IOException e) {
                  throw new UncheckedIOException(e);
                }
              });
      send("GET", "http://127.0.0.1:" + server.getLocalPort(), rawPath, null, null);
      String line = requestLine.get(10, TimeUnit.SECONDS);
      String[] parts = line.split(" ");
      if (parts.length != 3) throw new IllegalStateException("odd request line: " + line);
      return parts[1];
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (Exception e) {
      throw new IllegalStateException("could not capture the request line of " + rawPath, e);
    }
  }
}
