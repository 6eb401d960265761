package dev.outboard.sandbox;

import static dev.outboard.testing.ScriptedSessions.await;
import static dev.outboard.testing.ScriptedSessions.awaitStatus;
import static dev.outboard.testing.ScriptedSessions.body;
import static dev.outboard.testing.ScriptedSessions.call;
import static dev.outboard.testing.ScriptedSessions.create;
import static dev.outboard.testing.ScriptedSessions.say;
import static dev.outboard.testing.ScriptedSessions.toolCalls;
import static dev.outboard.testing.ScriptedSessions.tools;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.Sandboxes;
import dev.outboard.testing.ScriptedSessions.ToolCall;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Sessions with sandboxes, end to end over the API on an embedded node with the real bubblewrap
 * provider and short idle timers: provisioning on first use only, shell state across bash calls,
 * suspend / hibernate / resume (with sessions that would passivate sooner), and replacement after
 * the sandbox's processes are killed. Skipped (with a notice) where bwrap is missing, except under
 * CI=true.
 */
class SandboxSessionTest {
  static final Duration WAIT = Duration.ofSeconds(30);
  static InProcessNode node;
  static ApiClient api;

  @BeforeAll
  static void start() throws Exception {
    Sandboxes.requireBwrap(SandboxSessionTest.class);
    // Sessions passivate when idle sooner than their sandboxes freeze: a session whose sandbox
    // still has processes must stay until it is hibernated (or nothing would ever hibernate it).
    node =
        InProcessNode.start(
            "",
            Map.of(
                "outboard.session.passivate-after", "250ms",
                "outboard.sandbox.suspend-after", "400ms",
                "outboard.sandbox.hibernate-after", "1200ms"));
    api = node.client(node.admin().createOrgWithKey("sbx"));
  }

  @AfterAll
  static void stop() {
    if (node != null) node.close();
  }

  @Test
  void aSessionThatNeverTouchesTheWorkspaceNeverGetsASandbox() {
    String id =
        create(
            api,
            body(
                "ann",
                false,
                List.of(
                    tools(
                        "plan",
                        0,
                        call("write", Map.of("path", "/session/plan.md", "content", "- ship\n"))),
                    tools(
                        "search",
                        0,
                        call("grep", Map.of("pattern", "ship")),
                        call("glob", Map.of("pattern", "**"))),
                    say("done"))));
    JsonNode done = awaitStatus(api, id, "completed", WAIT);
    assertThat(done.path("sandbox").path("state").asText()).isEqualTo("none");
    // A search over / does not start a sandbox either.
    assertThat(toolCalls(api, id).get(1).content()).isEqualTo("/session/plan.md:1:- ship");
    List<ApiClient.SseEvent> events = api.events("/v1/sessions/" + id + "/events", WAIT);
    assertThat(events).noneMatch(e -> "sandbox.changed".equals(e.event()));
  }

