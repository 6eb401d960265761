package dev.outboard.sandbox;

import static org.assertj.core.api.Assertions.assertThat;

import dev.outboard.sandbox.SandboxProvider.ExecResult;
import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.sandbox.SandboxProvider.SandboxGoneException;
import dev.outboard.testing.EchoSandboxes;
import dev.outboard.tools.ToolCall;
import dev.outboard.vfs.VirtualPath;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A session's calls to its sandbox have bounds (issue 13, defects 3 and 4): a call that could not
 * start by its deadline is answered "did not run" and is never started later (so a caller that gave
 * up never has it run behind its back); at most {@code max-pending-calls} wait; a host that stops
 * answering is asked again with the same execution id until the deadline, and then the answer says
 * the command may or may not have run.
 */
class SandboxCallDeadlinesTest {
  static final Duration WAIT = Duration.ofSeconds(10);
  static final Limits LIMITS =
      new Limits(1L << 30, 64, Duration.ofMinutes(1), 1 << 16, Duration.ofSeconds(30));
  static ActorTestKit testKit;

  @BeforeAll
  static void start() {
    testKit = ActorTestKit.create();
  }

  @AfterAll
  static void stop() {
    testKit.shutdownTestKit();
  }

  static SandboxSettings settings(Duration startTimeout, int maxPending) {
    return new SandboxSettings(
        LIMITS,
        Duration.ofMinutes(5),
        Duration.ofMinutes(10),
        Duration.ZERO,
        startTimeout,
        Duration.ofSeconds(5),
        Duration.ofMillis(50),
        maxPending);
  }

  @Test
  void aCallThatCouldNotStartByItsDeadlineIsAnsweredAndNeverRunLater() throws Exception {
    Fake fake = new Fake();
    fake.creating = new CompletableFuture<>(); // provisioning hangs
    ActorRef<SandboxHandle.Command> handle = spawn(fake, settings(Duration.ofMillis(300), 16));
    TestProbe<SandboxHandle.Result> first = testKit.createTestProbe();
    TestProbe<SandboxHandle.Result> second = testKit.createTestProbe();
    long startBy = System.nanoTime() + Duration.ofMillis(300).toNanos();
    handle.tell(new SandboxHandle.Run("toolu_1", bash("echo 1"), 1000, first.ref(), startBy));
    handle.tell(new SandboxHandle.Run("toolu_2", bash("echo 2"), 1000, second.ref(), startBy));
    Thread.sleep(500);
    fake.creating.complete("sb-1"); // the sandbox comes, after both deadlines
    assertThat(first.receiveMessage(WAIT).content())
        .startsWith("did not run: the sandbox was not ready for it within");
    assertThat(second.receiveMessage(WAIT).content()).startsWith("did not run:");
    // A later call runs; the two that were given up never do.
    TestProbe<SandboxHandle.Result> third = testKit.createTestProbe();
    handle.tell(
        new SandboxHandle.Run(
            "toolu_3", bash("echo 3"), 1000, third.ref(), System.nanoTime() + WAIT.toNanos()));
    assertThat(third.receiveMessage(WAIT).content()).isEqualTo("3");
    assertThat(fake.executions).containsExactly("toolu_3");
  }

  @Test
  void callsBeyondTheBoundAreAnsweredAtOnce() {
    Fake fake = new Fake();
    fake.creating = new CompletableFuture<>();
    ActorRef<SandboxHandle.Command> handle = spawn(fake, settings(Duration.ofMinutes(1), 2));
    TestProbe<SandboxHandle.Result> replies = testKit.createTestProbe();
    long startBy = System.nanoTime() + Duration.ofMinutes(1).toNanos();
    for (int i = 1; i <= 3; i++) {
      handle.tell(
          new SandboxHandle.Run("toolu_" + i, bash("echo " + i), 1000, replies.ref(), startBy));
    }
    SandboxHandle.Result refused = replies.receiveMessage(WAIT);
    assertThat(refused.isError()).isTrue();
    assertThat(refused.content()).startsWith("did not run: 2 calls are already waiting");
    fake.creating.complete("sb-1");
    assertThat(
            List.of(replies.receiveMessage(WAIT).content(), replies.receiveMessage(WAIT).content()))
        .containsExactly("1", "2");
    assertThat(fake.executions).containsExactly("toolu_1", "toolu_2");
  }

