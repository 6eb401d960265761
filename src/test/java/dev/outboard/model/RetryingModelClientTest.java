package dev.outboard.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** The retry loop every provider runs behind, and the parsing and classification it relies on. */
class RetryingModelClientTest {
  private static final RetryPolicy FAST =
      new RetryPolicy(4, Duration.ofMillis(10), Duration.ofMillis(40), Duration.ofMillis(300));
  private static final ModelRequest REQUEST =
      new ModelRequest("s_1", 1, new ModelSpec("fake", "m", null), "sys", List.of(), List.of());
  private static final ModelResponse ANSWER =
      new ModelResponse(
          List.of(new Block.Text("hi")), ModelResponse.StopReason.END_TURN, Usage.ZERO);

  /** A provider that fails as told, then answers. */
  private static final class Flaky implements ModelClient {
    final Deque<RuntimeException> failures = new ArrayDeque<>();
    final AtomicInteger calls = new AtomicInteger();
    final List<Long> callTimes = new java.util.concurrent.CopyOnWriteArrayList<>();

    Flaky(RuntimeException... failures) {
      this.failures.addAll(List.of(failures));
    }

    @Override
    public String provider() {
      return "fake";
    }

    @Override
    public CompletionStage<ModelResponse> complete(ModelRequest request) {
      calls.incrementAndGet();
      callTimes.add(System.nanoTime());
      RuntimeException next = failures.poll();
      return next == null
          ? CompletableFuture.completedFuture(ANSWER)
          : CompletableFuture.failedFuture(next);
    }
  }

  private static ModelResponse await(CompletionStage<ModelResponse> stage) throws Exception {
    return stage.toCompletableFuture().get(10, TimeUnit.SECONDS);
  }

  @Test
  void aRateLimitWithRetryAfterIsWaitedOutAndTheSecondAttemptAnswers() throws Exception {
    Flaky provider =
        new Flaky(
            ModelCallException.forStatus("fake", 429, "slow down", Duration.ofMillis(200), null));
    ModelResponse response = await(new RetryingModelClient(provider, FAST).complete(REQUEST));
    assertThat(response).isEqualTo(ANSWER);
    assertThat(provider.calls).hasValue(2);
    long waitedMs = (provider.callTimes.get(1) - provider.callTimes.get(0)) / 1_000_000;
    assertThat(waitedMs).as("Retry-After honoured").isGreaterThanOrEqualTo(190);
  }

  @Test
  void anOverloadStormExhaustsTheBudgetAndSaysWhatTheProviderSaidLast() {
    RuntimeException overloaded =
        ModelCallException.forStatus("fake", 529, "Overloaded", null, null);
    Flaky provider = new Flaky(overloaded, overloaded, overloaded, overloaded, overloaded);
    assertThatThrownBy(() -> await(new RetryingModelClient(provider, FAST).complete(REQUEST)))
        .isInstanceOf(ExecutionException.class)
        .cause()
        .isInstanceOf(ModelCallException.class)
        .hasMessageContaining("gave up after 4 attempts")
        .hasMessageContaining("Overloaded")
        .satisfies(e -> assertThat(((ModelCallException) e).code()).isEqualTo("overloaded"));
    assertThat(provider.calls).hasValue(4);
  }

  @Test
  void aRejectedRequestIsNotRetried() {
    Flaky provider =
        new Flaky(ModelCallException.forStatus("fake", 400, "bad tool schema", null, null));
    assertThatThrownBy(() -> await(new RetryingModelClient(provider, FAST).complete(REQUEST)))
        .cause()
        .hasMessageContaining("bad tool schema")
        .satisfies(
            e -> assertThat(((ModelCallException) e).code()).isEqualTo("model_request_rejected"));
    assertThat(provider.calls).hasValue(1);
  }

  @Test
  void anUnclassifiedFailureIsTreatedAsTransient() throws Exception {
    Flaky provider = new Flaky(new IllegalStateException("connection reset"));
    assertThat(await(new RetryingModelClient(provider, FAST).complete(REQUEST))).isEqualTo(ANSWER);
    assertThat(provider.calls).hasValue(2);
  }

  @Test
  void statusesAreClassifiedForRetry() {
    assertThat(ModelCallException.forStatus("p", 429, "m", null, null).retryable()).isTrue();
    assertThat(ModelCallException.forStatus("p", 500, "m", null, null).retryable()).isTrue();
    assertThat(ModelCallException.forStatus("p", 529, "m", null, null).retryable()).isTrue();
    assertThat(ModelCallException.forStatus("p", 408, "m", null, null).retryable()).isTrue();
    assertThat(ModelCallException.forStatus("p", 401, "m", null, null).retryable()).isFalse();
    assertThat(ModelCallException.forStatus("p", 400, "m", null, null).retryable()).isFalse();
  }

  @Test
  void retryAfterIsReadAsSecondsMillisecondsOrADate() {
    assertThat(ModelCallException.parseRetryAfter(null, "2")).contains(Duration.ofSeconds(2));
    assertThat(ModelCallException.parseRetryAfter(null, "0.5")).contains(Duration.ofMillis(500));
    assertThat(ModelCallException.parseRetryAfter("1500", "9")).contains(Duration.ofMillis(1500));
    String inTenSeconds =
        java.time.format.DateTimeFormatter.RFC_1123_DATE_TIME.format(
            java.time.ZonedDateTime.now(java.time.ZoneOffset.UTC).plusSeconds(10));
    assertThat(ModelCallException.parseRetryAfter(null, inTenSeconds).orElseThrow())
        .isBetween(Duration.ofSeconds(8), Duration.ofSeconds(11));
    assertThat(ModelCallException.parseRetryAfter(null, "soon")).isEmpty();
    assertThat(ModelCallException.parseRetryAfter(null, null)).isEmpty();
  }

  @Test
  void backoffGrowsWithJitterWithinItsCapAndRetryAfterIsCapped() {
    RetryPolicy policy =
        new RetryPolicy(10, Duration.ofMillis(100), Duration.ofMillis(1000), Duration.ofSeconds(5));
    ModelCallException plain = ModelCallException.forStatus("p", 503, "m", null, null);
    for (int i = 0; i < 50; i++) {
      assertThat(policy.delay(1, plain).toMillis()).isBetween(50L, 100L);
      assertThat(policy.delay(3, plain).toMillis()).isBetween(200L, 400L);
      assertThat(policy.delay(9, plain).toMillis()).isBetween(500L, 1000L);
    }
    ModelCallException longWait =
        ModelCallException.forStatus("p", 429, "m", Duration.ofMinutes(10), null);
    assertThat(policy.delay(1, longWait)).isEqualTo(Duration.ofSeconds(5));
  }

  @Test
  void secretsAreRedactedFromMessages() {
    Secrets.register("sk-test-secret-value-123456");
    ModelCallException e =
        ModelCallException.fatal("model_auth", "key sk-test-secret-value-123456 is invalid");
    assertThat(e.getMessage()).doesNotContain("sk-test-secret-value-123456").contains("[redacted]");
  }
}
