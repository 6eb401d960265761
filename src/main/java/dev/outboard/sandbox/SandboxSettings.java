package dev.outboard.sandbox;

import com.typesafe.config.Config;
import dev.outboard.sandbox.SandboxProvider.Limits;
import java.time.Duration;

/**
 * Limits, idle times and the health-check interval of sandboxes ({@code outboard.sandbox}); a zero
 * {@code healthCheckEvery} turns the checks off. A call waits at most {@code startTimeout} for its
 * sandbox before it starts; once started, its answer comes within its command's timeout plus {@code
 * answerMargin} ({@link #answerWithin}); a host that does not answer is asked again every {@code
 * retryEvery} until the call's start deadline; at most {@code maxPending} calls wait.
 */
public record SandboxSettings(
    Limits limits,
    Duration suspendAfter,
    Duration hibernateAfter,
    Duration healthCheckEvery,
    Duration startTimeout,
    Duration answerMargin,
    Duration retryEvery,
    int maxPending) {
  /** Without health checks. */
  public SandboxSettings(Limits limits, Duration suspendAfter, Duration hibernateAfter) {
    this(limits, suspendAfter, hibernateAfter, Duration.ZERO);
  }

  public SandboxSettings(
      Limits limits, Duration suspendAfter, Duration hibernateAfter, Duration healthCheckEvery) {
    this(
        limits,
        suspendAfter,
        hibernateAfter,
        healthCheckEvery,
        Duration.ofMinutes(2),
        Duration.ofSeconds(90),
        Duration.ofSeconds(2),
        16);
  }

  public static SandboxSettings from(Config config) {
    Config c = config.getConfig("outboard.sandbox");
    Limits limits =
        new Limits(
            c.getBytes("memory"),
            c.getInt("max-processes"),
            c.getDuration("cpu-time"),
            c.getBytes("max-output-bytes"),
            c.getDuration("command-timeout"));
    return new SandboxSettings(
        limits,
        c.getDuration("suspend-after"),
        c.getDuration("hibernate-after"),
        c.getDuration("health-check-interval"),
        c.getDuration("call-start-timeout"),
        c.getDuration("call-answer-margin"),
        c.getDuration("unreachable-retry-interval"),
        c.getInt("max-pending-calls"));
  }

  /** Whether idle sandboxes are checked ({@code healthCheckEvery} positive). */
  public boolean healthChecks() {
    return !healthCheckEvery.isZero() && !healthCheckEvery.isNegative();
  }

  /** How long a suspended sandbox stays frozen before it is hibernated (never negative). */
  public Duration hibernateAfterSuspended() {
    Duration rest = hibernateAfter.minus(suspendAfter);
    return rest.isNegative() ? Duration.ZERO : rest;
  }

  /**
   * How long a caller waits for the answer to a call whose command may run for {@code command}: the
   * start deadline, the command, and the margin (the host's answer, a kill's grace, a replacement).
   * The handle answers before that; a caller that still times out must say the command may have
   * run, and the handle never starts it afterwards.
   */
  public Duration answerWithin(Duration command) {
    return startTimeout.plus(command).plus(answerMargin);
  }
}
