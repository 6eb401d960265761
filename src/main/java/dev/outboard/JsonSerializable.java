package dev.outboard;

/**
 * Marker for every message, event and state that crosses a node or the journal; bound to Pekko's
 * jackson-json serializer in {@code serialization.conf}.
 */
public interface JsonSerializable {}
