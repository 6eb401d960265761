package dev.outboard.memory;

import static dev.outboard.memory.OrgFileStore.FILE_TOO_LARGE;
import static dev.outboard.memory.OrgFileStore.NOT_TEXT;
import static dev.outboard.memory.OrgFileStore.SKILLS;

import com.fasterxml.jackson.core.JsonProcessingException;
import dev.outboard.Json;
import dev.outboard.memory.OrgFileOp.Origin;
import dev.outboard.memory.OrgFileOp.Outcome;
import dev.outboard.memory.OrgFileStore.Request;
import dev.outboard.store.Sql;
import dev.outboard.vfs.TextFiles;
import dev.outboard.vfs.TextFiles.ToolFailure;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * One batch of queued org-file writes, applied in the caller's transaction ({@link
 * OrgFileStore#applyBatch}): the files it touches and the outcomes already recorded for its
 * (session, call) pairs are read up front, the requests are applied in order to that view, and the
 * changed files, their new versions and the new outcomes are written at the end.
 */
final class OrgFileBatch {

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
  static final class ConcurrentWriteException extends SQLException {
    ConcurrentWriteException(String message) {
      super(message);
    }
  }

  private final Connection c;
  private final String org;
  private final long maxFileBytes;
  private final Instant now = Instant.now();
  private final List<Object[]> versions = new ArrayList<>();
  private Map<String, Current> files;
  private Boolean skillsAllowed;

  private OrgFileBatch(Connection c, String org, long maxFileBytes) {
    this.c = c;
    this.org = org;
    this.maxFileBytes = maxFileBytes;
  }

  /**
   * Applies {@code requests} in order and returns their outcomes. A request whose (session, call)
   * already has an outcome gets that outcome again and writes nothing.
   */
  static List<Outcome> apply(Connection c, String org, long maxFileBytes, List<Request> requests)
      throws SQLException {
    return new OrgFileBatch(c, org, maxFileBytes).apply(requests);
  }

