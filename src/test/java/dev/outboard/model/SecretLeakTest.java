package dev.outboard.model;

import static org.assertj.core.api.Assertions.assertThat;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.classic.spi.IThrowableProxy;
import ch.qos.logback.classic.spi.StackTraceElementProxy;
import ch.qos.logback.core.read.ListAppender;
import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.model.OpenAiWire.Call;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.SseEvent;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.ScriptedSessions;
import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;

/**
 * Runs OpenAI sessions that succeed and fail in every way the wire server can make them, then
 * searches everything the run left behind — every log line (captured from logback, and the raw
 * stdout/stderr), every event of every session, every transcript, the session bodies and list, and
 * the management port's /metrics — for the fake API key, and finds none. The fake server must have
 * received the key, or the search would prove nothing.
 */
class SecretLeakTest {
  private static final String KEY = OpenAiWire.KEY;
  private static final Duration WAIT = Duration.ofSeconds(30);

  @Test
  void theApiKeyAppearsNowhere() throws Exception {
    LoggerContext logback = (LoggerContext) LoggerFactory.getILoggerFactory();
    Logger root = logback.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME);
    ListAppender<ILoggingEvent> logs = new ListAppender<>();
    logs.setContext(logback);
    logs.start();
    root.addAppender(logs);
    Map<String, Level> levels = new LinkedHashMap<>();
    for (String name : List.of("dev.outboard", "com.openai", "okhttp3")) {
      levels.put(name, logback.getLogger(name).getLevel());
      logback.getLogger(name).setLevel(Level.DEBUG);
    }
    PrintStream out = System.out;
    PrintStream err = System.err;
    ByteArrayOutputStream console = new ByteArrayOutputStream();
    System.setOut(new PrintStream(new Tee(out, console), true, StandardCharsets.UTF_8));
    System.setErr(new PrintStream(new Tee(err, console), true, StandardCharsets.UTF_8));

    List<String> haystack = new ArrayList<>();
    List<String> ids = new ArrayList<>();
    try (OpenAiWire wire = new OpenAiWire()) {
      InProcessNode node = InProcessNode.start("", OpenAiModelTest.nodeOverrides(wire));
      try {
        ApiClient acme = node.client(node.admin().createOrgWithKey("leak"));

        // 1. a multi-tool turn with a tool error, then the end
        wire.enqueue(
            wire.toolCalls(
                "two tools",
                100,
                40,
                new Call("call_1", "write", "{\"path\":\"/session/n.md\",\"content\":\"hello\"}"),
                new Call("call_2", "read", "{\"path\":\"/session/none.md\"}")),
            wire.text("done 1"));
        ids.add(run(acme, wire));
        // 2. 429 with Retry-After, then success
        wire.enqueue(OpenAiWire.rateLimited("0.1"), wire.text("done 2"));
        ids.add(run(acme, wire));
        // 3. an overload storm that exhausts the budget
        for (int i = 0; i < 3; i++) wire.enqueue(OpenAiWire.overloaded());
        ids.add(run(acme, wire));
        // 4. malformed JSON
        wire.enqueue(OpenAiWire.raw("{\"id\": \"chatcmpl-x\", \"choices\": [ {"));
        ids.add(run(acme, wire));
        // 5. cut off at max tokens
        wire.enqueue(wire.length("and so"));
        ids.add(run(acme, wire));
        // 6. connection closed mid-body, then success
        wire.enqueue(wire.cutOff(), wire.text("done 6"));
        ids.add(run(acme, wire));
        // 7. unparseable tool arguments, then the end
        wire.enqueue(
            wire.toolCalls(null, 10, 0, new Call("call_7", "write", "{\"path\": \"/ses")),
            wire.text("done 7"));
        ids.add(run(acme, wire));
        // 8. the provider refuses the key and echoes it in its message (as some servers do)
        wire.enqueue(
            OpenAiWire.error(
                401,
                "invalid_request_error",
                "invalid_api_key",
                "Incorrect API key provided: " + KEY + ".",
                Map.of()));
        ids.add(run(acme, wire));
        // 9. a server error whose body mentions the key outside the usual shape
        for (int i = 0; i < 3; i++) {
          wire.enqueue(
              OpenAiWire.error(
                  502, "server_error", null, "upstream rejected Bearer " + KEY, Map.of()));
        }
        ids.add(run(acme, wire));

        // The search is only meaningful if the key really went out.
        assertThat(wire.requests()).isNotEmpty();
        assertThat(wire.requests())
            .allSatisfy(r -> assertThat(r.header("authorization")).isEqualTo("Bearer " + KEY));
        assertThat(wire.problems()).isEmpty();

        for (String id : ids) {
          haystack.add("GET session " + id + ": " + acme.get("/v1/sessions/" + id).body());
          haystack.add(
              "transcript " + id + ": " + acme.get("/v1/sessions/" + id + "/transcript").body());
          for (SseEvent e :
              acme.events("/v1/sessions/" + id + "/events", WAIT, "Last-Event-ID", "0")) {
            haystack.add("event " + id + " " + e.id() + " " + e.event() + ": " + e.data());
          }
        }
        haystack.add("sessions list: " + acme.get("/v1/sessions?limit=100").body());
        int mgmt = node.system().settings().config().getInt("pekko.management.http.port");
        ApiClient.Response metrics =
            new ApiClient("http://127.0.0.1:" + mgmt, null).get("/metrics");
        assertThat(metrics.status()).isEqualTo(200);
        assertThat(metrics.body()).contains("# TYPE");
        haystack.add("metrics: " + metrics.body());

        // The failures really happened, with the provider's words.
        List<String> statuses = new ArrayList<>();
        for (String id : ids)
          statuses.add(acme.get("/v1/sessions/" + id).json().path("status").asText());
        assertThat(statuses)
            .containsExactly(
                "completed",
                "completed",
                "failed",
                "failed",
                "failed",
                "completed",
                "completed",
                "failed",
                "failed");
        JsonNode auth = acme.get("/v1/sessions/" + ids.get(7)).json().path("error");
        assertThat(auth.path("code").asText()).isEqualTo("model_auth");
        assertThat(auth.path("message").asText())
            .contains("Incorrect API key provided: [redacted]");
      } finally {
        node.close();
      }
    } finally {
      System.setOut(out);
      System.setErr(err);
      root.detachAppender(logs);
      levels.forEach((name, level) -> logback.getLogger(name).setLevel(level));
    }

