package dev.outboard.session;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.JsonSerializable;
import dev.outboard.model.ModelSpec;

/** What a session was created with, defaults filled in (API.md "Sessions"). */
public record SessionSpec(
    String prompt, ModelSpec model, String system, int maxTurns, boolean keepOpen, JsonNode metadata)
    implements JsonSerializable {}
