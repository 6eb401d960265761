package dev.outboard.memory;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.tuple;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.Response;
import dev.outboard.testing.PostgresNode;
import dev.outboard.testing.RawHttp;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * {@code /v1/files/{ns}/...} (API.md "Org files") and the skills policy of the admin API, on one
 * node in this JVM with a fresh PostgreSQL database. Org files are capped at 1 KiB here and request
 * bodies at 64 KiB, and an org's writer queues at most 2 writes, so that these limits are cheap to
 * reach.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class FileRoutesTest {
  private static final Duration WAIT = Duration.ofSeconds(20);
  private static final int MAX_FILE_BYTES = 1024;
  private static final HttpClient HTTP =
      HttpClient.newBuilder()
          .version(HttpClient.Version.HTTP_1_1)
          .connectTimeout(Duration.ofSeconds(5))
          .build();

  /** Set through the overrides so that this test can send the admin's PUT itself. */
  private static final String adminToken = "files-admin-" + java.util.UUID.randomUUID();

  @RegisterExtension
  static final PostgresNode node =
      PostgresNode.create()
          .with("outboard.memory.max-file-bytes", MAX_FILE_BYTES)
          .with("outboard.http.max-body-bytes", "64KiB")
          .with("outboard.memory.max-queued-writes", 2)
          .with("outboard.admin-token", adminToken);

  private String acmeKey;
  private ApiClient acme;
  private String globexKey;
  private ApiClient globex;

  @BeforeAll
  void createOrgs() {
    ApiClient admin = node.client(adminToken);
    acmeKey = admin.createOrgWithKey("acme");
    acme = node.client(acmeKey);
    globexKey = admin.createOrgWithKey("globex");
    globex = node.client(globexKey);
  }

  // ------------------------------------------------------------------ read and write

  @Test
  void anAbsentFileIsNotFound() {
    assertError(acme.get("/v1/files/memory/absent.md"), 404, "not_found");
    assertError(acme.get("/v1/files/skills/absent/SKILL.md"), 404, "not_found");
    assertError(acme.get("/v1/files/memory/absent.md?history"), 404, "not_found");
  }

  @Test
  void putCreatesThenReplacesAndGetReturnsTheContentWithItsVersion() {
    String path = "/v1/files/memory/team-x/deploys.md";
    Response created = put(acmeKey, path, "Deploys happen on Tuesdays.\n");
    assertThat(created.status()).as(created.toString()).isEqualTo(201);
    assertThat(created.header("Content-Type"))
        .hasValueSatisfying(ct -> assertThat(ct).startsWith("application/json"));
    assertThat(created.json().path("path").asText()).isEqualTo("/memory/team-x/deploys.md");
    assertThat(created.json().path("version").asLong()).isEqualTo(1);
    assertThat(created.header("ETag")).contains("\"1\"");

    String content = "# Deploys\nTuesdays, and never on Fridays — ça va.\n";
    Response replaced = put(acmeKey, path, content);
    assertThat(replaced.status()).as(replaced.toString()).isEqualTo(200);
    assertThat(replaced.json().path("version").asLong()).isEqualTo(2);
    assertThat(replaced.header("ETag")).contains("\"2\"");

    Response read = acme.get(path);
    assertThat(read.status()).as(read.toString()).isEqualTo(200);
    assertThat(read.body()).isEqualTo(content);
    assertThat(read.header("ETag")).contains("\"2\"");
    assertThat(read.header("Content-Type"))
        .hasValueSatisfying(ct -> assertThat(ct.toLowerCase()).startsWith("text/plain"));

    // People curate skills through the API whatever the agents' policy says.
    Response skill = put(acmeKey, "/v1/files/skills/curated/SKILL.md", "---\nname: curated\n---\n");
    assertThat(skill.status()).as(skill.toString()).isEqualTo(201);
    assertThat(skill.json().path("path").asText()).isEqualTo("/skills/curated/SKILL.md");
    assertThat(acme.get("/v1/files/skills/curated/SKILL.md").body())
        .isEqualTo("---\nname: curated\n---\n");
  }

  @Test
  void ifMatchGuardsAWriteAgainstAnotherVersion() {
    String path = "/v1/files/memory/guarded.md";
    assertError(put(acmeKey, path, "never", "If-Match", "\"1\""), 412, "precondition_failed");
    assertError(acme.get(path), 404, "not_found");
    put(acmeKey, path, "one");
    put(acmeKey, path, "two");

    Response matched = put(acmeKey, path, "three", "If-Match", "\"2\"");
    assertThat(matched.status()).as(matched.toString()).isEqualTo(200);
    assertThat(matched.json().path("version").asLong()).isEqualTo(3);

    Response stale = put(acmeKey, path, "lost update", "If-Match", "\"1\"");
    assertError(stale, 412, "precondition_failed");
    assertThat(stale.json().path("error").path("message").asText()).contains("version 3", "not 1");
    assertError(put(acmeKey, path, "x", "If-Match", "three"), 400, "bad_request");

    Response now = acme.get(path);
    assertThat(now.body()).isEqualTo("three");
    assertThat(now.header("ETag")).contains("\"3\"");
    // The ETag as returned (also weak) is accepted as If-Match.
    assertThat(put(acmeKey, path, "four", "If-Match", now.header("ETag").orElseThrow()).status())
        .isEqualTo(200);
    assertThat(put(acmeKey, path, "five", "If-Match", "W/\"4\"").status()).isEqualTo(200);
  }

  @Test
  void deleteRemovesTheFileOnceAndHonoursIfMatch() {
    String path = "/v1/files/memory/deleting.md";
    put(acmeKey, path, "one");
    put(acmeKey, path, "two");

    assertError(acme.delete(path, "If-Match", "\"1\""), 412, "precondition_failed");
    assertThat(acme.get(path).body()).isEqualTo("two");

    Response deleted = acme.delete(path, "If-Match", "\"2\"");
    assertThat(deleted.status()).as(deleted.toString()).isEqualTo(204);
    assertThat(deleted.body()).isEmpty();
    assertError(acme.get(path), 404, "not_found");
    assertError(acme.delete(path), 404, "not_found");

    // Written again, it carries on from the deleted version.
    Response again = put(acmeKey, path, "three");
    assertThat(again.status()).as(again.toString()).isEqualTo(201);
    assertThat(again.json().path("version").asLong()).isEqualTo(4);
    assertThat(acme.delete(path).status()).isEqualTo(204);
    assertThat(versions(acme.get(path + "?history")))
        .extracting(v -> v.path("version").asLong(), v -> v.path("op").asText())
        .containsExactly(
            tuple(1L, "write"),
            tuple(2L, "write"),
            tuple(3L, "delete"),
            tuple(4L, "write"),
            tuple(5L, "delete"));
  }

  // ------------------------------------------------------------------ listing and history

  @Test
  void listingByPrefixShowsOnlyThoseFilesWithTheirMetadata() {
    for (String p :
        List.of("list-x/a.md", "list-x/b.md", "list-x/sub/c.md", "list-xa.md", "list-y/d.md")) {
      assertThat(put(acmeKey, "/v1/files/memory/" + p, "content of " + p).status()).isEqualTo(201);
    }
    put(acmeKey, "/v1/files/memory/list-x/b.md", "bb");
    put(acmeKey, "/v1/files/memory/list-x/gone.md", "soon gone");
    acme.delete("/v1/files/memory/list-x/gone.md");
    put(acmeKey, "/v1/files/skills/list-x/SKILL.md", "a skill, not memory");

    Response r = acme.get("/v1/files/memory?prefix=list-x/");
    assertThat(r.status()).as(r.toString()).isEqualTo(200);
    List<JsonNode> files = new ArrayList<>();
    r.json().path("files").forEach(files::add);
    assertThat(files)
        .extracting(f -> f.path("path").asText())
        .containsExactly("list-x/a.md", "list-x/b.md", "list-x/sub/c.md");
    for (JsonNode f : files) {
      assertThat(f.has("updatedBy")).as(f.toString()).isTrue();
      assertThat(f.path("updatedBy").isNull()).as("an API write has no user: " + f).isTrue();
      assertThat(Instant.parse(f.path("updatedAt").asText()))
          .isBetween(Instant.now().minusSeconds(60), Instant.now().plusSeconds(5));
    }
    assertThat(files.get(0).path("version").asLong()).isEqualTo(1);
    assertThat(files.get(0).path("size").asLong()).isEqualTo("content of list-x/a.md".length());
    assertThat(files.get(1).path("version").asLong()).isEqualTo(2);
    assertThat(files.get(1).path("size").asLong()).isEqualTo(2);

    assertThat(paths(acme.get("/v1/files/memory?prefix=list-")))
        .containsExactly(
            "list-x/a.md", "list-x/b.md", "list-x/sub/c.md", "list-xa.md", "list-y/d.md");
    assertThat(paths(acme.get("/v1/files/memory?prefix=nothing-here/"))).isEmpty();
    assertThat(paths(acme.get("/v1/files/skills/?prefix=list-x/")))
        .containsExactly("list-x/SKILL.md");
    assertThat(paths(globex.get("/v1/files/memory"))).isEmpty();
  }

  @Test
  void historyListsEveryVersionWithWhoAndWhichSession() {
    String id =
        runSession(
            "alice",
            toolTurn(
                "noting",
                Map.of(
                    "name",
                    "write",
                    "input",
                    Map.of("path", "/memory/hist/agent.md", "content", "written by an agent\n"))));
    assertThat(toolResults(id))
        .singleElement()
        .satisfies(
            r -> {
              assertThat(r.path("isError").asBoolean()).as(r.toString()).isFalse();
              assertThat(r.path("content").asText()).contains("/memory/hist/agent.md", "version 1");
            });
    put(acmeKey, "/v1/files/memory/hist/agent.md", "overwritten by a person\n");

    Response r = acme.get("/v1/files/memory/hist/agent.md?history");
    assertThat(r.status()).as(r.toString()).isEqualTo(200);
    List<JsonNode> versions = versions(r);
    assertThat(versions)
        .extracting(
            v -> v.path("version").asLong(),
            v -> v.path("updatedBy").asText(null),
            v -> v.path("session").asText(null))
        .containsExactly(tuple(1L, "alice", id), tuple(2L, null, null));
    for (JsonNode v : versions) {
      assertThat(v.has("session")).isTrue();
      assertThat(Instant.parse(v.path("updatedAt").asText()))
          .isBetween(Instant.now().minusSeconds(60), Instant.now().plusSeconds(5));
    }
    assertThat(Instant.parse(versions.get(0).path("updatedAt").asText()))
        .isBeforeOrEqualTo(Instant.parse(versions.get(1).path("updatedAt").asText()));
    // The listing names who changed the file last.
    assertThat(
            acme.get("/v1/files/memory?prefix=hist/")
                .json()
                .path("files")
                .get(0)
                .path("updatedBy")
                .isNull())
        .isTrue();
  }

  // ------------------------------------------------------------------ limits and errors

  @Test
  void aFileOverThePerFileCapIsPayloadTooLarge() {
    String path = "/v1/files/memory/big.md";
    Response tooBig = put(acmeKey, path, "x".repeat(MAX_FILE_BYTES + 1));
    assertError(tooBig, 413, "file_too_large");
    assertThat(tooBig.json().path("error").path("message").asText())
        .contains(Integer.toString(MAX_FILE_BYTES));
    assertError(acme.get(path), 404, "not_found");
    // The cap counts UTF-8 bytes.
    assertError(put(acmeKey, path, "é".repeat(MAX_FILE_BYTES / 2 + 1)), 413, "file_too_large");

    assertThat(put(acmeKey, path, "x".repeat(MAX_FILE_BYTES)).status()).isEqualTo(201);
    assertError(put(acmeKey, path, "y".repeat(MAX_FILE_BYTES + 1)), 413, "file_too_large");
    assertThat(acme.get(path).body()).isEqualTo("x".repeat(MAX_FILE_BYTES));

    // Over the request body limit, the request itself is refused.
    assertError(put(acmeKey, path, "z".repeat(70_000)), 413, "body_too_large");
  }

  @Test
  void unknownQueryParametersAreBadRequestsAndWriteNothing() {
    String path = "/v1/files/memory/query/kept.md";
    assertThat(put(acmeKey, path, "kept").status()).isEqualTo(201);
    assertUnknownParameter(acme.get("/v1/files/memory?prefx=query/"), "prefx", "takes prefix");
    assertUnknownParameter(acme.get(path + "?histroy"), "histroy", "takes history");
    assertUnknownParameter(put(acmeKey, path + "?force=true", "replaced"), "force", "takes none");
    assertUnknownParameter(
        put(acmeKey, "/v1/files/memory/query/new.md?x=1", "new"), "x", "takes none");
    assertUnknownParameter(acme.delete(path + "?recursive"), "recursive", "takes none");

    Response kept = acme.get(path);
    assertThat(kept.body()).isEqualTo("kept");
    assertThat(kept.header("ETag")).contains("\"1\"");
    assertError(acme.get("/v1/files/memory/query/new.md"), 404, "not_found");
  }

  private static void assertUnknownParameter(Response r, String name, String accepted) {
    assertError(r, 400, "bad_request");
    assertThat(r.json().path("error").path("message").asText())
        .contains("unknown query parameter '" + name + "'", accepted);
  }

  @Test
  void bodiesThatAreNotUtf8TextAreRefusedAndWriteNothing() {
    String path = "/v1/files/memory/bytes/kept.md";
    assertThat(put(acmeKey, path, "kept").status()).isEqualTo(201);
    byte[] invalid = {'a', (byte) 0xC3, '(', 'b'};
    byte[] latin1 = "café".getBytes(StandardCharsets.ISO_8859_1);
    byte[] utf16 = "\uFEFFhello".getBytes(StandardCharsets.UTF_16LE);
    byte[] png = {(byte) 0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 0x0D};
    for (String target : List.of(path, "/v1/files/memory/bytes/new.md")) {
      assertNotUtf8(putBytes(target, "text/plain", invalid), "byte 1");
      assertNotUtf8(putBytes(target, "text/markdown; charset=utf-8", latin1), "byte 3");
      assertNotUtf8(putBytes(target, null, utf16), "byte 0");
      assertNotUtf8(putBytes(target, "application/octet-stream", png), "byte 0");
      assertError(putBytes(target, "image/png", png), 415, "unsupported_media_type");
      assertError(
          putBytes(target, "application/pdf", "%PDF-1.7".getBytes(StandardCharsets.UTF_8)),
          415,
          "unsupported_media_type");
      assertError(
          putBytes(target, "text/plain; charset=iso-8859-1", latin1),
          415,
          "unsupported_media_type");
      assertError(
          putBytes(target, "text/plain; charset=utf-16", utf16), 415, "unsupported_media_type");
      // Valid UTF-8, but PostgreSQL's text cannot hold NUL.
      Response nul = putBytes(target, "text/plain", "a\0b".getBytes(StandardCharsets.UTF_8));
      assertError(nul, 400, "not_text");
      assertThat(nul.json().path("error").path("message").asText()).contains("NUL");
    }
    Response kept = acme.get(path);
    assertThat(kept.body()).isEqualTo("kept");
    assertThat(kept.header("ETag")).contains("\"1\"");
    assertError(acme.get("/v1/files/memory/bytes/new.md"), 404, "not_found");
    assertThat(versions(acme.get(path + "?history"))).hasSize(1);

    // UTF-8 is kept byte for byte, a byte order mark too; without a Content-Type, or as JSON, it is
    // text all the same.
    String bom = "\uFEFF# Title\nnaïve 日本 🚀\n";
    assertThat(
            putBytes("/v1/files/memory/bytes/bom.md", null, bom.getBytes(StandardCharsets.UTF_8))
                .status())
        .isEqualTo(201);
    assertThat(acme.get("/v1/files/memory/bytes/bom.md").body()).isEqualTo(bom);
    assertThat(
            putBytes(
                    "/v1/files/memory/bytes/x.json",
                    "application/json",
                    "{\"a\": 1}".getBytes(StandardCharsets.UTF_8))
                .status())
        .isEqualTo(201);
  }

  @Test
  void anAgentsWriteOfContentThatIsNotTextIsAToolErrorAndTheSessionGoesOn() {
    String session =
        runSession(
            "nul-writer",
            toolTurn(
                "writing",
                Map.of(
                    "name",
                    "write",
                    "input",
                    Map.of("path", "/memory/nul.md", "content", "a\u0000b"))));
    List<JsonNode> results = toolResults(session);
    assertThat(results).hasSize(1);
    assertThat(results.get(0).path("isError").asBoolean()).isTrue();
    assertThat(results.get(0).path("content").asText()).contains("NUL");
    assertError(acme.get("/v1/files/memory/nul.md"), 404, "not_found");
  }

  private Response putBytes(String path, String contentType, byte[] body) {
    return RawHttp.sendBytes("PUT", node.baseUrl(), path, acmeKey, contentType, body);
  }

  private static void assertNotUtf8(Response r, String where) {
    assertError(r, 400, "bad_request");
    assertThat(r.json().path("error").path("message").asText()).contains("not valid UTF-8", where);
  }

  @Test
  void anUnknownNamespaceIsNotFound() {
    assertError(acme.get("/v1/files/secrets/x.md"), 404, "not_found");
    assertError(acme.get("/v1/files/secrets"), 404, "not_found");
    assertError(put(acmeKey, "/v1/files/secrets/x.md", "x"), 404, "not_found");
    assertError(acme.delete("/v1/files/session/x.md"), 404, "not_found");
    assertError(put(acmeKey, "/v1/files/workspace/x.md", "x"), 404, "not_found");
  }

  @Test
  void requestsWithoutAValidKeyAreUnauthorized() {
    put(acmeKey, "/v1/files/memory/auth.md", "secret");
    ApiClient anonymous = node.client(null);
    assertError(anonymous.get("/v1/files/memory/auth.md"), 401, "unauthorized");
    assertError(anonymous.get("/v1/files/memory"), 401, "unauthorized");
    assertError(anonymous.get("/v1/files/memory/auth.md?history"), 401, "unauthorized");
    assertError(put(null, "/v1/files/memory/auth.md", "overwritten"), 401, "unauthorized");
    assertError(anonymous.delete("/v1/files/memory/auth.md"), 401, "unauthorized");
    assertError(node.client("not-a-key").get("/v1/files/memory/auth.md"), 401, "unauthorized");
    assertError(put("not-a-key", "/v1/files/memory/auth.md", "overwritten"), 401, "unauthorized");
    assertError(node.client(adminToken).get("/v1/files/memory/auth.md"), 401, "unauthorized");
    assertThat(acme.get("/v1/files/memory/auth.md").body()).isEqualTo("secret");
  }

  @Test
  void anotherOrgsFilesAreNotFoundAndItsOwnAreSeparate() {
    String path = "/v1/files/memory/tenant.md";
    put(acmeKey, path, "acme's");
    put(acmeKey, path, "acme's, v2");
    assertError(globex.get(path), 404, "not_found");
    assertError(globex.get(path + "?history"), 404, "not_found");
    assertError(globex.delete(path), 404, "not_found");
    assertError(put(globexKey, path, "x", "If-Match", "\"2\""), 412, "precondition_failed");

    Response own = put(globexKey, path, "globex's");
    assertThat(own.status()).as(own.toString()).isEqualTo(201);
    assertThat(own.json().path("version").asLong()).isEqualTo(1);
    assertThat(globex.get(path).body()).isEqualTo("globex's");
    assertThat(acme.get(path).body()).isEqualTo("acme's, v2");
  }

  @Test
  void pathsThatClimbOrAreEncodedAreBadRequestsAndWriteNothing() {
    for (String path :
        List.of(
            "/v1/files/memory/../skills/x/SKILL.md",
            "/v1/files/memory/a/%2e%2e/b.md",
            "/v1/files/memory/a%2Fb.md",
            "/v1/files/memory/a%5Cb.md",
            "/v1/files/memory/a%00.md",
            "/v1/files/memory/./a.md")) {
      assertError(put(acmeKey, path, "climbing"), 400, "bad_request");
      assertError(acme.get(path), 400, "bad_request");
    }
    assertError(put(acmeKey, "/v1/files/memory/", "no name"), 400, "bad_request");
    assertThat(paths(acme.get("/v1/files/skills"))).doesNotContain("x/SKILL.md");
    assertThat(paths(acme.get("/v1/files/memory")))
        .doesNotContain("a.md", "b.md", "a/b.md", "a/a.md", "a\\b.md", "a\u0000.md");
  }

  @Test
  void aWriteBeyondTheOrgsQueueIsRefusedWith503OverloadedAndWritesNothing() throws Exception {
    List<java.util.concurrent.CompletableFuture<Response>> taken = new ArrayList<>();
    Response beyond;
    // The database holds the org's writer up: its transaction waits on this lock.
    try (java.sql.Connection lock = node.connection();
        java.sql.Statement st = lock.createStatement()) {
      lock.setAutoCommit(false);
      st.execute("LOCK TABLE org_files IN ACCESS EXCLUSIVE MODE");
      taken.add(
          java.util.concurrent.CompletableFuture.supplyAsync(
              () -> put(acmeKey, "/v1/files/memory/held/0.md", "x")));
      long deadline = System.nanoTime() + WAIT.toNanos();
      while (!waitingOnLock(st)) {
        if (System.nanoTime() > deadline)
          throw new AssertionError("the org's writer never waited on the lock");
        Thread.sleep(10);
      }
      for (int i = 1; i <= 2; i++) { // the queue's two places, one after the other
        String path = "/v1/files/memory/held/" + i + ".md";
        taken.add(
            java.util.concurrent.CompletableFuture.supplyAsync(() -> put(acmeKey, path, "x")));
        Thread.sleep(200);
      }
      beyond = put(acmeKey, "/v1/files/memory/held/beyond.md", "x");
      lock.rollback();
    }
    assertError(beyond, 503, "overloaded");
    assertThat(beyond.json().path("error").path("message").asText())
        .contains("nothing was written");
    for (var r : taken)
      assertThat(r.get(WAIT.toSeconds(), java.util.concurrent.TimeUnit.SECONDS).status())
          .isEqualTo(201);
    assertError(acme.get("/v1/files/memory/held/beyond.md?history"), 404, "not_found");
  }

  private static boolean waitingOnLock(java.sql.Statement st) throws java.sql.SQLException {
    try (var rs =
        st.executeQuery(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                + " AND datname = current_database() AND pid <> pg_backend_pid()")) {
      rs.next();
      return rs.getInt(1) > 0;
    }
  }

  // ------------------------------------------------------------------ skills policy

  @Test
  void agentsMayWriteSkillsOnlyOnceTheOrgsPolicyAllowsIt() {
    String skill = "---\nname: deploy\ndescription: How we ship\n---\nCanary first.\n";
    Map<String, Object> writeSkill =
        Map.of(
            "name", "write", "input", Map.of("path", "/skills/deploy/SKILL.md", "content", skill));

    String refused = runSession("agent-before", toolTurn("saving a skill", writeSkill));
    assertThat(toolResults(refused))
        .singleElement()
        .satisfies(
            r -> {
              assertThat(r.path("isError").asBoolean()).as(r.toString()).isTrue();
              assertThat(r.path("content").asText()).contains("may not write /skills");
            });
    assertError(acme.get("/v1/files/skills/deploy/SKILL.md"), 404, "not_found");

    // Only the admin sets the policy; the body is checked.
    String policy = "/v1/admin/orgs/acme/policy";
    assertError(putJson(acmeKey, policy, "{\"agentsMayWriteSkills\": true}"), 401, "unauthorized");
    assertError(putJson(null, policy, "{\"agentsMayWriteSkills\": true}"), 401, "unauthorized");
    assertError(putJson(adminToken, policy, "{}"), 400, "bad_request");
    assertError(
        putJson(adminToken, policy, "{\"agentsMayWriteSkills\": true, \"more\": 1}"),
        400,
        "bad_request");
    assertError(
        putJson(
            adminToken, "/v1/admin/orgs/no-such-org/policy", "{\"agentsMayWriteSkills\": true}"),
        404,
        "not_found");
    Response set = putJson(adminToken, policy, "{\"agentsMayWriteSkills\": true}");
    assertThat(set.status()).as(set.toString()).isEqualTo(200);
    assertThat(set.json().path("agentsMayWriteSkills").asBoolean()).isTrue();

    String allowed = runSession("agent-after", toolTurn("saving a skill", writeSkill));
    assertThat(toolResults(allowed))
        .singleElement()
        .satisfies(
            r -> {
              assertThat(r.path("isError").asBoolean()).as(r.toString()).isFalse();
              assertThat(r.path("content").asText())
                  .contains("/skills/deploy/SKILL.md", "version 1");
            });
    Response written = acme.get("/v1/files/skills/deploy/SKILL.md");
    assertThat(written.status()).as(written.toString()).isEqualTo(200);
    assertThat(written.body()).isEqualTo(skill);
    assertThat(versions(acme.get("/v1/files/skills/deploy/SKILL.md?history")))
        .extracting(v -> v.path("updatedBy").asText(), v -> v.path("session").asText())
        .containsExactly(tuple("agent-after", allowed));

    // Globex's agents are still refused: the policy is per org.
    String other = runSessionOf(globex, "globex-agent", toolTurn("saving a skill", writeSkill));
    assertThat(toolResults(globex, other))
        .singleElement()
        .satisfies(r -> assertThat(r.path("isError").asBoolean()).isTrue());

    assertThat(putJson(adminToken, policy, "{\"agentsMayWriteSkills\": false}").status())
        .isEqualTo(200);
    String again =
        runSession(
            "agent-revoked",
            toolTurn(
                "editing the skill",
                Map.of(
                    "name",
                    "edit",
                    "input",
                    Map.of(
                        "path",
                        "/skills/deploy/SKILL.md",
                        "old_string",
                        "Canary",
                        "new_string",
                        "Big bang"))));
    assertThat(toolResults(again))
        .singleElement()
        .satisfies(r -> assertThat(r.path("isError").asBoolean()).isTrue());
    assertThat(acme.get("/v1/files/skills/deploy/SKILL.md").body()).isEqualTo(skill);
  }

  // ------------------------------------------------------------------ helpers

  private Response put(String bearer, String path, String body, String... headers) {
    return send(bearer, path, "text/markdown; charset=utf-8", body, headers);
  }

  private Response putJson(String bearer, String path, String body) {
    return send(bearer, path, "application/json", body);
  }

  private Response send(
      String bearer, String path, String contentType, String body, String... headers) {
    HttpRequest.Builder b =
        HttpRequest.newBuilder(URI.create(node.baseUrl() + path))
            .timeout(WAIT)
            .header("Content-Type", contentType)
            .PUT(HttpRequest.BodyPublishers.ofString(body));
    if (bearer != null) b.header("Authorization", "Bearer " + bearer);
    if (headers.length > 0) b.headers(headers);
    try {
      HttpResponse<String> r = HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
      return new Response(r.statusCode(), r.body(), r.headers());
    } catch (IOException e) {
      throw new java.io.UncheckedIOException("PUT " + path, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  @SafeVarargs
  private static Map<String, Object> toolTurn(String text, Map<String, Object>... calls) {
    return Map.of("text", text, "toolCalls", List.of(calls));
  }

  /**
   * Runs a scripted session of acme that makes {@code turn}'s tool calls and then ends; returns its
   * id once completed.
   */
  private String runSession(String user, Map<String, Object> turn) {
    return runSessionOf(acme, user, turn);
  }

  private String runSessionOf(ApiClient client, String user, Map<String, Object> turn) {
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("prompt", "prompt of " + user);
    body.put("user", user);
    body.put(
        "model", Map.of("provider", "scripted", "script", List.of(turn, Map.of("text", "done"))));
    Response r = client.post("/v1/sessions", body);
    assertThat(r.status()).as(r.toString()).isEqualTo(201);
    String id = r.json().path("id").asText();
    long deadline = System.nanoTime() + WAIT.toNanos();
    Response last;
    do {
      last = client.get("/v1/sessions/" + id);
      if (last.json().path("status").asText().equals("completed")) return id;
      sleep(50);
    } while (System.nanoTime() < deadline);
    throw new AssertionError(
        "session " + id + " did not complete within " + WAIT + "; last: " + last);
  }

  private List<JsonNode> toolResults(String session) {
    return toolResults(acme, session);
  }

  private static List<JsonNode> toolResults(ApiClient client, String session) {
    List<JsonNode> out = new ArrayList<>();
    client
        .get("/v1/sessions/" + session + "/transcript")
        .json()
        .path("messages")
        .forEach(
            m ->
                m.path("content")
                    .forEach(
                        b -> {
                          if (b.path("type").asText().equals("tool_result")) out.add(b);
                        }));
    return out;
  }

  private static List<String> paths(Response listing) {
    assertThat(listing.status()).as(listing.toString()).isEqualTo(200);
    List<String> out = new ArrayList<>();
    listing.json().path("files").forEach(f -> out.add(f.path("path").asText()));
    return out;
  }

  private static List<JsonNode> versions(Response history) {
    assertThat(history.status()).as(history.toString()).isEqualTo(200);
    List<JsonNode> out = new ArrayList<>();
    history.json().path("versions").forEach(out::add);
    return out;
  }

  /** Asserts API.md's error shape: the status, JSON {@code {"error": {"code", "message"}}}. */
  private static void assertError(Response r, int status, String code) {
    assertThat(r.status()).as(r.toString()).isEqualTo(status);
    assertThat(r.header("Content-Type"))
        .as("content type of " + r)
        .hasValueSatisfying(ct -> assertThat(ct).startsWith("application/json"));
    JsonNode error = r.json().path("error");
    assertThat(error.isObject()).as("error object in " + r).isTrue();
    assertThat(error.path("code").asText()).as(r.toString()).isEqualTo(code);
    assertThat(error.path("message").isTextual()).as("error.message in " + r).isTrue();
    assertThat(error.path("message").asText()).as("error.message in " + r).isNotBlank();
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
