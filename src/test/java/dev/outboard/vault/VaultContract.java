package dev.outboard.vault;

import static org.assertj.core.api.Assertions.assertThat;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.classic.spi.ThrowableProxyUtil;
import ch.qos.logback.core.read.ListAppender;
import com.fasterxml.jackson.databind.JsonNode;
import com.typesafe.config.Config;
import dev.outboard.store.Sql;
import dev.outboard.store.StoreSettings;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.Response;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.RawHttp;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;
import org.slf4j.LoggerFactory;

/**
 * The vault through a node's admin API and {@link Vault#resolve}, on the database a subclass gives
 * it (PostgreSQL or embedded H2). Every value written is remembered; the last test searches the
 * node's log output, every API answer and the metrics for them and finds none.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
abstract class VaultContract {
  private static final Duration WAIT = Duration.ofSeconds(20);

  private final List<String> values = new ArrayList<>();
  private final List<String> answers = new ArrayList<>();
  private final ListAppender<ILoggingEvent> logs = new ListAppender<>();
  private Level level;
  private Vault vault;

  /** The node under test (started by the subclass, at the latest on the first call). */
  abstract InProcessNode node();

  @BeforeAll
  void setUp() throws Exception {
    LoggerContext logback = (LoggerContext) LoggerFactory.getILoggerFactory();
    logs.setContext(logback);
    logs.start();
    logback.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME).addAppender(logs);
    Logger ours = logback.getLogger("dev.outboard");
    level = ours.getLevel();
    ours.setLevel(Level.DEBUG);
    for (String org : List.of("acme", "globex", "listing")) {
      assertThat(admin().post("/v1/admin/orgs", Map.of("id", org, "name", org)).status())
          .isEqualTo(201);
    }
    Config config = node().system().settings().config();
    vault = Vault.open(config, StoreSettings.from(config), node().database());
    assertThat(vault.enabled()).isTrue();
  }

  @AfterAll
  void tearDown() {
    LoggerContext logback = (LoggerContext) LoggerFactory.getILoggerFactory();
    logback.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME).detachAppender(logs);
    logback.getLogger("dev.outboard").setLevel(level);
  }

  private ApiClient admin() {
    return node().admin();
  }

  /** A fresh value to store, remembered for the leak search. */
  private String value(String what) {
    String v = what + "-tök€n-" + UUID.randomUUID();
    values.add(v);
    return v;
  }

  private Response remember(Response r) {
    answers.add(r.status() + " " + r.body() + " " + r.headers().map());
    return r;
  }

  private Response put(String org, String name, String value) {
    return remember(admin().put(secret(org, name), Map.of("value", value)));
  }

  private Response putRaw(String org, String name, String body) {
    return remember(
        RawHttp.send("PUT", node().baseUrl(), secret(org, name), node().adminToken(), body));
  }

  private static String secret(String org, String name) {
    return "/v1/admin/orgs/" + org + "/secrets/" + name;
  }

  private Optional<String> resolve(Vault v, String org, String name) throws Exception {
    return v.resolve(org, name).toCompletableFuture().get(WAIT.toSeconds(), TimeUnit.SECONDS);
  }

  private static Throwable failure(Vault v, String org, String name) {
    try {
      v.resolve(org, name).toCompletableFuture().join();
      throw new AssertionError("secret " + name + " of " + org + " was resolved");
    } catch (CompletionException e) {
      return e.getCause();
    }
  }

  private static void assertError(Response r, int status, String code) {
    assertThat(r.status()).as(r.toString()).isEqualTo(status);
    assertThat(r.json().path("error").path("code").asText()).as(r.toString()).isEqualTo(code);
  }

  @Test
  void aSecretRoundTripsThroughTheApiAndResolve() throws Exception {
    String first = value("first");
    assertThat(put("acme", "github.token", first).status()).isEqualTo(204);
    assertThat(resolve(vault, "acme", "github.token")).contains(first);
    JsonNode before = remember(admin().get("/v1/admin/orgs/acme/secrets")).json();

    String second = value("second");
    assertThat(put("acme", "github.token", second).status()).isEqualTo(204);
    assertThat(resolve(vault, "acme", "github.token")).contains(second);
    assertThat(resolve(vault, "globex", "github.token")).isEmpty();
    JsonNode after = remember(admin().get("/v1/admin/orgs/acme/secrets")).json();
    JsonNode was = entry(before, "github.token");
    JsonNode is = entry(after, "github.token");
    assertThat(is.path("createdAt")).isEqualTo(was.path("createdAt"));
    assertThat(Instant.parse(is.path("updatedAt").asText()))
        .isAfter(Instant.parse(was.path("updatedAt").asText()));

    assertThat(remember(admin().delete(secret("acme", "github.token"))).status()).isEqualTo(204);
    assertThat(resolve(vault, "acme", "github.token")).isEmpty();
    assertError(remember(admin().delete(secret("acme", "github.token"))), 404, "not_found");
  }

  private static JsonNode entry(JsonNode listing, String name) {
    for (JsonNode e : listing.path("secrets")) if (e.path("name").asText().equals(name)) return e;
    throw new AssertionError("no " + name + " in " + listing);
  }

  @Test
  void theStoredRowHoldsNoPlaintext() throws Exception {
    String v = value("at-rest");
    assertThat(put("acme", "at-rest", v).status()).isEqualTo(204);
    byte[] plain = v.getBytes(StandardCharsets.UTF_8);
    List<byte[]> cells = new ArrayList<>();
    try (Connection c = node().database().dataSource().getConnection();
        ResultSet rs = c.createStatement().executeQuery("SELECT * FROM org_secrets")) {
      ResultSetMetaData md = rs.getMetaData();
      while (rs.next()) {
        for (int i = 1; i <= md.getColumnCount(); i++) {
          Object cell = rs.getObject(i);
          if (cell instanceof byte[] bytes) cells.add(bytes);
          else if (cell != null) cells.add(cell.toString().getBytes(StandardCharsets.UTF_8));
        }
      }
    }
    assertThat(cells).isNotEmpty();
    for (byte[] cell : cells) {
      assertThat(indexOf(cell, plain)).isEqualTo(-1);
      assertThat(indexOf(cell, Base64.getEncoder().encode(plain))).isEqualTo(-1);
    }
    try (Connection c = node().database().dataSource().getConnection()) {
      var row =
          Sql.one(
                  c,
                  "SELECT nonce, ciphertext, key_id FROM org_secrets WHERE org_id = ? AND name = ?",
                  rs -> new VaultKey.Sealed(rs.getBytes(1), rs.getBytes(2), rs.getString(3)),
                  "acme",
                  "at-rest")
              .orElseThrow();
      assertThat(row.nonce()).hasSize(12);
      assertThat(row.ciphertext()).hasSize(plain.length + 16);
      assertThat(row.keyId()).hasSize(16);
    }
    assertThat(resolve(vault, "acme", "at-rest")).contains(v);
  }

  private static int indexOf(byte[] haystack, byte[] needle) {
    outer:
    for (int i = 0; i + needle.length <= haystack.length; i++) {
      for (int j = 0; j < needle.length; j++) if (haystack[i + j] != needle[j]) continue outer;
      return i;
    }
    return -1;
  }

  @Test
  void aCiphertextCopiedToAnotherOrgOrNameDoesNotDecrypt() throws Exception {
    String v = value("moved");
    assertThat(put("acme", "moved", v).status()).isEqualTo(204);
    try (Connection c = node().database().dataSource().getConnection()) {
      String copy =
          "INSERT INTO org_secrets (org_id, name, nonce, ciphertext, key_id, created_at,"
              + " updated_at) SELECT ?, ?, nonce, ciphertext, key_id, created_at, updated_at"
              + " FROM org_secrets WHERE org_id = 'acme' AND name = 'moved'";
      Sql.update(c, copy, "globex", "moved");
      Sql.update(c, copy, "acme", "moved-too");
    }
    assertThat(failure(vault, "globex", "moved"))
        .isInstanceOf(Vault.CannotDecrypt.class)
        .hasMessage("cannot decrypt secret moved of org globex: wrong key or tampered");
    assertThat(failure(vault, "acme", "moved-too"))
        .isInstanceOf(Vault.CannotDecrypt.class)
        .hasMessage("cannot decrypt secret moved-too of org acme: wrong key or tampered");
    assertThat(resolve(vault, "acme", "moved")).contains(v);
  }

  @Test
  void aWrongKeyOrATamperedRowFailsWithTheClearError() throws Exception {
    String v = value("wrong-key");
    assertThat(put("acme", "wrong-key", v).status()).isEqualTo(204);
    byte[] other = new byte[32];
    new java.security.SecureRandom().nextBytes(other);
    Vault wrong = new Vault(node().database(), VaultKey.of(other));
    assertThat(failure(wrong, "acme", "wrong-key"))
        .isInstanceOf(Vault.CannotDecrypt.class)
        .hasMessage("cannot decrypt secret wrong-key of org acme: wrong key or tampered")
        .hasNoCause();

    String t = value("tampered");
    assertThat(put("acme", "tampered", t).status()).isEqualTo(204);
    try (Connection c = node().database().dataSource().getConnection()) {
      byte[] bytes =
          Sql.one(
                  c,
                  "SELECT ciphertext FROM org_secrets WHERE org_id = 'acme' AND name = 'tampered'",
                  rs -> rs.getBytes(1))
              .orElseThrow();
      bytes[bytes.length - 1] ^= 0x40;
      Sql.update(
          c,
          "UPDATE org_secrets SET ciphertext = ? WHERE org_id = 'acme' AND name = 'tampered'",
          bytes);
    }
    assertThat(failure(vault, "acme", "tampered"))
        .isInstanceOf(Vault.CannotDecrypt.class)
        .hasMessage("cannot decrypt secret tampered of org acme: wrong key or tampered");
    answers.add(Arrays.toString(failure(vault, "acme", "tampered").getStackTrace()));
  }

  @Test
  void theListingShowsNamesAndTimesOnly() {
    JsonNode empty = remember(admin().get("/v1/admin/orgs/listing/secrets")).json();
    assertThat(empty.path("secrets").isArray()).isTrue();
    assertThat(empty.path("secrets")).isEmpty();
    for (String name : List.of("b", "a", "C", "a.b-c_d")) {
      assertThat(put("listing", name, value("listed-" + name)).status()).isEqualTo(204);
    }
    Response r = remember(admin().get("/v1/admin/orgs/listing/secrets"));
    assertThat(r.status()).isEqualTo(200);
    assertThat(r.header("Content-Type")).contains("application/json; charset=utf-8");
    List<String> names = new ArrayList<>();
    for (JsonNode e : r.json().path("secrets")) {
      names.add(e.path("name").asText());
      List<String> fields = new ArrayList<>();
      e.fieldNames().forEachRemaining(fields::add);
      assertThat(fields).containsExactly("name", "createdAt", "updatedAt");
      assertThat(Instant.parse(e.path("createdAt").asText())).isNotNull();
    }
    assertThat(names).containsExactly("C", "a", "a.b-c_d", "b");
    for (String v : values) assertThat(r.body()).doesNotContain(v);
    assertThat(r.json().fieldNames()).toIterable().containsExactly("secrets");

    assertError(remember(admin().get("/v1/admin/orgs/nobody/secrets")), 404, "not_found");
    assertError(remember(admin().get("/v1/admin/orgs/listing/secrets?x=1")), 400, "bad_request");
  }

  @Test
  void badNamesAndBodiesAre400sAndOversizedValues413() {
    String v = value("refused");
    assertError(put("acme", "x".repeat(65), v), 400, "bad_request");
    assertError(put("acme", "has%20space", v), 400, "bad_request");
    assertError(put("acme", "bang!", v), 400, "bad_request");
    assertError(remember(admin().delete(secret("acme", "bang!"))), 400, "bad_request");
    assertError(put("acme", "ok", ""), 400, "bad_request");
    assertError(putRaw("acme", "ok", ""), 400, "bad_request");
    assertError(putRaw("acme", "ok", "{}"), 400, "bad_request");
    assertError(putRaw("acme", "ok", "{\"value\": 5}"), 400, "bad_request");
    assertError(putRaw("acme", "ok", "{\"value\": true}"), 400, "bad_request");
    assertError(putRaw("acme", "ok", "{\"value\": {\"a\": \"b\"}}"), 400, "bad_request");
    assertError(putRaw("acme", "ok", "{\"value\": null}"), 400, "bad_request");
    assertError(putRaw("acme", "ok", "[\"" + v + "\"]"), 400, "bad_request");
    assertError(putRaw("acme", "ok", "{\"value\": \"" + v + "\", \"x\": 1}"), 400, "bad_request");
    assertError(putRaw("acme", "ok", "{\"value\": \"" + v), 400, "bad_request");
    assertError(putRaw("acme", "ok", "{\"value\": " + v + "}"), 400, "bad_request");
    assertError(putRaw("acme", "ok", "{\"value\": \"x\"} " + v), 400, "bad_request");
    assertError(putRaw("acme", "ok", "{\"value\": \"a\\u0000b\"}"), 400, "bad_request");
    assertError(put("nobody", "ok", v), 404, "not_found");

    String big = "é".repeat(Vault.MAX_VALUE_BYTES / 2) + "x"; // 64 KiB + 1 byte of UTF-8
    Response tooLarge = put("acme", "big", big);
    assertError(tooLarge, 413, VaultRoutes.TOO_LARGE);
    assertThat(tooLarge.body()).contains("65537 bytes");
    assertThat(put("acme", "big", "x".repeat(Vault.MAX_VALUE_BYTES)).status()).isEqualTo(204);

    ApiClient orgKey = node().client(admin().createOrgWithKey("intruder"));
    assertError(
        remember(orgKey.put(secret("acme", "ok"), Map.of("value", v))), 401, "unauthorized");
    assertError(remember(orgKey.get("/v1/admin/orgs/acme/secrets")), 401, "unauthorized");
    assertError(remember(node().client(null).delete(secret("acme", "big"))), 401, "unauthorized");
    assertThat(remember(admin().get("/v1/admin/orgs/acme/secrets")).body())
        .doesNotContain("\"ok\"");
  }

  @Test
  @Order(Integer.MAX_VALUE)
  void noValueAppearsInLogsAnswersOrMetrics() {
    assertThat(values).as("values written by the tests before").hasSizeGreaterThan(5);
    int mgmt = node().system().settings().config().getInt("pekko.management.http.port");
    Response metrics = new ApiClient("http://127.0.0.1:" + mgmt, null).get("/metrics");
    assertThat(metrics.status()).isEqualTo(200);
    List<String> haystack = new ArrayList<>(answers);
    haystack.add("metrics: " + metrics.body());
    for (ILoggingEvent e : List.copyOf(logs.list)) haystack.add(render(e));
    assertThat(logs.list).as("log lines captured").isNotEmpty();
    List<String> leaks =
        haystack.stream().filter(s -> values.stream().anyMatch(s::contains)).toList();
    assertThat(leaks).as("texts containing a secret's value").isEmpty();
  }

  /** A log event as any appender could print it: message, MDC, arguments, whole throwable. */
  private static String render(ILoggingEvent e) {
    Object[] args = e.getArgumentArray();
    String thrown =
        e.getThrowableProxy() == null ? "" : ThrowableProxyUtil.asString(e.getThrowableProxy());
    return e.getLoggerName()
        + " "
        + e.getMDCPropertyMap()
        + " - "
        + e.getFormattedMessage()
        + " "
        + (args == null ? "" : Arrays.deepToString(args))
        + "\n"
        + thrown;
  }
}
