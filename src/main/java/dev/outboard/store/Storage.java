package dev.outboard.store;

import dev.outboard.ops.ServiceStop;
import dev.outboard.ops.StartupChecks;
import java.io.IOException;
import java.nio.file.Files;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Opens a harness node's database at start: checks that it answers (the start-up check names the
 * settings to fix), pools its connections on the blocking dispatcher, closes the pool when the node
 * stops, and migrates the schema.
 */
public final class Storage {
  private static final Logger log = LoggerFactory.getLogger(Storage.class);

  private Storage() {}

  /**
   * The node's database, migrated. Tables first: remember-entities needs the journal before
   * sharding starts.
   */
  public static Database open(ActorSystem<?> system, StoreSettings store) throws IOException {
    log.info("storage: {}", store.describe());
    if (store.embedded()) Files.createDirectories(store.dataDir());
    StartupChecks.database(
        store, system.settings().config().getDuration("outboard.db.connect-timeout"));
    Database db =
        new Database(
            store,
            system
                .dispatchers()
                .lookup(DispatcherSelector.fromConfig("outboard-blocking-dispatcher")));
    ServiceStop.beforeTerminate(system, "close-database", db::close);
    var migrated = Migrations.migrate(db.dataSource(), store.postgres());
    if (migrated.migrationsExecuted > 0)
      log.info("schema migrated to version {}", migrated.targetSchemaVersion);
    return db;
  }
}
