package dev.outboard.sandbox;

import static dev.outboard.Futures.cause;

import dev.outboard.Futures;
import dev.outboard.sandbox.SandboxHandle.Collected;
import dev.outboard.sandbox.SandboxHandle.Result;
import dev.outboard.sandbox.SandboxProvider.Entry;
import dev.outboard.sandbox.SandboxProvider.ExecResult;
import dev.outboard.tools.ToolCall;
import dev.outboard.vfs.FileTree;
import dev.outboard.vfs.TextFiles;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;

/**
 * The tools on {@code /workspace} and {@code bash}, over a {@link SandboxProvider}: a command,
 * read, write, edit, ls, and glob and grep over the files walked below a path. Answers are
 * sentences for the model; a tool-level failure (a missing file, a bad pattern) is an error answer,
 * while a failure of the sandbox itself (gone, unreachable) fails the stage for {@link
 * SandboxHandle} to handle. Runs off the actor: it holds no state but the provider.
 */
final class WorkspaceTools {
  private static final int MAX_WALK = 5000;

  private final SandboxProvider provider;

  WorkspaceTools(SandboxProvider provider) {
    this.provider = provider;
  }

  /** Runs {@code call} in sandbox {@code id}; {@code callId} is a command's execution id. */
  CompletionStage<Result> run(String id, String callId, ToolCall call, int maxChars) {
    String path = call.path().toString();
    if (call instanceof ToolCall.Bash b) {
      Duration timeout = b.timeoutMs() == null ? null : Duration.ofMillis(b.timeoutMs());
      return provider
          .exec(id, callId, b.command(), timeout)
          .thenApply(r -> ok(bashResult(r, timeout, maxChars)));
    } else if (call instanceof ToolCall.Read r) {
      return fileOp(
          provider
              .read(id, path)
              .thenApply(c -> ok(TextFiles.numbered(path, c, r.offset(), r.limit(), maxChars))));
    } else if (call instanceof ToolCall.Write w) {
      return fileOp(
          provider
              .write(id, path, w.content())
              .thenApply(v -> ok(wrote("wrote", path, w.content()))));
    } else if (call instanceof ToolCall.Edit e) {
      return fileOp(provider.read(id, path).thenCompose(c -> edit(id, path, c, e)));
    } else if (call instanceof ToolCall.Ls) {
      return fileOp(provider.list(id, path).thenApply(entries -> ok(ls(path, entries))));
    } else if (call instanceof ToolCall.Glob g) {
      return fileOp(
          walk(id, path).thenApply(files -> ok(tree(files).glob(call.path(), g.pattern()))));
    } else if (call instanceof ToolCall.Grep g) {
      return fileOp(
          walk(id, path)
              .thenCompose(files -> readAll(id, files))
              .thenApply(
                  contents ->
                      ok(tree(contents).grep(call.path(), g.pattern(), g.glob(), maxChars))));
    }
    return CompletableFuture.completedFuture(
        new Result("this tool does not work on " + path, true));
  }

  /**
   * The files under {@code /workspace} by path, with their text when {@code contents}; a failure is
   * the answer's {@code error}.
   */
  CompletionStage<Collected> files(String id, boolean contents) {
    return Futures.attempt(
            () ->
                contents
                    ? walk(id, "/workspace").thenCompose(f -> readAll(id, f))
                    : walk(id, "/workspace"))
        .handle(
            (f, e) ->
                e == null
                    ? new Collected(f, null)
                    : new Collected(new TreeMap<>(), describe(cause(e))));
  }

  /** The failure's message, or its name when it has none. */
  static String describe(Throwable cause) {
    return cause.getMessage() == null ? cause.toString() : cause.getMessage();
  }

  private CompletionStage<Result> edit(String id, String path, String content, ToolCall.Edit e) {
    String edited = TextFiles.edit(path, content, e.oldString(), e.newString(), e.replaceAll());
    return provider.write(id, path, edited).thenApply(v -> ok(wrote("edited", path, edited)));
  }

