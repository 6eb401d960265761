package dev.outboard.session;

import dev.outboard.JsonSerializable;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The session's todo list: the checklist the system prompt asks the agent to keep in {@code
 * /session/todo.md} ({@code - [ ] step} / {@code - [x] step} lines), as the API shows it.
 */
public final class Todo {
  public static final String PATH = "/session/todo.md";
  private static final Pattern ITEM = Pattern.compile("^\\s*[-*+]\\s+\\[([ xX])]\\s+(.*?)\\s*$");
  private static final int MAX_ITEMS = 200;

  private Todo() {}

  /** One step: its text and whether it is done. */
  public record Item(String text, boolean done) implements JsonSerializable {}

  /**
   * The checklist items of {@code markdown} (other lines are ignored), at most {@value #MAX_ITEMS}.
   */
  public static List<Item> parse(String markdown) {
    if (markdown == null || markdown.isEmpty()) return List.of();
    List<Item> items = new ArrayList<>();
    for (String line : markdown.split("\n", -1)) {
      Matcher m = ITEM.matcher(line);
      if (m.matches() && !m.group(2).isEmpty()) {
        items.add(new Item(m.group(2), !m.group(1).equals(" ")));
        if (items.size() == MAX_ITEMS) break;
      }
    }
    return List.copyOf(items);
  }
}
