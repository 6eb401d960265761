package dev.outboard.store;

import dev.outboard.JsonSerializable;
import dev.outboard.model.Usage;
import dev.outboard.ops.ServiceStop;
import java.time.Duration;
import java.time.Instant;
import java.time.LocalDate;
import java.time.ZoneOffset;
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
                String org = e.getKey().org();
                LocalDate day = e.getKey().day();
                int updated =
                    Sql.update(
                        c,
                        "UPDATE org_usage_daily SET input_tokens = input_tokens + ?, output_tokens"
                            + " = output_tokens + ?, cache_read_tokens = cache_read_tokens + ?,"
                            + " cache_write_tokens = cache_write_tokens + ?, turns = turns + ?"
                            + " WHERE org_id = ? AND usage_day = ?",
                        t[0],
                        t[1],
                        t[2],
                        t[3],
                        t[4],
                        org,
                        day);
                if (updated == 1) continue;
                Sql.update(
                    c,
                    "INSERT INTO org_usage_daily (org_id, usage_day, input_tokens,"
                        + " output_tokens, cache_read_tokens, cache_write_tokens, turns) VALUES"
                        + " (?, ?, ?, ?, ?, ?, ?)",
                    org,
                    day,
                    t[0],
                    t[1],
                    t[2],
                    t[3],
                    t[4]);
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
        c ->
            Sql.query(
                c,
                "SELECT usage_day, input_tokens, output_tokens, cache_read_tokens,"
                    + " cache_write_tokens, turns FROM org_usage_daily WHERE org_id = ? AND"
                    + " usage_day >= ? AND usage_day <= ? ORDER BY usage_day",
                rs ->
                    new Day(
                        rs.getObject(1, LocalDate.class).toString(),
                        rs.getLong(2),
                        rs.getLong(3),
                        rs.getLong(4),
                        rs.getLong(5),
                        rs.getLong(6)),
                org,
                from,
                to));
  }
}
