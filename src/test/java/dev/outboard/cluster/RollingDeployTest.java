package dev.outboard.cluster;

import static dev.outboard.testing.ScriptedSessions.sleep;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.Response;
import dev.outboard.testing.AppendingSessions;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.NodeProcess;
import dev.outboard.testing.Ports;
import dev.outboard.testing.TestPostgres;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/**
 * A rolling deploy and a crash of a real three-node cluster under load. Three node JVMs on loopback
 * form one cluster on a fresh PostgreSQL database through {@code conf/cluster.conf} and {@code
 * OUTBOARD_SEED_NODES}, exactly as the README's recipe starts them. While a load generator keeps
 * {@link #CONCURRENCY} scripted sessions running (each turn appends a line to a {@code /session}
 * file), each node in turn gets SIGTERM and is started again with a newer {@code
 * OUTBOARD_APP_VERSION}; then one node is killed with SIGKILL, and its sessions must restart on the
 * survivors by themselves (split-brain resolver, remember-entities) before it comes back. Every
 * session must complete with exactly its turns, each tool call once with one result, its log file
 * holding each line once and in order, and a complete, ordered event replay.
 *
 * <p>The test also measures, from the journal, each session's resume gap at every hand-off (the
 * pause between the last event of one incarnation and the first of the next, minus the scripted
 * model latency) and prints it; {@code loadtest/bench-rolling.sh} runs it larger and judges the
 * numbers against the bars. The test itself asserts no timing beyond generous time-outs.
 */
class RollingDeployTest {
  private static final int NODES = 3;
  private static final int CONCURRENCY = Integer.getInteger("outboard.rolling.concurrency", 24);
  private static final int TURNS = Integer.getInteger("outboard.rolling.turns", 40);
  private static final long LATENCY_MS = Long.getLong("outboard.rolling.latency-ms", 250);
  private static final String REPORT = System.getProperty("outboard.rolling.report", "");
  private static final Duration READY = Duration.ofSeconds(120);
  private static final Duration LEAVE = Duration.ofSeconds(60);
  private static final Duration RECOVERY = Duration.ofSeconds(90);
  private static final Duration DRAIN = Duration.ofSeconds(240);

  private final AppendingSessions script = new AppendingSessions(TURNS, LATENCY_MS);
  private final List<NodeProcess> nodes = new ArrayList<>();

  /** Nodes the load generator and the checks may talk to (not those being stopped or started). */
  private final Set<Integer> usable = ConcurrentHashMap.newKeySet();

  private final AtomicInteger next = new AtomicInteger();
  private final List<String> created = new CopyOnWriteArrayList<>();
  private final List<Disruption> disruptions = new ArrayList<>();
  private final List<String> report = new ArrayList<>();
  private String key;

  /** A SIGTERM restart or a SIGKILL of one node, from the signal until the node was ready again. */
  private record Disruption(String kind, int node, long startMs, long endMs) {}

  @Test
  void sessionsSurviveARollingDeployAndACrashWithEveryTurnOnce() throws Exception {
    try (TestPostgres postgres = TestPostgres.create()) {
      List<Path> dataDirs = new ArrayList<>();
      try {
        startCluster(postgres, dataDirs);
        campaign(postgres);
      } catch (AssertionError | Exception e) {
        StringBuilder logs = new StringBuilder();
        for (NodeProcess n : nodes) logs.append(n.logTails(40));
        throw new AssertionError(e + "\n" + logs, e);
      } finally {
        for (NodeProcess n : nodes) n.close();
        for (Path dir : dataDirs) InProcessNode.deleteRecursively(dir);
      }
    }
  }