  @Test
  void aHostThatStopsAnsweringIsAskedAgainWithTheSameExecutionId() {
    Fake fake = new Fake();
    fake.unreachableFor.set(3);
    ActorRef<SandboxHandle.Command> handle = spawn(fake, settings(Duration.ofSeconds(5), 16));
    TestProbe<SandboxHandle.Result> reply = testKit.createTestProbe();
    handle.tell(
        new SandboxHandle.Run(
            "toolu_1", bash("echo ok"), 1000, reply.ref(), System.nanoTime() + WAIT.toNanos()));
    SandboxHandle.Result r = reply.receiveMessage(WAIT);
    assertThat(r.isError()).as(r.content()).isFalse();
    assertThat(r.content()).isEqualTo("ok");
    assertThat(fake.executions).containsExactly("toolu_1", "toolu_1", "toolu_1", "toolu_1");
  }

  @Test
  void aHostThatDoesNotComeBackBeforeTheDeadlineGivesAnHonestInterruptedAnswer() {
    Fake fake = new Fake();
    fake.unreachableFor.set(Integer.MAX_VALUE);
    ActorRef<SandboxHandle.Command> handle = spawn(fake, settings(Duration.ofMillis(400), 16));
    TestProbe<SandboxHandle.Result> reply = testKit.createTestProbe();
    handle.tell(
        new SandboxHandle.Run(
            "toolu_1",
            bash("echo ok"),
            1000,
            reply.ref(),
            System.nanoTime() + Duration.ofMillis(400).toNanos()));
    SandboxHandle.Result r = reply.receiveMessage(WAIT);
    assertThat(r.isError()).isTrue();
    assertThat(r.content())
        .startsWith("interrupted: the sandbox could not be reached")
        .endsWith("the command may or may not have run");
    assertThat(fake.executions.size()).isGreaterThan(1);
  }

  @Test
  void aSandboxThatCannotBeStartedWhileItsHostRestartsIsStartedOnceItIsBack() {
    Fake fake = new Fake();
    fake.failCreates.set(3);
    ActorRef<SandboxHandle.Command> handle = spawn(fake, settings(Duration.ofSeconds(5), 16));
    TestProbe<SandboxHandle.Result> reply = testKit.createTestProbe();
    handle.tell(
        new SandboxHandle.Run(
            "toolu_1", bash("echo ok"), 1000, reply.ref(), System.nanoTime() + WAIT.toNanos()));
    SandboxHandle.Result r = reply.receiveMessage(WAIT);
    assertThat(r.isError()).as(r.content()).isFalse();
    assertThat(r.content()).isEqualTo("ok");
    assertThat(fake.creates.get()).isEqualTo(4);
    assertThat(fake.executions).containsExactly("toolu_1");
  }

  private static ActorRef<SandboxHandle.Command> spawn(Fake fake, SandboxSettings settings) {
    TestProbe<SandboxHandle.Report> reports = testKit.createTestProbe();
    return testKit.spawn(SandboxHandle.create(fake, settings, reports.ref(), null, null));
  }

  private static ToolCall bash(String command) {
    return new ToolCall.Bash(VirtualPath.parse("/workspace"), command, null);
  }

  /** One sandbox, "sb-1", whose creation and reachability the test controls; commands echo. */
  private static final class Fake extends EchoSandboxes {
    volatile CompletableFuture<String> creating = CompletableFuture.completedFuture("sb-1");
    final AtomicInteger unreachableFor = new AtomicInteger();
    final AtomicInteger failCreates = new AtomicInteger();
    final AtomicInteger creates = new AtomicInteger();
    final Map<String, ExecResult> ran = new ConcurrentHashMap<>();

    @Override
    public CompletionStage<String> create(Limits limits, byte[] snapshot) {
      creates.incrementAndGet();
      if (failCreates.getAndDecrement() > 0) {
        return CompletableFuture.failedFuture(
            new IllegalStateException("the sandbox host cannot be reached (ConnectException)"));
      }
      return creating;
    }

    @Override
    public CompletionStage<ExecResult> exec(
        String id, String executionId, String command, Duration timeout) {
      executions.add(executionId);
      if (unreachableFor.getAndDecrement() > 0) {
        return CompletableFuture.failedFuture(
            new SandboxGoneException(id, "the sandbox host cannot be reached", false, true));
      }
      return done(
          ran.computeIfAbsent(
              executionId,
              k ->
                  new ExecResult(
                      0,
                      command.replace("echo ", ""),
                      false,
                      false,
                      Duration.ZERO,
                      Duration.ZERO)));
    }
  }
}
