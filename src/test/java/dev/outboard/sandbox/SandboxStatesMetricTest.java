package dev.outboard.sandbox;

import static org.assertj.core.api.Assertions.assertThat;

import dev.outboard.ops.Metrics;
import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.testing.EchoSandboxes;
import dev.outboard.testing.UnitTestConfig;
import dev.outboard.tools.ToolCall;
import dev.outboard.vfs.VirtualPath;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * {@code outboard_sandboxes{state}} follows a handle's sandbox: active while it runs, suspended
 * when frozen, hibernated when stopped, and out of the gauge when the handle stops (the session
 * ended, passivated or moved). Deltas: the gauge is the JVM's.
 */
class SandboxStatesMetricTest {
  static final ActorTestKit kit =
      ActorTestKit.create("SandboxStatesMetricTest", UnitTestConfig.local());
  static final SandboxSettings SETTINGS =
      new SandboxSettings(
          new Limits(1 << 28, 64, Duration.ofSeconds(10), 1024, Duration.ofSeconds(10)),
          Duration.ofSeconds(1),
          Duration.ofSeconds(2));
  static final List<String> STATES =
      List.of("provisioning", "active", "suspended", "hibernated", "replacing");

  @AfterAll
  static void stop() {
    kit.shutdownTestKit();
  }

  @Test
  void theGaugeFollowsTheSandboxThroughItsStatesAndLetsGoWhenTheHandleStops() {
    Map<String, Double> before = gauge();
    TestProbe<SandboxHandle.Report> session = kit.createTestProbe();
    TestProbe<SandboxHandle.Result> replies = kit.createTestProbe();
    ActorRef<SandboxHandle.Command> handle =
        kit.spawn(SandboxHandle.create(new EchoSandboxes(), SETTINGS, session.ref(), null, null));

    handle.tell(
        new SandboxHandle.Run(
            "toolu_1",
            new ToolCall.Bash(VirtualPath.parse("/workspace"), "echo hi", null),
            10_000,
            replies.ref()));
    assertThat(replies.receiveMessage().content()).isEqualTo("hi");
    assertThat(delta(before)).containsEntry("active", 1.0).containsEntry("provisioning", 0.0);

    awaitReport(session, "suspended");
    assertThat(delta(before)).containsEntry("active", 0.0).containsEntry("suspended", 1.0);
    awaitReport(session, "hibernated");
    assertThat(delta(before)).containsEntry("suspended", 0.0).containsEntry("hibernated", 1.0);

    // A hibernated sandbox of a handle that stops (its session passivated) is no longer this
    // node's.
    kit.stop(handle);
    awaitDelta(
        before,
        Map.of(
            "provisioning",
            0.0,
            "active",
            0.0,
            "suspended",
            0.0,
            "hibernated",
            0.0,
            "replacing",
            0.0));

    // A new handle for the recorded sandbox counts it again, in its recorded state; Destroy lets
    // go.
    ActorRef<SandboxHandle.Command> next =
        kit.spawn(
            SandboxHandle.create(
                new EchoSandboxes(), SETTINGS, session.ref(), "sb-1", "hibernated"));
    awaitDelta(
        before,
        Map.of(
            "provisioning",
            0.0,
            "active",
            0.0,
            "suspended",
            0.0,
            "hibernated",
            1.0,
            "replacing",
            0.0));
    next.tell(SandboxHandle.Destroy.INSTANCE);
    awaitDelta(
        before,
        Map.of(
            "provisioning",
            0.0,
            "active",
            0.0,
            "suspended",
            0.0,
            "hibernated",
            0.0,
            "replacing",
            0.0));
  }

  private static void awaitReport(TestProbe<SandboxHandle.Report> session, String state) {
    session.fishForMessage(
        Duration.ofSeconds(10),
        r ->
            r.state().equals(state)
                ? org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes.complete()
                : org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes.continueAndIgnore());
  }

  /**
   * The gauge is set on the handle's thread before it reports; wait until the test's read sees it.
   */
  private static void awaitDelta(Map<String, Double> before, Map<String, Double> expected) {
    long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
    while (!delta(before).equals(expected) && System.nanoTime() < deadline) pause();
    assertThat(delta(before)).isEqualTo(expected);
  }

  private static Map<String, Double> gauge() {
    Map<String, Double> m = new TreeMap<>();
    for (String s : STATES) m.put(s, Metrics.SANDBOXES.labelValues(s).get());
    return m;
  }

  private static Map<String, Double> delta(Map<String, Double> before) {
    Map<String, Double> m = new TreeMap<>();
    gauge().forEach((s, v) -> m.put(s, v - before.get(s)));
    return m;
  }

  private static void pause() {
    try {
      Thread.sleep(20);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AssertionError(e);
    }
  }
}