  private List<Outcome> apply(List<Request> requests) throws SQLException {
    files = prefetchFiles(requests);
    Map<String, Outcome> byCall = storedOutcomes(requests);
    List<Outcome> outcomes = new ArrayList<>(requests.size());
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
      if (r.op().ns().equals(SKILLS) && r.origin().isAgent() && !skillsAllowed()) {
        outcome =
            Outcome.failed(
                "forbidden",
                "agents of this organisation may not write /skills; skills are curated through the"
                    + " files API");
      } else {
        outcome = apply(r);
      }
      outcomes.add(outcome);
      if (callKey != null) {
        byCall.put(callKey, outcome);
        ops.add(
            new Object[] {
              r.origin().sessionId(), r.origin().callId(), org, Json.write(outcome), now
            });
      }
    }
    writeFiles();
    Sql.batch(
        c,
        "INSERT INTO org_file_versions (org_id, namespace, path, version, op, content, size_bytes,"
            + " updated_at, updated_by, session_id, call_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            + " ?)",
        versions);
    Sql.batch(
        c,
        "INSERT INTO org_file_ops (session_id, call_id, org_id, outcome, created_at) VALUES (?, ?,"
            + " ?, ?, ?)",
        ops);
    return outcomes;
  }

  /** Read once per batch, when it first matters; the policy is set through {@code OrgPolicies}. */
  private boolean skillsAllowed() throws SQLException {
    if (skillsAllowed == null) {
      skillsAllowed =
          Sql.one(
                  c,
                  "SELECT agents_write_skills FROM orgs WHERE id = ?",
                  rs -> rs.getBoolean(1),
                  org)
              .orElse(false);
    }
    return skillsAllowed;
  }

  private Outcome apply(Request r) {
    OrgFileOp op = r.op();
    String shown = "/" + op.ns() + "/" + op.path();
    Current cur = current(op.ns(), op.path());
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
      return rename((OrgFileOp.Rename) op, cur, r.origin());
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
    long version = record(cur, op.ns(), op.path(), next, verb, r.origin());
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

  private Outcome rename(OrgFileOp.Rename rn, Current cur, Origin origin) {
    String shown = "/" + rn.ns() + "/" + rn.path();
    if (cur.content == null) return Outcome.failed("not_found", "file not found: " + shown);
    Current target = current(rn.ns(), rn.toPath());
    if (target.content != null)
      return Outcome.failed("exists", "/" + rn.ns() + "/" + rn.toPath() + " exists already");
    String content = cur.content;
    record(cur, rn.ns(), rn.path(), null, "rename", origin);
    long version = record(target, rn.ns(), rn.toPath(), content, "rename", origin);
    return Outcome.done(
        "/" + rn.ns() + "/" + rn.toPath(),
        version,
        true,
        "renamed " + shown + " to /" + rn.ns() + "/" + rn.toPath());
  }

  /** Records a new version of {@code cur} in the batch and returns its number. */
  private long record(
      Current cur, String ns, String path, String content, String op, Origin origin) {
    cur.version++;
    cur.content = content;
    cur.dirty = true;
    cur.lastOrigin = origin;
    cur.at = now;
    versions.add(
        new Object[] {
          org,
          ns,
          path,
          cur.version,
          op,
          content,
          size(content),
          now,
          origin.user(),
          origin.sessionId(),
          origin.callId()
        });
    return cur.version;
  }

  private static long size(String content) {
    return content == null ? 0 : content.getBytes(StandardCharsets.UTF_8).length;
  }

  /**
   * The batch's view of a file; every path a batch touches was read up front by {@link
   * #prefetchFiles}.
   */
  private Current current(String ns, String path) {
    Current cur = files.get(ns + "/" + path);
    if (cur == null) throw new IllegalStateException("not prefetched: /" + ns + "/" + path);
    return cur;
  }

  /** Writes each changed file once, guarded by the version the batch read. */
  private void writeFiles() throws SQLException {
    List<Object[]> inserts = new ArrayList<>();
    List<Object[]> updates = new ArrayList<>();
    List<String> updated = new ArrayList<>();
    for (Map.Entry<String, Current> e : files.entrySet()) {
      Current cur = e.getValue();
      if (!cur.dirty) continue;
      String ns = e.getKey().substring(0, e.getKey().indexOf('/'));
      String path = e.getKey().substring(ns.length() + 1);
      String user = cur.lastOrigin.user();
      String session = cur.lastOrigin.sessionId();
      long size = size(cur.content);
      if (!cur.rowExists) {
        inserts.add(
            new Object[] {org, ns, path, cur.content, cur.version, size, cur.at, user, session});
      } else {
        updates.add(
            new Object[] {
              cur.content,
              cur.version,
              size,
              cur.at,
              user,
              session,
              org,
              ns,
              path,
              cur.storedVersion
            });
        updated.add("/" + ns + "/" + path);
      }
    }
    int[] counts =
        Sql.batch(
            c,
            "UPDATE org_files SET content = ?, version = ?, size_bytes = ?, updated_at = ?,"
                + " updated_by = ?, session_id = ? WHERE org_id = ? AND namespace = ? AND path = ?"
                + " AND version = ?",
            updates);
    for (int i = 0; i < counts.length; i++) {
      if (counts[i] != 1 && counts[i] != Statement.SUCCESS_NO_INFO) {
        throw new ConcurrentWriteException(updated.get(i) + " changed under the batch");
      }
    }
    Sql.batch(
        c,
        "INSERT INTO org_files (org_id, namespace, path, content, version, size_bytes, updated_at,"
            + " updated_by, session_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        inserts);
  }

  /** The files a batch touches, read in one query per namespace. */
  private Map<String, Current> prefetchFiles(List<Request> requests) throws SQLException {
    Map<String, Set<String>> byNs = new HashMap<>();
    for (Request r : requests) {
      byNs.computeIfAbsent(r.op().ns(), k -> new LinkedHashSet<>()).add(r.op().path());
      if (r.op() instanceof OrgFileOp.Rename rn) byNs.get(rn.ns()).add(rn.toPath());
    }
    Map<String, Current> found = new HashMap<>();
    for (Map.Entry<String, Set<String>> e : byNs.entrySet()) {
      String ns = e.getKey();
      List<Object> params = new ArrayList<>(List.of(org, ns));
      params.addAll(e.getValue());
      Sql.each(
          c,
          "SELECT path, content, version FROM org_files WHERE org_id = ? AND namespace = ? AND"
              + " path IN ("
              + Sql.marks(e.getValue().size())
              + ")",
          rs ->
              found.put(
                  ns + "/" + rs.getString(1), new Current(true, rs.getLong(3), rs.getString(2))),
          params.toArray());
      for (String path : e.getValue())
        found.putIfAbsent(ns + "/" + path, new Current(false, 0, null));
    }
    return found;
  }

  /** Outcomes already recorded for the batch's (session, call) pairs, keyed as in apply. */
  private Map<String, Outcome> storedOutcomes(List<Request> requests) throws SQLException {
    Set<String> sessions = new LinkedHashSet<>();
    Set<String> calls = new LinkedHashSet<>();
    for (Request r : requests) {
      if (!r.origin().idempotent()) continue;
      sessions.add(r.origin().sessionId());
      calls.add(r.origin().callId());
    }
    Map<String, Outcome> out = new HashMap<>();
    if (sessions.isEmpty()) return out;
    List<Object> params = new ArrayList<>(sessions);
    params.addAll(calls);
    Sql.each(
        c,
        "SELECT session_id, call_id, outcome FROM org_file_ops"
            + " WHERE session_id IN ("
            + Sql.marks(sessions.size())
            + ") AND call_id IN ("
            + Sql.marks(calls.size())
            + ")",
        rs -> out.put(rs.getString(1) + "\u0000" + rs.getString(2), outcome(rs.getString(3))),
        params.toArray());
    return out;
  }

  private static Outcome outcome(String json) throws SQLException {
    try {
      return Json.MAPPER.readValue(json, Outcome.class);
    } catch (JsonProcessingException e) {
      throw new SQLException("unreadable stored outcome", e);
    }
  }
}
