package dev.outboard.sandbox.local;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.outboard.sandbox.SandboxProvider;
import dev.outboard.sandbox.SandboxProvider.ExecResult;
import dev.outboard.sandbox.SandboxProvider.Limits;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The unisolated (local-process) provider: the SPI behaves as with bubblewrap, minus isolation. */
class UnisolatedSandboxProviderTest {
  static final Limits LIMITS =
      new Limits(512L << 20, 64, Duration.ofSeconds(20), 64 * 1024, Duration.ofSeconds(20));

  @TempDir static Path tmp;
  static ExecutorService executor;
  static UnisolatedSandboxProvider provider;
  static Path root;

  @BeforeAll
  static void start() throws IOException {
    executor = Executors.newCachedThreadPool();
    root = tmp.resolve("sandboxes");
    provider = new UnisolatedSandboxProvider(root, executor);
    Files.writeString(tmp.resolve("host-secret.txt"), "secret\n");
  }

  @AfterAll
  static void stop() {
    if (provider != null) {
      provider.close();
    }
    executor.shutdownNow();
  }

  static <T> T await(CompletionStage<T> stage) {
    return stage.toCompletableFuture().join();
  }

  static String sandbox() {
    return await(provider.create(LIMITS, null));
  }

  static ExecResult exec(String id, String command) {
    return await(provider.exec(id, null, command, Duration.ofSeconds(20)));
  }

  static Path workspace(String id) {
    return root.resolve(id).resolve("workspace").toAbsolutePath();
  }

  static Throwable failure(CompletionStage<?> stage) {
    CompletionException e = assertThrows(CompletionException.class, () -> stage.toCompletableFuture().join());
    return e.getCause();
  }

  @Test
  void warningSaysItIsNotIsolated() {
    assertTrue(UnisolatedSandboxProvider.WARNING.contains("NOT isolated"));
    assertTrue(UnisolatedSandboxProvider.WARNING.contains("never use this outside local development"));
    assertEquals("none", UnisolatedSandboxProvider.ISOLATION);
  }

  @Test
  void runsCommandsWithExitCodesAndPersistsCwdAndExports() {
    String id = sandbox();
    ExecResult hello = exec(id, "echo hello; echo oops >&2");
    assertEquals(0, hello.exitCode());
    assertEquals("hello\noops\n", hello.output());
    assertEquals(3, exec(id, "exit 3").exitCode());
    assertEquals(7, exec(id, "(exit 7)").exitCode());
    assertEquals("it's \"quoted\" \\ $HOME\n", exec(id, "printf '%s\\n' 'it'\\''s \"quoted\" \\ $HOME'").output());

    String ws = workspace(id).toString();
    assertEquals(ws + "\n" + ws + "\n" + ws + "\n", exec(id, "pwd; echo \"$WORKSPACE\"; echo \"$HOME\"").output());
    exec(id, "mkdir -p sub/dir && cd sub/dir && export GREETING='hi there'");
    assertEquals(ws + "/sub/dir hi there\n", exec(id, "echo \"$PWD $GREETING\"").output());
    assertEquals("x\n", exec(id, "echo x > \"$WORKSPACE/top.txt\" && cat ../../top.txt").output());
    await(provider.destroy(id));
    assertFalse(Files.exists(workspace(id)));
    assertTrue(failure(provider.exec(id, null, "true", null)) instanceof SandboxProvider.SandboxGoneException);
  }

  @Test
  void environmentHoldsNoneOfTheServicesVariables() {
    String id = sandbox();
    // Only what we set (PATH, HOME, LANG, WORKSPACE) and what bash itself adds (PWD, SHLVL, _).
    String keys = exec(id, "env | cut -d= -f1 | LC_ALL=C sort | tr '\\n' ' '").output();
    assertEquals(List.of("HOME", "LANG", "PATH", "PWD", "SHLVL", "WORKSPACE", "_"), Arrays.asList(keys.trim().split(" ")));
    assertEquals("/usr/local/bin:/usr/bin:/bin C.UTF-8\n", exec(id, "echo \"$PATH $LANG\"").output());
    // The test JVM runs under surefire with OUTBOARD_TEST_MODE set; it must not leak through.
    assertEquals("[]\n", exec(id, "echo \"[$OUTBOARD_TEST_MODE$JAVA_HOME$USER]\"").output());
    await(provider.destroy(id));
  }

