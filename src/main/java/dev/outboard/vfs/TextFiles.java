package dev.outboard.vfs;

import java.nio.file.FileSystems;
import java.nio.file.Path;
import java.nio.file.PathMatcher;
import java.util.List;
import java.util.function.Predicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * Text-file semantics shared by every backend, so that {@code read}, {@code edit}, {@code glob} and
 * {@code grep} behave the same on {@code /session}, org files and the sandbox.
 */
public final class TextFiles {
  private TextFiles() {}

  /** A tool-level failure whose message is shown to the model. */
  public static final class ToolFailure extends RuntimeException {
    public ToolFailure(String message) {
      super(message, null, false, false);
    }
  }

  public static final int DEFAULT_READ_LINES = 2000;

  /**
   * Why {@code content} is not text that every store keeps as it is — "a NUL character at index i"
   * or "an unpaired surrogate at index i" — or null if it is.
   */
  public static String notText(String content) {
    for (int i = 0; i < content.length(); i++) {
      char c = content.charAt(i);
      if (c == '\0') return "a NUL character at index " + i;
      if (Character.isHighSurrogate(c)
          && i + 1 < content.length()
          && Character.isLowSurrogate(content.charAt(i + 1))) {
        i++;
      } else if (Character.isSurrogate(c)) {
        return "an unpaired surrogate at index " + i;
      }
    }
    return null;
  }

  /**
   * Lines {@code offset..offset+limit-1} of {@code content}, numbered like {@code cat -n}, within
   * {@code maxChars}.
   */
  public static String numbered(
      String path, String content, int offset, Integer limit, int maxChars) {
    if (content.isEmpty()) return "(" + path + " is empty)";
    String[] lines = content.split("\n", -1);
    int total = content.endsWith("\n") ? lines.length - 1 : lines.length;
    if (offset > total)
      throw new ToolFailure(
          "offset " + offset + " is past the end of " + path + " (" + total + " lines)");
    int last = Math.min(total, offset - 1 + (limit == null ? DEFAULT_READ_LINES : limit));
    StringBuilder out = new StringBuilder();
    for (int i = offset; i <= last; i++) {
      String line = String.format("%6d\t%s%n", i, lines[i - 1]);
      if (out.length() + line.length() > maxChars) {
        if (out.length() == 0) {
          // This line alone is over the cap: show its start and move on past it.
          out.append(line, 0, Math.min(maxChars, line.length() - 1))
              .append("\n[line ")
              .append(i)
              .append(" is longer than ")
              .append(maxChars)
              .append(" characters and was cut");
          if (i < total) out.append("; read on with offset=").append(i + 1);
          return out.append("]\n").toString();
        }
        out.append("[output truncated at ")
            .append(maxChars)
            .append(" characters; read on with offset=")
            .append(i)
            .append("]\n");
        return out.toString();
      }
      out.append(line);
    }
    if (last < total)
      out.append("[")
          .append(total - last)
          .append(" more lines; read on with offset=")
          .append(last + 1)
          .append("]\n");
    return out.toString();
  }

  /**
   * The content after replacing {@code oldString} exactly once (or everywhere, with {@code
   * replaceAll}).
   */
  public static String edit(
      String path, String content, String oldString, String newString, boolean replaceAll) {
    if (oldString.equals(newString))
      throw new ToolFailure("old_string and new_string are the same; nothing to change in " + path);
    int count = occurrences(content, oldString);
    if (count == 0) throw new ToolFailure("old_string was not found in " + path);
    if (count > 1 && !replaceAll) {
      throw new ToolFailure(
          "old_string occurs "
              + count
              + " times in "
              + path
              + "; include more context to make it unique, or set replace_all");
    }
    return replaceAll
        ? content.replace(oldString, newString)
        : replaceFirst(content, oldString, newString);
  }

  public static int occurrences(String content, String needle) {
    int count = 0;
    for (int i = content.indexOf(needle); i >= 0; i = content.indexOf(needle, i + needle.length()))
      count++;
    return count;
  }

  private static String replaceFirst(String content, String oldString, String newString) {
    int i = content.indexOf(oldString);
    return content.substring(0, i) + newString + content.substring(i + oldString.length());
  }

  /** A matcher for glob {@code pattern} applied to paths relative to the search root. */
  public static Predicate<String> glob(String pattern) {
    String p = pattern.startsWith("/") ? pattern.substring(1) : pattern;
    PathMatcher matcher;
    try {
      matcher = FileSystems.getDefault().getPathMatcher("glob:" + p);
    } catch (IllegalArgumentException e) {
      throw new ToolFailure("invalid glob pattern '" + pattern + "': " + e.getMessage());
    }
    // "**/x" should also match "x" at the top, as in most shells' globstar.
    PathMatcher top =
        p.startsWith("**/")
            ? FileSystems.getDefault().getPathMatcher("glob:" + p.substring(3))
            : null;
    return rel -> {
      Path path = Path.of(rel);
      return matcher.matches(path) || (top != null && top.matches(path));
    };
  }

  public static Pattern regex(String pattern) {
    try {
      return Pattern.compile(pattern);
    } catch (PatternSyntaxException e) {
      throw new ToolFailure(
          "invalid regular expression: " + e.getDescription() + " near index " + e.getIndex());
    }
  }

  /**
   * Appends {@code path:line:text} for each line of {@code content} matching {@code regex} to
   * {@code out}; stops after {@code maxMatches} in total. Returns the number of matches added.
   * Matching runs against a deadline so that a pathological expression cannot hang the caller.
   */
  public static int grep(
      String path,
      String content,
      Pattern regex,
      List<String> out,
      int maxMatches,
      long deadlineNanos) {
    int added = 0;
    String[] lines = content.split("\n", -1);
    for (int i = 0; i < lines.length && out.size() < maxMatches; i++) {
      Matcher m = regex.matcher(new Deadline(lines[i], deadlineNanos));
      if (m.find()) {
        String line = lines[i].length() > 500 ? lines[i].substring(0, 500) + "..." : lines[i];
        out.add(path + ":" + (i + 1) + ":" + line);
        added++;
      }
    }
    return added;
  }

  /** A CharSequence that fails once a deadline passes, bounding the time of a regex match. */
  private record Deadline(CharSequence inner, long deadlineNanos) implements CharSequence {
    @Override
    public char charAt(int index) {
      if (System.nanoTime() > deadlineNanos) {
        throw new ToolFailure(
            "grep took too long; simplify the regular expression or narrow the path");
      }
      return inner.charAt(index);
    }

    @Override
    public int length() {
      return inner.length();
    }

    @Override
    public CharSequence subSequence(int start, int end) {
      return new Deadline(inner.subSequence(start, end), deadlineNanos);
    }

    @Override
    public String toString() {
      return inner.toString();
    }
  }
}
