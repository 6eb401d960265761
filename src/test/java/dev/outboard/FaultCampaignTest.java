package dev.outboard;

import static dev.outboard.testing.ScriptedSessions.call;
import static dev.outboard.testing.ScriptedSessions.say;
import static dev.outboard.testing.ScriptedSessions.sleep;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.Response;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.NodeProcess;
import dev.outboard.testing.Ports;
import dev.outboard.testing.PostgresControl;
import dev.outboard.testing.Sandboxes;
import dev.outboard.testing.ScriptedSessions;
import dev.outboard.testing.TestPostgres;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Test;

/**
 * Issue 13's fault campaign: sessions on one harness node (its own JVM, PostgreSQL, the remote
 * sandbox provider) and one sandbox host (its own JVM, real bubblewrap) take random faults — kill
 * -9 of the harness, kill -9 of the sandbox host, kill -9 of one sandbox's process tree, a fast
 * PostgreSQL restart, PostgreSQL paused (SIGSTOP of every server process) for 5 s — and afterwards
 * the journal, the org-file history and each session's workspace must show that nothing ran twice
 * and nothing was lost.
 *
 * <p>Each session plays a seeded script of {@link #TURNS} work turns. A turn does some of: write or
 * read {@code /session/notes.md}; {@code edit} its own {@code /memory/campaign/<name>.md}, adding
 * one unique line before the marker {@code END} (applied twice, the line would be there twice); and
 * {@code bash} appending one unique line {@code <name>:<turn>:<call>} to {@code
 * /workspace/lines.txt} after a short sleep (so that kills land in the middle of commands). Then
 * the session {@code wait}s for the event {@code campaign.over}, which the test sends once every
 * fault is over and every process is back, reads {@code /workspace/lines.txt}, and ends. That read
 * is the workspace's evidence: the host deletes a finished session's workspace, and the wait makes
 * the read happen when nothing is failing, so a failed read is a finding, not noise.
 *
 * <p>The checks, per session, from the event journal ({@code event_journal}, the events as the
 * session recorded them), the org-file tables ({@code org_files}, {@code org_file_versions}) and
 * that final read: the session completed; it never went silent for longer than {@code
 * .stall-seconds} (60; running sessions come back by themselves); no turn recorded twice and every
 * scripted turn recorded; every tool call exactly one result (and no result without its call);
 * every bash line at most once in the file, and exactly once unless its call's result says
 * "interrupted"; every memory edit landed exactly once (one version, the line once in the file; an
 * edit whose result is an error did not land, which counts too); a read of a session file saw the
 * last write before it; the transcript of the API agrees (one result per call); and the org has
 * exactly the sessions created (a retried create did not make a second one). Each violation is
 * printed with its evidence and the faults around it; the test fails if there is any.
 *
 * <p>Defaults are a short run for the suite; {@code loadtest/fault-campaign.sh} runs the long one.
 * System properties: {@code outboard.campaign.sessions}, {@code .faults}, {@code .turns}, {@code
 * .seed}, {@code .report} (a file for the RESULT, FAULT and VIOLATION lines), {@code .gap-ms} (the
 * longest pause between faults), {@code .create-every-ms}, {@code .stall-seconds}, {@code
 * .drain-seconds} (how long to wait for the sessions to finish once the faults are over).
 * PostgreSQL faults need root and {@code pg_ctlcluster} ({@link PostgresControl}); without them
 * those kinds are skipped with a notice, and under {@code CI=true} their absence fails the test.
 */
class FaultCampaignTest {
  private static final int SESSIONS = Integer.getInteger("outboard.campaign.sessions", 8);
  private static final int FAULTS = Integer.getInteger("outboard.campaign.faults", 10);
  private static final int TURNS = Integer.getInteger("outboard.campaign.turns", 6);
  private static final long SEED =
      Long.getLong("outboard.campaign.seed", new SecureRandom().nextLong());
  private static final String REPORT = System.getProperty("outboard.campaign.report", "");
  private static final long GAP_MS = Long.getLong("outboard.campaign.gap-ms", 2500);

  /**
   * Sessions are created this far apart (by default spread over about the time the faults take), so
   * that some run during every fault.
   */
  private static final long CREATE_EVERY_MS =
      Long.getLong("outboard.campaign.create-every-ms", Math.max(300, FAULTS * 4500L / SESSIONS));

  private static final Duration PAUSE = Duration.ofSeconds(5);
  private static final Duration READY = Duration.ofSeconds(120);

  /**
   * A session that records nothing for this long (outside its wait for the campaign's end) did not
   * come back by itself.
   */
  private static final Duration STALL =
      Duration.ofSeconds(Long.getLong("outboard.campaign.stall-seconds", 60));

  private static final Duration DRAIN =
      Duration.ofSeconds(Long.getLong("outboard.campaign.drain-seconds", 240));
  private static final String ORG = "campaign";
  private static final String OVER = "campaign.over";
  private static final Pattern BASH_LINE = Pattern.compile("echo (\\S+) >> /workspace/lines\\.txt");
  private static final Pattern NUMBERED = Pattern.compile("^\\s*\\d+\\t(.*)$");

  enum Kind {
    HARNESS("harness"),
    HOST("host"),
    SANDBOX("sandbox"),
    PG_RESTART("pg_restart"),
    PG_PAUSE("pg_pause");

    final String key;

    Kind(String key) {
      this.key = key;
    }
  }

  /** One injected fault: from the signal until what it broke was back. */
  record Fault(int n, Kind kind, long startMs, long endMs, String detail) {}

  /** A session of the campaign: its script, and its id once created. */
  record Plan(int index, String name, List<Map<String, Object>> turns) {
    String memoryPath() {
      return "/memory/campaign/" + name + ".md";
    }
  }

  /**
   * {@code cause}: what the call's result said, without ids and numbers (for the counts by cause);
   * may be null.
   */
  record Violation(String kind, String session, String call, String evidence, String cause) {}

  private final Random random = new Random(SEED);
  private final List<Fault> faults = new CopyOnWriteArrayList<>();
  private final Map<String, Plan> plans = new ConcurrentHashMap<>(); // by session id
  private final List<String> out = new ArrayList<>();
  private final List<Violation> violations = new ArrayList<>();
  private final List<String> notes = new ArrayList<>();

  /** The journals of the sessions with violations, for the report file. */
  private final List<String> timelines = new ArrayList<>();

