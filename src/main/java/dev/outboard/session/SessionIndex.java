package dev.outboard.session;

import com.fasterxml.jackson.core.JsonProcessingException;
import dev.outboard.Json;
import dev.outboard.store.Database;
import dev.outboard.store.Sql;
import dev.outboard.webhooks.Webhooks;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Types;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The read side of sessions: which org owns a session id (checked before any request reaches an
 * entity, so unknown ids never wake one up), the sessions list, and idempotency keys of create.
 * Rows are written when a session is created and then whenever its status changes; the journal
 * sequence number of the change ({@code seq}) keeps a late write from going back in time.
 */
public final class SessionIndex implements SessionObserver {
  private static final Logger log = LoggerFactory.getLogger(SessionIndex.class);
  private static final int OWNER_CACHE = 100_000;

  private final Database db;
  private final Duration idempotencyTtl;

  /** Status webhooks, enqueued with the change they report; null where there are none. */
  private final Webhooks webhooks;

  /** Daily usage totals per org; null where they are not kept. */
  private final dev.outboard.store.UsageLedger ledger;

  private final Map<String, String> ownerCache =
      Collections.synchronizedMap(
          new LinkedHashMap<>(1024, 0.75f, true) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<String, String> eldest) {
              return size() > OWNER_CACHE;
            }
          });

  public record Page(List<Summary> sessions, String next) {}

  public SessionIndex(Database db, Duration idempotencyTtl) {
    this(db, idempotencyTtl, null);
  }

  public SessionIndex(Database db, Duration idempotencyTtl, Webhooks webhooks) {
    this(db, idempotencyTtl, webhooks, null);
  }

  public SessionIndex(
      Database db,
      Duration idempotencyTtl,
      Webhooks webhooks,
      dev.outboard.store.UsageLedger usage) {
    this.db = db;
    this.idempotencyTtl = idempotencyTtl;
    this.webhooks = webhooks;
    this.ledger = usage;
  }

  @Override
  public void usage(String org, dev.outboard.model.Usage usage, Instant at) {
    if (ledger != null) ledger.add(org, usage, at);
  }

  /**
   * Records a new session before it starts. With an idempotency key already used by the org in the
   * last {@code idempotencyTtl}, records nothing and returns the id of the session that key
   * created; otherwise returns {@code provisional.id()}.
   */
  public CompletionStage<String> register(Summary provisional, String idempotencyKey) {
    return registerOnce(provisional, idempotencyKey)
        .exceptionallyCompose(
            e ->
                idempotencyKey != null && Database.isUniqueViolation(e)
                    // A concurrent request with the same key won the race and has committed: answer
                    // with its session.
                    ? registerOnce(provisional, idempotencyKey)
                    : CompletableFuture.failedStage(e))
        .thenApply(
            id -> {
              if (id.equals(provisional.id())) ownerCache.put(id, provisional.org());
              return id;
            });
  }

  /**
   * The row of a session about to start; its first status change ({@code running}) comes from the
   * session.
   */
  private CompletionStage<String> registerOnce(Summary provisional, String idempotencyKey) {
    return db.transact(
        c -> {
          if (idempotencyKey != null) {
            Optional<String> owner = claim(c, provisional.org(), idempotencyKey, provisional.id());
            if (owner.isPresent()) return owner.get();
          }
          insertRow(c, provisional, 0);
          return provisional.id();
        });
  }

  /** Empty if this request won the key, else the session id that owns it. */
  private Optional<String> claim(Connection c, String org, String key, String sessionId)
      throws SQLException {
    Instant now = Instant.now();
    Optional<Claimed> held =
        Sql.one(
            c,
            "SELECT session_id, created_at FROM idempotency_keys WHERE org_id = ? AND idem_key = ?"
                + " FOR UPDATE",
            rs -> new Claimed(rs.getString(1), Sql.instant(rs, 2)),
            org,
            key);
    if (held.isEmpty()) {
      Sql.update(
          c,
          "INSERT INTO idempotency_keys (org_id, idem_key, session_id, created_at) VALUES (?, ?,"
              + " ?, ?)",
          org,
          key,
          sessionId,
          now);
    } else if (held.get().createdAt().plus(idempotencyTtl).isAfter(now)) {
      return Optional.of(held.get().sessionId());
    } else {
      Sql.update(
          c,
          "UPDATE idempotency_keys SET session_id = ?, created_at = ? WHERE org_id = ? AND"
              + " idem_key = ?",
          sessionId,
          now,
          org,
          key);
    }
    return Optional.empty();
  }

  /** An idempotency key's row: the session it created, and when. */
  private record Claimed(String sessionId, Instant createdAt) {}

  @Override
  public void statusChanged(Summary summary, long seq) {
    record(summary, seq, false, true);
  }

  @Override
  public void recovered(Summary summary, long seq) {
    record(summary, seq, true, true);
  }

  @Override
  public void detailsChanged(Summary summary, long seq) {
    record(summary, seq, false, false);
  }

  /**
   * Writes the session's row (unless a later change is there already) and owes the org's webhook
   * the change. Changes can arrive out of order (each is its own transaction), so every change is
   * owed by its sequence number; a recovering session's status only if the list did not have it yet
   * (its node stopped before it could record the change).
   */
  private void record(Summary summary, long seq, boolean recovered, boolean statusChange) {
    db.<Boolean>transact(
            c -> {
              // Only a recovering session's status is compared with the listed one (see above).
              boolean compare = recovered && webhooks != null;
              String before = compare ? statusOf(c, summary.id()) : null;
              int updated =
                  Sql.update(
                      c,
                      "UPDATE session_index SET status = ?, seq = ?, updated_at = ?, summary = ?,"
                          + " wake_at = ?, sandbox_id = ? WHERE id = ? AND seq <= ?",
                      summary.status(),
                      seq,
                      summary.updatedAt(),
                      Json.write(summary),
                      wakeAt(summary),
                      sandboxOf(summary),
                      summary.id(),
                      seq);
              // No row updated: a later change is there already, or there is no row yet.
              if (updated == 0 && statusOf(c, summary.id()) == null) insertRow(c, summary, seq);
              boolean owed =
                  statusChange
                      && webhooks != null
                      && (!compare || !summary.status().equals(before));
              return owed && webhooks.enqueue(c, summary, seq);
            })
        .whenComplete(
            (owed, error) -> {
              if (error != null && !Database.isUniqueViolation(error)) {
                log.warn(
                    "could not update the sessions list for {}: {}",
                    summary.id(),
                    error.toString());
              } else if (Boolean.TRUE.equals(owed)) {
                webhooks.enqueued();
              }
            });
  }

  private static String statusOf(Connection c, String id) throws SQLException {
    return Sql.one(c, "SELECT status FROM session_index WHERE id = ?", rs -> rs.getString(1), id)
        .orElse(null);
  }

  /**
   * Sessions with a wait due by {@code now} (at most {@code limit}, the earliest first): see {@link
   * WaitWakeups}.
   */
  public CompletionStage<List<String>> due(Instant now, int limit) {
    return db.transact(
        c ->
            Sql.query(
                c,
                "SELECT id FROM session_index WHERE wake_at <= ? ORDER BY wake_at LIMIT " + limit,
                rs -> rs.getString(1),
                now));
  }

  private static String sandboxOf(Summary s) {
    return s.sandbox() == null ? null : s.sandbox().id();
  }

  /**
   * Of the sandbox ids given, which belong to which session status (running, waiting, completed,
   * ...): the current sandbox of a listed session; ids no session holds are absent.
   */
  public CompletionStage<Map<String, String>> sandboxOwners(
      java.util.Collection<String> sandboxIds) {
    if (sandboxIds.isEmpty()) return CompletableFuture.completedFuture(java.util.Map.of());
    List<String> ids = List.copyOf(sandboxIds);
    return db.transact(
        c -> {
          Map<String, String> owners = new java.util.HashMap<>();
          for (int from = 0; from < ids.size(); from += 500) {
            List<String> part = ids.subList(from, Math.min(ids.size(), from + 500));
            // A running owner wins over a finished one (an id is never reused, but be safe).
            Sql.each(
                c,
                "SELECT sandbox_id, status FROM session_index WHERE sandbox_id IN ("
                    + Sql.marks(part.size())
                    + ")",
                rs -> owners.merge(rs.getString(1), rs.getString(2), (a, b) -> finished(a) ? b : a),
                part.toArray());
          }
          return owners;
        });
  }

  /** Whether a listed status (a {@link SessionStatus} in its wire form) is a terminal one. */
  public static boolean finished(String status) {
    for (SessionStatus s : SessionStatus.values()) {
      if (s.wire().equals(status)) return s.finished();
    }
    return false;
  }

  /** The org that owns {@code sessionId}, if the session exists. */
  public CompletionStage<Optional<String>> orgOf(String sessionId) {
    String cached = ownerCache.get(sessionId);
    if (cached != null) return CompletableFuture.completedFuture(Optional.of(cached));
    return db.transact(
            c ->
                Sql.one(
                    c,
                    "SELECT org_id FROM session_index WHERE id = ?",
                    rs -> rs.getString(1),
                    sessionId))
        .thenApply(
            org -> {
              org.ifPresent(o -> ownerCache.put(sessionId, o));
              return org;
            });
  }

  /** An org's sessions, newest first, optionally by status and user. */
  public CompletionStage<Page> list(
      String org, String status, String user, int limit, String cursor) {
    Cursor after = cursor == null ? null : Cursor.decode(cursor);
    return db.transact(
        c -> {
          StringBuilder sql =
              new StringBuilder(
                  "SELECT id, created_at, summary FROM session_index WHERE org_id = ?");
          List<Object> args = new ArrayList<>(List.of(org));
          if (status != null) {
            sql.append(" AND status = ?");
            args.add(status);
          }
          if (user != null) {
            sql.append(" AND user_name = ?");
            args.add(user);
          }
          if (after != null) {
            sql.append(" AND (created_at < ? OR (created_at = ? AND id < ?))");
            args.add(after.createdAt());
            args.add(after.createdAt());
            args.add(after.id());
          }
          sql.append(" ORDER BY created_at DESC, id DESC LIMIT ").append(limit + 1);
          // One row more than the page: if it is there, the page has a next one.
          List<Listed> rows =
              Sql.query(
                  c,
                  sql.toString(),
                  rs -> new Listed(Sql.instant(rs, 2), rs.getString(3)),
                  args.toArray());
          List<Summary> out = new ArrayList<>();
          for (Listed row : rows.subList(0, Math.min(limit, rows.size()))) {
            out.add(summary(row.summary()));
          }
          String next = null;
          if (rows.size() > limit) {
            next = new Cursor(rows.get(limit - 1).createdAt(), out.get(limit - 1).id()).encode();
          }
          return new Page(out, next);
        });
  }

  /** A row of the sessions list: when it was created, and its summary as stored. */
  private record Listed(Instant createdAt, String summary) {}

  private static void insertRow(Connection c, Summary s, long seq) throws SQLException {
    Sql.update(
        c,
        "INSERT INTO session_index (id, org_id, user_name, status, seq, created_at, updated_at,"
            + " summary, wake_at, sandbox_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        s.id(),
        s.org(),
        s.user(),
        s.status(),
        seq,
        s.createdAt(),
        s.updatedAt(),
        Json.write(s),
        wakeAt(s),
        sandboxOf(s));
  }

  /** When the session's wait is due; a session without one binds a NULL timestamp. */
  private static Object wakeAt(Summary s) {
    return Sql.orNull(s.wakeAt(), Types.TIMESTAMP_WITH_TIMEZONE);
  }

  private static Summary summary(String json) throws SQLException {
    try {
      return Json.MAPPER.readValue(json, Summary.class);
    } catch (JsonProcessingException e) {
      throw new SQLException("unreadable session summary", e);
    }
  }

  /** Position in the list: the last row's creation time and id, opaque to clients. */
  private record Cursor(Instant createdAt, String id) {
    String encode() {
      String raw = createdAt.getEpochSecond() + "." + createdAt.getNano() + "." + id;
      return Base64.getUrlEncoder()
          .withoutPadding()
          .encodeToString(raw.getBytes(StandardCharsets.UTF_8));
    }

    static Cursor decode(String cursor) {
      try {
        String[] parts =
            new String(Base64.getUrlDecoder().decode(cursor), StandardCharsets.UTF_8)
                .split("\\.", 3);
        return new Cursor(
            Instant.ofEpochSecond(Long.parseLong(parts[0]), Long.parseLong(parts[1])), parts[2]);
      } catch (RuntimeException e) {
        throw new IllegalArgumentException("cursor is not one this API returned");
      }
    }
  }
}
