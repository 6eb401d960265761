package dev.outboard.ops;

import com.typesafe.config.Config;
import dev.outboard.Futures;
import dev.outboard.model.ModelClients;
import dev.outboard.model.Secrets;
import dev.outboard.sandbox.bwrap.BwrapSandboxProvider;
import dev.outboard.sandbox.remote.RemoteSandboxProvider;
import dev.outboard.store.StoreSettings;
import java.net.http.HttpTimeoutException;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Pattern;
import org.apache.pekko.actor.CoordinatedShutdown;
import org.apache.pekko.actor.typed.ActorSystem;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What a node checks at start and says it found, one log line per check ({@code start-up check:
 * <what>: <finding>}), never with a password, key or token: the database, bubblewrap, the sandbox
 * host, the model providers, and the ports it listens on. A check that stops the node throws {@link
 * Failure} (its message is the whole line) or, for a port that turns out to be busy once the system
 * runs, ends it through {@link #abort}: coordinated shutdown with reason {@link Failed}, which
 * {@code cluster.conf} maps to exit code 1.
 */
public final class StartupChecks {
  private static final Logger log = LoggerFactory.getLogger(StartupChecks.class);
  public static final String PREFIX = "start-up check: ";

  /** How much of a driver's or tool's message goes into a line. */
  static final int MAX_DETAIL = 2000;

  /** How long the sandbox host has to answer its health check. */
  static final Duration HOST_CHECK_TIMEOUT = Duration.ofSeconds(5);

  /** The providers a node can offer besides the scripted model, and what offers each. */
  static final Map<String, String> PROVIDER_VARIABLES = new LinkedHashMap<>();

  static {
    PROVIDER_VARIABLES.put("anthropic", "ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL");
    PROVIDER_VARIABLES.put("openai", "OPENAI_API_KEY or OPENAI_BASE_URL");
  }

  /** How long pekko-management may take to bind. */
  static final Duration BIND_TIMEOUT = Duration.ofSeconds(30);

  private static final Pattern PASSWORD_PARAMETER = Pattern.compile("(?i)(password=)[^&;\\s]*");

  private StartupChecks() {}

  /** The coordinated-shutdown reason of a failed start ({@code cluster.conf}: exit code 1). */
  public enum Failed implements CoordinatedShutdown.Reason {
    INSTANCE;

    @Override
    public String toString() {
      return "a start-up check failed";
    }
  }

  /** A failed check that stops the node; the message is the whole log line. */
  public static final class Failure extends RuntimeException {
    public Failure(String message) {
      super(message, null, false, false);
    }
  }

  /**
   * What one check found: the log line, and whether it is fine (INFO) or worth a warning (WARN).
   */
  public record Finding(boolean ok, String line) {
    Finding log() {
      if (ok) log.info(line);
      else log.warn(line);
      return this;
    }
  }

  // ---- database -----------------------------------------------------------------------------

  /**
   * Connects once, outside the pool, within {@code timeout}, and says which database answered.
   *
   * @throws Failure naming OUTBOARD_DB_URL, OUTBOARD_DB_USER and OUTBOARD_DB_PASSWORD (or, in
   *     embedded mode, OUTBOARD_DATA_DIR) with the driver's message, secrets redacted
   */
  public static Finding database(StoreSettings store, Duration timeout) {
    Properties props = new Properties();
    props.setProperty("user", store.user());
    props.setProperty("password", store.password());
    if (store.postgres()) {
      String seconds = Long.toString(Math.max(1, timeout.toSeconds()));
      props.setProperty("connectTimeout", seconds);
      props.setProperty("loginTimeout", seconds);
      props.setProperty("socketTimeout", seconds);
    }
    try {
      Class.forName(store.driver());
      try (Connection c = DriverManager.getConnection(store.url(), props)) {
        DatabaseMetaData md = c.getMetaData();
        String product = md.getDatabaseProductName() + " " + md.getDatabaseProductVersion();
        String where =
            store.embedded()
                ? "embedded " + product + " under " + store.dataDir() + " (OUTBOARD_DB_URL unset)"
                : product + " at " + store.describe() + " as " + store.user();
        return new Finding(true, PREFIX + "database: reachable (" + where + ")").log();
      }
    } catch (SQLException | ClassNotFoundException e) {
      throw new Failure(databaseFailure(store, e));
    }
  }

  static String databaseFailure(StoreSettings store, Exception e) {
    String why =
        detail(redact(e.getMessage() == null ? e.toString() : e.getMessage(), store.password()))
            .replaceAll("\\.$", "");
    if (store.embedded()) {
      return PREFIX
          + "database: cannot open the embedded database under "
          + store.dataDir()
          + ": "
          + why
          + "; check OUTBOARD_DATA_DIR (is another node using that directory?) or set"
          + " OUTBOARD_DB_URL";
    }
    return PREFIX
        + "database: cannot connect to "
        + store.describe()
        + " as "
        + quoted(store.user())
        + (store.password().isEmpty() ? " without a password" : " with a password")
        + ": "
        + why
        + "; check OUTBOARD_DB_URL, OUTBOARD_DB_USER and OUTBOARD_DB_PASSWORD";
  }

  // ---- sandboxes ----------------------------------------------------------------------------

  /**
   * Starts one trivial bubblewrap sandbox with the provider's own flags; a failure is a warning.
   */
  public static Finding bwrap(BwrapSandboxProvider provider) {
    BwrapSandboxProvider.Probe probe = provider.probe();
    return new Finding(
            probe.usable(),
            PREFIX
                + "bwrap: "
                + (probe.usable()
                    ? "usable (" + probe.detail() + ")"
                    : "NOT usable, sandboxes will fail to start: " + probe.detail()))
        .log();
  }

  /**
   * One authenticated request to the sandbox host; unreachable is a warning (it may come up later).
   */
  public static Finding sandboxHost(RemoteSandboxProvider remote) {
    String host = "sandbox host at " + remote.baseUrl() + " (OUTBOARD_SANDBOX_HOST_URL): ";
    int status;
    try {
      status =
          remote
              .health(HOST_CHECK_TIMEOUT)
              .toCompletableFuture()
              .get(HOST_CHECK_TIMEOUT.plusSeconds(5).toMillis(), TimeUnit.MILLISECONDS);
    } catch (ExecutionException | CompletionException e) {
      return new Finding(
              false,
              PREFIX
                  + host
                  + "unreachable: "
                  + unreachable(e.getCause())
                  + "; sandbox calls fail until it answers")
          .log();
    } catch (TimeoutException e) {
      return new Finding(
              false,
              PREFIX
                  + host
                  + "unreachable: no answer within "
                  + HOST_CHECK_TIMEOUT.toSeconds()
                  + " s")
          .log();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return new Finding(false, PREFIX + host + "not checked (interrupted)").log();
    }
    if (status >= 200 && status < 300) return new Finding(true, PREFIX + host + "reachable").log();
    if (status == 401 || status == 403) {
      return new Finding(
              false,
              PREFIX
                  + host
                  + "token rejected (check OUTBOARD_SANDBOX_HOST_TOKEN: it must match the host's)")
          .log();
    }
    if (status == 404)
      return new Finding(
              true, PREFIX + host + "reachable (an older host without /v1/health; token accepted)")
          .log();
    return new Finding(false, PREFIX + host + "answered HTTP " + status + " to its health check")
        .log();
  }

  private static String unreachable(Throwable e) {
    e = Futures.cause(e);
    if (e instanceof HttpTimeoutException)
      return "no answer within " + HOST_CHECK_TIMEOUT.toSeconds() + " s";
    if (e instanceof java.net.ConnectException && e.getMessage() == null)
      return "connection refused (ConnectException)";
    return detail(
        Secrets.redact(
            e.getMessage() == null
                ? e.getClass().getSimpleName()
                : e.getClass().getSimpleName() + ": " + e.getMessage()));
  }

  // ---- models -------------------------------------------------------------------------------

  /**
   * Which providers are offered and, for each one that is not, the variable that offers it; and
   * whether the scripted model may be used.
   */
  public static List<Finding> models(
      ModelClients models, boolean scriptedAllowed, boolean embedded) {
    List<String> offered = new ArrayList<>();
    List<String> missing = new ArrayList<>();
    PROVIDER_VARIABLES.forEach(
        (provider, variables) -> {
          if (models.get(provider).isPresent()) offered.add(provider);
          else missing.add(provider + " (set " + variables + ")");
        });
    if (scriptedAllowed) offered.add("scripted");
    String defaultProvider = models.defaultProvider();
    boolean defaultOffered = offered.contains(defaultProvider);
    String line =
        PREFIX
            + "model providers: offered: "
            + (offered.isEmpty() ? "none" : String.join(", ", offered))
            + (missing.isEmpty() ? "" : "; not offered: " + String.join(", ", missing))
            + "; default: "
            + defaultProvider
            + (defaultOffered
                ? ""
                : " (NOT offered: sessions that name no provider will fail; set"
                    + " OUTBOARD_MODEL_PROVIDER)");
    String scripted =
        PREFIX
            + "scripted model: "
            + (embedded
                ? "allowed (embedded mode)"
                : scriptedAllowed
                    ? "allowed (OUTBOARD_ALLOW_SCRIPTED=true)"
                    : "not allowed (set OUTBOARD_ALLOW_SCRIPTED=true to allow it)");
    return List.of(
        new Finding(defaultOffered && !offered.isEmpty(), line).log(),
        new Finding(true, scripted).log());
  }

  // ---- ports --------------------------------------------------------------------------------

  /**
   * The line for a listener that could not bind, e.g. {@code port 8080 (OUTBOARD_HTTP_PORT) is
   * already in use on 127.0.0.1; set OUTBOARD_HTTP_PORT to a free port}.
   */
  public static String bindFailure(
      Throwable error, String what, String host, int port, String variable) {
    if (inUse(error)) {
      return PREFIX
          + what
          + ": port "
          + port
          + " ("
          + variable
          + ") is already in use on "
          + host
          + "; set "
          + variable
          + " to a free port";
    }
    return PREFIX
        + what
        + ": cannot listen on "
        + host
        + ":"
        + port
        + " ("
        + variable
        + "): "
        + detail(messages(error));
  }

  /**
   * Ends the node when {@code binding} fails: one line naming {@code variable}, then {@link
   * #abort}. Returns {@code binding}.
   */
  public static <T> CompletionStage<T> exitUnlessBound(
      ActorSystem<?> system,
      CompletionStage<T> binding,
      String what,
      String host,
      int port,
      String variable) {
    return binding.whenComplete(
        (b, error) -> {
          if (error != null) {
            log.error(bindFailure(error, what, host, port, variable));
            abort(system);
          }
        });
  }

  /**
   * Waits for pekko-management's binding ({@code pekko.management.http}).
   *
   * @throws Failure naming OUTBOARD_MANAGEMENT_PORT when it could not bind
   */
  public static void awaitManagement(ActorSystem<?> system, CompletionStage<?> binding) {
    Config http = system.settings().config().getConfig("pekko.management.http");
    String host = orElse(http, "bind-hostname", http.getString("hostname"));
    int port = parsePort(orElse(http, "bind-port", http.getString("port")));
    try {
      binding.toCompletableFuture().get(BIND_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
    } catch (ExecutionException e) {
      throw new Failure(
          bindFailure(e.getCause(), "management", host, port, "OUTBOARD_MANAGEMENT_PORT"));
    } catch (TimeoutException e) {
      throw new Failure(
          PREFIX
              + "management: not bound to "
              + host
              + ":"
              + port
              + " within "
              + BIND_TIMEOUT.toSeconds()
              + " s");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new Failure(PREFIX + "management: interrupted while binding");
    }
  }

  /**
   * Logs why {@code ActorSystem.create} failed: a busy cluster remoting port (Artery binds inside
   * it) names OUTBOARD_REMOTE_PORT; anything else is logged with its stack trace.
   */
  public static void actorSystemFailed(RuntimeException error, Config config) {
    if (!inUse(error)) {
      log.error("start-up failed: {}", error.toString(), error);
      return;
    }
    Config artery = config.getConfig("pekko.remote.artery");
    String host = orElse(artery, "bind.hostname", artery.getString("canonical.hostname"));
    String port = orElse(artery, "bind.port", artery.getString("canonical.port"));
    log.error(
        bindFailure(error, "cluster remoting", host, parsePort(port), "OUTBOARD_REMOTE_PORT"));
  }

  private static String orElse(Config config, String path, String fallback) {
    String value = config.hasPath(path) ? config.getString(path).strip() : "";
    return value.isEmpty() ? fallback : value;
  }

  private static int parsePort(String port) {
    try {
      return Integer.parseInt(port.strip());
    } catch (NumberFormatException e) {
      return -1;
    }
  }

  /** Whether {@code error} or one of its causes says the address is in use. */
  public static boolean inUse(Throwable error) {
    return messages(error).toLowerCase(java.util.Locale.ROOT).contains("address already in use");
  }

  // ---- ending a failed start ------------------------------------------------------------------

  /**
   * Coordinated shutdown with reason {@link Failed}: exit code 1 where the system exits the JVM.
   */
  public static void abort(ActorSystem<?> system) {
    CoordinatedShutdown.get(system).runAll(Failed.INSTANCE);
  }

  /**
   * From {@code main}: {@link #abort}, wait (bounded) for the system to end, and exit with 1 in any
   * case, so that no JVM is left behind (DEPENDENCIES.md pitfall 2).
   */
  public static void exit(ActorSystem<?> system) {
    abort(system);
    try {
      system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (ExecutionException | TimeoutException e) {
      // exit anyway
    }
    System.exit(1);
  }

  // ---- helpers ------------------------------------------------------------------------------

  /** The messages of {@code error} and its causes, joined. */
  private static String messages(Throwable error) {
    StringBuilder out = new StringBuilder();
    for (Throwable t = error; t != null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof CompletionException || t instanceof ExecutionException) continue;
      String m = t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage();
      if (out.indexOf(m) < 0) out.append(out.length() == 0 ? "" : ": ").append(m);
    }
    return Secrets.redact(out.toString());
  }

  /** One line, at most {@link #MAX_DETAIL} characters. */
  static String detail(String text) {
    String line = text.replaceAll("\\s*[\\r\\n]+\\s*", " ").strip();
    return line.length() <= MAX_DETAIL
        ? line
        : line.substring(0, MAX_DETAIL)
            + "… ["
            + (line.length() - MAX_DETAIL)
            + " more characters]";
  }

  static String redact(String text, String password) {
    String out = Secrets.redact(text);
    if (password != null && !password.isEmpty()) out = out.replace(password, "[redacted]");
    return PASSWORD_PARAMETER.matcher(out).replaceAll("$1[redacted]");
  }

  private static String quoted(String s) {
    return "'" + s + "'";
  }
}
