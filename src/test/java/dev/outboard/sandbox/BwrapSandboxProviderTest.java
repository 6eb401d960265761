package dev.outboard.sandbox;

import dev.outboard.testing.Sandboxes;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.outboard.sandbox.SandboxProvider.ExecResult;
import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.sandbox.bwrap.BwrapSandboxProvider;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The bubblewrap provider against the real bwrap: commands, persistence, limits and the security
 * properties of DESIGN.md §7. Skipped (with a notice) where bwrap is missing, except under CI=true.
 */
class BwrapSandboxProviderTest {
  static final Limits LIMITS =
      new Limits(512L << 20, 64, Duration.ofSeconds(20), 64 * 1024, Duration.ofSeconds(20));
  static final String FAKE_SECRET = "sk-outboard-fake-secret-7f3a9c2e41";

  @TempDir static Path tmp;
  static ExecutorService executor;
  static BwrapSandboxProvider provider;
  static Path root;

  @BeforeAll
  static void start() throws IOException {
    executor = Executors.newCachedThreadPool();
    // bwrap runs as uid 65534 under root and must reach the root dir (JUnit's temp dir is 0700).
    Files.setPosixFilePermissions(tmp, java.nio.file.attribute.PosixFilePermissions.fromString("rwx--x--x"));
    root = tmp.resolve("sandboxes");
    provider = new BwrapSandboxProvider(root, executor);
    Sandboxes.requireBwrap(BwrapSandboxProviderTest.class);
    // A host file outside every workspace, holding a fake secret the sandbox must never see.
    Files.writeString(tmp.resolve("host-secret.txt"), "OUTBOARD_API_KEY=" + FAKE_SECRET + "\n");
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

  static Throwable failure(CompletionStage<?> stage) {
    CompletionException e = assertThrows(CompletionException.class, () -> stage.toCompletableFuture().join());
    return e.getCause();
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

    exec(id, "mkdir -p sub/dir && cd sub/dir && export GREETING='hi there'");
    assertEquals("/workspace/sub/dir hi there\n", exec(id, "echo \"$PWD $GREETING\"").output());
    assertEquals("uid=65534 gid=65534\n", exec(id, "echo uid=$(id -u) gid=$(id -g)").output());
    assertEquals("sandbox\n", exec(id, "hostname").output());
    await(provider.destroy(id));
    assertTrue(failure(provider.exec(id, null, "true", null)) instanceof SandboxProvider.SandboxGoneException);
  }

  @Test
  void commandsBehaveAsInATerminalDespiteTheForkedAheadSubshell() {
    String id = sandbox();
    // A command that stops itself is killed at its timeout, and the sandbox goes on.
    ExecResult stopped = await(provider.exec(id, null, "kill -STOP $BASHPID; echo continued", Duration.ofSeconds(1)));
    assertTrue(stopped.timedOut(), stopped.toString());
    assertEquals("after\n", exec(id, "echo after").output());
    // Stdin is empty, and the command line is not visible to the command as input.
    assertEquals("0\n", exec(id, "wc -c").output());
    // Unchanged state is not re-sourced, but a change after an unchanged one still persists.
    exec(id, "true");
    exec(id, "export LATER=yes; cd /tmp");
    assertEquals("/tmp yes\n", exec(id, "echo $PWD $LATER").output());
    await(provider.destroy(id));
  }

  @Test
  void theShellLoopSurvivesWhatACommandDoesToItsOwnShell() {
    String id = sandbox();
    // Variables the loop itself uses, or that would change how it runs, are not carried over.
    exec(id, "export __ob_ec=5 IFS=0123456789; declare -rx __ob_pid=1");
    ExecResult after = exec(id, "true");
    assertEquals(0, after.exitCode());
    assertEquals("ok\n", exec(id, "echo ok").output());
    // noclobber in a command does not stop its state from being saved.
    exec(id, "mkdir -p d && set -C && cd d && export NOCLOBBER_SEEN=yes");
    assertEquals("/workspace/d yes\n", exec(id, "echo $PWD $NOCLOBBER_SEEN").output());
    // A working directory deleted and made anew is entered again, though the state is unchanged.
    exec(id, "cd /workspace && mkdir -p build && cd build");
    exec(id, "cd .. && rm -rf build && mkdir build && cd build && echo made > Makefile.txt");
    assertEquals("made\n", exec(id, "cat Makefile.txt").output());
    await(provider.destroy(id));
  }

  @Test
  void aTimeoutWhileTheCommandLineIsStillBeingReadNeverRunsItsRest() {
    String id = sandbox();
    // bash reads the line a byte at a time: 1 MB takes far longer than the 100 ms timeout, so the
    // subshell is killed mid-line; the rest of the line must not run as a command of its own.
    String payload = "x".repeat(1 << 20);
    ExecResult cut = await(provider.exec(id, null,
        "echo \"" + payload + " ; echo FRAGMENT-RAN > /workspace/pwned # \" > /dev/null", Duration.ofMillis(100)));
    assertTrue(cut.timedOut(), cut.output().length() > 200 ? cut.output().substring(0, 200) : cut.output());
    assertEquals("no\n", exec(id, "test -e /workspace/pwned && echo yes || echo no").output());
    await(provider.destroy(id));
  }

  @Test
  void aCommandLongerThanThePipeBufferResumesASuspendedSandbox() {
    String id = sandbox();
    exec(id, "true");
    await(provider.suspend(id));
    String big = "y".repeat(200_000);
    ExecResult r = await(provider.exec(id, null, "s='" + big + "'; echo ${#s}", Duration.ofSeconds(20)));
    assertEquals("200000\n", r.output());
    await(provider.destroy(id));
  }

  @Test
  void aSuspendRightAfterACommandNeverLosesTheNextOne() {
    // The next subshell is forked before the end marker, so a suspend that follows a command at
    // once always freezes it inside the group, and SIGCONT always reaches it.
    String id = sandbox();
    for (int i = 0; i < 200; i++) {
      await(provider.suspend(id));
      ExecResult r = await(provider.exec(id, null, "echo " + i, Duration.ofSeconds(10)));
      assertEquals(i + "\n", r.output(), "resume " + i);
      assertTrue(r.firstOutput() != null && !r.firstOutput().isNegative(), "first output measured");
    }
    await(provider.destroy(id));
  }

  @Test
  void fileToolsStayInsideTheWorkspace() throws IOException {
    String id = sandbox();
    await(provider.write(id, "/workspace/notes/a.txt", "héllo\n"));
    assertEquals("héllo\n", exec(id, "cat notes/a.txt").output());
    exec(id, "echo from-shell > notes/b.txt");
    assertEquals("from-shell\n", await(provider.read(id, "notes/b.txt")));
    var entries = await(provider.list(id, "/workspace/notes"));
    assertEquals(2, entries.size());
    assertEquals("/workspace/notes/a.txt", entries.get(0).path());
    assertEquals("edited", exec(id, "printf edited > notes/a.txt; cat notes/a.txt").output());

    for (String bad : new String[] {"../host-secret.txt", "notes/../../x", "/etc/passwd", "/workspace/../etc/passwd"}) {
      Throwable t = failure(provider.read(id, bad));
      assertTrue(t instanceof IllegalArgumentException, bad + ": " + t);
      assertTrue(failure(provider.write(id, bad, "x")) instanceof IllegalArgumentException, bad);
    }
    // A symlink made inside the sandbox (or planted on the host) pointing outside is refused.
    Path secret = tmp.resolve("host-secret.txt");
    exec(id, "ln -s /etc/passwd link-etc");
    Path workspace = root.resolve(id).resolve("workspace");
    Files.createSymbolicLink(workspace.resolve("link-secret"), secret);
    Files.createSymbolicLink(workspace.resolve("link-dir"), tmp);
    for (String bad : new String[] {"link-secret", "link-etc", "link-dir/host-secret.txt"}) {
      Throwable t = failure(provider.read(id, bad));
      assertTrue(t instanceof IllegalArgumentException, bad + ": " + t);
      assertTrue(t.getMessage().contains("outside /workspace"), t.getMessage());
    }
    assertTrue(failure(provider.write(id, "link-secret", "overwritten")) instanceof IllegalArgumentException);
    assertTrue(failure(provider.write(id, "link-dir/new.txt", "x")) instanceof IllegalArgumentException);
    assertTrue(Files.readString(secret).contains(FAKE_SECRET));
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
  void timeoutKillsTheCommandAndTheSandboxStaysUsable() {
    String id = sandbox();
    exec(id, "cd /tmp && export KEPT=yes");
    long start = System.nanoTime();
    ExecResult loop = await(provider.exec(id, null, "while true; do :; done", Duration.ofSeconds(1)));
    long took = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
    assertTrue(loop.timedOut());
    assertTrue(took < 5000, "took " + took);
    assertTrue(loop.output().contains("timed out"));
    ExecResult sleeper = await(provider.exec(id, null, "sleep 60 & sleep 60; echo never", Duration.ofMillis(500)));
    assertTrue(sleeper.timedOut());
    assertFalse(sleeper.output().contains("never"));
    assertEquals("/tmp yes\n", exec(id, "echo $PWD $KEPT").output());
    await(provider.destroy(id));
  }

  @Test
  void outputIsCappedWithAMarker() {
    String id = sandbox();
    ExecResult big = await(provider.exec(id, null, "yes | head -c 1000000000; echo done >&2", Duration.ofSeconds(30)));
    assertTrue(big.truncated());
    assertEquals(0, big.exitCode());
    assertTrue(big.output().endsWith("[output truncated: " + (1_000_000_000L + 5 - 64 * 1024) + " bytes omitted]"), big.output().substring(big.output().length() - 80));
    assertEquals("ok\n", exec(id, "echo ok").output());
    await(provider.destroy(id));
  }

  @Test
  void suspendResumeKeepsBackgroundWork() {
    String id = sandbox();
    exec(id, "(for i in $(seq 1 1000); do echo $i >> counter.txt; sleep 0.01; done) > /dev/null 2>&1 &");
    await(provider.suspend(id));
    assertEquals(SandboxProvider.State.SUSPENDED, await(provider.state(id)));
    // The background writer is frozen: the file does not grow while suspended.
    Path counter = root.resolve(id).resolve("workspace").resolve("counter.txt");
    sleep(100);
    long frozen = size(counter);
    sleep(300);
    assertEquals(frozen, size(counter));
    // exec resumes transparently
    assertEquals("x\n", exec(id, "echo x").output());
    assertEquals(SandboxProvider.State.ACTIVE, await(provider.state(id)));
    sleep(300);
    assertTrue(size(counter) > frozen);
    await(provider.destroy(id));
  }

  @Test
  void hibernateSnapshotRestoresTheWorkspace() {
    String id = sandbox();
    exec(id, "mkdir -p src && echo 'print(1)' > src/main.py && ln -s src/main.py link");
    await(provider.write(id, "notes.md", "# notes\n"));
    byte[] snapshot = await(provider.hibernate(id));
    assertEquals(SandboxProvider.State.HIBERNATED, await(provider.state(id)));
    assertEquals("# notes\n", exec(id, "cat notes.md").output()); // cold start on the kept workspace
    String restored = await(provider.create(LIMITS, snapshot));
    assertEquals("print(1)\nprint(1)\n# notes\n", exec(restored, "cat src/main.py link notes.md").output());
    assertEquals("print(1)\n", await(provider.read(restored, "src/main.py")));
    await(provider.destroy(id));
    await(provider.destroy(restored));
  }

  @Test
  void environmentAndFilesystemHoldNoSecrets() throws IOException {
    String id = sandbox();
    assertEquals(
        "HOME=/workspace\nLANG=C.UTF-8\nPATH=/usr/local/bin:/usr/bin:/bin\n",
        exec(id, "env | grep -v -E '^(PWD|OLDPWD|SHLVL|_)=' | sort").output());
    StringBuilder needles = new StringBuilder(FAKE_SECRET).append('\n');
    for (Map.Entry<String, String> e : System.getenv().entrySet()) {
      if (e.getKey().matches("(?i).*(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL).*") && e.getValue().length() >= 8) {
        needles.append(e.getValue()).append('\n');
      }
    }
    await(provider.write(id, ".needles", needles.toString()));
    // Every process's environment, then every visible file outside /usr, /proc, /sys, /dev (and
    // the needles file itself), then files under /usr changed in the last day (a search of all of
    // /usr's gigabytes would take minutes; it is the host's read-only /usr, never ours).
    String script =
        "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done | grep -c -F -f .needles; "
            + "grep -r -l -s -F -f .needles --exclude=.needles / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev --exclude-dir=usr; "
            + "find /usr -xdev -type f -mtime -1 -print0 2>/dev/null | xargs -0 -r grep -l -s -F -f .needles; "
            + "test -e " + tmp.resolve("host-secret.txt") + " && echo VISIBLE; echo end";
    ExecResult search = await(provider.exec(id, null, script, Duration.ofSeconds(30)));
    assertEquals("0\nend\n", search.output());
    await(provider.destroy(id));
  }

  @Test
  void noNetworkToTheHost() throws IOException {
    String id = sandbox();
    try (ServerSocket server = new ServerSocket(0, 50, java.net.InetAddress.getLoopbackAddress())) {
      int port = server.getLocalPort();
      for (int p : new int[] {port, 5432}) {
        ExecResult r = exec(id, "timeout 3 bash -c 'echo hi > /dev/tcp/127.0.0.1/" + p + "' 2>/dev/null && echo CONNECTED || echo refused");
        assertEquals("refused\n", r.output(), "port " + p);
      }
      ExecResult interfaces = exec(id, "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '");
      assertEquals("lo\n", interfaces.output());
    }
    await(provider.destroy(id));
  }

  @Test
  void forkBombIsContained() {
    String id = sandbox();
    ExecResult bomb = await(provider.exec(id, null, ":(){ :|:& };:", Duration.ofSeconds(3)));
    assertNotEquals(null, bomb);
    sleep(1500);
    // RLIMIT_NPROC holds: the sandbox's process tree (below its bwrap, found by the workspace
    // path on its command line) never gets much past the limit, however long the bomb runs.
    String workspace = root.resolve(id).resolve("workspace").toString();
    ProcessHandle bwrap =
        ProcessHandle.allProcesses()
            .filter(p -> p.info().commandLine().map(c -> c.contains(workspace)).orElse(false))
            .findFirst()
            .orElseThrow();
    long inSandbox = bwrap.descendants().count();
    assertTrue(inSandbox <= LIMITS.maxProcesses() + 2, "processes in the sandbox: " + inSandbox);
    assertTrue(inSandbox >= LIMITS.maxProcesses() / 2, "the bomb did not run? " + inSandbox);
    List<ProcessHandle> tree = bwrap.descendants().toList();
    await(provider.destroy(id));
    List<String> left = List.of();
    for (int i = 0; i < 30; i++) {
      sleep(100);
      left = tree.stream().filter(ProcessHandle::isAlive).map(p -> p.pid() + " " + p.info().commandLine().orElse("?")).toList();
      if (left.isEmpty() && !bwrap.isAlive()) {
        break;
      }
    }
    assertEquals(List.of(), left, "destroy leaves no sandbox process");
    String fresh = sandbox();
    assertEquals("alive\n", exec(fresh, "echo alive").output());
    await(provider.destroy(fresh));
    try {
      assertEquals(0, new ProcessBuilder("true").start().waitFor(), "the JVM can still start processes");
    } catch (IOException | InterruptedException e) {
      throw new AssertionError(e);
    }
  }

  @Test
  void memoryAndCpuLimitsHold() {
    Limits tight = new Limits(256L << 20, 64, Duration.ofSeconds(1), 64 * 1024, Duration.ofSeconds(20));
    String id = await(provider.create(tight, null));
    ExecResult memory =
        await(provider.exec(id, null, "python3 -c 'x = bytearray(1 << 30)' 2>&1 | tail -1", Duration.ofSeconds(10)));
    assertTrue(memory.output().contains("MemoryError"), memory.output());
    long start = System.nanoTime();
    ExecResult cpu = await(provider.exec(id, null, "while true; do :; done", Duration.ofSeconds(15)));
    assertFalse(cpu.timedOut());
    assertEquals(128 + 24, cpu.exitCode()); // SIGXCPU from RLIMIT_CPU
    assertTrue(cpu.output().contains("CPU time limit of 1 s exceeded"), cpu.output());
    assertTrue(TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - start) < 5);
    assertEquals("ok\n", exec(id, "echo ok").output());
    await(provider.destroy(id));
  }

  @Test
  void stateSaysGoneOnceTheSandboxProcessesAreKilled() {
    String id = sandbox();
    assertEquals("x\n", exec(id, "echo x").output());
    assertEquals(SandboxProvider.State.ACTIVE, await(provider.state(id)));
    killProcesses(id);
    Throwable gone = awaitGone(id);
    assertTrue(gone.getMessage().contains("its shell exited"), gone.getMessage());
    assertTrue(failure(provider.exec(id, null, "true", null)) instanceof SandboxProvider.SandboxGoneException);
    await(provider.destroy(id));
  }

  @Test
  void stateKeepsSuspendedAndHibernatedSandboxesUntilTheirProcessesDie() {
    String suspended = sandbox();
    String hibernated = sandbox();
    exec(suspended, "sleep 60 > /dev/null 2>&1 &");
    exec(hibernated, "echo kept > kept.txt");
    await(provider.suspend(suspended));
    await(provider.hibernate(hibernated));
    sleep(200);
    assertEquals(SandboxProvider.State.SUSPENDED, await(provider.state(suspended)));
    assertEquals(SandboxProvider.State.HIBERNATED, await(provider.state(hibernated)));
    killProcesses(suspended);
    assertTrue(awaitGone(suspended).getMessage().contains("its shell exited"));
    assertEquals(SandboxProvider.State.HIBERNATED, await(provider.state(hibernated)));
    assertEquals("kept\n", exec(hibernated, "cat kept.txt").output());
    await(provider.destroy(suspended));
    await(provider.destroy(hibernated));
  }

  /** kill -9 of a sandbox's bwrap (found by the workspace path on its command line) and all below it. */
  static void killProcesses(String id) {
    String workspace = root.resolve(id).resolve("workspace").toString();
    assertTrue(Sandboxes.killProcessesOf(workspace) > 0, "no process of sandbox " + id);
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
    throw new AssertionError("sandbox " + id + " still says " + await(provider.state(id)) + " after its processes were killed");
  }

  static long size(Path p) {
    try {
      return Files.exists(p) ? Files.size(p) : 0;
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
