package dev.outboard.session;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonProperty;
import dev.outboard.JsonSerializable;
import dev.outboard.tools.ToolCall;
import dev.outboard.vfs.TextFiles;
import dev.outboard.vfs.TextFiles.ToolFailure;
import dev.outboard.vfs.VirtualPath;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Pattern;

/**
 * The {@code /session/**} backend: durable per-session files kept in the session's state (and so in
 * its journal). Immutable: an operation returns its result and, for writes, the {@link Change} to
 * record; the entity's event handler applies the change. Paths are map keys in normalised form.
 */
public record SessionFiles(SortedMap<String, String> files, @JsonIgnore long totalBytes) implements JsonSerializable {
  public static final SessionFiles EMPTY = new SessionFiles(new TreeMap<>());
  private static final int MAX_MATCHES = 500;
  private static final long GREP_BUDGET_NANOS = 500_000_000L;

  public SessionFiles {
    files = java.util.Collections.unmodifiableSortedMap(new TreeMap<>(files));
  }

  public SessionFiles(SortedMap<String, String> files) {
    this(files, sizeOf(files));
  }

  /** From a snapshot: the total is measured, never taken from the stored JSON. */
  @JsonCreator
  static SessionFiles fromJson(@JsonProperty("files") SortedMap<String, String> files) {
    return new SessionFiles(files);
  }

  private static long sizeOf(SortedMap<String, String> files) {
    long total = 0;
    for (String c : files.values()) total += utf8Length(c);
    return total;
  }

  /** A file written ({@code content} set) or removed ({@code content} null). */
  public record Change(String path, String content) implements JsonSerializable {}

  /** What a tool call produced. */
  public record Outcome(String content, boolean isError, Change change) {
    static Outcome ok(String content) {
      return new Outcome(content, false, null);
    }

    static Outcome error(String message) {
      return new Outcome(message, true, null);
    }
  }

  /** Limits of per-session files. */
  public record Limits(long maxFileBytes, long maxTotalBytes, int maxOutputChars) {}

  public SessionFiles apply(Change change) {
    TreeMap<String, String> next = new TreeMap<>(files);
    String old = change.content() == null ? next.remove(change.path()) : next.put(change.path(), change.content());
    long total = totalBytes - (old == null ? 0 : utf8Length(old)) + (change.content() == null ? 0 : utf8Length(change.content()));
    return new SessionFiles(next, total);
  }

  public Outcome execute(ToolCall call, Limits limits) {
    try {
      if (call instanceof ToolCall.Read r) {
        return Outcome.ok(TextFiles.numbered(r.path().toString(), file(r.path()), r.offset(), r.limit(), limits.maxOutputChars()));
      } else if (call instanceof ToolCall.Write w) {
        return write(w.path(), w.content(), limits, "wrote");
      } else if (call instanceof ToolCall.Edit e) {
        String edited = TextFiles.edit(e.path().toString(), file(e.path()), e.oldString(), e.newString(), e.replaceAll());
        return write(e.path(), edited, limits, "edited");
      } else if (call instanceof ToolCall.Ls l) {
        return Outcome.ok(ls(l.path()));
      } else if (call instanceof ToolCall.Glob g) {
        return Outcome.ok(glob(g.path(), g.pattern()));
      } else if (call instanceof ToolCall.Grep g) {
        return Outcome.ok(grep(g.path(), g.pattern(), g.glob(), limits.maxOutputChars()));
      }
      return Outcome.error("bash runs in the sandbox, not in /session");
    } catch (ToolFailure e) {
      return Outcome.error(e.getMessage());
    }
  }

  private String file(VirtualPath path) {
    String content = files.get(path.toString());
    if (content != null) return content;
    if (isDirectory(path.toString())) throw new ToolFailure(path + " is a directory; use ls");
    throw new ToolFailure("file not found: " + path);
  }

  private boolean isDirectory(String path) {
    String prefix = path.endsWith("/") ? path : path + "/";
    SortedMap<String, String> tail = files.tailMap(prefix);
    return path.equals("/session") || (!tail.isEmpty() && tail.firstKey().startsWith(prefix));
  }

