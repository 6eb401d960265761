package dev.outboard.ops;

import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.instrumentation.jvm.JvmMetrics;
import io.prometheus.metrics.model.registry.PrometheusRegistry;

/** Prometheus metrics of a node, served at the management port's {@code /metrics}. */
public final class Metrics {
  private Metrics() {}

  public static final PrometheusRegistry REGISTRY = PrometheusRegistry.defaultRegistry;

  public static final Counter SESSIONS_STARTED =
      Counter.builder().name("outboard_sessions_started_total").help("Sessions created on this node").register(REGISTRY);

  public static final Counter TOOL_CALLS =
      Counter.builder().name("outboard_tool_calls_total").help("Tool calls executed, by tool and outcome")
          .labelNames("tool", "outcome").register(REGISTRY);

  public static final Histogram TURN_SECONDS =
      Histogram.builder().name("outboard_model_call_seconds").help("Time from a model call's start to its answer")
          .classicUpperBounds(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
          .register(REGISTRY);

  public static final Histogram ORG_WRITE_BATCH =
      Histogram.builder().name("outboard_org_write_batch_size").help("Org-file writes committed together in one transaction")
          .classicUpperBounds(1, 2, 4, 8, 16, 32, 64, 128, 256, 500).register(REGISTRY);

  public static final Counter HTTP_REQUESTS =
      Counter.builder().name("outboard_http_requests_total").help("API requests, by status class")
          .labelNames("status").register(REGISTRY);

  private static volatile boolean jvmRegistered;

  public static synchronized void registerJvmMetrics() {
    if (!jvmRegistered) {
      JvmMetrics.builder().register(REGISTRY);
      jvmRegistered = true;
    }
  }
}
