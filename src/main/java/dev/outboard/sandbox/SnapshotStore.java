package dev.outboard.sandbox;

import dev.outboard.store.Database;
import dev.outboard.store.Sql;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Timestamp;
import java.time.Instant;
import java.util.Optional;
import java.util.concurrent.CompletionStage;

/**
 * The last hibernation snapshot of each session's sandbox, in the store (table {@code
 * sandbox_snapshots}), so that a sandbox lost after its session restarted or moved to another node
 * is restored with its workspace. All calls run on the database's blocking executor.
 */
public final class SnapshotStore {

  /** A stored snapshot: the sandbox it was taken of, and the archive. */
  public record Snapshot(String sandboxId, byte[] bytes, Instant takenAt) {}

  private final Database db;

  public SnapshotStore(Database db) {
    this.db = db;
  }

  /** Replaces the session's snapshot with {@code bytes}, taken of {@code sandboxId}. */
  public CompletionStage<Void> save(String sessionId, String sandboxId, byte[] bytes) {
    Instant now = Instant.now();
    return db.transact(
        c -> {
          delete(c, sessionId);
          Sql.update(
              c,
              "INSERT INTO sandbox_snapshots (session_id, sandbox_id, snapshot, taken_at)"
                  + " VALUES (?, ?, ?, ?)",
              sessionId,
              sandboxId,
              bytes,
              Timestamp.from(now));
          return null;
        });
  }

  /** The session's last snapshot, if any. */
  public CompletionStage<Optional<Snapshot>> load(String sessionId) {
    return db.transact(
        c ->
            Sql.one(
                c,
                "SELECT sandbox_id, snapshot, taken_at FROM sandbox_snapshots WHERE session_id = ?",
                rs -> new Snapshot(rs.getString(1), rs.getBytes(2), rs.getTimestamp(3).toInstant()),
                sessionId));
  }

  /** Forgets the session's snapshot (its sandbox was destroyed). */
  public CompletionStage<Void> delete(String sessionId) {
    return db.transact(
        c -> {
          delete(c, sessionId);
          return null;
        });
  }

  private static void delete(Connection c, String sessionId) throws SQLException {
    Sql.update(c, "DELETE FROM sandbox_snapshots WHERE session_id = ?", sessionId);
  }
}
