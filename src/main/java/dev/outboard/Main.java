package dev.outboard;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.outboard.api.AdminRoutes;
import dev.outboard.api.ApiKeys;
import dev.outboard.api.Auth;
import dev.outboard.api.HttpServer;
import dev.outboard.api.UsageRoutes;
import dev.outboard.memory.FileRoutes;
import dev.outboard.memory.OrgFileStore;
import dev.outboard.memory.OrgFiles;
import dev.outboard.memory.OrgMemory;
import dev.outboard.memory.SkillIndex;
import dev.outboard.model.AnthropicModel;
import dev.outboard.model.ModelClient;
import dev.outboard.model.ModelClients;
import dev.outboard.model.OpenAiModel;
import dev.outboard.model.ProviderSettings;
import dev.outboard.model.RetryPolicy;
import dev.outboard.model.RetryingModelClient;
import dev.outboard.model.ScriptedModel;
import dev.outboard.ops.ShardStats;
import dev.outboard.ops.StartupChecks;
import dev.outboard.sandbox.SandboxHandle;
import dev.outboard.sandbox.SandboxProvider;
import dev.outboard.sandbox.SandboxSettings;
import dev.outboard.sandbox.SandboxSweeper;
import dev.outboard.sandbox.SnapshotStore;
import dev.outboard.sandbox.bwrap.BwrapSandboxProvider;
import dev.outboard.sandbox.host.SandboxHostMain;
import dev.outboard.sandbox.local.UnisolatedSandboxProvider;
import dev.outboard.sandbox.remote.RemoteSandboxProvider;
import dev.outboard.session.RecoveryWarmup;
import dev.outboard.session.SessionEntity;
import dev.outboard.session.SessionEventStream;
import dev.outboard.session.SessionIndex;
import dev.outboard.session.SessionRoutes;
import dev.outboard.session.SessionSettings;
import dev.outboard.session.WaitWakeups;
import dev.outboard.store.Database;
import dev.outboard.store.Migrations;
import dev.outboard.store.OrgPolicies;
import dev.outboard.store.StoreSettings;
import dev.outboard.store.UsageLedger;
import dev.outboard.vfs.Namespace;
import dev.outboard.vfs.PathRouter;
import dev.outboard.webhooks.WebhookDispatcher;
import dev.outboard.webhooks.Webhooks;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.apache.pekko.Done;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.AddressFromURIString;
import org.apache.pekko.actor.CoordinatedShutdown;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.apache.pekko.cluster.typed.JoinSeedNodes;
import org.apache.pekko.management.cluster.bootstrap.ClusterBootstrap;
import org.apache.pekko.management.javadsl.PekkoManagement;
import org.apache.pekko.persistence.jdbc.query.javadsl.JdbcReadJournal;
import org.apache.pekko.persistence.query.PersistenceQuery;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Wiring only: config, schema, cluster, sharding, HTTP. {@code java -jar outboard.jar serve}. */
public final class Main {
  private static final Logger log = LoggerFactory.getLogger(Main.class);

  /** The ActorSystem's name, part of every cluster address ({@code pekko://outboard@host:port}). */
  public static final String SYSTEM_NAME = "outboard";

  private Main() {}

  public static void main(String[] args) {
    boolean sandboxHost =
        args.length == 3 && args[1].equals("--role") && args[2].equals("sandbox-host");
    boolean harness =
        args.length == 1
            || (args.length == 3 && args[1].equals("--role") && args[2].equals("harness"));
    if (args.length < 1 || !args[0].equals("serve") || !(sandboxHost || harness)) {
      System.err.println(
          "usage: java -jar outboard.jar serve [--role harness|sandbox-host]   (configured by"
              + " OUTBOARD_* environment variables; see README.md)");
      System.exit(2);
    }
    if (sandboxHost) {
      SandboxHostMain.run();
      return;
    }
    Config base = ConfigFactory.load();
    StoreSettings store;
    try {
      store = StoreSettings.from(base);
    } catch (IllegalArgumentException e) {
      System.err.println("outboard: " + e.getMessage());
      System.exit(2);
      return;
    }
    Config config = store.persistenceOverlay().withFallback(base).resolve();
    ActorSystem<Void> system;
    try {
      system = ActorSystem.create(Behaviors.empty(), SYSTEM_NAME, config);
    } catch (RuntimeException e) {
      StartupChecks.actorSystemFailed(e, config); // a busy remoting port names OUTBOARD_REMOTE_PORT
      // The failed system shuts itself down and would exit the JVM with 0; nothing else has
      // started.
      Runtime.getRuntime().halt(1);
      return;
    }
    try {
      start(system, store);
    } catch (StartupChecks.Failure e) {
      log.error(e.getMessage());
      StartupChecks.exit(system);
    } catch (RuntimeException | IOException e) {
      log.error("start-up failed: {}", e.toString(), e);
      StartupChecks.exit(system);
    }
  }

