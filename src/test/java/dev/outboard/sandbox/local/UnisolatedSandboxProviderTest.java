package dev.outboard.sandbox.local;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.outboard.sandbox.shell.ShellSandboxProvider;
import dev.outboard.sandbox.shell.ShellSandboxProviderContractTest;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The unisolated (local-process) provider: the shell provider contract (inherited from {@link
 * ShellSandboxProviderContractTest}) holds as with bubblewrap, minus isolation.
 */
class UnisolatedSandboxProviderTest extends ShellSandboxProviderContractTest {
  @TempDir static Path tmp;
  static ExecutorService executor;
  static UnisolatedSandboxProvider provider;
  static Path root;

  @BeforeAll
  static void start() throws IOException {
    executor = Executors.newCachedThreadPool();
    root = tmp.resolve("sandboxes");
    provider = new UnisolatedSandboxProvider(root, executor);
    writeHostSecret(tmp);
  }

  @AfterAll
  static void stop() {
    if (provider != null) {
      provider.close();
    }
    executor.shutdownNow();
  }

  @Override
  protected ShellSandboxProvider provider() {
    return provider;
  }

  @Override
  protected Path root() {
    return root;
  }

  @Override
  protected Path tmp() {
    return tmp;
  }

  /** The workspace's real path: commands run on the host. */
  @Override
  protected String shellWorkspace(String id) {
    return workspace(id).toString();
  }

  @Override
  protected String keptDirectory(String id) {
    return workspace(id) + "/d";
  }

  /** Made by a command: it runs on the host, where the targets exist. */
  @Override
  protected void plantOutsideLinks(String id, Path secret) {
    exec(id, "ln -s " + secret + " link-secret && ln -s " + tmp + " link-dir");
  }

  @Override
  protected Runnable killer(String id) {
    ProcessHandle shell = shellOf(id);
    return () -> kill(shell);
  }

  /** Gone as after a failed exec: what was left in the shell's process group is killed too. */
  @Override
  protected void assertBackgroundKilled(long pid) {
    for (int i = 0; i < 100 && running(pid); i++) {
      sleep(50);
    }
    assertFalse(running(pid), "the background sleep outlived its sandbox");
  }

  @Test
  void warningSaysItIsNotIsolated() {
    assertTrue(UnisolatedSandboxProvider.WARNING.contains("NOT isolated"));
    assertTrue(
        UnisolatedSandboxProvider.WARNING.contains("never use this outside local development"));
    assertEquals("none", UnisolatedSandboxProvider.ISOLATION);
  }

  @Test
  void theWorkspaceIsTheWorkingDirectoryHomeAndWorkspaceVariable() {
    String id = sandbox();
    String ws = workspace(id).toString();
    assertEquals(
        ws + "\n" + ws + "\n" + ws + "\n",
        exec(id, "pwd; echo \"$WORKSPACE\"; echo \"$HOME\"").output());
    exec(id, "mkdir -p sub/dir && cd sub/dir");
    assertEquals("x\n", exec(id, "echo x > \"$WORKSPACE/top.txt\" && cat ../../top.txt").output());
    await(provider.destroy(id));
  }

  @Test
  void environmentHoldsNoneOfTheServicesVariables() {
    String id = sandbox();
    // Only what we set (PATH, HOME, LANG, WORKSPACE) and what bash itself adds (PWD, SHLVL, _).
    String keys = exec(id, "env | cut -d= -f1 | LC_ALL=C sort | tr '\\n' ' '").output();
    assertEquals(
        List.of("HOME", "LANG", "PATH", "PWD", "SHLVL", "WORKSPACE", "_"),
        Arrays.asList(keys.trim().split(" ")));
    assertEquals(
        "/usr/local/bin:/usr/bin:/bin C.UTF-8\n", exec(id, "echo \"$PATH $LANG\"").output());
    // The test JVM runs under surefire with OUTBOARD_TEST_MODE set; it must not leak through.
    assertEquals("[]\n", exec(id, "echo \"[$OUTBOARD_TEST_MODE$JAVA_HOME$USER]\"").output());
    await(provider.destroy(id));
  }

  /** The sandbox's long-lived shell: {@code $$} in a command's subshell is the shell's pid. */
  ProcessHandle shellOf(String id) {
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
}
