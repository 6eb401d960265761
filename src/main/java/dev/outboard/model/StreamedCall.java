package dev.outboard.model;

import java.util.Optional;
import java.util.concurrent.CompletableFuture;

/**
 * What both providers' streamed calls share: each event is folded into the SDK's accumulator and
 * its deltas passed on; the call completes once, with the accumulated answer or the first failure.
 * An event the accumulator refuses (out of order, of the wrong shape) stops the reading and fails
 * the call; a stream that ends cleanly but short of its end is cut off, and retryable. (The delta
 * consumer's own failures never get here: see {@link DeltaSink}.)
 *
 * @param <E> the SDK's stream event
 * @param <M> the accumulated answer, as a non-streaming call returns it
 */
abstract class StreamedCall<E, M> {
  final CompletableFuture<M> done = new CompletableFuture<>();
  private final Runnable close;

  /** {@code close} stops the SDK's reading of the stream. */
  StreamedCall(Runnable close) {
    this.close = close;
  }

  /** Folds {@code event} into the accumulator and passes on its deltas. */
  abstract void accept(E event);

  /**
   * The accumulated answer; an {@link IllegalStateException} if the stream stopped short of its
   * end.
   */
  abstract M result();

  /** The failure of a stream that ended cleanly but short of its end. */
  abstract ModelCallException cutOff(IllegalStateException cause);

  final void next(E event) {
    if (done.isDone()) return;
    try {
      accept(event);
    } catch (RuntimeException e) {
      done.completeExceptionally(e);
      close.run();
    }
  }

  final void end(Optional<Throwable> error) {
    if (done.isDone()) return;
    if (error.isPresent()) {
      done.completeExceptionally(error.get());
      return;
    }
    try {
      done.complete(result());
    } catch (IllegalStateException cutOff) {
      done.completeExceptionally(cutOff(cutOff));
    }
  }
}
