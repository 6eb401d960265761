package dev.outboard;

import static dev.outboard.sandbox.SandboxProviders.Role.CLUSTER;
import static dev.outboard.sandbox.SandboxProviders.Role.EMBEDDED;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.outboard.api.AdminRoutes;
import dev.outboard.api.ApiKeys;
import dev.outboard.api.Auth;
import dev.outboard.api.HttpServer;
import dev.outboard.api.UsageRoutes;
import dev.outboard.cluster.ClusterJoin;
import dev.outboard.mcp.McpRoutes;
import dev.outboard.mcp.McpServers;
import dev.outboard.mcp.McpToolbox;
import dev.outboard.memory.FileRoutes;
import dev.outboard.memory.OrgFiles;
import dev.outboard.memory.OrgMemory;
import dev.outboard.model.ModelClients;
import dev.outboard.ops.ShardStats;
import dev.outboard.ops.StartupChecks;
import dev.outboard.sandbox.SandboxProvider;
import dev.outboard.sandbox.SandboxProviders;
import dev.outboard.sandbox.SandboxSettings;
import dev.outboard.sandbox.SandboxSweeper;
import dev.outboard.sandbox.SnapshotStore;
import dev.outboard.sandbox.host.SandboxHostMain;
import dev.outboard.session.RecoveryWarmup;
import dev.outboard.session.SessionEntity;
import dev.outboard.session.SessionEventStream;
import dev.outboard.session.SessionIndex;
import dev.outboard.session.SessionRoutes;
import dev.outboard.session.SessionServices;
import dev.outboard.session.SessionSettings;
import dev.outboard.session.WaitWakeups;
import dev.outboard.store.Database;
import dev.outboard.store.OrgPolicies;
import dev.outboard.store.Storage;
import dev.outboard.store.StoreSettings;
import dev.outboard.store.UsageLedger;
import dev.outboard.vault.Vault;
import dev.outboard.vault.VaultRoutes;
import dev.outboard.vfs.Namespace;
import dev.outboard.vfs.PathRouter;
import dev.outboard.webhooks.WebhookDispatcher;
import dev.outboard.webhooks.Webhooks;
import java.io.IOException;
import java.util.EnumSet;
import java.util.List;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.persistence.jdbc.query.javadsl.JdbcReadJournal;
import org.apache.pekko.persistence.query.PersistenceQuery;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Wiring only: config, storage, models, sandboxes, the features, the cluster join and HTTP. {@code
 * java -jar outboard.jar serve [--role harness|sandbox-host]}.
 */
public final class Main {
  private static final Logger log = LoggerFactory.getLogger(Main.class);

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
      system = ActorSystem.create(Behaviors.empty(), ClusterJoin.SYSTEM_NAME, config);
    } catch (RuntimeException e) {
      StartupChecks.actorSystemFailed(e, config); // a busy remoting port names OUTBOARD_REMOTE_PORT
      // The failed system shuts itself down and would exit the JVM with 0; nothing else has
      // started.
      Runtime.getRuntime().halt(1);
      return;
    } catch (LinkageError e) { // a class missing from lib/
      log.error("start-up failed: {}", e.toString(), e);
      Runtime.getRuntime().halt(1);
      return;
    }
    try {
      start(system, store);
    } catch (StartupChecks.Failure e) {
      log.error(e.getMessage());
      StartupChecks.exit(system);
    } catch (RuntimeException | IOException | LinkageError e) {
      // LinkageError: a class missing from lib/ must stop the node, not leave it hanging.
      log.error("start-up failed: {}", e.toString(), e);
      StartupChecks.exit(system);
    }
  }

  /** Starts a harness node on a running ActorSystem; tests call this too. */
  public static Database start(ActorSystem<?> system, StoreSettings store) throws IOException {
    Config config = system.settings().config();
    Database db = Storage.open(system, store);
    Vault vault = Vault.open(config, store, db); // a bad OUTBOARD_VAULT_KEY stops the node here
    boolean scriptedAllowed = store.embedded() || config.getBoolean("outboard.allow-scripted");
    ModelClients models = ModelClients.fromConfig(config.getConfig("outboard.model"));
    StartupChecks.models(models, scriptedAllowed, store.embedded());
    SandboxProvider sandboxes =
        SandboxProviders.fromConfig(config, system, store.embedded() ? EMBEDDED : CLUSTER);
    EnumSet<Namespace> mounted = EnumSet.of(Namespace.SESSION, Namespace.MEMORY, Namespace.SKILLS);
    if (sandboxes != null) mounted.add(Namespace.WORKSPACE);
    SessionSettings sessionSettings = SessionSettings.from(config);
    Webhooks webhooks = new Webhooks(db);
    WebhookDispatcher.init(system, db, webhooks);
    UsageLedger usage = UsageLedger.init(system, db);
    SessionIndex index =
        new SessionIndex(db, config.getDuration("outboard.idempotency-ttl"), webhooks, usage);
    OrgFiles orgFiles = OrgFiles.init(system, db);
    McpToolbox mcp = new McpToolbox(new McpServers(db), vault, McpToolbox.Settings.from(config));
    system.getWhenTerminated().thenRun(mcp::close);
    OrgPolicies policies =
        new OrgPolicies(db, config.getDuration("outboard.waits.policy-cache-ttl"));
    SessionEntity.init(
        system,
        new SessionServices(
            models,
            new PathRouter(mounted),
            index,
            sessionSettings,
            orgFiles,
            sandboxes,
            sandboxes == null ? null : SandboxSettings.from(config),
            sandboxes == null ? null : new SnapshotStore(db),
            policies,
            mcp));
    if (sandboxes != null)
      SandboxSweeper.init(
          system,
          sandboxes,
          SandboxSweeper.Owners.of(index::sandboxOwners, SessionIndex::finished));
    WaitWakeups.init(system, index);
    ShardStats.init(system, List.of(SessionEntity.ENTITY_KEY, OrgMemory.ENTITY_KEY));
    // Join only now (see ClusterJoin); and a cold JVM recovers the sessions handed to it several
    // times slower than a warm one.
    RecoveryWarmup.run(system, db, config.getConfig("outboard.cluster.recovery-warmup"));
    ClusterJoin.join(system, config);

    ApiKeys keys = new ApiKeys(db, config.getDuration("outboard.auth-cache-ttl"));
    if (store.embedded()) keys.writeDevKey(store.dataDir());
    JdbcReadJournal journal =
        PersistenceQuery.get(system)
            .getReadJournalFor(JdbcReadJournal.class, JdbcReadJournal.Identifier());
    Auth auth = new Auth(keys, config.getString("outboard.admin-token"));
    long maxBody = config.getBytes("outboard.http.max-body-bytes");
    HttpServer.start(
        system,
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
            new AdminRoutes(auth, keys, maxBody, policies, webhooks).routes(),
            new FileRoutes(auth, orgFiles, maxBody).routes(),
            new UsageRoutes(auth, usage).routes(),
            new VaultRoutes(auth, vault, maxBody).routes(),
            new McpRoutes(auth, mcp, vault, maxBody).routes()),
        config.getString("outboard.http.interface"),
        config.getInt("outboard.http.port"));
    return db;
  }
}
