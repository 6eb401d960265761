package dev.outboard.sandbox.shell;

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
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * What every {@link ShellSandboxProvider} must do, whatever its isolation: the shell protocol
 * (commands, exit codes, cwd and exports that persist, execution ids, timeouts, the output cap),
 * suspend and resume, hibernation and snapshots, state() and gone sandboxes, and the file tools'
 * path checks. Each provider's test extends this one; it starts and stops its provider per class
 * (static {@code @BeforeAll}/{@code @AfterAll}) and keeps the tests only it needs.
 */
public abstract class ShellSandboxProviderContractTest {
  protected static final Limits LIMITS =
      new Limits(512L << 20, 64, Duration.ofSeconds(20), 64 * 1024, Duration.ofSeconds(20));
  protected static final String FAKE_SECRET = "sk-outboard-fake-secret-7f3a9c2e41";

  /** What {@link #writeHostSecret} puts in {@code host-secret.txt}. */
  protected static final String HOST_SECRET = "OUTBOARD_API_KEY=" + FAKE_SECRET + "\n";

  /** The provider under test, started by the subclass. */
  protected abstract ShellSandboxProvider provider();

  /**
   * The provider's root directory on the host: a sandbox's workspace is {@code
   * <root>/<id>/workspace}.
   */
  protected abstract Path root();

  /** A host directory outside every workspace, holding {@code host-secret.txt}. */
  protected abstract Path tmp();

  /** The workspace as a command in the sandbox names it (its absolute path there). */
  protected abstract String shellWorkspace(String id);

  /** A directory a command may cd to; the timeout test checks that the shell stays there. */
  protected abstract String keptDirectory(String id);

  /**
   * Makes {@code link-secret} (to {@code secret}) and {@code link-dir} (to {@link #tmp()}) in the
   * workspace: symlinks pointing outside it, made the way that matters for the provider.
   */
  protected abstract void plantOutsideLinks(String id, Path secret) throws IOException;

  /** Prepared while the sandbox is active: kill -9 of the sandbox's shell and all below it. */
  protected abstract Runnable killer(String id);

  /**
   * After the shell of a suspended sandbox was killed: checks on its background process {@code
   * pid}.
   */
  protected void assertBackgroundKilled(long pid) {}

  /** Writes {@code host-secret.txt} into {@code dir}. */
  protected static void writeHostSecret(Path dir) throws IOException {
    Files.writeString(dir.resolve("host-secret.txt"), HOST_SECRET);
  }

  protected static <T> T await(CompletionStage<T> stage) {
    return stage.toCompletableFuture().join();
  }

  protected String sandbox() {
    return await(provider().create(LIMITS, null));
  }

  protected ExecResult exec(String id, String command) {
    return await(provider().exec(id, null, command, Duration.ofSeconds(20)));
  }

  /** The sandbox's workspace on the host. */
  protected Path workspace(String id) {
    return root().resolve(id).resolve("workspace").toAbsolutePath();
  }

  protected static Throwable failure(CompletionStage<?> stage) {
    CompletionException e =
        assertThrows(CompletionException.class, () -> stage.toCompletableFuture().join());
    return e.getCause();
  }

  @Test
  void runsCommandsWithExitCodesAndPersistsCwdAndExports() {
    ShellSandboxProvider provider = provider();
    String id = sandbox();
    String ws = shellWorkspace(id);
    ExecResult hello = exec(id, "echo hello; echo oops >&2");
    assertEquals(0, hello.exitCode());
    assertEquals("hello\noops\n", hello.output());
    assertEquals(3, exec(id, "exit 3").exitCode());
    assertEquals(7, exec(id, "(exit 7)").exitCode());
    assertEquals(
        "it's \"quoted\" \\ $HOME\n",
        exec(id, "printf '%s\\n' 'it'\\''s \"quoted\" \\ $HOME'").output());

    exec(id, "mkdir -p sub/dir && cd sub/dir && export GREETING='hi there'");
    assertEquals(ws + "/sub/dir hi there\n", exec(id, "echo \"$PWD $GREETING\"").output());
    assertEquals("x\n", exec(id, "echo x > \"" + ws + "/top.txt\" && cat ../../top.txt").output());
    await(provider.destroy(id));
    assertFalse(Files.exists(workspace(id)));
    assertTrue(
        failure(provider.exec(id, null, "true", null))
            instanceof SandboxProvider.SandboxGoneException);
  }

