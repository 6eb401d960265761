package dev.outboard.tools;

import dev.outboard.vfs.VirtualPath;

/** A tool call whose arguments passed validation: typed, paths normalised. */
public sealed interface ToolCall {

  /** The path the call is about (the search root for glob/grep, {@code /workspace} for bash). */
  VirtualPath path();

  record Read(VirtualPath path, int offset, Integer limit) implements ToolCall {}

  record Write(VirtualPath path, String content) implements ToolCall {}

  record Edit(VirtualPath path, String oldString, String newString, boolean replaceAll)
      implements ToolCall {}

  record Ls(VirtualPath path) implements ToolCall {}

  record Glob(VirtualPath path, String pattern) implements ToolCall {}

  record Grep(VirtualPath path, String pattern, String glob) implements ToolCall {}

  record Bash(VirtualPath path, String command, Integer timeoutMs) implements ToolCall {}

  /**
   * Hands {@code prompt} to a subagent (a child session) and waits for its final text; {@code
   * tools} (empty: the session's own) limits what the child may use. Its path is {@code /}.
   */
  record Task(VirtualPath path, String description, String prompt, java.util.List<String> tools)
      implements ToolCall {}

  /**
   * Calls tool {@code tool} of the org's MCP server {@code server} (offered to the model as {@code
   * server__tool}) with {@code arguments}, a JSON object its server validates. Its path is {@code
   * /} (it touches no file).
   */
  record Mcp(
      VirtualPath path,
      String server,
      String tool,
      com.fasterxml.jackson.databind.node.ObjectNode arguments)
      implements ToolCall {}

  /** Waits for the outside event {@code event}; its path is {@code /} (it touches no file). */
  record Wait(VirtualPath path, String event, int timeoutSeconds) implements ToolCall {}
}
