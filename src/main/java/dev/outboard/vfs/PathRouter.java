package dev.outboard.vfs;

import java.util.EnumSet;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * Routes a path to the namespace that serves it. A node mounts the namespaces it has backends for;
 * a path outside them — an unknown top directory or one without a backend here — gets one clear
 * error naming the path and what is mounted.
 */
public final class PathRouter {
  private final Set<Namespace> mounted;

  public PathRouter(Set<Namespace> mounted) {
    this.mounted = mounted.isEmpty() ? EnumSet.noneOf(Namespace.class) : EnumSet.copyOf(mounted);
  }

  public Set<Namespace> mounted() {
    return EnumSet.copyOf(mounted);
  }

  public boolean isMounted(Namespace ns) {
    return mounted.contains(ns);
  }

  /**
   * The namespace of {@code path}, or an {@link VirtualPath.InvalidPathException} saying why none.
   */
  public Namespace route(VirtualPath path) {
    return Namespace.ofDir(path.top())
        .filter(mounted::contains)
        .orElseThrow(() -> new VirtualPath.InvalidPathException(notMounted(path)));
  }

  public String notMounted(VirtualPath path) {
    return "path \""
        + path
        + "\" is not in a mounted namespace; this agent's filesystem has "
        + mounted.stream().map(Namespace::root).sorted().collect(Collectors.joining(", "));
  }
}
