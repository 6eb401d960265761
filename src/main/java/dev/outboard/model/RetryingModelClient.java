package dev.outboard.model;

import dev.outboard.Futures;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Retries a provider's failed calls per {@link RetryPolicy}, without blocking a thread (the waits
 * are scheduled). The session sees one answer or one failure: a retry that succeeds records a
 * single turn. A failure after the budget says how many attempts were made and what the provider
 * said last.
 */
public final class RetryingModelClient implements ModelClient {
  private static final Logger log = LoggerFactory.getLogger(RetryingModelClient.class);

  private final ModelClient inner;
  private final RetryPolicy policy;

  public RetryingModelClient(ModelClient inner, RetryPolicy policy) {
    this.inner = inner;
    this.policy = policy;
  }

  @Override
  public String provider() {
    return inner.provider();
  }

  @Override
  public Optional<String> validate(ModelSpec spec) {
    return inner.validate(spec);
  }

  @Override
  public CompletionStage<ModelResponse> complete(ModelRequest request) {
    return attempt(request, null, 1);
  }

  @Override
  public CompletionStage<ModelResponse> complete(
      ModelRequest request, Consumer<ModelDelta> deltas) {
    return attempt(request, deltas, 1);
  }

  private CompletionStage<ModelResponse> attempt(
      ModelRequest request, Consumer<ModelDelta> deltas, int attempt) {
    CompletionStage<ModelResponse> call =
        Futures.attempt(
            () -> deltas == null ? inner.complete(request) : inner.complete(request, deltas));
    return call.handle(
            (response, error) -> {
              if (error == null) return CompletableFuture.completedFuture(response);
              ModelCallException failure = classify(error);
              if (!failure.retryable())
                return CompletableFuture.<ModelResponse>failedFuture(failure);
              if (attempt >= policy.maxAttempts()) {
                return CompletableFuture.<ModelResponse>failedFuture(
                    new ModelCallException(
                        failure.code(),
                        "gave up after " + attempt + " attempts; last: " + failure.getMessage(),
                        false,
                        null,
                        failure));
              }
              long wait = policy.delay(attempt, failure).toMillis();
              log.info(
                  "session {} turn {}: {} model call failed ({}); attempt {} in {} ms",
                  request.sessionId(),
                  request.turn(),
                  inner.provider(),
                  failure.code(),
                  attempt + 1,
                  wait);
              return dev.outboard.Futures.after(java.time.Duration.ofMillis(wait))
                  .thenCompose(ignored -> attempt(request, deltas, attempt + 1));
            })
        .thenCompose(stage -> stage);
  }

  private ModelCallException classify(Throwable error) {
    Throwable e = Futures.cause(error);
    if (e instanceof ModelCallException m) return m;
    // Anything the provider client did not classify is treated as a transient transport problem.
    return new ModelCallException(
        "model_error", inner.provider() + " call failed: " + e, true, null, e);
  }
}