  @Test
  void filesAndShellStatePersistAcrossCallsAndTheSandboxIsDestroyedAtTheEnd() {
    String id =
        create(
            api,
            body(
                "bob",
                false,
                List.of(
                    tools(
                        "write",
                        0,
                        call(
                            "write",
                            Map.of("path", "/workspace/notes.txt", "content", "hello sandbox\n"))),
                    tools(
                        "cd",
                        0,
                        call(
                            "bash",
                            Map.of(
                                "command", "mkdir -p sub && cd sub && export GREETING=hi-there"))),
                    tools(
                        "check",
                        0,
                        call(
                            "bash",
                            Map.of(
                                "command",
                                "pwd; echo $GREETING; cat ../notes.txt",
                                "timeout_ms",
                                10000))),
                    tools("read", 0, call("read", Map.of("path", "/workspace/notes.txt"))),
                    tools(
                        "edit",
                        0,
                        call(
                            "edit",
                            Map.of(
                                "path",
                                "/workspace/notes.txt",
                                "old_string",
                                "hello",
                                "new_string",
                                "bye"))),
                    tools(
                        "ls",
                        0,
                        call("ls", Map.of("path", "/workspace")),
                        call("glob", Map.of("pattern", "**/*.txt", "path", "/workspace")),
                        call("grep", Map.of("pattern", "bye", "path", "/workspace"))),
                    say("done"))));
    awaitStatus(api, id, "completed", WAIT);
    List<ToolCall> calls = toolCalls(api, id);
    assertThat(calls)
        .hasSize(8)
        .allSatisfy(c -> assertThat(c.isError()).as(c.toString()).isFalse());
    assertThat(calls.get(0).content()).isEqualTo("wrote /workspace/notes.txt (14 bytes)");
    assertThat(calls.get(2).content()).contains("/workspace/sub", "hi-there", "hello sandbox");
    assertThat(calls.get(3).content()).contains("1\thello sandbox");
    assertThat(calls.get(5).content()).contains("notes.txt", "sub/");
    assertThat(calls.get(6).content()).isEqualTo("/workspace/notes.txt");
    assertThat(calls.get(7).content()).isEqualTo("/workspace/notes.txt:1:bye sandbox");
    JsonNode s =
        await(
            api,
            id,
            x -> x.path("sandbox").path("state").asText().equals("destroyed"),
            WAIT,
            "sandbox destroyed");
    assertThat(s.path("sandbox").path("id").asText()).startsWith("sbx-");
    // The sandbox's end is recorded before the terminal event, so a stream (which ends there) shows
    // it.
    List<ApiClient.SseEvent> events = api.events("/v1/sessions/" + id + "/events", WAIT);
    assertThat(events.get(events.size() - 1).event()).isEqualTo("session.completed");
    ApiClient.SseEvent beforeEnd = events.get(events.size() - 2);
    assertThat(beforeEnd.event()).isEqualTo("sandbox.changed");
    assertThat(beforeEnd.json().path("state").asText()).isEqualTo("destroyed");
  }

  @Test
  void aSearchOverTheWholeTreeIncludesTheWorkspaceOnceThereIsASandbox() {
    String id =
        create(
            api,
            body(
                "fay",
                false,
                List.of(
                    tools(
                        "files",
                        0,
                        call(
                            "write",
                            Map.of("path", "/workspace/src/a.txt", "content", "the needle\n")),
                        call(
                            "write",
                            Map.of("path", "/session/notes.md", "content", "needle here too\n"))),
                    tools(
                        "search",
                        0,
                        call("grep", Map.of("pattern", "needle")),
                        call("glob", Map.of("pattern", "**/*.txt"))),
                    say("done"))));
    awaitStatus(api, id, "completed", WAIT);
    List<ToolCall> calls = toolCalls(api, id);
    assertThat(calls.get(2).content())
        .isEqualTo("/session/notes.md:1:needle here too\n/workspace/src/a.txt:1:the needle");
    assertThat(calls.get(3).content()).isEqualTo("/workspace/src/a.txt");
  }

  @Test
  void anIdleSandboxIsSuspendedThenHibernatedAndResumesOnTheNextCall() {
    String id =
        create(
            api,
            body(
                "cy",
                true,
                List.of(
                    tools(
                        "one",
                        0,
                        call(
                            "bash",
                            Map.of(
                                "command",
                                "cd /tmp && export MARK=kept && echo one > /workspace/a.txt"))),
                    say("ready"),
                    tools("two", 0, call("bash", Map.of("command", "cat /workspace/a.txt"))),
                    say("done"))));
    awaitStatus(api, id, "waiting", WAIT);
    await(
        api,
        id,
        x -> x.path("sandbox").path("state").asText().equals("suspended"),
        WAIT,
        "suspended");
    await(
        api,
        id,
        x -> x.path("sandbox").path("state").asText().equals("hibernated"),
        WAIT,
        "hibernated");
    assertThat(api.post("/v1/sessions/" + id + "/messages", Map.of("text", "go on")).status())
        .isEqualTo(202);
    awaitStatus(api, id, "waiting", WAIT);
    List<ToolCall> calls = toolCalls(api, id);
    assertThat(calls.get(1).content()).contains("one");
    assertThat(calls.get(1).isError()).isFalse();
    assertThat(api.post("/v1/sessions/" + id + "/cancel", Map.of()).status()).isEqualTo(202);

    List<String> states =
        api.events("/v1/sessions/" + id + "/events", WAIT).stream()
            .filter(e -> "sandbox.changed".equals(e.event()))
            .map(e -> e.json().path("state").asText())
            .distinct()
            .toList();
    assertThat(states).containsSubsequence("provisioning", "active", "suspended", "hibernated");
    List<String> all =
        api.events("/v1/sessions/" + id + "/events", WAIT).stream()
            .filter(e -> "sandbox.changed".equals(e.event()))
            .map(e -> e.json().path("state").asText())
            .toList();
    assertThat(all.subList(all.indexOf("hibernated"), all.size())).contains("active");
    await(
        api,
        id,
        x -> x.path("sandbox").path("state").asText().equals("destroyed"),
        WAIT,
        "sandbox destroyed");
  }