  private void startCluster(TestPostgres postgres, List<Path> dataDirs) throws Exception {
    int[] ports = Ports.free(3 * NODES);
    String seeds =
        java.util.stream.IntStream.range(0, NODES)
            .mapToObj(i -> "127.0.0.1:" + ports[3 * i + 2])
            .collect(Collectors.joining(","));
    String adminToken = "rolling-admin-" + Long.toHexString(new SecureRandom().nextLong());
    String clusterConf =
        Path.of(System.getProperty("basedir", "."), "conf", "cluster.conf")
            .toAbsolutePath()
            .toString();
    for (int i = 0; i < NODES; i++) {
      Path dataDir = Files.createTempDirectory("outboard-rolling-");
      dataDirs.add(dataDir);
      Map<String, String> env = new HashMap<>();
      env.put("OUTBOARD_DB_URL", postgres.url());
      env.put("OUTBOARD_DB_USER", postgres.user());
      env.put("OUTBOARD_DB_PASSWORD", "");
      env.put("OUTBOARD_ALLOW_SCRIPTED", "true");
      env.put("OUTBOARD_ADMIN_TOKEN", adminToken);
      env.put("OUTBOARD_HTTP_INTERFACE", "127.0.0.1");
      env.put("OUTBOARD_MANAGEMENT_BIND_HOST", "127.0.0.1");
      env.put("OUTBOARD_REMOTE_BIND_HOST", "127.0.0.1");
      env.put("OUTBOARD_HTTP_PORT", Integer.toString(ports[3 * i]));
      env.put("OUTBOARD_MANAGEMENT_PORT", Integer.toString(ports[3 * i + 1]));
      env.put("OUTBOARD_REMOTE_PORT", Integer.toString(ports[3 * i + 2]));
      env.put("OUTBOARD_SEED_NODES", seeds);
      env.put("OUTBOARD_APP_VERSION", "1.0.0");
      env.put("OUTBOARD_DATA_DIR", dataDir.toString());
      nodes.add(
          new NodeProcess(
              "rolling-node-" + i, env, List.of("-Dconfig.file=" + clusterConf), List.of("serve")));
    }
    long t0 = System.nanoTime();
    for (NodeProcess n : nodes) n.start();
    for (int i = 0; i < NODES; i++) {
      nodes.get(i).awaitReadyProbe(READY);
      usable.add(i);
    }
    log("3 nodes ready after %d ms", (System.nanoTime() - t0) / 1_000_000);
    for (NodeProcess n : nodes)
      assertThat(members(n)).as("members seen by " + n.name()).hasSize(NODES);
    key = new ApiClient(nodes.get(0).baseUrl(), adminToken).createOrgWithKey("rolling");
  }

  private void campaign(TestPostgres postgres) throws Exception {
    AtomicBoolean creating = new AtomicBoolean(true);
    AtomicReference<Throwable> generatorFailure = new AtomicReference<>();
    Thread generator =
        new Thread(
            () -> {
              try {
                generateLoad(creating);
              } catch (Throwable t) {
                generatorFailure.set(t);
              }
            },
            "load-generator");
    generator.start();
    try {
      awaitRunning(CONCURRENCY);
      sleep(3000); // well under way

      // The rolling deploy: each node in turn leaves (SIGTERM) and comes back as version 2.
      for (int i = 0; i < NODES; i++) {
        usable.remove(i);
        long start = System.currentTimeMillis();
        Duration leave = nodes.get(i).terminate(LEAVE);
        report.add(String.format("RESULT rolling_leave node=%d leave_ms=%d", i, leave.toMillis()));
        log(
            "node %d left after SIGTERM in %d ms (%d sessions created so far)",
            i, leave.toMillis(), created.size());
        nodes.get(i).setEnv("OUTBOARD_APP_VERSION", "2.0.0");
        nodes.get(i).start();
        nodes.get(i).awaitReadyProbe(READY);
        usable.add(i);
        disruptions.add(new Disruption("sigterm", i, start, System.currentTimeMillis()));
        log("node %d ready again as 2.0.0 after %d ms", i, System.currentTimeMillis() - start);
        sleep(2000);
        checkGenerator(generatorFailure);
      }

      // The crash: SIGKILL of node 0 (the oldest after the rollout: it hosts the shard
      // coordinator).
      int victim = 0;
      usable.remove(victim);
      Set<String> runningAtKill = runningSessions();
      long killedAt = System.currentTimeMillis();
      nodes.get(victim).kill();
      log("node %d killed; %d sessions were running", victim, runningAtKill.size());
      long recoveredAt;
      try (Connection db = postgres.connection()) {
        recoveredAt = awaitEventsAfter(db, runningAtKill, killedAt);
      }
      assertThat(nodes.get(victim).isAlive()).isFalse();
      report.add(
          String.format(
              "RESULT rolling_kill sessions_running=%d all_resumed_after_ms=%d",
              runningAtKill.size(), recoveredAt - killedAt));
      log(
          "every session running at the kill wrote again %d ms after it, with node %d still down",
          recoveredAt - killedAt, victim);
      nodes.get(victim).start();
      nodes.get(victim).awaitReadyProbe(READY);
      usable.add(victim);
      disruptions.add(new Disruption("kill", victim, killedAt, System.currentTimeMillis()));
      sleep(2000);
      checkGenerator(generatorFailure);
    } finally {
      creating.set(false);
      generator.join(60_000);
    }
    checkGenerator(generatorFailure);

    awaitAllFinished();
    log("all %d sessions finished; checking each", created.size());
    for (String id : created) script.check(api(), id);

    try (Connection db = postgres.connection()) {
      measureGaps(db); // also writes target/rolling-deploy-resumes.txt
    }
    report.forEach(line -> System.err.println("[rolling-test] " + line));
    if (!REPORT.isEmpty()) Files.write(Path.of(REPORT), report);
  }

