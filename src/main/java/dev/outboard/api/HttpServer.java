package dev.outboard.api;

import dev.outboard.ops.Metrics;
import dev.outboard.ops.StartupChecks;
import java.net.InetSocketAddress;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.http.javadsl.Http;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.apache.pekko.http.javadsl.model.HttpEntity;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.model.MediaTypes;
import org.apache.pekko.http.javadsl.model.StatusCodes;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.Directives;
import org.apache.pekko.http.javadsl.server.ExceptionHandler;
import org.apache.pekko.http.javadsl.server.RejectionHandler;
import org.apache.pekko.http.javadsl.server.Route;
import org.apache.pekko.http.scaladsl.model.EntityStreamSizeException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Binds the API: every answer, including pekko-http's own rejections, in API.md's error shape. */
public final class HttpServer extends AllDirectives {
  private static final Logger log = LoggerFactory.getLogger(HttpServer.class);

  private HttpServer() {}

  /** The API routes under {@code /v1}, wrapped in error handling. */
  public static Route api(Route first, Route... more) {
    HttpServer d = new HttpServer();
    return d.mapResponse(
        response -> count(JsonSupport.withJsonCharset(response)),
        () ->
            d.handleExceptions(
                exceptions(),
                () ->
                    d.handleRejections(
                        rejections(),
                        () ->
                            d.handleExceptions(
                                exceptions(),
                                () ->
                                    d.optionalHeaderValueByName(
                                        "Raw-Request-URI",
                                        raw -> {
                                          raw.ifPresent(HttpServer::refuseTraversal);
                                          return d.pathPrefix("v1", () -> d.concat(first, more));
                                        })))));
  }

  private static final java.util.regex.Pattern TRAVERSAL =
      java.util.regex.Pattern.compile(
          "(^|/)(\\.|%2e){1,2}(/|$|\\?)|%2e%2e|%2f|%5c|%00",
          java.util.regex.Pattern.CASE_INSENSITIVE);

  /**
   * Refuses a request target with dot segments or encoded dots/separators, as sent (before
   * normalisation).
   */
  static void refuseTraversal(String rawTarget) {
    int q = rawTarget.indexOf('?');
    String path = q < 0 ? rawTarget : rawTarget.substring(0, q);
    if (TRAVERSAL.matcher(path).find()) {
      throw ApiError.badRequest(
          "the request path contains '.' or '..' segments or an encoded '.', '/', '\\' or NUL;"
              + " paths are taken literally and may not climb");
    }
  }

  public static CompletionStage<ServerBinding> start(
      ActorSystem<?> system, Route routes, String host, int port) {
    CompletionStage<ServerBinding> binding = Http.get(system).newServerAt(host, port).bind(routes);
    return binding.whenComplete(
        (b, error) -> {
          if (error != null) {
            log.error(StartupChecks.bindFailure(error, "API", host, port, "OUTBOARD_HTTP_PORT"));
            StartupChecks.abort(system); // coordinated shutdown; a node that exits says 1
          } else {
            // Requests in flight get up to 3 s (the phase timeout, cluster.conf); open SSE streams
            // are cut then.
            b.addToCoordinatedShutdown(java.time.Duration.ofSeconds(3), system);
            InetSocketAddress address = b.localAddress();
            log.info("API listening on http://{}:{}", address.getHostString(), address.getPort());
          }
        });
  }

  private static HttpResponse count(HttpResponse response) {
    Metrics.HTTP_REQUESTS.labelValues(response.status().intValue() / 100 + "xx").inc();
    return response;
  }

  static ExceptionHandler exceptions() {
    return ExceptionHandler.newBuilder()
        .match(ApiError.class, e -> Directives.complete(e.toResponse()))
        .match(
            EntityStreamSizeException.class,
            e ->
                Directives.complete(
                    ApiError.response(
                        StatusCodes.CONTENT_TOO_LARGE,
                        JsonSupport.BODY_TOO_LARGE,
                        "the request body is larger than the limit of " + e.limit() + " bytes")))
        .match(Throwable.class, e -> Directives.complete(JsonSupport.toApiError(e).toResponse()))
        .build();
  }

  /** pekko-http's default rejection answers, re-shaped into our JSON error. */
  static RejectionHandler rejections() {
    return RejectionHandler.defaultHandler()
        .mapRejectionResponse(
            response -> {
              if (response
                  .entity()
                  .getContentType()
                  .mediaType()
                  .equals(MediaTypes.APPLICATION_JSON)) return response;
              String text =
                  response.entity() instanceof HttpEntity.Strict strict
                      ? strict.getData().utf8String()
                      : response.status().reason();
              if (response.status().intValue() == 413 && text.isBlank())
                text = "the request body is too large";
              return ApiError.response(
                  response.status(),
                  ApiError.codeFor(response.status()),
                  text.isBlank() ? response.status().reason() : text);
            });
  }
}
