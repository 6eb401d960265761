package dev.outboard.model;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Json;
import dev.outboard.model.ModelSpec.ScriptedCall;
import dev.outboard.model.ModelSpec.ScriptedTurn;
import dev.outboard.tools.ToolCatalog;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class ScriptedModelTest {

  private final ScriptedModel model = new ScriptedModel();

  private static JsonNode json(String text) {
    try {
      return Json.MAPPER.readTree(text.replace('\'', '"'));
    } catch (Exception e) {
      throw new IllegalArgumentException(text, e);
    }
  }

  private static ModelSpec spec(ScriptedTurn... turns) {
    return new ModelSpec(ScriptedModel.PROVIDER, null, turns == null ? null : Arrays.asList(turns));
  }

  private static ModelRequest request(ModelSpec spec, int turn) {
    return new ModelRequest(
        "s-1",
        turn,
        spec,
        "system prompt",
        ToolCatalog.ALL,
        List.of(Message.user(List.of(new Block.Text("hello")))));
  }

  private ModelResponse call(ModelSpec spec, int turn) throws Exception {
    return model.complete(request(spec, turn)).toCompletableFuture().get(5, TimeUnit.SECONDS);
  }

  private static final ModelSpec TWO_TURNS =
      spec(
          new ScriptedTurn(
              "writing the plan",
              List.of(
                  new ScriptedCall(
                      "write", json("{'path': '/session/plan.md', 'content': 'step 1'}")),
                  new ScriptedCall("read", json("{'path': '/session/plan.md'}"))),
              null),
          new ScriptedTurn("done", null, 0L));

  @Test
  void itsProviderNameIsScripted() {
    assertThat(model.provider()).isEqualTo("scripted");
  }

  @Test
  void callNPlaysTurnNWithItsTextAndToolCalls() throws Exception {
    ModelResponse first = call(TWO_TURNS, 1);
    assertThat(first.stopReason()).isEqualTo(ModelResponse.StopReason.TOOL_USE);
    assertThat(first.text()).isEqualTo("writing the plan");
    assertThat(first.content()).first().isEqualTo(new Block.Text("writing the plan"));
    assertThat(first.toolCalls())
        .containsExactly(
            new Block.ToolUse(
                "toolu_1_0", "write", json("{'path': '/session/plan.md', 'content': 'step 1'}")),
            new Block.ToolUse("toolu_1_1", "read", json("{'path': '/session/plan.md'}")));
    assertThat(first.usage().inputTokens()).isPositive();
    assertThat(first.usage().outputTokens()).isPositive();

    ModelResponse second = call(TWO_TURNS, 2);
    assertThat(second.stopReason()).isEqualTo(ModelResponse.StopReason.END_TURN);
    assertThat(second.content()).containsExactly(new Block.Text("done"));
    assertThat(second.toolCalls()).isEmpty();
  }

  @Test
  void theSameCallTwiceGivesTheSameAnswerWithTheSameToolCallIds() throws Exception {
    ModelResponse a = call(TWO_TURNS, 1);
    ModelResponse b = call(TWO_TURNS, 1);
    assertThat(b).isEqualTo(a);
    assertThat(b.toolCalls())
        .extracting(Block.ToolUse::id)
        .containsExactly("toolu_1_0", "toolu_1_1");
  }

  @Test
  void toolCallIdsAreUniqueAcrossTurns() throws Exception {
    ModelSpec spec =
        spec(
            new ScriptedTurn(
                null, List.of(new ScriptedCall("ls", json("{'path': '/session'}"))), null),
            new ScriptedTurn(
                null, List.of(new ScriptedCall("ls", json("{'path': '/session'}"))), null));
    assertThat(call(spec, 1).toolCalls())
        .extracting(Block.ToolUse::id)
        .containsExactly("toolu_1_0");
    assertThat(call(spec, 2).toolCalls())
        .extracting(Block.ToolUse::id)
        .containsExactly("toolu_2_0");
  }

  @Test
  void aTurnWithoutTextHasOnlyToolUseBlocksAndMissingInputBecomesAnEmptyObject() throws Exception {
    ModelSpec spec = spec(new ScriptedTurn("", List.of(new ScriptedCall("ls", null)), null));
    ModelResponse r = call(spec, 1);
    assertThat(r.content())
        .containsExactly(new Block.ToolUse("toolu_1_0", "ls", Json.MAPPER.createObjectNode()));
    assertThat(r.text()).isEmpty();
  }

  @Test
  void pastTheEndOfTheScriptItEndsTheTurnWithNothing() throws Exception {
    ModelResponse r = call(TWO_TURNS, 3);
    assertThat(r.content()).isEmpty();
    assertThat(r.stopReason()).isEqualTo(ModelResponse.StopReason.END_TURN);
    assertThat(r.usage()).isEqualTo(Usage.ZERO);
    assertThat(call(TWO_TURNS, 50).content()).isEmpty();
    assertThat(call(new ModelSpec("scripted", null, null), 1).content()).isEmpty();
  }

  @Test
  void aTurnWithoutLatencyAnswersAtOnce() {
    assertThat(model.complete(request(TWO_TURNS, 1)).toCompletableFuture().isDone()).isTrue();
  }

  @Test
  void latencyIsHonouredWithoutBlockingTheCaller() throws Exception {
    ModelSpec slow = spec(new ScriptedTurn("slow", null, 300L));
    long start = System.nanoTime();
    CompletableFuture<ModelResponse> f = model.complete(request(slow, 1)).toCompletableFuture();
    long returnedAfterMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
    assertThat(returnedAfterMs).as("complete() must not block").isLessThan(200);
    assertThat(f.isDone()).isFalse();
    ModelResponse r = f.get(5, TimeUnit.SECONDS);
    long elapsedMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
    assertThat(elapsedMs).isGreaterThanOrEqualTo(250);
    assertThat(r.text()).isEqualTo("slow");
  }

  @Test
  void validateAcceptsAWellFormedScript() {
    assertThat(model.validate(TWO_TURNS)).isEmpty();
    assertThat(model.validate(spec())).isEmpty();
    assertThat(model.validate(spec(new ScriptedTurn("x", null, 600_000L)))).isEmpty();
  }

  @Test
  void validateRejectsBadScriptsNamingTheFaultyEntry() {
    assertThat(model.validate(new ModelSpec("scripted", null, null)))
        .hasValueSatisfying(m -> assertThat(m).contains("model.script"));

    assertThat(
            model.validate(
                spec(new ScriptedTurn("ok", null, null), new ScriptedTurn("x", null, -1L))))
        .hasValue("model.script[1].latencyMs must be between 0 and 600000");
    assertThat(model.validate(spec(new ScriptedTurn("x", null, 600_001L))))
        .hasValue("model.script[0].latencyMs must be between 0 and 600000");
    assertThat(
            model.validate(
                spec(
                    new ScriptedTurn(
                        "x",
                        List.of(new ScriptedCall("ls", null), new ScriptedCall(" ", null)),
                        null))))
        .hasValue("model.script[0].toolCalls[1].name is required");
    assertThat(
            model.validate(
                spec(new ScriptedTurn("x", List.of(new ScriptedCall(null, null)), null))))
        .hasValue("model.script[0].toolCalls[0].name is required");
  }
}
