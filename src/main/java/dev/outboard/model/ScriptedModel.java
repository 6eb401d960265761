package dev.outboard.model;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.model.ModelSpec.ScriptedCall;
import dev.outboard.model.ModelSpec.ScriptedTurn;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;

/**
 * A deterministic model for tests, demos and load tests: call number {@code turn} plays {@code
 * script[turn - 1]} after its {@code latencyMs}, whatever the tool results were. Past the end of
 * the script it ends the loop with empty text. Because the answer depends only on the turn number,
 * a call repeated after a crash gives the same answer, with the same tool-call ids.
 */
public final class ScriptedModel implements ModelClient {
  public static final String PROVIDER = "scripted";
  private static final long MAX_LATENCY_MS = 600_000;

  @Override
  public String provider() {
    return PROVIDER;
  }

  @Override
  public Optional<String> validate(ModelSpec spec) {
    if (spec.script() == null)
      return Optional.of("the scripted model needs model.script (a list of turns)");
    return problem("model.script", spec.script())
        .or(
            () ->
                spec.subagentScript() == null
                    ? Optional.empty()
                    : problem("model.subagentScript", spec.subagentScript()));
  }

  private static Optional<String> problem(String field, List<ScriptedTurn> script) {
    for (int i = 0; i < script.size(); i++) {
      ScriptedTurn turn = script.get(i);
      if (turn == null) return Optional.of(field + "[" + i + "] is null");
      if (turn.latencyMs() != null && (turn.latencyMs() < 0 || turn.latencyMs() > MAX_LATENCY_MS)) {
        return Optional.of(field + "[" + i + "].latencyMs must be between 0 and " + MAX_LATENCY_MS);
      }
      for (int j = 0; j < turn.toolCalls().size(); j++) {
        ScriptedCall call = turn.toolCalls().get(j);
        if (call == null || call.name() == null || call.name().isBlank()) {
          return Optional.of(field + "[" + i + "].toolCalls[" + j + "].name is required");
        }
      }
    }
    return Optional.empty();
  }

  @Override
  public CompletionStage<ModelResponse> complete(ModelRequest request) {
    if (request.purpose() == ModelRequest.Purpose.SUMMARY)
      return CompletableFuture.completedFuture(summary(request));
    List<ScriptedTurn> script =
        request.model().script() == null ? List.of() : request.model().script();
    int index = request.turn() - 1;
    ModelResponse response =
        index < script.size() ? play(request, script.get(index)) : endOfScript();
    long latency =
        index < script.size() && script.get(index).latencyMs() != null
            ? script.get(index).latencyMs()
            : 0;
    if (latency == 0) return CompletableFuture.completedFuture(response);
    return CompletableFuture.supplyAsync(
        () -> response, CompletableFuture.delayedExecutor(latency, TimeUnit.MILLISECONDS));
  }

  private static ModelResponse play(ModelRequest request, ScriptedTurn turn) {
    List<Block> content = new ArrayList<>();
    // "${prompt}" in a turn's text is the session's prompt: subagents playing one script answer
    // apart.
    if (turn.text() != null && !turn.text().isEmpty())
      content.add(new Block.Text(turn.text().replace("${prompt}", prompt(request))));
    for (int i = 0; i < turn.toolCalls().size(); i++) {
      ScriptedCall call = turn.toolCalls().get(i);
      JsonNode input =
          call.input() == null ? dev.outboard.Json.MAPPER.createObjectNode() : call.input();
      content.add(new Block.ToolUse("toolu_" + request.turn() + "_" + i, call.name(), input));
    }
    ModelResponse.StopReason stop =
        turn.toolCalls().isEmpty()
            ? ModelResponse.StopReason.END_TURN
            : ModelResponse.StopReason.TOOL_USE;
    return new ModelResponse(content, stop, estimateUsage(request, content));
  }

  /** A compaction's summary: deterministic, naming how much it covers and how it began. */
  private static ModelResponse summary(ModelRequest request) {
    String text = request.messages().isEmpty() ? "" : textOf(request.messages().get(0).content());
    String first = text.length() > 200 ? text.substring(0, 200) : text;
    List<Block> content =
        List.of(new Block.Text("Summary (scripted) of the conversation so far: " + first));
    return new ModelResponse(
        content, ModelResponse.StopReason.END_TURN, estimateUsage(request, content));
  }

  private static String textOf(List<Block> blocks) {
    StringBuilder sb = new StringBuilder();
    for (Block b : blocks) if (b instanceof Block.Text t) sb.append(t.text());
    return sb.toString();
  }

  private static String prompt(ModelRequest request) {
    if (request.messages().isEmpty()) return "";
    return request.messages().get(0).content().stream()
        .filter(Block.Text.class::isInstance)
        .map(b -> ((Block.Text) b).text())
        .findFirst()
        .orElse("");
  }

  private static ModelResponse endOfScript() {
    return new ModelResponse(List.of(), ModelResponse.StopReason.END_TURN, Usage.ZERO);
  }

  /**
   * Roughly four characters a token, so that usage is plausible and deterministic. Counts the
   * system prompt and the newest message only: the scripted model is used for load tests, where
   * re-measuring the whole transcript every turn would make the harness look slower than it is.
   */
  private static Usage estimateUsage(ModelRequest request, List<Block> content) {
    long in = request.system() == null ? 0 : request.system().length();
    if (!request.messages().isEmpty())
      in += textLength(request.messages().get(request.messages().size() - 1).content());
    return new Usage(Math.max(1, in / 4), Math.max(1, textLength(content) / 4), 0, 0);
  }

  private static long textLength(List<Block> blocks) {
    long n = 0;
    for (Block b : blocks) {
      if (b instanceof Block.Text t) n += t.text().length();
      else if (b instanceof Block.ToolResult r) n += r.content().length();
      else if (b instanceof Block.ToolUse u) n += u.name().length() + u.input().size() * 16L;
    }
    return n;
  }
}