  /**
   * Tool-level failures (missing file, bad regex, ...) become error results; a gone sandbox stays a
   * failure.
   */
  private static CompletionStage<Result> fileOp(CompletionStage<Result> op) {
    return op.handle(
            (r, e) -> {
              if (e == null) return CompletableFuture.completedFuture(r);
              Throwable c = cause(e);
              if (c instanceof TextFiles.ToolFailure || c instanceof IllegalArgumentException) {
                return CompletableFuture.completedFuture(new Result(c.getMessage(), true));
              }
              return CompletableFuture.<Result>failedFuture(c);
            })
        .thenCompose(s -> s);
  }

  private static Result ok(String content) {
    return new Result(content, false);
  }

  private static String wrote(String verb, String path, String content) {
    return verb + " " + path + " (" + content.getBytes(StandardCharsets.UTF_8).length + " bytes)";
  }

  private static String bashResult(ExecResult r, Duration timeout, int maxChars) {
    StringBuilder out =
        new StringBuilder(
            r.output().length() > maxChars ? r.output().substring(0, maxChars) : r.output());
    if (r.truncated() || r.output().length() > maxChars) out.append("\n[output truncated]");
    if (r.timedOut()) {
      out.append("\n[the command timed out")
          .append(timeout == null ? "" : " after " + timeout.toMillis() + " ms")
          .append(" and was killed]");
    }
    if (r.exitCode() != 0 && !r.timedOut())
      out.append("\n[exit code ").append(r.exitCode()).append("]");
    if (out.length() == 0) out.append("(no output)");
    return out.toString();
  }

  private static String ls(String path, List<Entry> entries) {
    if (entries.isEmpty()) return "(" + path + " is empty)";
    List<String> names = new ArrayList<>();
    for (Entry e : entries) {
      String name = e.path().substring(e.path().lastIndexOf('/') + 1);
      names.add(e.directory() ? name + "/" : name);
    }
    return String.join("\n", names);
  }

  /** Every file at or below {@code path} (a file: itself), keyed by its /workspace path. */
  private CompletionStage<TreeMap<String, String>> walk(String id, String path) {
    TreeMap<String, String> files = new TreeMap<>();
    return provider
        .list(id, path)
        .handle(
            (entries, e) -> {
              if (e != null
                  && cause(e).getMessage() != null
                  && cause(e).getMessage().endsWith("is not a directory")) {
                files.put(path, "");
                return CompletableFuture.<Void>completedFuture(null);
              }
              if (e != null) return CompletableFuture.<Void>failedFuture(cause(e));
              return walkEntries(id, entries, files);
            })
        .thenCompose(s -> s)
        .thenApply(v -> files);
  }

  private CompletionStage<Void> walkEntries(
      String id, List<Entry> entries, TreeMap<String, String> files) {
    CompletionStage<Void> chain = CompletableFuture.completedFuture(null);
    for (Entry e : entries) {
      if (files.size() >= MAX_WALK) break;
      if (e.directory()) {
        chain =
            chain.thenCompose(
                v ->
                    provider
                        .list(id, e.path())
                        .thenCompose(children -> walkEntries(id, children, files)));
      } else {
        files.put(e.path(), "");
      }
    }
    return chain;
  }

  private CompletionStage<TreeMap<String, String>> readAll(
      String id, TreeMap<String, String> files) {
    TreeMap<String, String> contents = new TreeMap<>();
    CompletionStage<Void> chain = CompletableFuture.completedFuture(null);
    for (String f : files.keySet()) {
      // Files that cannot be read as text (binary, too big) are skipped, as grep -I would.
      chain =
          chain.thenCompose(
              v ->
                  provider
                      .read(id, f)
                      .handle(
                          (c, e) -> {
                            if (e == null) contents.put(f, c);
                            return null;
                          }));
    }
    return chain.thenApply(v -> contents);
  }

  private static FileTree tree(TreeMap<String, String> files) {
    return new FileTree(files, Set.of("/workspace"));
  }
}
