package dev.outboard.sandbox;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.sandbox.bwrap.BwrapSandboxProvider;
import dev.outboard.testing.Sandboxes;
import dev.outboard.tools.ToolCatalog;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A sandbox that dies while its session is idle, with the real bubblewrap provider: the periodic
 * health check finds it gone and replaces it before any call arrives, keeping the files the lost
 * sandbox left on disk (written after any snapshot); and a command sent to a sandbox that is
 * already dead runs on the replacement instead of failing. Skipped (with a notice) where bwrap is
 * missing, except under CI=true.
 */
class SandboxHealthCheckTest {
  static final Duration WAIT = Duration.ofSeconds(30);
  static final ObjectMapper JSON = new ObjectMapper();
  static final Limits LIMITS =
      new Limits(
          512L * 1024 * 1024, 128, Duration.ofMinutes(1), 256 * 1024, Duration.ofSeconds(30));
  static ActorTestKit testKit;
  static ExecutorService io;
  static Path root;
  static BwrapSandboxProvider provider;

  @BeforeAll
  static void start() throws Exception {
    Sandboxes.requireBwrap(SandboxHealthCheckTest.class);
    root = Files.createTempDirectory("health-");
    io = Executors.newCachedThreadPool();
    provider = new BwrapSandboxProvider(root, io);
    testKit = ActorTestKit.create();
  }

  @AfterAll
  static void stop() {
    if (testKit != null) testKit.shutdownTestKit();
    if (provider != null) provider.close();
    if (io != null) io.shutdownNow();
  }

  @Test
  void anIdleSandboxWhoseProcessesDieIsReplacedByTheHealthCheckWithItsFiles() throws Exception {
    // Idle timers far away: nothing is suspended, hibernated or snapshotted during the test.
    SandboxSettings settings =
        new SandboxSettings(
            LIMITS, Duration.ofMinutes(5), Duration.ofMinutes(10), Duration.ofMillis(200));
    TestProbe<SandboxHandle.Report> reports = testKit.createTestProbe();
    ActorRef<SandboxHandle.Command> handle =
        testKit.spawn(SandboxHandle.create(provider, settings, reports.ref(), null, null));
    SandboxHandle.Result wrote =
        run(
            handle,
            "c1",
            "bash",
            Map.of("command", "echo kept > keep.txt && echo also >> keep.txt"));
    assertThat(wrote.isError()).as(wrote.content()).isFalse();
    String first = lastId(reports, "active");

    killProcessesOf(first);

    // No call is made: the health check alone notices and replaces the sandbox.
    List<SandboxHandle.Report> seen = new ArrayList<>();
    reports.fishForMessage(
        WAIT,
        r -> {
          seen.add(r);
          return r.replacedId() != null
              ? FishingOutcomes.complete()
              : FishingOutcomes.continueAndIgnore();
        });
    SandboxHandle.Report replaced = seen.get(seen.size() - 1);
    assertThat(seen)
        .extracting(SandboxHandle.Report::state)
        .containsSubsequence("replacing", "active");
    assertThat(replaced.replacedId()).isEqualTo(first);
    assertThat(replaced.sandboxId()).isNotEqualTo(first).startsWith("sbx-");

    // The files written after any snapshot came along; the old sandbox's directory is gone.
    SandboxHandle.Result read = run(handle, "c2", "read", Map.of("path", "/workspace/keep.txt"));
    assertThat(read.isError()).as(read.content()).isFalse();
    assertThat(read.content())
        .startsWith("[the sandbox was lost and replaced")
        .contains("1\tkept", "2\talso");
    awaitGone(root.resolve(first));
    handle.tell(SandboxHandle.Destroy.INSTANCE);
  }