    int logLines = 0;
    for (ILoggingEvent e : logs.list) {
      haystack.add(render(e));
      logLines++;
    }
    haystack.add("console: " + console.toString(StandardCharsets.UTF_8));
    assertThat(logLines).as("log lines captured").isGreaterThan(10);
    assertThat(haystack.stream().filter(s -> s.contains("model.responded")).count())
        .isGreaterThan(0);

    List<String> leaks =
        haystack.stream().filter(s -> s.contains(KEY) || s.contains(KEY.substring(8))).toList();
    assertThat(leaks).as("texts containing the API key").isEmpty();
  }

  private static String run(ApiClient api, OpenAiWire wire) {
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("prompt", "do the thing");
    body.put("user", "mallory");
    body.put("maxTurns", 5);
    body.put("model", Map.of("provider", "openai", "name", "gpt-test"));
    String id = ScriptedSessions.create(api, body);
    long deadline = System.nanoTime() + WAIT.toNanos();
    while (System.nanoTime() < deadline) {
      String status = api.get("/v1/sessions/" + id).json().path("status").asText();
      if (status.equals("completed") || status.equals("failed")) {
        assertThat(wire.pending()).as("answers left unused by session " + id).isZero();
        return id;
      }
      ScriptedSessions.sleep(50);
    }
    throw new AssertionError("session " + id + " did not end");
  }

  /**
   * Everything of a log event that an appender could print: message, MDC, arguments, throwables.
   */
  private static String render(ILoggingEvent e) {
    StringBuilder sb =
        new StringBuilder("log ")
            .append(e.getLevel())
            .append(' ')
            .append(e.getLoggerName())
            .append(' ')
            .append(e.getThreadName())
            .append(' ')
            .append(e.getMDCPropertyMap())
            .append(" - ")
            .append(e.getFormattedMessage());
    if (e.getArgumentArray() != null)
      for (Object a : e.getArgumentArray()) sb.append(" | ").append(a);
    for (IThrowableProxy t = e.getThrowableProxy(); t != null; t = t.getCause()) {
      sb.append("\n").append(t.getClassName()).append(": ").append(t.getMessage());
      for (StackTraceElementProxy s : t.getStackTraceElementProxyArray())
        sb.append("\n\tat ").append(s.getSTEAsString());
      for (IThrowableProxy sup : t.getSuppressed())
        sb.append("\nSuppressed: ")
            .append(sup.getClassName())
            .append(": ")
            .append(sup.getMessage());
    }
    return sb.toString();
  }

  private static final class Tee extends OutputStream {
    private final OutputStream a;
    private final OutputStream b;

    Tee(OutputStream a, OutputStream b) {
      this.a = a;
      this.b = b;
    }

    @Override
    public void write(int c) throws java.io.IOException {
      a.write(c);
      synchronized (b) {
        b.write(c);
      }
    }

    @Override
    public void write(byte[] buf, int off, int len) throws java.io.IOException {
      a.write(buf, off, len);
      synchronized (b) {
        b.write(buf, off, len);
      }
    }

    @Override
    public void flush() throws java.io.IOException {
      a.flush();
    }
  }
}
