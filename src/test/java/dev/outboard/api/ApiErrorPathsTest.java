package dev.outboard.api;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.Response;
import dev.outboard.testing.ApiClient.SseEvent;
import dev.outboard.testing.PostgresNode;
import dev.outboard.testing.RawHttp;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.Predicate;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The API's answers to everything but the happy path (API.md): authentication, tenancy, request
 * validation, body limits, conflicts, idempotency, list paging and event-stream resumption. One
 * node in this JVM on a fresh PostgreSQL database, with two orgs.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ApiErrorPathsTest {
  private static final Duration WAIT = Duration.ofSeconds(20);
  private static final String UNKNOWN_ID = "s_00000000000000000000000000000000";

  /** A turn that keeps its session running for the whole test class. */
  private static final long FOREVER_MS = 120_000;

  private static final Duration PASSIVATE_AFTER = Duration.ofSeconds(1);

  /** API.md: "JSON everywhere ({@code application/json; charset=utf-8})". */
  private static final String JSON = "application/json; charset=utf-8";

  /** Idle sessions stop their actors after a second, so that requests also reach woken-up ones. */
  @RegisterExtension
  static final PostgresNode node =
      PostgresNode.create()
          .with("outboard.http.max-body-bytes", "64KiB")
          .with("outboard.session.passivate-after", PASSIVATE_AFTER.toMillis() + "ms");

  private String acmeKey;
  private ApiClient acme;
  private ApiClient globex;
  private ApiClient anonymous;

  @BeforeAll
  void createOrgs() {
    acmeKey = node.admin().createOrgWithKey("acme");
    acme = node.client(acmeKey);
    globex = node.client(node.admin().createOrgWithKey("globex"));
    anonymous = node.client(null);
  }

  // ------------------------------------------------------------------ authentication

  @Test
  void requestsWithoutAValidKeyAreUnauthorized() {
    Map<String, Object> body = session("auth", turn("never"));
    assertError(anonymous.get("/v1/sessions"), 401, "unauthorized");
    assertError(anonymous.post("/v1/sessions", body), 401, "unauthorized");
    assertError(
        anonymous.get("/v1/sessions", "Authorization", "Basic " + acmeKey), 401, "unauthorized");
    assertError(anonymous.get("/v1/sessions", "Authorization", "Bearer"), 401, "unauthorized");
    assertError(node.client("not-a-key").get("/v1/sessions"), 401, "unauthorized");
    assertError(node.client(acmeKey + "x").get("/v1/sessions"), 401, "unauthorized");

    // A real key id with a wrong secret: refused both from the database and from the key cache.
    String key =
        node.admin().post("/v1/admin/orgs/acme/keys", Map.of()).json().path("key").asText();
    String wrongSecret = key.substring(0, key.length() - 1) + (key.endsWith("A") ? "B" : "A");
    assertError(node.client(wrongSecret).get("/v1/sessions"), 401, "unauthorized");
    assertThat(node.client(key).get("/v1/sessions").status()).isEqualTo(200);
    assertError(node.client(wrongSecret).get("/v1/sessions"), 401, "unauthorized");
    assertError(node.client(wrongSecret).post("/v1/sessions", body), 401, "unauthorized");
    assertThat(sessionsOf(acme, "user=auth")).isEmpty();
  }

  @Test
  void adminApiNeedsTheAdminToken() {
    Map<String, String> org = Map.of("id", "intruder", "name", "Intruder");
    assertError(anonymous.post("/v1/admin/orgs", org), 401, "unauthorized");
    assertError(node.client("wrong-token").post("/v1/admin/orgs", org), 401, "unauthorized");
    assertError(acme.post("/v1/admin/orgs", org), 401, "unauthorized");
    assertError(anonymous.post("/v1/admin/orgs/acme/keys", Map.of()), 401, "unauthorized");
    assertError(
        node.client("wrong-token").post("/v1/admin/orgs/acme/keys", Map.of()), 401, "unauthorized");
    assertError(acme.post("/v1/admin/orgs/acme/keys", Map.of()), 401, "unauthorized");

    // None of the refused requests created anything.
    assertThat(node.admin().post("/v1/admin/orgs", org).status()).isEqualTo(201);
    assertError(node.admin().post("/v1/admin/orgs", org), 409, "conflict");
    assertError(node.admin().post("/v1/admin/orgs/no-such-org/keys", Map.of()), 404, "not_found");
  }

  // ------------------------------------------------------------------ tenancy

  @Test
  void anotherOrgsSessionIsNotFoundOnEveryEndpoint() {
    String id = create(acme, session("tenant", turn("thinking for a long time", FOREVER_MS)));

    Response unknown = globex.get("/v1/sessions/" + UNKNOWN_ID);
    for (Response r :
        List.of(
            globex.get("/v1/sessions/" + id),
            globex.get("/v1/sessions/" + id + "/transcript"),
            globex.get("/v1/sessions/" + id + "/events"),
            globex.get("/v1/sessions/" + id + "/events?after=0"),
            globex.post("/v1/sessions/" + id + "/messages", Map.of("text", "hello from globex")),
            globex.post("/v1/sessions/" + id + "/cancel", Map.of()))) {
      assertError(r, 404, "not_found");
      // Indistinguishable from a session that does not exist: no 403, nothing confirmed.
      assertThat(r.json().path("error").path("code"))
          .isEqualTo(unknown.json().path("error").path("code"));
    }
    assertThat(sessionsOf(globex, "user=tenant")).isEmpty();

    // The owner still sees it untouched by globex's message and cancel, and can cancel it.
    JsonNode mine = acme.get("/v1/sessions/" + id).json();
    assertThat(mine.path("status").asText()).isEqualTo("running");
    assertThat(mine.path("org").asText()).isEqualTo("acme");
    assertThat(acme.get("/v1/sessions/" + id + "/transcript").json().path("messages")).hasSize(1);
    assertThat(acme.post("/v1/sessions/" + id + "/cancel", Map.of()).status()).isEqualTo(202);
    awaitStatus(acme, id, "cancelled");
    assertError(acme.post("/v1/sessions/" + id + "/cancel", Map.of()), 409, "conflict");
  }

  @Test
  void unknownSessionIdIsNotFound() {
    for (String id : List.of(UNKNOWN_ID, "does-not-exist")) {
      assertError(acme.get("/v1/sessions/" + id), 404, "not_found");
      assertError(acme.get("/v1/sessions/" + id + "/transcript"), 404, "not_found");
      assertError(acme.get("/v1/sessions/" + id + "/events"), 404, "not_found");
      assertError(
          acme.post("/v1/sessions/" + id + "/messages", Map.of("text", "hi")), 404, "not_found");
      assertError(acme.post("/v1/sessions/" + id + "/cancel", Map.of()), 404, "not_found");
    }
  }

  @Test
  void unknownRoutesAndMethodsAnswerInTheErrorShape() {
    assertError(acme.get("/v1/no-such-thing"), 404, "not_found");
    assertError(acme.get("/no-such-thing"), 404, "not_found");
    assertError(acme.delete("/v1/sessions"), 405, "method_not_allowed");
  }

  @Test
  void everyJsonAnswerSaysItIsUtf8() {
    // Answers of our routes, of the error handler, of pekko-http's rejections and of its parser.
    String id = create(acme, session("charset", turn("done")));
    List<Response> answers =
        List.of(
            acme.post("/v1/sessions", session("charset", turn("again"))),
            acme.get("/v1/sessions/" + id),
            acme.get("/v1/sessions?user=charset"),
            acme.get("/v1/sessions/" + id + "/transcript"),
            node.admin().get("/v1/admin/orgs/acme/policy"),
            acme.get("/v1/usage"),
            acme.get("/v1/no-such-thing"),
            acme.delete("/v1/sessions"),
            anonymous.get("/v1/sessions"),
            acme.postRaw("/v1/sessions", "{"),
            acme.get("/v1/sessions/" + "x".repeat(20_000)));
    assertThat(answers)
        .allSatisfy(r -> assertThat(r.header("Content-Type")).as(r.toString()).contains(JSON));
    assertThat(answers).extracting(Response::status).contains(200, 201, 400, 401, 404, 405, 414);
  }

  // ------------------------------------------------------------------ validation

  static Stream<Arguments> invalidCreateBodies() {
    return Stream.of(
        Arguments.of("not JSON", "{not json", "JSON"),
        Arguments.of("empty body", "", "required"),
        Arguments.of("a JSON array", "[]", ""),
        Arguments.of("trailing tokens", "{\"prompt\": \"x\"} {\"prompt\": \"y\"}", ""),
        Arguments.of("unknown top-level field", "{\"prompt\": \"x\", \"surprise\": 1}", "surprise"),
        Arguments.of(
            "unknown field in model",
            "{\"prompt\": \"x\", \"model\": {\"provider\": \"scripted\", \"script\": [],"
                + " \"temperature\": 0.5}}",
            "temperature"),
        Arguments.of(
            "unknown field in a scripted turn",
            "{\"prompt\": \"x\", \"model\": {\"provider\": \"scripted\", \"script\": [{\"text\":"
                + " \"a\", \"tools\": []}]}}",
            "tools"),
        Arguments.of(
            "maxTurns of the wrong type", "{\"prompt\": \"x\", \"maxTurns\": \"x\"}", "maxTurns"),
        Arguments.of("prompt of the wrong type", "{\"prompt\": {\"text\": \"x\"}}", "prompt"),
        Arguments.of(
            "keepOpen of the wrong type", "{\"prompt\": \"x\", \"keepOpen\": \"yes\"}", "keepOpen"),
        Arguments.of("missing prompt", "{\"user\": \"alice\"}", "prompt"),
        Arguments.of("blank prompt", "{\"prompt\": \"  \"}", "prompt"),
        Arguments.of("maxTurns 0", "{\"prompt\": \"x\", \"maxTurns\": 0}", "maxTurns"),
        Arguments.of(
            "maxTurns over the cap", "{\"prompt\": \"x\", \"maxTurns\": 10001}", "maxTurns"),
        Arguments.of(
            "metadata not an object", "{\"prompt\": \"x\", \"metadata\": [1]}", "metadata"),
        Arguments.of(
            "unknown model provider",
            "{\"prompt\": \"x\", \"model\": {\"provider\": \"nope\"}}",
            "nope"),
        Arguments.of(
            "scripted model without a script",
            "{\"prompt\": \"x\", \"model\": {\"provider\": \"scripted\"}}",
            "script"));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("invalidCreateBodies")
  void invalidCreateBodiesAreBadRequests(String what, String body, String messageMentions) {
    int before = sessionsOf(acme, "limit=500").size();
    Response r = acme.postRaw("/v1/sessions", body);
    assertError(r, 400, "bad_request");
    assertThat(r.json().path("error").path("message").asText()).as(what).contains(messageMentions);
    assertThat(sessionsOf(acme, "limit=500")).as("no session created for: " + what).hasSize(before);
  }

  @Test
  void unknownQueryParametersAreBadRequestsOnEveryEndpointAndChangeNothing() {
    String id = create(acme, keepOpen(session("query", turn("ready"))));
    awaitStatus(acme, id, "waiting");
    String s = "/v1/sessions/" + id;
    assertUnknownParameter(
        acme.get("/v1/sessions?stauts=running"), "stauts", "status, user, limit, cursor");
    assertUnknownParameter(
        acme.post("/v1/sessions?dryRun=true", session("query-created", turn("no"))),
        "dryRun",
        "none");
    assertUnknownParameter(acme.get(s + "?wiat=30s"), "wiat", "wait");
    assertUnknownParameter(acme.get(s + "/transcript?ful=true"), "ful", "full");
    assertUnknownParameter(acme.get(s + "/events?since=0"), "since", "after");
    assertUnknownParameter(
        acme.post(s + "/messages?role=system", Map.of("text", "not delivered")), "role", "none");
    assertUnknownParameter(
        acme.post(s + "/approvals?x=1", Map.of("toolUseId", "t", "decision", "allow")),
        "x",
        "none");
    assertUnknownParameter(acme.post(s + "/budget?x=1", Map.of("maxTurns", 9)), "x", "none");
    assertUnknownParameter(acme.post(s + "/events/ci.done?x=1", Map.of()), "x", "none");
    assertUnknownParameter(acme.post(s + "/cancel?force", Map.of()), "force", "none");
    assertUnknownParameter(acme.get("/v1/usage?since=2026-01-01"), "since", "from, to");
    assertUnknownParameter(
        node.admin().post("/v1/admin/orgs?x=1", Map.of("id", "query-org", "name", "Q")),
        "x",
        "none");
    assertUnknownParameter(
        node.admin().get("/v1/admin/orgs/acme/policy?verbose"), "verbose", "none");
    Response twice = acme.get("/v1/sessions?limit=1&limit=2");
    assertError(twice, 400, "bad_request");
    assertThat(twice.json().path("error").path("message").asText())
        .contains("'limit'", "more than once");

    // Nothing of that happened: the session waits with its two messages, no session or org was
    // made.
    JsonNode after = acme.get(s).json();
    assertThat(after.path("status").asText()).isEqualTo("waiting");
    assertThat(acme.get(s + "/transcript").json().path("messages")).hasSize(2);
    assertThat(sessionsOf(acme, "user=query-created")).isEmpty();
    assertError(node.admin().get("/v1/admin/orgs/query-org/policy"), 404, "not_found");
    // The parameters an endpoint takes still work.
    assertThat(acme.get(s + "?wait=0s").status()).isEqualTo(200);
    assertThat(acme.get("/v1/sessions?user=query&limit=5").status()).isEqualTo(200);
  }

  private static void assertUnknownParameter(Response r, String name, String accepted) {
    assertError(r, 400, "bad_request");
    assertThat(r.json().path("error").path("message").asText())
        .contains(
            "unknown query parameter '" + name + "'",
            accepted.equals("none") ? "takes none" : "takes " + accepted);
  }

  static Stream<Arguments> illTypedBodies() {
    return Stream.of(
        Arguments.of(
            "{\"prompt\": \"x\", \"maxTurns\": \"x\"}",
            "at maxTurns: expected an integer, got a string"),
        Arguments.of(
            "{\"prompt\": {\"text\": \"x\"}}", "at prompt: expected a string, got an object"),
        Arguments.of(
            "{\"prompt\": \"x\", \"keepOpen\": \"yes\"}",
            "at keepOpen: expected a boolean (true or false), got a string"),
        Arguments.of(
            "{\"prompt\": \"x\", \"maxTurns\": 99999999999}",
            "at maxTurns: the number is out of range for an integer"),
        Arguments.of(
            "{\"prompt\": \"x\", \"approvals\": \"bash\"}",
            "at approvals: expected an array, got a string"),
        Arguments.of(
            "{\"prompt\": \"x\", \"approvals\": [\"bash\", {}]}",
            "at approvals[1]: expected a string, got an object"),
        Arguments.of(
            "{\"prompt\": \"x\", \"model\": []}", "at model: expected an object, got an array"),
        Arguments.of(
            "{\"prompt\": \"x\", \"budget\": {\"maxTokens\": true}}",
            "at budget.maxTokens: expected an integer, got a boolean"),
        Arguments.of(
            "{\"prompt\": \"x\", \"model\": {\"provider\": \"scripted\", \"script\":"
                + " [{\"latencyMs\": \"x\"}]}}",
            "at model.script[0].latencyMs: expected an integer, got a string"),
        Arguments.of("[1]", "the body must be a JSON object, not an array"),
        Arguments.of("3", "the body must be a JSON object, not an integer"),
        Arguments.of(
            "{\"prompt\": ",
            "the body is not valid JSON (line 1, column 12): Unexpected end-of-input"));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("illTypedBodies")
  void typeErrorsNameJsonTypesNotJavaClasses(String body, String message) {
    Response r = acme.postRaw("/v1/sessions", body);
    assertError(r, 400, "bad_request");
    assertThat(r.json().path("error").path("message").asText())
        .contains(message)
        .doesNotContain("java.", "`", "dev.outboard");
  }

  @Test
  void invalidMessageBodiesAreBadRequests() {
    String id = create(acme, keepOpen(session("messages", turn("ready"))));
    awaitStatus(acme, id, "waiting");
    String path = "/v1/sessions/" + id + "/messages";
    assertError(acme.postRaw(path, "{oops"), 400, "bad_request");
    assertError(acme.postRaw(path, "{\"text\": \"hi\", \"role\": \"user\"}"), 400, "bad_request");
    assertError(acme.postRaw(path, "{\"text\": [\"a\"]}"), 400, "bad_request");
    assertError(acme.postRaw(path, "{\"text\": \" \"}"), 400, "bad_request");
    assertError(acme.postRaw(path, "{}"), 400, "bad_request");
    // Nothing of that reached the session.
    JsonNode s = acme.get("/v1/sessions/" + id).json();
    assertThat(s.path("status").asText()).isEqualTo("waiting");
    assertThat(s.path("turns").asInt()).isEqualTo(1);
    assertThat(acme.get("/v1/sessions/" + id + "/transcript").json().path("messages")).hasSize(2);
  }

  @Test
  void bodyOverTheLimitIsPayloadTooLarge() {
    String big = "x".repeat(200_000);
    Response r =
        acme.post(
            "/v1/sessions",
            Map.of(
                "prompt",
                big,
                "user",
                "big",
                "model",
                Map.of("provider", "scripted", "script", List.of(turn("ok")))));
    assertError(r, 413, "body_too_large");
    assertThat(sessionsOf(acme, "user=big")).isEmpty();

    // Just under the configured 64 KiB is fine.
    String id =
        create(
            acme,
            Map.of(
                "prompt",
                "y".repeat(60_000),
                "user",
                "big",
                "model",
                Map.of("provider", "scripted", "script", List.of(turn("ok")))));
    awaitStatus(acme, id, "completed");
    assertError(
        acme.post("/v1/sessions/" + id + "/messages", Map.of("text", big)), 413, "body_too_large");
    assertError(
        node.admin().post("/v1/admin/orgs", Map.of("id", "big", "name", big)),
        413,
        "body_too_large");
  }

  @Test
  void eachCauseOfA413HasItsOwnCode() {
    // A body over outboard.http.max-body-bytes (64 KiB here) is body_too_large; an event's payload
    // over outboard.waits.max-payload-bytes (256 KiB) is event_too_large; org files:
    // FileRoutesTest.
    String id = create(acme, keepOpen(session("too-large", turn("ready"))));
    awaitStatus(acme, id, "waiting");
    Response event =
        acme.post("/v1/sessions/" + id + "/events/ci.done", Map.of("log", "x".repeat(300_000)));
    assertError(event, 413, "event_too_large");
    assertThat(event.json().path("error").path("message").asText())
        .contains("event's payload", "262144 bytes");
    Response body =
        acme.post("/v1/sessions/" + id + "/messages", Map.of("text", "x".repeat(70_000)));
    assertError(body, 413, "body_too_large");
    assertThat(body.json().path("error").path("message").asText())
        .contains("request body", "65536 bytes");
    // Between the two limits an event is fine.
    assertThat(
            acme.post("/v1/sessions/" + id + "/events/ci.done", Map.of("log", "x".repeat(100_000)))
                .status())
        .isEqualTo(202);
  }

  @Test
  void nulCharactersInJsonStringsAreRefused() {
    // JSON may escape NUL; PostgreSQL's text cannot hold it (the sessions list keeps the user): it
    // was a 500.
    Response r =
        acme.postRaw(
            "/v1/sessions",
            "{\"prompt\": \"x\", \"user\": \"nul\\u0000user\","
                + " \"model\": {\"provider\": \"scripted\", \"script\": [{\"text\": \"done\"}]}}");
    assertError(r, 400, "bad_request");
    assertThat(r.json().path("error").path("message").asText()).contains("NUL", "at user");
    assertError(
        node.admin().postRaw("/v1/admin/orgs", "{\"id\": \"nul-org\", \"name\": \"N\\u0000\"}"),
        400,
        "bad_request");
    // A backslash before "u0000" is no NUL; values kept as JSON (metadata, a scripted call's input)
    // may hold one.
    String id =
        create(
            acme,
            Map.of(
                "prompt",
                "a \\u0000 b",
                "user",
                "nul-free",
                "metadata",
                Map.of("k", "v\u0000"),
                "model",
                Map.of("provider", "scripted", "script", List.of(turn("done")))));
    assertThat(awaitStatus(acme, id, "completed").path("metadata").path("k").asText())
        .isEqualTo("v\u0000");
    assertError(node.admin().get("/v1/admin/orgs/nul-org/policy"), 404, "not_found");
  }

  @Test
  void jsonBodiesThatAreNotUtf8AreRefused() {
    byte[] latin1 =
        "{\"prompt\": \"café\", \"user\": \"latin1\"}"
            .getBytes(java.nio.charset.StandardCharsets.ISO_8859_1);
    Response r =
        RawHttp.sendBytes(
            "POST", node.baseUrl(), "/v1/sessions", acmeKey, "application/json", latin1);
    assertError(r, 400, "bad_request");
    assertThat(r.json().path("error").path("message").asText()).contains("not valid UTF-8");
    byte[] utf16 =
        "{\"prompt\": \"x\", \"user\": \"latin1\"}"
            .getBytes(java.nio.charset.StandardCharsets.UTF_16);
    assertError(
        RawHttp.sendBytes(
            "POST", node.baseUrl(), "/v1/sessions", acmeKey, "application/json", utf16),
        400,
        "bad_request");
    assertError(
        RawHttp.sendBytes(
            "POST", node.baseUrl(), "/v1/sessions", acmeKey, "text/plain; charset=utf-16", utf16),
        415,
        "unsupported_media_type");
    assertThat(sessionsOf(acme, "user=latin1")).isEmpty();
  }

  // ------------------------------------------------------------------ conflicts

  @Test
  void finishedSessionRejectsMessagesAndCancelWithConflict() {
    String id = create(acme, session("finished", turn("all done")));
    JsonNode done = awaitStatus(acme, id, "completed");
    assertThat(done.path("result").asText()).isEqualTo("all done");

    assertError(
        acme.post("/v1/sessions/" + id + "/messages", Map.of("text", "one more thing")),
        409,
        "conflict");
    assertError(acme.post("/v1/sessions/" + id + "/cancel", Map.of()), 409, "conflict");

    JsonNode after = acme.get("/v1/sessions/" + id).json();
    assertThat(after.path("status").asText()).isEqualTo("completed");
    assertThat(after.path("turns").asInt()).isEqualTo(1);
    assertThat(acme.get("/v1/sessions/" + id + "/transcript").json().path("messages")).hasSize(2);
  }

  @Test
  void sessionOverItsTurnBudgetFailsWithMaxTurns() {
    Map<String, Object> ls = Map.of("name", "ls", "input", Map.of("path", "/session"));
    Map<String, Object> body =
        keepOpen(
            session(
                "budget",
                toolTurn("one", ls),
                toolTurn("two", ls),
                toolTurn("three", ls),
                turn("never")));
    body.put("maxTurns", 2);
    String id = create(acme, body);
    JsonNode failed = awaitStatus(acme, id, "failed");
    assertThat(failed.path("turns").asInt()).isEqualTo(2);
    assertThat(failed.path("error").path("code").asText()).isEqualTo("max_turns");
    assertThat(failed.path("error").path("message").asText()).isNotBlank();
    List<SseEvent> events = acme.events("/v1/sessions/" + id + "/events", WAIT);
    assertThat(events.get(events.size() - 1).event()).isEqualTo("session.failed");
    assertThat(events.get(events.size() - 1).json().path("error").path("code").asText())
        .isEqualTo("max_turns");
    assertError(
        acme.post("/v1/sessions/" + id + "/messages", Map.of("text", "more")), 409, "conflict");
  }

  // ------------------------------------------------------------------ idempotency

  @Test
  void theSameIdempotencyKeyReturnsTheFirstSessionOnlyWithinOneOrg() {
    String idemKey = "create-" + UUID.randomUUID();
    Map<String, Object> body = session("idem", turn("once"));

    Response first = acme.post("/v1/sessions", body, "Idempotency-Key", idemKey);
    assertThat(first.status()).as(first.toString()).isEqualTo(201);
    String id = first.json().path("id").asText();
    Response again = acme.post("/v1/sessions", body, "Idempotency-Key", idemKey);
    assertThat(again.status()).as(again.toString()).isEqualTo(201);
    assertThat(again.json().path("id").asText()).isEqualTo(id);
    assertThat(again.header("Location")).contains("/v1/sessions/" + id);
    Response otherBody =
        acme.post("/v1/sessions", session("idem", turn("twice")), "Idempotency-Key", idemKey);
    assertThat(otherBody.json().path("id").asText()).isEqualTo(id);

    Response foreign = globex.post("/v1/sessions", body, "Idempotency-Key", idemKey);
    assertThat(foreign.status()).as(foreign.toString()).isEqualTo(201);
    String foreignId = foreign.json().path("id").asText();
    assertThat(foreignId).isNotEqualTo(id);
    assertThat(foreign.json().path("org").asText()).isEqualTo("globex");

    // Without the header every request is a new session.
    String plain = create(acme, body);
    assertThat(plain).isNotIn(id, foreignId);

    assertThat(awaitStatus(acme, id, "completed").path("result").asText()).isEqualTo("once");
    awaitStatus(acme, plain, "completed");
    assertThat(
            awaitList(
                acme,
                "user=idem",
                l ->
                    l.size() == 2
                        && l.stream().allMatch(s -> s.path("status").asText().equals("completed"))))
        .extracting(s -> s.path("id").asText())
        .containsExactlyInAnyOrder(id, plain);
    assertThat(sessionsOf(globex, "user=idem"))
        .extracting(s -> s.path("id").asText())
        .containsExactly(foreignId);
    assertError(
        acme.post("/v1/sessions", body, "Idempotency-Key", "k".repeat(257)), 400, "bad_request");
  }

  @Test
  void concurrentCreatesWithTheSameIdempotencyKeyMakeOneSession() throws Exception {
    // A client retrying while its first request is still in flight: every request with the key
    // must get the first response. Several rounds, as the race may not show in every one.
    int rounds = 5;
    int clients = 8;
    ExecutorService pool = Executors.newFixedThreadPool(clients);
    try {
      for (int round = 1; round <= rounds; round++) {
        String idemKey = "race-" + round + "-" + UUID.randomUUID();
        String user = "idem-race-" + round;
        Map<String, Object> body = session(user, turn("once"));
        CountDownLatch go = new CountDownLatch(1);
        List<Future<Response>> futures = new ArrayList<>();
        for (int i = 0; i < clients; i++) {
          futures.add(
              pool.submit(
                  () -> {
                    go.await();
                    return acme.post("/v1/sessions", body, "Idempotency-Key", idemKey);
                  }));
        }
        go.countDown();
        List<Response> answers = new ArrayList<>();
        for (Future<Response> f : futures) answers.add(f.get());
        assertThat(answers)
            .as("round %d: every request with the key gets the first response", round)
            .allSatisfy(r -> assertThat(r.status()).as(r.toString()).isEqualTo(201));
        assertThat(answers.stream().map(r -> r.json().path("id").asText()).distinct())
            .as("round %d", round)
            .hasSize(1);
        assertThat(awaitList(acme, "user=" + user, l -> !l.isEmpty()))
            .as("round %d", round)
            .hasSize(1);
      }
    } finally {
      pool.shutdownNow();
    }
  }

  // ------------------------------------------------------------------ list

  @Test
  void listFiltersByStatusAndUserAndPagesWithACursor() {
    List<String> completed = new ArrayList<>();
    for (int i = 0; i < 5; i++) completed.add(create(acme, session("pager", turn("page " + i))));
    String waiting = create(acme, keepOpen(session("pager", turn("waiting for you"))));
    String other = create(acme, session("someone-else", turn("not mine")));
    for (String id : completed) awaitStatus(acme, id, "completed");
    awaitStatus(acme, waiting, "waiting");
    awaitStatus(acme, other, "completed");

    List<String> all = new ArrayList<>(completed);
    all.add(waiting);
    awaitList(acme, "user=pager&status=completed", l -> l.size() == 5);

    // Paging through every session of the user two at a time sees each exactly once.
    List<String> seen = new ArrayList<>();
    String cursor = null;
    int pages = 0;
    do {
      Response page =
          acme.get("/v1/sessions?user=pager&limit=2" + (cursor == null ? "" : "&cursor=" + cursor));
      assertThat(page.status()).as(page.toString()).isEqualTo(200);
      JsonNode sessions = page.json().path("sessions");
      assertThat(sessions.size()).isBetween(1, 2);
      sessions.forEach(
          s -> {
            assertThat(s.path("user").asText()).isEqualTo("pager");
            seen.add(s.path("id").asText());
          });
      JsonNode next = page.json().path("next");
      cursor = next.isNull() || next.isMissingNode() ? null : next.asText();
      assertThat(++pages).as("pages").isLessThanOrEqualTo(3);
    } while (cursor != null);
    assertThat(seen).doesNotHaveDuplicates().containsExactlyInAnyOrderElementsOf(all);

    assertThat(sessionsOf(acme, "user=pager&status=completed"))
        .extracting(s -> s.path("id").asText())
        .containsExactlyInAnyOrderElementsOf(completed);
    assertThat(sessionsOf(acme, "user=pager&status=waiting"))
        .extracting(s -> s.path("id").asText())
        .containsExactly(waiting);
    assertThat(sessionsOf(acme, "user=pager&status=running")).isEmpty();
    assertThat(sessionsOf(acme, "user=someone-else"))
        .extracting(s -> s.path("id").asText())
        .containsExactly(other);
    assertThat(sessionsOf(globex, "user=pager")).isEmpty();

    assertError(acme.get("/v1/sessions?status=sleeping"), 400, "bad_request");
    assertError(acme.get("/v1/sessions?limit=0"), 400, "bad_request");
    assertError(acme.get("/v1/sessions?limit=many"), 400, "bad_request");
    assertError(acme.get("/v1/sessions?cursor=not-a-cursor"), 400, "bad_request");
  }

  // ------------------------------------------------------------------ messages

  @Test
  void messageToAWaitingKeepOpenSessionIsAcceptedAndContinuesIt() {
    String id =
        create(acme, keepOpen(session("keep-open", turn("first answer"), turn("second answer"))));
    JsonNode waiting = awaitStatus(acme, id, "waiting");
    assertThat(waiting.path("turns").asInt()).isEqualTo(1);
    assertThat(waiting.path("result").asText()).isEqualTo("first answer");

    Response r = acme.post("/v1/sessions/" + id + "/messages", Map.of("text", "and then?"));
    assertThat(r.status()).as(r.toString()).isEqualTo(202);
    JsonNode again =
        awaitSummary(
            acme,
            id,
            s -> s.path("turns").asInt() == 2 && s.path("status").asText().equals("waiting"));
    assertThat(again.path("result").asText()).isEqualTo("second answer");

    assertThat(texts(acme.get("/v1/sessions/" + id + "/transcript").json()))
        .containsExactly(
            "user: prompt of keep-open",
            "assistant: first answer",
            "user: and then?",
            "assistant: second answer");
  }

  @Test
  void messageToARunningSessionIsQueuedUntilTheTurnEnds() {
    String id =
        create(
            acme,
            keepOpen(session("queued", turn("slow answer", 1500), turn("answer to the note"))));
    Response r =
        acme.post("/v1/sessions/" + id + "/messages", Map.of("text", "a note while you think"));
    assertThat(r.status()).as(r.toString()).isEqualTo(202);
    assertThat(r.json().path("status").asText()).isEqualTo("running");

    JsonNode done =
        awaitSummary(
            acme,
            id,
            s -> s.path("turns").asInt() == 2 && s.path("status").asText().equals("waiting"));
    assertThat(done.path("result").asText()).isEqualTo("answer to the note");
    assertThat(texts(acme.get("/v1/sessions/" + id + "/transcript").json()))
        .containsExactly(
            "user: prompt of queued",
            "assistant: slow answer",
            "user: a note while you think",
            "assistant: answer to the note");
  }

  @Test
  void aWaitingSessionThatWentIdleWakesUpWithItsFilesForTheNextMessage() {
    String id =
        create(
            acme,
            keepOpen(
                session(
                    "sleeper",
                    toolTurn(
                        "noting",
                        Map.of(
                            "name",
                            "write",
                            "input",
                            Map.of("path", "/session/notes.md", "content", "remember me"))),
                    turn("first answer"),
                    toolTurn(
                        "recalling",
                        Map.of("name", "read", "input", Map.of("path", "/session/notes.md"))),
                    turn("second answer"))));
    awaitStatus(acme, id, "waiting");
    sleep(PASSIVATE_AFTER.multipliedBy(3).toMillis());

    assertThat(
            acme.post("/v1/sessions/" + id + "/messages", Map.of("text", "what did you note?"))
                .status())
        .isEqualTo(202);
    JsonNode s =
        awaitSummary(
            acme,
            id,
            x -> x.path("turns").asInt() == 4 && x.path("status").asText().equals("waiting"));
    assertThat(s.path("result").asText()).isEqualTo("second answer");
    List<String> results = new ArrayList<>();
    acme.get("/v1/sessions/" + id + "/transcript")
        .json()
        .path("messages")
        .forEach(
            m ->
                m.path("content")
                    .forEach(
                        b -> {
                          if (b.path("type").asText().equals("tool_result"))
                            results.add(b.path("content").asText().strip());
                        }));
    assertThat(results).hasSize(2);
    assertThat(results.get(1)).isEqualTo("1\tremember me");
  }

  // ------------------------------------------------------------------ events

  @Test
  void eventStreamResumesRightAfterLastEventIdOrAfterParameter() {
    Map<String, Object> write =
        Map.of("name", "write", "input", Map.of("path", "/session/a.md", "content", "a"));
    Map<String, Object> read = Map.of("name", "read", "input", Map.of("path", "/session/a.md"));
    String id =
        create(
            acme,
            session("sse", toolTurn("one", write), toolTurn("two", read, write), turn("three")));
    awaitStatus(acme, id, "completed");
    String path = "/v1/sessions/" + id + "/events";

    List<SseEvent> full = withIds(acme.events(path, WAIT));
    assertThat(full.get(0).event()).isEqualTo("session.started");
    assertThat(full.get(0).seq()).isEqualTo(1);
    assertThat(full.get(full.size() - 1).event()).isEqualTo("session.completed");
    assertThat(full).extracting(SseEvent::seq).isSorted().doesNotHaveDuplicates();
    assertThat(withIds(acme.events(path, WAIT, "Last-Event-ID", "0"))).isEqualTo(full);

    for (SseEvent resumeAfter :
        List.of(full.get(1), full.get(full.size() / 2), full.get(full.size() - 2))) {
      long n = resumeAfter.seq();
      List<SseEvent> expected = full.stream().filter(e -> e.seq() > n).toList();
      List<SseEvent> byHeader = withIds(acme.events(path, WAIT, "Last-Event-ID", Long.toString(n)));
      List<SseEvent> byParam = withIds(acme.events(path + "?after=" + n, WAIT));
      assertThat(byHeader).as("Last-Event-ID: " + n).isEqualTo(expected);
      assertThat(byParam).as("?after=" + n).isEqualTo(expected);
      assertThat(byHeader.get(0).seq()).isEqualTo(n + 1);
    }
    // Nothing after the terminal event: 204, which tells standard SSE clients to stop reconnecting.
    ApiClient.Response end =
        acme.get(path, "Last-Event-ID", Long.toString(full.get(full.size() - 1).seq()));
    assertThat(end.status()).isEqualTo(204);
    assertThat(end.body()).isEmpty();
    assertError(acme.get(path, "Last-Event-ID", "yesterday"), 400, "bad_request");
    assertError(acme.get(path + "?after=-1"), 400, "bad_request");
  }

  @Test
  void liveEventStreamResumedMidSessionFollowsItToTheEnd() {
    Map<String, Object> write =
        Map.of("name", "write", "input", Map.of("path", "/session/live.md", "content", "x"));
    String id =
        create(
            acme,
            session("sse-live", toolTurn("one", write), turn("two", 400), turn("three", 400)));
    String path = "/v1/sessions/" + id + "/events";
    awaitSummary(acme, id, s -> s.path("turns").asInt() >= 1);

    List<SseEvent> live = withIds(acme.events(path, WAIT, "Last-Event-ID", "2"));
    JsonNode after = acme.get("/v1/sessions/" + id).json();
    assertThat(after.path("status").asText()).isEqualTo("completed");
    List<SseEvent> full = withIds(acme.events(path, WAIT));
    assertThat(live).isEqualTo(full.stream().filter(e -> e.seq() > 2).toList());
    assertThat(live.get(0).seq()).isEqualTo(3);
    assertThat(live.get(live.size() - 1).event()).isEqualTo("session.completed");
  }

  // ------------------------------------------------------------------ helpers

  private static Map<String, Object> turn(String text) {
    return Map.of("text", text);
  }

  private static Map<String, Object> turn(String text, long latencyMs) {
    return Map.of("text", text, "latencyMs", latencyMs);
  }

  @SafeVarargs
  private static Map<String, Object> toolTurn(String text, Map<String, Object>... calls) {
    return Map.of("text", text, "toolCalls", List.of(calls));
  }

  /** A create body for {@code user} with a scripted model playing {@code turns}. */
  @SafeVarargs
  private static Map<String, Object> session(String user, Map<String, Object>... turns) {
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("prompt", "prompt of " + user);
    body.put("user", user);
    body.put("model", Map.of("provider", "scripted", "script", List.of(turns)));
    return body;
  }

  private static Map<String, Object> keepOpen(Map<String, Object> body) {
    Map<String, Object> copy = new LinkedHashMap<>(body);
    copy.put("keepOpen", true);
    return copy;
  }

  private static String create(ApiClient client, Map<String, Object> body) {
    Response r = client.post("/v1/sessions", body);
    assertThat(r.status()).as(r.toString()).isEqualTo(201);
    String id = r.json().path("id").asText();
    assertThat(r.header("Location")).contains("/v1/sessions/" + id);
    return id;
  }

  /** Asserts API.md's error shape: the status, JSON {@code {"error": {"code", "message"}}}. */
  private static void assertError(Response r, int status, String code) {
    assertThat(r.status()).as(r.toString()).isEqualTo(status);
    assertThat(r.header("Content-Type")).as("content type of " + r).contains(JSON);
    JsonNode error = r.json().path("error");
    assertThat(error.isObject()).as("error object in " + r).isTrue();
    assertThat(error.path("code").isTextual()).as("error.code in " + r).isTrue();
    assertThat(error.path("code").asText()).as(r.toString()).isEqualTo(code);
    assertThat(error.path("message").isTextual()).as("error.message in " + r).isTrue();
    assertThat(error.path("message").asText()).as("error.message in " + r).isNotBlank();
  }

  private static JsonNode awaitStatus(ApiClient client, String id, String status) {
    return awaitSummary(client, id, s -> s.path("status").asText().equals(status));
  }

  private static JsonNode awaitSummary(ApiClient client, String id, Predicate<JsonNode> condition) {
    long deadline = System.nanoTime() + WAIT.toNanos();
    Response last;
    do {
      last = client.get("/v1/sessions/" + id);
      assertThat(last.status()).as(last.toString()).isEqualTo(200);
      if (condition.test(last.json())) return last.json();
      sleep(50);
    } while (System.nanoTime() < deadline);
    throw new AssertionError(
        "session " + id + " did not reach the expected state within " + WAIT + "; last: " + last);
  }

  private static List<JsonNode> sessionsOf(ApiClient client, String query) {
    Response r = client.get("/v1/sessions?" + query);
    assertThat(r.status()).as(r.toString()).isEqualTo(200);
    List<JsonNode> out = new ArrayList<>();
    r.json().path("sessions").forEach(out::add);
    return out;
  }

  /**
   * The sessions list follows the sessions with a small delay: polls it until {@code condition}.
   */
  private static List<JsonNode> awaitList(
      ApiClient client, String query, Predicate<List<JsonNode>> condition) {
    long deadline = System.nanoTime() + WAIT.toNanos();
    List<JsonNode> last;
    do {
      last = sessionsOf(client, query);
      if (condition.test(last)) return last;
      sleep(50);
    } while (System.nanoTime() < deadline);
    throw new AssertionError(
        "the list ?"
            + query
            + " did not reach the expected state within "
            + WAIT
            + "; last: "
            + last);
  }

  /** "role: text" of every text block of a transcript. */
  private static List<String> texts(JsonNode transcript) {
    List<String> out = new ArrayList<>();
    for (JsonNode m : transcript.path("messages")) {
      for (JsonNode b : m.path("content")) {
        if (b.path("type").asText().equals("text"))
          out.add(m.path("role").asText() + ": " + b.path("text").asText());
      }
    }
    return out;
  }

  private static List<SseEvent> withIds(List<SseEvent> events) {
    return events.stream().filter(e -> e.id() != null).toList();
  }

  private static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }
}
