package dev.outboard.sandbox.host;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.outboard.ops.StartupChecks;
import dev.outboard.sandbox.bwrap.BwrapSandboxProvider;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.apache.pekko.Done;
import org.apache.pekko.actor.CoordinatedShutdown;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code serve --role sandbox-host}: a plain, local ActorSystem (not a cluster member: no remoting,
 * management, sharding or persistence) running the bubblewrap provider behind {@link
 * SandboxHostServer} on {@code outboard.sandbox.host.interface:port}. Without a token it refuses to
 * start.
 */
public final class SandboxHostMain {
  private static final Logger log = LoggerFactory.getLogger(SandboxHostMain.class);

  /** Plain local actors; HTTP timeouts are per route (exec waits for its command). */
  static final String OVERLAY =
      """
      pekko.actor.provider = local
      pekko.http.server.idle-timeout = infinite
      pekko.http.server.parsing.max-content-length = 512MiB
      """;

  private SandboxHostMain() {}

  public static void run() {
    Config config = ConfigFactory.parseString(OVERLAY).withFallback(ConfigFactory.load()).resolve();
    String token = config.getString("outboard.sandbox.host-token");
    try {
      SandboxHostServer.requireToken(token);
    } catch (IllegalArgumentException e) {
      System.err.println("outboard sandbox host: " + e.getMessage());
      System.exit(2);
      return;
    }
    ActorSystem<Void> system =
        ActorSystem.create(Behaviors.empty(), "outboard-sandbox-host", config);
    try {
      start(system, token);
    } catch (RuntimeException | IOException e) {
      log.error("sandbox host start-up failed: {}", e.toString(), e);
      StartupChecks.exit(system);
    }
  }

  /** Starts the provider and the API on a running (local) ActorSystem. */
  public static void start(ActorSystem<?> system, String token) throws IOException {
    Config host = system.settings().config().getConfig("outboard.sandbox.host");
    Path root = Path.of(host.getString("root")).toAbsolutePath();
    Files.createDirectories(root);
    ExecutorService executor =
        Executors.newCachedThreadPool(
            r -> {
              Thread t = new Thread(r, "sandbox-io");
              t.setDaemon(true);
              return t;
            });
    BwrapSandboxProvider provider = new BwrapSandboxProvider(root, executor);
    if (!provider.available())
      log.warn(
          StartupChecks.PREFIX + "bwrap: {}; every create will fail until it is",
          BwrapSandboxProvider.NOT_INSTALLED);
    else StartupChecks.bwrap(provider);
    SandboxHostServer server =
        new SandboxHostServer(provider, token, host.getBytes("max-body-bytes"));
    CoordinatedShutdown.get(system)
        .addTask(
            CoordinatedShutdown.PhaseServiceStop(),
            "stop-sandboxes",
            () -> {
              provider.close();
              executor.shutdownNow();
              return CompletableFuture.completedFuture(Done.getInstance());
            });
    log.info("sandbox host: bubblewrap sandboxes under {}", root);
    StartupChecks.exitUnlessBound(
        system,
        server.start(system, host.getString("interface"), host.getInt("port")),
        "sandbox host API",
        host.getString("interface"),
        host.getInt("port"),
        "OUTBOARD_SANDBOX_HOST_PORT");
  }
}
