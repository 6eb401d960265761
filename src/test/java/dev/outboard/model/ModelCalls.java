package dev.outboard.model;

import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/** One model call in a test, plain or streamed, waited for; its failure as the exception it is. */
final class ModelCalls {
  private ModelCalls() {}

  static ModelResponse await(CompletionStage<ModelResponse> call) throws Exception {
    try {
      return call.toCompletableFuture().get(30, TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      throw (Exception) e.getCause();
    }
  }

  static ModelResponse plain(ModelClient client, ModelRequest request) throws Exception {
    return await(client.complete(request));
  }

  static ModelResponse streamed(
      ModelClient client, ModelRequest request, Consumer<ModelDelta> deltas) throws Exception {
    return await(client.complete(request, deltas));
  }

  /** The failure of a call that must fail; a call that succeeds fails the test. */
  static ModelCallException failure(
      ModelClient client, ModelRequest request, Consumer<ModelDelta> deltas) throws Exception {
    try {
      ModelResponse r = deltas == null ? plain(client, request) : streamed(client, request, deltas);
      throw new AssertionError("expected a failure, got " + r);
    } catch (ModelCallException e) {
      return e;
    }
  }
}