  private long t0;
  private NodeProcess harness;
  private NodeProcess host;
  private Path sandboxRoot;
  private ApiClient api;

  @Test
  void sessionsSurviveRandomCrashesAndDatabaseOutagesWithEveryCallOnce() throws Exception {
    Sandboxes.requireBwrap(FaultCampaignTest.class);
    PostgresControl.Availability pgAvailability = PostgresControl.local();
    Optional<PostgresControl> pg = pgAvailability.control();
    List<Kind> kinds = new ArrayList<>(List.of(Kind.HARNESS, Kind.HOST, Kind.SANDBOX));
    if (pg.isPresent()) {
      kinds.addAll(List.of(Kind.PG_RESTART, Kind.PG_PAUSE));
    } else {
      String what =
          "PostgreSQL faults (restart, pause) are not possible here: " + pgAvailability.reason();
      if ("true".equalsIgnoreCase(System.getenv("CI")))
        Assertions.fail(what + "; CI=true, so the campaign must inject every kind");
      System.err.println("*** NOTICE: " + what + "; FaultCampaignTest injects only " + kinds);
    }
    log(
        "seed %d (-Doutboard.campaign.seed=%d repeats this run's scripts and schedule): %d"
            + " sessions, %d work turns, %d faults of %s",
        SEED, SEED, SESSIONS, TURNS, FAULTS, kinds);

    Path root = Files.createTempDirectory("outboard-campaign-");
    // The sandboxes' unprivileged user must be able to reach its workspace below the root.
    Files.setPosixFilePermissions(root, PosixFilePermissions.fromString("rwx--x--x"));
    try (TestPostgres postgres = TestPostgres.create()) {
      try {
        startProcesses(postgres, root);
        campaign(postgres, kinds, pg);
      } catch (AssertionError | Exception e) {
        throw new AssertionError(
            e
                + "\n"
                + (harness == null ? "" : harness.logTails(60))
                + (host == null ? "" : host.logTails(30)),
            e);
      } finally {
        pg.ifPresent(PostgresControl::ensureRunning);
        if (harness != null) harness.close();
        if (host != null) host.close();
        int left = sandboxRoot == null ? 0 : Sandboxes.killProcessesOf(sandboxRoot.toString());
        if (left > 0)
          System.err.println(
              "[campaign] killed " + left + " sandbox processes left after the host stopped");
        InProcessNode.deleteRecursively(root);
      }
    } finally {
      if (pg.isPresent() && !PostgresControl.ready())
        System.err.println(
            "[campaign] WARNING: PostgreSQL is not accepting connections after the campaign");
    }
  }

  // ------------------------------------------------------------------ processes

  private void startProcesses(TestPostgres postgres, Path root) throws Exception {
    byte[] secret = new byte[16];
    new SecureRandom().nextBytes(secret);
    String hostToken = "campaign-host-" + HexFormat.of().formatHex(secret);
    String adminToken = "campaign-admin-" + HexFormat.of().formatHex(secret);
    int[] ports = Ports.free(4);

    // The host's data dir (and so its sandbox root) stays the same across its restarts: the
    // workspaces of the sandboxes it loses survive on disk, as on a real machine.
    Path hostData = Files.createDirectory(root.resolve("host-data"));
    Files.setPosixFilePermissions(hostData, PosixFilePermissions.fromString("rwx--x--x"));
    sandboxRoot = hostData.resolve("sandboxes");
    Map<String, String> hostEnv = new HashMap<>();
    hostEnv.put(
        "OUTBOARD_HTTP_PORT",
        Integer.toString(ports[3])); // NodeProcess's base URL: the host's port
    hostEnv.put("OUTBOARD_SANDBOX_HOST_PORT", Integer.toString(ports[3]));
    hostEnv.put("OUTBOARD_SANDBOX_HOST_TOKEN", hostToken);
    hostEnv.put("OUTBOARD_DATA_DIR", hostData.toString());
    host = new NodeProcess("campaign-host", hostEnv, List.of("serve", "--role", "sandbox-host"));

    Map<String, String> env = new HashMap<>();
    env.put("OUTBOARD_DB_URL", postgres.url());
    env.put("OUTBOARD_DB_USER", postgres.user());
    env.put("OUTBOARD_DB_PASSWORD", "");
    env.put("OUTBOARD_ALLOW_SCRIPTED", "true");
    env.put("OUTBOARD_ADMIN_TOKEN", adminToken);
    env.put("OUTBOARD_HTTP_PORT", Integer.toString(ports[0]));
    env.put("OUTBOARD_MANAGEMENT_PORT", Integer.toString(ports[1]));
    env.put("OUTBOARD_REMOTE_PORT", Integer.toString(ports[2]));
    env.put("OUTBOARD_DATA_DIR", Files.createDirectory(root.resolve("harness-data")).toString());
    env.put("OUTBOARD_SANDBOX_HOST_URL", host.baseUrl());
    env.put("OUTBOARD_SANDBOX_HOST_TOKEN", hostToken);
    // Idle sandboxes freeze soon and are checked often, so that faults also meet frozen sandboxes
    // and a killed idle one is noticed within the run.
    harness =
        new NodeProcess(
            "campaign-harness",
            env,
            List.of(
                "-Doutboard.sandbox.suspend-after=4s",
                "-Doutboard.sandbox.health-check-interval=5s"),
            List.of("serve"));

    t0 = System.currentTimeMillis();
    host.start();
    awaitHost();
    harness.start();
    harness.awaitReady(READY);
    log("harness and sandbox host ready after %d ms", System.currentTimeMillis() - t0);
    api =
        new ApiClient(
            harness.baseUrl(), new ApiClient(harness.baseUrl(), adminToken).createOrgWithKey(ORG));
  }

  private void awaitHost() {
    host.awaitAnswer(host.baseUrl(), "/v1/health", 401, READY);
  }

  // ------------------------------------------------------------------ the campaign

