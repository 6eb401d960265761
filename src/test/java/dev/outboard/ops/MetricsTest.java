package dev.outboard.ops;

import static dev.outboard.testing.ScriptedSessions.awaitStatus;
import static dev.outboard.testing.ScriptedSessions.body;
import static dev.outboard.testing.ScriptedSessions.call;
import static dev.outboard.testing.ScriptedSessions.create;
import static dev.outboard.testing.ScriptedSessions.say;
import static dev.outboard.testing.ScriptedSessions.tools;
import static org.assertj.core.api.Assertions.assertThat;

import dev.outboard.testing.ApiClient;
import dev.outboard.testing.FreshDatabase;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.ScriptedSessions;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.opentest4j.TestAbortedException;

/**
 * The series an SRE dashboards on, scraped from a node's management port after a run of scripted
 * sessions on PostgreSQL that use {@code /session} and {@code /memory}; then the node shuts down
 * (its sessions are handed off) and a new node on the same database recovers the remembered ones.
 * The registry is the JVM's, shared with other tests: assertions are on deltas.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class MetricsTest {
  private static final Duration WAIT = Duration.ofSeconds(30);
  private static final int FINISHED = 3;
  private static final int TURNS_EACH = 4;

  @RegisterExtension static final FreshDatabase postgres = FreshDatabase.create();

  private InProcessNode node;
  private String key;
  private final List<String> waiting = new ArrayList<>();

  /** What the node showed at the end of the first test, before it shut down. */
  private Map<String, Double> beforeShutdown;

  private InProcessNode start() throws Exception {
    return InProcessNode.start(
        postgres.url(), Map.of("outboard.metrics.shard-stats-interval", "300ms"));
  }

  @AfterAll
  void stop() {
    if (node != null) node.close();
  }

  @Test
  @Order(1)
  void theMetricsCountTheSessionsTurnsToolCallsAndWritesOfARun() throws Exception {
    node = start();
    key = node.admin().createOrgWithKey("acme");
    ApiClient api = node.client(key);
    Map<String, Double> before = scrape();

    List<String> finished = new ArrayList<>();
    for (int i = 0; i < FINISHED; i++)
      finished.add(create(api, body("user" + i, false, script(i))));
    waiting.add(create(api, body("keeper", true, script(9))));
    for (String id : finished) awaitStatus(api, id, "completed", WAIT);
    awaitStatus(api, waiting.get(0), "waiting", WAIT);

    // The shard gauges follow within a few intervals.
    Map<String, Double> after =
        awaitScrape(
            m ->
                value(m, "outboard_entities{type=\"Session\"}") >= FINISHED + 1
                    && value(m, "outboard_entities{type=\"OrgMemory\"}") >= 1);

    int sessions = FINISHED + 1;
    int turns = sessions * TURNS_EACH;
    assertThat(delta(before, after, "outboard_sessions{status=\"completed\"}")).isEqualTo(FINISHED);
    assertThat(delta(before, after, "outboard_sessions{status=\"waiting\"}")).isEqualTo(1);
    assertThat(delta(before, after, "outboard_sessions{status=\"running\"}")).isZero();
    assertThat(delta(before, after, "outboard_sessions_started_total")).isEqualTo(sessions);
    assertThat(delta(before, after, "outboard_turn_seconds_count")).isGreaterThanOrEqualTo(turns);
    assertThat(delta(before, after, "outboard_turn_seconds_sum")).isPositive();
    assertThat(delta(before, after, "outboard_model_call_seconds_count"))
        .isGreaterThanOrEqualTo(turns);
    // Each session: write /session/plan.md, write and edit /memory/notes/<n>.md, read the plan.
    assertThat(delta(before, after, "outboard_tool_call_seconds_count{tool=\"write\"}"))
        .isEqualTo(2 * sessions);
    assertThat(delta(before, after, "outboard_tool_call_seconds_count{tool=\"edit\"}"))
        .isEqualTo(sessions);
    assertThat(delta(before, after, "outboard_tool_call_seconds_count{tool=\"read\"}"))
        .isEqualTo(sessions);
    assertThat(delta(before, after, "outboard_tool_calls_total{outcome=\"ok\",tool=\"edit\"}"))
        .isEqualTo(sessions);
    assertThat(delta(before, after, "outboard_org_write_seconds_count"))
        .isGreaterThanOrEqualTo(2 * sessions);
    assertThat(delta(before, after, "outboard_org_write_seconds_sum")).isPositive();
    assertThat(delta(before, after, "outboard_org_write_batch_size_count")).isPositive();
    // At least: started, and per turn the answer (with the tools' starts), and the org tools'
    // results.
    assertThat(delta(before, after, "outboard_journal_write_seconds_count"))
        .isGreaterThanOrEqualTo(sessions * (1 + TURNS_EACH));
    assertThat(delta(before, after, "outboard_journal_write_seconds_sum")).isPositive();
    assertThat(value(after, "outboard_shards{type=\"Session\"}")).isPositive();
    assertThat(value(after, "outboard_shards{type=\"OrgMemory\"}")).isPositive();
    assertThat(value(after, "outboard_entities{type=\"Session\"}"))
        .isGreaterThanOrEqualTo(sessions);
    // Every series has its help text.
    String text = scrapeText();
    for (String name :
        List.of(
            "outboard_sessions",
            "outboard_turn_seconds",
            "outboard_tool_call_seconds",
            "outboard_journal_write_seconds",
            "outboard_org_write_seconds",
            "outboard_shards",
            "outboard_entities",
            "outboard_handoffs_total",
            "outboard_session_recoveries_total")) {
      assertThat(text).contains("# HELP " + name + " ").contains("# TYPE " + name + " ");
    }
    beforeShutdown = after;
  }

  @Test
  @Order(2)
  void aNodeThatShutsDownHandsItsSessionsOffAndAnotherRecoversThem() throws Exception {
    if (node == null) throw new TestAbortedException("the first test did not start a node");
    node.close();
    node = null;
    Map<String, Double> down = parse(MetricsRoutes.scrape());
    int live =
        (int)
            (value(beforeShutdown, "outboard_sessions{status=\"completed\"}")
                + value(beforeShutdown, "outboard_sessions{status=\"waiting\"}"));
    // Every live session was stopped by sharding without asking: a hand-off, and out of the gauge.
    assertThat(delta(beforeShutdown, down, "outboard_handoffs_total"))
        .isGreaterThanOrEqualTo(FINISHED + 1);
    assertThat(
            value(down, "outboard_sessions{status=\"completed\"}")
                + value(down, "outboard_sessions{status=\"waiting\"}"))
        .isLessThanOrEqualTo(live - (FINISHED + 1));

    // Remembered entities restart on the next node: they recover there, and count again.
    node = start();
    Map<String, Double> restarted =
        awaitScrape(
            m ->
                delta(down, m, "outboard_session_recoveries_total") >= FINISHED + 1
                    && delta(down, m, "outboard_sessions{status=\"waiting\"}") >= 1);
    assertThat(delta(down, restarted, "outboard_sessions{status=\"completed\"}"))
        .isGreaterThanOrEqualTo(FINISHED);
    assertThat(delta(down, restarted, "outboard_handoffs_total")).isZero();
    awaitStatus(node.client(key), waiting.get(0), "waiting", WAIT);
  }

  // ------------------------------------------------------------------ helpers

  /**
   * Four turns: plan to /session, a note to /memory, an edit of it and a read of the plan, then
   * done.
   */
  private static List<Map<String, Object>> script(int n) {
    String note = "/memory/notes/" + n + ".md";
    return List.of(
        tools(
            "planning",
            0,
            call("write", Map.of("path", "/session/plan.md", "content", "1. note\n2. check\n"))),
        tools(
            "noting", 0, call("write", Map.of("path", note, "content", "note " + n + ": draft\n"))),
        tools(
            "checking",
            0,
            call("edit", Map.of("path", note, "old_string", "draft", "new_string", "final")),
            call("read", Map.of("path", "/session/plan.md"))),
        say("done " + n));
  }

  private String scrapeText() {
    int port = node.system().settings().config().getInt("pekko.management.http.port");
    ApiClient.Response r = new ApiClient("http://127.0.0.1:" + port, null).get("/metrics");
    assertThat(r.status()).as(r.toString()).isEqualTo(200);
    return r.body();
  }

  private Map<String, Double> scrape() {
    return parse(scrapeText().getBytes(StandardCharsets.UTF_8));
  }

  private Map<String, Double> awaitScrape(
      java.util.function.Predicate<Map<String, Double>> condition) {
    long deadline = System.nanoTime() + WAIT.toNanos();
    Map<String, Double> m = scrape();
    while (!condition.test(m)) {
      if (System.nanoTime() > deadline)
        throw new AssertionError("the metrics never got there; last:\n" + outboard(m));
      ScriptedSessions.sleep(100);
      m = scrape();
    }
    return m;
  }

  /** Series (name with labels, as written) to value, from the Prometheus text format. */
  static Map<String, Double> parse(byte[] text) {
    Map<String, Double> series = new HashMap<>();
    for (String line : new String(text, StandardCharsets.UTF_8).split("\n")) {
      if (line.isBlank() || line.startsWith("#")) continue;
      int space = line.lastIndexOf(' ');
      String v = line.substring(space + 1);
      series.put(
          line.substring(0, space),
          switch (v) {
            case "+Inf" -> Double.POSITIVE_INFINITY;
            case "-Inf" -> Double.NEGATIVE_INFINITY;
            case "NaN" -> Double.NaN;
            default -> Double.parseDouble(v);
          });
    }
    return series;
  }

  private static double value(Map<String, Double> m, String series) {
    return m.getOrDefault(series, 0.0);
  }

  private static double delta(
      Map<String, Double> before, Map<String, Double> after, String series) {
    return value(after, series) - value(before, series);
  }

  private static String outboard(Map<String, Double> m) {
    StringBuilder out = new StringBuilder();
    m.entrySet().stream()
        .filter(e -> e.getKey().startsWith("outboard_") && !e.getKey().contains("_bucket"))
        .sorted(Map.Entry.comparingByKey())
        .forEach(e -> out.append(e.getKey()).append(' ').append(e.getValue()).append('\n'));
    return out.toString();
  }
}
