package dev.outboard.session;

import dev.outboard.Futures;
import dev.outboard.model.ModelCallException;
import dev.outboard.model.ModelClient;
import dev.outboard.model.ModelDelta;
import dev.outboard.model.ModelRequest;
import dev.outboard.model.ModelResponse;
import dev.outboard.model.Secrets;
import dev.outboard.session.SessionEntity.Command;
import dev.outboard.session.SessionEntity.ModelFailed;
import dev.outboard.session.SessionEntity.OverBudget;
import dev.outboard.store.OrgPolicies;
import dev.outboard.tools.ApprovalPolicy;
import dev.outboard.tools.ToolCatalog;
import dev.outboard.tools.ToolSpec;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.function.Consumer;

/**
 * The model call of a turn: the org's policy first (its approvals apply to the answer, its budget
 * and the session's decide whether the call is made at all), then the system prompt and the tools
 * offered, then the call, streamed while someone follows the session. Thread-safe: the call's chain
 * runs off the actor's thread.
 */
final class ModelTurn {

  private static final org.slf4j.Logger log = org.slf4j.LoggerFactory.getLogger(ModelTurn.class);

  /** The model's answer, and the org's approval policy as read for it (null: unreadable). */
  record Answer(ModelResponse response, ApprovalPolicy orgPolicy) {}

  /** How an over-budget turn leaves the chain of its model call. */
  private static final class BudgetReached extends RuntimeException {
    private final transient OverBudget over;

    BudgetReached(OverBudget over) {
      super("over budget", null, false, false);
      this.over = over;
    }
  }

  private final SessionServices services;
  private final String sessionId;
  private final Subagents subagents;

  ModelTurn(SessionServices services, String sessionId, Subagents subagents) {
    this.services = services;
    this.sessionId = sessionId;
    this.subagents = subagents;
  }

  /**
   * The tools offered to the model: the session's subset, without {@code task} at the deepest
   * level.
   */
  List<ToolSpec> tools(SessionState state) {
    boolean maySpawn = subagents.maySpawn(state);
    if (state.spec().tools().isEmpty() && maySpawn) return ToolCatalog.ALL;
    return ToolCatalog.ALL.stream()
        .filter(t -> state.spec().mayUse(t.name()) && (maySpawn || !t.name().equals("task")))
        .toList();
  }

  /**
   * Calls {@code client} for turn {@code turn}, unless the session is over its budget; {@code
   * deltas} (null: none) receives the answer as it streams.
   */
  CompletionStage<Answer> call(
      SessionState state, int turn, ModelClient client, Consumer<ModelDelta> deltas) {
    // The org's policy first (cached): a session over its budget makes no call. Its read never
    // fails (unreadable: null), so a failure below is the model call's, or the budget's.
    return orgPolicy(state)
        .thenCompose(
            policy -> {
              OverBudget over =
                  BudgetChecks.overBudget(
                      state, turn, policy == null ? Budget.NONE : policy.budget());
              if (over != null) return CompletableFuture.failedFuture(new BudgetReached(over));
              return systemPrompt(state)
                  .thenCombine(mcpTools(state), SystemAndTools::new)
                  .thenCompose(
                      offered -> {
                        ModelRequest request =
                            new ModelRequest(
                                sessionId,
                                turn,
                                state.spec().model(),
                                offered.system(),
                                offered.tools(),
                                state.messages());
                        // Streaming costs the provider client a reading thread per call: only while
                        // someone follows.
                        return Futures.attempt(
                            () ->
                                deltas != null
                                    ? client.complete(request, deltas)
                                    : client.complete(request));
                      })
                  .thenApply(
                      response -> new Answer(response, policy == null ? null : policy.approvals()));
            });
  }

  /** The system prompt of a call, and the tools it offers. */
  private record SystemAndTools(String system, List<ToolSpec> tools) {}

  /**
   * The harness's tools the session may use and, after them, the tools of its org's MCP servers
   * (cached; none where the node has no MCP or the session may not use them). Never fails.
   */
  private CompletionStage<List<ToolSpec>> mcpTools(SessionState state) {
    List<ToolSpec> own = tools(state);
    if (services.mcp() == null) return CompletableFuture.completedFuture(own);
    return services
        .mcp()
        .tools(state.org())
        .thenApply(
            mcp -> {
              if (mcp.isEmpty()) return own;
              List<ToolSpec> all = new java.util.ArrayList<>(own);
              mcp.stream().filter(t -> state.spec().mayUse(t.name())).forEach(all::add);
              return List.copyOf(all);
            });
  }

  /** What a failed {@link #call} of {@code turn} tells the session: its budget, or the failure. */
  static Command failed(int turn, Throwable error) {
    Throwable cause = Futures.cause(error);
    if (cause instanceof BudgetReached b) return b.over;
    if (cause instanceof ModelCallException m)
      return new ModelFailed(turn, m.code(), m.getMessage());
    return new ModelFailed(turn, "model_error", Secrets.redact(String.valueOf(cause.getMessage())));
  }

  /**
   * The org's approval policy for the answer of the next call, read while the model thinks; null if
   * it could not be read (then every call of the answer waits for approval).
   */
  private CompletionStage<OrgPolicies.ForSessions> orgPolicy(SessionState state) {
    if (services.policies() == null) {
      return CompletableFuture.completedFuture(
          new OrgPolicies.ForSessions(ApprovalPolicy.NONE, Budget.NONE));
    }
    return services
        .policies()
        .forSessions(state.org())
        .exceptionally(
            e -> {
              log.warn(
                  "session {}: the org's policy could not be read; this turn's calls wait for"
                      + " approval, only the session's budget applies: {}",
                  sessionId,
                  e.toString());
              return null;
            });
  }

  /**
   * The system prompt of the next call: the harness's, the org's skills and memory, the session's
   * own.
   */
  private CompletionStage<String> systemPrompt(SessionState state) {
    String extra = state.spec().system();
    if (services.orgFiles() == null)
      return CompletableFuture.completedFuture(SystemPrompt.build(services.router(), extra));
    return services
        .orgFiles()
        .promptSection(state.org())
        .thenApply(section -> SystemPrompt.build(services.router(), extra, section))
        .exceptionally(
            e -> {
              log.warn(
                  "session {}: no skills/memory index for this call: {}", sessionId, e.toString());
              return SystemPrompt.build(services.router(), extra);
            });
  }
}
