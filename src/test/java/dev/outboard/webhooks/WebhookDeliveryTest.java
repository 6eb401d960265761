package dev.outboard.webhooks;

import static dev.outboard.testing.ScriptedSessions.awaitStatus;
import static dev.outboard.testing.ScriptedSessions.body;
import static dev.outboard.testing.ScriptedSessions.call;
import static dev.outboard.testing.ScriptedSessions.create;
import static dev.outboard.testing.ScriptedSessions.say;
import static dev.outboard.testing.ScriptedSessions.sleep;
import static dev.outboard.testing.ScriptedSessions.tools;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.sun.net.httpserver.HttpServer;
import dev.outboard.Json;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.FreshDatabase;
import dev.outboard.testing.InProcessNode;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Status webhooks on PostgreSQL against a local receiver that fails the first attempts: every
 * status change of a session is delivered, signed, with retries; what is owed when the node stops
 * is delivered by the next one.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class WebhookDeliveryTest {
  private static final Duration WAIT = Duration.ofSeconds(30);
  private static final String SECRET = "whsec-test-0123456789abcdef";
  private static final Map<String, Object> FAST_RETRIES =
      Map.of("outboard.webhooks.first-retry", "50ms", "outboard.webhooks.max-retry", "300ms");

  @RegisterExtension static final FreshDatabase postgres = FreshDatabase.create();

  private HttpServer receiver;

  /**
   * Every attempt: its event id, whether it was answered 2xx, its body and its signature header.
   */
  private final List<Attempt> attempts = new CopyOnWriteArrayList<>();

  private final Map<String, AtomicInteger> triesByEvent = new ConcurrentHashMap<>();
  private final AtomicBoolean refuseAll = new AtomicBoolean();

  record Attempt(String eventId, boolean accepted, String body, String signature) {}

  @BeforeAll
  void start() throws Exception {
    receiver = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    receiver.createContext(
        "/hook",
        ex -> {
          String body = new String(ex.getRequestBody().readAllBytes(), StandardCharsets.UTF_8);
          String id = ex.getRequestHeaders().getFirst("Outboard-Event-Id");
          // Each event: the first two attempts fail (500), the third and later succeed.
          int n = triesByEvent.computeIfAbsent(id, k -> new AtomicInteger()).incrementAndGet();
          boolean ok = !refuseAll.get() && n >= 3;
          attempts.add(
              new Attempt(id, ok, body, ex.getRequestHeaders().getFirst("Outboard-Signature")));
          ex.sendResponseHeaders(ok ? 204 : 500, -1);
          ex.close();
        });
    receiver.start();
  }

  @AfterAll
  void stop() {
    if (receiver != null) receiver.stop(0);
  }

  private String url() {
    return "http://127.0.0.1:" + receiver.getAddress().getPort() + "/hook";
  }

  /**
   * The statuses delivered (accepted) for {@code session}, in the order of their sequence numbers.
   */
  private List<String> delivered(String session) {
    return attempts.stream()
        .filter(Attempt::accepted)
        .map(a -> json(a.body()))
        .filter(j -> j.path("session").path("id").asText().equals(session))
        .sorted((a, b) -> Long.compare(a.path("seq").asLong(), b.path("seq").asLong()))
        .map(j -> j.path("status").asText())
        .toList();
  }

  private void await(String what, Predicate<Void> condition) {
    long deadline = System.nanoTime() + WAIT.toNanos();
    while (!condition.test(null)) {
      if (System.nanoTime() > deadline)
        throw new AssertionError("not within " + WAIT + ": " + what + "; attempts: " + attempts);
      sleep(50);
    }
  }

  private static JsonNode json(String s) {
    try {
      return Json.MAPPER.readTree(s);
    } catch (Exception e) {
      throw new AssertionError("not JSON: " + s, e);
    }
  }

  @Test
  void everyStatusChangeIsDeliveredSignedDespiteFailuresAndWhatIsOwedSurvivesARestart()
      throws Exception {
    List<String> waitingSession = new ArrayList<>();
    try (InProcessNode node = InProcessNode.start(postgres.url(), FAST_RETRIES)) {
      ApiClient admin = node.admin();
      String key = admin.createOrgWithKey("hooks");
      ApiClient api = node.client(key);

      // The admin API: checked input, no secret in answers, 404 for an unknown org.
      assertThat(
              admin
                  .put("/v1/admin/orgs/hooks/webhook", Map.of("url", "ftp://x/y", "secret", SECRET))
                  .status())
          .isEqualTo(400);
      assertThat(
              admin
                  .put("/v1/admin/orgs/hooks/webhook", Map.of("url", url(), "secret", "short"))
                  .status())
          .isEqualTo(400);
      assertThat(
              admin
                  .put("/v1/admin/orgs/nobody/webhook", Map.of("url", url(), "secret", SECRET))
                  .status())
          .isEqualTo(404);
      assertThat(admin.get("/v1/admin/orgs/hooks/webhook").status()).isEqualTo(404);
      ApiClient.Response set =
          admin.put("/v1/admin/orgs/hooks/webhook", Map.of("url", url(), "secret", SECRET));
      assertThat(set.status()).isEqualTo(200);
      assertThat(set.body()).contains(url()).doesNotContain(SECRET);
      assertThat(admin.get("/v1/admin/orgs/hooks/webhook").body())
          .contains(url())
          .doesNotContain(SECRET);

      String completed =
          create(
              api,
              body(
                  "done",
                  false,
                  List.of(
                      tools(
                          "write",
                          0,
                          call("write", Map.of("path", "/session/a.md", "content", "a"))),
                      say("finished"))));
      Map<String, Object> failing =
          body(
              "over",
              false,
              List.of(
                  tools("one", 0, call("read", Map.of("path", "/session/x.md"))),
                  tools("two", 0, call("read", Map.of("path", "/session/x.md")))));
      failing.put("maxTurns", 1);
      String failed = create(api, failing);
      String open = create(api, body("open", true, List.of(say("first"), say("second"))));
      // Waits show as their own statuses: an approval (requires_action), then an event (waiting).
      Map<String, Object> holding =
          body(
              "holds",
              false,
              List.of(
                  tools("ask", 0, call("write", Map.of("path", "/session/a.md", "content", "a"))),
                  tools("wait", 0, call("wait", Map.of("event", "go", "timeoutSeconds", 60))),
                  say("finished")));
      holding.put("approvals", List.of("write"));
      String held = create(api, holding);
      JsonNode asked = awaitStatus(api, held, "requires_action", WAIT);
      assertThat(
              api.post(
                      "/v1/sessions/" + held + "/approvals",
                      Map.of(
                          "toolUseId",
                          asked.path("pendingApprovals").get(0).path("toolUseId").asText(),
                          "decision",
                          "allow"))
                  .status())
          .isEqualTo(202);
      awaitStatus(api, held, "waiting", WAIT);
      assertThat(api.post("/v1/sessions/" + held + "/events/go", Map.of()).status()).isEqualTo(202);
      awaitStatus(api, held, "completed", WAIT);
      awaitStatus(api, completed, "completed", WAIT);
      awaitStatus(api, failed, "failed", WAIT);
      awaitStatus(api, open, "waiting", WAIT);
      assertThat(api.post("/v1/sessions/" + open + "/messages", Map.of("text", "more")).status())
          .isEqualTo(202);
      awaitStatus(api, open, "waiting", WAIT);
      assertThat(api.post("/v1/sessions/" + open + "/cancel", Map.of()).status()).isEqualTo(202);
      awaitStatus(api, open, "cancelled", WAIT);

      await(
          "all deliveries",
          v ->
              delivered(completed).size() == 2
                  && delivered(failed).size() == 2
                  && delivered(open).size() == 5
                  && delivered(held).size() == 6);
      assertThat(delivered(held))
          .containsExactly(
              "running", "requires_action", "running", "waiting", "running", "completed");
      assertThat(delivered(completed)).containsExactly("running", "completed");
      assertThat(delivered(failed)).containsExactly("running", "failed");
      assertThat(delivered(open))
          .containsExactly("running", "waiting", "running", "waiting", "cancelled");

      for (Attempt a : attempts) {
        // t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
        String t = a.signature().substring(2, a.signature().indexOf(','));
        String v1 = a.signature().substring(a.signature().indexOf("v1=") + 3);
        assertThat(v1)
            .as("signature of " + a.eventId())
            .isEqualTo(WebhookDispatcher.sign(SECRET, t + "." + a.body()));
        assertThat(json(a.body()).path("id").asText()).isEqualTo(a.eventId());
      }
      // Each delivery took three attempts: two refused, then accepted; none accepted twice.
      attempts.stream()
          .filter(Attempt::accepted)
          .forEach(a -> assertThat(triesByEvent.get(a.eventId()).get()).isEqualTo(3));
      assertThat(attempts.stream().filter(Attempt::accepted).map(Attempt::eventId))
          .doesNotHaveDuplicates();

      // Now the receiver is down: what happens next stays owed while the node stops.
      refuseAll.set(true);
      String late = create(api, body("late", true, List.of(say("hello"))));
      awaitStatus(api, late, "waiting", WAIT);
      await(
          "attempts at the late session's changes",
          v ->
              attempts.stream()
                  .anyMatch(a -> json(a.body()).path("session").path("id").asText().equals(late)));
      waitingSession.add(late);
    }
    refuseAll.set(false);
    try (InProcessNode next = InProcessNode.start(postgres.url(), FAST_RETRIES)) {
      String late = waitingSession.get(0);
      await(
          "the late session's changes, delivered by the next node",
          v -> delivered(late).size() == 2);
      assertThat(delivered(late)).containsExactly("running", "waiting");
    }
  }
}
