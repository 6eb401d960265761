package dev.outboard.api;

import dev.outboard.PrivateFiles;
import dev.outboard.store.Database;
import dev.outboard.store.Sql;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.SecureRandom;
import java.sql.Connection;
import java.sql.SQLException;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.HexFormat;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Pattern;

/**
 * Orgs and their API keys. A key reads {@code ob_<keyId>_<secret>}; the table keeps the key id, the
 * org and the SHA-256 of the secret, never the secret. Verification looks the row up by key id and
 * compares hashes in constant time; verified rows are cached for {@code cacheTtl}.
 */
public final class ApiKeys {
  private static final Pattern ORG_ID = Pattern.compile("[a-z0-9][a-z0-9-]{0,62}");
  private static final Pattern KEY = Pattern.compile("ob_([0-9a-f]{16})_([A-Za-z0-9_-]{43})");
  private static final SecureRandom RANDOM = new SecureRandom();

  private final Database db;
  private final Duration cacheTtl;
  private final ConcurrentHashMap<String, Cached> cache = new ConcurrentHashMap<>();

  private record Cached(String org, byte[] secretHash, Instant until) {}

  public record Org(String id, String name, Instant createdAt) {}

  public ApiKeys(Database db, Duration cacheTtl) {
    this.db = db;
    this.cacheTtl = cacheTtl;
  }

  public static boolean validOrgId(String id) {
    return id != null && ORG_ID.matcher(id).matches();
  }

  /** Creates an org; completes with empty if one with that id exists. */
  public CompletionStage<Optional<Org>> createOrg(String id, String name) {
    Instant now = Instant.now();
    return db.transact(
            c -> {
              Sql.update(
                  c, "INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)", id, name, now);
              return Optional.of(new Org(id, name, now));
            })
        .exceptionally(
            e -> {
              if (Database.isUniqueViolation(e)) return Optional.empty();
              throw new java.util.concurrent.CompletionException(e);
            });
  }

  /** Issues a new key for {@code org}; completes with empty if the org does not exist. */
  public CompletionStage<Optional<String>> issueKey(String org) {
    return db.transact(c -> issueKeyNow(c, org));
  }

  private static Optional<String> issueKeyNow(Connection c, String org) throws SQLException {
    if (!Sql.exists(c, "SELECT 1 FROM orgs WHERE id = ?", org)) return Optional.empty();
    byte[] idBytes = new byte[8];
    byte[] secretBytes = new byte[32];
    RANDOM.nextBytes(idBytes);
    RANDOM.nextBytes(secretBytes);
    String keyId = HexFormat.of().formatHex(idBytes);
    String secret = Base64.getUrlEncoder().withoutPadding().encodeToString(secretBytes);
    Sql.update(
        c,
        "INSERT INTO api_keys (key_id, org_id, secret_hash, created_at) VALUES (?, ?, ?, ?)",
        keyId,
        org,
        HexFormat.of().formatHex(sha256(secret)),
        Instant.now());
    return Optional.of("ob_" + keyId + "_" + secret);
  }

  /** The org of a valid, unrevoked key. */
  public CompletionStage<Optional<String>> authenticate(String key) {
    var m = key == null ? null : KEY.matcher(key);
    if (m == null || !m.matches()) return CompletableFuture.completedFuture(Optional.empty());
    String keyId = m.group(1);
    byte[] presented = sha256(m.group(2));
    Cached cached = cache.get(keyId);
    if (cached != null && cached.until().isAfter(Instant.now())) {
      return CompletableFuture.completedFuture(verify(cached, presented));
    }
    return db.transact(
            c ->
                Sql.one(
                    c,
                    "SELECT org_id, secret_hash FROM api_keys WHERE key_id = ? AND revoked_at IS"
                        + " NULL",
                    rs ->
                        new Cached(
                            rs.getString(1),
                            HexFormat.of().parseHex(rs.getString(2)),
                            Instant.now().plus(cacheTtl)),
                    keyId))
        .thenApply(
            row ->
                row.flatMap(
                    r -> {
                      cache.put(keyId, r);
                      return verify(r, presented);
                    }));
  }

  private static Optional<String> verify(Cached row, byte[] presented) {
    return MessageDigest.isEqual(row.secretHash(), presented)
        ? Optional.of(row.org())
        : Optional.empty();
  }

  /**
   * Embedded mode with an empty database: creates org {@code default} and one key, and returns the
   * key (to print once and write to the data directory). Empty if any org exists already.
   */
  public Optional<String> bootstrapDevOrg() {
    return db.transactNow(
        c -> {
          long orgs = Sql.one(c, "SELECT COUNT(*) FROM orgs", rs -> rs.getLong(1)).orElseThrow();
          if (orgs > 0) return Optional.<String>empty();
          Sql.update(
              c,
              "INSERT INTO orgs (id, name, created_at) VALUES ('default', 'Default', ?)",
              Instant.now());
          return issueKeyNow(c, "default");
        });
  }

  /**
   * Embedded mode with an empty database: org {@code default} and a key, written to {@code
   * <dataDir>/dev-api-key} and printed once.
   */
  public void writeDevKey(Path dataDir) throws IOException {
    var key = bootstrapDevOrg();
    if (key.isEmpty()) return;
    Path file = dataDir.resolve("dev-api-key");
    PrivateFiles.write(file, key.get() + "\n");
    // Printed once, on purpose: this is the developer's key to the embedded node.
    System.out.println(
        "Embedded mode: created org 'default'. API key (also in " + file + "):\n  " + key.get());
  }

  static byte[] sha256(String s) {
    try {
      return MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Constant-time comparison of two secrets (for the admin token). */
  public static boolean secretEquals(String a, String b) {
    return MessageDigest.isEqual(sha256(a), sha256(b));
  }
}