  private void campaign(TestPostgres postgres, List<Kind> kinds, Optional<PostgresControl> pg)
      throws Exception {
    List<Plan> all = new ArrayList<>();
    for (int i = 0; i < SESSIONS; i++) all.add(plan(i));
    for (Plan p : all) {
      Response r =
          api.putText("/v1/files" + p.memoryPath(), "# campaign file of " + p.name() + "\nEND\n");
      assertThat(r.status()).as("create " + p.memoryPath() + ": " + r).isIn(200, 201);
    }
    List<Kind> schedule = schedule(kinds);

    AtomicReference<Throwable> creatorFailure = new AtomicReference<>();
    long createStart = System.currentTimeMillis();
    Thread creator =
        new Thread(
            () -> {
              try {
                // On a fixed timetable: a create slowed down by a fault does not push the later
                // ones back.
                for (Plan p : all) {
                  sleep(
                      Math.max(
                          0,
                          createStart + p.index() * CREATE_EVERY_MS - System.currentTimeMillis()));
                  plans.put(create(p), p);
                }
              } catch (Throwable t) {
                creatorFailure.set(t);
              }
            },
            "campaign-creator");
    creator.start();
    try {
      sleep(1500); // the first sessions are under way
      // A sandbox kill finds no sandbox at times; it goes back into the schedule, so that FAULTS
      // faults happen.
      for (int n = 1, attempts = 0;
          n <= schedule.size() && attempts < 3 * FAULTS && creatorFailure.get() == null;
          attempts++) {
        sleep(200 + (long) (random.nextDouble() * GAP_MS));
        if (inject(n, schedule.get(n - 1), pg)) {
          n++;
        } else {
          Kind later = schedule.remove(n - 1);
          schedule.add(n - 1 + random.nextInt(schedule.size() - n + 2), later);
        }
      }
    } finally {
      // Each create retries for at most 3 minutes.
      creator.join(
          Math.max(0, createStart + SESSIONS * CREATE_EVERY_MS - System.currentTimeMillis())
              + Duration.ofMinutes(4).toMillis());
    }
    if (creatorFailure.get() != null)
      throw new AssertionError(
          "creating sessions failed: " + creatorFailure.get(), creatorFailure.get());
    assertThat(plans).as("sessions created").hasSize(SESSIONS);
    log(
        "%d faults done after %d s; releasing the sessions' final reads",
        faults.size(), (System.currentTimeMillis() - t0) / 1000);

    for (String id : plans.keySet()) release(id);
    Map<String, JsonNode> finals = awaitFinished();
    log(
        "all sessions finished or given up on after %d s; checking",
        (System.currentTimeMillis() - t0) / 1000);

    try (Connection db = postgres.connection()) {
      for (Map.Entry<String, Plan> e : plans.entrySet())
        check(db, e.getKey(), e.getValue(), finals.get(e.getKey()));
    }
    checkNoExtraSessions();
    report();
    assertThat(violations).as("violations (see the VIOLATION lines above)").isEmpty();
  }

  /** Every kind in turn, as evenly as {@link #FAULTS} allows, in a seeded random order. */
  private List<Kind> schedule(List<Kind> kinds) {
    List<Kind> schedule = new ArrayList<>();
    for (int i = 0; i < FAULTS; i++) schedule.add(kinds.get(i % kinds.size()));
    Collections.shuffle(schedule, random);
    return schedule;
  }

  /** Injects fault {@code n}; false if there was nothing to inject it into (no sandbox running). */
  private boolean inject(int n, Kind kind, Optional<PostgresControl> pg) throws Exception {
    long start = System.currentTimeMillis();
    String detail;
    switch (kind) {
      case HARNESS -> {
        harness.kill();
        harness.start();
        harness.awaitReady(READY);
        detail =
            "harness JVM killed, ready again after " + (System.currentTimeMillis() - start) + " ms";
      }
      case HOST -> {
        long pid = host.handle().pid();
        host.kill();
        sleep(300);
        int orphans = orphanSandboxProcesses();
        host.start();
        awaitHost();
        detail =
            "sandbox host JVM (pid "
                + pid
                + ") killed, ready again after "
                + (System.currentTimeMillis() - start)
                + " ms"
                + (orphans > 0 ? "; " + orphans + " sandbox processes outlived it" : "");
        if (orphans > 0)
          notes.add(
              "fault #"
                  + n
                  + ": "
                  + orphans
                  + " sandbox processes outlived the sandbox host's kill -9");
      }
      case SANDBOX -> {
        detail = killOneSandbox();
        if (detail == null) {
          log("fault #%d sandbox: no sandbox process to kill right now; later", n);
          return false;
        }
      }
      case PG_RESTART -> {
        pg.orElseThrow().restart();
        detail =
            "PostgreSQL restarted (-m fast), accepting again after "
                + (System.currentTimeMillis() - start)
                + " ms";
      }
      case PG_PAUSE -> {
        int stopped = pg.orElseThrow().pause(PAUSE);
        detail =
            "PostgreSQL paused ("
                + stopped
                + " processes SIGSTOPped) for "
                + PAUSE.toSeconds()
                + " s";
      }
      default -> throw new IllegalStateException(kind.toString());
    }
    Fault f = new Fault(n, kind, start, System.currentTimeMillis(), detail);
    faults.add(f);
    log("fault #%d %s at +%.1f s: %s", n, kind.key, (start - t0) / 1000.0, detail);
    return true;
  }

  /**
   * kill -9 of one sandbox: a bwrap process tree below the sandbox host, preferably one running a
   * command (a {@code sleep} below it) so that the kill lands in the middle of it. Null if there is
   * none.
   */
  private String killOneSandbox() {
    for (int attempt = 0; attempt < 30; attempt++) {
      List<ProcessHandle> trees =
          host.handle()
              .descendants()
              .filter(p -> isBwrap(p) && p.parent().map(parent -> !isBwrap(parent)).orElse(true))
              .toList();
      if (!trees.isEmpty()) {
        List<ProcessHandle> busy =
            trees.stream()
                .filter(
                    t ->
                        t.descendants()
                            .anyMatch(
                                d ->
                                    d.info()
                                        .command()
                                        .map(c -> c.endsWith("/sleep"))
                                        .orElse(false)))
                .toList();
        List<ProcessHandle> from = busy.isEmpty() ? trees : busy;
        ProcessHandle victim = from.get(random.nextInt(from.size()));
        String sandboxId = victim.info().commandLine().map(this::sandboxIdOf).orElse("?");
        victim.descendants().forEach(ProcessHandle::destroyForcibly);
        victim.destroyForcibly();
        return "sandbox "
            + sandboxId
            + " (bwrap pid "
            + victim.pid()
            + ", "
            + (busy.isEmpty() ? "idle" : "running a command")
            + ") killed; "
            + trees.size()
            + " sandboxes were running";
      }
      sleep(100);
    }
    return null;
  }

