package dev.outboard.model;

import dev.outboard.JsonSerializable;
import java.util.List;

/** A transcript message. Tool results travel in {@code user} messages, as providers expect. */
public record Message(String role, List<Block> content) implements JsonSerializable {
  public static final String USER = "user";
  public static final String ASSISTANT = "assistant";

  public Message {
    content = List.copyOf(content);
  }

  public static Message user(List<Block> content) {
    return new Message(USER, content);
  }

  public static Message assistant(List<Block> content) {
    return new Message(ASSISTANT, content);
  }
}
