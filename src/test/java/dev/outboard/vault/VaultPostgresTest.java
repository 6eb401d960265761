package dev.outboard.vault;

import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.PostgresNode;
import org.junit.jupiter.api.extension.RegisterExtension;

/** {@link VaultContract} on a node on a fresh PostgreSQL database, keyed by configuration. */
class VaultPostgresTest extends VaultContract {
  @RegisterExtension
  static final PostgresNode node =
      PostgresNode.create().with("outboard.vault.key", VaultKeyTest.randomKey());

  @Override
  InProcessNode node() {
    return node.node();
  }
}
