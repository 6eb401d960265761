package dev.outboard.testing;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import org.apache.pekko.persistence.testkit.javadsl.EventSourcedBehaviorTestKit;

/**
 * The config of the tests' own local ActorSystems: {@code unit-test.conf} (local provider, the JVM
 * survives coordinated shutdown) over the application's config, so that the production
 * serialization bindings and dispatchers apply.
 */
public final class UnitTestConfig {
  private UnitTestConfig() {}

  /** {@code unit-test.conf} over the application's config, resolved. */
  public static Config local() {
    return ConfigFactory.parseResources("unit-test.conf")
        .withFallback(ConfigFactory.load())
        .resolve();
  }

  /** {@link #local()} on the persistence testkit's in-memory journal and snapshot store. */
  public static Config inMemoryPersistence() {
    return ConfigFactory.parseResources("unit-test.conf")
        .withFallback(EventSourcedBehaviorTestKit.config())
        .withFallback(ConfigFactory.load())
        .resolve();
  }
}
