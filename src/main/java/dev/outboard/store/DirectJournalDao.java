package dev.outboard.store;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import org.apache.pekko.persistence.AtomicWrite;
import org.apache.pekko.persistence.PersistentRepr;
import org.apache.pekko.persistence.jdbc.PekkoSerialization;
import org.apache.pekko.persistence.jdbc.config.EventJournalTableColumnNames;
import org.apache.pekko.persistence.jdbc.config.EventJournalTableConfiguration;
import org.apache.pekko.persistence.jdbc.config.JournalConfig;
import org.apache.pekko.persistence.jdbc.journal.dao.DefaultJournalDao;
import org.apache.pekko.serialization.Serialization;
import org.apache.pekko.stream.Materializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import scala.collection.immutable.Seq;
import scala.concurrent.ExecutionContext;
import scala.concurrent.Future;
import scala.concurrent.Promise;
import scala.jdk.javaapi.CollectionConverters;
import scala.runtime.BoxedUnit;
import scala.util.Failure;
import scala.util.Success;
import scala.util.Try;
import slick.jdbc.JdbcBackend;
import slick.jdbc.JdbcProfile;

/**
 * pekko-persistence-jdbc's journal with a shorter write path: the events of a write go to the same
 * table, in the same columns and serialization, but as one multi-row {@code INSERT} (atomic on its
 * own, so one round trip and one commit) on a connection that a writer thread keeps, instead of a
 * stream stage, Slick's executor and a transaction of two round trips. The writes waiting when a
 * writer is free go together, as the plugin's own batching does. Reads, deletes and everything else
 * are the plugin's ({@link DefaultJournalDao}). Writes with tags or event metadata, which this
 * service does not use, take the plugin's path as well.
 *
 * <p>Selected by {@code jdbc-journal.dao}; {@code jdbc-journal.direct-writers} threads write.
 */
public final class DirectJournalDao extends DefaultJournalDao {
  private static final Logger log = LoggerFactory.getLogger(DirectJournalDao.class);

  /**
   * Rows a writer gathers before it writes (it may take one more write, of at most as many rows, so
   * a statement has at most 2,000 rows: 18,000 of the 65,535 parameters Postgres allows).
   */
  private static final int MAX_ROWS = 1000;

  private static final BoxedUnit UNIT = BoxedUnit.UNIT;

  private final JdbcBackend.JdbcDatabaseDef db;
  private final Serialization serialization;
  private final String insertPrefix;
  private static final String ROW_VALUES = "(?,?,?,?,?,?,?,?,?)";
  private final LinkedBlockingQueue<Pending> queue = new LinkedBlockingQueue<>();
  private final Map<Integer, String> statements = new ConcurrentHashMap<>();

  /** One {@code asyncWriteMessages}: its rows, and its answer once written. */
  private record Pending(
      List<Row> rows, List<Try<BoxedUnit>> results, Promise<Seq<Try<BoxedUnit>>> done) {}

  private record Row(
      String persistenceId,
      long seq,
      String writer,
      long timestamp,
      String adapterManifest,
      int serId,
      String serManifest,
      byte[] payload) {}

  public DirectJournalDao(
      JdbcBackend.JdbcDatabaseDef db,
      JdbcProfile profile,
      JournalConfig journalConfig,
      Serialization serialization,
      ExecutionContext ec,
      Materializer mat) {
    super(db, profile, journalConfig, serialization, ec, mat);
    this.db = db;
    this.serialization = serialization;
    EventJournalTableConfiguration table = journalConfig.eventJournalTableConfiguration();
    EventJournalTableColumnNames c = table.columnNames();
    String name =
        (table.schemaName().isDefined() ? quote(table.schemaName().get()) + "." : "")
            + quote(table.tableName());
    this.insertPrefix =
        "INSERT INTO "
            + name
            + " ("
            + String.join(
                ",",
                quote(c.deleted()),
                quote(c.persistenceId()),
                quote(c.sequenceNumber()),
                quote(c.writer()),
                quote(c.writeTimestamp()),
                quote(c.adapterManifest()),
                quote(c.eventSerId()),
                quote(c.eventSerManifest()),
                quote(c.eventPayload()))
            + ") VALUES ";
    int writers = mat.system().settings().config().getInt("jdbc-journal.direct-writers");
    List<Thread> threads = new ArrayList<>();
    for (int i = 0; i < writers; i++) {
      Thread t = new Thread(this::writeLoop, "journal-writer-" + i);
      t.setDaemon(true);
      t.start();
      threads.add(t);
    }
    mat.system().registerOnTermination(() -> threads.forEach(Thread::interrupt));
  }

  private static String quote(String identifier) {
    return '"' + identifier.replace("\"", "\"\"") + '"';
  }