  private Outcome write(VirtualPath path, String content, Limits limits, String verb) {
    String key = path.toString();
    if (path.segments().size() < 2) throw new ToolFailure(key + " is a directory; write a file below it, e.g. /session/notes.md");
    if (isDirectory(key)) throw new ToolFailure(key + " is a directory");
    long size = utf8Length(content);
    if (size > limits.maxFileBytes()) {
      throw new ToolFailure("content of " + key + " is " + size + " bytes; session files are limited to " + limits.maxFileBytes() + " bytes");
    }
    String old = files.get(key);
    long total = totalBytes() - (old == null ? 0 : utf8Length(old)) + size;
    if (total > limits.maxTotalBytes()) {
      throw new ToolFailure("session files would total " + total + " bytes; the limit is " + limits.maxTotalBytes() + " bytes");
    }
    for (VirtualPath p = parent(path); p.segments().size() > 1; p = parent(p)) {
      if (files.containsKey(p.toString())) throw new ToolFailure("cannot create " + key + ": " + p + " is a file");
    }
    return new Outcome(verb + " " + key + " (" + size + " bytes)", false, new Change(key, content));
  }

  private static VirtualPath parent(VirtualPath p) {
    return new VirtualPath(p.segments().subList(0, p.segments().size() - 1));
  }

  private String ls(VirtualPath path) {
    String key = path.toString();
    if (files.containsKey(key)) return key;
    if (!isDirectory(key)) throw new ToolFailure("no such file or directory: " + key);
    String prefix = key + "/";
    TreeSet<String> entries = new TreeSet<>();
    for (String f : files.tailMap(prefix).keySet()) {
      if (!f.startsWith(prefix)) break;
      String rest = f.substring(prefix.length());
      int slash = rest.indexOf('/');
      entries.add(slash < 0 ? rest : rest.substring(0, slash + 1));
    }
    return entries.isEmpty() ? "(" + key + " is empty)" : String.join("\n", entries);
  }

  /** Files at or below {@code root} ({@code /} means all of /session). */
  private Map<String, String> under(VirtualPath root) {
    String key = root.toString();
    if (root.isRoot()) return files;
    if (files.containsKey(key)) return Map.of(key, files.get(key));
    return files.subMap(key + "/", key + "/\uffff");
  }

  private String glob(VirtualPath root, String pattern) {
    var matches = TextFiles.glob(pattern);
    String base = root.isRoot() ? "/" : root + "/";
    List<String> out = new ArrayList<>();
    for (String f : under(root).keySet()) {
      String rel = f.startsWith(base) ? f.substring(base.length()) : f.substring(f.lastIndexOf('/') + 1);
      if (matches.test(rel)) out.add(f);
      if (out.size() >= MAX_MATCHES) break;
    }
    return out.isEmpty() ? "no files match " + pattern + " under " + root : String.join("\n", out);
  }

  private String grep(VirtualPath root, String pattern, String glob, int maxChars) {
    Pattern regex = TextFiles.regex(pattern);
    var only = glob == null ? null : TextFiles.glob(glob);
    String base = root.isRoot() ? "/" : root + "/";
    long deadline = System.nanoTime() + GREP_BUDGET_NANOS;
    List<String> out = new ArrayList<>();
    for (Map.Entry<String, String> e : under(root).entrySet()) {
      String rel = e.getKey().startsWith(base) ? e.getKey().substring(base.length()) : e.getKey().substring(e.getKey().lastIndexOf('/') + 1);
      if (only != null && !only.test(rel)) continue;
      TextFiles.grep(e.getKey(), e.getValue(), regex, out, MAX_MATCHES, deadline);
      if (out.size() >= MAX_MATCHES) break;
    }
    if (out.isEmpty()) return "no matches for " + pattern + " under " + root;
    String text = String.join("\n", out);
    if (text.length() > maxChars) text = text.substring(0, maxChars) + "\n[output truncated at " + maxChars + " characters]";
    else if (out.size() >= MAX_MATCHES) text += "\n[stopped after " + MAX_MATCHES + " matches]";
    return text;
  }

  private static long utf8Length(String s) {
    return s.getBytes(StandardCharsets.UTF_8).length;
  }
}
