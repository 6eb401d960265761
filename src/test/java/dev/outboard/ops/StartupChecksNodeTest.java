package dev.outboard.ops;

import static org.assertj.core.api.Assertions.assertThat;

import dev.outboard.testing.NodeProcess;
import dev.outboard.testing.Ports;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Nodes started as their own JVMs (as {@code serve} runs in production) say what they found at
 * start, and a node that cannot start says which variable to change and exits non-zero within
 * seconds instead of hanging. Embedded mode: no PostgreSQL needed.
 */
class StartupChecksNodeTest {
  /** Start-up plus shutdown of a node that fails, with room for a loaded machine. */
  static final Duration EXIT_WITHIN = Duration.ofSeconds(45);

  @TempDir Path tmp;

  @ParameterizedTest(name = "{0}")
  @ValueSource(
      strings = {
        "OUTBOARD_HTTP_PORT",
        "OUTBOARD_MANAGEMENT_PORT",
        "OUTBOARD_REMOTE_PORT",
        "OUTBOARD_SANDBOX_HOST_PORT"
      })
  void aBusyPortNamesItsVariableAndTheNodeExitsNonZero(String variable) throws Exception {
    Map<String, String> env = embeddedEnv();
    int busyPort = Integer.parseInt(env.get(variable));
    List<String> args =
        variable.equals("OUTBOARD_SANDBOX_HOST_PORT")
            ? List.of("serve", "--role", "sandbox-host")
            : List.of("serve");
    try (ServerSocket holder = new ServerSocket();
        NodeProcess node = new NodeProcess("busy-" + variable, env, args)) {
      holder.setReuseAddress(false);
      holder.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), busyPort));
      node.start();
      int exit = node.awaitExit(EXIT_WITHIN);
      String log = node.log();
      assertThat(exit).as("exit code\n" + node.logTails(60)).isNotZero();
      assertThat(log)
          .contains(
              "port "
                  + busyPort
                  + " ("
                  + variable
                  + ") is already in use on 127.0.0.1; set "
                  + variable
                  + " to a free port");
    }
  }

  @Test
  void anUnreachableDatabaseNamesTheVariablesAndTheNodeExitsWithoutPrintingThePassword()
      throws Exception {
    Map<String, String> env = embeddedEnv();
    int nothingListens = Ports.free();
    String password = "pw-never-printed-" + System.nanoTime();
    env.put("OUTBOARD_DB_URL", "jdbc:postgresql://127.0.0.1:" + nothingListens + "/test");
    env.put("OUTBOARD_DB_USER", "postgres");
    env.put("OUTBOARD_DB_PASSWORD", password);
    try (NodeProcess node = new NodeProcess("db-down", env)) {
      long started = System.nanoTime();
      node.start();
      int exit = node.awaitExit(EXIT_WITHIN);
      Duration took = Duration.ofNanos(System.nanoTime() - started);
      String log = node.log();
      assertThat(exit).as("exit code\n" + node.logTails(60)).isNotZero();
      assertThat(took).isLessThan(EXIT_WITHIN);
      assertThat(log)
          .contains(
              "start-up check: database: cannot connect to jdbc:postgresql://127.0.0.1:"
                  + nothingListens
                  + "/test")
          .contains("OUTBOARD_DB_URL")
          .contains("OUTBOARD_DB_USER")
          .contains("OUTBOARD_DB_PASSWORD")
          .contains("refused")
          .doesNotContain(password);
      assertThat(log).as("the node stops before listening").doesNotContain("API listening");
    }
  }

  @Test
  void aNormalNodeSaysWhatItFoundAtStart() throws Exception {
    Map<String, String> env = embeddedEnv();
    try (NodeProcess node = new NodeProcess("checks", env)) {
      node.start();
      node.awaitReady(Duration.ofSeconds(60));
      String log = node.log();
      assertThat(log).contains("start-up check: database: reachable (embedded H2 ");
      assertThat(log)
          .containsPattern(
              "start-up check: bwrap: (usable|NOT usable|bubblewrap \\(bwrap\\) is not installed)");
      assertThat(log)
          .contains(
              "start-up check: model providers: offered: scripted; not offered: anthropic (set"
                  + " ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL), openai (set OPENAI_API_KEY or"
                  + " OPENAI_BASE_URL); default: scripted");
      assertThat(log).contains("start-up check: scripted model: allowed (embedded mode)");
    }
  }

  /** An embedded node on free loopback ports, in its own data directory. */
  private Map<String, String> embeddedEnv() throws Exception {
    int[] ports = Ports.free(4);
    Path data = Files.createDirectories(tmp.resolve("data"));
    // Sandboxes live below the data dir; under root their unprivileged user must be able to
    // traverse it.
    Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rwx--x--x"));
    Files.setPosixFilePermissions(data, PosixFilePermissions.fromString("rwx--x--x"));
    Map<String, String> env = new HashMap<>();
    env.put("OUTBOARD_HTTP_PORT", Integer.toString(ports[0]));
    env.put("OUTBOARD_MANAGEMENT_PORT", Integer.toString(ports[1]));
    env.put("OUTBOARD_REMOTE_PORT", Integer.toString(ports[2]));
    env.put("OUTBOARD_SANDBOX_HOST_PORT", Integer.toString(ports[3]));
    env.put("OUTBOARD_SANDBOX_HOST_TOKEN", "startup-test-token-0123456789");
    env.put("OUTBOARD_DATA_DIR", data.toString());
    return env;
  }
}
