package dev.outboard.mcp;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import dev.outboard.Json;
import dev.outboard.store.Database;
import dev.outboard.store.Sql;
import dev.outboard.webhooks.Webhooks;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletionStage;
import java.util.regex.Pattern;

/**
 * The MCP servers of each org (table {@code mcp_servers}): a name, a Streamable HTTP endpoint and
 * header templates ({@link SecretHeaders}). The name is the prefix of the server's tools as the
 * model sees them ({@code <name>__<tool>}), so it has no underscore.
 */
public final class McpServers {
  public static final Pattern NAME = Pattern.compile("[a-z0-9][a-z0-9-]{0,31}");
  public static final int MAX_PER_ORG = 32;

  /** One server; {@code headers} are templates and hold no secret's value. */
  public record Server(
      String name, String url, Map<String, String> headers, Instant createdAt, Instant updatedAt) {}

  /** A put refused because the org already has {@link #MAX_PER_ORG} servers. */
  public static final class TooMany extends RuntimeException {
    TooMany() {
      super("an org has at most " + MAX_PER_ORG + " MCP servers", null, false, false);
    }
  }

  private static final TypeReference<LinkedHashMap<String, String>> HEADERS =
      new TypeReference<>() {};

  private final Database db;

  public McpServers(Database db) {
    this.db = db;
  }

  /** The problem with {@code name} as a server's name, if any. */
  public static Optional<String> nameProblem(String name) {
    if (name != null && NAME.matcher(name).matches()) return Optional.empty();
    return Optional.of(
        "an MCP server's name is 1 to 32 characters of a-z, 0-9 and '-', starting with a letter or"
            + " digit (its tools are offered as <name>__<tool>)");
  }

  /** The problem with {@code url} as a Streamable HTTP endpoint, if any. */
  public static Optional<String> urlProblem(String url) {
    return Webhooks.problem(url);
  }

  /**
   * Creates or replaces server {@code name} of {@code org} (valid arguments); empty if there is no
   * such org. Fails with {@link TooMany} past {@link #MAX_PER_ORG}.
   */
  public CompletionStage<Optional<Server>> put(
      String org, String name, String url, Map<String, String> headers) {
    String json = Json.write(headers);
    Instant now = Instant.now().truncatedTo(ChronoUnit.MICROS);
    return db.transact(
        c -> {
          if (!Sql.exists(c, "SELECT 1 FROM orgs WHERE id = ? FOR UPDATE", org))
            return Optional.<Server>empty();
          Optional<Instant> created =
              Sql.one(
                  c,
                  "SELECT created_at FROM mcp_servers WHERE org_id = ? AND name = ?",
                  rs -> Sql.instant(rs, 1),
                  org,
                  name);
          if (created.isPresent()) {
            Sql.update(
                c,
                "UPDATE mcp_servers SET url = ?, headers = ?, updated_at = ? WHERE org_id = ? AND"
                    + " name = ?",
                url,
                json,
                now,
                org,
                name);
          } else {
            int count =
                Sql.one(
                        c,
                        "SELECT COUNT(*) FROM mcp_servers WHERE org_id = ?",
                        rs -> rs.getInt(1),
                        org)
                    .orElse(0);
            if (count >= MAX_PER_ORG) throw new TooMany();
            Sql.update(
                c,
                "INSERT INTO mcp_servers (org_id, name, url, headers, created_at, updated_at)"
                    + " VALUES (?, ?, ?, ?, ?, ?)",
                org,
                name,
                url,
                json,
                now,
                now);
          }
          return Optional.of(new Server(name, url, Map.copyOf(headers), created.orElse(now), now));
        });
  }

  /** The org's servers by name; empty if there is no such org. */
  public CompletionStage<Optional<List<Server>>> list(String org) {
    return db.transact(
        c -> {
          if (!Sql.exists(c, "SELECT 1 FROM orgs WHERE id = ?", org))
            return Optional.<List<Server>>empty();
          return Optional.of(servers(c, org));
        });
  }

  /** The org's servers by name (none for an unknown org). */
  public CompletionStage<List<Server>> servers(String org) {
    return db.transact(c -> servers(c, org));
  }

  private static List<Server> servers(java.sql.Connection c, String org)
      throws java.sql.SQLException {
    return Sql.query(
        c,
        "SELECT name, url, headers, created_at, updated_at FROM mcp_servers WHERE org_id = ?"
            + " ORDER BY name",
        rs ->
            new Server(
                rs.getString(1),
                rs.getString(2),
                headers(rs.getString(3)),
                Sql.instant(rs, 4),
                Sql.instant(rs, 5)),
        org);
  }

  /** Deletes server {@code name} of {@code org}; false if it had none of that name. */
  public CompletionStage<Boolean> delete(String org, String name) {
    return db.transact(
        c ->
            Sql.update(c, "DELETE FROM mcp_servers WHERE org_id = ? AND name = ?", org, name) == 1);
  }

  private static Map<String, String> headers(String json) {
    try {
      return java.util.Collections.unmodifiableMap(Json.MAPPER.readValue(json, HEADERS));
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("mcp_servers.headers is not a JSON object of strings", e);
    }
  }
}
