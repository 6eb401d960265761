package dev.outboard.session;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonProperty;
import dev.outboard.JsonSerializable;
import dev.outboard.tools.ToolCall;
import dev.outboard.vfs.FileTree;
import dev.outboard.vfs.TextFiles;
import dev.outboard.vfs.TextFiles.ToolFailure;
import dev.outboard.vfs.VirtualPath;
import java.nio.charset.StandardCharsets;
import java.util.Set;
import java.util.SortedMap;
import java.util.TreeMap;

/**
 * The {@code /session/**} backend: durable per-session files kept in the session's state (and so in
 * its journal). Immutable: an operation returns its result and, for writes, the {@link Change} to
 * record; the entity's event handler applies the change. Paths are map keys in normalised form.
 */
public record SessionFiles(SortedMap<String, String> files, @JsonIgnore long totalBytes)
    implements JsonSerializable {
  public static final SessionFiles EMPTY = new SessionFiles(new TreeMap<>());

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
    String old =
        change.content() == null
            ? next.remove(change.path())
            : next.put(change.path(), change.content());
    long total =
        totalBytes
            - (old == null ? 0 : utf8Length(old))
            + (change.content() == null ? 0 : utf8Length(change.content()));
    return new SessionFiles(next, total);
  }

  public Outcome execute(ToolCall call, Limits limits) {
    try {
      if (call instanceof ToolCall.Read r) {
        return Outcome.ok(tree().read(r.path(), r.offset(), r.limit(), limits.maxOutputChars()));
      } else if (call instanceof ToolCall.Write w) {
        return write(w.path(), w.content(), limits, "wrote");
      } else if (call instanceof ToolCall.Edit e) {
        String edited =
            TextFiles.edit(
                e.path().toString(), file(e.path()), e.oldString(), e.newString(), e.replaceAll());
        return write(e.path(), edited, limits, "edited");
      } else if (call instanceof ToolCall.Ls l) {
        return Outcome.ok(tree().ls(l.path()));
      } else if (call instanceof ToolCall.Glob g) {
        return Outcome.ok(tree().glob(g.path(), g.pattern()));
      } else if (call instanceof ToolCall.Grep g) {
        return Outcome.ok(tree().grep(g.path(), g.pattern(), g.glob(), limits.maxOutputChars()));
      }
      return Outcome.error("bash runs in the sandbox, not in /session");
    } catch (ToolFailure e) {
      return Outcome.error(e.getMessage());
    }
  }

  private FileTree tree() {
    return new FileTree(files, Set.of("/session"));
  }

  private String file(VirtualPath path) {
    return tree().file(path);
  }

  private boolean isDirectory(String path) {
    return tree().isDirectory(path);
  }

  private Outcome write(VirtualPath path, String content, Limits limits, String verb) {
    String key = path.toString();
    if (path.segments().size() < 2)
      throw new ToolFailure(key + " is a directory; write a file below it, e.g. /session/notes.md");
    if (isDirectory(key)) throw new ToolFailure(key + " is a directory");
    long size = utf8Length(content);
    if (size > limits.maxFileBytes()) {
      throw new ToolFailure(
          "content of "
              + key
              + " is "
              + size
              + " bytes; session files are limited to "
              + limits.maxFileBytes()
              + " bytes");
    }
    String old = files.get(key);
    long total = totalBytes() - (old == null ? 0 : utf8Length(old)) + size;
    if (total > limits.maxTotalBytes()) {
      throw new ToolFailure(
          "session files would total "
              + total
              + " bytes; the limit is "
              + limits.maxTotalBytes()
              + " bytes");
    }
    for (VirtualPath p = parent(path); p.segments().size() > 1; p = parent(p)) {
      if (files.containsKey(p.toString()))
        throw new ToolFailure("cannot create " + key + ": " + p + " is a file");
    }
    return new Outcome(verb + " " + key + " (" + size + " bytes)", false, new Change(key, content));
  }

  private static VirtualPath parent(VirtualPath p) {
    return new VirtualPath(p.segments().subList(0, p.segments().size() - 1));
  }

  private static long utf8Length(String s) {
    return s.getBytes(StandardCharsets.UTF_8).length;
  }
}