  private static void checkGenerator(AtomicReference<Throwable> failure) {
    if (failure.get() != null)
      throw new AssertionError("the load generator failed: " + failure.get(), failure.get());
  }

  // ------------------------------------------------------------------ the load

  /**
   * Keeps {@link #CONCURRENCY} sessions running, reading only the sessions list (it wakes no
   * session).
   */
  private void generateLoad(AtomicBoolean creating) {
    int n = 0;
    while (creating.get()) {
      int running = runningSessions().size();
      for (int i = running; i < CONCURRENCY && creating.get(); i++) created.add(create(++n));
      assertThat(list("status=failed")).as("failed sessions").isEmpty();
      sleep(100);
    }
  }

  /**
   * Creates session {@code n} on any usable node, retrying with the same idempotency key when a
   * node goes away.
   */
  private String create(int n) {
    String idempotencyKey = "rolling-" + n;
    long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
    String last = "";
    while (System.nanoTime() < deadline) {
      try {
        Response r =
            api()
                .post("/v1/sessions", script.body("rolling", n), "Idempotency-Key", idempotencyKey);
        if (r.status() == 201 || r.status() == 200) return r.json().path("id").asText();
        last = r.toString();
        if (r.status() != 503) throw new AssertionError("create session " + n + ": " + r);
      } catch (UncheckedIOException e) {
        last = e.toString();
      }
      sleep(200);
    }
    throw new AssertionError("could not create session " + n + " within 60 s; last: " + last);
  }

  /**
   * A client of a usable node, round robin; requests to a node that is going away are retried by
   * the callers.
   */
  private ApiClient api() {
    List<Integer> live = new ArrayList<>(usable);
    if (live.isEmpty()) throw new AssertionError("no usable node");
    Collections.sort(live);
    int i = live.get(Math.floorMod(next.getAndIncrement(), live.size()));
    return new ApiClient(nodes.get(i).baseUrl(), key);
  }

  private Set<String> runningSessions() {
    return list("status=running").keySet();
  }

  /** One page of the sessions list (at most 100, more than are ever running or failed at once). */
  private Map<String, JsonNode> list(String query) {
    for (int attempt = 0; ; attempt++) {
      try {
        Response r = api().get("/v1/sessions?limit=100&" + query);
        assertThat(r.status()).as(r.toString()).isEqualTo(200);
        Map<String, JsonNode> out = new LinkedHashMap<>();
        r.json().path("sessions").forEach(s -> out.put(s.path("id").asText(), s));
        return out;
      } catch (UncheckedIOException e) {
        if (attempt >= 20) throw e;
        sleep(100);
      }
    }
  }

  private void awaitRunning(int count) {
    long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
    while (runningSessions().size() < count) {
      if (System.nanoTime() > deadline)
        throw new AssertionError("fewer than " + count + " sessions running after 60 s");
      sleep(100);
    }
  }