  private static boolean isBwrap(ProcessHandle p) {
    return p.info().command().map(c -> c.endsWith("/bwrap")).orElse(false);
  }

  private String sandboxIdOf(String commandLine) {
    Matcher m =
        Pattern.compile(Pattern.quote(sandboxRoot.toString()) + "/(sbx-[0-9a-f]+)")
            .matcher(commandLine);
    return m.find() ? m.group(1) : "?";
  }

  /**
   * Processes of sandboxes (their command lines name the sandbox root) that no longer have the host
   * above them.
   */
  private int orphanSandboxProcesses() {
    return (int)
        ProcessHandle.allProcesses()
            .filter(
                p ->
                    p.info()
                        .commandLine()
                        .map(c -> c.contains(sandboxRoot.toString()))
                        .orElse(false))
            .count();
  }

  // ------------------------------------------------------------------ sessions

  /**
   * A seeded script: {@link #TURNS} work turns, then wait for {@link #OVER}, read the workspace's
   * lines, and end.
   */
  private Plan plan(int index) {
    String name = String.format("c%02d", index);
    String memory = "/memory/campaign/" + name + ".md";
    List<Map<String, Object>> turns = new ArrayList<>();
    boolean edited = false;
    boolean bashed = false;
    boolean noteWritten = false;
    for (int turn = 1; turn <= TURNS; turn++) {
      List<Map<String, Object>> calls = new ArrayList<>();
      boolean last = turn == TURNS;
      if (random.nextDouble() < 0.5) {
        if (noteWritten && random.nextBoolean()) {
          calls.add(call("read", Map.of("path", "/session/notes.md")));
        } else {
          calls.add(
              call(
                  "write",
                  Map.of(
                      "path",
                      "/session/notes.md",
                      "content",
                      name + " note of turn " + turn + "\n")));
          noteWritten = true;
        }
      }
      if (random.nextDouble() < 0.5 || (last && !edited)) {
        calls.add(
            call(
                "edit",
                Map.of(
                    "path",
                    memory,
                    "old_string",
                    "END",
                    "new_string",
                    name + ":t" + turn + ":mem\nEND")));
        edited = true;
      }
      if (random.nextDouble() < 0.7 || calls.isEmpty() || (last && !bashed)) {
        String line = name + ":" + turn + ":" + calls.size();
        double sleepS = 0.2 + random.nextInt(12) / 10.0;
        calls.add(
            call(
                "bash",
                Map.of(
                    "command",
                    String.format(
                        "sleep %.1f; echo %s >> /workspace/lines.txt; echo appended %s",
                        sleepS, line, line),
                    "timeout_ms",
                    60000)));
        bashed = true;
      }
      turns.add(toolsTurn("turn " + turn, 50 + random.nextInt(350), calls));
    }
    turns.add(
        toolsTurn(
            "waiting for the campaign to end",
            0,
            List.of(call("wait", Map.of("event", OVER, "timeoutSeconds", 3600)))));
    turns.add(
        toolsTurn(
            "reading the workspace",
            0,
            List.of(call("read", Map.of("path", "/workspace/lines.txt")))));
    turns.add(say("done " + name));
    return new Plan(index, name, turns);
  }

  private static Map<String, Object> toolsTurn(
      String text, long latencyMs, List<Map<String, Object>> calls) {
    return Map.of("text", text, "toolCalls", calls, "latencyMs", latencyMs);
  }

  /**
   * Creates the session, retrying with the same idempotency key while the harness or the database
   * is away.
   */
  private String create(Plan p) {
    Map<String, Object> body =
        new LinkedHashMap<>(ScriptedSessions.body(p.name(), false, p.turns()));
    body.put("metadata", Map.of("campaign", p.name()));
    String key = "campaign-" + SEED + "-" + p.index();
    long deadline = System.nanoTime() + Duration.ofMinutes(3).toNanos();
    String last = "";
    while (System.nanoTime() < deadline) {
      try {
        Response r = api.post("/v1/sessions", body, "Idempotency-Key", key);
        if (r.status() == 201 || r.status() == 200) return r.json().path("id").asText();
        last = r.toString();
        if (r.status() < 500) throw new AssertionError("create session " + p.name() + ": " + r);
      } catch (UncheckedIOException | AssertionError e) {
        if (e instanceof AssertionError && !e.getMessage().contains("did not complete")) throw e;
        last = e.toString();
      }
      sleep(250);
    }
    throw new AssertionError(
        "could not create session " + p.name() + " within 3 minutes; last: " + last);
  }

  /**
   * Sends {@link #OVER} to a session (queued if it does not wait yet); 409: it already finished.
   */
  private void release(String id) {
    for (int attempt = 0; attempt < 60; attempt++) {
      try {
        Response r =
            api.post(
                "/v1/sessions/" + id + "/events/" + OVER, Map.of("at", System.currentTimeMillis()));
        if (r.status() == 202 || r.status() == 409) return;
        log("event for %s: %s (retrying)", id, r);
      } catch (UncheckedIOException | AssertionError e) {
        log("event for %s: %s (retrying)", id, e);
      }
      sleep(500);
    }
    throw new AssertionError("could not send " + OVER + " to " + id);
  }

  /** Waits (up to {@link #DRAIN}) until no session runs or waits; the last view of each. */
  private Map<String, JsonNode> awaitFinished() {
    long deadline = System.nanoTime() + DRAIN.toNanos();
    Map<String, JsonNode> last = new HashMap<>();
    while (true) {
      boolean allDone = true;
      for (String id : plans.keySet()) {
        JsonNode seen = last.get(id);
        if (seen != null && terminal(seen)) continue;
        try {
          Response r = api.get("/v1/sessions/" + id);
          if (r.status() == 200) last.put(id, r.json());
        } catch (UncheckedIOException | AssertionError e) {
          // asked again below
        }
        if (last.get(id) == null || !terminal(last.get(id))) allDone = false;
      }
      if (allDone || System.nanoTime() > deadline) return last;
      sleep(500);
    }
  }

  private static boolean terminal(JsonNode s) {
    return List.of("completed", "failed", "cancelled").contains(s.path("status").asText());
  }

  // ------------------------------------------------------------------ the checks