  @Test
  void aCommandSentToASandboxThatIsAlreadyDeadRunsOnTheReplacement() throws Exception {
    SandboxSettings settings =
        new SandboxSettings(LIMITS, Duration.ofMinutes(5), Duration.ofMinutes(10));
    TestProbe<SandboxHandle.Report> reports = testKit.createTestProbe();
    ActorRef<SandboxHandle.Command> handle =
        testKit.spawn(SandboxHandle.create(provider, settings, reports.ref(), null, null));
    assertThat(
            run(handle, "c1", "write", Map.of("path", "/workspace/a.txt", "content", "a\n"))
                .isError())
        .isFalse();
    String first = lastId(reports, "active");
    killProcessesOf(first);
    long deadline = System.nanoTime() + WAIT.toNanos();
    while (stillAlive(first)) {
      assertThat(System.nanoTime())
          .as("the provider notices the dead sandbox")
          .isLessThan(deadline);
      Thread.sleep(20);
    }

    // The command never reached the dead sandbox, so it runs on the new one (with the old files).
    SandboxHandle.Result ran =
        run(handle, "c2", "bash", Map.of("command", "echo ran >> ran.txt; cat a.txt ran.txt"));
    assertThat(ran.isError()).as(ran.content()).isFalse();
    assertThat(ran.content())
        .isEqualTo(
            "[the sandbox was lost and replaced, its workspace recovered as the lost sandbox left"
                + " it]\n"
                + "a\n"
                + "ran\n");
    SandboxHandle.Report replaced =
        reports
            .fishForMessage(
                WAIT,
                r ->
                    r.replacedId() != null
                        ? FishingOutcomes.complete()
                        : FishingOutcomes.continueAndIgnore())
            .get(0);
    assertThat(replaced.replacedId()).isEqualTo(first);
    handle.tell(SandboxHandle.Destroy.INSTANCE);
  }

  @Test
  void aSandboxStillBeingCreatedWhenTheSessionEndsIsDestroyedOnceItExists() throws Exception {
    Path own = Files.createTempDirectory(root, "ended-");
    // bwrap runs as uid 65534 under root: every directory above the sandboxes must be searchable.
    Files.setPosixFilePermissions(
        root, java.nio.file.attribute.PosixFilePermissions.fromString("rwx--x--x"));
    try (BwrapSandboxProvider local = new BwrapSandboxProvider(own, io)) {
      SandboxSettings settings =
          new SandboxSettings(LIMITS, Duration.ofMinutes(5), Duration.ofMinutes(10));
      TestProbe<SandboxHandle.Report> reports = testKit.createTestProbe();
      ActorRef<SandboxHandle.Command> handle =
          testKit.spawn(SandboxHandle.create(local, settings, reports.ref(), null, null));
      TestProbe<SandboxHandle.Result> reply = testKit.createTestProbe();
      handle.tell(
          new SandboxHandle.Run(
              "c1",
              ToolCatalog.parse("bash", JSON.valueToTree(Map.of("command", "true"))),
              1000,
              reply.ref()));
      handle.tell(SandboxHandle.Destroy.INSTANCE); // while the sandbox is being created
      assertThat(reply.receiveMessage(WAIT).content()).contains("the session ended");
      assertThat(reports.receiveMessage(WAIT).state()).isEqualTo("provisioning");
      long deadline = System.nanoTime() + WAIT.toNanos();
      Thread.sleep(500); // the creation ends meanwhile
      while (hasSandboxDirectories(own) && System.nanoTime() < deadline) Thread.sleep(20);
      assertThat(hasSandboxDirectories(own)).as("a sandbox directory left behind").isFalse();
    }
  }

  private static boolean hasSandboxDirectories(Path dir) throws java.io.IOException {
    try (var entries = Files.list(dir)) {
      return entries.anyMatch(p -> p.getFileName().toString().startsWith("sbx-"));
    }
  }

  private static boolean stillAlive(String id) {
    try {
      provider.state(id).toCompletableFuture().join();
      return true;
    } catch (RuntimeException e) {
      return false;
    }
  }

  private static void killProcessesOf(String id) {
    assertThat(Sandboxes.killProcessesOf(id)).as("processes of sandbox " + id).isPositive();
  }

  private static String lastId(TestProbe<SandboxHandle.Report> reports, String state) {
    String[] id = new String[1];
    reports.fishForMessage(
        WAIT,
        r -> {
          id[0] = r.sandboxId();
          return r.state().equals(state)
              ? FishingOutcomes.complete()
              : FishingOutcomes.continueAndIgnore();
        });
    return id[0];
  }

  private static void awaitGone(Path dir) throws InterruptedException {
    long deadline = System.nanoTime() + WAIT.toNanos();
    while (Files.exists(dir) && System.nanoTime() < deadline) Thread.sleep(20);
    assertThat(dir).as("the replaced sandbox's directory").doesNotExist();
  }

  private static SandboxHandle.Result run(
      ActorRef<SandboxHandle.Command> handle,
      String callId,
      String tool,
      Map<String, Object> input) {
    TestProbe<SandboxHandle.Result> reply = testKit.createTestProbe();
    handle.tell(
        new SandboxHandle.Run(
            callId, ToolCatalog.parse(tool, JSON.valueToTree(input)), 100_000, reply.ref()));
    return reply.receiveMessage(WAIT);
  }
}
