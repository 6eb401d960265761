package dev.outboard.vault;

import static org.assertj.core.api.Assertions.assertThat;

import com.typesafe.config.Config;
import dev.outboard.store.StoreSettings;
import dev.outboard.testing.ApiClient.Response;
import dev.outboard.testing.PostgresNode;
import java.util.Map;
import java.util.concurrent.CompletionException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/** A node on PostgreSQL without OUTBOARD_VAULT_KEY starts; its vault answers 503. */
class VaultDisabledTest {
  @RegisterExtension
  static final PostgresNode node = PostgresNode.create().with("outboard.vault.key", "");

  private static void assertDisabled(Response r) {
    assertThat(r.status()).as(r.toString()).isEqualTo(503);
    assertThat(r.json().path("error").path("code").asText()).isEqualTo("vault_disabled");
    assertThat(r.json().path("error").path("message").asText()).contains("OUTBOARD_VAULT_KEY");
  }

  @Test
  void theVaultRoutesAnswer503AndTheRestOfTheNodeWorks() {
    assertThat(node.admin().post("/v1/admin/orgs", Map.of("id", "acme")).status()).isEqualTo(201);
    assertDisabled(node.admin().put("/v1/admin/orgs/acme/secrets/t", Map.of("value", "v")));
    assertDisabled(node.admin().get("/v1/admin/orgs/acme/secrets"));
    assertDisabled(node.admin().delete("/v1/admin/orgs/acme/secrets/t"));
    assertThat(node.client(null).get("/v1/admin/orgs/acme/secrets").status()).isEqualTo(401);
    assertThat(node.admin().get("/v1/admin/orgs/acme/policy").status()).isEqualTo(200);
  }

  @Test
  void resolveFailsSayingWhichVariableToSet() throws Exception {
    Config config = node.system().settings().config();
    Vault vault = Vault.open(config, StoreSettings.from(config), node.database());
    assertThat(vault.enabled()).isFalse();
    try {
      vault.resolve("acme", "t").toCompletableFuture().join();
      throw new AssertionError("resolved without a key");
    } catch (CompletionException e) {
      assertThat(e.getCause())
          .isInstanceOf(Vault.Disabled.class)
          .hasMessageContaining("OUTBOARD_VAULT_KEY");
    }
  }
}