  @Test
  void aKilledSandboxIsReplacedWithItsFilesAndTheSessionCompletes() {
    String id =
        create(
            api,
            body(
                "dee",
                true,
                List.of(
                    tools(
                        "keep",
                        0,
                        call("write", Map.of("path", "/workspace/keep.txt", "content", "kept\n"))),
                    say("ready"),
                    tools(
                        "warm",
                        0,
                        call("bash", Map.of("command", "echo warm; echo late > late.txt"))),
                    say("warm"),
                    tools("after", 0, call("bash", Map.of("command", "echo after-kill"))),
                    tools("read", 0, call("read", Map.of("path", "/workspace/keep.txt"))),
                    tools(
                        "again",
                        0,
                        call("bash", Map.of("command", "echo works; cat keep.txt late.txt"))),
                    say("done"))));
    awaitStatus(api, id, "waiting", WAIT);
    // Hibernation takes a snapshot; late.txt is written after it.
    await(
        api,
        id,
        x -> x.path("sandbox").path("state").asText().equals("hibernated"),
        WAIT,
        "hibernated");
    api.post("/v1/sessions/" + id + "/messages", Map.of("text", "warm up"));
    JsonNode warm =
        await(
            api,
            id,
            x -> x.path("status").asText().equals("waiting") && x.path("turns").asInt() == 4,
            WAIT,
            "warm");
    String first = warm.path("sandbox").path("id").asText();

    assertThat(Sandboxes.killProcessesOf(first)).as("processes of sandbox " + first).isPositive();

    api.post("/v1/sessions/" + id + "/messages", Map.of("text", "go on"));
    JsonNode done =
        await(
            api,
            id,
            x -> x.path("status").asText().equals("waiting") && x.path("turns").asInt() == 8,
            WAIT,
            "done");
    assertThat(done.path("sandbox").path("id").asText()).isNotEqualTo(first).startsWith("sbx-");
    List<ToolCall> calls = toolCalls(api, id);
    // The sandbox was found dead before the command was sent: it ran on the replacement, which
    // has every file the lost sandbox left (salvaged), not only those of the last snapshot.
    assertThat(calls.get(2).content())
        .isEqualTo(
            "[the sandbox was lost and replaced, its workspace recovered as the lost sandbox left"
                + " it]\n"
                + "after-kill\n");
    assertThat(calls.get(2).isError()).isFalse();
    assertThat(calls.get(3).content()).contains("1\tkept");
    assertThat(calls.get(4).content()).isEqualTo("works\nkept\nlate\n");
    api.post("/v1/sessions/" + id + "/cancel", Map.of());
    List<ApiClient.SseEvent> replaced =
        api.events("/v1/sessions/" + id + "/events", WAIT).stream()
            .filter(e -> "sandbox.changed".equals(e.event()) && e.json().has("oldId"))
            .toList();
    assertThat(replaced)
        .singleElement()
        .satisfies(
            e -> {
              assertThat(e.json().path("oldId").asText()).isEqualTo(first);
              assertThat(e.json().path("newId").asText())
                  .isEqualTo(done.path("sandbox").path("id").asText());
            });
  }
}