  /** Starts a harness node on a running ActorSystem; tests call this too. */
  public static Database start(ActorSystem<?> system, StoreSettings store) throws IOException {
    Config config = system.settings().config();
    log.info("storage: {}", store.describe());
    if (store.embedded()) Files.createDirectories(store.dataDir());
    StartupChecks.database(store, config.getDuration("outboard.db.connect-timeout"));

    Database db =
        new Database(
            store,
            system
                .dispatchers()
                .lookup(DispatcherSelector.fromConfig("outboard-blocking-dispatcher")));
    CoordinatedShutdown.get(system)
        .addTask(
            CoordinatedShutdown.PhaseBeforeActorSystemTerminate(),
            "close-database",
            () -> {
              db.close();
              return CompletableFuture.completedFuture(Done.getInstance());
            });
    // Tables first: remember-entities needs the journal before sharding starts.
    var migrated = Migrations.migrate(db.dataSource(), store.postgres());
    if (migrated.migrationsExecuted > 0)
      log.info("schema migrated to version {}", migrated.targetSchemaVersion);

    boolean scriptedAllowed = store.embedded() || config.getBoolean("outboard.allow-scripted");
    ModelClients models = modelClients(config.getConfig("outboard.model"));
    StartupChecks.models(models, scriptedAllowed, store.embedded());
    SandboxProvider sandboxes = sandboxProvider(system, config, store);
    EnumSet<Namespace> mounted = EnumSet.of(Namespace.SESSION, Namespace.MEMORY, Namespace.SKILLS);
    if (sandboxes != null) mounted.add(Namespace.WORKSPACE);
    PathRouter router = new PathRouter(mounted);
    SessionSettings sessionSettings = SessionSettings.from(config);
    Webhooks webhooks = new Webhooks(db);
    WebhookDispatcher dispatcher =
        new WebhookDispatcher(db, webhooks, WebhookDispatcher.Settings.from(config));
    CoordinatedShutdown.get(system)
        .addTask(
            CoordinatedShutdown.PhaseServiceStop(),
            "stop-webhooks",
            () -> {
              dispatcher.close();
              return CompletableFuture.completedFuture(Done.getInstance());
            });
    dispatcher.start();
    UsageLedger usage = new UsageLedger(db);
    java.time.Duration usageFlush = config.getDuration("outboard.usage.flush-interval");
    var usageFlushes =
        system
            .scheduler()
            .scheduleWithFixedDelay(
                usageFlush, usageFlush, usage::flush, system.executionContext());
    CoordinatedShutdown.get(system)
        .addTask(
            CoordinatedShutdown.PhaseServiceStop(),
            "flush-usage",
            () -> {
              usageFlushes.cancel();
              return usage.flush().thenApply(v -> Done.getInstance());
            });
    SessionIndex index =
        new SessionIndex(db, config.getDuration("outboard.idempotency-ttl"), webhooks, usage);

    Config memory = config.getConfig("outboard.memory");
    OrgFileStore orgStore =
        new OrgFileStore(
            db, memory.getBytes("max-file-bytes"), memory.getDuration("transaction-timeout"));
    OrgMemory.init(system, orgStore, OrgMemory.Settings.from(memory));
    OrgFiles orgFiles =
        new OrgFiles(
            system,
            orgStore,
            new SkillIndex(
                orgStore,
                memory.getInt("prompt-budget-chars"),
                memory.getDuration("prompt-index-ttl")),
            memory.getDuration("write-timeout"));
    OrgPolicies policies =
        new OrgPolicies(db, config.getDuration("outboard.waits.policy-cache-ttl"));
    SessionEntity.init(
        system,
        new SessionEntity.Services(
            models,
            router,
            index,
            sessionSettings,
            orgFiles,
            sandboxes,
            sandboxes == null ? null : SandboxSettings.from(config),
            sandboxes == null ? null : new SnapshotStore(db),
            policies));
    if (sandboxes != null) sweepSandboxes(system, config, sandboxes, index);
    WaitWakeups wakeups =
        new WaitWakeups(system, index, config.getDuration("outboard.waits.scan-interval"));
    wakeups.start();
    CoordinatedShutdown.get(system)
        .addTask(
            CoordinatedShutdown.PhaseServiceStop(),
            "stop-wait-wakeups",
            () -> {
              wakeups.close();
              return CompletableFuture.completedFuture(Done.getInstance());
            });
    system.systemActorOf(
        ShardStats.create(
            List.of(SessionEntity.ENTITY_KEY, OrgMemory.ENTITY_KEY),
            config.getDuration("outboard.metrics.shard-stats-interval")),
        "shard-stats",
        Props.empty());
    // Join only now: a member whose sharding has not started yet makes the coordinator's
    // majority writes wait for it, which stalls every hand-off in the cluster for seconds; and a
    // cold JVM recovers the sessions handed to it several times slower than a warm one.
    Config warmup = config.getConfig("outboard.cluster.recovery-warmup");
    RecoveryWarmup.run(
        system,
        db,
        warmup.getInt("sessions"),
        warmup.getInt("rounds"),
        warmup.getDuration("budget"));
    joinCluster(system, config);

    ApiKeys keys = new ApiKeys(db, config.getDuration("outboard.auth-cache-ttl"));
    if (store.embedded()) writeDevKey(keys, store.dataDir());

    JdbcReadJournal journal =
        PersistenceQuery.get(system)
            .getReadJournalFor(JdbcReadJournal.class, JdbcReadJournal.Identifier());
    Auth auth = new Auth(keys, config.getString("outboard.admin-token"));
    var routes =
        HttpServer.api(
            new SessionRoutes(
                    system,
                    auth,
                    index,
                    new SessionEventStream(system, journal),
                    models,
                    sessionSettings,
                    scriptedAllowed)
                .routes(),
            new AdminRoutes(
                    auth, keys, config.getBytes("outboard.http.max-body-bytes"), policies, webhooks)
                .routes(),
            new FileRoutes(auth, orgFiles, config.getBytes("outboard.http.max-body-bytes"))
                .routes(),
            new UsageRoutes(auth, usage).routes());
    HttpServer.start(
        system,
        routes,
        config.getString("outboard.http.interface"),
        config.getInt("outboard.http.port"));
    return db;
  }

