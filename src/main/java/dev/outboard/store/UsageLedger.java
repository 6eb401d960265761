package dev.outboard.store;

import dev.outboard.JsonSerializable;
import dev.outboard.model.Usage;
import dev.outboard.ops.ServiceStop;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.time.Duration;
import java.time.Instant;
import java.time.LocalDate;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.pekko.actor.typed.ActorSystem;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Token usage per org and UTC day ({@code org_usage_daily}). Each model answer adds to a total in
 * memory; {@link #flush} adds the totals to the table in one transaction (every {@code
 * outboard.usage.flush-interval}, and when the node stops), so a turn costs no extra write. A node
 * that dies loses at most one interval of these daily totals (each session's own usage stays exact,
 * in its journal). A flush that fails keeps its totals for the next one.
 */
public final class UsageLedger {
  private static final Logger log = LoggerFactory.getLogger(UsageLedger.class);

  /** An org's usage on one day, as the API shows it. */
  public record Day(
      String date,
      long inputTokens,
      long outputTokens,
      long cacheReadTokens,
      long cacheWriteTokens,
      long turns)
      implements JsonSerializable {}

  private record Key(String org, LocalDate day) {}

  private final Database db;
  private final Map<Key, long[]> pending = new ConcurrentHashMap<>();

  public UsageLedger(Database db) {
    this.db = db;
  }

  /**
   * A ledger flushed every {@code outboard.usage.flush-interval}, and once more when the node
   * stops.
   */
  public static UsageLedger init(ActorSystem<?> system, Database db) {
    UsageLedger usage = new UsageLedger(db);
    Duration every = system.settings().config().getDuration("outboard.usage.flush-interval");
    var flushes =
        system
            .scheduler()
            .scheduleWithFixedDelay(every, every, usage::flush, system.executionContext());
    ServiceStop.registerAsync(
        system,
        "flush-usage",
        () -> {
          flushes.cancel();
          return usage.flush();
        });
    return usage;
  }

  /** One model answer of a session of {@code org}, at {@code at}. */
  public void add(String org, Usage usage, Instant at) {
    if (org == null) return;
    Key key = new Key(org, LocalDate.ofInstant(at, ZoneOffset.UTC));
    pending.compute(
        key,
        (k, t) -> {
          long[] totals = t == null ? new long[5] : t;
          totals[0] += usage.inputTokens();
          totals[1] += usage.outputTokens();
          totals[2] += usage.cacheReadTokens();
          totals[3] += usage.cacheWriteTokens();
          totals[4] += 1;
          return totals;
        });
  }

  /** Adds what was recorded since the last flush to the table (on the database's executor). */
  public CompletionStage<Void> flush() {
    if (pending.isEmpty()) return java.util.concurrent.CompletableFuture.completedFuture(null);
    Map<Key, long[]> batch = new java.util.HashMap<>();
    for (Key k : List.copyOf(pending.keySet())) {
      long[] t = pending.remove(k);
      if (t != null) batch.put(k, t);
    }
    return db.<Void>transact(
            c -> {
              for (Map.Entry<Key, long[]> e : batch.entrySet()) {
                long[] t = e.getValue();
                try (PreparedStatement up =
                    c.prepareStatement(
                        "UPDATE org_usage_daily SET input_tokens = input_tokens + ?, output_tokens"
                            + " = output_tokens + ?, cache_read_tokens = cache_read_tokens + ?,"
                            + " cache_write_tokens = cache_write_tokens + ?, turns = turns + ?"
                            + " WHERE org_id = ? AND usage_day = ?")) {
                  for (int i = 0; i < 5; i++) up.setLong(i + 1, t[i]);
                  up.setString(6, e.getKey().org());
                  up.setObject(7, e.getKey().day());
                  if (up.executeUpdate() == 1) continue;
                }
                try (PreparedStatement in =
                    c.prepareStatement(
                        "INSERT INTO org_usage_daily (org_id, usage_day, input_tokens,"
                            + " output_tokens, cache_read_tokens, cache_write_tokens, turns) VALUES"
                            + " (?, ?, ?, ?, ?, ?, ?)")) {
                  in.setString(1, e.getKey().org());
                  in.setObject(2, e.getKey().day());
                  for (int i = 0; i < 5; i++) in.setLong(i + 3, t[i]);
                  in.executeUpdate();
                }
              }
              return null;
            })
        .exceptionally(
            e -> {
              // Kept for the next flush (a row another node inserted meanwhile is updated then).
              batch.forEach(
                  (k, t) ->
                      pending.merge(
                          k,
                          t,
                          (a, b) -> {
                            for (int i = 0; i < 5; i++) a[i] += b[i];
                            return a;
                          }));
              log.warn(
                  "could not add to the daily usage totals (kept for the next try): {}",
                  e.toString());
              return null;
            });
  }

  /**
   * The org's days from {@code from} to {@code to} (inclusive), oldest first; days without usage
   * are left out.
   */
  public CompletionStage<List<Day>> days(String org, LocalDate from, LocalDate to) {
    return db.transact(
        c -> {
          try (PreparedStatement ps =
              c.prepareStatement(
                  "SELECT usage_day, input_tokens, output_tokens, cache_read_tokens,"
                      + " cache_write_tokens, turns FROM org_usage_daily WHERE org_id = ? AND"
                      + " usage_day >= ? AND usage_day <= ? ORDER BY usage_day")) {
            ps.setString(1, org);
            ps.setObject(2, from);
            ps.setObject(3, to);
            List<Day> out = new ArrayList<>();
            try (ResultSet rs = ps.executeQuery()) {
              while (rs.next()) {
                out.add(
                    new Day(
                        rs.getObject(1, LocalDate.class).toString(),
                        rs.getLong(2),
                        rs.getLong(3),
                        rs.getLong(4),
                        rs.getLong(5),
                        rs.getLong(6)));
              }
            }
            return out;
          }
        });
  }
}
