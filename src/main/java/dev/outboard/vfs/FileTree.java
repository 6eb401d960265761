package dev.outboard.vfs;

import dev.outboard.vfs.TextFiles.ToolFailure;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SortedMap;
import java.util.TreeSet;
import java.util.regex.Pattern;

/**
 * Read-side tool semantics ({@code read}, {@code ls}, {@code glob}, {@code grep}) over a sorted map
 * of files keyed by their full virtual path. Directories are implied by the paths below them; the
 * namespace roots in {@code roots} are directories even when empty. Every backend that can list its
 * files as a map — session files, org files, or several merged for a search over {@code /} —
 * answers the same way.
 */
public record FileTree(SortedMap<String, String> files, Set<String> roots) {
  public static final int MAX_MATCHES = 500;
  public static final long GREP_BUDGET_NANOS = 500_000_000L;

  public String read(VirtualPath path, int offset, Integer limit, int maxChars) {
    return TextFiles.numbered(path.toString(), file(path), offset, limit, maxChars);
  }

  /** The content of a file, or a failure saying it is a directory or missing. */
  public String file(VirtualPath path) {
    String content = files.get(path.toString());
    if (content != null) return content;
    if (isDirectory(path.toString())) throw new ToolFailure(path + " is a directory; use ls");
    throw new ToolFailure("file not found: " + path);
  }

  public boolean isDirectory(String path) {
    if (roots.contains(path) || path.equals("/")) return true;
    String prefix = path.endsWith("/") ? path : path + "/";
    SortedMap<String, String> tail = files.tailMap(prefix);
    return !tail.isEmpty() && tail.firstKey().startsWith(prefix);
  }

  public String ls(VirtualPath path) {
    String key = path.toString();
    if (files.containsKey(key)) return key;
    if (!isDirectory(key)) throw new ToolFailure("no such file or directory: " + key);
    String prefix = key.equals("/") ? "/" : key + "/";
    TreeSet<String> entries = new TreeSet<>();
    for (String f : files.tailMap(prefix).keySet()) {
      if (!f.startsWith(prefix)) break;
      String rest = f.substring(prefix.length());
      int slash = rest.indexOf('/');
      entries.add(slash < 0 ? rest : rest.substring(0, slash + 1));
    }
    return entries.isEmpty() ? "(" + key + " is empty)" : String.join("\n", entries);
  }

  /** Files at or below {@code root}. */
  private Map<String, String> under(VirtualPath root) {
    String key = root.toString();
    if (root.isRoot()) return files;
    if (files.containsKey(key)) return Map.of(key, files.get(key));
    return files.subMap(key + "/", key + "/\uffff");
  }

  /** The path of {@code file} relative to the search root (a file searched by itself: its name). */
  private static String relative(String file, VirtualPath root) {
    String base = root.isRoot() ? "/" : root + "/";
    return file.startsWith(base)
        ? file.substring(base.length())
        : file.substring(file.lastIndexOf('/') + 1);
  }

  public String glob(VirtualPath root, String pattern) {
    var matches = TextFiles.glob(pattern);
    List<String> out = new ArrayList<>();
    for (String f : under(root).keySet()) {
      if (matches.test(relative(f, root))) out.add(f);
      if (out.size() >= MAX_MATCHES) break;
    }
    return out.isEmpty() ? "no files match " + pattern + " under " + root : String.join("\n", out);
  }

  public String grep(VirtualPath root, String pattern, String glob, int maxChars) {
    Pattern regex = TextFiles.regex(pattern);
    var only = glob == null ? null : TextFiles.glob(glob);
    long deadline = System.nanoTime() + GREP_BUDGET_NANOS;
    List<String> out = new ArrayList<>();
    for (Map.Entry<String, String> e : under(root).entrySet()) {
      if (only != null && !only.test(relative(e.getKey(), root))) continue;
      TextFiles.grep(e.getKey(), e.getValue(), regex, out, MAX_MATCHES, deadline);
      if (out.size() >= MAX_MATCHES) break;
    }
    if (out.isEmpty()) return "no matches for " + pattern + " under " + root;
    String text = String.join("\n", out);
    if (text.length() > maxChars)
      text = text.substring(0, maxChars) + "\n[output truncated at " + maxChars + " characters]";
    else if (out.size() >= MAX_MATCHES) text += "\n[stopped after " + MAX_MATCHES + " matches]";
    return text;
  }
}
