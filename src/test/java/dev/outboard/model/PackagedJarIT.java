package dev.outboard.model;

import static dev.outboard.model.AnthropicWire.message;
import static dev.outboard.model.AnthropicWire.text;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.SseEvent;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.NodeProcess;
import dev.outboard.testing.Ports;
import dev.outboard.testing.ScriptedSessions;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.extension.TestWatcher;

/**
 * The packaged service as it ships: {@code java -jar target/outboard.jar serve} (with {@code
 * target/lib/}) in embedded mode, its Anthropic and OpenAI providers pointed at {@link
 * AnthropicWire} and {@link OpenAiWire}. One session per provider answers once unfollowed (a plain
 * call through the official SDK) and once followed (a streamed call), so a class or resource the
 * package lacks shows up as a failed session or a node that does not start. Run by failsafe after
 * {@code package} ({@code mvn verify}).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class PackagedJarIT {
  static final Duration WAIT = Duration.ofSeconds(20);
  static final String ADMIN = "packaged-jar-admin-token";

  AnthropicWire anthropic;
  OpenAiWire openai;
  NodeProcess node;
  ApiClient api;

  @RegisterExtension
  final TestWatcher logsOnFailure =
      new TestWatcher() {
        @Override
        public void testFailed(ExtensionContext context, Throwable cause) {
          if (node != null) System.out.println(node.logTails(80));
        }
      };

  @BeforeAll
  void start() throws Exception {
    Path target = Path.of(System.getProperty("basedir", "."), "target");
    Path jar = target.resolve("outboard.jar");
    assertThat(jar).as("run after mvn package").exists();
    anthropic = new AnthropicWire(AnthropicModelTest.KEY);
    openai = new OpenAiWire();
    Path data = Files.createDirectories(target.resolve("it-data")).resolve("packaged-jar");
    InProcessNode.deleteRecursively(data);
    int[] ports = Ports.free(3);
    Map<String, String> env = new LinkedHashMap<>();
    env.put("OUTBOARD_DATA_DIR", data.toString());
    env.put("OUTBOARD_HTTP_PORT", String.valueOf(ports[0]));
    env.put("OUTBOARD_MANAGEMENT_PORT", String.valueOf(ports[1]));
    env.put("OUTBOARD_REMOTE_PORT", String.valueOf(ports[2]));
    env.put("OUTBOARD_ADMIN_TOKEN", ADMIN);
    env.put("ANTHROPIC_BASE_URL", anthropic.baseUrl());
    env.put("ANTHROPIC_API_KEY", AnthropicModelTest.KEY);
    env.put("OPENAI_BASE_URL", openai.baseUrl());
    env.put("OPENAI_API_KEY", OpenAiWire.KEY);
    node = NodeProcess.ofJar("packaged-jar", jar, env, List.of("serve"));
    node.start();
    node.awaitReady(Duration.ofSeconds(60));
    api =
        new ApiClient(node.baseUrl(), null)
            .withBearer(new ApiClient(node.baseUrl(), ADMIN).createOrgWithKey("packaged"));
  }

  @AfterAll
  void stop() {
    if (node != null) node.close();
    if (anthropic != null) anthropic.close();
    if (openai != null) openai.close();
  }

  @Test
  void anAnthropicSessionAnswersPlainThenStreamed() {
    anthropic.enqueue(
        req -> message(req, List.of(text("Hello from Anthropic's stand-in.")), "end_turn"));
    anthropic.enqueue(
        req -> message(req, List.of(text("Streamed by Anthropic's stand-in.")), "end_turn"));

    answersPlainThenStreamed(
        Map.of("provider", "anthropic", "name", "claude-test"),
        "Hello from Anthropic's stand-in.",
        "Streamed by Anthropic's stand-in.");

    assertThat(anthropic.violations()).isEmpty();
    assertThat(anthropic.requests())
        .extracting(r -> streamed(r.body()))
        .containsExactly(false, true);
  }

  @Test
  void anOpenAiSessionAnswersPlainThenStreamed() {
    openai.enqueue(
        openai.text("Hello from OpenAI's stand-in."),
        openai.text("Streamed by OpenAI's stand-in."));

    answersPlainThenStreamed(
        Map.of("provider", "openai", "name", "gpt-test"),
        "Hello from OpenAI's stand-in.",
        "Streamed by OpenAI's stand-in.");

    assertThat(openai.problems()).isEmpty();
    assertThat(openai.requests()).extracting(r -> streamed(r.body())).containsExactly(false, true);
  }

  /**
   * A session of {@code model} that stays open: its first answer comes unfollowed, the second while
   * an event stream follows it, as deltas that add up to the answer.
   */
  private void answersPlainThenStreamed(Map<String, String> model, String plain, String streamed) {
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("prompt", "say hello");
    body.put("keepOpen", true);
    body.put("model", model);
    String id = ScriptedSessions.create(api, body);

    JsonNode waiting = ScriptedSessions.awaitStatus(api, id, "waiting", WAIT);
    assertThat(waiting.path("result").asText()).isEqualTo(plain);

    List<SseEvent> events = StreamedSessions.followWhileAnswering(api, id, "again", streamed, WAIT);
    assertThat(events).filteredOn(e -> e.event().equals("model.delta")).isNotEmpty();
    StreamedSessions.assertDeltasAddUp(events);

    assertThat(api.post("/v1/sessions/" + id + "/cancel", Map.of()).status()).isEqualTo(202);
  }

  /** Whether a provider request asked for a stream ({@code "stream": true}). */
  private static boolean streamed(JsonNode request) {
    return request.path("stream").asBoolean(false);
  }
}
