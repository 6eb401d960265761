package dev.outboard.sandbox;

import com.typesafe.config.Config;
import dev.outboard.ops.ServiceStop;
import dev.outboard.ops.StartupChecks;
import dev.outboard.sandbox.bwrap.BwrapSandboxProvider;
import dev.outboard.sandbox.local.UnisolatedSandboxProvider;
import dev.outboard.sandbox.remote.RemoteSandboxProvider;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.apache.pekko.actor.typed.ActorSystem;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Which sandbox provider a process runs, chosen from {@code outboard.sandbox}, checked at start
 * (the start-up checks log what was found) and closed at the system's service-stop: for a harness
 * node in embedded mode or outside it, and for the sandbox host ({@code serve --role
 * sandbox-host}).
 */
public final class SandboxProviders {
  private static final Logger log = LoggerFactory.getLogger(SandboxProviders.class);

  /** The process that asks. */
  public enum Role {
    /**
     * A harness node in embedded mode: bubblewrap under {@code <data-dir>/sandboxes}. Without bwrap
     * the provider still mounts /workspace: each call answers that bubblewrap is missing, and the
     * session goes on (or, with {@code allow-unisolated}, plain local processes).
     */
    EMBEDDED,
    /** A harness node outside embedded mode: the sandbox host at {@code host-url}, if any. */
    CLUSTER,
    /** The sandbox host: bubblewrap under {@code outboard.sandbox.host.root}. */
    SANDBOX_HOST
  }

  private SandboxProviders() {}

  /**
   * The provider {@code role} runs; null for a harness node that mounts no /workspace ({@code
   * outboard.sandbox.enabled = false}, or no sandbox host outside embedded mode).
   */
  public static SandboxProvider fromConfig(Config config, ActorSystem<?> system, Role role)
      throws IOException {
    if (role == Role.SANDBOX_HOST) return sandboxHost(config, system);
    if (!config.getBoolean("outboard.sandbox.enabled")) {
      log.info(
          StartupChecks.PREFIX
              + "sandboxes: disabled (OUTBOARD_SANDBOX_ENABLED=false); no /workspace or bash");
      return null;
    }
    return role == Role.EMBEDDED ? embedded(config, system) : remote(config);
  }

  private static SandboxProvider remote(Config config) {
    if (config.getBoolean("outboard.sandbox.allow-unisolated"))
      log.warn("outboard.sandbox.allow-unisolated is ignored outside embedded mode");
    String url = config.getString("outboard.sandbox.host-url");
    if (url.isBlank()) {
      log.warn(
          StartupChecks.PREFIX
              + "sandbox host: none; set OUTBOARD_SANDBOX_HOST_URL to a sandbox host; /workspace"
              + " and bash are unavailable");
      return null;
    }
    RemoteSandboxProvider remote =
        new RemoteSandboxProvider(url, config.getString("outboard.sandbox.host-token"));
    log.info("sandboxes: sandbox host at {}", remote.baseUrl());
    StartupChecks.sandboxHost(remote);
    return remote;
  }

  private static SandboxProvider embedded(Config config, ActorSystem<?> system) {
    // <data-dir> as StoreSettings reads it.
    Path dataDir = Path.of(config.getString("outboard.data-dir")).toAbsolutePath().normalize();
    Path dir = dataDir.resolve("sandboxes");
    ExecutorService executor = executor();
    BwrapSandboxProvider bwrap = new BwrapSandboxProvider(dir, executor);
    SandboxProvider provider;
    if (bwrap.available()) {
      StartupChecks.bwrap(bwrap);
      log.info("sandboxes: bubblewrap under {}", dir);
      provider = bwrap;
    } else if (config.getBoolean("outboard.sandbox.allow-unisolated")) {
      bwrap.close();
      provider = new UnisolatedSandboxProvider(dir, executor);
      log.warn("!!!!!!!! {} !!!!!!!!", UnisolatedSandboxProvider.WARNING);
      log.warn(
          "sandboxes: UNISOLATED local processes under {} (bubblewrap is missing;"
              + " outboard.sandbox.allow-unisolated = true)",
          dir);
    } else {
      log.warn(
          StartupChecks.PREFIX
              + "bwrap: {}; /workspace and bash calls will fail until it is (or set"
              + " outboard.sandbox.allow-unisolated = true, for local development only)",
          SandboxHandle.BWRAP_MISSING);
      provider = bwrap;
    }
    return closedAtStop(system, provider, executor);
  }

  private static SandboxProvider sandboxHost(Config config, ActorSystem<?> system)
      throws IOException {
    Path root = Path.of(config.getString("outboard.sandbox.host.root")).toAbsolutePath();
    Files.createDirectories(root);
    ExecutorService executor = executor();
    BwrapSandboxProvider provider = new BwrapSandboxProvider(root, executor);
    if (!provider.available())
      log.warn(
          StartupChecks.PREFIX + "bwrap: {}; every create will fail until it is",
          BwrapSandboxProvider.NOT_INSTALLED);
    else StartupChecks.bwrap(provider);
    log.info("sandbox host: bubblewrap sandboxes under {}", root);
    return closedAtStop(system, provider, executor);
  }

  /** Sandbox I/O runs on daemon threads of its own, never on a dispatcher. */
  private static ExecutorService executor() {
    return Executors.newCachedThreadPool(
        r -> {
          Thread t = new Thread(r, "sandbox-io");
          t.setDaemon(true);
          return t;
        });
  }

  private static SandboxProvider closedAtStop(
      ActorSystem<?> system, SandboxProvider provider, ExecutorService executor) {
    ServiceStop.register(
        system,
        "stop-sandboxes",
        () -> {
          try {
            provider.close();
          } catch (Exception e) {
            log.warn("stopping sandboxes: {}", e.toString());
          }
          executor.shutdownNow();
        });
    return provider;
  }
}