  /** Destroys, every sweep-interval, the sandboxes no running session holds (SandboxSweeper). */
  private static void sweepSandboxes(
      ActorSystem<?> system, Config config, SandboxProvider sandboxes, SessionIndex index) {
    Config c = config.getConfig("outboard.sandbox");
    java.time.Duration unowned = c.getDuration("sweep-unowned-after");
    java.time.Duration floor = c.getDuration("hibernate-after").plusMinutes(10);
    if (unowned.compareTo(floor) < 0) {
      log.warn(
          "outboard.sandbox.sweep-unowned-after ({}) is shorter than hibernate-after + 10 min;"
              + " using {}",
          unowned,
          floor);
      unowned = floor;
    }
    SandboxSweeper sweeper =
        new SandboxSweeper(
            system,
            sandboxes,
            new SandboxSweeper.Owners() {
              @Override
              public java.util.concurrent.CompletionStage<java.util.Map<String, String>> of(
                  java.util.Collection<String> ids) {
                return index.sandboxOwners(ids);
              }

              @Override
              public boolean finished(String status) {
                return SessionIndex.finished(status);
              }
            },
            c.getDuration("sweep-interval"),
            unowned);
    sweeper.start();
    CoordinatedShutdown.get(system)
        .addTask(
            CoordinatedShutdown.PhaseServiceStop(),
            "stop-sandbox-sweep",
            () -> {
              sweeper.close();
              return CompletableFuture.completedFuture(Done.getInstance());
            });
  }