  @Test
  void fileToolsStayInsideTheWorkspace() throws IOException {
    String id = sandbox();
    await(provider.write(id, "/workspace/notes/a.txt", "héllo\n"));
    assertEquals("héllo\n", exec(id, "cat notes/a.txt").output());
    exec(id, "echo from-shell > notes/b.txt");
    assertEquals("from-shell\n", await(provider.read(id, "notes/b.txt")));
    assertEquals("from-shell\n", await(provider.read(id, "/workspace/notes/b.txt")));
    var entries = await(provider.list(id, "/workspace/notes"));
    assertEquals(2, entries.size());
    assertEquals("/workspace/notes/a.txt", entries.get(0).path());

    Path secret = tmp.resolve("host-secret.txt");
    for (String bad : new String[] {"../host-secret.txt", "notes/../../x", "/etc/passwd", "/workspace/../etc/passwd",
        secret.toString(), workspace(id).resolve("notes/a.txt").toString()}) {
      Throwable t = failure(provider.read(id, bad));
      assertTrue(t instanceof IllegalArgumentException, bad + ": " + t);
      assertTrue(failure(provider.write(id, bad, "x")) instanceof IllegalArgumentException, bad);
      assertTrue(failure(provider.list(id, bad)) instanceof IllegalArgumentException, bad);
    }
    exec(id, "ln -s /etc/passwd link-etc && ln -s " + secret + " link-secret && ln -s " + tmp + " link-dir");
    for (String bad : new String[] {"link-secret", "link-etc", "link-dir/host-secret.txt"}) {
      Throwable t = failure(provider.read(id, bad));
      assertTrue(t instanceof IllegalArgumentException, bad + ": " + t);
      assertTrue(t.getMessage().contains("outside /workspace"), t.getMessage());
    }
    assertTrue(failure(provider.write(id, "link-secret", "overwritten")) instanceof IllegalArgumentException);
    assertTrue(failure(provider.write(id, "link-dir/new.txt", "x")) instanceof IllegalArgumentException);
    assertTrue(failure(provider.list(id, "link-dir")) instanceof IllegalArgumentException);
    assertEquals("secret\n", Files.readString(secret));
    assertFalse(Files.exists(tmp.resolve("new.txt")));
    await(provider.destroy(id));
  }

  @Test
  void executionIdRunsOnce() {
    String id = sandbox();
    ExecResult first = await(provider.exec(id, "call-1", "echo line >> log.txt; wc -l < log.txt", null));
    ExecResult again = await(provider.exec(id, "call-1", "echo line >> log.txt; wc -l < log.txt", null));
    assertEquals("1\n", first.output());
    assertEquals(first, again);
    assertEquals("1\n", exec(id, "wc -l < log.txt").output());
    await(provider.destroy(id));
  }

  @Test
  void timeoutKillsTheCommandNotTheShell() {
    String id = sandbox();
    exec(id, "mkdir -p d && cd d && export KEPT=yes");
    long start = System.nanoTime();
    ExecResult loop = await(provider.exec(id, null, "while true; do :; done", Duration.ofSeconds(1)));
    long took = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
    assertTrue(loop.timedOut());
    assertTrue(took < 5000, "took " + took);
    assertTrue(loop.output().contains("timed out"));
    ExecResult sleeper = await(provider.exec(id, null, "sleep 60 & sleep 60; echo never", Duration.ofMillis(500)));
    assertTrue(sleeper.timedOut());
    assertFalse(sleeper.output().contains("never"));
    assertEquals(workspace(id) + "/d yes\n", exec(id, "echo $PWD $KEPT").output());
    await(provider.destroy(id));
  }

  @Test
  void outputIsCappedWithAMarker() {
    String id = sandbox();
    ExecResult big = await(provider.exec(id, null, "yes | head -c 10000000; echo done >&2", Duration.ofSeconds(30)));
    assertTrue(big.truncated());
    assertEquals(0, big.exitCode());
    assertTrue(
        big.output().endsWith("[output truncated: " + (10_000_000L + 5 - 64 * 1024) + " bytes omitted]"),
        big.output().substring(big.output().length() - 80));
    assertEquals("ok\n", exec(id, "echo ok").output());
    await(provider.destroy(id));
  }

  @Test
  void suspendResumeFreezesBackgroundWork() {
    String id = sandbox();
    exec(id, "(for i in $(seq 1 1000); do echo $i >> counter.txt; sleep 0.01; done) > /dev/null 2>&1 &");
    sleep(100);
    await(provider.suspend(id));
    assertEquals(SandboxProvider.State.SUSPENDED, await(provider.state(id)));
    Path counter = workspace(id).resolve("counter.txt");
    sleep(100);
    long frozen = size(counter);
    sleep(300);
    assertEquals(frozen, size(counter));
    assertEquals("x\n", exec(id, "echo x").output()); // exec resumes transparently
    assertEquals(SandboxProvider.State.ACTIVE, await(provider.state(id)));
    sleep(300);
    assertTrue(size(counter) > frozen);
    await(provider.suspend(id));
    await(provider.resume(id));
    assertEquals(SandboxProvider.State.ACTIVE, await(provider.state(id)));
    await(provider.destroy(id));
    // destroy killed the background writer along with the shell
    assertFalse(Files.exists(counter));
    sleep(100);
    assertFalse(Files.exists(counter));
  }

