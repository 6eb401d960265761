package dev.outboard.session;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.JsonSerializable;
import dev.outboard.model.ModelSpec;
import java.util.List;

/**
 * What a session was created with, defaults filled in (API.md "Sessions"). {@code approvals} are
 * the session's own approval patterns (see {@link dev.outboard.tools.ApprovalPolicy}), on top of
 * its org's; sessions recorded before approvals existed have none.
 */
public record SessionSpec(
    String prompt, ModelSpec model, String system, int maxTurns, boolean keepOpen, JsonNode metadata,
    @JsonInclude(JsonInclude.Include.NON_EMPTY) List<String> approvals)
    implements JsonSerializable {

  public SessionSpec {
    approvals = approvals == null ? List.of() : List.copyOf(approvals);
  }

  public SessionSpec(String prompt, ModelSpec model, String system, int maxTurns, boolean keepOpen, JsonNode metadata) {
    this(prompt, model, system, maxTurns, keepOpen, metadata, List.of());
  }
}
