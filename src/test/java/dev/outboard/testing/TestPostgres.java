package dev.outboard.testing;

import java.security.SecureRandom;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.HexFormat;
import java.util.Properties;
import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;

/**
 * A fresh, empty database {@code outboard_it_<random>} on the local PostgreSQL ({@code
 * 127.0.0.1:5432}, user {@code postgres}), created through the {@code test} database and dropped by
 * {@link #close()}.
 *
 * <p>Without a reachable PostgreSQL the calling test is skipped with a notice on stderr, except
 * under {@code CI=true}, where a missing database fails the test: CI must run persistence tests.
 */
public final class TestPostgres implements AutoCloseable {
  public static final String SERVER = "jdbc:postgresql://127.0.0.1:5432/";
  public static final String USER = "postgres";
  private static final String ADMIN_DB = "test";
  private static final SecureRandom RANDOM = new SecureRandom();

  private final String database;

  private TestPostgres(String database) {
    this.database = database;
  }

  public static TestPostgres create() {
    Connection admin;
    try {
      admin = connect(ADMIN_DB);
    } catch (SQLException e) {
      throw unavailable(e);
    }
    byte[] suffix = new byte[6];
    RANDOM.nextBytes(suffix);
    String name = "outboard_it_" + HexFormat.of().formatHex(suffix);
    try (admin;
        Statement st = admin.createStatement()) {
      st.execute("CREATE DATABASE " + name);
    } catch (SQLException e) {
      throw new IllegalStateException(
          "could not create database " + name + ": " + e.getMessage(), e);
    }
    return new TestPostgres(name);
  }

  public String database() {
    return database;
  }

  public String url() {
    return SERVER + database;
  }

  public String user() {
    return USER;
  }

  /** A connection to this test's database, for assertions on what the service stored. */
  public Connection connection() throws SQLException {
    return connect(database);
  }

  @Override
  public void close() {
    try (Connection admin = connect(ADMIN_DB);
        Statement st = admin.createStatement()) {
      st.execute("DROP DATABASE IF EXISTS " + database + " WITH (FORCE)");
    } catch (SQLException e) {
      System.err.println(
          "[TestPostgres] could not drop database " + database + ": " + e.getMessage());
    }
  }

  private static Connection connect(String db) throws SQLException {
    Properties props = new Properties();
    props.setProperty("user", USER);
    props.setProperty("connectTimeout", "3");
    props.setProperty("loginTimeout", "5");
    props.setProperty("socketTimeout", "60");
    return DriverManager.getConnection(SERVER + db, props);
  }

  private static RuntimeException unavailable(SQLException e) {
    String what =
        "PostgreSQL is not reachable at "
            + SERVER
            + ADMIN_DB
            + " as "
            + USER
            + " ("
            + e.getMessage()
            + ")";
    if ("true".equalsIgnoreCase(System.getenv("CI"))) {
      Assertions.fail(what + "; CI=true, so tests that need PostgreSQL must not be skipped", e);
    }
    System.err.println(
        "*** SKIPPED: "
            + what
            + ". Start PostgreSQL 15 on 127.0.0.1:5432 (user postgres, trust auth, database test)"
            + " to run this test.");
    Assumptions.abort("SKIPPED: " + what);
    throw new AssertionError("unreachable");
  }
}
