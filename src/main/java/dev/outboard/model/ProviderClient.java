package dev.outboard.model;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Futures;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.function.Function;

/**
 * What both SDK-backed providers share: one call — build the SDK's request, send it, map the answer
 * — with every failure on the way turned into a {@link ModelCallException}, and the parts of
 * failure classification that read the same for both (retry-after headers, the error body's
 * message, transport failures, errors mid-stream). A provider keeps only its wire mapping.
 *
 * @param <P> the SDK's request parameters
 * @param <A> the SDK's answer
 */
abstract class ProviderClient<P, A> implements ModelClient {

  /** The SDK's request for {@code request}; a RuntimeException if it cannot be built. */
  abstract P params(ModelRequest request);

  /** The failure of a request that {@link #params} could not build. */
  abstract ModelCallException unbuildable(RuntimeException e);

  /**
   * The answer as a response; throws a ModelCallException (or any RuntimeException) if unusable.
   */
  abstract ModelResponse response(A answer);

  /** The failure of an answer that {@link #response} could not map (not a ModelCallException). */
  abstract ModelCallException unmappable(RuntimeException e);

  /** Classifies a failure that is not a ModelCallException (already unwrapped). */
  abstract ModelCallException classify(Throwable error);

  /**
   * Builds the request, sends it with {@code send} (plain or streaming) and maps the answer; the
   * stage fails with a ModelCallException, never anything else.
   */
  final CompletionStage<ModelResponse> call(
      ModelRequest request, Function<P, CompletableFuture<A>> send) {
    P params;
    try {
      params = params(request);
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(unbuildable(e));
    }
    CompletableFuture<A> call;
    try {
      call = send.apply(params);
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(failure(e));
    }
    CompletableFuture<ModelResponse> out = new CompletableFuture<>();
    call.whenComplete(
        (answer, error) -> {
          try {
            if (error != null) out.completeExceptionally(failure(error));
            else out.complete(response(answer));
          } catch (ModelCallException e) {
            out.completeExceptionally(e);
          } catch (RuntimeException e) { // a classification that throws still ends the call
            out.completeExceptionally(error != null ? e : unmappable(e));
          }
        });
    return out;
  }

  /** Any failure as a ModelCallException: unwrapped, kept if it is one, else classified. */
  final ModelCallException failure(Throwable error) {
    Throwable e = Futures.cause(error);
    return e instanceof ModelCallException m ? m : classify(e);
  }

  // ---------------------------------------------------------------------------------------------
  // Shared by both providers' mappings

  /** The model the request names, else the provider's default. */
  static String modelName(ModelRequest request, ProviderSettings settings) {
    return request.model() != null
            && request.model().name() != null
            && !request.model().name().isBlank()
        ? request.model().name()
        : settings.defaultModel();
  }

  /** The connect timeout: the request timeout, at most 10 s. */
  static Duration connectTimeout(Duration requestTimeout) {
    return requestTimeout.compareTo(Duration.ofSeconds(10)) < 0
        ? requestTimeout
        : Duration.ofSeconds(10);
  }

  /**
   * The wait a failed response asks for ({@code retry-after-ms}, else {@code retry-after}), or
   * null; {@code headers} is the SDK's {@code Headers::values} (null: no headers).
   */
  static Duration retryAfter(Function<String, List<String>> headers) {
    return ModelCallException.parseRetryAfter(
            first(headers, "retry-after-ms"), first(headers, "retry-after"))
        .orElse(null);
  }

  private static String first(Function<String, List<String>> headers, String name) {
    if (headers == null) return null;
    List<String> v = headers.apply(name);
    return v == null || v.isEmpty() ? null : v.get(0);
  }

  /** The {@code error.message} of a provider's error body, or null if it has none. */
  static String errorMessage(JsonNode body) {
    if (body == null) return null;
    JsonNode msg = body.path("error").path("message");
    return msg.isTextual() && !msg.asText().isBlank() ? msg.asText() : null;
  }

  /**
   * A transport failure, retryable: the same request may well succeed, and nothing was recorded. A
   * timeout is {@code model_timeout}, anything else {@code failedCode}.
   */
  static ModelCallException transport(
      String provider, IOException io, String failedCode, String detail, Throwable cause) {
    boolean timeout = io instanceof InterruptedIOException;
    return new ModelCallException(
        timeout ? "model_timeout" : failedCode,
        provider + (timeout ? " call timed out: " : " connection failed: ") + detail,
        true,
        null,
        cause);
  }

  /**
   * An error in a stream that had begun with HTTP 200: the request was accepted and nothing was
   * recorded, so it is worth another try whatever the error; {@code kind} is the provider's name
   * for it (may be empty).
   */
  static ModelCallException midStream(
      String provider, String code, String kind, String message, Throwable cause) {
    return new ModelCallException(
        code,
        provider + "'s stream failed mid-way: " + (kind.isEmpty() ? "" : kind + ": ") + message,
        true,
        null,
        cause);
  }
}
