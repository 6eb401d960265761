package dev.outboard.model;

import java.time.Duration;
import java.util.Optional;

/**
 * A failed model call, classified by the provider client so that {@link RetryingModelClient} can
 * decide: {@code retryable} failures (429, 5xx, overloaded, timeouts, dropped connections) are
 * tried again, honouring {@code retryAfter} when the provider sent one; the rest fail the turn at
 * once. {@code code} becomes the session's error code; the message is the provider's own words
 * (never a credential: see {@link Secrets}).
 */
public final class ModelCallException extends RuntimeException {
  private final String code;
  private final boolean retryable;
  private final Duration retryAfter;

  public ModelCallException(
      String code, String message, boolean retryable, Duration retryAfter, Throwable cause) {
    super(Secrets.redact(message), cause, false, false);
    this.code = code;
    this.retryable = retryable;
    this.retryAfter = retryAfter;
  }

  public static ModelCallException fatal(String code, String message) {
    return new ModelCallException(code, message, false, null, null);
  }

  public String code() {
    return code;
  }

  public boolean retryable() {
    return retryable;
  }

  public Optional<Duration> retryAfter() {
    return Optional.ofNullable(retryAfter);
  }

  /**
   * Classifies an HTTP status from a provider: 408, 409, 429, 5xx and 529 (overloaded) are worth
   * another try; everything else is the request's fault or the account's and is not.
   */
  public static ModelCallException forStatus(
      String provider, int status, String providerMessage, Duration retryAfter, Throwable cause) {
    String code =
        switch (status) {
          case 429 -> "rate_limited";
          case 529 -> "overloaded";
          case 401, 403 -> "model_auth";
          case 400, 404, 413, 422 -> "model_request_rejected";
          default -> status >= 500 ? "model_unavailable" : "model_error";
        };
    boolean retryable = status == 408 || status == 409 || status == 429 || status >= 500;
    return new ModelCallException(
        code,
        provider + " answered " + status + ": " + providerMessage,
        retryable,
        retryAfter,
        cause);
  }

  /**
   * Parses a {@code Retry-After} header: delay-seconds (possibly fractional) or an HTTP date; also
   * the {@code retry-after-ms} header some providers send. Empty if absent or unreadable.
   */
  public static Optional<Duration> parseRetryAfter(String retryAfterMs, String retryAfter) {
    try {
      if (retryAfterMs != null && !retryAfterMs.isBlank()) {
        return Optional.of(Duration.ofMillis((long) Double.parseDouble(retryAfterMs.trim())));
      }
      if (retryAfter == null || retryAfter.isBlank()) return Optional.empty();
      String v = retryAfter.trim();
      if (v.matches("\\d+(\\.\\d+)?"))
        return Optional.of(Duration.ofMillis((long) (Double.parseDouble(v) * 1000)));
      java.time.ZonedDateTime at =
          java.time.ZonedDateTime.parse(v, java.time.format.DateTimeFormatter.RFC_1123_DATE_TIME);
      Duration d = Duration.between(java.time.Instant.now(), at.toInstant());
      return Optional.of(d.isNegative() ? Duration.ZERO : d);
    } catch (RuntimeException e) {
      return Optional.empty();
    }
  }
}
