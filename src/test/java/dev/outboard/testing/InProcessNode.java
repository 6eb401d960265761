package dev.outboard.testing;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.outboard.Main;
import dev.outboard.store.StoreSettings;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * A one-node Outboard cluster in this JVM, on free loopback ports and a fresh data directory,
 * started through {@link Main#start} exactly as {@code serve} does. Give it a PostgreSQL URL (see
 * {@link TestPostgres}) or an empty one for embedded H2. The scripted model is allowed.
 */
public final class InProcessNode implements AutoCloseable {
  private static final Duration READY_TIMEOUT = Duration.ofSeconds(60);

  private final ActorSystem<Void> system;
  private final String baseUrl;
  private final String adminToken;
  private final Path dataDir;
  private dev.outboard.store.Database database;

  private InProcessNode(ActorSystem<Void> system, String baseUrl, String adminToken, Path dataDir) {
    this.system = system;
    this.baseUrl = baseUrl;
    this.adminToken = adminToken;
    this.dataDir = dataDir;
  }

  /**
   * Starts a node and waits until its API answers. {@code overrides} are config paths and values
   * that win over the defaults here, e.g. {@code "outboard.http.max-body-bytes" -> "64KiB"}.
   */
  public static InProcessNode start(String dbUrl, Map<String, Object> overrides)
      throws IOException {
    int[] ports = Ports.free(2);
    Path dataDir = Files.createTempDirectory("outboard-it-");
    // Sandboxes live below the data dir; under root their unprivileged user must be able to
    // traverse it.
    Files.setPosixFilePermissions(
        dataDir, java.nio.file.attribute.PosixFilePermissions.fromString("rwx--x--x"));
    byte[] token = new byte[16];
    new SecureRandom().nextBytes(token);
    String adminToken = "it-admin-" + HexFormat.of().formatHex(token);

    Map<String, Object> settings = new HashMap<>();
    settings.put("outboard.http.interface", "127.0.0.1");
    settings.put("outboard.http.port", ports[0]);
    settings.put("pekko.management.http.hostname", "127.0.0.1");
    settings.put("pekko.management.http.port", ports[1]);
    settings.put("pekko.management.http.bind-hostname", "127.0.0.1");
    settings.put("pekko.management.http.bind-port", ports[1]);
    settings.put("pekko.remote.artery.canonical.hostname", "127.0.0.1");
    settings.put("pekko.remote.artery.canonical.port", 0);
    settings.put("outboard.data-dir", dataDir.toString());
    settings.put("outboard.db.url", dbUrl == null ? "" : dbUrl);
    settings.put("outboard.db.user", dbUrl == null || dbUrl.isEmpty() ? "" : TestPostgres.USER);
    settings.put("outboard.db.password", "");
    settings.put("outboard.admin-token", adminToken);
    settings.put("outboard.allow-scripted", true);
    settings.put("outboard.cluster.bootstrap", false);
    // Terminating the system must not end the test JVM (cluster.conf says exit-jvm = on).
    settings.put("pekko.coordinated-shutdown.exit-jvm", "off");
    settings.put("pekko.coordinated-shutdown.run-by-jvm-shutdown-hook", "off");
    settings.put("pekko.cluster.jmx.multi-mbeans-in-same-jvm", "on");
    settings.putAll(overrides);

    // Unresolved application.conf below the overrides, so that its substitutions see them.
    Config config =
        ConfigFactory.parseMap(settings)
            .withFallback(ConfigFactory.defaultApplication())
            .withFallback(ConfigFactory.defaultReference())
            .resolve();
    StoreSettings store = StoreSettings.from(config);
    config = store.persistenceOverlay().withFallback(config).resolve();

    ActorSystem<Void> system = ActorSystem.create(Behaviors.empty(), "outboard", config);
    InProcessNode node =
        new InProcessNode(system, "http://127.0.0.1:" + ports[0], adminToken, dataDir);
    try {
      node.database = Main.start(system, store);
      node.awaitApi();
    } catch (IOException | RuntimeException | Error e) {
      node.close();
      throw e;
    }
    return node;
  }

  /** The API answers (401 to an anonymous list) once the HTTP binding is up. */
  private void awaitApi() {
    ApiClient anonymous = new ApiClient(baseUrl, null);
    long deadline = System.nanoTime() + READY_TIMEOUT.toNanos();
    RuntimeException last = null;
    while (System.nanoTime() < deadline) {
      if (system.getWhenTerminated().toCompletableFuture().isDone()) {
        throw new IllegalStateException(
            "the node's actor system terminated during start-up (see its log)");
      }
      try {
        int status = anonymous.get("/v1/sessions").status();
        if (status == 401) return;
        last = new IllegalStateException("GET /v1/sessions answered " + status);
      } catch (UncheckedIOException e) {
        last = e;
      }
      sleep(100);
    }
    throw new IllegalStateException("the node's API did not come up within " + READY_TIMEOUT, last);
  }

  public String baseUrl() {
    return baseUrl;
  }

  /** The node's database (its pool; the node closes it). */
  /** The node's data directory (its sandboxes' workspaces are below it). */
  public Path dataDir() {
    return dataDir;
  }

  public dev.outboard.store.Database database() {
    return database;
  }

  public ActorSystem<Void> system() {
    return system;
  }

  /** The node's admin token. */
  public String adminToken() {
    return adminToken;
  }

  /** A client with the admin token. */
  public ApiClient admin() {
    return new ApiClient(baseUrl, adminToken);
  }

  /** A client with {@code key} (null: no key). */
  public ApiClient client(String key) {
    return new ApiClient(baseUrl, key);
  }

  @Override
  public void close() {
    system.terminate();
    try {
      system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
    } catch (Exception e) {
      System.err.println("[InProcessNode] the actor system did not terminate within 30 s: " + e);
    }
    deleteRecursively(dataDir);
  }

  /**
   * Deletes {@code dir} and everything below it, as far as it can (a temp directory left behind is
   * harmless).
   */
  public static void deleteRecursively(Path dir) {
    try (Stream<Path> files = Files.walk(dir)) {
      files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException ignored) {
      // a temp directory left behind is harmless
    }
  }

  private static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }
}
