package dev.outboard.session;

import static dev.outboard.session.SessionSandbox.ending;

import dev.outboard.model.Block;
import dev.outboard.model.ModelResponse;
import dev.outboard.ops.Metrics;
import dev.outboard.sandbox.SandboxHandle;
import dev.outboard.session.Holds.Inbound;
import dev.outboard.session.SessionEntity.ApprovalRequested;
import dev.outboard.session.SessionEntity.Event;
import dev.outboard.session.SessionEntity.ModelResponded;
import dev.outboard.session.SessionEntity.SessionFailed;
import dev.outboard.session.SessionEntity.TaskStarted;
import dev.outboard.session.SessionEntity.ToolCallCompleted;
import dev.outboard.session.SessionEntity.ToolCallStarted;
import dev.outboard.session.SessionEntity.WaitStarted;
import dev.outboard.tools.ApprovalPolicy;
import dev.outboard.tools.ToolCall;
import dev.outboard.tools.ToolCatalog;
import dev.outboard.vfs.Namespace;
import dev.outboard.vfs.PathRouter;
import dev.outboard.vfs.VirtualPath;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Executor;
import java.util.function.Function;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * The tool calls of a session's turns: which of them wait (for a decision, an event or a subagent),
 * which the session answers from its own state in the write of the turn, and which run later, one
 * after the other off the actor's thread, on the org files, the sandbox or the search dispatcher
 * ({@link OutsideCalls} for the calls that leave the session).
 */
final class TurnTools {

  private final SessionServices services;
  private final Subagents subagents;
  private final OutsideCalls outside;

  /** Where grep and glob over the session's own files run (searchesOwnFiles). */
  private final Executor searches;

  /** The sandbox child, spawned on first use (called on the actor's thread only). */
  private final Function<SessionState, ActorRef<SandboxHandle.Command>> sandbox;

  TurnTools(
      SessionServices services,
      Subagents subagents,
      OutsideCalls outside,
      Executor searches,
      Function<SessionState, ActorRef<SandboxHandle.Command>> sandbox) {
    this.services = services;
    this.subagents = subagents;
    this.outside = outside;
    this.searches = searches;
    this.sandbox = sandbox;
  }

  /**
   * The events of a step, to record in one write, and the calls of {@code turn} that run off the
   * actor's thread once they are (none: every result is among the events).
   */
  record Step(List<Event> events, int turn, List<Block.ToolUse> later) {}

  /**
   * The model answered turn {@code turn}: its answer, the start of its tool calls, their holds and,
   * unless some run later, the results of the others and what comes next.
   */
  Step answered(
      SessionState state, int turn, ModelResponse response, ApprovalPolicy orgPolicy, Instant now) {
    List<Event> events = new ArrayList<>();
    events.add(
        new ModelResponded(
            turn,
            response.content(),
            response.usage(),
            response.stopReason().name().toLowerCase(),
            now));
    List<Block.ToolUse> calls = response.toolCalls();
    for (Block.ToolUse call : calls)
      events.add(new ToolCallStarted(turn, call.id(), call.name(), now));
    // Calls held for a decision or an event wait; the others run at once.
    List<Block.ToolUse> runNow = hold(state, events, turn, calls, orgPolicy, now);
    if (runNow.stream().anyMatch(use -> runsLater(state, use))) {
      // Record the answer and the starts now; the results follow in one more write.
      return new Step(events, turn, runNow);
    }
    events.addAll(executeTools(state.files(), turn, runNow, now)); // holds change no file
    if (calls.isEmpty() && response.stopReason() == ModelResponse.StopReason.MAX_TOKENS) {
      events.addAll(
          ending(
              NextStep.fold(state, events),
              new SessionFailed(
                  "max_tokens", "the model's answer was cut off at its output token limit", now)));
      return new Step(events, turn, List.of());
    }
    return new Step(NextStep.after(state, events, response.text(), now), turn, List.of());
  }

