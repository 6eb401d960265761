package dev.outboard.model;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The shared call of both providers ends on every path, whatever the classification does. */
class ProviderClientTest {

  /** A provider whose SDK answers with {@code answer} and whose classification may throw. */
  private static final class Fake extends ProviderClient<String, String> {
    private final CompletableFuture<String> answer;
    private final boolean classifyThrows;

    Fake(CompletableFuture<String> answer, boolean classifyThrows) {
      this.answer = answer;
      this.classifyThrows = classifyThrows;
    }

    @Override
    public String provider() {
      return "fake";
    }

    @Override
    public CompletionStage<ModelResponse> complete(ModelRequest request) {
      return call(request, params -> answer);
    }

    @Override
    String params(ModelRequest request) {
      return "params";
    }

    @Override
    ModelCallException unbuildable(RuntimeException e) {
      return new ModelCallException("model_bad_request", "unbuildable", false, null, e);
    }

    @Override
    ModelResponse response(String answer) {
      throw new IllegalStateException("no mapping in this test");
    }

    @Override
    ModelCallException unmappable(RuntimeException e) {
      return new ModelCallException("model_bad_response", "unmappable", false, null, e);
    }

    @Override
    ModelCallException classify(Throwable error) {
      if (classifyThrows) throw new NullPointerException("the SDK's exception had no headers");
      return new ModelCallException("model_unavailable", "classified", true, null, error);
    }
  }

  private static Throwable failureOf(CompletionStage<ModelResponse> stage) throws Exception {
    try {
      stage.toCompletableFuture().get(5, TimeUnit.SECONDS);
    } catch (java.util.concurrent.ExecutionException e) {
      return e.getCause();
    }
    throw new AssertionError("the call succeeded");
  }

  @Test
  void aFailureIsClassified() throws Exception {
    var stage = new Fake(CompletableFuture.failedFuture(new IOException("reset")), false);
    assertThat(failureOf(stage.complete(null)))
        .isInstanceOf(ModelCallException.class)
        .hasMessage("classified");
  }

  @Test
  void aClassificationThatThrowsStillEndsTheCall() throws Exception {
    var stage = new Fake(CompletableFuture.failedFuture(new IOException("reset")), true);
    assertThat(failureOf(stage.complete(null))).isInstanceOf(NullPointerException.class);
  }

  @Test
  void anAnswerThatCannotBeMappedIsUnmappable() throws Exception {
    var stage = new Fake(CompletableFuture.completedFuture("answer"), false);
    assertThat(failureOf(stage.complete(null))).hasMessage("unmappable");
  }
}
