package dev.outboard.store;

import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Executor;
import javax.sql.DataSource;

/**
 * Outboard's own tables (orgs, keys, sessions list, idempotency keys): a small connection pool
 * and a dedicated executor, so JDBC never runs on an actor's or the HTTP server's threads.
 */
public final class Database implements AutoCloseable {

  /** A unit of JDBC work. */
  @FunctionalInterface
  public interface Work<T> {
    T run(Connection connection) throws SQLException;
  }

  private final HikariDataSource dataSource;
  private final Executor blocking;
  private final boolean postgres;

  public Database(StoreSettings settings, Executor blocking) {
    HikariConfig config = new HikariConfig();
    config.setPoolName("outboard");
    config.setJdbcUrl(settings.url());
    config.setUsername(settings.user());
    config.setPassword(settings.password());
    config.setDriverClassName(settings.driver());
    config.setMaximumPoolSize(settings.poolSize());
    config.setMinimumIdle(1);
    this.dataSource = new HikariDataSource(config);
    this.blocking = blocking;
    this.postgres = settings.postgres();
  }

  public DataSource dataSource() {
    return dataSource;
  }

  public boolean postgres() {
    return postgres;
  }

  /** Runs {@code work} in its own transaction on the blocking executor. */
  public <T> CompletionStage<T> transact(Work<T> work) {
    return CompletableFuture.supplyAsync(() -> transactNow(work), blocking);
  }

  /** Runs {@code work} in its own transaction on the calling thread (start-up, tests). */
  public <T> T transactNow(Work<T> work) {
    try (Connection c = dataSource.getConnection()) {
      c.setAutoCommit(false);
      try {
        T result = work.run(c);
        c.commit();
        return result;
      } catch (SQLException | RuntimeException e) {
        c.rollback();
        throw e;
      }
    } catch (SQLException e) {
      throw new CompletionException(e);
    }
  }

  /** True if {@code e} (or its cause) is a unique-key violation. */
  public static boolean isUniqueViolation(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof SQLException sql && "23505".equals(sql.getSQLState())) return true;
    }
    return false;
  }

  @Override
  public void close() {
    dataSource.close();
  }
}