  @Test
  void commandsBehaveAsInATerminalDespiteTheForkedAheadSubshell() {
    ShellSandboxProvider provider = provider();
    String id = sandbox();
    // A command that stops itself is killed at its timeout, and the sandbox goes on.
    ExecResult stopped =
        await(
            provider.exec(id, null, "kill -STOP $BASHPID; echo continued", Duration.ofSeconds(1)));
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
    String ws = shellWorkspace(id);
    // Variables the loop itself uses, or that would change how it runs, are not carried over.
    exec(id, "export __ob_ec=5 IFS=0123456789; declare -rx __ob_pid=1");
    ExecResult after = exec(id, "true");
    assertEquals(0, after.exitCode());
    assertEquals("ok\n", exec(id, "echo ok").output());
    // noclobber in a command does not stop its state from being saved.
    exec(id, "mkdir -p d && set -C && cd d && export NOCLOBBER_SEEN=yes");
    assertEquals(ws + "/d yes\n", exec(id, "echo $PWD $NOCLOBBER_SEEN").output());
    // A working directory deleted and made anew is entered again, though the state is unchanged.
    exec(id, "cd " + ws + " && mkdir -p build && cd build");
    exec(id, "cd .. && rm -rf build && mkdir build && cd build && echo made > Makefile.txt");
    assertEquals("made\n", exec(id, "cat Makefile.txt").output());
    await(provider().destroy(id));
  }

  @Test
  void aTimeoutWhileTheCommandLineIsStillBeingReadNeverRunsItsRest() {
    ShellSandboxProvider provider = provider();
    String id = sandbox();
    String pwned = shellWorkspace(id) + "/pwned";
    // bash reads the line a byte at a time: 1 MB takes far longer than the 100 ms timeout, so the
    // subshell is killed mid-line; the rest of the line must not run as a command of its own.
    String payload = "x".repeat(1 << 20);
    ExecResult cut =
        await(
            provider.exec(
                id,
                null,
                "echo \"" + payload + " ; echo FRAGMENT-RAN > " + pwned + " # \" > /dev/null",
                Duration.ofMillis(100)));
    assertTrue(
        cut.timedOut(),
        cut.output().length() > 200 ? cut.output().substring(0, 200) : cut.output());
    assertEquals("no\n", exec(id, "test -e " + pwned + " && echo yes || echo no").output());
    await(provider.destroy(id));
  }

  @Test
  void aCommandLongerThanThePipeBufferResumesASuspendedSandbox() {
    ShellSandboxProvider provider = provider();
    String id = sandbox();
    exec(id, "true");
    await(provider.suspend(id));
    String big = "y".repeat(200_000);
    ExecResult r =
        await(provider.exec(id, null, "s='" + big + "'; echo ${#s}", Duration.ofSeconds(20)));
    assertEquals("200000\n", r.output());
    await(provider.destroy(id));
  }

