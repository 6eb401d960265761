package dev.outboard.sandbox.bwrap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.outboard.sandbox.SandboxProvider.ExecResult;
import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.sandbox.shell.ShellSandboxProvider;
import dev.outboard.sandbox.shell.ShellSandboxProviderContractTest;
import dev.outboard.testing.Sandboxes;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The bubblewrap provider against the real bwrap: the shell provider contract (inherited from
 * {@link ShellSandboxProviderContractTest}), and the limits and security properties of DESIGN.md
 * §7. Skipped (with a notice) where bwrap is missing, except under CI=true.
 */
class BwrapSandboxProviderTest extends ShellSandboxProviderContractTest {
  @TempDir static Path tmp;
  static ExecutorService executor;
  static BwrapSandboxProvider provider;
  static Path root;

  @BeforeAll
  static void start() throws IOException {
    executor = Executors.newCachedThreadPool();
    // bwrap runs as uid 65534 under root and must reach the root dir (JUnit's temp dir is 0700).
    Files.setPosixFilePermissions(
        tmp, java.nio.file.attribute.PosixFilePermissions.fromString("rwx--x--x"));
    root = tmp.resolve("sandboxes");
    provider = new BwrapSandboxProvider(root, executor);
    Sandboxes.requireBwrap(BwrapSandboxProviderTest.class);
    // A host file outside every workspace, holding a fake secret the sandbox must never see.
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

  @Override
  protected String shellWorkspace(String id) {
    return "/workspace";
  }

  @Override
  protected String keptDirectory(String id) {
    return "/tmp";
  }

  /** Planted on the host, where the targets exist (the sandbox cannot see them). */
  @Override
  protected void plantOutsideLinks(String id, Path secret) throws IOException {
    Files.createSymbolicLink(workspace(id).resolve("link-secret"), secret);
    Files.createSymbolicLink(workspace(id).resolve("link-dir"), tmp);
  }

  @Override
  protected Runnable killer(String id) {
    return () -> killProcesses(id);
  }

  /**
   * Restoring a snapshot needs no second thread of the provider's executor (it deadlocked on one).
   */
  @Test
  void restoresASnapshotOnASingleThreadedExecutor() throws Exception {
    ExecutorService one = Executors.newSingleThreadExecutor();
    try (BwrapSandboxProvider small = new BwrapSandboxProvider(tmp.resolve("single"), one)) {
      String id = await(small.create(LIMITS, null));
      await(small.write(id, "/workspace/kept.txt", "kept"));
      byte[] snapshot = await(small.hibernate(id));
      String restored =
          small
              .create(LIMITS, snapshot)
              .toCompletableFuture()
              .get(20, java.util.concurrent.TimeUnit.SECONDS);
      assertEquals("kept", await(small.read(restored, "/workspace/kept.txt")));
      Throwable bad =
          small
              .create(LIMITS, "not a tar archive".getBytes())
              .toCompletableFuture()
              .handle((v, e) -> e)
              .get(20, java.util.concurrent.TimeUnit.SECONDS);
      assertTrue(
          String.valueOf(bad).contains("the snapshot could not be restored"), String.valueOf(bad));
    } finally {
      one.shutdownNow();
    }
  }

  @Test
  void runsAsNobodyWithItsOwnHostname() {
    String id = sandbox();
    exec(id, "mkdir -p sub/dir && cd sub/dir && export GREETING='hi there'");
    assertEquals("uid=65534 gid=65534\n", exec(id, "echo uid=$(id -u) gid=$(id -g)").output());
    assertEquals("sandbox\n", exec(id, "hostname").output());
    await(provider.destroy(id));
  }

  @Test
  void environmentAndFilesystemHoldNoSecrets() throws IOException {
    String id = sandbox();
    assertEquals(
        "HOME=/workspace\nLANG=C.UTF-8\nPATH=/usr/local/bin:/usr/bin:/bin\n",
        exec(id, "env | grep -v -E '^(PWD|OLDPWD|SHLVL|_)=' | sort").output());
    StringBuilder needles = new StringBuilder(FAKE_SECRET).append('\n');
    for (Map.Entry<String, String> e : System.getenv().entrySet()) {
      if (e.getKey().matches("(?i).*(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL).*")
          && e.getValue().length() >= 8) {
        needles.append(e.getValue()).append('\n');
      }
    }
    await(provider.write(id, ".needles", needles.toString()));
    // Every process's environment, then every visible file outside /usr, /proc, /sys, /dev (and
    // the needles file itself), then files under /usr changed in the last day (a search of all of
    // /usr's gigabytes would take minutes; it is the host's read-only /usr, never ours).
    String script =
        "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n"
            + "' < $f; done | grep -c -F -f .needles; grep -r -l -s -F -f .needles"
            + " --exclude=.needles / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev"
            + " --exclude-dir=usr; find /usr -xdev -type f -mtime -1 -print0 2>/dev/null | xargs -0"
            + " -r grep -l -s -F -f .needles; test -e "
            + tmp.resolve("host-secret.txt")
            + " && echo VISIBLE; echo end";
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
        ExecResult r =
            exec(
                id,
                "timeout 3 bash -c 'echo hi > /dev/tcp/127.0.0.1/"
                    + p
                    + "' 2>/dev/null && echo CONNECTED || echo refused");
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
      left =
          tree.stream()
              .filter(ProcessHandle::isAlive)
              .map(p -> p.pid() + " " + p.info().commandLine().orElse("?"))
              .toList();
      if (left.isEmpty() && !bwrap.isAlive()) {
        break;
      }
    }
    assertEquals(List.of(), left, "destroy leaves no sandbox process");
    String fresh = sandbox();
    assertEquals("alive\n", exec(fresh, "echo alive").output());
    await(provider.destroy(fresh));
    try {
      assertEquals(
          0, new ProcessBuilder("true").start().waitFor(), "the JVM can still start processes");
    } catch (IOException | InterruptedException e) {
      throw new AssertionError(e);
    }
  }

  @Test
  void memoryAndCpuLimitsHold() {
    Limits tight =
        new Limits(256L << 20, 64, Duration.ofSeconds(1), 64 * 1024, Duration.ofSeconds(20));
    String id = await(provider.create(tight, null));
    ExecResult memory =
        await(
            provider.exec(
                id,
                null,
                "python3 -c 'x = bytearray(1 << 30)' 2>&1 | tail -1",
                Duration.ofSeconds(10)));
    assertTrue(memory.output().contains("MemoryError"), memory.output());
    long start = System.nanoTime();
    ExecResult cpu =
        await(provider.exec(id, null, "while true; do :; done", Duration.ofSeconds(15)));
    assertFalse(cpu.timedOut());
    assertEquals(128 + 24, cpu.exitCode()); // SIGXCPU from RLIMIT_CPU
    assertTrue(cpu.output().contains("CPU time limit of 1 s exceeded"), cpu.output());
    assertTrue(TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - start) < 5);
    assertEquals("ok\n", exec(id, "echo ok").output());
    await(provider.destroy(id));
  }

  /**
   * kill -9 of a sandbox's bwrap (found by the workspace path on its command line) and all below
   * it.
   */
  static void killProcesses(String id) {
    String workspace = root.resolve(id).resolve("workspace").toString();
    assertTrue(Sandboxes.killProcessesOf(workspace) > 0, "no process of sandbox " + id);
  }
}
