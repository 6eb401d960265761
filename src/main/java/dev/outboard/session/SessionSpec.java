package dev.outboard.session;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.JsonSerializable;
import dev.outboard.model.ModelSpec;
import java.util.List;

/**
 * What a session was created with, defaults filled in (API.md "Sessions"). {@code approvals} are
 * the session's own approval patterns (see {@link dev.outboard.tools.ApprovalPolicy}), on top of
 * its org's. A subagent has its {@code parent}'s id, its {@code depth} (1 for a child of a
 * top-level session) and the {@code tools} it may use (empty: all). Sessions recorded before these
 * existed have none of them.
 */
public record SessionSpec(
    String prompt,
    ModelSpec model,
    String system,
    int maxTurns,
    boolean keepOpen,
    JsonNode metadata,
    @JsonInclude(JsonInclude.Include.NON_EMPTY) List<String> approvals,
    @JsonInclude(JsonInclude.Include.NON_NULL) String parent,
    @JsonInclude(JsonInclude.Include.NON_DEFAULT) int depth,
    @JsonInclude(JsonInclude.Include.NON_EMPTY) List<String> tools,
    @JsonInclude(JsonInclude.Include.NON_NULL) Budget budget)
    implements JsonSerializable {

  public SessionSpec {
    approvals = approvals == null ? List.of() : List.copyOf(approvals);
    tools = tools == null ? List.of() : List.copyOf(tools);
  }

  public SessionSpec(
      String prompt,
      ModelSpec model,
      String system,
      int maxTurns,
      boolean keepOpen,
      JsonNode metadata) {
    this(prompt, model, system, maxTurns, keepOpen, metadata, List.of());
  }

  public SessionSpec(
      String prompt,
      ModelSpec model,
      String system,
      int maxTurns,
      boolean keepOpen,
      JsonNode metadata,
      List<String> approvals) {
    this(prompt, model, system, maxTurns, keepOpen, metadata, approvals, null, 0, List.of(), null);
  }

  public SessionSpec(
      String prompt,
      ModelSpec model,
      String system,
      int maxTurns,
      boolean keepOpen,
      JsonNode metadata,
      List<String> approvals,
      String parent,
      int depth,
      List<String> tools) {
    this(
        prompt, model, system, maxTurns, keepOpen, metadata, approvals, parent, depth, tools, null);
  }

  /** The session's own budget: its token budget and action, and maxTurns. */
  public Budget ownBudget() {
    Budget b = budget == null ? Budget.NONE : budget;
    return new Budget(b.maxTokens(), maxTurns, b.onExceeded());
  }

  /** True if this session may use tool {@code name}. */
  public boolean mayUse(String name) {
    return tools.isEmpty() || tools.contains(name);
  }
}