  private void awaitAllFinished() {
    long deadline = System.nanoTime() + DRAIN.toNanos();
    while (!runningSessions().isEmpty()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError(
            "sessions still running " + DRAIN + " after the campaign: " + runningSessions());
      }
      sleep(200);
    }
    assertThat(list("status=failed")).as("failed sessions").isEmpty();
    assertThat(list("status=cancelled")).as("cancelled sessions").isEmpty();
  }

  private List<JsonNode> members(NodeProcess node) {
    Response r = new ApiClient(node.managementUrl(), null).get("/cluster/members");
    assertThat(r.status()).as(r.toString()).isEqualTo(200);
    List<JsonNode> members = new ArrayList<>();
    r.json().path("members").forEach(members::add);
    return members;
  }

  // ------------------------------------------------------------------ the journal

  /** One durable event of a session, as the journal has it. */
  private record Written(long seq, String writer, long atMs, String manifest) {
    boolean terminal() {
      return manifest.endsWith("SessionCompleted")
          || manifest.endsWith("SessionFailed")
          || manifest.endsWith("SessionCancelled");
    }
  }

  private static Map<String, List<Written>> journal(Connection db) throws SQLException {
    Map<String, List<Written>> out = new HashMap<>();
    try (Statement st = db.createStatement();
        ResultSet rs =
            st.executeQuery(
                "SELECT persistence_id, sequence_number, writer, write_timestamp,"
                    + " event_ser_manifest FROM event_journal WHERE persistence_id LIKE 'Session|%'"
                    + " ORDER BY persistence_id, sequence_number")) {
      while (rs.next()) {
        String id = rs.getString(1).substring("Session|".length());
        out.computeIfAbsent(id, k -> new ArrayList<>())
            .add(new Written(rs.getLong(2), rs.getString(3), rs.getLong(4), rs.getString(5)));
      }
    }
    return out;
  }

  /**
   * Waits until each of {@code sessions} has a journal event after {@code sinceMs}, without any
   * request that could wake a session; returns when the last of them did.
   */
  private static long awaitEventsAfter(Connection db, Set<String> sessions, long sinceMs)
      throws SQLException {
    long deadline = System.nanoTime() + RECOVERY.toNanos();
    while (true) {
      Map<String, List<Written>> journal = journal(db);
      long latestFirst = sinceMs;
      List<String> waiting = new ArrayList<>();
      for (String id : sessions) {
        List<Written> events = journal.getOrDefault(id, List.of());
        // (the list may still say running for a moment after the session's last event)
        if (!events.isEmpty()
            && events.get(events.size() - 1).terminal()
            && events.get(events.size() - 1).atMs() <= sinceMs) continue;
        long first =
            events.stream().mapToLong(Written::atMs).filter(t -> t > sinceMs).min().orElse(-1);
        if (first < 0) waiting.add(id);
        else latestFirst = Math.max(latestFirst, first);
      }
      if (waiting.isEmpty()) return latestFirst;
      if (System.nanoTime() > deadline) {
        throw new AssertionError(
            waiting.size()
                + " sessions running at the kill wrote nothing within "
                + RECOVERY
                + ": "
                + waiting);
      }
      sleep(100);
    }
  }

  /**
   * Each change of writer (a new incarnation of the session's actor: it was handed off or
   * restarted) is a resume; its gap is the time between the two incarnations' events minus the
   * scripted latency (the new incarnation calls the model again). Gaps during the kill's window
   * count as crash recovery, all others as graceful hand-offs (SIGTERM and the rebalancing onto the
   * new nodes that follows it).
   */
  private void measureGaps(Connection db) throws SQLException, java.io.IOException {
    Disruption kill =
        disruptions.stream().filter(d -> d.kind().equals("kill")).findFirst().orElseThrow();
    List<String> resumes = new ArrayList<>();
    List<Long> graceful = new ArrayList<>();
    List<Long> crash = new ArrayList<>();
    long longestPause = 0;
    for (List<Written> events : journal(db).values()) {
      for (int i = 1; i < events.size(); i++) {
        Written before = events.get(i - 1);
        Written after = events.get(i);
        long pause = after.atMs() - before.atMs();
        longestPause = Math.max(longestPause, pause);
        if (after.writer().equals(before.writer())) continue;
        long gap = Math.max(0, pause - LATENCY_MS);
        resumes.add(
            String.format(
                "%s resume, first event of the new incarnation %s, gap_ms=%d",
                java.time.Instant.ofEpochMilli(before.atMs()),
                java.time.Instant.ofEpochMilli(after.atMs()),
                gap));
        if (before.atMs() < kill.startMs()
            && after.atMs() >= kill.startMs()
            && after.atMs() <= kill.endMs()) crash.add(gap);
        else graceful.add(gap);
      }
    }
    assertThat(graceful)
        .as("sessions handed off by the rolling deploy (else the test proved nothing)")
        .isNotEmpty();
    assertThat(crash)
        .as("sessions restarted after the kill (else the test proved nothing)")
        .isNotEmpty();
    report.add(
        String.format(
            "RESULT rolling_config sessions=%d concurrency=%d turns=%d latency_ms=%d",
            created.size(), CONCURRENCY, TURNS, LATENCY_MS));
    report.add("RESULT rolling_sigterm_gap " + summary(graceful));
    report.add("RESULT rolling_kill_gap " + summary(crash));
    report.add(String.format("RESULT rolling_longest_pause_ms=%d", longestPause));
    for (Disruption d : disruptions) {
      resumes.add(
          String.format(
              "%s %s of node %d, until it was ready again at %s",
              java.time.Instant.ofEpochMilli(d.startMs()),
              d.kind(),
              d.node(),
              java.time.Instant.ofEpochMilli(d.endMs())));
    }
    Collections.sort(resumes);
    Files.write(
        Path.of(System.getProperty("basedir", "."), "target", "rolling-deploy-resumes.txt"),
        resumes);
  }

  private static String summary(List<Long> gaps) {
    List<Long> sorted = new ArrayList<>(gaps);
    Collections.sort(sorted);
    return String.format(
        "resumes=%d p50_ms=%d p99_ms=%d max_ms=%d",
        sorted.size(),
        percentile(sorted, 50),
        percentile(sorted, 99),
        sorted.get(sorted.size() - 1));
  }

  /** Nearest-rank percentile of a sorted, non-empty list. */
  private static long percentile(List<Long> sorted, int p) {
    int rank = (int) Math.ceil(p / 100.0 * sorted.size());
    return sorted.get(Math.max(0, rank - 1));
  }

  // ------------------------------------------------------------------ helpers

  private static void log(String format, Object... args) {
    System.err.printf("[rolling-test] " + format + "%n", args);
  }
}