  @Override
  public Future<Seq<Try<BoxedUnit>>> asyncWriteMessages(Seq<AtomicWrite> messages) {
    List<Row> rows = new ArrayList<>();
    List<Try<BoxedUnit>> results = new ArrayList<>();
    for (AtomicWrite write : CollectionConverters.asJava(messages)) {
      List<Row> written = new ArrayList<>();
      try {
        for (PersistentRepr repr : CollectionConverters.asJava(write.payload())) {
          if (repr.metadata().isDefined()
              || repr.payload() instanceof org.apache.pekko.persistence.journal.Tagged) {
            return super.asyncWriteMessages(messages);
          }
          PekkoSerialization.PekkoSerialized s =
              PekkoSerialization.serialize(serialization, repr.payload()).get();
          written.add(
              new Row(
                  repr.persistenceId(),
                  repr.sequenceNr(),
                  repr.writerUuid(),
                  repr.timestamp() == 0 ? System.currentTimeMillis() : repr.timestamp(),
                  repr.manifest(),
                  s.serId(),
                  s.serManifest(),
                  s.payload()));
        }
      } catch (RuntimeException e) {
        results.add(new Failure<>(e)); // rejected: not written, the entity is told
        continue;
      }
      rows.addAll(written);
      results.add(new Success<>(UNIT));
    }
    // A very large write goes the plugin's way (a statement has at most 65,535 parameters).
    if (rows.size() > MAX_ROWS) return super.asyncWriteMessages(messages);
    Promise<Seq<Try<BoxedUnit>>> done = Promise.apply();
    if (rows.isEmpty())
      return done.success(CollectionConverters.asScala(results).toList()).future();
    queue.add(new Pending(rows, results, done));
    return done.future();
  }

  // ---------------------------------------------------------------- the writers

  private void writeLoop() {
    Connection connection = null;
    List<Pending> batch = new ArrayList<>();
    while (true) {
      try {
        batch.add(queue.take());
        int rows = batch.get(0).rows().size();
        Pending next;
        // Other writers take from the same queue: only what poll() hands over is ours.
        while (rows < MAX_ROWS && (next = queue.poll()) != null) {
          batch.add(next);
          rows += next.rows().size();
        }
        if (connection == null) connection = open();
        connection = write(connection, batch);
      } catch (InterruptedException e) {
        closeQuietly(connection); // the actor system is terminating
        return;
      } catch (Exception | Error e) {
        // Whatever went wrong, the writes are answered and the writer goes on.
        for (Pending p : batch) p.done().tryFailure(e);
        connection = closeQuietly(connection);
        if (!(e instanceof SQLException))
          log.error("the journal writer failed a batch of {} writes", batch.size(), e);
      } finally {
        batch.clear();
      }
    }
  }

  /**
   * Writes {@code batch} in one statement; if that fails and there was more than one write, each
   * alone, so that one bad write (a sequence number already taken) fails only itself.
   */
  private Connection write(Connection connection, List<Pending> batch) throws SQLException {
    try {
      insertAndSucceed(connection, batch);
      return connection;
    } catch (SQLException first) {
      SQLException e = first;
      if (!isValid(connection)) {
        // The database dropped the connection (a restart): once more on a new one. Had the first
        // statement committed after all, this one fails on the taken sequence numbers, the writes
        // fail, and the entity's recovery finds its events.
        connection = replace(connection);
        try {
          insertAndSucceed(connection, batch);
          return connection;
        } catch (SQLException again) {
          e = again;
          if (!isValid(connection)) throw again;
        }
      }
      if (batch.size() == 1) throw e;
      log.debug(
          "a batch of {} journal writes failed; writing them one by one: {}",
          batch.size(),
          e.toString());
      connection = isValid(connection) ? connection : replace(connection);
      for (Pending p : batch) {
        try {
          insertAndSucceed(connection, List.of(p));
        } catch (SQLException single) {
          p.done().tryFailure(single);
          connection = isValid(connection) ? connection : replace(connection);
        }
      }
      return connection;
    }
  }

  /** Inserts {@code batch} in one statement, then completes each of its writes. */
  private void insertAndSucceed(Connection connection, List<Pending> batch) throws SQLException {
    insert(connection, batch);
    for (Pending p : batch) p.done().trySuccess(CollectionConverters.asScala(p.results()).toList());
  }

  private void insert(Connection connection, List<Pending> batch) throws SQLException {
    int count = 0;
    for (Pending p : batch) count += p.rows().size();
    try (PreparedStatement st = connection.prepareStatement(statement(count))) {
      int i = 1;
      for (Pending p : batch) {
        for (Row r : p.rows()) {
          st.setBoolean(i++, false);
          st.setString(i++, r.persistenceId());
          st.setLong(i++, r.seq());
          st.setString(i++, r.writer());
          st.setLong(i++, r.timestamp());
          st.setString(i++, r.adapterManifest());
          st.setInt(i++, r.serId());
          st.setString(i++, r.serManifest());
          st.setBytes(i++, r.payload());
        }
      }
      st.executeUpdate();
    }
  }

  /** The statement for {@code rows} rows; the common small ones are kept. */
  private String statement(int rows) {
    return rows <= 64 ? statements.computeIfAbsent(rows, this::build) : build(rows);
  }

  private String build(int rows) {
    StringBuilder b = new StringBuilder(insertPrefix.length() + rows * (ROW_VALUES.length() + 1));
    b.append(insertPrefix);
    for (int i = 0; i < rows; i++) b.append(i == 0 ? "" : ",").append(ROW_VALUES);
    return b.toString();
  }

  private Connection open() throws SQLException {
    Connection connection = db.source().createConnection();
    connection.setAutoCommit(true); // one statement, atomic on its own
    return connection;
  }

  private static boolean isValid(Connection connection) {
    try {
      return connection.isValid(2);
    } catch (SQLException e) {
      return false;
    }
  }

  private Connection replace(Connection broken) throws SQLException {
    closeQuietly(broken);
    return open();
  }

  private static Connection closeQuietly(Connection connection) {
    if (connection == null) return null;
    try {
      connection.close();
    } catch (SQLException ignored) {
      // it is being replaced
    }
    return null;
  }
}
