package dev.outboard.api;

import org.apache.pekko.http.javadsl.model.HttpEntities;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.model.StatusCode;
import org.apache.pekko.http.javadsl.model.StatusCodes;

/**
 * An error answer in API.md's shape, {@code {"error": {"code", "message"}}}. Thrown by route
 * helpers and turned into a response by {@link HttpServer}'s exception handler.
 */
public final class ApiError extends RuntimeException {
  private final StatusCode status;
  private final String code;

  public ApiError(StatusCode status, String code, String message) {
    super(message, null, false, false);
    this.status = status;
    this.code = code;
  }

  public static ApiError badRequest(String message) {
    return new ApiError(StatusCodes.BAD_REQUEST, "bad_request", message);
  }

  public static ApiError notFound(String message) {
    return new ApiError(StatusCodes.NOT_FOUND, "not_found", message);
  }

  public static ApiError conflict(String message) {
    return new ApiError(StatusCodes.CONFLICT, "conflict", message);
  }

  public static ApiError unauthorized(String message) {
    return new ApiError(StatusCodes.UNAUTHORIZED, "unauthorized", message);
  }

  public StatusCode status() {
    return status;
  }

  public String code() {
    return code;
  }

  public HttpResponse toResponse() {
    return response(status, code, getMessage());
  }

  record Body(Detail error) {}

  record Detail(String code, String message) {}

  public static HttpResponse response(StatusCode status, String code, String message) {
    byte[] json = JsonSupport.toJson(new Body(new Detail(code, message)));
    return HttpResponse.create()
        .withStatus(status)
        .withEntity(HttpEntities.create(JsonSupport.JSON, json));
  }

  /** A machine code for a status that pekko-http produced itself (rejections). */
  public static String codeFor(StatusCode status) {
    return switch (status.intValue()) {
      case 400 -> "bad_request";
      case 401 -> "unauthorized";
      case 404 -> "not_found";
      case 405 -> "method_not_allowed";
      case 406 -> "not_acceptable";
      case 408 -> "request_timeout";
      case 409 -> "conflict";
      case 412 -> "precondition_failed";
      case 413 -> JsonSupport.BODY_TOO_LARGE; // pekko-http's own 413s are about the request body
      case 414 -> "uri_too_long";
      case 415 -> "unsupported_media_type";
      case 429 -> "too_many_requests";
      case 431 -> "headers_too_large";
      case 503 -> "unavailable";
      default ->
          status.isSuccess() ? "ok" : status.intValue() >= 500 ? "internal" : "request_error";
    };
  }
}
