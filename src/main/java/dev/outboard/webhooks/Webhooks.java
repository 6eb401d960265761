package dev.outboard.webhooks;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.outboard.Json;
import dev.outboard.session.Summary;
import dev.outboard.store.Database;
import dev.outboard.store.Sql;
import java.net.URI;
import java.sql.Connection;
import java.sql.SQLException;
import java.time.Instant;
import java.util.Optional;
import java.util.concurrent.CompletionStage;

/**
 * Per-org status webhooks: where an org wants its sessions' status changes POSTed, and the outbox
 * of deliveries owed. {@link #enqueue} runs inside the transaction that records the change in the
 * sessions list, so a change that is recorded is delivered, after any restart, at least once
 * ({@link WebhookDispatcher} delivers).
 */
public final class Webhooks {
  /** The {@code type} of every delivery's body. */
  public static final String EVENT_TYPE = "session.status_changed";

  private final Database db;
  private volatile Runnable onEnqueued = () -> {};

  /** An org's endpoint, as the admin API shows it: never the secret. */
  public record Endpoint(String url, Instant updatedAt) {}

  /** An org's endpoint with its secret, for signing. */
  record Target(String url, String secret) {}

  public Webhooks(Database db) {
    this.db = db;
  }

  /** Called after a transaction that enqueued may have committed: the dispatcher looks sooner. */
  void onEnqueued(Runnable nudge) {
    this.onEnqueued = nudge;
  }

  /** Tells the dispatcher that a transaction which enqueued has committed. */
  public void enqueued() {
    onEnqueued.run();
  }

  /** Checks a webhook URL: absolute http or https with a host; returns the problem, if any. */
  public static Optional<String> problem(String url) {
    if (url == null || url.isBlank()) return Optional.of("url is required");
    if (url.length() > 2048) return Optional.of("url is longer than 2048 characters");
    try {
      URI uri = new URI(url);
      if (!"http".equals(uri.getScheme()) && !"https".equals(uri.getScheme()))
        return Optional.of("url must be http or https");
      if (uri.getHost() == null) return Optional.of("url must name a host");
      return Optional.empty();
    } catch (Exception e) {
      return Optional.of("url is not a URL: " + e.getMessage());
    }
  }

  /** Sets the org's endpoint; false if there is no such org. */
  public CompletionStage<Boolean> set(String org, String url, String secret) {
    return db.transact(
        c -> {
          if (!Sql.exists(c, "SELECT 1 FROM orgs WHERE id = ?", org)) return false;
          Sql.update(c, "DELETE FROM org_webhooks WHERE org_id = ?", org);
          Sql.update(
              c,
              "INSERT INTO org_webhooks (org_id, url, secret, updated_at) VALUES (?, ?, ?, ?)",
              org,
              url,
              secret,
              Instant.now());
          return true;
        });
  }

  public CompletionStage<Optional<Endpoint>> get(String org) {
    return db.transact(
        c ->
            Sql.one(
                c,
                "SELECT url, updated_at FROM org_webhooks WHERE org_id = ?",
                rs -> new Endpoint(rs.getString(1), Sql.instant(rs, 2)),
                org));
  }

  /** Removes the org's endpoint; deliveries still owed to it are dropped. False if it had none. */
  public CompletionStage<Boolean> remove(String org) {
    return db.transact(
        c -> {
          Sql.update(
              c, "DELETE FROM webhook_outbox WHERE org_id = ? AND delivered_at IS NULL", org);
          return Sql.update(c, "DELETE FROM org_webhooks WHERE org_id = ?", org) == 1;
        });
  }

  /**
   * Owes the org's endpoint (if it has one) a delivery of {@code summary}'s status, recorded at
   * journal sequence number {@code seq}. Runs in the caller's transaction; a change already owed
   * (the same session and sequence number) is not owed twice. True if it is owed now: call {@link
   * #enqueued} once the transaction committed.
   */
  public boolean enqueue(Connection c, Summary summary, long seq) throws SQLException {
    if (target(c, summary.org()).isEmpty()) return false;
    String eventId = summary.id() + ":" + seq;
    if (Sql.exists(c, "SELECT 1 FROM webhook_outbox WHERE event_id = ?", eventId)) return false;
    Instant now = Instant.now();
    ObjectNode payload =
        Json.MAPPER
            .createObjectNode()
            .put("id", eventId)
            .put("type", EVENT_TYPE)
            .put("createdAt", now.toString())
            .put("status", summary.status())
            .put("seq", seq);
    payload.set("session", Json.MAPPER.valueToTree(summary));
    Sql.update(
        c,
        "INSERT INTO webhook_outbox (event_id, org_id, payload, attempts, next_attempt_at,"
            + " created_at) VALUES (?, ?, ?, 0, ?, ?)",
        eventId,
        summary.org(),
        Json.write(payload),
        now,
        now);
    return true;
  }

  Optional<Target> target(Connection c, String org) throws SQLException {
    return Sql.one(
        c,
        "SELECT url, secret FROM org_webhooks WHERE org_id = ?",
        rs -> new Target(rs.getString(1), rs.getString(2)),
        org);
  }
}
