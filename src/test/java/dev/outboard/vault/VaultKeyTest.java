package dev.outboard.vault;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.outboard.ops.StartupChecks;
import dev.outboard.store.StoreSettings;
import dev.outboard.testing.InProcessNode;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.util.Base64;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The vault's key: where it comes from, how a bad one stops the node, and what it seals. */
class VaultKeyTest {
  private static final SecureRandom RANDOM = new SecureRandom();

  @TempDir Path tmp;

  static String randomKey() {
    byte[] bytes = new byte[32];
    RANDOM.nextBytes(bytes);
    return Base64.getEncoder().encodeToString(bytes);
  }

  private static Config key(String value) {
    return ConfigFactory.parseMap(Map.of("outboard.vault.key", value));
  }

  private StoreSettings postgres() {
    return new StoreSettings("jdbc:postgresql://127.0.0.1/x", "u", "", tmp, false, 2);
  }

  private StoreSettings embedded() {
    return new StoreSettings("jdbc:h2:file:" + tmp.resolve("db"), "sa", "", tmp, true, 2);
  }

  private static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  @Test
  void eachSealHasAFreshNonceAndOpensOnlyForItsOrgAndName() throws Exception {
    VaultKey key = VaultKey.load(key(randomKey()), postgres()).orElseThrow();
    VaultKey.Sealed a = key.seal("acme", "github", utf8("ghp_token"));
    VaultKey.Sealed b = key.seal("acme", "github", utf8("ghp_token"));
    assertThat(a.nonce()).hasSize(12).isNotEqualTo(b.nonce());
    assertThat(a.ciphertext()).hasSize(9 + 16).isNotEqualTo(b.ciphertext());
    assertThat(a.keyId()).isEqualTo(key.id()).hasSize(16);

    assertThat(key.open("acme", "github", a))
        .hasValueSatisfying(v -> assertThat(v).isEqualTo(utf8("ghp_token")));
    assertThat(key.open("globex", "github", a)).isEmpty();
    assertThat(key.open("acme", "gitlab", a)).isEmpty();
    // The associated data cannot be shifted between the org and the name.
    assertThat(key.open("acme\0github", "", key.seal("acme", "\0github", utf8("x")))).isEmpty();
  }

  @Test
  void aTamperedCiphertextOrAnotherKeyDoesNotOpen() throws Exception {
    VaultKey key = VaultKey.load(key(randomKey()), postgres()).orElseThrow();
    VaultKey other = VaultKey.load(key(randomKey()), postgres()).orElseThrow();
    VaultKey.Sealed s = key.seal("acme", "n", utf8("value"));
    byte[] flipped = s.ciphertext().clone();
    flipped[0] ^= 1;
    assertThat(key.open("acme", "n", new VaultKey.Sealed(s.nonce(), flipped, s.keyId()))).isEmpty();
    assertThat(other.id()).isNotEqualTo(key.id());
    assertThat(other.open("acme", "n", s)).isEmpty();
    // Even claiming the other key's id, the tag does not verify.
    assertThat(other.open("acme", "n", new VaultKey.Sealed(s.nonce(), s.ciphertext(), other.id())))
        .isEmpty();
  }

  @Test
  void aKeyThatIsNotBase64Of32BytesFailsTheStartWithoutPrintingIt() {
    String notBase64 = "this-is-not-base64-#!";
    assertThatThrownBy(() -> VaultKey.load(key(notBase64), postgres()))
        .isInstanceOf(StartupChecks.Failure.class)
        .hasMessage(
            "start-up check: vault: OUTBOARD_VAULT_KEY is not valid base64; it must be base64 of"
                + " 32 random bytes, e.g. `openssl rand -base64 32`")
        .hasNoCause();
    String short16 = Base64.getEncoder().encodeToString(new byte[16]);
    assertThatThrownBy(() -> VaultKey.load(key(short16), postgres()))
        .isInstanceOf(StartupChecks.Failure.class)
        .hasMessageContaining("OUTBOARD_VAULT_KEY decodes to 16 bytes, not 32")
        .satisfies(e -> assertThat(e.getMessage()).doesNotContain(short16));
  }

  @Test
  void withoutAKeyTheVaultIsDisabledOutsideEmbeddedMode() throws Exception {
    assertThat(VaultKey.load(key(""), postgres())).isEmpty();
    assertThat(VaultKey.load(key("  "), postgres())).isEmpty();
    assertThat(Files.exists(tmp.resolve(VaultKey.DEV_KEY_FILE))).isFalse();
  }

  @Test
  void embeddedModeKeepsAnOwnerOnlyDevKeyAndAConfiguredKeyWins() throws Exception {
    VaultKey first = VaultKey.load(key(""), embedded()).orElseThrow();
    Path file = tmp.resolve(VaultKey.DEV_KEY_FILE);
    assertThat(Files.getPosixFilePermissions(file))
        .isEqualTo(PosixFilePermissions.fromString("rw-------"));
    assertThat(Base64.getDecoder().decode(Files.readString(file).strip())).hasSize(32);
    assertThat(VaultKey.load(key(""), embedded()).orElseThrow().id()).isEqualTo(first.id());
    assertThat(VaultKey.load(key(randomKey()), embedded()).orElseThrow().id())
        .isNotEqualTo(first.id());

    Files.writeString(file, "garbage\n");
    assertThatThrownBy(() -> VaultKey.load(key(""), embedded()))
        .isInstanceOf(StartupChecks.Failure.class)
        .hasMessageContaining(file.toString())
        .hasMessageContaining("decodes to");
  }

  @Test
  void aNodeWithABadKeyDoesNotStart() {
    String bad = "c2hvcnQta2V5"; // "short-key"
    assertThatThrownBy(() -> InProcessNode.start("", Map.of("outboard.vault.key", bad)))
        .isInstanceOf(StartupChecks.Failure.class)
        .hasMessageContaining("OUTBOARD_VAULT_KEY decodes to 9 bytes, not 32")
        .satisfies(e -> assertThat(e.getMessage()).doesNotContain(bad));
  }
}
