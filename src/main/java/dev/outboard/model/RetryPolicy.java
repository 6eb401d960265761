package dev.outboard.model;

import com.typesafe.config.Config;
import java.time.Duration;
import java.util.concurrent.ThreadLocalRandom;

/**
 * How often and how long to retry a model call: up to {@code maxAttempts} calls in all, waiting
 * {@code Retry-After} when the provider says so (up to {@code maxRetryAfter}), else exponential
 * backoff from {@code baseDelay} with full jitter, capped at {@code maxDelay}.
 */
public record RetryPolicy(
    int maxAttempts, Duration baseDelay, Duration maxDelay, Duration maxRetryAfter) {

  public static RetryPolicy from(Config c) {
    return new RetryPolicy(
        c.getInt("max-attempts"),
        c.getDuration("base-delay"),
        c.getDuration("max-delay"),
        c.getDuration("max-retry-after"));
  }

  /**
   * The wait before attempt {@code attempt + 1}, after attempt {@code attempt} (1-based) failed.
   */
  public Duration delay(int attempt, ModelCallException failure) {
    if (failure.retryAfter().isPresent()) {
      Duration d = failure.retryAfter().get();
      return d.compareTo(maxRetryAfter) > 0 ? maxRetryAfter : d;
    }
    long cap =
        Math.min(maxDelay.toMillis(), baseDelay.toMillis() * (1L << Math.min(20, attempt - 1)));
    return Duration.ofMillis(ThreadLocalRandom.current().nextLong(cap / 2, cap + 1));
  }
}
