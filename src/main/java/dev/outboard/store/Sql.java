package dev.outboard.store;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Timestamp;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Optional;

/**
 * One JDBC statement at a time over Outboard's own tables, the same on H2 and PostgreSQL: the
 * parameters are bound by their Java type (see {@link #bind}), the rows mapped by a {@link Row}.
 * The caller owns the connection and its transaction ({@link Database#transact}).
 */
public final class Sql {
  private Sql() {}

  /** Maps the current row of a result set. */
  @FunctionalInterface
  public interface Row<T> {
    T map(ResultSet rs) throws SQLException;
  }

  /** Reads the current row of a result set. */
  @FunctionalInterface
  public interface Each {
    void accept(ResultSet rs) throws SQLException;
  }

  /**
   * SQL NULL of a {@link java.sql.Types} type, for a parameter whose type the database cannot infer
   * ({@code COALESCE(?, ...)}, {@code ? IS NULL}, {@code CASE WHEN ?}): a bare Java null is bound
   * untyped, which is right only where the parameter stands for a column ({@code SET col = ?},
   * {@code VALUES (?)}, {@code col = ?}).
   */
  public record Null(int sqlType) {}

  /** Every row of the query, mapped. */
  public static <T> List<T> query(Connection c, String sql, Row<T> row, Object... params)
      throws SQLException {
    List<T> out = new ArrayList<>();
    each(c, sql, rs -> out.add(row.map(rs)), params);
    return out;
  }

  /** Runs the query and hands each row to {@code each}. */
  public static void each(Connection c, String sql, Each each, Object... params)
      throws SQLException {
    try (PreparedStatement ps = c.prepareStatement(sql)) {
      bind(ps, params);
      try (ResultSet rs = ps.executeQuery()) {
        while (rs.next()) each.accept(rs);
      }
    }
  }

  /** The query's first row, mapped; empty if there is none (or it maps to null). */
  public static <T> Optional<T> one(Connection c, String sql, Row<T> row, Object... params)
      throws SQLException {
    try (PreparedStatement ps = c.prepareStatement(sql)) {
      bind(ps, params);
      try (ResultSet rs = ps.executeQuery()) {
        return rs.next() ? Optional.ofNullable(row.map(rs)) : Optional.empty();
      }
    }
  }

  /** Whether the query has a row. */
  public static boolean exists(Connection c, String sql, Object... params) throws SQLException {
    try (PreparedStatement ps = c.prepareStatement(sql)) {
      bind(ps, params);
      try (ResultSet rs = ps.executeQuery()) {
        return rs.next();
      }
    }
  }

  /** Runs an insert, update or delete; the number of rows it changed. */
  public static int update(Connection c, String sql, Object... params) throws SQLException {
    try (PreparedStatement ps = c.prepareStatement(sql)) {
      bind(ps, params);
      return ps.executeUpdate();
    }
  }

  /** Runs the statement once per row of parameters, as one batch; nothing if there are none. */
  public static int[] batch(Connection c, String sql, List<Object[]> rows) throws SQLException {
    if (rows.isEmpty()) return new int[0];
    try (PreparedStatement ps = c.prepareStatement(sql)) {
      for (Object[] row : rows) {
        bind(ps, row);
        ps.addBatch();
      }
      return ps.executeBatch();
    }
  }

  /**
   * Binds {@code params} from index 1: a String with {@code setString}, a Long, Integer or Boolean
   * with {@code setLong}, {@code setInt} or {@code setBoolean}, bytes with {@code setBytes}, a
   * {@link Timestamp} with {@code setTimestamp}, an {@link Instant} as its UTC {@link
   * OffsetDateTime} ({@code TIMESTAMP WITH TIME ZONE} on both databases), a {@link Null} with
   * {@code setNull}, anything else (null included) with {@code setObject}.
   */
  public static void bind(PreparedStatement ps, Object... params) throws SQLException {
    for (int i = 0; i < params.length; i++) {
      int at = i + 1;
      Object p = params[i];
      if (p instanceof String s) ps.setString(at, s);
      else if (p instanceof Long l) ps.setLong(at, l);
      else if (p instanceof Integer n) ps.setInt(at, n);
      else if (p instanceof Boolean b) ps.setBoolean(at, b);
      else if (p instanceof byte[] bytes) ps.setBytes(at, bytes);
      else if (p instanceof Timestamp t) ps.setTimestamp(at, t);
      else if (p instanceof Instant instant) ps.setObject(at, utc(instant));
      else if (p instanceof Null n) ps.setNull(at, n.sqlType());
      else ps.setObject(at, p);
    }
  }

  /** {@code value}, or SQL NULL of {@code sqlType} if it is null. */
  public static Object orNull(Object value, int sqlType) {
    return value == null ? new Null(sqlType) : value;
  }

  /** {@code n} parameter marks for an IN list: {@code ?, ?, ?}. */
  public static String marks(int n) {
    return String.join(", ", Collections.nCopies(n, "?"));
  }

  public static OffsetDateTime utc(Instant instant) {
    return OffsetDateTime.ofInstant(instant, ZoneOffset.UTC);
  }

  /** A {@code TIMESTAMP WITH TIME ZONE} column as an instant (null stays null). */
  public static Instant instant(ResultSet rs, int column) throws SQLException {
    OffsetDateTime at = rs.getObject(column, OffsetDateTime.class);
    return at == null ? null : at.toInstant();
  }
}