  @Test
  void aSuspendRightAfterACommandNeverLosesTheNextOne() {
    ShellSandboxProvider provider = provider();
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
    ShellSandboxProvider provider = provider();
    String id = sandbox();
    await(provider.write(id, "/workspace/notes/a.txt", "héllo\n"));
    assertEquals("héllo\n", exec(id, "cat notes/a.txt").output());
    exec(id, "echo from-shell > notes/b.txt");
    assertEquals("from-shell\n", await(provider.read(id, "notes/b.txt")));
    assertEquals("from-shell\n", await(provider.read(id, "/workspace/notes/b.txt")));
    var entries = await(provider.list(id, "/workspace/notes"));
    assertEquals(2, entries.size());
    assertEquals("/workspace/notes/a.txt", entries.get(0).path());
    assertEquals("edited", exec(id, "printf edited > notes/a.txt; cat notes/a.txt").output());

    Path secret = tmp().resolve("host-secret.txt");
    for (String bad :
        new String[] {
          "../host-secret.txt",
          "notes/../../x",
          "/etc/passwd",
          "/workspace/../etc/passwd",
          secret.toString(),
          workspace(id).resolve("notes/a.txt").toString()
        }) {
      Throwable t = failure(provider.read(id, bad));
      assertTrue(t instanceof IllegalArgumentException, bad + ": " + t);
      assertTrue(failure(provider.write(id, bad, "x")) instanceof IllegalArgumentException, bad);
      assertTrue(failure(provider.list(id, bad)) instanceof IllegalArgumentException, bad);
    }
    // A symlink pointing outside, made inside the sandbox (or as the provider needs), is refused.
    exec(id, "ln -s /etc/passwd link-etc");
    plantOutsideLinks(id, secret);
    for (String bad : new String[] {"link-secret", "link-etc", "link-dir/host-secret.txt"}) {
      Throwable t = failure(provider.read(id, bad));
      assertTrue(t instanceof IllegalArgumentException, bad + ": " + t);
      assertTrue(t.getMessage().contains("outside /workspace"), t.getMessage());
    }
    assertTrue(
        failure(provider.write(id, "link-secret", "overwritten"))
            instanceof IllegalArgumentException);
    assertTrue(
        failure(provider.write(id, "link-dir/new.txt", "x")) instanceof IllegalArgumentException);
    assertTrue(failure(provider.list(id, "link-dir")) instanceof IllegalArgumentException);
    assertEquals(HOST_SECRET, Files.readString(secret));
    assertTrue(Files.readString(secret).contains(FAKE_SECRET));
    assertFalse(Files.exists(tmp().resolve("new.txt")));
    await(provider.destroy(id));
  }

  @Test
  void executionIdRunsOnce() {
    ShellSandboxProvider provider = provider();
    String id = sandbox();
    ExecResult first =
        await(provider.exec(id, "call-1", "echo line >> log.txt; wc -l < log.txt", null));
    ExecResult again =
        await(provider.exec(id, "call-1", "echo line >> log.txt; wc -l < log.txt", null));
    assertEquals("1\n", first.output());
    assertEquals(first, again);
    assertEquals("1\n", exec(id, "wc -l < log.txt").output());
    await(provider.destroy(id));
  }

  @Test
  void timeoutKillsTheCommandAndTheSandboxStaysUsable() {
    ShellSandboxProvider provider = provider();
    String id = sandbox();
    String kept = keptDirectory(id);
    exec(id, "mkdir -p d && cd " + kept + " && export KEPT=yes");
    long start = System.nanoTime();
    ExecResult loop =
        await(provider.exec(id, null, "while true; do :; done", Duration.ofSeconds(1)));
    long took = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
    assertTrue(loop.timedOut());
    assertTrue(took < 5000, "took " + took);
    assertTrue(loop.output().contains("timed out"));
    ExecResult sleeper =
        await(provider.exec(id, null, "sleep 60 & sleep 60; echo never", Duration.ofMillis(500)));
    assertTrue(sleeper.timedOut());
    assertFalse(sleeper.output().contains("never"));
    assertEquals(kept + " yes\n", exec(id, "echo $PWD $KEPT").output());
    await(provider.destroy(id));
  }

  @Test
  void outputIsCappedWithAMarker() {
    ShellSandboxProvider provider = provider();
    String id = sandbox();
    ExecResult big =
        await(
            provider.exec(
                id, null, "yes | head -c 1000000000; echo done >&2", Duration.ofSeconds(30)));
    assertTrue(big.truncated());
    assertEquals(0, big.exitCode());
    assertTrue(
        big.output()
            .endsWith("[output truncated: " + (1_000_000_000L + 5 - 64 * 1024) + " bytes omitted]"),
        big.output().substring(big.output().length() - 80));
    assertEquals("ok\n", exec(id, "echo ok").output());
    await(provider.destroy(id));
  }