  /** One durable event of a session, as the journal has it. */
  record Written(long seq, long atMs, String type, JsonNode event) {}

  private int toolCalls;
  private int bashCalls;
  private int interrupted;
  private int interruptedRan;
  private int interruptedNoSandboxFault;
  private int memoryEdits;

  private void check(Connection db, String id, Plan plan, JsonNode last) throws SQLException {
    String who = plan.name() + " (" + id + ")";
    List<Written> journal = journal(db, id);
    int before = violations.size();
    int notesBefore = notes.size();
    checkSession(db, id, plan, last, who, journal);
    if (violations.size() > before || notes.size() > notesBefore) {
      for (Written w : journal) {
        timelines.add(
            String.format(
                "JOURNAL %s seq=%d at=+%.1fs %s %s",
                plan.name(), w.seq(), (w.atMs() - t0) / 1000.0, w.type(), brief(summary(w))));
      }
    }
  }

  /**
   * The part of an event that tells what happened: the call and its result, the turn and its calls,
   * the state.
   */
  private static String summary(Written w) {
    JsonNode e = w.event();
    return switch (w.type()) {
      case "ModelResponded" ->
          "turn "
              + e.path("turn").asInt()
              + " calls "
              + java.util.stream.StreamSupport.stream(e.path("content").spliterator(), false)
                  .filter(b -> b.path("type").asText().equals("tool_use"))
                  .map(b -> b.path("id").asText() + ":" + b.path("name").asText())
                  .collect(Collectors.joining(","));
      case "ToolCallStarted" -> e.path("callId").asText() + " " + e.path("name").asText();
      case "ToolCallCompleted" ->
          e.path("callId").asText()
              + (e.path("isError").asBoolean() ? " (error) " : " ")
              + e.path("content").asText();
      case "SandboxChanged" -> e.path("state").asText();
      case "SandboxReplaced" -> e.path("oldId").asText() + " -> " + e.path("newId").asText();
      case "SandboxAttached" -> e.path("sandboxId").asText();
      default -> "";
    };
  }

