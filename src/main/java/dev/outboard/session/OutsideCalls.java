package dev.outboard.session;

import dev.outboard.memory.OrgFiles;
import dev.outboard.model.Block;
import dev.outboard.sandbox.SandboxHandle;
import dev.outboard.sandbox.SandboxSettings;
import dev.outboard.sandbox.SandboxStatus;
import dev.outboard.session.SessionState.SandboxInfo;
import dev.outboard.tools.ToolCall;
import dev.outboard.tools.ToolCatalog;
import dev.outboard.vfs.FileTree;
import dev.outboard.vfs.Namespace;
import dev.outboard.vfs.PathRouter;
import dev.outboard.vfs.TextFiles;
import java.time.Duration;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Scheduler;
import org.apache.pekko.actor.typed.javadsl.AskPattern;

/**
 * The tool calls whose result comes from outside the session's state: the org's files ({@code
 * /memory}, {@code /skills}), the session's sandbox ({@code bash}, {@code /workspace}), a {@code
 * glob} or {@code grep} over {@code /}, and the tools of the org's MCP servers. Thread-safe: its
 * calls run inside the tool chain, off the actor's thread.
 */
final class OutsideCalls {

  private final SessionServices services;
  private final String sessionId;

  /** For asks made off the actor's thread, where the context must not be touched. */
  private final Scheduler scheduler;

  OutsideCalls(SessionServices services, String sessionId, Scheduler scheduler) {
    this.services = services;
    this.sessionId = sessionId;
    this.scheduler = scheduler;
  }

  /**
   * True if {@code call} runs in the session's sandbox: {@code bash}, or a file tool on {@code
   * /workspace}.
   */
  boolean usesSandbox(ToolCall call) {
    if (!services.hasSandboxes()) return false;
    return call instanceof ToolCall.Bash
        || (!call.path().isRoot() && call.path().top().equals(Namespace.WORKSPACE.dir()));
  }

  /**
   * True if {@code call} is a {@code glob} or {@code grep} over {@code /} that also searches the
   * session's sandbox: only one it already has (a search never provisions one).
   */
  boolean searchesWorkspace(SessionState state, ToolCall call) {
    if (!services.hasSandboxes() || !call.path().isRoot()) return false;
    if (!(call instanceof ToolCall.Glob || call instanceof ToolCall.Grep)) return false;
    SandboxInfo s = state.sandbox();
    return s != null && s.id() != null && s.state() != SandboxStatus.DESTROYED;
  }

  /** True if the call's result comes from outside the session's state (org files, the sandbox). */
  boolean needsOutsideSystem(SessionState state, Block.ToolUse use) {
    ToolCall call = TurnTools.parsed(use).orElse(null);
    if (call == null || call instanceof ToolCall.Wait || call instanceof ToolCall.Task)
      return false;
    if (call instanceof ToolCall.Mcp) return services.mcp() != null;
    if (usesSandbox(call) || searchesWorkspace(state, call)) return true;
    if (services.orgFiles() == null) return false;
    PathRouter router = services.router();
    if (call.path().isRoot())
      return router.isMounted(Namespace.MEMORY) || router.isMounted(Namespace.SKILLS);
    return Namespace.ofDir(call.path().top())
        .filter(router::isMounted)
        .filter(OrgFiles::isOrgNamespace)
        .isPresent();
  }

  /**
   * Runs a call that {@link #needsOutsideSystem} ({@code handle}: the sandbox child, if needed).
   */
  CompletionStage<SessionFiles.Outcome> execute(
      SessionState state,
      SessionFiles files,
      Block.ToolUse use,
      ActorRef<SandboxHandle.Command> handle) {
    ToolCall call = ToolCatalog.parse(use.name(), use.input());
    OrgFiles orgFiles = services.orgFiles();
    int maxChars = services.settings().fileLimits().maxOutputChars();
    if (call instanceof ToolCall.Mcp m) {
      return services
          .mcp()
          .call(state.org(), sessionId, use.id(), m.server(), m.tool(), m.arguments())
          .thenApply(r -> new SessionFiles.Outcome(r.content(), r.isError(), null));
    }
    if (usesSandbox(call)) return inSandbox(handle, use.id(), call, maxChars);
    if (call.path().isRoot()) return searchEverything(state, files, call, handle, maxChars);
    return orgFiles
        .execute(
            new OrgFiles.Caller(state.org(), state.user(), sessionId), use.id(), call, maxChars)
        .thenApply(r -> new SessionFiles.Outcome(r.content(), r.isError(), null));
  }

