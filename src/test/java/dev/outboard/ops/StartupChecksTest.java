package dev.outboard.ops;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.outboard.model.ModelClient;
import dev.outboard.model.ModelClients;
import dev.outboard.model.ScriptedModel;
import dev.outboard.ops.StartupChecks.Finding;
import dev.outboard.sandbox.host.SandboxHostServer;
import dev.outboard.sandbox.local.UnisolatedSandboxProvider;
import dev.outboard.sandbox.remote.RemoteSandboxProvider;
import dev.outboard.store.StoreSettings;
import dev.outboard.testing.Ports;
import dev.outboard.testing.TestPostgres;
import dev.outboard.testing.UnitTestConfig;
import java.net.BindException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The start-up checks one by one, in this JVM: what each says, and that none prints a secret. */
class StartupChecksTest {
  static final String PASSWORD = "pw-not-to-be-printed-42";

  @TempDir Path tmp;

  @Test
  void aReachablePostgresIsNamedWithItsVersion() {
    try (TestPostgres pg = TestPostgres.create()) {
      StoreSettings store = new StoreSettings(pg.url(), pg.user(), PASSWORD, tmp, false, 2);
      Finding found = StartupChecks.database(store, Duration.ofSeconds(5));
      assertThat(found.ok()).isTrue();
      assertThat(found.line())
          .startsWith("start-up check: database: reachable (PostgreSQL ")
          .contains(" at " + pg.url() + " as postgres)")
          .doesNotContain(PASSWORD);
    }
  }

  @Test
  void aDatabaseThatNeverAnswersFailsWithinTheTimeoutNamingTheVariables() throws Exception {
    // Accepts connections (the kernel's backlog) but never says a word.
    try (ServerSocket silent = new ServerSocket(0, 50, InetAddress.getLoopbackAddress())) {
      String url =
          "jdbc:postgresql://127.0.0.1:" + silent.getLocalPort() + "/test?password=" + PASSWORD;
      StoreSettings store = new StoreSettings(url, "postgres", PASSWORD, tmp, false, 2);
      long started = System.nanoTime();
      assertThatThrownBy(() -> StartupChecks.database(store, Duration.ofSeconds(2)))
          .isInstanceOf(StartupChecks.Failure.class)
          .hasMessageStartingWith(
              "start-up check: database: cannot connect to jdbc:postgresql://127.0.0.1:"
                  + silent.getLocalPort()
                  + "/test as 'postgres'")
          .hasMessageContaining("check OUTBOARD_DB_URL, OUTBOARD_DB_USER and OUTBOARD_DB_PASSWORD")
          .satisfies(e -> assertThat(e.getMessage()).doesNotContain(PASSWORD).doesNotContain("\n"));
      assertThat(Duration.ofNanos(System.nanoTime() - started)).isLessThan(Duration.ofSeconds(10));
    }
  }

  @Test
  void aDriverMessageLosesThePasswordEvenWhenItQuotesIt() {
    StoreSettings store =
        new StoreSettings("jdbc:postgresql://db/x", "app", PASSWORD, tmp, false, 2);
    String line =
        StartupChecks.databaseFailure(
            store,
            new java.sql.SQLException(
                "FATAL: password authentication failed for "
                    + PASSWORD
                    + " (url ...?password="
                    + PASSWORD
                    + "&ssl=true)\nsecond line"));
    assertThat(line)
        .doesNotContain(PASSWORD)
        .doesNotContain("\n")
        .contains("password authentication failed")
        .contains("with a password");
  }

