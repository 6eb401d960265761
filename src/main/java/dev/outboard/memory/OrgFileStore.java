package dev.outboard.memory;

import com.fasterxml.jackson.core.JsonProcessingException;
import dev.outboard.Json;
import dev.outboard.memory.OrgFileOp.Origin;
import dev.outboard.memory.OrgFileOp.Outcome;
import dev.outboard.store.Database;
import dev.outboard.vfs.TextFiles;
import dev.outboard.vfs.TextFiles.ToolFailure;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.CompletionStage;

/**
 * The org files in the database: reads straight from the tables, and {@link #applyBatch}, the one
 * transaction in which {@link OrgMemory} applies a group of queued writes.
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
        c -> {
          try (PreparedStatement ps =
              c.prepareStatement(
                  "SELECT content, version, size_bytes, updated_at, updated_by FROM org_files WHERE"
                      + " org_id = ? AND namespace = ? AND path = ? AND content IS NOT NULL")) {
            ps.setString(1, org);
            ps.setString(2, ns);
            ps.setString(3, path);
            try (ResultSet rs = ps.executeQuery()) {
              if (!rs.next()) return Optional.<FileContent>empty();
              return Optional.of(
                  new FileContent(
                      new FileInfo(
                          path, rs.getLong(2), rs.getLong(3), instant(rs, 4), rs.getString(5)),
                      rs.getString(1)));
            }
          }
        });
  }

  /**
   * Current files whose path starts with {@code prefix}, by path (in code-point order, whatever the
   * database's collation: under anything but "C" the database orders and compares paths otherwise).
   */
  public CompletionStage<List<FileInfo>> list(String org, String ns, String prefix) {
    return db.transact(
        c -> {
          try (PreparedStatement ps =
              c.prepareStatement(
                  "SELECT path, version, size_bytes, updated_at, updated_by FROM org_files WHERE"
                      + " org_id = ? AND namespace = ? AND content IS NOT NULL AND path LIKE ?"
                      + " ESCAPE '!'")) {
            ps.setString(1, org);
            ps.setString(2, ns);
            ps.setString(3, prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%");
            List<FileInfo> out = new ArrayList<>();
            try (ResultSet rs = ps.executeQuery()) {
              while (rs.next()) {
                String path = rs.getString(1);
                if (path.startsWith(prefix))
                  out.add(
                      new FileInfo(
                          path, rs.getLong(2), rs.getLong(3), instant(rs, 4), rs.getString(5)));
              }
            }
            out.sort(java.util.Comparator.comparing(FileInfo::path));
            return out;
          }
        });
  }

  /** Every version of a file, oldest first; empty if the file never existed. */
  public CompletionStage<List<VersionInfo>> history(String org, String ns, String path) {
    return db.transact(
        c -> {
          try (PreparedStatement ps =
              c.prepareStatement(
                  "SELECT version, op, updated_at, updated_by, session_id FROM org_file_versions"
                      + " WHERE org_id = ? AND namespace = ? AND path = ? ORDER BY version")) {
            ps.setString(1, org);
            ps.setString(2, ns);
            ps.setString(3, path);
            List<VersionInfo> out = new ArrayList<>();
            try (ResultSet rs = ps.executeQuery()) {
              while (rs.next())
                out.add(
                    new VersionInfo(
                        rs.getLong(1),
                        rs.getString(2),
                        instant(rs, 3),
                        rs.getString(4),
                        rs.getString(5)));
            }
            return out;
          }
        });
  }

  /**
   * All current files of a namespace with their content, keyed by full virtual path ({@code
   * /memory/...}).
   */
  public CompletionStage<TreeMap<String, String>> contents(String org, String ns) {
    return db.transact(
        c -> {
          try (PreparedStatement ps =
              c.prepareStatement(
                  "SELECT path, content FROM org_files WHERE org_id = ? AND namespace = ? AND"
                      + " content IS NOT NULL")) {
            ps.setString(1, org);
            ps.setString(2, ns);
            TreeMap<String, String> out = new TreeMap<>();
            try (ResultSet rs = ps.executeQuery()) {
              while (rs.next()) out.put("/" + ns + "/" + rs.getString(1), rs.getString(2));
            }
            return out;
          }
        });
  }

  /** Read inside the write batch; the policy itself is set through {@code store.OrgPolicies}. */
  private static boolean agentsMayWriteSkills(Connection c, String org) throws SQLException {
    try (PreparedStatement ps =
        c.prepareStatement("SELECT agents_write_skills FROM orgs WHERE id = ?")) {
      ps.setString(1, org);
      try (ResultSet rs = ps.executeQuery()) {
        return rs.next() && rs.getBoolean(1);
      }
    }
  }

  // ------------------------------------------------------------------ the write batch

  /** One queued write and who asked for it. */
  public record Request(OrgFileOp op, Origin origin) {}

  /**
   * A file as the batch sees it: its row as read ({@code storedVersion}) and as the batch left it.
   */
  private static final class Current {
    final boolean rowExists;
    final long storedVersion;
    String content;
    long version;
    boolean dirty;
    Origin lastOrigin;
    Instant at;

    Current(boolean rowExists, long storedVersion, String content) {
      this.rowExists = rowExists;
      this.storedVersion = storedVersion;
      this.version = storedVersion;
      this.content = content;
    }
  }

  /**
   * Raised when a file changed under the batch (another writer for the org); the batch is retried.
   */
  public static final class ConcurrentWriteException extends SQLException {
    ConcurrentWriteException(String message) {
      super(message);
    }
  }

  /**
   * Applies {@code requests} in order in ONE transaction and returns their outcomes. A request
   * whose (session, call) already has an outcome gets that outcome again and writes nothing. The
   * transaction is bounded by the store's transaction timeout.
   */
  public CompletionStage<List<Outcome>> applyBatch(String org, List<Request> requests) {
    if (transactionTimeout.isZero()) return db.transact(c -> applyBatch(c, org, requests));
    return db.transact(transactionTimeout, c -> applyBatch(c, org, requests));
  }

  private List<Outcome> applyBatch(Connection c, String org, List<Request> requests)
      throws SQLException {
    Instant now = Instant.now();
    Boolean skillsAllowed = null;
    Map<String, Current> files = prefetchFiles(c, org, requests);
    Map<String, Outcome> byCall = storedOutcomes(c, requests);
    List<Outcome> outcomes = new ArrayList<>(requests.size());
    List<Object[]> versions = new ArrayList<>();
    List<Object[]> ops = new ArrayList<>();
    for (Request r : requests) {
      String callKey =
          r.origin().idempotent() ? r.origin().sessionId() + "\u0000" + r.origin().callId() : null;
      Outcome earlier = callKey == null ? null : byCall.get(callKey);
      if (earlier != null) {
        outcomes.add(earlier);
        continue;
      }
      Outcome outcome;
      if (r.op().ns().equals(SKILLS) && r.origin().isAgent()) {
        if (skillsAllowed == null) skillsAllowed = agentsMayWriteSkills(c, org);
      }
      if (r.op().ns().equals(SKILLS) && r.origin().isAgent() && !skillsAllowed) {
        outcome =
            Outcome.failed(
                "forbidden",
                "agents of this organisation may not write /skills; skills are curated through the"
                    + " files API");
      } else {
        outcome = apply(c, org, r, files, versions, now);
      }
      outcomes.add(outcome);
      if (callKey != null) {
        byCall.put(callKey, outcome);
        ops.add(
            new Object[] {
              r.origin().sessionId(), r.origin().callId(), org, json(outcome), utc(now)
            });
      }
    }
    writeFiles(c, org, files);
    batchInsert(
        c,
        "INSERT INTO org_file_versions (org_id, namespace, path, version, op, content, size_bytes,"
            + " updated_at, updated_by, session_id, call_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            + " ?)",
        versions);
    batchInsert(
        c,
        "INSERT INTO org_file_ops (session_id, call_id, org_id, outcome, created_at) VALUES (?, ?,"
            + " ?, ?, ?)",
        ops);
    return outcomes;
  }

  private Outcome apply(
      Connection c,
      String org,
      Request r,
      Map<String, Current> files,
      List<Object[]> versions,
      Instant now)
      throws SQLException {
    OrgFileOp op = r.op();
    String shown = "/" + op.ns() + "/" + op.path();
    Current cur = current(files, op.ns(), op.path());
    String next;
    String verb;
    if (op instanceof OrgFileOp.Write w) {
      if (w.ifVersion() != null && w.ifVersion() != (cur.content == null ? 0 : cur.version)) {
        return Outcome.failed(
            "precondition_failed",
            shown
                + " is at version "
                + (cur.content == null ? 0 : cur.version)
                + ", not "
                + w.ifVersion());
      }
      next = w.content();
      verb = "write";
    } else if (op instanceof OrgFileOp.Edit e) {
      if (cur.content == null) return Outcome.failed("not_found", "file not found: " + shown);
      try {
        next = TextFiles.edit(shown, cur.content, e.oldString(), e.newString(), e.replaceAll());
      } catch (ToolFailure f) {
        return Outcome.failed("edit_failed", f.getMessage());
      }
      verb = "edit";
    } else if (op instanceof OrgFileOp.Delete d) {
      if (cur.content == null) return Outcome.failed("not_found", "file not found: " + shown);
      if (d.ifVersion() != null && d.ifVersion() != cur.version) {
        return Outcome.failed(
            "precondition_failed",
            shown + " is at version " + cur.version + ", not " + d.ifVersion());
      }
      next = null;
      verb = "delete";
    } else {
      OrgFileOp.Rename rn = (OrgFileOp.Rename) op;
      if (cur.content == null) return Outcome.failed("not_found", "file not found: " + shown);
      Current target = current(files, op.ns(), rn.toPath());
      if (target.content != null)
        return Outcome.failed("exists", "/" + op.ns() + "/" + rn.toPath() + " exists already");
      String content = cur.content;
      record(org, cur, op.ns(), op.path(), null, "rename", r.origin(), versions, now);
      long version =
          record(org, target, op.ns(), rn.toPath(), content, "rename", r.origin(), versions, now);
      return Outcome.done(
          "/" + op.ns() + "/" + rn.toPath(),
          version,
          true,
          "renamed " + shown + " to /" + op.ns() + "/" + rn.toPath());
    }
    if (next != null) {
      long size = next.getBytes(StandardCharsets.UTF_8).length;
      if (size > maxFileBytes) {
        return Outcome.failed(
            FILE_TOO_LARGE,
            shown
                + " would be "
                + size
                + " bytes; org files are limited to "
                + maxFileBytes
                + " bytes");
      }
      // PostgreSQL's text cannot hold NUL, and an unpaired surrogate would be stored as '?'.
      String notText = TextFiles.notText(next);
      if (notText != null)
        return Outcome.failed(NOT_TEXT, shown + " would not be text: it contains " + notText);
    }
    boolean created = cur.content == null;
    long version = record(org, cur, op.ns(), op.path(), next, verb, r.origin(), versions, now);
    String message =
        next == null
            ? "deleted " + shown + " (version " + version + ")"
            : (verb.equals("edit") ? "edited " : "wrote ")
                + shown
                + " (version "
                + version
                + ", "
                + next.getBytes(StandardCharsets.UTF_8).length
                + " bytes)";
    return Outcome.done(shown, version, created, message);
  }

  /** Records a new version of {@code cur} in the batch and returns its number. */
  private static long record(
      String org,
      Current cur,
      String ns,
      String path,
      String content,
      String op,
      Origin origin,
      List<Object[]> versions,
      Instant now) {
    cur.version++;
    cur.content = content;
    cur.dirty = true;
    cur.lastOrigin = origin;
    cur.at = now;
    long size = content == null ? 0 : content.getBytes(StandardCharsets.UTF_8).length;
    versions.add(
        new Object[] {
          org,
          ns,
          path,
          cur.version,
          op,
          content,
          size,
          utc(now),
          origin.user(),
          origin.sessionId(),
          origin.callId()
        });
    return cur.version;
  }

  /**
   * The batch's view of a file; every path a batch touches was read up front by {@link
   * #prefetchFiles}.
   */
  private static Current current(Map<String, Current> files, String ns, String path) {
    Current cur = files.get(ns + "/" + path);
    if (cur == null) throw new IllegalStateException("not prefetched: /" + ns + "/" + path);
    return cur;
  }

  /** Writes each changed file once, guarded by the version the batch read. */
  private static void writeFiles(Connection c, String org, Map<String, Current> files)
      throws SQLException {
    List<Object[]> inserts = new ArrayList<>();
    List<String> updated = new ArrayList<>();
    try (PreparedStatement up =
        c.prepareStatement(
            "UPDATE org_files SET content = ?, version = ?, size_bytes = ?, updated_at = ?,"
                + " updated_by = ?, session_id = ? WHERE org_id = ? AND namespace = ? AND path = ?"
                + " AND version = ?")) {
      for (Map.Entry<String, Current> e : files.entrySet()) {
        Current cur = e.getValue();
        if (!cur.dirty) continue;
        String ns = e.getKey().substring(0, e.getKey().indexOf('/'));
        String path = e.getKey().substring(ns.length() + 1);
        long size = cur.content == null ? 0 : cur.content.getBytes(StandardCharsets.UTF_8).length;
        if (!cur.rowExists) {
          inserts.add(
              new Object[] {
                org,
                ns,
                path,
                cur.content,
                cur.version,
                size,
                utc(cur.at),
                cur.lastOrigin.user(),
                cur.lastOrigin.sessionId()
              });
          continue;
        }
        up.setString(1, cur.content);
        up.setLong(2, cur.version);
        up.setLong(3, size);
        up.setObject(4, utc(cur.at));
        up.setString(5, cur.lastOrigin.user());
        up.setString(6, cur.lastOrigin.sessionId());
        up.setString(7, org);
        up.setString(8, ns);
        up.setString(9, path);
        up.setLong(10, cur.storedVersion);
        up.addBatch();
        updated.add("/" + ns + "/" + path);
      }
      if (!updated.isEmpty()) {
        int[] counts = up.executeBatch();
        for (int i = 0; i < counts.length; i++) {
          if (counts[i] != 1 && counts[i] != java.sql.Statement.SUCCESS_NO_INFO) {
            throw new ConcurrentWriteException(updated.get(i) + " changed under the batch");
          }
        }
      }
    }
    batchInsert(
        c,
        "INSERT INTO org_files (org_id, namespace, path, content, version, size_bytes, updated_at,"
            + " updated_by, session_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        inserts);
  }

  private static void batchInsert(Connection c, String sql, List<Object[]> rows)
      throws SQLException {
    if (rows.isEmpty()) return;
    try (PreparedStatement ps = c.prepareStatement(sql)) {
      for (Object[] row : rows) {
        for (int i = 0; i < row.length; i++) ps.setObject(i + 1, row[i]);
        ps.addBatch();
      }
      ps.executeBatch();
    }
  }

  /** The files a batch touches, read in one query per namespace. */
  private static Map<String, Current> prefetchFiles(
      Connection c, String org, List<Request> requests) throws SQLException {
    Map<String, java.util.Set<String>> byNs = new HashMap<>();
    for (Request r : requests) {
      byNs.computeIfAbsent(r.op().ns(), k -> new java.util.LinkedHashSet<>()).add(r.op().path());
      if (r.op() instanceof OrgFileOp.Rename rn) byNs.get(rn.ns()).add(rn.toPath());
    }
    Map<String, Current> files = new HashMap<>();
    for (Map.Entry<String, java.util.Set<String>> e : byNs.entrySet()) {
      List<String> paths = new ArrayList<>(e.getValue());
      String marks = String.join(", ", java.util.Collections.nCopies(paths.size(), "?"));
      try (PreparedStatement ps =
          c.prepareStatement(
              "SELECT path, content, version FROM org_files WHERE org_id = ? AND namespace = ? AND"
                  + " path IN ("
                  + marks
                  + ")")) {
        ps.setString(1, org);
        ps.setString(2, e.getKey());
        for (int i = 0; i < paths.size(); i++) ps.setString(i + 3, paths.get(i));
        try (ResultSet rs = ps.executeQuery()) {
          while (rs.next())
            files.put(
                e.getKey() + "/" + rs.getString(1),
                new Current(true, rs.getLong(3), rs.getString(2)));
        }
      }
      for (String path : paths)
        files.putIfAbsent(e.getKey() + "/" + path, new Current(false, 0, null));
    }
    return files;
  }

  /** Outcomes already recorded for the batch's (session, call) pairs, keyed as in applyBatch. */
  private static Map<String, Outcome> storedOutcomes(Connection c, List<Request> requests)
      throws SQLException {
    java.util.Set<String> sessions = new java.util.LinkedHashSet<>();
    java.util.Set<String> calls = new java.util.LinkedHashSet<>();
    for (Request r : requests) {
      if (!r.origin().idempotent()) continue;
      sessions.add(r.origin().sessionId());
      calls.add(r.origin().callId());
    }
    Map<String, Outcome> out = new HashMap<>();
    if (sessions.isEmpty()) return out;
    String sMarks = String.join(", ", java.util.Collections.nCopies(sessions.size(), "?"));
    String cMarks = String.join(", ", java.util.Collections.nCopies(calls.size(), "?"));
    try (PreparedStatement ps =
        c.prepareStatement(
            "SELECT session_id, call_id, outcome FROM org_file_ops"
                + " WHERE session_id IN ("
                + sMarks
                + ") AND call_id IN ("
                + cMarks
                + ")")) {
      int i = 1;
      for (String s : sessions) ps.setString(i++, s);
      for (String cl : calls) ps.setString(i++, cl);
      try (ResultSet rs = ps.executeQuery()) {
        while (rs.next())
          out.put(
              rs.getString(1) + "\u0000" + rs.getString(2),
              Json.MAPPER.readValue(rs.getString(3), Outcome.class));
      }
    } catch (JsonProcessingException e) {
      throw new SQLException("unreadable stored outcome", e);
    }
    return out;
  }

  private static String json(Outcome outcome) {
    try {
      return Json.MAPPER.writeValueAsString(outcome);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  private static OffsetDateTime utc(Instant i) {
    return OffsetDateTime.ofInstant(i, ZoneOffset.UTC);
  }

  private static Instant instant(ResultSet rs, int column) throws SQLException {
    return rs.getObject(column, OffsetDateTime.class).toInstant();
  }
}
