package dev.outboard.api;

import dev.outboard.store.Database;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.SecureRandom;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
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
              try (PreparedStatement ps =
                  c.prepareStatement("INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)")) {
                ps.setString(1, id);
                ps.setString(2, name);
                ps.setObject(3, OffsetDateTime.ofInstant(now, ZoneOffset.UTC));
                ps.executeUpdate();
              }
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

  private static Optional<String> issueKeyNow(java.sql.Connection c, String org)
      throws java.sql.SQLException {
    try (PreparedStatement ps = c.prepareStatement("SELECT 1 FROM orgs WHERE id = ?")) {
      ps.setString(1, org);
      try (ResultSet rs = ps.executeQuery()) {
        if (!rs.next()) return Optional.empty();
      }
    }
    byte[] idBytes = new byte[8];
    byte[] secretBytes = new byte[32];
    RANDOM.nextBytes(idBytes);
    RANDOM.nextBytes(secretBytes);
    String keyId = HexFormat.of().formatHex(idBytes);
    String secret = Base64.getUrlEncoder().withoutPadding().encodeToString(secretBytes);
    try (PreparedStatement ps =
        c.prepareStatement(
            "INSERT INTO api_keys (key_id, org_id, secret_hash, created_at) VALUES (?, ?, ?, ?)")) {
      ps.setString(1, keyId);
      ps.setString(2, org);
      ps.setString(3, HexFormat.of().formatHex(sha256(secret)));
      ps.setObject(4, OffsetDateTime.now(ZoneOffset.UTC));
      ps.executeUpdate();
    }
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
            c -> {
              try (PreparedStatement ps =
                  c.prepareStatement(
                      "SELECT org_id, secret_hash FROM api_keys WHERE key_id = ? AND revoked_at IS"
                          + " NULL")) {
                ps.setString(1, keyId);
                try (ResultSet rs = ps.executeQuery()) {
                  if (!rs.next()) return Optional.<Cached>empty();
                  return Optional.of(
                      new Cached(
                          rs.getString(1),
                          HexFormat.of().parseHex(rs.getString(2)),
                          Instant.now().plus(cacheTtl)));
                }
              }
            })
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
          try (PreparedStatement ps = c.prepareStatement("SELECT COUNT(*) FROM orgs");
              ResultSet rs = ps.executeQuery()) {
            rs.next();
            if (rs.getLong(1) > 0) return Optional.<String>empty();
          }
          try (PreparedStatement ps =
              c.prepareStatement(
                  "INSERT INTO orgs (id, name, created_at) VALUES ('default', 'Default', ?)")) {
            ps.setObject(1, OffsetDateTime.now(ZoneOffset.UTC));
            ps.executeUpdate();
          }
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
    Files.writeString(file, key.get() + "\n");
    try {
      Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-------"));
    } catch (UnsupportedOperationException ignored) {
      // not a POSIX filesystem; the file keeps the default permissions
    }
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
