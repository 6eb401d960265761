package dev.outboard.vault;

import com.typesafe.config.Config;
import dev.outboard.store.Database;
import dev.outboard.store.Sql;
import dev.outboard.store.StoreSettings;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.regex.Pattern;

/**
 * Each org's named secrets, encrypted at rest ({@link VaultKey}: AES-256-GCM, the org and name as
 * associated data) in table {@code org_secrets}. Values go in through {@link #put} and come out
 * only through {@link #resolve}, which decrypts at call time and keeps nothing; listings give names
 * and times. No message, log line or exception of the vault holds a value or key material.
 */
public final class Vault {
  /** What a secret may be called. */
  public static final Pattern NAME = Pattern.compile("[A-Za-z0-9_.-]{1,64}");

  /** The largest value, in UTF-8 bytes. */
  public static final int MAX_VALUE_BYTES = 64 * 1024;

  private final Database db;
  private final VaultKey key; // null: disabled

  /** A secret as listed: never its value. */
  public record Entry(String name, Instant createdAt, Instant updatedAt) {}

  /** The node has no vault key: {@code OUTBOARD_VAULT_KEY} is unset. */
  public static final class Disabled extends RuntimeException {
    public Disabled() {
      super(
          "the vault is disabled: set "
              + VaultKey.VARIABLE
              + " to base64 of 32 random bytes and restart the node",
          null,
          false,
          false);
    }
  }

  /** A stored secret that this node's key does not open. Names the secret, never its bytes. */
  public static final class CannotDecrypt extends RuntimeException {
    CannotDecrypt(String org, String name) {
      super(
          "cannot decrypt secret " + name + " of org " + org + ": wrong key or tampered",
          null,
          false,
          false);
    }
  }

  Vault(Database db, VaultKey key) {
    this.db = db;
    this.key = key;
  }

  /**
   * The node's vault over {@code db}, with the key {@link VaultKey#load} finds (disabled without
   * one).
   *
   * @throws dev.outboard.ops.StartupChecks.Failure if the configured key is not base64 of 32 bytes
   */
  public static Vault open(Config config, StoreSettings store, Database db) throws IOException {
    return new Vault(db, VaultKey.load(config, store).orElse(null));
  }

  /** Whether the node has a key; without one every operation fails with {@link Disabled}. */
  public boolean enabled() {
    return key != null;
  }

  /** The problem with {@code name} as a secret's name, if any. */
  public static Optional<String> nameProblem(String name) {
    if (name != null && NAME.matcher(name).matches()) return Optional.empty();
    return Optional.of("a secret's name is 1 to 64 characters of A-Z, a-z, 0-9, '_', '.' and '-'");
  }

  /**
   * Creates or replaces secret {@code name} of {@code org} with {@code value} (a valid name, at
   * most {@link #MAX_VALUE_BYTES}); false if there is no such org. A replaced secret keeps its
   * creation time.
   */
  public CompletionStage<Boolean> put(String org, String name, String value) {
    if (key == null) return CompletableFuture.failedFuture(new Disabled());
    nameProblem(name)
        .ifPresent(
            problem -> {
              throw new IllegalArgumentException(problem);
            });
    byte[] plain = value.getBytes(StandardCharsets.UTF_8);
    if (plain.length == 0 || plain.length > MAX_VALUE_BYTES)
      throw new IllegalArgumentException("a secret's value is 1 to 65536 bytes of UTF-8");
    VaultKey.Sealed stored = key.seal(org, name, plain);
    Arrays.fill(plain, (byte) 0);
    Instant now = Instant.now();
    return db.transact(
        c -> {
          // The org's row, locked: writes of one org go one at a time, so UPDATE-else-INSERT holds.
          if (!Sql.exists(c, "SELECT 1 FROM orgs WHERE id = ? FOR UPDATE", org)) return false;
          int updated =
              Sql.update(
                  c,
                  "UPDATE org_secrets SET nonce = ?, ciphertext = ?, key_id = ?, updated_at = ?"
                      + " WHERE org_id = ? AND name = ?",
                  stored.nonce(),
                  stored.ciphertext(),
                  stored.keyId(),
                  now,
                  org,
                  name);
          if (updated == 0) {
            Sql.update(
                c,
                "INSERT INTO org_secrets (org_id, name, nonce, ciphertext, key_id, created_at,"
                    + " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                org,
                name,
                stored.nonce(),
                stored.ciphertext(),
                stored.keyId(),
                now,
                now);
          }
          return true;
        });
  }

  /** The org's secrets by name (code-point order), without values; empty if there is no org. */
  public CompletionStage<Optional<List<Entry>>> list(String org) {
    if (key == null) return CompletableFuture.failedFuture(new Disabled());
    return db.transact(
        c -> {
          if (!Sql.exists(c, "SELECT 1 FROM orgs WHERE id = ?", org))
            return Optional.<List<Entry>>empty();
          List<Entry> entries =
              Sql.query(
                  c,
                  "SELECT name, created_at, updated_at FROM org_secrets WHERE org_id = ?",
                  rs -> new Entry(rs.getString(1), Sql.instant(rs, 2), Sql.instant(rs, 3)),
                  org);
          return Optional.of(entries.stream().sorted(Comparator.comparing(Entry::name)).toList());
        });
  }

  /** Deletes secret {@code name} of {@code org}; false if it had none of that name. */
  public CompletionStage<Boolean> delete(String org, String name) {
    if (key == null) return CompletableFuture.failedFuture(new Disabled());
    return db.transact(
        c ->
            Sql.update(c, "DELETE FROM org_secrets WHERE org_id = ? AND name = ?", org, name) == 1);
  }

  /**
   * The value of secret {@code name} of {@code org}, decrypted now; empty if there is none. The
   * only way to read a value: callers use it for the call at hand (a header of an outgoing request)
   * and keep it nowhere. Fails with {@link CannotDecrypt} if this node's key does not open it, and
   * with {@link Disabled} without a key.
   */
  public CompletionStage<Optional<String>> resolve(String org, String name) {
    if (key == null) return CompletableFuture.failedFuture(new Disabled());
    return db.transact(
        c ->
            Sql.one(
                    c,
                    "SELECT nonce, ciphertext, key_id FROM org_secrets WHERE org_id = ? AND name ="
                        + " ?",
                    rs -> new VaultKey.Sealed(rs.getBytes(1), rs.getBytes(2), rs.getString(3)),
                    org,
                    name)
                .map(stored -> open(org, name, stored)));
  }

  private String open(String org, String name, VaultKey.Sealed stored) {
    byte[] plain = key.open(org, name, stored).orElseThrow(() -> new CannotDecrypt(org, name));
    try {
      return new String(plain, StandardCharsets.UTF_8);
    } finally {
      Arrays.fill(plain, (byte) 0);
    }
  }
}
