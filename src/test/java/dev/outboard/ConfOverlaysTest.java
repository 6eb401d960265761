package dev.outboard;

import static org.assertj.core.api.Assertions.assertThat;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigParseOptions;
import dev.outboard.store.StoreSettings;
import java.io.File;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The deployable overlays in conf/ load, resolve and say what they promise. */
class ConfOverlaysTest {

  private static Config overlay(String name) {
    Config file =
        ConfigFactory.parseFile(
            new File("conf/" + name + ".conf"),
            ConfigParseOptions.defaults().setAllowMissing(false));
    return ConfigFactory.defaultOverrides()
        .withFallback(file)
        .withFallback(ConfigFactory.defaultReference())
        .resolve();
  }

  @Test
  void embeddedOverlayKeepsTheEmbeddedDefaults() {
    Config c = overlay("embedded");
    assertThat(StoreSettings.from(c).embedded()).isTrue();
    assertThat(c.getString("pekko.persistence.journal.plugin")).isEqualTo("jdbc-journal");
    assertThat(c.getString("pekko.cluster.sharding.remember-entities-store"))
        .isEqualTo("eventsourced");
  }

  @Test
  void postgresOverlaySizesTheJournalPoolToItsThreads() {
    Config c = overlay("postgres");
    Config db = c.getConfig("pekko-persistence-jdbc.shared-databases.slick.db");
    assertThat(db.getInt("numThreads")).isEqualTo(db.getInt("maxConnections"));
  }

  @Test
  void clusterOverlayListensBeyondLoopback() {
    Config c = overlay("cluster");
    assertThat(c.getString("outboard.http.interface")).isEqualTo("0.0.0.0");
    assertThat(c.getString("pekko.cluster.downing-provider-class")).contains("SplitBrainResolver");
  }

  @Test
  void kubernetesOverlayFormsTheClusterThroughBootstrap() {
    Config c = overlay("kubernetes");
    assertThat(c.getBoolean("outboard.cluster.bootstrap")).isTrue();
    assertThat(
            c.getString(
                "pekko.management.cluster.bootstrap.contact-point-discovery.discovery-method"))
        .isEqualTo("kubernetes-api");
  }

  @Test
  void aPostgresUrlSelectsThePostgresProfile() {
    Config c =
        ConfigFactory.parseMap(Map.of("outboard.db.url", "jdbc:postgresql://127.0.0.1:5432/x"))
            .withFallback(ConfigFactory.load());
    StoreSettings store = StoreSettings.from(c);
    assertThat(store.embedded()).isFalse();
    Config merged = store.persistenceOverlay().withFallback(c);
    assertThat(merged.getString("pekko-persistence-jdbc.shared-databases.slick.profile"))
        .isEqualTo("slick.jdbc.PostgresProfile$");
  }
}
