package dev.outboard.sandbox.bwrap;

import static org.assertj.core.api.Assertions.assertThat;

import dev.outboard.sandbox.SandboxHandle;
import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.sandbox.SandboxSettings;
import dev.outboard.testing.UnitTestConfig;
import dev.outboard.tools.ToolCall;
import dev.outboard.vfs.VirtualPath;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Without bubblewrap a workspace call answers how to install it, and the handle keeps serving. */
class SandboxHandleWithoutBwrapTest {
  static final ActorTestKit kit =
      ActorTestKit.create("SandboxHandleWithoutBwrapTest", UnitTestConfig.local());
  static final SandboxSettings SETTINGS =
      new SandboxSettings(
          new Limits(1 << 28, 64, Duration.ofSeconds(10), 1024, Duration.ofSeconds(10)),
          Duration.ofSeconds(5),
          Duration.ofSeconds(10));

  @AfterAll
  static void stop() {
    kit.shutdownTestKit();
  }

  @Test
  void aWorkspaceCallWithoutBwrapSaysWhichPackageToInstall(@TempDir Path root) {
    try (var provider = new BwrapSandboxProvider(root, Runnable::run, Optional.empty())) {
      TestProbe<SandboxHandle.Report> session = kit.createTestProbe();
      TestProbe<SandboxHandle.Result> replies = kit.createTestProbe();
      ActorRef<SandboxHandle.Command> handle =
          kit.spawn(SandboxHandle.create(provider, SETTINGS, session.ref(), null, null));
      ToolCall bash = new ToolCall.Bash(VirtualPath.parse("/workspace"), "ls", null);
      for (int i = 0; i < 2; i++) {
        handle.tell(new SandboxHandle.Run("toolu_" + i, bash, 10_000, replies.ref()));
        assertThat(replies.receiveMessage())
            .isEqualTo(
                new SandboxHandle.Result(
                    "bubblewrap (bwrap) is not installed; install the package 'bubblewrap'", true));
        assertThat(session.receiveMessage().state()).isEqualTo("provisioning");
        assertThat(session.receiveMessage().state()).isEqualTo("none");
      }
    }
  }
}
