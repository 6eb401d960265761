package dev.outboard.vault;

import com.typesafe.config.Config;
import dev.outboard.PrivateFiles;
import dev.outboard.ops.StartupChecks;
import dev.outboard.store.StoreSettings;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.Arrays;
import java.util.Base64;
import java.util.HexFormat;
import java.util.Optional;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The vault's AES-256-GCM key: where it comes from ({@code OUTBOARD_VAULT_KEY}, or in embedded mode
 * a dev key kept in {@code <data-dir>/dev-vault-key}) and sealing and opening values with it. Each
 * seal draws a fresh 96-bit nonce and binds the org id and the secret's name as associated data, so
 * a ciphertext moved to another org or name does not open. The key is never logged or printed; rows
 * carry only its {@link #id() fingerprint}.
 */
final class VaultKey {
  private static final Logger log = LoggerFactory.getLogger(VaultKey.class);

  static final String VARIABLE = "OUTBOARD_VAULT_KEY";
  static final String DEV_KEY_FILE = "dev-vault-key";
  static final int KEY_BYTES = 32;
  static final int NONCE_BYTES = 12;
  private static final int TAG_BITS = 128;
  private static final String HOW = "base64 of 32 random bytes, e.g. `openssl rand -base64 32`";
  private static final SecureRandom RANDOM = new SecureRandom();

  private final SecretKeySpec key;
  private final String id;

  /** A value as stored: the nonce, the ciphertext with its tag, and the fingerprint of its key. */
  record Sealed(byte[] nonce, byte[] ciphertext, String keyId) {}

  private VaultKey(byte[] bytes) {
    this.key = new SecretKeySpec(bytes, "AES");
    this.id = fingerprint(bytes);
  }

  /** A key of exactly {@link #KEY_BYTES} bytes (copied). */
  static VaultKey of(byte[] bytes) {
    if (bytes.length != KEY_BYTES) throw new IllegalArgumentException("a vault key is 32 bytes");
    return new VaultKey(bytes.clone());
  }

  /**
   * The node's key: {@code outboard.vault.key}; unset, the embedded dev key (created on first use),
   * or none (the vault is disabled). Says which in one start-up line, never with the key.
   *
   * @throws StartupChecks.Failure if the key (or the dev key file) is not base64 of 32 bytes
   */
  static Optional<VaultKey> load(Config config, StoreSettings store) throws IOException {
    String configured = config.getString("outboard.vault.key").strip();
    if (!configured.isEmpty()) {
      VaultKey key = new VaultKey(decode(configured, VARIABLE));
      log.info("{}vault: enabled (key {} from {})", StartupChecks.PREFIX, key.id, VARIABLE);
      return Optional.of(key);
    }
    if (!store.embedded()) {
      log.warn(
          "{}vault: disabled, its admin routes answer 503 vault_disabled; set {} ({}) to enable it",
          StartupChecks.PREFIX,
          VARIABLE,
          HOW);
      return Optional.empty();
    }
    Path file = store.dataDir().resolve(DEV_KEY_FILE);
    VaultKey key = new VaultKey(devKey(file));
    log.info(
        "{}vault: enabled with the embedded dev key in {} (set {} for real secrets)",
        StartupChecks.PREFIX,
        file,
        VARIABLE);
    return Optional.of(key);
  }

  /** The dev key in {@code file}, written (owner-only) with a new random key if it is missing. */
  private static byte[] devKey(Path file) throws IOException {
    if (Files.exists(file)) {
      return decode(Files.readString(file, StandardCharsets.US_ASCII).strip(), file.toString());
    }
    byte[] bytes = new byte[KEY_BYTES];
    RANDOM.nextBytes(bytes);
    PrivateFiles.write(file, Base64.getEncoder().encodeToString(bytes) + "\n");
    return bytes;
  }

  /** {@code text} as base64 of 32 bytes; the failure names {@code source} and never the text. */
  static byte[] decode(String text, String source) {
    byte[] bytes;
    try {
      bytes = Base64.getDecoder().decode(text);
    } catch (IllegalArgumentException e) {
      throw new StartupChecks.Failure(
          StartupChecks.PREFIX + "vault: " + source + " is not valid base64; it must be " + HOW);
    }
    if (bytes.length != KEY_BYTES) {
      int length = bytes.length;
      Arrays.fill(bytes, (byte) 0);
      throw new StartupChecks.Failure(
          StartupChecks.PREFIX
              + "vault: "
              + source
              + " decodes to "
              + length
              + " bytes, not 32; it must be "
              + HOW);
    }
    return bytes;
  }

  /** The key's fingerprint: 16 hex digits of a SHA-256 over it; tells keys apart, reveals none. */
  private static String fingerprint(byte[] bytes) {
    try {
      MessageDigest sha = MessageDigest.getInstance("SHA-256");
      sha.update("outboard-vault-key-id\0".getBytes(StandardCharsets.US_ASCII));
      return HexFormat.of().formatHex(sha.digest(bytes), 0, 8);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("SHA-256 is missing from this JVM", e);
    }
  }

  String id() {
    return id;
  }

  /** Seals {@code plaintext} for secret {@code name} of {@code org}, with a fresh nonce. */
  Sealed seal(String org, String name, byte[] plaintext) {
    byte[] nonce = new byte[NONCE_BYTES];
    RANDOM.nextBytes(nonce);
    try {
      Cipher cipher = cipher(Cipher.ENCRYPT_MODE, nonce, org, name);
      return new Sealed(nonce, cipher.doFinal(plaintext), id);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("AES-GCM failed to encrypt: " + e.getClass().getName());
    }
  }

  /**
   * The plaintext of {@code stored}, if it was sealed with this key for this org and name, else
   * empty (a wrong key, a row moved, or tampered bytes: GCM cannot tell them apart).
   */
  Optional<byte[]> open(String org, String name, Sealed stored) {
    if (!id.equals(stored.keyId()) || stored.nonce().length != NONCE_BYTES) return Optional.empty();
    try {
      Cipher cipher = cipher(Cipher.DECRYPT_MODE, stored.nonce(), org, name);
      return Optional.of(cipher.doFinal(stored.ciphertext()));
    } catch (GeneralSecurityException e) {
      return Optional.empty();
    }
  }

  private Cipher cipher(int mode, byte[] nonce, String org, String name)
      throws GeneralSecurityException {
    Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding");
    cipher.init(mode, key, new GCMParameterSpec(TAG_BITS, nonce));
    cipher.updateAAD(associatedData(org, name));
    return cipher;
  }

  /** {@code outboard-vault/v1 NUL org NUL name}: neither an org id nor a name holds a NUL. */
  private static byte[] associatedData(String org, String name) {
    return ("outboard-vault/v1\0" + org + "\0" + name).getBytes(StandardCharsets.UTF_8);
  }

  @Override
  public String toString() {
    return "VaultKey[" + id + "]";
  }
}
