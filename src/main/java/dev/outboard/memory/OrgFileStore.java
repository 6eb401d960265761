package dev.outboard.memory;

import dev.outboard.memory.OrgFileOp.Origin;
import dev.outboard.memory.OrgFileOp.Outcome;
import dev.outboard.store.Database;
import dev.outboard.store.Sql;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.CompletionStage;

/**
 * The org files in the database: reads straight from the tables, and {@link #applyBatch}, the one
 * transaction in which {@link OrgMemory} applies a group of queued writes (see {@link
 * OrgFileBatch}).
 */
public final class OrgFileStore {
  public static final String MEMORY = "memory";
  public static final String SKILLS = "skills";
  public static final int MAX_PATH = 1024;

  /** Failure code (HTTP 413): the file would be over {@code outboard.memory.max-file-bytes}. */
  public static final String FILE_TOO_LARGE = "file_too_large";

  /** Failure code (HTTP 400): the content has a NUL or an unpaired surrogate, which is not text. */
  public static final String NOT_TEXT = "not_text";

  private final Database db;
  private final long maxFileBytes;
  private final Duration transactionTimeout;

  /**
   * {@code transactionTimeout} bounds each write batch (see {@link Database#transact(Duration,
   * Database.Work)}); zero leaves it unbounded.
   */
  public OrgFileStore(Database db, long maxFileBytes, Duration transactionTimeout) {
    this.db = db;
    this.maxFileBytes = maxFileBytes;
    this.transactionTimeout = transactionTimeout;
  }

  /** A store whose write batches are not bounded in time (tests of the store's semantics). */
  public OrgFileStore(Database db, long maxFileBytes) {
    this(db, maxFileBytes, Duration.ZERO);
  }

  public long maxFileBytes() {
    return maxFileBytes;
  }

  public Duration transactionTimeout() {
    return transactionTimeout;
  }

  /** The current version of a file (no content for a listing). */
  public record FileInfo(
      String path, long version, long size, Instant updatedAt, String updatedBy) {}

  public record FileContent(FileInfo info, String content) {}

  public record VersionInfo(
      long version, String op, Instant updatedAt, String updatedBy, String session) {}

  // ------------------------------------------------------------------ reads

  public CompletionStage<Optional<FileContent>> read(String org, String ns, String path) {
    return db.transact(
        c ->
            Sql.one(
                c,
                "SELECT content, version, size_bytes, updated_at, updated_by FROM org_files WHERE"
                    + " org_id = ? AND namespace = ? AND path = ? AND content IS NOT NULL",
                rs ->
                    new FileContent(
                        new FileInfo(
                            path,
                            rs.getLong(2),
                            rs.getLong(3),
                            Sql.instant(rs, 4),
                            rs.getString(5)),
                        rs.getString(1)),
                org,
                ns,
                path));
  }

  /**
   * Current files whose path starts with {@code prefix}, by path (in code-point order, whatever the
   * database's collation: under anything but "C" the database orders and compares paths otherwise).
   */
  public CompletionStage<List<FileInfo>> list(String org, String ns, String prefix) {
    String like = prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%";
    return db.transact(
        c -> {
          List<FileInfo> out = new ArrayList<>();
          for (FileInfo f :
              Sql.query(
                  c,
                  "SELECT path, version, size_bytes, updated_at, updated_by FROM org_files WHERE"
                      + " org_id = ? AND namespace = ? AND content IS NOT NULL AND path LIKE ?"
                      + " ESCAPE '!'",
                  rs ->
                      new FileInfo(
                          rs.getString(1),
                          rs.getLong(2),
                          rs.getLong(3),
                          Sql.instant(rs, 4),
                          rs.getString(5)),
                  org,
                  ns,
                  like)) {
            if (f.path().startsWith(prefix)) out.add(f);
          }
          out.sort(Comparator.comparing(FileInfo::path));
          return out;
        });
  }

  /** Every version of a file, oldest first; empty if the file never existed. */
  public CompletionStage<List<VersionInfo>> history(String org, String ns, String path) {
    return db.transact(
        c ->
            Sql.query(
                c,
                "SELECT version, op, updated_at, updated_by, session_id FROM org_file_versions"
                    + " WHERE org_id = ? AND namespace = ? AND path = ? ORDER BY version",
                rs ->
                    new VersionInfo(
                        rs.getLong(1),
                        rs.getString(2),
                        Sql.instant(rs, 3),
                        rs.getString(4),
                        rs.getString(5)),
                org,
                ns,
                path));
  }

  /**
   * All current files of a namespace with their content, keyed by full virtual path ({@code
   * /memory/...}).
   */
  public CompletionStage<TreeMap<String, String>> contents(String org, String ns) {
    return db.transact(
        c -> {
          TreeMap<String, String> out = new TreeMap<>();
          Sql.each(
              c,
              "SELECT path, content FROM org_files WHERE org_id = ? AND namespace = ? AND"
                  + " content IS NOT NULL",
              rs -> out.put("/" + ns + "/" + rs.getString(1), rs.getString(2)),
              org,
              ns);
          return out;
        });
  }

  // ------------------------------------------------------------------ the write batch

  /** One queued write and who asked for it. */
  public record Request(OrgFileOp op, Origin origin) {}

  /**
   * Applies {@code requests} in order in ONE transaction and returns their outcomes. A request
   * whose (session, call) already has an outcome gets that outcome again and writes nothing. The
   * transaction is bounded by the store's transaction timeout.
   */
  public CompletionStage<List<Outcome>> applyBatch(String org, List<Request> requests) {
    Database.Work<List<Outcome>> batch = c -> OrgFileBatch.apply(c, org, maxFileBytes, requests);
    if (transactionTimeout.isZero()) return db.transact(batch);
    return db.transact(transactionTimeout, batch);
  }
}
