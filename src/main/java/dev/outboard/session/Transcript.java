package dev.outboard.session;

import dev.outboard.JsonSerializable;
import dev.outboard.model.Message;
import java.util.List;

/** The messages of a session, as API.md's transcript endpoint returns them. */
public record Transcript(List<Message> messages) implements JsonSerializable {
  public Transcript {
    messages = List.copyOf(messages);
  }
}