  @Test
  void suspendResumeFreezesBackgroundWork() {
    ShellSandboxProvider provider = provider();
    String id = sandbox();
    exec(
        id,
        "(for i in $(seq 1 1000); do echo $i >> counter.txt; sleep 0.01; done) > /dev/null 2>&1 &");
    sleep(100);
    await(provider.suspend(id));
    assertEquals(SandboxProvider.State.SUSPENDED, await(provider.state(id)));
    // The background writer is frozen: the file does not grow while suspended.
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
    ShellSandboxProvider provider = provider();
    String id = sandbox();
    exec(
        id,
        "mkdir -p src && echo 'print(1)' > src/main.py && ln -s src/main.py link && export"
            + " AFTER=no");
    await(provider.write(id, "notes.md", "# notes\n"));
    byte[] snapshot = await(provider.hibernate(id));
    assertEquals(SandboxProvider.State.HIBERNATED, await(provider.state(id)));
    assertEquals(
        "# notes\n", exec(id, "cat notes.md").output()); // cold start on the kept workspace
    assertEquals("[]\n", exec(id, "echo \"[$AFTER]\"").output()); // a fresh shell
    assertEquals(SandboxProvider.State.ACTIVE, await(provider.state(id)));
    String restored = await(provider.create(LIMITS, snapshot));
    assertEquals(
        "print(1)\nprint(1)\n# notes\n", exec(restored, "cat src/main.py link notes.md").output());
    assertEquals("print(1)\n", await(provider.read(restored, "src/main.py")));
    assertEquals("print(1)\n", await(provider.read(restored, "/workspace/src/main.py")));
    assertFalse(Files.exists(workspace(restored).resolve(".state")));
    await(provider.destroy(id));
    await(provider.destroy(restored));
  }

  @Test
  void aBadSnapshotIsRefused() {
    Throwable t = failure(provider().create(LIMITS, "not a tar archive at all".getBytes()));
    assertTrue(t instanceof IllegalArgumentException, String.valueOf(t));
  }

  @Test
  void stateSaysGoneOnceTheSandboxProcessesAreKilled() {
    ShellSandboxProvider provider = provider();
    String id = sandbox();
    assertEquals("x\n", exec(id, "echo x").output());
    Runnable kill = killer(id);
    assertEquals(SandboxProvider.State.ACTIVE, await(provider.state(id)));
    kill.run();
    Throwable gone = awaitGone(id);
    assertTrue(gone.getMessage().contains("its shell exited"), gone.getMessage());
    assertTrue(
        failure(provider.exec(id, null, "true", null))
            instanceof SandboxProvider.SandboxGoneException);
    await(provider.destroy(id));
  }

  @Test
  void stateKeepsSuspendedAndHibernatedSandboxesUntilTheirProcessesDie() {
    ShellSandboxProvider provider = provider();
    String suspended = sandbox();
    String hibernated = sandbox();
    Runnable kill = killer(suspended);
    long background =
        Long.parseLong(exec(suspended, "sleep 60 > /dev/null 2>&1 & echo $!").output().strip());
    exec(hibernated, "echo kept > kept.txt");
    await(provider.suspend(suspended));
    await(provider.hibernate(hibernated));
    sleep(200);
    assertEquals(SandboxProvider.State.SUSPENDED, await(provider.state(suspended)));
    assertEquals(SandboxProvider.State.HIBERNATED, await(provider.state(hibernated)));
    kill.run();
    assertTrue(awaitGone(suspended).getMessage().contains("its shell exited"));
    assertBackgroundKilled(background);
    assertEquals(SandboxProvider.State.HIBERNATED, await(provider.state(hibernated)));
    assertEquals("kept\n", exec(hibernated, "cat kept.txt").output());
    await(provider.destroy(suspended));
    await(provider.destroy(hibernated));
  }

  /** The failure of state() once it comes (processes die asynchronously). */
  protected Throwable awaitGone(String id) {
    for (int i = 0; i < 100; i++) {
      CompletionStage<SandboxProvider.State> state = provider().state(id);
      if (state.toCompletableFuture().isCompletedExceptionally()) {
        Throwable t = failure(state);
        assertTrue(t instanceof SandboxProvider.SandboxGoneException, String.valueOf(t));
        return t;
      }
      sleep(50);
    }
    throw new AssertionError(
        "sandbox "
            + id
            + " still says "
            + await(provider().state(id))
            + " after its processes were killed");
  }

  protected static long size(Path file) {
    try {
      return Files.exists(file) ? Files.size(file) : 0;
    } catch (IOException e) {
      return 0;
    }
  }

  protected static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
