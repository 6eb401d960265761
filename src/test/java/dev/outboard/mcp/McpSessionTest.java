package dev.outboard.mcp;

import static dev.outboard.testing.ScriptedSessions.awaitStatus;
import static dev.outboard.testing.ScriptedSessions.body;
import static dev.outboard.testing.ScriptedSessions.call;
import static dev.outboard.testing.ScriptedSessions.create;
import static dev.outboard.testing.ScriptedSessions.say;
import static dev.outboard.testing.ScriptedSessions.toolCalls;
import static dev.outboard.testing.ScriptedSessions.tools;
import static org.assertj.core.api.Assertions.assertThat;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.classic.spi.ThrowableProxyUtil;
import ch.qos.logback.core.read.ListAppender;
import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.store.Sql;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.Response;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.McpTestServer;
import dev.outboard.testing.Ports;
import dev.outboard.testing.RawHttp;
import dev.outboard.testing.Sandboxes;
import dev.outboard.testing.ScriptedSessions.ToolCall;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;
import org.slf4j.LoggerFactory;

/**
 * MCP servers end to end on an embedded node (H2, bubblewrap sandboxes): the org's token goes into
 * the vault, an MCP server (the SDK's server side, {@link McpTestServer}) is registered with {@code
 * Authorization: Bearer ${secret:DEMO_TOKEN}}, and scripted sessions call its tools. The last test
 * searches everything the run left — every API answer and SSE event, every log line, the metrics,
 * every row of every table (the journal included) and every file below the node's data directory
 * (the sandboxes' workspaces included) — for the token, and finds it nowhere, though the server
 * received it with every request.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class McpSessionTest {
  private static final Duration WAIT = Duration.ofSeconds(30);

  private InProcessNode node;

  private final String token = "mcp-tok-" + HexFormat.of().formatHex(random(16));
  private final List<String> answers = new ArrayList<>();
  private final List<String> sessions = new ArrayList<>();
  private final ListAppender<ILoggingEvent> logs = new ListAppender<>();
  private Level level;
  private McpTestServer server;
  private ApiClient api;

  static String randomKey() {
    return Base64.getEncoder().encodeToString(random(32));
  }

  private static byte[] random(int n) {
    byte[] b = new byte[n];
    new SecureRandom().nextBytes(b);
    return b;
  }

  @BeforeAll
  void setUp() throws Exception {
    LoggerContext logback = (LoggerContext) LoggerFactory.getILoggerFactory();
    logs.setContext(logback);
    logs.start();
    logback.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME).addAppender(logs);
    Logger ours = logback.getLogger("dev.outboard");
    level = ours.getLevel();
    ours.setLevel(Level.DEBUG);

    node = InProcessNode.start("", Map.of("outboard.vault.key", randomKey()));
    server = McpTestServer.start(token);
    api = node.client(node.admin().createOrgWithKey("acme"));
    assertThat(admin().put(secret("DEMO_TOKEN"), Map.of("value", token)).status()).isEqualTo(204);
    Map<String, String> headers = Map.of("Authorization", "Bearer ${secret:DEMO_TOKEN}");
    Response demo = admin().put(mcp("demo"), Map.of("url", server.url(), "headers", headers));
    assertThat(demo.status()).as(demo.toString()).isEqualTo(200);
    String closed = "http://127.0.0.1:" + Ports.free(1)[0] + "/mcp";
    Response down = admin().put(mcp("down"), Map.of("url", closed, "headers", headers));
    assertThat(down.status()).as(down.toString()).isEqualTo(200);
  }

  @AfterAll
  void tearDown() throws Exception {
    LoggerContext logback = (LoggerContext) LoggerFactory.getILoggerFactory();
    logback.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME).detachAppender(logs);
    logback.getLogger("dev.outboard").setLevel(level);
    if (server != null) server.close();
    if (node != null) node.close();
  }

  private ApiClient admin() {
    return node.admin();
  }

  private static String secret(String name) {
    return "/v1/admin/orgs/acme/secrets/" + name;
  }

  private static String mcp(String name) {
    return "/v1/admin/orgs/acme/mcp-servers/" + name;
  }

  private Response remember(Response r) {
    answers.add(r.status() + " " + r.body() + " " + r.headers().map());
    return r;
  }

  private String session(Map<String, Object> body) {
    String id = create(api, body);
    sessions.add(id);
    return id;
  }

  @Test
  @Order(1)
  void theAdminApiListsTheServersAndTheirToolsAsTheModelSeesThem() {
    JsonNode listed = remember(admin().get("/v1/admin/orgs/acme/mcp-servers")).json();
    assertThat(listed.path("servers").findValuesAsText("name")).containsExactly("demo", "down");
    assertThat(listed.path("servers").get(0).path("headers").path("Authorization").asText())
        .isEqualTo("Bearer ${secret:DEMO_TOKEN}");

    Response tools = remember(admin().get(mcp("demo") + "/tools"));
    assertThat(tools.status()).as(tools.toString()).isEqualTo(200);
    assertThat(tools.json().path("tools").findValuesAsText("name"))
        .containsExactlyInAnyOrder(
            "demo__whoami", "demo__echo", "demo__leak", "demo__refuse", "demo__slow");
    JsonNode echo =
        tools.json().path("tools").findParents("name").stream()
            .filter(t -> t.path("name").asText().equals("demo__echo"))
            .findFirst()
            .orElseThrow();
    assertThat(echo.path("inputSchema").path("properties").path("text").path("type").asText())
        .isEqualTo("string");
    assertThat(echo.path("description").asText()).contains("demo").contains("Answers its text");

    Response down = remember(admin().get(mcp("down") + "/tools"));
    assertThat(down.status()).as(down.toString()).isEqualTo(502);
    assertThat(down.json().path("error").path("code").asText()).isEqualTo(McpRoutes.UNAVAILABLE);
    assertThat(remember(admin().get(mcp("nosuch") + "/tools")).status()).isEqualTo(404);
  }

  @Test
  @Order(2)
  void aSessionCallsTheServerWithTheVaultsTokenAndAnIdempotencyKey() {
    int before = server.headerKeys.size();
    String id =
        session(
            body(
                "ann",
                false,
                List.of(
                    tools(
                        "calling",
                        0,
                        call("demo__whoami", Map.of()),
                        call("demo__echo", Map.of("text", "hello from the model"))),
                    say("done"))));
    awaitStatus(api, id, "completed", WAIT);
    List<ToolCall> calls = toolCalls(api, id);
    assertThat(calls)
        .extracting(ToolCall::content)
        .containsExactly("bearer-ok", "hello from the model");
    assertThat(calls).extracting(ToolCall::isError).containsExactly(false, false);
    List<String> keys = calls.stream().map(c -> id + "/" + c.id()).toList();
    assertThat(server.headerKeys.subList(before, server.headerKeys.size()))
        .containsExactlyElementsOf(keys);
    assertThat(server.metaKeys.subList(before, server.metaKeys.size()))
        .containsExactlyElementsOf(keys);
    // Every HTTP request of the MCP session (initialize, notifications, calls) carried the token.
    assertThat(server.authorizations).isNotEmpty().allMatch(a -> a.equals("Bearer " + token));
  }

  @Test
  @Order(3)
  void aServerThatIsDownOrAnUnknownOneIsAToolErrorAndTheSessionGoesOn() {
    String id =
        session(
            body(
                "bob",
                false,
                List.of(
                    tools(
                        "calling",
                        0,
                        call("down__whoami", Map.of()),
                        call("nosuch__whoami", Map.of()),
                        call("demo__refuse", Map.of()),
                        call("demo__whoami", Map.of())),
                    say("went on"))));
    JsonNode done = awaitStatus(api, id, "completed", WAIT);
    assertThat(done.path("result").asText()).isEqualTo("went on");
    List<ToolCall> calls = toolCalls(api, id);
    assertThat(calls.get(0).isError()).isTrue();
    assertThat(calls.get(0).content()).contains("MCP server 'down' failed");
    assertThat(calls.get(1).isError()).isTrue();
    assertThat(calls.get(1).content()).contains("no MCP server 'nosuch'").contains("demo, down");
    assertThat(calls.get(2).isError()).isTrue();
    assertThat(calls.get(2).content()).isEqualTo("nope");
    assertThat(calls.get(3).content()).isEqualTo("bearer-ok");
  }

  @Test
  @Order(4)
  void approvalsHoldMcpToolsByPattern() {
    int before = server.toolCalls.get();
    Map<String, Object> body =
        new LinkedHashMap<>(
            body(
                "cat",
                false,
                List.of(
                    tools(
                        "calling",
                        0,
                        call("demo__whoami", Map.of()),
                        call("demo__echo", Map.of("text", "not held"))),
                    say("approved"))));
    body.put("approvals", List.of("demo__who*"));
    String id = session(body);
    JsonNode held = awaitStatus(api, id, "requires_action", WAIT);
    JsonNode pending = held.path("pendingApprovals");
    assertThat(pending).as("pending: %s", held).hasSize(1);
    assertThat(pending.get(0).path("name").asText()).isEqualTo("demo__whoami");
    assertThat(server.toolCalls.get())
        .as("calls the server got: only the unheld echo")
        .isEqualTo(before + 1);

    Response allowed =
        api.post(
            "/v1/sessions/" + id + "/approvals",
            Map.of("toolUseId", pending.get(0).path("toolUseId").asText(), "decision", "allow"));
    assertThat(allowed.status()).as(allowed.toString()).isEqualTo(202);
    awaitStatus(api, id, "completed", WAIT);
    assertThat(toolCalls(api, id))
        .extracting(ToolCall::content)
        .containsExactly("bearer-ok", "not held");

    // An org policy names MCP tools the same way; an unknown plain tool is still refused.
    Response bad =
        remember(
            admin().put("/v1/admin/orgs/acme/policy", Map.of("approvals", List.of("nosuchtool"))));
    assertThat(bad.status()).as(bad.toString()).isEqualTo(400);
  }

  @Test
  @Order(5)
  void whatAServerEchoesOfTheTokenIsRedactedAndTheSandboxNeverSeesIt() {
    Sandboxes.requireBwrap(McpSessionTest.class);
    String id =
        session(
            body(
                "dan",
                false,
                List.of(
                    tools(
                        "calling",
                        0,
                        call("demo__leak", Map.of()),
                        call(
                            "bash",
                            Map.of(
                                "command",
                                "env; cat /proc/self/environ | tr '\\0' '\\n"
                                    + "'; echo checked > /workspace/env-checked.txt"))),
                    say("done"))));
    awaitStatus(api, id, "completed", WAIT);
    List<ToolCall> calls = toolCalls(api, id);
    assertThat(calls.get(0).content()).isEqualTo("Bearer [secret:DEMO_TOKEN]");
    assertThat(calls.get(1).isError()).as(calls.get(1).content()).isFalse();
    assertThat(calls.get(1).content()).doesNotContain(token).contains("PATH=");
  }

  @Test
  @Order(6)
  void theServerRegistryRefusesWhatItCannotKeepSafe() {
    Map<String, String> literal = Map.of("Authorization", "Bearer " + token);
    Response plain =
        remember(admin().put(mcp("plain"), Map.of("url", server.url(), "headers", literal)));
    assertThat(plain.status()).isEqualTo(400);
    assertThat(plain.body()).contains("must come from the org's vault").doesNotContain(token);
    Response apiKey =
        remember(
            admin()
                .put(
                    mcp("plain"),
                    Map.of("url", server.url(), "headers", Map.of("X-Api-Key", token))));
    assertThat(apiKey.status()).isEqualTo(400);
    Response missing =
        remember(
            admin()
                .put(
                    mcp("plain"),
                    Map.of(
                        "url",
                        server.url(),
                        "headers",
                        Map.of("Authorization", "Bearer ${secret:NOPE}"))));
    assertThat(missing.status()).isEqualTo(400);
    assertThat(missing.body()).contains("NOPE");
    assertThat(remember(admin().put(mcp("Bad_Name"), Map.of("url", server.url()))).status())
        .isEqualTo(400);
    assertThat(remember(admin().put(mcp("a__b"), Map.of("url", server.url()))).status())
        .isEqualTo(400);
    assertThat(remember(admin().put(mcp("ftp"), Map.of("url", "ftp://127.0.0.1/x"))).status())
        .isEqualTo(400);
    assertThat(
            remember(
                    RawHttp.send(
                        "PUT",
                        node.baseUrl(),
                        mcp("raw"),
                        node.adminToken(),
                        "{\"url\": \"" + server.url() + "\", \"headers\": {\"Authorization\": 5}}"))
                .status())
        .isEqualTo(400);
    assertThat(
            remember(
                    RawHttp.send(
                        "PUT", node.baseUrl(), mcp("raw"), node.adminToken(), "{\"url\": " + token))
                .body())
        .doesNotContain(token);
    assertThat(
            remember(
                    admin().put("/v1/admin/orgs/nobody/mcp-servers/x", Map.of("url", server.url())))
                .status())
        .isEqualTo(404);
    assertThat(remember(api.get("/v1/admin/orgs/acme/mcp-servers")).status()).isEqualTo(401);
    assertThat(remember(admin().delete(mcp("nosuch"))).status()).isEqualTo(404);
    assertThat(remember(admin().put(mcp("gone"), Map.of("url", server.url()))).status())
        .isEqualTo(200);
    assertThat(remember(admin().delete(mcp("gone"))).status()).isEqualTo(204);
  }

  @Test
  @Order(Integer.MAX_VALUE)
  void theTokenAppearsNowhere() throws Exception {
    assertThat(server.authorizations).as("requests the server got").hasSizeGreaterThan(5);
    assertThat(server.authorizations).allMatch(a -> a.equals("Bearer " + token));
    List<String> haystack = new ArrayList<>(answers);
    for (String id : sessions) {
      haystack.add(api.get("/v1/sessions/" + id).body());
      haystack.add(api.get("/v1/sessions/" + id + "/transcript").body());
      for (ApiClient.SseEvent e :
          api.events(
              "/v1/sessions/" + id + "/events", Duration.ofSeconds(20), "Last-Event-ID", "0"))
        haystack.add(e.event() + " " + e.data());
    }
    haystack.add(api.get("/v1/sessions").body());
    int mgmt = node.system().settings().config().getInt("pekko.management.http.port");
    Response metrics = new ApiClient("http://127.0.0.1:" + mgmt, null).get("/metrics");
    assertThat(metrics.status()).isEqualTo(200);
    assertThat(metrics.body()).contains("outboard_tool_calls_total{outcome=\"ok\",tool=\"mcp\"}");
    haystack.add(metrics.body());
    for (ILoggingEvent e : List.copyOf(logs.list)) haystack.add(render(e));
    assertThat(logs.list).as("log lines captured").isNotEmpty();
    List<String> rows = everyRow();
    assertThat(String.join("\n", rows)).as("the journal holds the sessions").contains("bearer-ok");
    haystack.addAll(rows);
    List<String> files = everyFile(node.dataDir());
    assertThat(String.join("\n", files))
        .as("a sandbox's workspace is searched")
        .contains("checked");
    haystack.addAll(files);
    List<String> leaks = haystack.stream().filter(s -> s.contains(token)).toList();
    assertThat(leaks).as("texts containing the token").isEmpty();
  }

  /** Every row of every table of the node's database, bytes read as UTF-8. */
  private List<String> everyRow() throws Exception {
    return node.database()
        .transact(
            c -> {
              List<String> tables =
                  Sql.query(
                      c,
                      "SELECT table_name FROM information_schema.tables WHERE table_schema ="
                          + " current_schema()",
                      rs -> rs.getString(1));
              List<String> out = new ArrayList<>();
              for (String t : tables) {
                try (var st = c.createStatement();
                    var rs = st.executeQuery("SELECT * FROM \"" + t + "\"")) {
                  int n = rs.getMetaData().getColumnCount();
                  while (rs.next()) {
                    StringBuilder row = new StringBuilder(t).append(':');
                    for (int i = 1; i <= n; i++) {
                      Object v = rs.getObject(i);
                      if (v instanceof java.sql.Blob blob)
                        v = blob.getBytes(1, (int) blob.length());
                      if (v instanceof java.sql.Clob clob)
                        v = clob.getSubString(1, (int) clob.length());
                      row.append(' ')
                          .append(
                              v instanceof byte[] b
                                  ? new String(b, StandardCharsets.UTF_8)
                                  : String.valueOf(v));
                    }
                    out.add(row.toString());
                  }
                }
              }
              return out;
            })
        .toCompletableFuture()
        .get(30, TimeUnit.SECONDS);
  }

  /** The content of every regular file below {@code dir}, as UTF-8. */
  private static List<String> everyFile(Path dir) throws Exception {
    List<String> out = new ArrayList<>();
    try (Stream<Path> walk = Files.walk(dir)) {
      for (Path p : walk.filter(Files::isRegularFile).toList()) {
        try {
          out.add(p + ": " + new String(Files.readAllBytes(p), StandardCharsets.UTF_8));
        } catch (java.io.IOException e) {
          // a file of a sandbox that went away meanwhile
        }
      }
    }
    return out;
  }

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
