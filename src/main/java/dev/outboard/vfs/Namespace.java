package dev.outboard.vfs;

import java.util.Optional;

/**
 * The top-level directories of the agent's filesystem, each served by one backend (DESIGN.md §5).
 */
public enum Namespace {
  WORKSPACE("workspace"),
  MEMORY("memory"),
  SKILLS("skills"),
  SESSION("session");

  private final String dir;

  Namespace(String dir) {
    this.dir = dir;
  }

  public String dir() {
    return dir;
  }

  public String root() {
    return "/" + dir;
  }

  public static Optional<Namespace> ofDir(String dir) {
    for (Namespace ns : values()) if (ns.dir.equals(dir)) return Optional.of(ns);
    return Optional.empty();
  }
}