  private void checkSession(
      Connection db, String id, Plan plan, JsonNode last, String who, List<Written> journal)
      throws SQLException {

    // Every session completed.
    String status = last == null ? "unknown" : last.path("status").asText();
    long completedEvents =
        journal.stream().filter(w -> w.type().equals("SessionCompleted")).count();
    if (!status.equals("completed") || completedEvents != 1) {
      String why =
          journal.stream()
              .filter(w -> w.type().equals("SessionFailed"))
              .map(w -> w.event().toString())
              .findFirst()
              .orElse("");
      violation(
          "session_not_completed",
          who,
          null,
          "status "
              + status
              + ", "
              + completedEvents
              + " SessionCompleted events"
              + (why.isEmpty() ? "" : "; " + why)
              + (last == null ? "" : "; error " + last.path("error"))
              + around(lastMs(journal), lastMs(journal)));
    }

    // Running sessions come back by themselves: no long silence in the journal, except while
    // waiting for the campaign's end.
    // (A waiting session's sandbox still freezes and hibernates: those events come inside the
    // wait.)
    boolean waiting = false;
    for (int i = 1; i < journal.size(); i++) {
      Written prev = journal.get(i - 1);
      Written next = journal.get(i);
      if (prev.type().equals("WaitStarted")) waiting = true;
      if (prev.type().equals("EventReceived") || prev.type().equals("ToolCallCompleted"))
        waiting = false;
      if (waiting || next.atMs() - prev.atMs() <= STALL.toMillis()) continue;
      violation(
          "session_stalled",
          who,
          null,
          String.format(
                  "no event for %.1f s between seq %d (%s %s) and seq %d (%s)",
                  (next.atMs() - prev.atMs()) / 1000.0,
                  prev.seq(),
                  prev.type(),
                  brief(summary(prev)),
                  next.seq(),
                  next.type())
              + around(prev.atMs(), next.atMs()));
    }

    // No turn twice, and every scripted turn once.
    Map<Integer, List<Written>> responses = new LinkedHashMap<>();
    Map<String, JsonNode> uses = new LinkedHashMap<>(); // tool_use id -> block
    Map<String, Long> askedAt = new HashMap<>();
    for (Written w : journal) {
      if (!w.type().equals("ModelResponded")) continue;
      responses.computeIfAbsent(w.event().path("turn").asInt(), t -> new ArrayList<>()).add(w);
      for (JsonNode b : w.event().path("content")) {
        if (!b.path("type").asText().equals("tool_use")) continue;
        if (uses.putIfAbsent(b.path("id").asText(), b) == null)
          askedAt.put(b.path("id").asText(), w.atMs());
      }
    }
    responses.forEach(
        (turn, ws) -> {
          if (ws.size() > 1) {
            violation(
                "turn_twice",
                who,
                "turn " + turn,
                ws.size()
                    + " ModelResponded events for turn "
                    + turn
                    + " at seq "
                    + ws.stream().map(w -> Long.toString(w.seq())).collect(Collectors.joining(", "))
                    + around(ws.get(0).atMs(), ws.get(ws.size() - 1).atMs()));
          }
        });
    if (status.equals("completed") && responses.size() != plan.turns().size()) {
      violation(
          "turn_count",
          who,
          null,
          responses.size() + " turns recorded, the script has " + plan.turns().size());
    }

    // Every tool call exactly one result.
    Map<String, List<Written>> results = new LinkedHashMap<>();
    for (Written w : journal) {
      if (w.type().equals("ToolCallCompleted"))
        results.computeIfAbsent(w.event().path("callId").asText(), c -> new ArrayList<>()).add(w);
    }
    toolCalls += uses.size();
    for (String callId : uses.keySet()) {
      int n = results.getOrDefault(callId, List.of()).size();
      if (n != 1) {
        violation(
            "tool_results",
            who,
            callId,
            uses.get(callId).path("name").asText()
                + " call has "
                + n
                + " ToolCallCompleted events"
                + (n > 1
                    ? ": "
                        + results.get(callId).stream()
                            .map(
                                w ->
                                    "seq "
                                        + w.seq()
                                        + " "
                                        + brief(w.event().path("content").asText()))
                            .collect(Collectors.joining(" | "))
                    : "")
                + around(askedAt.get(callId), lastMs(journal)));
      }
    }
    for (String callId : results.keySet()) {
      if (!uses.containsKey(callId))
        violation(
            "tool_result_without_call",
            who,
            callId,
            "a ToolCallCompleted for a call the model never asked for");
    }
    Map<String, Integer> transcriptResults = transcriptResults(id);
    if (transcriptResults != null) {
      for (String callId : uses.keySet()) {
        int n = transcriptResults.getOrDefault(callId, 0);
        if (n != 1 && status.equals("completed"))
          violation(
              "transcript_results", who, callId, "the API transcript has " + n + " results for it");
      }
    }

    // The workspace: the final read of /workspace/lines.txt.
    List<String> lines = null;
    String finalRead =
        uses.entrySet().stream()
            .filter(
                e ->
                    e.getValue().path("name").asText().equals("read")
                        && e.getValue()
                            .path("input")
                            .path("path")
                            .asText()
                            .equals("/workspace/lines.txt"))
            .map(Map.Entry::getKey)
            .reduce((a, b) -> b)
            .orElse(null);
    if (finalRead != null && results.containsKey(finalRead)) {
      JsonNode r = results.get(finalRead).get(0).event();
      if (!r.path("isError").asBoolean()) {
        lines = new ArrayList<>();
        for (String l : r.path("content").asText().split("\n")) {
          Matcher m = NUMBERED.matcher(l);
          if (m.matches()) lines.add(m.group(1));
        }
      } else if (r.path("content")
          .asText()
          .matches("(?is).*(not found|no such file|does not exist).*")) {
        lines = List.of();
      } else {
        violation(
            "final_read_failed",
            who,
            finalRead,
            "reading /workspace/lines.txt after every fault was over: "
                + brief(r.path("content").asText())
                + around(askedAt.get(finalRead), results.get(finalRead).get(0).atMs()),
            r.path("content").asText());
      }
    } else if (status.equals("completed")) {
      violation("final_read_failed", who, finalRead, "no result of the final read");
    }

    // Every bash line at most once, and exactly once unless its result says "interrupted".
    Map<String, String> expected = new HashMap<>();
    for (Map.Entry<String, JsonNode> e : uses.entrySet()) {
      if (!e.getValue().path("name").asText().equals("bash")) continue;
      bashCalls++;
      Matcher m = BASH_LINE.matcher(e.getValue().path("input").path("command").asText());
      if (!m.find()) continue;
      String line = m.group(1);
      expected.put(line, e.getKey());
      List<Written> rs = results.getOrDefault(e.getKey(), List.of());
      String content = rs.isEmpty() ? null : rs.get(0).event().path("content").asText();
      boolean isError = !rs.isEmpty() && rs.get(0).event().path("isError").asBoolean();
      boolean wasInterrupted = content != null && content.contains("interrupted");
      if (wasInterrupted) interrupted++;
      if (lines == null) continue;
      long count = lines.stream().filter(line::equals).count();
      if (wasInterrupted && count == 1) interruptedRan++;
      if (wasInterrupted
          && !sandboxFaultAround(
              askedAt.get(e.getKey()), rs.isEmpty() ? lastMs(journal) : rs.get(0).atMs()))
        interruptedNoSandboxFault++;
      long completedAt = rs.isEmpty() ? lastMs(journal) : rs.get(0).atMs();
      String context =
          "result "
              + (content == null
                  ? "none"
                  : (isError ? "(error) " : "") + "'" + brief(content) + "'")
              + sandboxEvents(journal, askedAt.get(e.getKey()), completedAt)
              + around(askedAt.get(e.getKey()), completedAt);
      if (count > 1) {
        violation(
            "bash_line_twice",
            who,
            e.getKey(),
            "line " + line + " is " + count + " times in /workspace/lines.txt; " + context,
            content);
      } else if (count == 0 && !wasInterrupted && isError) {
        violation(
            "bash_failed_not_run",
            who,
            e.getKey(),
            "line " + line + " is not in /workspace/lines.txt; " + context,
            content);
      } else if (count == 0 && !wasInterrupted) {
        violation(
            "bash_line_missing",
            who,
            e.getKey(),
            "line "
                + line
                + " is not in /workspace/lines.txt, though its call succeeded; "
                + context,
            content);
      } else if (wasInterrupted) {
        notes.add(
            "interrupted: "
                + who
                + " "
                + e.getKey()
                + " line "
                + line
                + (count == 1 ? " is in the file (it ran)" : " is not in the file")
                + "; "
                + context);
      }
    }
    if (lines != null) {
      for (String l : lines) {
        if (!expected.containsKey(l))
          violation(
              "bash_line_unknown",
              who,
              null,
              "/workspace/lines.txt has the line '" + l + "', which no call of this session wrote");
      }
    }

    // Every memory edit landed exactly once.
    String memory = memoryContent(db, plan);
    for (Map.Entry<String, JsonNode> e : uses.entrySet()) {
      if (!e.getValue().path("name").asText().equals("edit")) continue;
      memoryEdits++;
      String line = e.getValue().path("input").path("new_string").asText().replace("\nEND", "");
      long inFile = memory == null ? 0 : memory.lines().filter(line::equals).count();
      int versions = versionsOf(db, id, e.getKey());
      List<Written> rs = results.getOrDefault(e.getKey(), List.of());
      boolean isError = !rs.isEmpty() && rs.get(0).event().path("isError").asBoolean();
      String content = rs.isEmpty() ? "none" : rs.get(0).event().path("content").asText();
      long completedAt = rs.isEmpty() ? lastMs(journal) : rs.get(0).atMs();
      String context =
          "result "
              + (isError ? "(error) " : "")
              + "'"
              + brief(content)
              + "'; "
              + inFile
              + " times in the file, "
              + versions
              + " versions by this call"
              + around(askedAt.get(e.getKey()), completedAt);
      if (inFile > 1 || versions > 1)
        violation("memory_edit_twice", who, e.getKey(), "line " + line + ": " + context, content);
      else if (isError && (inFile > 0 || versions > 0))
        violation(
            "memory_edit_error_but_landed",
            who,
            e.getKey(),
            "line " + line + ": " + context,
            content);
      else if (isError)
        violation(
            "memory_edit_failed",
            who,
            e.getKey(),
            "line " + line + " did not land: " + context,
            content);
      else if (inFile == 0 || versions == 0)
        violation("memory_edit_lost", who, e.getKey(), "line " + line + ": " + context, content);
    }
    if (memory != null && memory.lines().filter("END"::equals).count() != 1) {
      violation(
          "memory_marker",
          who,
          null,
          "the END marker is "
              + memory.lines().filter("END"::equals).count()
              + " times in "
              + plan.memoryPath());
    }

    // A read of /session/notes.md sees the last write before it; session-file calls do not fail.
    String lastNote = null;
    for (Map.Entry<String, JsonNode> e : uses.entrySet()) {
      JsonNode input = e.getValue().path("input");
      if (!input.path("path").asText().equals("/session/notes.md")) continue;
      List<Written> rs = results.getOrDefault(e.getKey(), List.of());
      if (rs.isEmpty()) continue;
      JsonNode r = rs.get(0).event();
      if (r.path("isError").asBoolean()) {
        violation(
            "session_file_error",
            who,
            e.getKey(),
            e.getValue().path("name").asText()
                + " /session/notes.md failed: "
                + brief(r.path("content").asText()),
            r.path("content").asText());
      } else if (e.getValue().path("name").asText().equals("write")) {
        lastNote = input.path("content").asText().strip();
      } else if (lastNote != null && !r.path("content").asText().contains(lastNote)) {
        violation(
            "session_file_stale",
            who,
            e.getKey(),
            "read /session/notes.md gave '"
                + brief(r.path("content").asText())
                + "', the last write was '"
                + lastNote
                + "'");
      }
    }
  }

