package dev.outboard.store;

import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import java.sql.Connection;
import java.sql.SQLException;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import javax.sql.DataSource;

/**
 * Outboard's own tables (orgs, keys, sessions list, idempotency keys): a small connection pool and
 * a dedicated executor, so JDBC never runs on an actor's or the HTTP server's threads.
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

  /**
   * Runs {@code work} in its own transaction on the blocking executor, bounded by {@code bound}
   * from now (waiting for a connection included): if it is still running then, its connection is
   * aborted and the stage fails at once with {@link TransactionTimeout} (nothing was committed), or
   * with {@link CommitUnconfirmed} if the commit had been sent (it may have landed). A commit that
   * fails on a broken connection also ends in {@link CommitUnconfirmed}.
   */
  public <T> CompletionStage<T> transact(Duration bound, Work<T> work) {
    Bounded<T> tx = new Bounded<>(work, bound);
    blocking.execute(tx::run);
    CompletableFuture.delayedExecutor(bound.toNanos(), TimeUnit.NANOSECONDS).execute(tx::expire);
    return tx.result;
  }

  /** The bounded transaction did not finish in time; it was rolled back, nothing was committed. */
  public static final class TransactionTimeout extends SQLException {
    TransactionTimeout(Duration bound) {
      super(
          "the transaction did not finish within " + bound.toMillis() + " ms and was rolled back");
    }
  }

  /**
   * The commit was sent but not confirmed (timeout or broken connection): it may or may not have
   * landed.
   */
  public static final class CommitUnconfirmed extends SQLException {
    CommitUnconfirmed(String message, Throwable cause) {
      super(message, cause);
    }
  }

  /**
   * One bounded transaction: the worker and the watchdog race for its outcome through {@code
   * state}.
   */
  private final class Bounded<T> {
    private static final int RUNNING = 0;
    private static final int COMMITTING = 1;
    private static final int DONE = 2;
    private static final int EXPIRED = 3;

    final CompletableFuture<T> result = new CompletableFuture<>();
    private final AtomicInteger state = new AtomicInteger(RUNNING);
    private final Work<T> work;
    private final Duration bound;
    private volatile Connection connection;

    Bounded(Work<T> work, Duration bound) {
      this.work = work;
      this.bound = bound;
    }

    void run() {
      try (Connection c = dataSource.getConnection()) {
        connection = c;
        if (state.get() == EXPIRED) return; // answered already: do nothing with it
        c.setAutoCommit(false);
        T value;
        try {
          value = work.run(c);
        } catch (SQLException | RuntimeException e) {
          rollbackQuietly(c);
          if (state.compareAndSet(RUNNING, DONE)) result.completeExceptionally(e);
          return;
        }
        if (!state.compareAndSet(RUNNING, COMMITTING)) {
          rollbackQuietly(c);
          return;
        }
        try {
          c.commit();
        } catch (SQLException e) {
          // A refused commit rolled back; one on a broken connection may have landed.
          SQLException failure =
              e.getSQLState() != null && e.getSQLState().startsWith("08")
                  ? new CommitUnconfirmed("the commit was not confirmed: " + e.getMessage(), e)
                  : e;
          if (state.compareAndSet(COMMITTING, DONE)) result.completeExceptionally(failure);
          return;
        }
        if (state.compareAndSet(COMMITTING, DONE)) result.complete(value);
      } catch (SQLException | RuntimeException e) {
        if (state.compareAndSet(RUNNING, DONE) || state.compareAndSet(COMMITTING, DONE))
          result.completeExceptionally(e);
      }
    }

    void expire() {
      if (state.compareAndSet(RUNNING, EXPIRED)) {
        result.completeExceptionally(new TransactionTimeout(bound));
      } else if (state.compareAndSet(COMMITTING, EXPIRED)) {
        result.completeExceptionally(
            new CommitUnconfirmed(
                "the commit was not confirmed within " + bound.toMillis() + " ms", null));
      } else {
        return;
      }
      Connection c = connection;
      if (c != null) {
        try {
          c.abort(
              Runnable::run); // fails the worker's statement at once; the pool drops the connection
        } catch (SQLException | RuntimeException e) {
          // Not supported (H2 embedded has no network to hang on): the worker ends on its own.
        }
      }
    }
  }

  private static void rollbackQuietly(Connection c) {
    try {
      c.rollback();
    } catch (SQLException e) {
      // aborted or broken: nothing was committed
    }
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
  /**
   * A failure that says nothing about the work, only that the database could not be reached or was
   * going away (connection errors, an administrator's shutdown, the pool's closed connections, a
   * bounded transaction that was aborted): none of it committed, so it may be tried again.
   */
  public static boolean isTransient(Throwable error) {
    for (Throwable t = error; t != null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof CommitUnconfirmed) return false; // it may have committed
      if (t instanceof TransactionTimeout
          || t instanceof java.sql.SQLTransientException
          || t instanceof java.net.ConnectException) {
        return true;
      }
      if (t instanceof SQLException sql) {
        // No SQL state: the pool's own errors ("Connection is closed"); PostgreSQL's refusals all
        // have one.
        String state = sql.getSQLState();
        if (state == null
            || state.startsWith("08")
            || state.startsWith("57P")
            || state.equals("53300")) return true;
      }
    }
    return false;
  }

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