  @Test
  void hibernateSnapshotRestoresTheWorkspace() {
    String id = sandbox();
    exec(id, "mkdir -p src && echo 'print(1)' > src/main.py && ln -s src/main.py link && export AFTER=no");
    await(provider.write(id, "notes.md", "# notes\n"));
    byte[] snapshot = await(provider.hibernate(id));
    assertEquals(SandboxProvider.State.HIBERNATED, await(provider.state(id)));
    assertEquals("# notes\n", exec(id, "cat notes.md").output()); // cold start on the kept workspace
    assertEquals("[]\n", exec(id, "echo \"[$AFTER]\"").output()); // a fresh shell
    assertEquals(SandboxProvider.State.ACTIVE, await(provider.state(id)));
    String restored = await(provider.create(LIMITS, snapshot));
    assertEquals("print(1)\nprint(1)\n# notes\n", exec(restored, "cat src/main.py link notes.md").output());
    assertEquals("print(1)\n", await(provider.read(restored, "/workspace/src/main.py")));
    assertFalse(Files.exists(workspace(restored).resolve(".state")));
    await(provider.destroy(id));
    await(provider.destroy(restored));
  }

  @Test
  void aBadSnapshotIsRefused() {
    Throwable t = failure(provider.create(LIMITS, "not a tar archive at all".getBytes()));
    assertTrue(t instanceof IllegalArgumentException, String.valueOf(t));
  }

  @Test
  void stateSaysGoneOnceTheShellIsKilled() {
    String id = sandbox();
    ProcessHandle shell = shellOf(id);
    assertEquals(SandboxProvider.State.ACTIVE, await(provider.state(id)));
    kill(shell);
    Throwable gone = awaitGone(id);
    assertTrue(gone.getMessage().contains("its shell exited"), gone.getMessage());
    assertTrue(failure(provider.exec(id, null, "true", null)) instanceof SandboxProvider.SandboxGoneException);
    await(provider.destroy(id));
  }

  @Test
  void stateKeepsSuspendedAndHibernatedSandboxesUntilTheirShellDies() {
    String suspended = sandbox();
    String hibernated = sandbox();
    ProcessHandle shell = shellOf(suspended);
    long orphan = Long.parseLong(exec(suspended, "sleep 60 > /dev/null 2>&1 & echo $!").output().strip());
    exec(hibernated, "echo kept > kept.txt");
    await(provider.suspend(suspended));
    await(provider.hibernate(hibernated));
    sleep(200);
    assertEquals(SandboxProvider.State.SUSPENDED, await(provider.state(suspended)));
    assertEquals(SandboxProvider.State.HIBERNATED, await(provider.state(hibernated)));
    kill(shell);
    assertTrue(awaitGone(suspended).getMessage().contains("its shell exited"));
    // Gone as after a failed exec: what was left in the shell's process group is killed too.
    for (int i = 0; i < 100 && running(orphan); i++) {
      sleep(50);
    }
    assertFalse(running(orphan), "the background sleep outlived its sandbox");
    assertEquals(SandboxProvider.State.HIBERNATED, await(provider.state(hibernated)));
    assertEquals("kept\n", exec(hibernated, "cat kept.txt").output());
    await(provider.destroy(suspended));
    await(provider.destroy(hibernated));
  }

  /** The sandbox's long-lived shell: {@code $$} in a command's subshell is the shell's pid. */
  static ProcessHandle shellOf(String id) {
    long pid = Long.parseLong(exec(id, "echo $$").output().strip());
    return ProcessHandle.of(pid).orElseThrow();
  }

  /** Whether process {@code pid} runs: it exists and is no zombie (pid 1 may reap them late). */
  static boolean running(long pid) {
    try {
      String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
      return stat.charAt(stat.lastIndexOf(')') + 2) != 'Z';
    } catch (IOException e) {
      return false;
    }
  }

  /** kill -9 of a shell and all below it. */
  static void kill(ProcessHandle shell) {
    shell.descendants().forEach(ProcessHandle::destroyForcibly);
    shell.destroyForcibly();
  }

  /** The failure of state() once it comes (processes die asynchronously). */
  static Throwable awaitGone(String id) {
    for (int i = 0; i < 100; i++) {
      CompletionStage<SandboxProvider.State> state = provider.state(id);
      if (state.toCompletableFuture().isCompletedExceptionally()) {
        Throwable t = failure(state);
        assertTrue(t instanceof SandboxProvider.SandboxGoneException, String.valueOf(t));
        return t;
      }
      sleep(50);
    }
    throw new AssertionError("sandbox " + id + " still says " + await(provider.state(id)) + " after its shell was killed");
  }

  static long size(Path file) {
    try {
      return Files.exists(file) ? Files.size(file) : 0;
    } catch (IOException e) {
      return 0;
    }
  }

  static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
