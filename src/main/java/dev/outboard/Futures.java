package dev.outboard;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;

/** Small helpers for asynchronous code. */
public final class Futures {
  private Futures() {}

  /** A stage that completes after {@code delay}, on no thread of ours (for "try again in ..."). */
  public static CompletionStage<Void> after(Duration delay) {
    return CompletableFuture.runAsync(
        () -> {}, CompletableFuture.delayedExecutor(delay.toNanos(), TimeUnit.NANOSECONDS));
  }
}
