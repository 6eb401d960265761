package dev.outboard.vault;

import static org.assertj.core.api.Assertions.assertThat;

import dev.outboard.testing.InProcessNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * {@link VaultContract} on an embedded node (H2) started without a key: it keeps a dev key in its
 * data directory.
 */
class VaultEmbeddedTest extends VaultContract {
  private InProcessNode node;

  @Override
  synchronized InProcessNode node() {
    if (node == null) {
      try {
        node = InProcessNode.start("", Map.of("outboard.vault.key", ""));
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
    return node;
  }

  @AfterAll
  void stop() {
    if (node != null) node.close();
  }

  @Test
  void theEmbeddedNodeKeepsItsDevKeyInTheDataDirectory() {
    String dataDir = node().system().settings().config().getString("outboard.data-dir");
    assertThat(Files.isRegularFile(java.nio.file.Path.of(dataDir, VaultKey.DEV_KEY_FILE))).isTrue();
  }
}