  /**
   * Adds to {@code events} the holds of this turn's {@code calls}: a {@code wait} starts (and takes
   * a kept event at once), a call the policy names waits for approval. Returns the calls to run
   * now. An unreadable org policy ({@code orgPolicy} null) holds every call: approvals fail closed.
   */
  private List<Block.ToolUse> hold(
      SessionState state,
      List<Event> events,
      int turn,
      List<Block.ToolUse> calls,
      ApprovalPolicy orgPolicy,
      Instant now) {
    ApprovalPolicy policy =
        ApprovalPolicy.of(state.spec().approvals())
            .and(orgPolicy == null ? ApprovalPolicy.of(List.of("all")) : orgPolicy);
    int maxTimeout =
        (int) Math.min(Integer.MAX_VALUE, services.settings().waits().maxTimeout().toSeconds());
    // The kept events as the turn's waits take them (in the order WaitStarted's event handler
    // does).
    List<Inbound> inbox =
        state.holds().inbox().isEmpty() ? List.of() : new ArrayList<>(state.holds().inbox());
    List<Block.ToolUse> runNow = new ArrayList<>();
    for (Block.ToolUse use : calls) {
      ToolCall call = parsed(use).orElse(null);
      List<Event> held = new ArrayList<>();
      if ((ToolCatalog.spec(use.name()).isPresent() || ToolCatalog.isMcpName(use.name()))
          && !state.spec().mayUse(use.name())) {
        held.add(
            new ToolCallCompleted(
                turn,
                use.id(),
                "tool '"
                    + use.name()
                    + "' is not available to this session; it may use "
                    + String.join(", ", state.spec().tools()),
                true,
                null,
                now));
      } else if (call instanceof ToolCall.Wait w && w.timeoutSeconds() <= maxTimeout) {
        held.add(
            new WaitStarted(
                turn,
                use.id(),
                w.event(),
                w.timeoutSeconds(),
                now.plusSeconds(w.timeoutSeconds()),
                now));
        Inbound kept =
            inbox.stream().filter(i -> i.name().equals(w.event())).findFirst().orElse(null);
        if (kept != null) {
          inbox.remove(kept);
          held.add(new ToolCallCompleted(turn, use.id(), kept.payload(), false, null, now));
        }
      } else if (call != null && policy.requires(use.name(), call)) {
        held.add(new ApprovalRequested(turn, use.id(), use.name(), now));
      } else if (call instanceof ToolCall.Task t && subagents.maySpawn(state)) {
        held.add(
            new TaskStarted(turn, use.id(), subagents.childId(use.id()), t.description(), now));
      } else {
        runNow.add(use);
        continue;
      }
      events.addAll(held);
    }
    return runNow;
  }

  /** The calls of the last turn that were started and not completed (none held). */
  static List<Block.ToolUse> running(SessionState state) {
    List<String> running = state.runningCalls();
    return state.lastToolUses().stream().filter(u -> running.contains(u.id())).toList();
  }

  /** The {@code completions} of the last turn's calls that are still open (not a stale chain's). */
  static List<Event> stillOpen(SessionState state, List<Event> completions) {
    List<Event> open = new ArrayList<>();
    for (Event e : completions) {
      if (e instanceof ToolCallCompleted c
          && c.turn() == state.turns()
          && state.openCalls().contains(c.callId())) open.add(e);
    }
    return open;
  }

  /** The call, when its arguments are valid (an invalid one gets its error from executeTool). */
  static Optional<ToolCall> parsed(Block.ToolUse use) {
    try {
      return Optional.of(ToolCatalog.parse(use.name(), use.input()));
    } catch (IllegalArgumentException e) {
      return Optional.empty();
    }
  }

  /**
   * True if the call's result comes in a write after the turn's starts: from outside the session's
   * state (org files, the sandbox), or from a search over its own files (CPU work, a grep may run
   * for its whole budget, so it runs on the search dispatcher, not on the actor's thread).
   */
  boolean runsLater(SessionState state, Block.ToolUse use) {
    return outside.needsOutsideSystem(state, use) || searchesOwnFiles(use);
  }

  private static boolean searchesOwnFiles(Block.ToolUse use) {
    ToolCall call = parsed(use).orElse(null);
    return call instanceof ToolCall.Grep || call instanceof ToolCall.Glob;
  }

  /**
   * Runs {@code calls} one after the other (a later call sees an earlier one's writes), off the
   * actor's thread; the stage completes with their completions (an error result for each call, in
   * the unexpected case that the chain itself fails). Called on the actor's thread.
   */
  CompletionStage<List<Event>> run(SessionState state, int turn, List<Block.ToolUse> calls) {
    ActorRef<SandboxHandle.Command> handle =
        calls.stream()
                .map(TurnTools::parsed)
                .flatMap(Optional::stream)
                .anyMatch(
                    call -> outside.usesSandbox(call) || outside.searchesWorkspace(state, call))
            ? sandbox.apply(state)
            : null;
    record Progress(SessionFiles files, List<Event> completions) {}
    CompletionStage<Progress> chain =
        CompletableFuture.completedFuture(new Progress(state.files(), new ArrayList<>()));
    for (Block.ToolUse use : calls) {
      chain =
          chain.thenCompose(
              p ->
                  timedTool(use, () -> executeToolAsync(state, p.files(), use, handle))
                      .thenApply(
                          outcome -> {
                            ToolCallCompleted done = completed(turn, use, outcome, Instant.now());
                            p.completions().add(done);
                            return new Progress(
                                done.change() == null ? p.files() : p.files().apply(done.change()),
                                p.completions());
                          }));
    }
    return chain.handle(
        (p, error) -> {
          if (error == null) return p.completions();
          // Not expected (each call turns its failures into an error result); answer every call
          // honestly.
          List<Event> failed = new ArrayList<>();
          for (Block.ToolUse use : calls) {
            failed.add(
                new ToolCallCompleted(
                    turn,
                    use.id(),
                    "the tool failed: " + error.getMessage(),
                    true,
                    null,
                    Instant.now()));
          }
          return failed;
        });
  }