  private static List<Written> journal(Connection db, String id) throws SQLException {
    List<Written> out = new ArrayList<>();
    try (PreparedStatement ps =
        db.prepareStatement(
            "SELECT sequence_number, write_timestamp, event_ser_manifest, event_payload FROM"
                + " event_journal WHERE persistence_id = ? AND NOT deleted ORDER BY"
                + " sequence_number")) {
      ps.setString(1, "Session|" + id);
      try (ResultSet rs = ps.executeQuery()) {
        while (rs.next()) {
          String manifest = rs.getString(3);
          String type =
              manifest.substring(
                  Math.max(manifest.lastIndexOf('$'), manifest.lastIndexOf('.')) + 1);
          JsonNode event;
          try {
            event = Json.MAPPER.readTree(new String(rs.getBytes(4), StandardCharsets.UTF_8));
          } catch (IOException e) {
            throw new AssertionError(
                "journal event " + id + "#" + rs.getLong(1) + " (" + manifest + ") is not JSON", e);
          }
          out.add(new Written(rs.getLong(1), rs.getLong(2), type, event));
        }
      }
    }
    return out;
  }

  private static long lastMs(List<Written> journal) {
    return journal.isEmpty() ? System.currentTimeMillis() : journal.get(journal.size() - 1).atMs();
  }

  private static String memoryContent(Connection db, Plan plan) throws SQLException {
    try (PreparedStatement ps =
        db.prepareStatement(
            "SELECT content FROM org_files WHERE org_id = ? AND namespace = 'memory' AND path ="
                + " ?")) {
      ps.setString(1, ORG);
      ps.setString(2, plan.memoryPath().substring("/memory/".length()));
      try (ResultSet rs = ps.executeQuery()) {
        return rs.next() ? rs.getString(1) : null;
      }
    }
  }

  /** Versions of org files written by the call (its session and call id). */
  private static int versionsOf(Connection db, String sessionId, String callId)
      throws SQLException {
    try (PreparedStatement ps =
        db.prepareStatement(
            "SELECT count(*) FROM org_file_versions WHERE session_id = ? AND call_id = ?")) {
      ps.setString(1, sessionId);
      ps.setString(2, callId);
      try (ResultSet rs = ps.executeQuery()) {
        rs.next();
        return rs.getInt(1);
      }
    }
  }

  /** Results per tool_use id in the API's transcript; null if it could not be read. */
  private Map<String, Integer> transcriptResults(String id) {
    try {
      Response r = api.get("/v1/sessions/" + id + "/transcript?full=true");
      if (r.status() != 200) return null;
      Map<String, Integer> counts = new HashMap<>();
      for (JsonNode m : r.json().path("messages")) {
        for (JsonNode b : m.path("content")) {
          if (b.path("type").asText().equals("tool_result"))
            counts.merge(b.path("toolUseId").asText(), 1, Integer::sum);
        }
      }
      return counts;
    } catch (UncheckedIOException e) {
      return null;
    }
  }

  /** The org has exactly the sessions the campaign created: a retried create made no second one. */
  private void checkNoExtraSessions() {
    List<String> ids = new ArrayList<>();
    String cursor = null;
    do {
      Response r = api.get("/v1/sessions?limit=100" + (cursor == null ? "" : "&cursor=" + cursor));
      assertThat(r.status()).as(r.toString()).isEqualTo(200);
      r.json().path("sessions").forEach(s -> ids.add(s.path("id").asText()));
      cursor = r.json().path("next").isTextual() ? r.json().path("next").asText() : null;
    } while (cursor != null && !cursor.isEmpty());
    for (String id : ids) {
      if (!plans.containsKey(id))
        violation(
            "session_extra",
            id,
            null,
            "the org has a session the campaign did not get back from a create");
    }
    if (ids.size() != plans.size())
      log("sessions listed: %d, created: %d", ids.size(), plans.size());
  }

  /** The sandbox events a session recorded between two moments (replacements and state changes). */
  private static String sandboxEvents(List<Written> journal, Long fromMs, long toMs) {
    long from = fromMs == null ? 0 : fromMs;
    String events =
        journal.stream()
            .filter(
                w ->
                    w.atMs() >= from
                        && w.atMs() <= toMs
                        && (w.type().equals("SandboxReplaced")
                            || w.type().equals("SandboxChanged")))
            .map(
                w ->
                    w.type().equals("SandboxReplaced")
                        ? "replaced "
                            + w.event().path("oldId").asText()
                            + "->"
                            + w.event().path("newId").asText()
                        : w.event().path("state").asText())
            .collect(Collectors.joining(", "));
    return events.isEmpty() ? "" : "; sandbox meanwhile: " + events;
  }

  /** Whether a kill of the sandbox host or of a sandbox happened during [from - 2 s, to]. */
  private boolean sandboxFaultAround(Long fromMs, long toMs) {
    long from = (fromMs == null ? toMs : fromMs) - 2000;
    return faults.stream()
        .anyMatch(
            f ->
                (f.kind() == Kind.HOST || f.kind() == Kind.SANDBOX)
                    && f.endMs() >= from
                    && f.startMs() <= toMs);
  }

