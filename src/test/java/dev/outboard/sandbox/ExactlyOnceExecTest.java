package dev.outboard.sandbox;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.outboard.sandbox.SandboxProvider.ExecResult;
import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.sandbox.bwrap.BwrapSandboxProvider;
import dev.outboard.testing.Sandboxes;
import dev.outboard.tools.ToolCatalog;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Exactly-once commands across the death of the provider that ran them (the service crashed, or the
 * sandbox host restarted): its sandboxes die, their workspaces stay on disk, and a new provider
 * over the same directory no longer knows the sandbox id. The session's handle asks again with the
 * call's execution id; the salvaged workspace's execution records decide: a command that never
 * reached the shell runs now, one that ran answers its own result without running again, and one
 * that was cut off answers "interrupted".
 */
class ExactlyOnceExecTest {
  static final Duration WAIT = Duration.ofSeconds(30);
  static final ObjectMapper JSON = new ObjectMapper();
  static final Limits LIMITS =
      new Limits(512L << 20, 128, Duration.ofMinutes(1), 256 * 1024, Duration.ofSeconds(30));
  static final SandboxSettings SETTINGS =
      new SandboxSettings(LIMITS, Duration.ofMinutes(5), Duration.ofMinutes(10));
  static ActorTestKit testKit;
  static ExecutorService io;
  Path root;

  @BeforeAll
  static void start() {
    testKit = ActorTestKit.create();
    io = Executors.newCachedThreadPool();
  }

  @AfterAll
  static void stop() {
    if (testKit != null) testKit.shutdownTestKit();
    if (io != null) io.shutdownNow();
  }

  @BeforeEach
  void root() throws Exception {
    Sandboxes.requireBwrap(ExactlyOnceExecTest.class);
    root = Files.createTempDirectory("exactly-once-");
    // The sandbox's unprivileged user must be able to reach its workspace below the root.
    Files.setPosixFilePermissions(root, PosixFilePermissions.fromString("rwx--x--x"));
  }

  @Test
  void aCommandStartedInTheJournalButNeverSentRunsOnTheSalvagedWorkspace() throws Exception {
    String id;
    try (BwrapSandboxProvider first = new BwrapSandboxProvider(root.resolve("sandboxes"), io)) {
      id = join(first.create(LIMITS, null));
      ExecResult before =
          join(first.exec(id, "toolu_before", "echo one >> /workspace/lines.txt", null));
      assertThat(before.exitCode()).isZero();
      // The service dies here, after the session recorded "toolu_2" as started, before it reached
      // the sandbox.
    }
    try (BwrapSandboxProvider second = new BwrapSandboxProvider(root.resolve("sandboxes"), io)) {
      ActorRef<SandboxHandle.Command> handle = handle(second, id);
      SandboxHandle.Result r =
          bash(handle, "toolu_2", "echo two >> /workspace/lines.txt; echo ran");
      assertThat(r.isError()).as(r.content()).isFalse();
      assertThat(r.content()).contains("ran").doesNotContain("interrupted");
      assertThat(bash(handle, "toolu_3", "cat /workspace/lines.txt").content())
          .contains("one\ntwo\n");
    }
  }

  @Test
  void aCommandThatRanBeforeTheCrashAnswersItsOwnResultAndDoesNotRunAgain() throws Exception {
    String id;
    ExecResult ran;
    try (BwrapSandboxProvider first = new BwrapSandboxProvider(root.resolve("sandboxes"), io)) {
      id = join(first.create(LIMITS, null));
      ran =
          join(
              first.exec(
                  id,
                  "toolu_1",
                  "echo once >> /workspace/lines.txt; echo out-$RANDOM; exit 3",
                  null));
      assertThat(ran.exitCode()).isEqualTo(3);
      // The service dies after the command ended, before the session recorded its result.
    }
    try (BwrapSandboxProvider second = new BwrapSandboxProvider(root.resolve("sandboxes"), io)) {
      ActorRef<SandboxHandle.Command> handle = handle(second, id);
      SandboxHandle.Result again =
          bash(handle, "toolu_1", "echo once >> /workspace/lines.txt; echo out-$RANDOM; exit 3");
      assertThat(again.content()).contains(ran.output().strip()).contains("[exit code 3]");
      assertThat(bash(handle, "toolu_2", "grep -c once /workspace/lines.txt").content())
          .startsWith("1");
      // The records are not the agent's files.
      SandboxHandle.Result ls = run(handle, "toolu_3", "ls", Map.of("path", "/workspace"));
      assertThat(ls.content()).isEqualTo("lines.txt");
    }
  }

  @Test
  void aCommandCutOffByTheCrashIsReportedInterruptedAndNotRunAgain() throws Exception {
    String id;
    try (BwrapSandboxProvider first = new BwrapSandboxProvider(root.resolve("sandboxes"), io)) {
      id = join(first.create(LIMITS, null));
      CompletionStage<ExecResult> running =
          first.exec(
              id,
              "toolu_1",
              "echo started >> /workspace/lines.txt; sleep 5; echo finished >>"
                  + " /workspace/lines.txt",
              null);
      Path lines = root.resolve("sandboxes").resolve(id).resolve("workspace").resolve("lines.txt");
      long deadline = System.nanoTime() + WAIT.toNanos();
      while (!(Files.exists(lines) && Files.readString(lines).contains("started"))
          && System.nanoTime() < deadline) {
        Thread.sleep(20);
      }
      assertThat(running.toCompletableFuture().isDone()).isFalse();
    } // the provider dies mid-command
    try (BwrapSandboxProvider second = new BwrapSandboxProvider(root.resolve("sandboxes"), io)) {
      ActorRef<SandboxHandle.Command> handle = handle(second, id);
      SandboxHandle.Result r =
          bash(
              handle,
              "toolu_1",
              "echo started >> /workspace/lines.txt; sleep 5; echo finished >>"
                  + " /workspace/lines.txt");
      assertThat(r.isError()).isTrue();
      assertThat(r.content())
          .startsWith(SandboxHandle.LOST)
          .endsWith("its workspace recovered as the lost sandbox left it");
      assertThat(bash(handle, "toolu_2", "cat /workspace/lines.txt").content())
          .isEqualTo("started\n");
    }
  }

  private ActorRef<SandboxHandle.Command> handle(SandboxProvider provider, String knownId) {
    TestProbe<SandboxHandle.Report> reports = testKit.createTestProbe();
    return testKit.spawn(
        SandboxHandle.create(provider, SETTINGS, reports.ref(), knownId, "active"));
  }

  private static SandboxHandle.Result bash(
      ActorRef<SandboxHandle.Command> handle, String callId, String command) {
    return run(handle, callId, "bash", Map.of("command", command));
  }

  private static SandboxHandle.Result run(
      ActorRef<SandboxHandle.Command> handle,
      String callId,
      String tool,
      Map<String, Object> input) {
    TestProbe<SandboxHandle.Result> reply = testKit.createTestProbe();
    handle.tell(
        new SandboxHandle.Run(
            callId,
            ToolCatalog.parse(tool, JSON.valueToTree(input)),
            100_000,
            reply.ref(),
            System.nanoTime() + WAIT.toNanos()));
    return reply.receiveMessage(WAIT);
  }

  private static <T> T join(CompletionStage<T> stage) {
    return stage.toCompletableFuture().join();
  }
}
