package dev.outboard.store;

import javax.sql.DataSource;
import org.flywaydb.core.Flyway;
import org.flywaydb.core.api.output.MigrateResult;

/**
 * Creates and upgrades the schema (persistence tables and our own) through versioned Flyway
 * migrations: {@code db/migration/h2} or {@code db/migration/postgresql} holds the persistence
 * plugin's tables per database, {@code db/migration/common} our portable ones. Runs before the
 * ActorSystem starts sharding.
 */
public final class Migrations {
  private Migrations() {}

  public static MigrateResult migrate(DataSource dataSource, boolean postgres) {
    String vendor = postgres ? "postgresql" : "h2";
    return Flyway.configure()
        .dataSource(dataSource)
        .locations("classpath:db/migration/" + vendor, "classpath:db/migration/common")
        .failOnMissingLocations(false)
        .load()
        .migrate();
  }
}
