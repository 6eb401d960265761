package dev.outboard.sandbox.host;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.outboard.ops.StartupChecks;
import dev.outboard.sandbox.SandboxProvider;
import dev.outboard.sandbox.SandboxProviders;
import java.io.IOException;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code serve --role sandbox-host}: a plain, local ActorSystem (not a cluster member: no remoting,
 * management, sharding or persistence) running the {@link SandboxProviders sandbox host's provider}
 * (bubblewrap) behind {@link SandboxHostServer} on {@code outboard.sandbox.host.interface:port}.
 * Without a token it refuses to start.
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
    Config config = system.settings().config();
    Config host = config.getConfig("outboard.sandbox.host");
    SandboxProvider provider =
        SandboxProviders.fromConfig(config, system, SandboxProviders.Role.SANDBOX_HOST);
    SandboxHostServer server =
        new SandboxHostServer(provider, token, host.getBytes("max-body-bytes"));
    StartupChecks.exitUnlessBound(
        system,
        server.start(system, host.getString("interface"), host.getInt("port")),
        "sandbox host API",
        host.getString("interface"),
        host.getInt("port"),
        "OUTBOARD_SANDBOX_HOST_PORT");
  }
}