  @Test
  void theSandboxHostCheckTellsReachableFromARejectedTokenFromADeadPort() throws Exception {
    String token = "right-token-0123456789abcdef";
    ExecutorService executor = Executors.newCachedThreadPool();
    ActorSystem<Void> system =
        ActorSystem.create(Behaviors.empty(), "startup-checks-host", UnitTestConfig.local());
    try (UnisolatedSandboxProvider provider =
        new UnisolatedSandboxProvider(tmp.resolve("sandboxes"), executor)) {
      int port = Ports.free();
      new SandboxHostServer(provider, token, 1 << 20)
          .start(system, "127.0.0.1", port)
          .toCompletableFuture()
          .get(20, TimeUnit.SECONDS);
      String url = "http://127.0.0.1:" + port;

      Finding right = StartupChecks.sandboxHost(new RemoteSandboxProvider(url, token));
      assertThat(right.ok()).isTrue();
      assertThat(right.line())
          .isEqualTo(
              "start-up check: sandbox host at " + url + " (OUTBOARD_SANDBOX_HOST_URL): reachable");

      Finding wrong =
          StartupChecks.sandboxHost(new RemoteSandboxProvider(url, "wrong-token-0123456789abcdef"));
      assertThat(wrong.ok()).isFalse();
      assertThat(wrong.line())
          .contains("token rejected (check OUTBOARD_SANDBOX_HOST_TOKEN")
          .doesNotContain("wrong-token");

      String dead = "http://127.0.0.1:" + Ports.free();
      Finding unreachable = StartupChecks.sandboxHost(new RemoteSandboxProvider(dead, token));
      assertThat(unreachable.ok()).isFalse();
      assertThat(unreachable.line())
          .startsWith(
              "start-up check: sandbox host at "
                  + dead
                  + " (OUTBOARD_SANDBOX_HOST_URL): unreachable: ")
          .doesNotContain(token);
    } finally {
      system.terminate();
      system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
      executor.shutdownNow();
    }
  }

  @Test
  void modelProvidersNameTheVariableThatOffersEachMissingOne() {
    ModelClient anthropic =
        new ModelClient() {
          @Override
          public String provider() {
            return "anthropic";
          }

          @Override
          public java.util.concurrent.CompletionStage<dev.outboard.model.ModelResponse> complete(
              dev.outboard.model.ModelRequest request) {
            return CompletableFuture.failedFuture(new UnsupportedOperationException());
          }
        };
    List<Finding> cluster =
        StartupChecks.models(
            new ModelClients("anthropic", new ScriptedModel(), anthropic), false, false);
    assertThat(cluster.get(0).line())
        .isEqualTo(
            "start-up check: model providers: offered: anthropic; not offered: openai (set"
                + " OPENAI_API_KEY or OPENAI_BASE_URL); default: anthropic");
    assertThat(cluster.get(0).ok()).isTrue();
    assertThat(cluster.get(1).line())
        .isEqualTo(
            "start-up check: scripted model: not allowed (set OUTBOARD_ALLOW_SCRIPTED=true to allow"
                + " it)");

    List<Finding> bare =
        StartupChecks.models(new ModelClients("scripted", new ScriptedModel()), false, false);
    assertThat(bare.get(0).ok()).isFalse();
    assertThat(bare.get(0).line())
        .contains("offered: none")
        .contains("anthropic (set ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL)")
        .contains("default: scripted (NOT offered");
  }

  @Test
  void aBusyPortNamesTheVariableToChange() {
    var inUse =
        new java.util.concurrent.CompletionException(
            new IllegalStateException(
                "Bind failed because of java.net.BindException: [/127.0.0.1:8080] Address already"
                    + " in use",
                new BindException("Address already in use")));
    assertThat(StartupChecks.bindFailure(inUse, "API", "127.0.0.1", 8080, "OUTBOARD_HTTP_PORT"))
        .isEqualTo(
            "start-up check: API: port 8080 (OUTBOARD_HTTP_PORT) is already in use on 127.0.0.1;"
                + " set OUTBOARD_HTTP_PORT to a free port");
    assertThat(
            StartupChecks.bindFailure(
                new BindException("Cannot assign requested address"),
                "API",
                "10.9.9.9",
                8080,
                "OUTBOARD_HTTP_PORT"))
        .isEqualTo(
            "start-up check: API: cannot listen on 10.9.9.9:8080 (OUTBOARD_HTTP_PORT): Cannot"
                + " assign requested address");
  }
}
