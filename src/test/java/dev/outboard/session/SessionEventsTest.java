package dev.outboard.session;

import static dev.outboard.testing.ScriptedSessions.awaitStatus;
import static dev.outboard.testing.ScriptedSessions.body;
import static dev.outboard.testing.ScriptedSessions.call;
import static dev.outboard.testing.ScriptedSessions.create;
import static dev.outboard.testing.ScriptedSessions.say;
import static dev.outboard.testing.ScriptedSessions.sleep;
import static dev.outboard.testing.ScriptedSessions.tools;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.EventStream;
import dev.outboard.testing.ApiClient.SseEvent;
import dev.outboard.testing.PostgresCluster;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadLocalRandom;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Event streams on a two-node cluster over PostgreSQL: the journal is read once to catch up, then
 * the session's pushes follow; streams that join or reconnect mid-session, on either node, see
 * every recorded event exactly once and in order; SSE conventions ({@code retry:}, {@code : ping}
 * comments, 204 at the end); and {@code GET /v1/sessions/{id}?wait=}.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class SessionEventsTest {
  private static final Duration WAIT = Duration.ofSeconds(60);

  /** Snapshots every 10 events, so that a stream resuming late starts from one. */
  @RegisterExtension
  static final PostgresCluster cluster =
      PostgresCluster.of(2)
          .with("outboard.session.snapshot-every", "10")
          .with("outboard.http.sse-heartbeat", "200ms")
          .with("outboard.http.sse-retry", "1500ms");

  private List<ApiClient> apis;

  @BeforeAll
  void createOrg() {
    String key = cluster.get(0).admin().createOrgWithKey("streams");
    apis = List.of(cluster.get(0).client(key), cluster.get(1).client(key));
  }

  private static List<Map<String, Object>> writingTurns(int turns, long latencyMs) {
    List<Map<String, Object>> script = new ArrayList<>();
    for (int t = 1; t <= turns; t++) {
      script.add(
          tools(
              "turn " + t,
              latencyMs,
              call(
                  "write",
                  Map.of("path", "/session/t" + (t % 3) + ".md", "content", "turn " + t))));
    }
    script.add(say("finished"));
    return script;
  }

  /**
   * What a stream resuming after recorded event {@code after} must get: the rest, minus {@code
   * after}'s own derived events.
   */
  private static List<SseEvent> after(List<SseEvent> full, long after) {
    int i = 0;
    if (after > 0) {
      while (!Long.toString(after).equals(full.get(i).id())) i++;
      i++;
      while (i < full.size() && full.get(i).id() == null) i++;
    }
    return full.subList(i, full.size());
  }

  @Test
  void streamsJoiningAndReconnectingOnEitherNodeUnderLoadSeeEveryEventOnceInOrder()
      throws Exception {
    int sessions = 12;
    ExecutorService pool = Executors.newFixedThreadPool(3 * sessions);
    try {
      List<String> ids = new ArrayList<>();
      for (int n = 0; n < sessions; n++)
        ids.add(create(apis.get(n % 2), body("load-" + n, false, writingTurns(25, 15))));
      List<Future<List<SseEvent>>> fromStart = new ArrayList<>();
      List<Future<List<List<SseEvent>>>> reconnecting = new ArrayList<>();
      List<Future<List<SseEvent>>> lateJoiners = new ArrayList<>();
      for (int n = 0; n < sessions; n++) {
        String path = "/v1/sessions/" + ids.get(n) + "/events";
        ApiClient here = apis.get(n % 2);
        ApiClient there = apis.get((n + 1) % 2);
        fromStart.add(pool.submit(() -> here.events(path, WAIT)));
        // Reads part of the stream on one node, drops the connection, and resumes on the other.
        reconnecting.add(
            pool.submit(
                () -> {
                  List<List<SseEvent>> parts = new ArrayList<>();
                  EventStream first = there.openEvents(path);
                  int cut = 8 + ThreadLocalRandom.current().nextInt(30);
                  first.await(
                      e ->
                          e.id() != null && Long.parseLong(e.id()) >= cut
                              || e.event().equals("session.completed"),
                      WAIT);
                  first.close();
                  List<SseEvent> seen = first.events();
                  parts.add(seen);
                  String last =
                      seen.stream()
                          .map(SseEvent::id)
                          .filter(id -> id != null)
                          .reduce((a, b) -> b)
                          .orElseThrow();
                  EventStream second = here.openEvents(path, "Last-Event-ID", last);
                  // 204 when the first part already had the end.
                  parts.add(second.status() == 204 ? List.of() : second.awaitEnd(WAIT));
                  return parts;
                }));
        lateJoiners.add(
            pool.submit(
                () -> {
                  sleep(ThreadLocalRandom.current().nextLong(50, 600));
                  return there.events(path, WAIT);
                }));
      }
      for (int n = 0; n < sessions; n++) {
        awaitStatus(apis.get(n % 2), ids.get(n), "completed", WAIT);
        String path = "/v1/sessions/" + ids.get(n) + "/events";
        // The reference: the finished session's stream, read from the journal.
        List<SseEvent> full = apis.get(n % 2).events(path, WAIT);
        assertThat(full.get(full.size() - 1).event()).isEqualTo("session.completed");
        List<Long> seqs =
            full.stream().filter(e -> e.id() != null).map(e -> Long.parseLong(e.id())).toList();
        assertThat(seqs)
            .as("ids of session %d", n)
            .isEqualTo(java.util.stream.LongStream.rangeClosed(1, seqs.size()).boxed().toList());
        assertThat(full.stream().filter(e -> e.event().equals("turn.started")).count())
            .isEqualTo(26);

        assertThat(fromStart.get(n).get())
            .as("stream from the start, session %d", n)
            .isEqualTo(full);
        assertThat(lateJoiners.get(n).get()).as("late joiner, session %d", n).isEqualTo(full);
        List<List<SseEvent>> parts = reconnecting.get(n).get();
        assertThat(parts.get(0)).as("first part").isEqualTo(full.subList(0, parts.get(0).size()));
        long resumedAfter =
            Long.parseLong(
                parts.get(0).stream()
                    .map(SseEvent::id)
                    .filter(i -> i != null)
                    .reduce((a, b) -> b)
                    .orElseThrow());
        assertThat(parts.get(1))
            .as("resumed after %d, session %d", resumedAfter, n)
            .isEqualTo(after(full, resumedAfter));
      }
    } finally {
      pool.shutdownNow();
    }
  }

  @Test
  void aStreamResumingLateStartsFromASnapshotAndDerivesTheSameEvents() {
    String id = create(apis.get(0), body("late", false, writingTurns(20, 0)));
    awaitStatus(apis.get(0), id, "completed", WAIT);
    String path = "/v1/sessions/" + id + "/events";
    List<SseEvent> full = apis.get(1).events(path, WAIT);
    long last = Long.parseLong(full.get(full.size() - 1).id());
    assertThat(last).isGreaterThan(40); // several snapshots were taken; the newest two are kept
    for (long n : new long[] {1, 9, 10, 11, 25, last - 12, last - 8, last - 3, last - 1}) {
      assertThat(apis.get(n % 2 == 0 ? 0 : 1).events(path, WAIT, "Last-Event-ID", Long.toString(n)))
          .as("after %d", n)
          .isEqualTo(after(full, n));
    }
  }

  @Test
  void aStreamOpensWithRetrySendsPingCommentsAndFollowsAWaitingSessionLive() {
    String id =
        create(apis.get(0), body("idle", true, List.of(say("first answer"), say("second answer"))));
    awaitStatus(apis.get(0), id, "waiting", WAIT);
    String path = "/v1/sessions/" + id + "/events";
    try (EventStream stream = apis.get(1).openEvents(path)) {
      assertThat(stream.status()).isEqualTo(200);
      assertThat(stream.headers().firstValue("Content-Type").orElse(""))
          .startsWith("text/event-stream");
      stream.await(e -> e.event().equals("session.waiting"), WAIT);
      sleep(700);
      List<String> lines = stream.lines();
      assertThat(lines.get(0)).isEqualTo("retry: 1500");
      assertThat(lines)
          .as("heartbeats are comments")
          .filteredOn(l -> l.equals(": ping"))
          .hasSizeGreaterThanOrEqualTo(2);
      assertThat(lines)
          .as("no empty data messages")
          .noneMatch(l -> l.equals("data:") || l.equals("data: "));
      int before = stream.events().size();

      // A message to the waiting session: its events arrive on the open stream as they are
      // recorded.
      assertThat(
              apis.get(0).post("/v1/sessions/" + id + "/messages", Map.of("text", "more")).status())
          .isEqualTo(202);
      SseEvent second =
          stream.await(
              e -> e.event().equals("session.waiting") && e.data().contains("second answer"), WAIT);
      assertThat(second.id()).isNotNull();
      List<String> after =
          stream.events().subList(before, stream.events().size()).stream()
              .map(SseEvent::event)
              .toList();
      assertThat(after)
          .containsExactly("message.added", "turn.started", "model.responded", "session.waiting");
      assertThat(stream.ended()).isFalse();
    }
    assertThat(apis.get(1).post("/v1/sessions/" + id + "/cancel", Map.of()).status())
        .isEqualTo(202);
    List<SseEvent> all = apis.get(0).events(path, WAIT);
    assertThat(all.get(all.size() - 1).event()).isEqualTo("session.cancelled");
    ApiClient.Response end = apis.get(1).get(path, "Last-Event-ID", all.get(all.size() - 1).id());
    assertThat(end.status()).as("nothing after the end: 204 tells clients to stop").isEqualTo(204);
  }

  @Test
  void aStreamFollowsTheSessionsNextIncarnationWhenItStops() {
    String id =
        create(
            apis.get(0), body("moving", true, List.of(say("first answer"), say("second answer"))));
    awaitStatus(apis.get(0), id, "waiting", WAIT);
    try (EventStream stream = apis.get(1).openEvents("/v1/sessions/" + id + "/events")) {
      stream.await(e -> e.event().equals("session.waiting"), WAIT);
      // Sharding stops the entity (as in a hand-off); the stream's follower goes on with the next
      // one.
      org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding.get(cluster.get(0).system())
          .entityRefFor(SessionEntity.ENTITY_KEY, id)
          .tell(SessionEntity.Stop.INSTANCE);
      sleep(500);
      assertThat(
              apis.get(0).post("/v1/sessions/" + id + "/messages", Map.of("text", "more")).status())
          .isEqualTo(202);
      stream.await(
          e -> e.event().equals("session.waiting") && e.data().contains("second answer"), WAIT);
      List<SseEvent> events = stream.events();
      List<Long> ids =
          events.stream().filter(e -> e.id() != null).map(e -> Long.parseLong(e.id())).toList();
      assertThat(ids)
          .isEqualTo(java.util.stream.LongStream.rangeClosed(1, ids.size()).boxed().toList());
      assertThat(events)
          .extracting(SseEvent::event)
          .endsWith("message.added", "turn.started", "model.responded", "session.waiting");
    }
  }

  @Test
  void waitReturnsAsSoonAsTheSessionLeavesRunningOrAtTheTimeout() {
    String id =
        create(
            apis.get(0),
            body(
                "waits",
                false,
                List.of(
                    tools(
                        "slow",
                        400,
                        call("write", Map.of("path", "/session/a.md", "content", "a"))),
                    tools("slower", 400, call("read", Map.of("path", "/session/a.md"))),
                    say("done"))));
    long t0 = System.nanoTime();
    ApiClient.Response settled = apis.get(1).get("/v1/sessions/" + id + "?wait=30s");
    long ms = (System.nanoTime() - t0) / 1_000_000;
    assertThat(settled.status()).isEqualTo(200);
    assertThat(settled.json().path("status").asText()).isEqualTo("completed");
    assertThat(settled.json().path("result").asText()).isEqualTo("done");
    assertThat(ms).as("returned once completed, not at the timeout").isBetween(600L, 20_000L);

    String slow =
        create(
            apis.get(1),
            body(
                "waits-long",
                false,
                List.of(
                    tools(
                        "very slow",
                        5_000,
                        call("write", Map.of("path", "/session/a.md", "content", "a"))),
                    say("done"))));
    t0 = System.nanoTime();
    JsonNode running = apis.get(0).get("/v1/sessions/" + slow + "?wait=300ms").json();
    ms = (System.nanoTime() - t0) / 1_000_000;
    assertThat(running.path("status").asText()).isEqualTo("running");
    assertThat(ms).as("returned at the timeout").isBetween(300L, 4_000L);

    // Finished already: at once.
    t0 = System.nanoTime();
    assertThat(apis.get(0).get("/v1/sessions/" + id + "?wait=60s").json().path("status").asText())
        .isEqualTo("completed");
    assertThat((System.nanoTime() - t0) / 1_000_000).isLessThan(5_000L);

    for (String bad : List.of("soon", "-1s", "10m", "1h", "")) {
      ApiClient.Response r = apis.get(0).get("/v1/sessions/" + id + "?wait=" + bad);
      assertThat(r.status()).as("wait=" + bad).isEqualTo(400);
      assertThat(r.json().path("error").path("message").asText()).contains("wait");
    }
    assertThat(apis.get(0).get("/v1/sessions/s_nope?wait=1s").status()).isEqualTo(404);
  }

  @Test
  void aTurnWithASessionToolCostsOneJournalWriteFollowedOrNot() {
    // The count is the node's: no other session of this class may be running meanwhile.
    long deadline = System.nanoTime() + WAIT.toNanos();
    while (apis.get(0).get("/v1/sessions?status=running").json().path("sessions").size() > 0) {
      assertThat(System.nanoTime()).as("other sessions still running").isLessThan(deadline);
      sleep(100);
    }
    for (boolean followed : new boolean[] {false, true}) {
      long before = journalWrites();
      String id =
          create(
              apis.get(0),
              body(followed ? "one-write-followed" : "one-write", true, writingTurns(12, 20)));
      EventStream stream =
          followed ? apis.get(1).openEvents("/v1/sessions/" + id + "/events") : null;
      awaitStatus(apis.get(0), id, "waiting", WAIT);
      if (stream != null) stream.close();
      // The start, then one write per turn: the answer, its tool's start and result (and, last, the
      // wait).
      assertThat(journalWrites() - before)
          .as(followed ? "followed" : "not followed")
          .isEqualTo(1 + 13);
    }
  }

  private static long journalWrites() {
    return dev.outboard.ops.Metrics.JOURNAL_WRITE_SECONDS
        .collect()
        .getDataPoints()
        .get(0)
        .getCount();
  }

  @Test
  void everyRecordedEventOfAFinishedSessionIsBeforeItsTerminalEvent() {
    Set<String> terminal = Set.of("session.completed", "session.failed", "session.cancelled");
    String id = create(apis.get(0), body("order", false, writingTurns(3, 0)));
    awaitStatus(apis.get(0), id, "completed", WAIT);
    sleep(300); // anything recorded late would be in the journal by now
    List<SseEvent> all = apis.get(1).events("/v1/sessions/" + id + "/events?after=0", WAIT);
    Set<String> types = new HashSet<>();
    for (SseEvent e : all) types.add(e.event());
    assertThat(all.get(all.size() - 1).event()).isIn(terminal);
    assertThat(all.subList(0, all.size() - 1)).noneMatch(e -> terminal.contains(e.event()));
    assertThat(types)
        .contains(
            "session.started", "turn.started", "model.responded", "tool.started", "tool.completed");
  }
}
