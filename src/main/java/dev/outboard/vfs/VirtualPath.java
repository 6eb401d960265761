package dev.outboard.vfs;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

/**
 * A normalised absolute path of the agent's filesystem: {@code /} plus segments, none empty, {@code
 * .} or {@code ..}. {@link #parse} refuses anything that could escape a namespace or that a backend
 * might read differently: relative paths, {@code ..}, NUL and control characters, backslashes,
 * percent-encoded separators and dots, and over-long paths.
 */
public record VirtualPath(List<String> segments) {
  public static final int MAX_LENGTH = 4096;
  public static final int MAX_SEGMENT = 255;
  public static final VirtualPath ROOT = new VirtualPath(List.of());
  private static final Pattern ENCODED =
      Pattern.compile("%(2e|2f|5c|00)", Pattern.CASE_INSENSITIVE);

  public VirtualPath {
    segments = List.copyOf(segments);
  }

  /** Thrown with a sentence that names the path and says what is wrong with it. */
  public static final class InvalidPathException extends IllegalArgumentException {
    public InvalidPathException(String message) {
      super(message);
    }
  }

  public static VirtualPath parse(String raw) {
    if (raw == null || raw.isEmpty()) throw new InvalidPathException("path is empty");
    String shown = raw.length() > 120 ? raw.substring(0, 120) + "..." : raw;
    if (raw.length() > MAX_LENGTH) {
      throw new InvalidPathException(
          "path " + quote(shown) + " is longer than " + MAX_LENGTH + " characters");
    }
    for (int i = 0; i < raw.length(); i++) {
      char c = raw.charAt(i);
      if (c == 0)
        throw new InvalidPathException(
            "path " + quote(shown.replace("\0", "\\0")) + " contains a NUL byte");
      if (c < 0x20 || c == 0x7f)
        throw new InvalidPathException("path " + quote(shown) + " contains a control character");
      if (c == '\\')
        throw new InvalidPathException("path " + quote(shown) + " contains a backslash; use '/'");
    }
    if (ENCODED.matcher(raw).find()) {
      throw new InvalidPathException(
          "path " + quote(shown) + " contains a percent-encoded '.', '/', '\\' or NUL");
    }
    if (!raw.startsWith("/")) {
      throw new InvalidPathException(
          "path "
              + quote(shown)
              + " is not absolute; paths start with /workspace, /memory, /skills or /session");
    }
    List<String> out = new ArrayList<>();
    for (String s : raw.split("/")) {
      if (s.isEmpty() || s.equals(".")) continue;
      if (s.equals(".."))
        throw new InvalidPathException(
            "path " + quote(shown) + " contains '..', which is not allowed");
      if (s.length() > MAX_SEGMENT) {
        throw new InvalidPathException(
            "path " + quote(shown) + " has a name longer than " + MAX_SEGMENT + " characters");
      }
      out.add(s);
    }
    return new VirtualPath(out);
  }

  private static String quote(String s) {
    return "\"" + s + "\"";
  }

  public boolean isRoot() {
    return segments.isEmpty();
  }

  /** The first segment (the namespace directory), or empty for {@code /}. */
  public String top() {
    return segments.isEmpty() ? "" : segments.get(0);
  }

  /** True if this is {@code other} or lies below it. */
  public boolean startsWith(VirtualPath other) {
    return segments.size() >= other.segments.size()
        && segments.subList(0, other.segments.size()).equals(other.segments);
  }

  public VirtualPath child(String name) {
    List<String> s = new ArrayList<>(segments);
    s.add(name);
    return new VirtualPath(s);
  }

  @Override
  public String toString() {
    return "/" + String.join("/", segments);
  }
}