  /** The faults during [from - 2 s, to], or else the last one before {@code to}. */
  private String around(Long fromMs, long toMs) {
    long from = (fromMs == null ? toMs : fromMs) - 2000;
    List<Fault> during =
        faults.stream().filter(f -> f.endMs() >= from && f.startMs() <= toMs).toList();
    if (during.isEmpty()) {
      during =
          faults.stream()
              .filter(f -> f.startMs() <= toMs)
              .reduce((a, b) -> b)
              .map(List::of)
              .orElse(List.of());
      if (during.isEmpty()) return "; no fault before it";
      return "; last fault before it: " + describe(during.get(0), toMs);
    }
    return "; faults around it: "
        + during.stream().map(f -> describe(f, toMs)).collect(Collectors.joining("; "));
  }

  private String describe(Fault f, long refMs) {
    return "#"
        + f.n()
        + " "
        + f.kind().key
        + " at +"
        + String.format("%.1f", (f.startMs() - t0) / 1000.0)
        + " s ("
        + (refMs - f.startMs())
        + " ms before the call's last event)";
  }

  private static String brief(String s) {
    if (s == null) return "";
    String one = s.replace("\n", "\\n");
    return one.length() > 160 ? one.substring(0, 160) + "..." : one;
  }

  private void violation(String kind, String session, String call, String evidence) {
    violations.add(new Violation(kind, session, call, evidence, null));
  }

  private void violation(String kind, String session, String call, String evidence, String result) {
    violations.add(new Violation(kind, session, call, evidence, cause(result)));
  }

  /**
   * A result without sandbox ids, ports and numbers, cut short: violations with the same cause
   * count together.
   */
  private static String cause(String result) {
    if (result == null) return "no result";
    String c =
        result
            .replaceAll("sbx-[0-9a-f]+", "sbx-*")
            .replaceAll("s_[0-9a-f]+", "s_*")
            .replaceAll(":\\d+", ":*")
            .replaceAll("\\d+", "N")
            .replace("\n", " ");
    return c.length() > 90 ? c.substring(0, 90) + "..." : c;
  }

  // ------------------------------------------------------------------ the report

  private void report() throws IOException {
    Map<Kind, Integer> byKind = new EnumMap<>(Kind.class);
    for (Kind k : Kind.values()) byKind.put(k, 0);
    faults.forEach(f -> byKind.merge(f.kind(), 1, Integer::sum));
    out.add(
        String.format(
            "RESULT campaign faults_harness=%d faults_host=%d faults_sandbox=%d"
                + " faults_pg_restart=%d faults_pg_pause=%d sessions=%d tool_calls=%d bash_calls=%d"
                + " interrupted=%d memory_edits=%d violations=%d interrupted_ran=%d"
                + " interrupted_no_sandbox_fault=%d seed=%d",
            byKind.get(Kind.HARNESS),
            byKind.get(Kind.HOST),
            byKind.get(Kind.SANDBOX),
            byKind.get(Kind.PG_RESTART),
            byKind.get(Kind.PG_PAUSE),
            plans.size(),
            toolCalls,
            bashCalls,
            interrupted,
            memoryEdits,
            violations.size(),
            interruptedRan,
            interruptedNoSandboxFault,
            SEED));
    Map<String, Long> kinds =
        violations.stream()
            .collect(
                Collectors.groupingBy(
                    Violation::kind, java.util.TreeMap::new, Collectors.counting()));
    if (!kinds.isEmpty()) {
      out.add(
          "RESULT campaign_violations "
              + kinds.entrySet().stream()
                  .map(e -> e.getKey() + "=" + e.getValue())
                  .collect(Collectors.joining(" ")));
    }
    violations.stream()
        .filter(v -> v.cause() != null)
        .collect(
            Collectors.groupingBy(
                v -> v.kind() + ": " + v.cause(), java.util.TreeMap::new, Collectors.counting()))
        .forEach((cause, n) -> out.add("CAUSE " + n + " x " + cause));
    for (Fault f : faults) {
      out.add(
          String.format(
              "FAULT #%d %s at=+%.1fs took_ms=%d %s",
              f.n(),
              f.kind().key,
              (f.startMs() - t0) / 1000.0,
              f.endMs() - f.startMs(),
              f.detail()));
    }
    for (Violation v : violations) {
      out.add(
          "VIOLATION "
              + v.kind()
              + " session="
              + v.session()
              + (v.call() == null ? "" : " call=" + v.call())
              + " "
              + v.evidence());
    }
    for (String n : notes) out.add("NOTE " + n);
    out.addAll(harnessLogFindings());
    out.forEach(l -> System.err.println("[campaign] " + l));
    if (!REPORT.isEmpty()) {
      List<String> file = new ArrayList<>(out);
      file.addAll(timelines);
      Files.write(Path.of(REPORT), file, StandardCharsets.UTF_8);
    } else if (!timelines.isEmpty()) {
      timelines.forEach(l -> System.err.println("[campaign] " + l));
    }
  }

  private static final Pattern RECOVERED = Pattern.compile("recovered at event \\d+ in (\\d+) ms");

  /**
   * What the harness logged that explains violations: failed journal writes and slow recoveries.
   */
  private List<String> harnessLogFindings() {
    int failedPersists = 0;
    long recoveries = 0;
    long slowest = 0;
    for (Path log : harness.logs()) {
      List<String> lines;
      try {
        lines = Files.readAllLines(log, StandardCharsets.UTF_8);
      } catch (IOException e) {
        continue;
      }
      for (String l : lines) {
        if (l.contains("Failed to persist event")) failedPersists++;
        Matcher m = RECOVERED.matcher(l);
        if (m.find()) {
          recoveries++;
          slowest = Math.max(slowest, Long.parseLong(m.group(1)));
        }
      }
    }
    return List.of(
        String.format(
            "RESULT campaign_harness_log failed_persists=%d session_recoveries=%d"
                + " slowest_recovery_ms=%d logs=%s",
            failedPersists,
            recoveries,
            slowest,
            harness.logs().stream()
                .map(p -> p.getFileName().toString())
                .collect(Collectors.joining(","))));
  }

  private void log(String format, Object... args) {
    System.err.printf("[campaign] " + format + "%n", args);
  }
}
