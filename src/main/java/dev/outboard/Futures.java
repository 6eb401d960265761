package dev.outboard;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * Small helpers for asynchronous code: a delay, the cause of a failed stage, and a stage from a
 * call that may throw instead of failing its stage.
 */
public final class Futures {
  private Futures() {}

  /** A stage that completes after {@code delay}, on no thread of ours (for "try again in ..."). */
  public static CompletionStage<Void> after(Duration delay) {
    return CompletableFuture.runAsync(
        () -> {}, CompletableFuture.delayedExecutor(delay.toNanos(), TimeUnit.NANOSECONDS));
  }

  /**
   * What went wrong: {@code e} without the {@link CompletionException}s and {@link
   * ExecutionException}s that wrap it on its way through stages and futures.
   */
  public static Throwable cause(Throwable e) {
    while ((e instanceof CompletionException || e instanceof ExecutionException)
        && e.getCause() != null) e = e.getCause();
    return e;
  }

  /** The stage {@code call} returns, or a failed one if it throws instead. */
  public static <T> CompletionStage<T> attempt(Supplier<? extends CompletionStage<T>> call) {
    try {
      return call.get();
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
  }
}
