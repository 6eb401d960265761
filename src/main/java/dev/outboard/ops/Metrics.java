package dev.outboard.ops;

import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.Gauge;
import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.instrumentation.jvm.JvmMetrics;
import io.prometheus.metrics.model.registry.PrometheusRegistry;

/**
 * Prometheus metrics of a node, served at the management port's {@code /metrics}. The registry is
 * the JVM's default one: in production a JVM is one node; tests that run several nodes in one JVM
 * see the sum of them.
 */
public final class Metrics {
  private Metrics() {}

  public static final PrometheusRegistry REGISTRY = PrometheusRegistry.defaultRegistry;

  private static final double[] LATENCY_BOUNDS = {
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
  };

  public static final Counter SESSIONS_STARTED =
      Counter.builder()
          .name("outboard_sessions_started_total")
          .help("Sessions created on this node")
          .register(REGISTRY);

  /** Kept by {@link LiveStates}: each live session entity counts once, under its current status. */
  public static final Gauge SESSIONS =
      Gauge.builder()
          .name("outboard_sessions")
          .help("Sessions whose entity is live on this node, by status")
          .labelNames("status")
          .register(REGISTRY);

  public static final Counter COMPACTIONS =
      Counter.builder()
          .name("outboard_compactions_total")
          .help("Transcripts compacted: their older part replaced by a summary before a model call")
          .register(REGISTRY);

  public static final Counter HANDOFFS =
      Counter.builder()
          .name("outboard_handoffs_total")
          .help(
              "Sessions this node stopped because sharding handed them off (rebalance or shutdown)")
          .register(REGISTRY);

  public static final Counter SESSION_RECOVERIES =
      Counter.builder()
          .name("outboard_session_recoveries_total")
          .help(
              "Sessions that recovered on this node from the journal (restart, hand-off, crash, or"
                  + " after passivation)")
          .register(REGISTRY);

  public static final Histogram SESSION_RECOVERY_SECONDS =
      Histogram.builder()
          .name("outboard_session_recovery_seconds")
          .help(
              "Time from a session actor's start to the end of its recovery from snapshot and"
                  + " journal")
          .classicUpperBounds(LATENCY_BOUNDS)
          .register(REGISTRY);

  public static final Counter TOOL_CALLS =
      Counter.builder()
          .name("outboard_tool_calls_total")
          .help("Tool calls executed, by tool and outcome")
          .labelNames("tool", "outcome")
          .register(REGISTRY);

  public static final Histogram TOOL_CALL_SECONDS =
      Histogram.builder()
          .name("outboard_tool_call_seconds")
          .help("Time to execute one tool call, by tool")
          .labelNames("tool")
          .classicUpperBounds(LATENCY_BOUNDS)
          .register(REGISTRY);

  public static final Histogram MODEL_CALL_SECONDS =
      Histogram.builder()
          .name("outboard_model_call_seconds")
          .help("Time from a model call's start to its answer")
          .classicUpperBounds(LATENCY_BOUNDS)
          .register(REGISTRY);

  public static final Histogram TURN_SECONDS =
      Histogram.builder()
          .name("outboard_turn_seconds")
          .help(
              "Time from a turn's model call start to the turn's last tool result recorded (its"
                  + " answer, for a turn without tools)")
          .classicUpperBounds(LATENCY_BOUNDS)
          .register(REGISTRY);

  public static final Histogram JOURNAL_WRITE_SECONDS =
      Histogram.builder()
          .name("outboard_journal_write_seconds")
          .help("Time of one session journal write, from the persist to its callback")
          .classicUpperBounds(LATENCY_BOUNDS)
          .register(REGISTRY);

  /**
   * Kept by {@link LiveStates}: each live sandbox handle counts once, under its sandbox's state.
   */
  public static final Gauge SANDBOXES =
      Gauge.builder()
          .name("outboard_sandboxes")
          .help(
              "Sandboxes of the sessions live on this node, by state (provisioning, active,"
                  + " suspended, hibernated, replacing)")
          .labelNames("state")
          .register(REGISTRY);

  public static final Histogram ORG_WRITE_SECONDS =
      Histogram.builder()
          .name("outboard_org_write_seconds")
          .help(
              "Time of one org-file write, from its arrival at the org's writer to the"
                  + " acknowledgement after its commit")
          .classicUpperBounds(LATENCY_BOUNDS)
          .register(REGISTRY);

  public static final Histogram ORG_WRITE_BATCH =
      Histogram.builder()
          .name("outboard_org_write_batch_size")
          .help("Org-file writes committed together in one transaction")
          .classicUpperBounds(1, 2, 4, 8, 16, 32, 64, 128, 256, 500)
          .register(REGISTRY);

  /** Set by {@link ShardStats} every few seconds. */
  public static final Gauge SHARDS =
      Gauge.builder()
          .name("outboard_shards")
          .help("Shards hosted by this node, by entity type")
          .labelNames("type")
          .register(REGISTRY);

  /** Set by {@link ShardStats} every few seconds. */
  public static final Gauge ENTITIES =
      Gauge.builder()
          .name("outboard_entities")
          .help("Entities running on this node, by entity type")
          .labelNames("type")
          .register(REGISTRY);

  public static final Counter HTTP_REQUESTS =
      Counter.builder()
          .name("outboard_http_requests_total")
          .help("API requests, by status class")
          .labelNames("status")
          .register(REGISTRY);

  /** Seconds since {@code startNanos} (a {@link System#nanoTime()}). */
  public static double secondsSince(long startNanos) {
    return (System.nanoTime() - startNanos) / 1e9;
  }

  private static volatile boolean jvmRegistered;

  public static synchronized void registerJvmMetrics() {
    if (!jvmRegistered) {
      JvmMetrics.builder().register(REGISTRY);
      jvmRegistered = true;
    }
  }
}
