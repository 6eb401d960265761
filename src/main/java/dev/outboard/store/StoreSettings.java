package dev.outboard.store;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.nio.file.Path;
import java.util.Map;

/**
 * Which database this node uses. No {@code outboard.db.url} means embedded mode: an H2 file
 * database under {@code outboard.data-dir}. A {@code jdbc:postgresql:} URL means PostgreSQL.
 */
public record StoreSettings(
    String url, String user, String password, Path dataDir, boolean embedded, int poolSize) {

  public static StoreSettings from(Config config) {
    Path dataDir = Path.of(config.getString("outboard.data-dir")).toAbsolutePath().normalize();
    String url = config.getString("outboard.db.url").trim();
    int poolSize = config.getInt("outboard.db.pool-size");
    if (url.isEmpty()) {
      // WRITE_DELAY=0: by default H2 writes a commit to its file up to 500 ms later, so a kill -9
      // (or an OOM kill) would lose transactions it had acknowledged: journal events, the sessions
      // list.
      String h2 = "jdbc:h2:file:" + dataDir.resolve("outboard") + ";WRITE_DELAY=0";
      return new StoreSettings(h2, "sa", "", dataDir, true, poolSize);
    }
    if (!url.startsWith("jdbc:postgresql:") && !url.startsWith("jdbc:h2:")) {
      throw new IllegalArgumentException(
          "OUTBOARD_DB_URL must be a jdbc:postgresql:// URL (or jdbc:h2: for tests), got a URL"
              + " starting "
              + url.substring(0, Math.min(url.length(), 16)));
    }
    return new StoreSettings(
        url,
        config.getString("outboard.db.user"),
        config.getString("outboard.db.password"),
        dataDir,
        false,
        poolSize);
  }

  public boolean postgres() {
    return url.startsWith("jdbc:postgresql:");
  }

  public String driver() {
    return postgres() ? "org.postgresql.Driver" : "org.h2.Driver";
  }

  /** The persistence plugin's shared Slick database, pointed at this store. */
  public Config persistenceOverlay() {
    String prefix = "pekko-persistence-jdbc.shared-databases.slick.";
    return ConfigFactory.parseMap(
        Map.of(
            prefix + "profile",
                postgres() ? "slick.jdbc.PostgresProfile$" : "slick.jdbc.H2Profile$",
            prefix + "db.url", url,
            prefix + "db.user", user,
            prefix + "db.password", password,
            prefix + "db.driver", driver()));
  }

  /** Safe for logs: the URL without credentials that some users put into it. */
  public String describe() {
    int q = url.indexOf('?');
    return (embedded ? "embedded H2 " : "") + (q < 0 ? url : url.substring(0, q));
  }
}
