package dev.outboard.model;

import java.util.concurrent.CompletionStage;
import java.util.function.Consumer;

/**
 * The SPI every model provider implements. Calls are asynchronous: the returned stage completes on
 * the provider's own threads, and the session actor receives the outcome as a message.
 */
public interface ModelClient {

  /** The {@code model.provider} value that selects this client. */
  String provider();

  /** Checks a session's model spec at create time; returns a human sentence if it is unusable. */
  default java.util.Optional<String> validate(ModelSpec spec) {
    return java.util.Optional.empty();
  }

  CompletionStage<ModelResponse> complete(ModelRequest request);

  /**
   * Like {@link #complete(ModelRequest)}, streaming: {@code deltas} gets the answer's pieces as
   * they arrive, on the client's own threads, before the stage completes. A provider without
   * streaming sends none.
   */
  default CompletionStage<ModelResponse> complete(
      ModelRequest request, Consumer<ModelDelta> deltas) {
    return complete(request);
  }
}
