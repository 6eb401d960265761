package dev.outboard.memory;

import static dev.outboard.testing.ScriptedSessions.awaitStatus;
import static dev.outboard.testing.ScriptedSessions.body;
import static dev.outboard.testing.ScriptedSessions.call;
import static dev.outboard.testing.ScriptedSessions.create;
import static dev.outboard.testing.ScriptedSessions.say;
import static dev.outboard.testing.ScriptedSessions.tools;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.session.SessionEntity;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.Response;
import dev.outboard.testing.PostgresCluster;
import dev.outboard.testing.RawHttp;
import dev.outboard.testing.ScriptedSessions;
import dev.outboard.testing.ScriptedSessions.ToolCall;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import java.util.stream.LongStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Org memory on a two-node cluster (two ActorSystems in this JVM, one PostgreSQL database):
 * concurrent edits of one memory file by sessions on both nodes lose nothing and number their
 * versions without gaps, and a write acknowledged to a session on one node is what a session on the
 * other node reads next (DESIGN.md §5).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class OrgMemoryClusterTest {
  private static final int SESSIONS = 50;
  private static final int EDITS = 20;
  private static final long LATENCY_MS = 5;
  private static final String MARKER = "<!-- end -->";
  private static final Duration DONE_WITHIN = Duration.ofSeconds(60);
  private static final Pattern VERSION = Pattern.compile("\\(version (\\d+),");

  /**
   * Entities stay on their node for the whole class (no idle stop, no shard hand-off), so that
   * {@code hostOf} tells where each one ran.
   */
  @RegisterExtension
  static final PostgresCluster cluster =
      PostgresCluster.of(2)
          .with("outboard.session.passivate-after", "10m")
          .with("outboard.memory.passivate-after", "10m")
          .with("pekko.cluster.sharding.rebalance-interval", "1h");

  // ------------------------------------------------------------------ concurrent edits

  @Test
  void fiftySessionsOnTwoNodesEditingOneMemoryFileLoseNothingAndNumberVersionsWithoutGaps()
      throws Exception {
    long t0 = System.nanoTime();
    String key = cluster.get(0).admin().createOrgWithKey("edits");
    List<ApiClient> apis = List.of(cluster.get(0).client(key), cluster.get(1).client(key));

    Response seeded =
        put(cluster.get(1).baseUrl(), key, "/v1/files/memory/shared.md", MARKER + "\n");
    assertThat(seeded.status()).as(seeded.toString()).isEqualTo(201);
    assertThat(seeded.json().path("version").asLong()).isEqualTo(1);

    // Sessions are created concurrently, alternately through the two nodes' APIs.
    List<String> ids = new ArrayList<>();
    ExecutorService pool = Executors.newFixedThreadPool(10);
    try {
      List<Callable<String>> creates =
          IntStream.range(0, SESSIONS)
              .<Callable<String>>mapToObj(
                  n -> () -> create(apis.get(n % 2), body("editor-" + n, false, editScript(n))))
              .toList();
      for (Future<String> f : pool.invokeAll(creates)) ids.add(f.get());
    } finally {
      pool.shutdownNow();
    }
    log("%d sessions created after %d ms", ids.size(), ms(t0));

    for (int n = 0; n < SESSIONS; n++) {
      JsonNode done = awaitStatus(apis.get((n + 1) % 2), ids.get(n), "completed", DONE_WITHIN);
      assertThat(done.path("turns").asInt()).as("turns of session %d", n).isEqualTo(EDITS + 1);
    }
    log("all sessions completed after %d ms", ms(t0));

    // The sessions ran on both nodes; the org's single writer on exactly one of them.
    Map<Integer, Integer> perNode = new HashMap<>();
    for (String id : ids)
      perNode.merge(cluster.hostOf(SessionEntity.ENTITY_KEY, id), 1, Integer::sum);
    log("sessions per node: %s", perNode);
    assertThat(perNode).as("sessions per node").containsOnlyKeys(0, 1);
    assertThat(cluster.hostOf(OrgMemory.ENTITY_KEY, "edits"))
        .as("node of the org's OrgMemory")
        .isIn(0, 1);

    // Every tool result: no error, one result per call, and each edit reports its own version.
    Map<Long, String> versionToSession = new HashMap<>();
    for (int n = 0; n < SESSIONS; n++) {
      String id = ids.get(n);
      List<ToolCall> calls = ScriptedSessions.toolCalls(apis.get(n % 2), id);
      assertThat(calls).as("tool calls of session %d", n).hasSize(EDITS);
      long previous = 1;
      for (ToolCall c : calls) {
        assertThat(c.results()).as("results of %s in session %d", c.id(), n).isEqualTo(1);
        assertThat(c.isError())
            .as("tool result %s of session %d: %s", c.id(), n, c.content())
            .isFalse();
        assertThat(c.content()).startsWith("edited /memory/shared.md (version ");
        Matcher m = VERSION.matcher(c.content());
        assertThat(m.find()).as(c.content()).isTrue();
        long version = Long.parseLong(m.group(1));
        assertThat(version)
            .as("versions of session %d's edits increase", n)
            .isGreaterThan(previous);
        previous = version;
        assertThat(versionToSession.put(version, id))
            .as("version %d reported to two calls", version)
            .isNull();
      }
    }
    assertThat(new TreeSet<>(versionToSession.keySet()))
        .as("the versions the edits were told")
        .containsExactlyElementsOf(range(2, SESSIONS * EDITS + 1));

    // The file: every line exactly once, each session's lines in its order, then the marker.
    Response file = apis.get(0).get("/v1/files/memory/shared.md");
    assertThat(file.status()).as(file.toString()).isEqualTo(200);
    assertThat(file.header("ETag")).contains("\"" + (SESSIONS * EDITS + 1) + "\"");
    List<String> lines = file.body().lines().toList();
    assertThat(lines).hasSize(SESSIONS * EDITS + 1);
    assertThat(lines.get(lines.size() - 1)).isEqualTo(MARKER);
    assertThat(lines.subList(0, lines.size() - 1))
        .doesNotHaveDuplicates()
        .containsExactlyInAnyOrderElementsOf(
            IntStream.range(0, SESSIONS)
                .boxed()
                .flatMap(n -> IntStream.rangeClosed(1, EDITS).mapToObj(i -> line(n, i)))
                .toList());
    for (int n = 0; n < SESSIONS; n++) {
      int session = n;
      assertThat(lines.stream().filter(l -> l.startsWith("session " + session + " ")).toList())
          .as("lines of session %d, in the order it wrote them", n)
          .containsExactlyElementsOf(
              IntStream.rangeClosed(1, EDITS).mapToObj(i -> line(session, i)).toList());
    }

    // The history: versions 1..1001 without a gap; each edit attributed to its session, 20 each.
    Response history = apis.get(1).get("/v1/files/memory/shared.md?history");
    assertThat(history.status()).as(history.toString()).isEqualTo(200);
    List<JsonNode> versions = new ArrayList<>();
    history.json().path("versions").forEach(versions::add);
    assertThat(versions)
        .extracting(v -> v.path("version").asLong())
        .containsExactlyElementsOf(range(1, SESSIONS * EDITS + 1));
    assertThat(
            versions.get(0).path("session").isNull()
                || versions.get(0).path("session").isMissingNode())
        .as("version 1 came from the API, not a session: " + versions.get(0))
        .isTrue();
    Map<String, Long> editsPerSession =
        versions.subList(1, versions.size()).stream()
            .collect(Collectors.groupingBy(v -> v.path("session").asText(), Collectors.counting()));
    assertThat(editsPerSession)
        .as("edit versions per session")
        .isEqualTo(ids.stream().collect(Collectors.toMap(id -> id, id -> (long) EDITS)));
    for (JsonNode v : versions.subList(1, versions.size())) {
      assertThat(v.path("op").asText()).isEqualTo("edit");
      assertThat(v.path("session").asText())
          .as("session of version %d", v.path("version").asLong())
          .isEqualTo(versionToSession.get(v.path("version").asLong()));
      assertThat(v.path("updatedBy").asText()).startsWith("editor-");
    }

    // And underneath: one version row per edit call, one recorded outcome per call.
    try (Connection c = cluster.connection()) {
      assertThat(count(c, "SELECT count(*) FROM org_file_versions WHERE org_id = 'edits'"))
          .isEqualTo(SESSIONS * EDITS + 1);
      assertThat(
              count(
                  c,
                  "SELECT count(DISTINCT (session_id, call_id)) FROM org_file_versions WHERE org_id"
                      + " = 'edits' AND session_id IS NOT NULL"))
          .isEqualTo(SESSIONS * EDITS);
      assertThat(count(c, "SELECT count(*) FROM org_file_ops WHERE org_id = 'edits'"))
          .isEqualTo(SESSIONS * EDITS);
      // (A batch's versions share its commit time: how many transactions the group commit needed.)
      log(
          "%d edits committed in %d transactions",
          SESSIONS * EDITS,
          count(
              c,
              "SELECT count(DISTINCT updated_at) FROM org_file_versions WHERE org_id = 'edits' AND"
                  + " op = 'edit'"));
    }
    log("checked after %d ms", ms(t0));
  }

  /** Session n: 20 turns, each appending its own line before the marker, then done. */
  private static List<Map<String, Object>> editScript(int n) {
    List<Map<String, Object>> turns = new ArrayList<>();
    for (int i = 1; i <= EDITS; i++) {
      turns.add(
          tools(
              "edit " + i,
              LATENCY_MS,
              call(
                  "edit",
                  Map.of(
                      "path",
                      "/memory/shared.md",
                      "old_string",
                      MARKER,
                      "new_string",
                      line(n, i) + "\n" + MARKER))));
    }
    turns.add(say("done"));
    return turns;
  }

  private static String line(int session, int edit) {
    return "session " + session + " edit " + edit;
  }

  // ------------------------------------------------------------------ read after write

  @Test
  void aWriteAcknowledgedToASessionOnOneNodeIsWhatASessionOnTheOtherNodeReadsNext() {
    long t0 = System.nanoTime();
    String key = cluster.get(0).admin().createOrgWithKey("raw");
    List<ApiClient> apis = List.of(cluster.get(0).client(key), cluster.get(1).client(key));
    assertThat(
            put(cluster.get(1).baseUrl(), key, "/v1/files/memory/raw.md", "old content\n").status())
        .isEqualTo(201);

    // Readers: turn 1 reads the file (old content) and the session waits for a message; turn 2
    // reads it again. Readers are created until both nodes run some: then, wherever the writer
    // session and the org's OrgMemory run, some reader is on another node than each of them.
    Map<String, Object> readerBody =
        body(
            "reader",
            true,
            List.of(
                tools("first look", LATENCY_MS, call("read", Map.of("path", "/memory/raw.md"))),
                say("waiting"),
                tools("second look", LATENCY_MS, call("read", Map.of("path", "/memory/raw.md"))),
                say("seen")));
    List<String> readers = new ArrayList<>();
    Map<String, Integer> readerNode = new LinkedHashMap<>();
    while (readers.size() < 6 || new HashSet<>(readerNode.values()).size() < 2) {
      assertThat(readers.size()).as("readers created before both nodes ran one").isLessThan(24);
      String id = create(apis.get(readers.size() % 2), readerBody);
      readers.add(id);
      awaitStatus(apis.get(0), id, "waiting", DONE_WITHIN);
      readerNode.put(id, cluster.hostOf(SessionEntity.ENTITY_KEY, id));
    }
    for (String id : readers) {
      ToolCall first = ScriptedSessions.toolCalls(apis.get(1), id).get(0);
      assertThat(first.isError()).as(first.toString()).isFalse();
      assertThat(first.content()).as("reader %s's first read", id).contains("old content");
    }

    String content = "written by the writer " + UUID.randomUUID();
    String writer =
        create(
            apis.get(0),
            body(
                "writer",
                false,
                List.of(
                    tools(
                        "writing",
                        LATENCY_MS,
                        call("write", Map.of("path", "/memory/raw.md", "content", content + "\n"))),
                    say("written"))));
    awaitStatus(apis.get(0), writer, "completed", DONE_WITHIN);
    ToolCall write = ScriptedSessions.toolCalls(apis.get(0), writer).get(0);
    assertThat(write.isError()).as(write.toString()).isFalse();
    assertThat(write.content()).startsWith("wrote /memory/raw.md (version 2,");

    int writerNode = cluster.hostOf(SessionEntity.ENTITY_KEY, writer);
    int memoryNode = cluster.hostOf(OrgMemory.ENTITY_KEY, "raw");
    log(
        "readers on nodes %s; writer on node %d; OrgMemory(raw) on node %d",
        readerNode.values(), writerNode, memoryNode);
    assertThat(readerNode.values())
        .as("readers on another node than the writer session")
        .anyMatch(n -> n != writerNode);
    assertThat(readerNode.values())
        .as("readers on another node than the org's writer")
        .anyMatch(n -> n != memoryNode);

    // The write is acknowledged (the writer completed): every reader's very next read sees it.
    for (int i = 0; i < readers.size(); i++) {
      Response r =
          apis.get(i % 2)
              .post("/v1/sessions/" + readers.get(i) + "/messages", Map.of("text", "look again"));
      assertThat(r.status()).as(r.toString()).isEqualTo(202);
    }
    for (String id : readers) {
      ScriptedSessions.await(
          apis.get(1),
          id,
          s -> s.path("turns").asInt() == 4 && s.path("status").asText().equals("waiting"),
          DONE_WITHIN,
          "waiting after turn 4");
      List<ToolCall> calls = ScriptedSessions.toolCalls(apis.get(0), id);
      assertThat(calls).hasSize(2);
      ToolCall second = calls.get(1);
      assertThat(second.isError()).as(second.toString()).isFalse();
      assertThat(second.content())
          .as("reader %s (node %d) read after the acknowledged write", id, readerNode.get(id))
          .contains(content)
          .doesNotContain("old content");
      // It did not move while it read (the check above is about the node it ran on).
      assertThat(cluster.hostOf(SessionEntity.ENTITY_KEY, id))
          .as("node of reader %s", id)
          .isEqualTo(readerNode.get(id));
    }
    log("read-after-write checked after %d ms", ms(t0));
  }

  // ------------------------------------------------------------------ helpers

  private static Response put(String baseUrl, String key, String path, String content) {
    return RawHttp.send("PUT", baseUrl, path, key, content);
  }

  private static long count(Connection c, String sql) throws Exception {
    try (PreparedStatement ps = c.prepareStatement(sql);
        ResultSet rs = ps.executeQuery()) {
      rs.next();
      return rs.getLong(1);
    }
  }

  private static List<Long> range(long from, long toInclusive) {
    return LongStream.rangeClosed(from, toInclusive).boxed().toList();
  }

  private static long ms(long t0) {
    return (System.nanoTime() - t0) / 1_000_000;
  }

  private static void log(String format, Object... args) {
    System.err.printf("[org-memory-cluster] " + format + "%n", args);
  }
}