  /**
   * A {@code glob} or {@code grep} over {@code /}: every namespace the session can see, its
   * sandbox's {@code /workspace} included when it has one. Thread-safe (runs inside the tool
   * chain).
   */
  private CompletionStage<SessionFiles.Outcome> searchEverything(
      SessionState state,
      SessionFiles files,
      ToolCall call,
      ActorRef<SandboxHandle.Command> handle,
      int maxChars) {
    OrgFiles orgFiles = services.orgFiles();
    PathRouter router = services.router();
    boolean org =
        orgFiles != null
            && (router.isMounted(Namespace.MEMORY) || router.isMounted(Namespace.SKILLS));
    CompletionStage<? extends Map<String, String>> orgPart =
        org
            ? orgFiles.everything(state.org())
            : CompletableFuture.completedFuture(Map.<String, String>of());
    CompletionStage<SandboxHandle.Collected> workspacePart =
        handle != null && searchesWorkspace(state, call)
            ? AskPattern.<SandboxHandle.Command, SandboxHandle.Collected>ask(
                    handle,
                    replyTo -> new SandboxHandle.Collect(call instanceof ToolCall.Grep, replyTo),
                    services.sandboxSettings().answerMargin(),
                    scheduler)
                .exceptionally(
                    e -> new SandboxHandle.Collected(new TreeMap<>(), "it did not answer in time"))
            : CompletableFuture.completedFuture(null);
    return orgPart.thenCombine(
        workspacePart,
        (orgFilesFound, workspace) -> {
          TreeMap<String, String> all = new TreeMap<>(orgFilesFound);
          all.putAll(files.files());
          Set<String> roots = new HashSet<>(Set.of("/session", "/memory", "/skills"));
          if (workspace != null && workspace.error() == null) {
            all.putAll(workspace.files());
            roots.add("/workspace");
          }
          FileTree tree = new FileTree(all, roots);
          try {
            String out =
                call instanceof ToolCall.Glob g
                    ? tree.glob(call.path(), g.pattern())
                    : tree.grep(
                        call.path(),
                        ((ToolCall.Grep) call).pattern(),
                        ((ToolCall.Grep) call).glob(),
                        maxChars);
            if (workspace != null && workspace.error() != null) {
              out += "\n[/workspace was not searched: " + workspace.error() + "]";
            }
            return new SessionFiles.Outcome(out, false, null);
          } catch (TextFiles.ToolFailure f) {
            return new SessionFiles.Outcome(f.getMessage(), true, null);
          }
        });
  }

  /**
   * Asks the sandbox child to run {@code call}; thread-safe (runs inside the tool chain). The child
   * starts it only within {@code call-start-timeout} and answers within {@link
   * SandboxSettings#answerWithin}; should that wait still run out, the call may be running, so the
   * result says so, and the child never starts it later.
   */
  private CompletionStage<SessionFiles.Outcome> inSandbox(
      ActorRef<SandboxHandle.Command> handle, String callId, ToolCall call, int maxChars) {
    SandboxSettings settings = services.sandboxSettings();
    Duration command =
        call instanceof ToolCall.Bash b && b.timeoutMs() != null
            ? Duration.ofMillis(b.timeoutMs())
            : settings.limits().defaultTimeout();
    Duration timeout = settings.answerWithin(command);
    long startBy = System.nanoTime() + settings.startTimeout().toNanos();
    return AskPattern.<SandboxHandle.Command, SandboxHandle.Result>ask(
            handle,
            replyTo -> new SandboxHandle.Run(callId, call, maxChars, replyTo, startBy),
            timeout,
            scheduler)
        .handle(
            (r, e) ->
                e == null
                    ? new SessionFiles.Outcome(r.content(), r.isError(), null)
                    : new SessionFiles.Outcome(
                        "interrupted: the sandbox did not answer within "
                            + timeout.toSeconds()
                            + " s; "
                            + (call instanceof ToolCall.Bash
                                ? "the command may or may not have run"
                                : "it may or may not have taken effect"),
                        true,
                        null));
  }
}
