package dev.outboard.memory;

import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The part of every system prompt that comes from the org's files: the skills index (name,
 * description and path of each {@code /skills/<name>/SKILL.md}, from its front matter; bodies are
 * read on demand) and the memory files (path and first line) up to a size budget, with a short note
 * on how memory works. Cached per org for a moment so that a busy session does not query the
 * database on every turn; a write through this node refreshes it at once.
 */
public final class SkillIndex {

  public record Skill(String name, String description, String path) {}

  private record Cached(String text, long expiresNanos) {}

  private final OrgFileStore store;
  private final int budgetChars;
  private final long ttlNanos;
  private final Map<String, Cached> cache = new ConcurrentHashMap<>();

  public SkillIndex(OrgFileStore store, int budgetChars, Duration ttl) {
    this.store = store;
    this.budgetChars = budgetChars;
    this.ttlNanos = ttl.toNanos();
  }

  public void invalidate(String org) {
    cache.remove(org);
  }

  /** The prompt section for {@code org}. */
  public CompletionStage<String> section(String org) {
    Cached cached = cache.get(org);
    if (cached != null && cached.expiresNanos() > System.nanoTime())
      return CompletableFuture.completedFuture(cached.text());
    return store
        .contents(org, OrgFileStore.SKILLS)
        .thenCombine(store.contents(org, OrgFileStore.MEMORY), this::render)
        .thenApply(
            text -> {
              cache.put(org, new Cached(text, System.nanoTime() + ttlNanos));
              return text;
            });
  }

  String render(TreeMap<String, String> skills, TreeMap<String, String> memory) {
    StringBuilder sb = new StringBuilder();
    sb.append(
            "Memory: /memory holds notes shared by everyone in your organisation and survives this"
                + " session. ")
        .append(
            "Read it before you start; when you learn something others will need, write or edit a"
                + " file there ")
        .append(
            "(edit replaces an exact string, so concurrent edits by other sessions are never lost)."
                + " ")
        .append("Keep /session for notes that only matter to this session.\n");
    List<Skill> index = skills(skills);
    if (!index.isEmpty()) {
      sb.append("\nSkills (read a skill's file before you use it):\n");
      for (Skill s : index) {
        String line = "- " + s.name() + ": " + s.description() + " (" + s.path() + ")\n";
        if (sb.length() + line.length() > budgetChars / 2) {
          sb.append("- ... more skills: ls /skills\n");
          break;
        }
        sb.append(line);
      }
    }
    if (!memory.isEmpty()) {
      sb.append("\nMemory files:\n");
      int shown = 0;
      for (Map.Entry<String, String> e : firstLines(memory).entrySet()) {
        String first =
            e.getValue().length() > 160 ? e.getValue().substring(0, 160) + "..." : e.getValue();
        String line = "- " + e.getKey() + (first.isEmpty() ? "" : ": " + first) + "\n";
        if (sb.length() + line.length() > budgetChars) {
          sb.append("- ... ").append(memory.size() - shown).append(" more: ls /memory\n");
          break;
        }
        sb.append(line);
        shown++;
      }
    }
    return sb.toString();
  }

  /**
   * Skills from {@code /skills/<name>/SKILL.md} files with {@code name}/{@code description} front
   * matter.
   */
  public static List<Skill> skills(Map<String, String> files) {
    List<Skill> out = new ArrayList<>();
    for (Map.Entry<String, String> e : files.entrySet()) {
      String[] parts = e.getKey().split("/");
      if (parts.length != 4 || !parts[3].equals("SKILL.md")) continue;
      Map<String, String> front = frontMatter(e.getValue());
      String name = front.getOrDefault("name", "").isBlank() ? parts[2] : front.get("name");
      String description = front.getOrDefault("description", "(no description)");
      out.add(new Skill(name, description, e.getKey()));
    }
    return out;
  }

  /** {@code key: value} lines between a leading {@code ---} and the next {@code ---}. */
  static Map<String, String> frontMatter(String content) {
    Map<String, String> out = new TreeMap<>();
    String[] lines = content.split("\n", -1);
    if (lines.length == 0 || !lines[0].strip().equals("---")) return out;
    for (int i = 1; i < lines.length && !lines[i].strip().equals("---"); i++) {
      int colon = lines[i].indexOf(':');
      if (colon <= 0) continue;
      String value = lines[i].substring(colon + 1).strip();
      if (value.length() >= 2
          && (value.startsWith("\"") && value.endsWith("\"")
              || value.startsWith("'") && value.endsWith("'"))) {
        value = value.substring(1, value.length() - 1);
      }
      out.put(lines[i].substring(0, colon).strip(), value);
    }
    return out;
  }

  /** Each file's first line, stripped, by path. */
  static LinkedHashMap<String, String> firstLines(Map<String, String> files) {
    LinkedHashMap<String, String> out = new LinkedHashMap<>();
    for (Map.Entry<String, String> e : files.entrySet()) {
      String content = e.getValue();
      int nl = content.indexOf('\n');
      out.put(e.getKey(), (nl < 0 ? content : content.substring(0, nl)).strip());
    }
    return out;
  }
}