  /**
   * Embedded mode runs sandboxes on this machine with bubblewrap under {@code
   * <data-dir>/sandboxes}. Without bwrap the provider still mounts /workspace: each call answers
   * that bubblewrap is missing, and the session goes on. Other modes use the sandbox host at {@code
   * outboard.sandbox.host-url} ({@code serve --role sandbox-host}), or mount no /workspace.
   */
  private static SandboxProvider sandboxProvider(
      ActorSystem<?> system, Config config, StoreSettings store) {
    if (!config.getBoolean("outboard.sandbox.enabled")) {
      log.info(
          StartupChecks.PREFIX
              + "sandboxes: disabled (OUTBOARD_SANDBOX_ENABLED=false); no /workspace or bash");
      return null;
    }
    if (!store.embedded()) {
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
    ExecutorService executor =
        Executors.newCachedThreadPool(
            r -> {
              Thread t = new Thread(r, "sandbox-io");
              t.setDaemon(true);
              return t;
            });
    Path dir = store.dataDir().resolve("sandboxes");
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
    CoordinatedShutdown.get(system)
        .addTask(
            CoordinatedShutdown.PhaseServiceStop(),
            "stop-sandboxes",
            () -> {
              try {
                provider.close();
              } catch (Exception e) {
                log.warn("stopping sandboxes: {}", e.toString());
              }
              executor.shutdownNow();
              return CompletableFuture.completedFuture(Done.getInstance());
            });
    return provider;
  }

  /**
   * The scripted model, and each provider that has a key or a base URL of its own, behind the retry
   * loop.
   */
  private static ModelClients modelClients(Config modelConfig) {
    RetryPolicy retry = RetryPolicy.from(modelConfig.getConfig("retry"));
    List<ModelClient> clients = new ArrayList<>(List.of(new ScriptedModel()));
    ProviderSettings anthropic = ProviderSettings.from(modelConfig, "anthropic");
    if (anthropic.configured("https://api.anthropic.com"))
      clients.add(new RetryingModelClient(new AnthropicModel(anthropic), retry));
    ProviderSettings openai = ProviderSettings.from(modelConfig, "openai");
    if (openai.configured("https://api.openai.com/v1"))
      clients.add(new RetryingModelClient(new OpenAiModel(openai), retry));
    return new ModelClients(
        modelConfig.getString("default-provider"), clients.toArray(ModelClient[]::new));
  }

  /**
   * {@code outboard.cluster.seed-nodes} ({@code OUTBOARD_SEED_NODES}): comma-separated {@code
   * host:port} or {@code pekko://outboard@host:port}. Joined from {@link #joinCluster}, once
   * sharding is up, rather than through {@code pekko.cluster.seed-nodes}, which joins as soon as
   * the ActorSystem starts.
   */
  static List<Address> seedNodes(Config config) {
    List<Address> addresses = new ArrayList<>();
    for (String seed : config.getString("outboard.cluster.seed-nodes").split(",")) {
      String s = seed.strip();
      if (s.isEmpty()) continue;
      try {
        addresses.add(
            AddressFromURIString.parse(
                s.startsWith("pekko://") ? s : "pekko://" + SYSTEM_NAME + "@" + s));
      } catch (RuntimeException e) {
        throw new IllegalArgumentException(
            "OUTBOARD_SEED_NODES: '"
                + s
                + "' is not host:port or pekko://"
                + SYSTEM_NAME
                + "@host:port");
      }
    }
    return addresses;
  }

  private static void joinCluster(ActorSystem<?> system, Config config) {
    StartupChecks.awaitManagement(system, PekkoManagement.get(system).start());
    List<Address> seeds = seedNodes(config);
    if (config.getBoolean("outboard.cluster.bootstrap")) {
      ClusterBootstrap.get(system).start();
    } else if (!seeds.isEmpty()) {
      Cluster.get(system).manager().tell(new JoinSeedNodes(seeds));
    } else if (config.getStringList("pekko.cluster.seed-nodes").isEmpty()) {
      Cluster cluster = Cluster.get(system);
      cluster.manager().tell(Join.create(cluster.selfMember().address()));
    }
  }

  /**
   * Embedded mode with an empty database: org {@code default} and a key in {@code
   * data/dev-api-key}.
   */
  private static void writeDevKey(ApiKeys keys, Path dataDir) throws IOException {
    var key = keys.bootstrapDevOrg();
    if (key.isEmpty()) return;
    Path file = dataDir.resolve("dev-api-key");
    Files.writeString(file, key.get() + "\n");
    try {
      Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-------"));
    } catch (UnsupportedOperationException ignored) {
      // not a POSIX filesystem; the file keeps the default permissions
    }
    // Printed once, on purpose: this is the developer's key to the embedded node.
    System.out.println(
        "Embedded mode: created org 'default'. API key (also in " + file + "):\n  " + key.get());
  }
}
