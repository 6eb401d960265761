package dev.outboard.store;

import static org.assertj.core.api.Assertions.assertThat;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import org.junit.jupiter.api.Test;

/**
 * The dispatcher that runs our JDBC work has one thread per connection of the pool, whatever the
 * pool size a deployment sets: a thread more would wait for a connection, one fewer would leave one
 * idle.
 */
class BlockingDispatcherTest {

  private static int threads(Config config) {
    return config.getInt("outboard-blocking-dispatcher.thread-pool-executor.fixed-pool-size");
  }

  @Test
  void theBlockingDispatcherHasOneThreadPerPooledConnection() {
    Config defaults = ConfigFactory.parseResources("application.conf").resolve();
    assertThat(threads(defaults)).isEqualTo(defaults.getInt("outboard.db.pool-size"));

    Config overlay =
        ConfigFactory.parseString("outboard.db.pool-size = 3")
            .withFallback(ConfigFactory.parseResources("application.conf"))
            .resolve();
    assertThat(threads(overlay)).isEqualTo(3);
  }
}