  private CompletionStage<SessionFiles.Outcome> executeToolAsync(
      SessionState state,
      SessionFiles files,
      Block.ToolUse use,
      ActorRef<SandboxHandle.Command> handle) {
    if (!outside.needsOutsideSystem(state, use)) {
      if (!searchesOwnFiles(use)) return CompletableFuture.completedFuture(executeTool(files, use));
      return CompletableFuture.supplyAsync(() -> executeTool(files, use), searches);
    }
    return outside.execute(state, files, use, handle);
  }

  /**
   * Runs the tool calls that the session can answer itself — {@code /session} files and every
   * refusal — against the files as they evolve through the turn, and returns their completions.
   */
  List<Event> executeTools(SessionFiles files, int turn, List<Block.ToolUse> calls, Instant now) {
    List<Event> completions = new ArrayList<>();
    for (Block.ToolUse use : calls) {
      long started = System.nanoTime();
      SessionFiles.Outcome outcome = executeTool(files, use);
      ToolCallCompleted done = completed(turn, use, outcome, now);
      if (done.change() != null) files = files.apply(done.change());
      recordToolCall(use, outcome, started);
      completions.add(done);
    }
    return completions;
  }

  /** The completion of {@code use}, its long result stored as a session file (compaction). */
  private ToolCallCompleted completed(
      int turn, Block.ToolUse use, SessionFiles.Outcome outcome, Instant at) {
    return Compaction.offloaded(
        new ToolCallCompleted(
            turn, use.id(), outcome.content(), outcome.isError(), outcome.change(), at),
        services.settings().compaction().maxToolResultChars());
  }

  /**
   * Runs a tool call that completes later, and records it with {@link #recordToolCall} when it
   * does.
   */
  private static CompletionStage<SessionFiles.Outcome> timedTool(
      Block.ToolUse use, Supplier<CompletionStage<SessionFiles.Outcome>> call) {
    long started = System.nanoTime();
    return call.get()
        .thenApply(
            outcome -> {
              recordToolCall(use, outcome, started);
              return outcome;
            });
  }

  /** Counts a tool call by tool and outcome and records its duration by tool. */
  private static void recordToolCall(
      Block.ToolUse use, SessionFiles.Outcome outcome, long startedNanos) {
    String tool =
        ToolCatalog.spec(use.name()).isPresent()
            ? use.name()
            : ToolCatalog.isMcpName(use.name()) ? "mcp" : "unknown";
    Metrics.TOOL_CALLS.labelValues(tool, outcome.isError() ? "error" : "ok").inc();
    Metrics.TOOL_CALL_SECONDS.labelValues(tool).observe(Metrics.secondsSince(startedNanos));
  }

  private SessionFiles.Outcome executeTool(SessionFiles files, Block.ToolUse use) {
    ToolCall call;
    try {
      call = ToolCatalog.parse(use.name(), use.input());
    } catch (IllegalArgumentException e) {
      return new SessionFiles.Outcome(e.getMessage(), true, null);
    }
    PathRouter router = services.router();
    if (call instanceof ToolCall.Task) { // a task that may start is held, never executed
      return new SessionFiles.Outcome(
          "this session is a subagent at the deepest level allowed (outboard.subagents.max-depth = "
              + services.settings().subagents().maxDepth()
              + "): it cannot start subagents; do the work yourself",
          true,
          null);
    }
    if (call instanceof ToolCall.Wait w) { // a wait within the limit is held, never executed
      return new SessionFiles.Outcome(
          "invalid arguments for tool 'wait': timeoutSeconds must be at most "
              + services.settings().waits().maxTimeout().toSeconds()
              + ", got "
              + w.timeoutSeconds(),
          true,
          null);
    }
    if (call instanceof ToolCall.Mcp) { // with MCP on the node, it runs outside
      return new SessionFiles.Outcome(
          "tool '" + use.name() + "': this node offers no MCP servers' tools", true, null);
    }
    if (call instanceof ToolCall.Bash) {
      return new SessionFiles.Outcome(
          "bash needs a sandbox (/workspace); " + router.notMounted(call.path()), true, null);
    }
    VirtualPath path = call.path();
    boolean searchAll =
        path.isRoot() && (call instanceof ToolCall.Glob || call instanceof ToolCall.Grep);
    if (!searchAll) {
      try {
        if (router.route(path) != Namespace.SESSION) {
          return new SessionFiles.Outcome(router.notMounted(path), true, null);
        }
      } catch (VirtualPath.InvalidPathException e) {
        return new SessionFiles.Outcome(e.getMessage(), true, null);
      }
    }
    return files.execute(call, services.settings().fileLimits());
  }
}
