package dev.outboard.model;

import dev.outboard.tools.ToolSpec;
import java.util.List;

/**
 * Everything one model call needs. {@code turn} is the number this call will get (1-based); a call
 * repeated after a crash or a retry carries the same turn and the same transcript.
 */
public record ModelRequest(
    String sessionId, int turn, ModelSpec model, String system, List<ToolSpec> tools, List<Message> messages) {}
