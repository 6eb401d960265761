package dev.outboard.session;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.api.ApiError;
import dev.outboard.model.ModelClients;
import dev.outboard.model.ModelSpec;
import dev.outboard.model.ScriptedModel;
import dev.outboard.tools.ApprovalPolicy;
import java.time.Duration;
import java.util.List;
import java.util.Optional;

/** The bodies and query parameters of the sessions API, and how each is checked (400s). */
public final class SessionRequests {
  /** The longest prompt or message, in characters. */
  static final int MAX_TEXT = 1_000_000;

  private SessionRequests() {}

  /** The body of {@code POST /v1/sessions}. */
  public record CreateRequest(
      String prompt,
      String user,
      ModelSpec model,
      String system,
      Integer maxTurns,
      Boolean keepOpen,
      JsonNode metadata,
      List<String> approvals,
      Budget budget) {}

  /** The body of {@code POST /v1/sessions/{id}/budget}: the new limits (null: unchanged). */
  public record BudgetRequest(Long maxTokens, Integer maxTurns) {}

  /** The body of {@code POST /v1/sessions/{id}/approvals}. */
  public record DecisionRequest(String toolUseId, String decision, String message) {}

  /** The body of {@code POST /v1/sessions/{id}/messages}. */
  public record MessageRequest(String text) {}

  /** The spec of a session created by {@code req}, or a 400 saying what is wrong with it. */
  static SessionSpec validate(
      CreateRequest req, SessionSettings settings, ModelClients models, boolean scriptedAllowed) {
    if (req.prompt() == null || req.prompt().isBlank())
      throw ApiError.badRequest("prompt is required");
    if (req.prompt().length() > MAX_TEXT)
      throw ApiError.badRequest("prompt is longer than " + MAX_TEXT + " characters");
    if (req.user() != null && req.user().length() > 256)
      throw ApiError.badRequest("user is longer than 256 characters");
    if (req.metadata() != null && !req.metadata().isObject() && !req.metadata().isNull()) {
      throw ApiError.badRequest("metadata must be a JSON object");
    }
    int maxTurns = req.maxTurns() == null ? settings.defaultMaxTurns() : req.maxTurns();
    if (maxTurns < 1 || maxTurns > settings.maxMaxTurns()) {
      throw ApiError.badRequest("maxTurns must be between 1 and " + settings.maxMaxTurns());
    }
    ModelSpec model =
        req.model() == null ? new ModelSpec(models.defaultProvider(), null, null) : req.model();
    if (model.provider() == null)
      model =
          new ModelSpec(
              models.defaultProvider(), model.name(), model.script(), model.subagentScript());
    if (model.provider().equals(ScriptedModel.PROVIDER) && !scriptedAllowed) {
      throw ApiError.badRequest(
          "the scripted model is disabled on this node; set OUTBOARD_ALLOW_SCRIPTED=true to allow"
              + " it");
    }
    if ((model.script() != null || model.subagentScript() != null)
        && !model.provider().equals(ScriptedModel.PROVIDER)) {
      throw ApiError.badRequest(
          "model.script and model.subagentScript are only for the scripted provider");
    }
    String problem = models.check(model);
    if (problem != null) throw ApiError.badRequest(problem);
    JsonNode metadata =
        req.metadata() == null || req.metadata().isNull()
            ? dev.outboard.Json.MAPPER.createObjectNode()
            : req.metadata();
    ApprovalPolicy.problem(req.approvals())
        .ifPresent(
            why -> {
              throw ApiError.badRequest("approvals: " + why);
            });
    List<String> approvals =
        req.approvals() == null ? List.of() : req.approvals().stream().map(String::trim).toList();
    Budget budget = req.budget();
    if (budget != null) {
      if (budget.maxTurns() != null)
        throw ApiError.badRequest("budget.maxTurns: give maxTurns at the top level");
      budget
          .problem("budget")
          .ifPresent(
              why -> {
                throw ApiError.badRequest(why);
              });
    }
    return new SessionSpec(
        req.prompt(),
        model,
        req.system(),
        maxTurns,
        Boolean.TRUE.equals(req.keepOpen()),
        metadata,
        approvals,
        null,
        0,
        List.of(),
        budget);
  }

  /** {@code ?limit} of the sessions list: 1 to 500, 50 when absent. */
  static int parseLimit(Optional<String> limit) {
    if (limit.isEmpty()) return 50;
    try {
      int n = Integer.parseInt(limit.get());
      if (n >= 1 && n <= 500) return n;
    } catch (NumberFormatException ignored) {
      // falls through to the error below
    }
    throw ApiError.badRequest("limit must be an integer between 1 and 500");
  }

  /** {@code ?wait}: 30s, 500ms, 2m or plain seconds, at most {@code maxWait}. */
  static Duration parseWait(String raw, Duration maxWait) {
    Duration wait = null;
    String v = raw.trim();
    try {
      if (v.endsWith("ms"))
        wait = Duration.ofMillis(Long.parseLong(v.substring(0, v.length() - 2)));
      else if (v.endsWith("s"))
        wait = Duration.ofSeconds(Long.parseLong(v.substring(0, v.length() - 1)));
      else if (v.endsWith("m"))
        wait = Duration.ofMinutes(Long.parseLong(v.substring(0, v.length() - 1)));
      else wait = Duration.ofSeconds(Long.parseLong(v));
    } catch (NumberFormatException | ArithmeticException ignored) {
      // falls through to the error below
    }
    if (wait == null || wait.isNegative() || wait.compareTo(maxWait) > 0) {
      throw ApiError.badRequest(
          "wait must be a duration such as 30s, 500ms or 2m, at most " + maxWait.toSeconds() + "s");
    }
    return wait;
  }

  /** {@code Last-Event-ID} or {@code ?after}: a non-negative event number. */
  static long parseSeq(String raw) {
    try {
      long n = Long.parseLong(raw.trim());
      if (n >= 0) return n;
    } catch (NumberFormatException ignored) {
      // falls through to the error below
    }
    throw ApiError.badRequest("Last-Event-ID (or after) must be a non-negative integer");
  }
}
