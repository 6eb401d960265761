package dev.outboard.memory;

import static dev.outboard.testing.ScriptedSessions.awaitStatus;
import static dev.outboard.testing.ScriptedSessions.body;
import static dev.outboard.testing.ScriptedSessions.call;
import static dev.outboard.testing.ScriptedSessions.create;
import static dev.outboard.testing.ScriptedSessions.say;
import static dev.outboard.testing.ScriptedSessions.tools;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.Response;
import dev.outboard.testing.PostgresNode;
import dev.outboard.testing.RawHttp;
import dev.outboard.testing.ScriptedSessions;
import dev.outboard.testing.ScriptedSessions.ToolCall;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Org files are the org's alone (API.md "Authentication": another org's file is 404, never a hint),
 * and no path — over HTTP or in a tool call — climbs out of its namespace (DESIGN.md §5). One node
 * on PostgreSQL; org {@code alpha} owns the files, other orgs try to reach them.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class OrgIsolationTest {
  private static final Duration WAIT = Duration.ofSeconds(30);
  private static final String SECRET = "ALPHA-SECRET-7f3a";
  private static final String PLAN = "memory/secret/plan.md";
  private static final String SKILL = "skills/deploy/SKILL.md";
  private static final String SKILL_BODY =
      "---\nname: deploy\ndescription: how alpha deploys\n---\nrun the " + SECRET + " pipeline\n";

  @RegisterExtension static final PostgresNode node = PostgresNode.create();

  private String alphaKey;

  @BeforeAll
  void writeAlphasFiles() {
    alphaKey = node.admin().createOrgWithKey("alpha");
    // Alpha's plan at version 3, and a skill.
    for (int v = 1; v <= 3; v++) {
      Response r = put(alphaKey, "/v1/files/" + PLAN, "plan v" + v + ": " + SECRET + "\n");
      assertThat(r.status()).as(r.toString()).isEqualTo(v == 1 ? 201 : 200);
    }
    assertThat(put(alphaKey, "/v1/files/" + SKILL, SKILL_BODY).status()).isEqualTo(201);
  }

  // ------------------------------------------------------------------ over HTTP

  @Test
  void anotherOrgsKeyCannotReadListChangeOrInferTheFiles() {
    String beta = node.admin().createOrgWithKey("beta");
    for (String path : List.of(PLAN, SKILL)) {
      String ns = path.substring(0, path.indexOf('/'));
      String never = ns + "/secret/never-written.md";
      // Each answer is exactly the answer for a path that never existed anywhere.
      assertIndistinguishable(
          404,
          "not_found",
          path,
          never,
          p -> RawHttp.send("GET", node.baseUrl(), "/v1/files/" + p, beta, null));
      assertIndistinguishable(
          404,
          "not_found",
          path,
          never,
          p -> RawHttp.send("GET", node.baseUrl(), "/v1/files/" + p + "?history", beta, null));
      assertIndistinguishable(
          404,
          "not_found",
          path,
          never,
          p -> RawHttp.send("DELETE", node.baseUrl(), "/v1/files/" + p, beta, null));
      assertIndistinguishable(
          404,
          "not_found",
          path,
          never,
          p ->
              RawHttp.send(
                  "DELETE", node.baseUrl(), "/v1/files/" + p, beta, null, "If-Match", "\"1\""));
      // A conditional PUT against alpha's current version: beta has no such file, so it fails
      // exactly as for a path that never existed (and says nothing of alpha's version).
      Response conditional =
          assertIndistinguishable(
              -1,
              null,
              path,
              never,
              p ->
                  RawHttp.send(
                      "PUT",
                      node.baseUrl(),
                      "/v1/files/" + p,
                      beta,
                      "beta was here",
                      "If-Match",
                      "\"" + alphaVersion(path) + "\""));
      assertThat(conditional.status()).as(conditional.toString()).isIn(404, 412);
      assertThat(conditional.body()).doesNotContain(SECRET);
    }
    assertThat(list(beta, "memory", "")).isEmpty();
    assertThat(list(beta, "memory", "secret/")).isEmpty();
    assertThat(list(beta, "skills", "")).isEmpty();
    assertAlphaUntouched();

    // A plain PUT by beta creates beta's own file at version 1; alpha's stays as it was.
    Response created = put(beta, "/v1/files/" + PLAN, "beta's own plan\n");
    assertThat(created.status()).as(created.toString()).isEqualTo(201);
    assertThat(created.json().path("version").asLong()).isEqualTo(1);
    Response mine = RawHttp.send("GET", node.baseUrl(), "/v1/files/" + PLAN, beta, null);
    assertThat(mine.body()).isEqualTo("beta's own plan\n");
    assertThat(mine.header("ETag")).contains("\"1\"");
    assertThat(list(beta, "memory", ""))
        .extracting(f -> f.path("path").asText() + "@" + f.path("version").asLong())
        .containsExactly("secret/plan.md@1");
    JsonNode betaHistory =
        RawHttp.send("GET", node.baseUrl(), "/v1/files/" + PLAN + "?history", beta, null).json();
    assertThat(betaHistory.path("versions")).hasSize(1);
    assertAlphaUntouched();

    // Beta deletes its file; alpha's is still there.
    assertThat(RawHttp.send("DELETE", node.baseUrl(), "/v1/files/" + PLAN, beta, null).status())
        .isEqualTo(204);
    assertThat(RawHttp.send("GET", node.baseUrl(), "/v1/files/" + PLAN, beta, null).status())
        .isEqualTo(404);
    assertAlphaUntouched();
  }

  /**
   * Sends {@code request} for {@code path} and for {@code never}: same status, same body but for
   * the path.
   */
  private static Response assertIndistinguishable(
      int status,
      String code,
      String path,
      String never,
      java.util.function.Function<String, Response> request) {
    Response theirs = request.apply(path);
    Response nothing = request.apply(never);
    if (status > 0) assertError(theirs, status, code);
    assertThat(theirs.status()).as("%s vs %s", theirs, nothing).isEqualTo(nothing.status());
    assertThat(theirs.body().replace(path, never))
        .as("answer for another org's %s", path)
        .isEqualTo(nothing.body());
    assertThat(theirs.body()).doesNotContain(SECRET);
    return theirs;
  }

  private long alphaVersion(String path) {
    return Long.parseLong(
        RawHttp.send("GET", node.baseUrl(), "/v1/files/" + path, alphaKey, null)
            .header("ETag")
            .orElseThrow()
            .replace("\"", ""));
  }

  private void assertAlphaUntouched() {
    Response plan = RawHttp.send("GET", node.baseUrl(), "/v1/files/" + PLAN, alphaKey, null);
    assertThat(plan.status()).as(plan.toString()).isEqualTo(200);
    assertThat(plan.body()).isEqualTo("plan v3: " + SECRET + "\n");
    assertThat(plan.header("ETag")).contains("\"3\"");
    JsonNode history =
        RawHttp.send("GET", node.baseUrl(), "/v1/files/" + PLAN + "?history", alphaKey, null)
            .json();
    assertThat(history.path("versions"))
        .extracting(v -> v.path("version").asLong())
        .containsExactly(1L, 2L, 3L);
    Response skill = RawHttp.send("GET", node.baseUrl(), "/v1/files/" + SKILL, alphaKey, null);
    assertThat(skill.body()).isEqualTo(SKILL_BODY);
    assertThat(skill.header("ETag")).contains("\"1\"");
    assertThat(list(alphaKey, "memory", ""))
        .extracting(f -> f.path("path").asText() + "@" + f.path("version").asLong())
        .containsExactly("secret/plan.md@3");
    assertThat(list(alphaKey, "skills", ""))
        .extracting(f -> f.path("path").asText())
        .containsExactly("deploy/SKILL.md");
  }

  // ------------------------------------------------------------------ through an agent's tools

  @Test
  void anotherOrgsSessionSeesNoneOfTheFilesThroughItsTools() {
    String gamma = node.admin().createOrgWithKey("gamma");
    List<Map<String, Object>> script =
        List.of(
            tools(
                "looking around",
                0,
                call("read", Map.of("path", "/" + PLAN)),
                call("read", Map.of("path", "/" + SKILL)),
                call("ls", Map.of("path", "/memory")),
                call("ls", Map.of("path", "/skills")),
                call("ls", Map.of("path", "/memory/secret")),
                call("glob", Map.of("pattern", "**")),
                call("grep", Map.of("pattern", SECRET)),
                call("grep", Map.of("pattern", "plan", "path", "/memory"))),
            say("done"));

    // Alpha's own session sees everything: the control that makes gamma's empty answers mean
    // something.
    ApiClient alpha = node.client(alphaKey);
    String alphaSession = create(alpha, body("alpha-agent", false, script));
    awaitStatus(alpha, alphaSession, "completed", WAIT);
    List<ToolCall> seen = ScriptedSessions.toolCalls(alpha, alphaSession);
    assertThat(seen).allSatisfy(c -> assertThat(c.isError()).as(c.toString()).isFalse());
    assertThat(seen.get(0).content()).contains(SECRET);
    assertThat(seen.get(1).content()).contains("name: deploy");
    assertThat(seen.get(2).content()).contains("secret/");
    assertThat(seen.get(3).content()).contains("deploy/");
    assertThat(seen.get(4).content()).contains("plan.md");
    assertThat(seen.get(5).content()).contains("/memory/secret/plan.md", "/skills/deploy/SKILL.md");
    assertThat(seen.get(6).content()).contains("/memory/secret/plan.md", "/skills/deploy/SKILL.md");
    assertThat(seen.get(7).content()).contains("/memory/secret/plan.md");

    ApiClient other = node.client(gamma);
    String id = create(other, body("gamma-agent", false, script));
    awaitStatus(other, id, "completed", WAIT);
    List<ToolCall> calls = ScriptedSessions.toolCalls(other, id);
    // Exactly the answers for an org without any files: nothing found, nothing hinted.
    assertThat(calls).hasSize(8);
    assertToolResult(calls.get(0), true, "file not found: /" + PLAN);
    assertToolResult(calls.get(1), true, "file not found: /" + SKILL);
    assertToolResult(calls.get(2), false, "(/memory is empty)");
    assertToolResult(calls.get(3), false, "(/skills is empty)");
    assertToolResult(calls.get(4), true, "no such file or directory: /memory/secret");
    assertToolResult(calls.get(5), false, "no files match ** under /");
    assertToolResult(calls.get(6), false, "no matches for " + SECRET + " under /");
    assertToolResult(calls.get(7), false, "no matches for plan under /memory");
  }

  // ------------------------------------------------------------------ traversal

  @Test
  void traversalOverHttpIsRefusedWithAClearError() {
    List<String> attempts =
        List.of(
            "/v1/files/memory/../skills/deploy/SKILL.md",
            "/v1/files/memory/./secret/plan.md",
            "/v1/files/memory/%2e%2e/skills/deploy/SKILL.md",
            "/v1/files/memory/%2E%2E/skills/deploy/SKILL.md",
            "/v1/files/memory/secret%2f..%2f..%2fskills%2fdeploy%2fSKILL.md",
            "/v1/files/memory/a%00b",
            "/v1/files/memory/a%5cb");
    for (String raw : attempts) {
      String shown = raw.length() > 80 ? raw.substring(0, 80) + "..." : raw;
      // What goes on the wire is the target as written: nothing normalised it on the way.
      assertThat(RawHttp.targetAsSent(raw)).as("request target sent for %s", shown).isEqualTo(raw);
      for (String method : List.of("GET", "PUT", "DELETE")) {
        Response r =
            RawHttp.send(
                method,
                node.baseUrl(),
                raw,
                alphaKey,
                method.equals("PUT") ? "overwritten " + SECRET : null);
        assertError(r, 400, "bad_request");
        assertThat(r.json().path("error").path("message").asText())
            .as("%s %s", method, shown)
            .doesNotContain(SECRET);
        assertThat(r.body()).as("%s %s", method, shown).doesNotContain("name: deploy");
      }
    }
    // Nothing was read, written or deleted by any of them.
    assertAlphaUntouched();
  }

  @Test
  void overlongPathsOverHttpAreRefusedWithAClearError() {
    String raw = "/v1/files/memory/" + "a".repeat(10_000);
    assertThat(RawHttp.targetAsSent(raw)).isEqualTo(raw);
    for (String method : List.of("GET", "PUT", "DELETE")) {
      Response r =
          RawHttp.send(method, node.baseUrl(), raw, alphaKey, method.equals("PUT") ? "x" : null);
      assertError(r, 400, "bad_request");
      assertThat(r.json().path("error").path("message").asText())
          .as(method)
          .contains("longer than");
    }
    // A request target too long for the server to take at all is refused in the same shape.
    for (String method : List.of("GET", "PUT")) {
      Response huge =
          RawHttp.send(
              method,
              node.baseUrl(),
              "/v1/files/memory/" + "a/".repeat(20_000) + "x",
              alphaKey,
              method.equals("PUT") ? "x" : null);
      assertError(huge, 414, null);
    }
    assertAlphaUntouched();
    assertThat(list(alphaKey, "memory", "")).hasSize(1);
  }

  @Test
  void aFileWithALongNonAsciiNameIsReachableOverHttp() {
    String epsilon = node.admin().createOrgWithKey("epsilon");
    // 61 characters (well within the 255 of a name), 291 once percent-encoded.
    String name = "заметки-о-развёртывании-в-продакшене-и-откатах-версий-2025.md";
    assertThat(name.length()).isLessThan(255);
    ApiClient api = node.client(epsilon);
    String id =
        create(
            api,
            body(
                "non-ascii",
                false,
                List.of(
                    tools(
                        "writing",
                        0,
                        call(
                            "write",
                            Map.of(
                                "path", "/memory/" + name, "content", "откат: helm rollback\n"))),
                    say("done"))));
    awaitStatus(api, id, "completed", WAIT);
    assertThat(ScriptedSessions.toolCalls(api, id).get(0).isError()).isFalse();
    assertThat(list(epsilon, "memory", ""))
        .extracting(f -> f.path("path").asText())
        .containsExactly(name);

    Response read =
        RawHttp.send("GET", node.baseUrl(), "/v1/files/memory/" + encode(name), epsilon, null);
    assertThat(read.status()).as(shorten(read)).isEqualTo(200);
    assertThat(read.body()).isEqualTo("откат: helm rollback\n");
    Response history =
        RawHttp.send(
            "GET", node.baseUrl(), "/v1/files/memory/" + encode(name) + "?history", epsilon, null);
    assertThat(history.status()).as(shorten(history)).isEqualTo(200);
    assertThat(history.json().path("versions").get(0).path("session").asText()).isEqualTo(id);
  }

  @Test
  void aFileAtTheLongestLegalPathIsReachableOverHttpAndLongerPathsAreRefusedClearly() {
    String delta = node.admin().createOrgWithKey("delta");
    // The longest path a file may have: 1023 characters below /memory, each segment at the
    // 255-character limit, in Cyrillic (two UTF-8 bytes each, so six characters in the URL).
    String segment = "ж".repeat(255);
    String rel = String.join("/", segment, segment, segment, segment);
    String url = "/v1/files/memory/" + encode(rel);
    ApiClient api = node.client(delta);
    String id =
        create(
            api,
            body(
                "long-path",
                false,
                List.of(
                    tools(
                        "writing",
                        0,
                        call("write", Map.of("path", "/memory/" + rel, "content", "deep\n"))),
                    say("done"))));
    awaitStatus(api, id, "completed", WAIT);
    ToolCall write = ScriptedSessions.toolCalls(api, id).get(0);
    assertThat(write.isError()).as(write.toString()).isFalse();

    // What an agent wrote, people can read, replace and delete through the API.
    Response read = RawHttp.send("GET", node.baseUrl(), url, delta, null);
    assertThat(read.status()).as(shorten(read)).isEqualTo(200);
    assertThat(read.body()).isEqualTo("deep\n");
    Response replaced =
        RawHttp.send("PUT", node.baseUrl(), url, delta, "deeper\n", "If-Match", "\"1\"");
    assertThat(replaced.status()).as(shorten(replaced)).isEqualTo(200);
    assertThat(list(delta, "memory", ""))
        .extracting(f -> f.path("path").asText())
        .containsExactly(rel);
    assertThat(RawHttp.send("DELETE", node.baseUrl(), url, delta, null).status()).isEqualTo(204);

    // One character more, and the answer says what is wrong.
    Response tooLong = RawHttp.send("PUT", node.baseUrl(), url + "/" + encode("ж"), delta, "x");
    assertError(tooLong, 400, "bad_request");
    assertThat(tooLong.json().path("error").path("message").asText())
        .contains("longer than 1024 characters");
    Response longName =
        RawHttp.send(
            "GET", node.baseUrl(), "/v1/files/memory/" + encode("ж".repeat(256)), delta, null);
    assertError(longName, 400, "bad_request");
    assertThat(longName.json().path("error").path("message").asText())
        .contains("longer than 255 characters");
  }

  private static String encode(String path) {
    StringBuilder sb = new StringBuilder();
    for (String segment : path.split("/", -1)) {
      if (sb.length() > 0) sb.append('/');
      sb.append(java.net.URLEncoder.encode(segment, java.nio.charset.StandardCharsets.UTF_8));
    }
    return sb.toString();
  }

  @Test
  void traversalThroughToolsIsRefusedWithAClearError() {
    ApiClient alpha = node.client(alphaKey);
    String longSegments =
        String.join(
            "/",
            List.of(
                "a".repeat(250),
                "b".repeat(250),
                "c".repeat(250),
                "d".repeat(250),
                "e".repeat(250)));
    List<Object[]> attempts =
        List.of(
            new Object[] {
              call("read", Map.of("path", "/memory/../skills/deploy/SKILL.md")),
              "contains '..', which is not allowed"
            },
            new Object[] {
              call("read", Map.of("path", "/memory/%2e%2e/skills/deploy/SKILL.md")),
              "percent-encoded"
            },
            new Object[] {call("read", Map.of("path", "/memory/%2E%2E/x")), "percent-encoded"},
            new Object[] {call("read", Map.of("path", "/memory/a\u0000b")), "contains a NUL byte"},
            new Object[] {
              call("read", Map.of("path", "/memory/" + "a".repeat(10_000))),
              "is longer than 4096 characters"
            },
            new Object[] {
              call("read", Map.of("path", "/memory/" + "a".repeat(300))),
              "has a name longer than 255 characters"
            },
            new Object[] {
              call("read", Map.of("path", "/memory/" + longSegments)),
              "is longer than 1024 characters"
            },
            new Object[] {call("read", Map.of("path", "/memory/a\\b")), "contains a backslash"},
            new Object[] {
              call("read", Map.of("path", "/memory/secret/../../skills/deploy/SKILL.md")),
              "contains '..'"
            },
            new Object[] {
              call("write", Map.of("path", "/memory/../skills/evil.md", "content", "evil")),
              "contains '..'"
            },
            new Object[] {
              call(
                  "edit",
                  Map.of(
                      "path",
                      "/skills/x/../deploy/SKILL.md",
                      "old_string",
                      "deploy",
                      "new_string",
                      "evil")),
              "contains '..'"
            },
            new Object[] {
              call("grep", Map.of("pattern", SECRET, "path", "/memory/..")), "contains '..'"
            },
            new Object[] {call("ls", Map.of("path", "memory/secret")), "is not absolute"});
    List<Map<String, Object>> turns = new ArrayList<>();
    // Each attempt alone in its turn, and then all of them next to a call that reaches the store.
    for (Object[] a : attempts) {
      @SuppressWarnings("unchecked")
      Map<String, Object> c = (Map<String, Object>) a[0];
      turns.add(tools("trying", 0, c));
    }
    List<Map<String, Object>> together = new ArrayList<>();
    for (Object[] a : attempts) {
      @SuppressWarnings("unchecked")
      Map<String, Object> c = (Map<String, Object>) a[0];
      together.add(c);
    }
    together.add(call("read", Map.of("path", "/" + PLAN)));
    turns.add(Map.of("text", "all at once", "toolCalls", together));
    turns.add(say("done"));
    String id = create(alpha, body("climber", false, turns));
    awaitStatus(alpha, id, "completed", WAIT);

    List<ToolCall> calls = ScriptedSessions.toolCalls(alpha, id);
    assertThat(calls).hasSize(attempts.size() * 2 + 1);
    for (int i = 0; i < attempts.size() * 2; i++) {
      Object[] a = attempts.get(i % attempts.size());
      assertToolError(calls.get(i), (String) a[1]);
      assertThat(calls.get(i).content())
          .as(calls.get(i).toString())
          .doesNotContain(SECRET)
          .doesNotContain("name: deploy");
    }
    ToolCall legit = calls.get(calls.size() - 1);
    assertThat(legit.isError()).as(legit.toString()).isFalse();
    assertThat(legit.content()).contains(SECRET);
    assertAlphaUntouched();
    assertThat(
            RawHttp.send("GET", node.baseUrl(), "/v1/files/skills/evil.md", alphaKey, null)
                .status())
        .isEqualTo(404);
  }

  // ------------------------------------------------------------------ helpers

  private Response put(String key, String path, String content) {
    return RawHttp.send("PUT", node.baseUrl(), path, key, content);
  }

  private List<JsonNode> list(String key, String ns, String prefix) {
    Response r =
        RawHttp.send(
            "GET",
            node.baseUrl(),
            "/v1/files/" + ns + (prefix.isEmpty() ? "" : "?prefix=" + prefix),
            key,
            null);
    assertThat(r.status()).as(r.toString()).isEqualTo(200);
    List<JsonNode> out = new ArrayList<>();
    r.json().path("files").forEach(out::add);
    return out;
  }

  private static void assertToolError(ToolCall c, String mentions) {
    assertThat(c.results()).as(c.toString()).isEqualTo(1);
    assertThat(c.isError()).as(c.toString()).isTrue();
    assertThat(c.content()).as(c.toString()).contains(mentions);
  }

  private static void assertToolResult(ToolCall c, boolean isError, String content) {
    assertThat(c.results()).as(c.toString()).isEqualTo(1);
    assertThat(c.isError()).as(c.toString()).isEqualTo(isError);
    assertThat(c.content()).as(c.toString()).isEqualTo(content);
  }

  /**
   * API.md's error shape: the status, JSON {@code {"error": {"code", "message"}}}; any code if
   * {@code code} is null.
   */
  private static void assertError(Response r, int status, String code) {
    assertThat(r.status()).as(shorten(r)).isEqualTo(status);
    assertThat(r.header("Content-Type"))
        .as("content type of " + shorten(r))
        .hasValueSatisfying(ct -> assertThat(ct).startsWith("application/json"));
    JsonNode error = r.json().path("error");
    assertThat(error.path("code").asText()).as(shorten(r)).isNotBlank();
    if (code != null) assertThat(error.path("code").asText()).as(shorten(r)).isEqualTo(code);
    assertThat(error.path("message").asText()).as(shorten(r)).isNotBlank();
  }

  private static String shorten(Response r) {
    String s = r.toString();
    return s.length() > 300 ? s.substring(0, 300) + "..." : s;
  }
}
