package dev.outboard.sandbox;

import com.typesafe.config.Config;
import dev.outboard.ops.LiveStates;
import dev.outboard.sandbox.SandboxProvider.Entry;
import dev.outboard.sandbox.SandboxProvider.ExecResult;
import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.sandbox.SandboxProvider.SandboxGoneException;
import dev.outboard.tools.ToolCall;
import dev.outboard.vfs.FileTree;
import dev.outboard.vfs.TextFiles;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;

/**
 * One session's sandbox (DESIGN.md §4), a child of the session actor. It provisions the sandbox on
 * the first {@code /workspace} tool call, runs the calls one after the other, freezes the sandbox
 * after {@code suspend-after} without calls and hibernates it after {@code hibernate-after}, and
 * resumes it transparently on the next call. When the provider says the sandbox is gone it starts a
 * new one from the last hibernation snapshot. Every state change is reported to the session, which
 * records it.
 *
 * <p>A running or frozen sandbox is also checked every {@code health-check-interval} while idle
 * ({@link SandboxProvider#state}); one the provider confirms gone is replaced at once, so the next
 * call does not find it dead. A host that cannot be reached is not a confirmed loss: the check
 * tries again later. A command whose sandbox was gone before it started runs on the replacement; a
 * command during which the sandbox died is not run twice — its answer says it was interrupted.
 *
 * <p>Hibernation snapshots are kept in the store ({@link SnapshotStore}) as well as in memory, so a
 * sandbox lost after the session actor moved or restarted (a new handle) comes back with the
 * workspace of its last hibernation.
 */
public final class SandboxHandle {
  /** For callbacks that run off the actor's thread, where the actor context must not be used. */
  private static final org.slf4j.Logger log =
      org.slf4j.LoggerFactory.getLogger(SandboxHandle.class);

  // ---------------------------------------------------------------- protocol

  public sealed interface Command {}

  /**
   * Runs one tool call on {@code /workspace} or {@code bash}; the answer goes to {@code replyTo}.
   * {@code startBy} ({@link System#nanoTime()}; 0: no limit) is when the caller stops counting on
   * it: a call not started by then is answered "did not run" and is never started later, so a
   * caller that gave up never has it run behind its back.
   */
  public record Run(
      String callId, ToolCall call, int maxChars, ActorRef<Result> replyTo, long startBy)
      implements Command {
    public Run(String callId, ToolCall call, int maxChars, ActorRef<Result> replyTo) {
      this(callId, call, maxChars, replyTo, 0L);
    }

    boolean expired() {
      return startBy != 0 && System.nanoTime() - startBy > 0;
    }
  }

  /**
   * The files under {@code /workspace} (with their text when {@code contents}), for a {@code glob}
   * or {@code grep} over {@code /}. Answered from the files alone: nothing is provisioned, resumed
   * or started for it; a session without a sandbox (or with one being replaced) gets none.
   */
  public record Collect(boolean contents, ActorRef<Collected> replyTo) implements Command {}

  /** What {@link Collect} found: files by path, or {@code error} (then {@code files} is empty). */
  public record Collected(java.util.SortedMap<String, String> files, String error) {}

  /** Destroys the sandbox (the session ended) and stops. */
  public enum Destroy implements Command {
    INSTANCE
  }

  /** A tool call's result, a sentence for the model. */
  public record Result(String content, boolean isError) {}

  /**
   * Sent to the session on every change: {@code state} is the API's sandbox state; {@code
   * sandboxId} the current sandbox (null before the first one); {@code replacedId} the sandbox it
   * replaced.
   */
  public record Report(String state, String sandboxId, String replacedId) {}

  private record IdleTimeout(int stage, long generation) implements Command {}

  /**
   * {@code salvaged}: the lost sandbox (if any) answered salvage, so destroying it loses nothing.
   */
  private record Provisioned(
      String sandboxId,
      Throwable error,
      boolean replacing,
      boolean retry,
      Restored restored,
      boolean salvaged)
      implements Command {}

  private record OpDone(Run run, Result result, Throwable error) implements Command {}

  private record Parked(String state, byte[] snapshot, Throwable error) implements Command {}

  private enum HealthTick implements Command {
    INSTANCE
  }

  private record HealthChecked(String sandboxId, long generation, Throwable error)
      implements Command {}

  /** Asks the host again for the call at the head of the queue (it did not answer). */
  private record Retry(long generation) implements Command {}

  /** What a call answers on a host without bubblewrap. */
  public static final String BWRAP_MISSING =
      "bubblewrap (bwrap) is not installed; install the package 'bubblewrap'";

  public static final String LOST =
      "interrupted: the sandbox was lost while this command ran; a new sandbox replaced it";

  /**
   * Limits, idle times and the health-check interval of sandboxes ({@code outboard.sandbox}); a
   * zero {@code healthCheckEvery} turns the checks off. A call waits at most {@code startTimeout}
   * for its sandbox before it starts; once started, its answer comes within its command's timeout
   * plus {@code answerMargin} ({@link #answerWithin}); a host that does not answer is asked again
   * every {@code retryEvery} until the call's start deadline; at most {@code maxPending} calls
   * wait.
   */
  public record Settings(
      Limits limits,
      Duration suspendAfter,
      Duration hibernateAfter,
      Duration healthCheckEvery,
      Duration startTimeout,
      Duration answerMargin,
      Duration retryEvery,
      int maxPending) {
    /** Without health checks. */
    public Settings(Limits limits, Duration suspendAfter, Duration hibernateAfter) {
      this(limits, suspendAfter, hibernateAfter, Duration.ZERO);
    }

    public Settings(
        Limits limits, Duration suspendAfter, Duration hibernateAfter, Duration healthCheckEvery) {
      this(
          limits,
          suspendAfter,
          hibernateAfter,
          healthCheckEvery,
          Duration.ofMinutes(2),
          Duration.ofSeconds(90),
          Duration.ofSeconds(2),
          16);
    }

    public static Settings from(Config config) {
      Config c = config.getConfig("outboard.sandbox");
      Limits limits =
          new Limits(
              c.getBytes("memory"),
              c.getInt("max-processes"),
              c.getDuration("cpu-time"),
              c.getBytes("max-output-bytes"),
              c.getDuration("command-timeout"));
      return new Settings(
          limits,
          c.getDuration("suspend-after"),
          c.getDuration("hibernate-after"),
          c.getDuration("health-check-interval"),
          c.getDuration("call-start-timeout"),
          c.getDuration("call-answer-margin"),
          c.getDuration("unreachable-retry-interval"),
          c.getInt("max-pending-calls"));
    }

    /**
     * How long a caller waits for the answer to a call whose command may run for {@code command}:
     * the start deadline, the command, and the margin (the host's answer, a kill's grace, a
     * replacement). The handle answers before that; a caller that still times out must say the
     * command may have run, and the handle never starts it afterwards.
     */
    public Duration answerWithin(Duration command) {
      return startTimeout.plus(command).plus(answerMargin);
    }
  }

  /**
   * A handle for a session that has no sandbox yet ({@code knownId} null) or had {@code knownId}.
   */
  public static Behavior<Command> create(
      SandboxProvider provider,
      Settings settings,
      ActorRef<Report> session,
      String knownId,
      String knownState) {
    return create(provider, settings, session, knownId, knownState, null, null);
  }

  /**
   * As above; with {@code snapshots} (and the session's id) hibernation snapshots are also saved to
   * the store, and a replacement restores from the stored one when this handle has none in memory.
   */
  public static Behavior<Command> create(
      SandboxProvider provider,
      Settings settings,
      ActorRef<Report> session,
      String knownId,
      String knownState,
      SnapshotStore snapshots,
      String sessionId) {
    return Behaviors.setup(
        ctx ->
            Behaviors.withTimers(
                timers ->
                    new SandboxHandle(
                            provider,
                            settings,
                            session,
                            knownId,
                            knownState,
                            snapshots,
                            sessionId,
                            ctx,
                            timers)
                        .behavior()));
  }

  private final SandboxProvider provider;
  private final Settings settings;
  private final ActorRef<Report> session;
  private final SnapshotStore snapshots;
  private final String sessionId;
  private final ActorContext<Command> ctx;
  private final TimerScheduler<Command> timers;
  private final ArrayDeque<Run> pending = new ArrayDeque<>();
  private String sandboxId;

  /** The sandbox id the session knows. */
  private String reportedId;

  private String state;
  private byte[] snapshot;
  private boolean busy;
  private boolean checking;

  /** Told with the next answer: the sandbox was replaced since the last one. */
  private String replacedNote;

  /** Where the last replacement's workspace came from (null: no replacement yet). */
  private Restored restoredAs;

  /** Why the host did not answer the call at the head, the last time. */
  private String lastUnreachable;

  /** Whether the call at the head may run on the sandbox being started again (see pipeCreate). */
  private boolean retryCreate = true;

  /**
   * Replacements for the call at the head of the queue (a sandbox that dies at once every time).
   */
  private int replacements;

  /** A sandbox being created, so that one the handle stops meanwhile does not outlive it. */
  private CompletionStage<Created> creating;

  /** A suspend or hibernate in flight (its snapshot save included). */
  private CompletionStage<?> parking;

  /** A health check found the (hibernated) sandbox gone; the next call replaces it. */
  private boolean lost;

  private long generation;

  /** This handle's sandbox in the node's sandboxes-by-state gauge. */
  private final LiveStates.Member liveState = LiveStates.SANDBOXES.member();

  private SandboxHandle(
      SandboxProvider provider,
      Settings settings,
      ActorRef<Report> session,
      String knownId,
      String knownState,
      SnapshotStore snapshots,
      String sessionId,
      ActorContext<Command> ctx,
      TimerScheduler<Command> timers) {
    this.provider = provider;
    this.snapshots = sessionId == null ? null : snapshots;
    this.sessionId = sessionId;
    this.settings = settings;
    this.session = session;
    this.sandboxId = knownId;
    this.reportedId = knownId;
    this.state = knownState == null ? "none" : knownState;
    liveState.set(state);
    this.ctx = ctx;
    this.timers = timers;
    if (knownId != null) {
      startHealthChecks();
      // A new handle (the session restarted or moved) goes on with the idle clock where it stood.
      if (state.equals("active")) {
        timers.startSingleTimer("idle", new IdleTimeout(1, generation), settings.suspendAfter());
      } else if (state.equals("suspended")) {
        Duration rest = settings.hibernateAfter().minus(settings.suspendAfter());
        timers.startSingleTimer(
            "idle", new IdleTimeout(2, generation), rest.isNegative() ? Duration.ZERO : rest);
      }
    }
  }

  private Behavior<Command> behavior() {
    return Behaviors.receive(Command.class)
        .onMessage(Run.class, this::onRun)
        .onMessage(Provisioned.class, this::onProvisioned)
        .onMessage(OpDone.class, this::onOpDone)
        .onMessage(IdleTimeout.class, this::onIdleTimeout)
        .onMessage(Parked.class, this::onParked)
        .onMessage(HealthTick.class, t -> onHealthTick())
        .onMessage(Collect.class, this::onCollect)
        .onMessage(HealthChecked.class, this::onHealthChecked)
        .onMessage(Retry.class, this::onRetry)
        .onMessage(Destroy.class, m -> onDestroy())
        .onSignal(PostStop.class, s -> onStopped())
        .build();
  }

  // ---------------------------------------------------------------- handlers

  private Behavior<Command> onRun(Run run) {
    dropExpired();
    if (pending.size() >= settings.maxPending()) {
      run.replyTo()
          .tell(
              new Result(
                  "did not run: "
                      + pending.size()
                      + " calls are already waiting for this session's sandbox"
                      + " (outboard.sandbox.max-pending-calls); try again once they are answered",
                  true));
      return Behaviors.same();
    }
    pending.add(run);
    next();
    return Behaviors.same();
  }

  /** Answers the waiting calls (not the one running) whose callers no longer count on them. */
  private void dropExpired() {
    java.util.Iterator<Run> it = pending.iterator();
    if (busy && it.hasNext()) it.next(); // the head is in progress
    while (it.hasNext()) {
      Run r = it.next();
      if (r.expired()) {
        it.remove();
        r.replyTo().tell(notStarted());
      }
    }
  }

  private Result notStarted() {
    return new Result(
        "did not run: the sandbox was not ready for it within "
            + settings.startTimeout().toSeconds()
            + " s (outboard.sandbox.call-start-timeout); it will not run",
        true);
  }

  private void next() {
    if (busy) return;
    dropExpired();
    while (!pending.isEmpty() && pending.peek().expired())
      pending.poll().replyTo().tell(notStarted());
    if (pending.isEmpty()) return;
    busy = true;
    generation++;
    if (sandboxId == null) {
      changed("provisioning", null);
      pipeCreate(false, true);
    } else if (lost) {
      changed("replacing", null);
      pipeCreate(true, true);
    } else {
      runOp(pending.peek());
    }
  }

  /** Where a new sandbox's workspace came from. */
  private enum Restored {
    NOTHING(" with an empty workspace"),
    SALVAGED(", its workspace recovered as the lost sandbox left it"),
    SNAPSHOT(", its workspace restored from the last snapshot");

    final String sentence;

    Restored(String sentence) {
      this.sentence = sentence;
    }
  }

  private record Created(String sandboxId, Restored restored, boolean salvaged) {
    Created salvaged(boolean answered) {
      return new Created(sandboxId, restored, answered);
    }
  }

  /** What salvage gave: the files ({@code bytes}, null: none left), or {@code answered} false. */
  private record Salvage(byte[] bytes, boolean answered) {}

  /**
   * Starts a sandbox. A replacement's workspace comes from the lost sandbox itself when its files
   * are still there ({@link SandboxProvider#salvage}), else from the last hibernation snapshot (in
   * memory, or in the store for a handle that never hibernated it itself). The lost one is
   * destroyed once the replacement runs (it may live on behind a network blip), and only if it
   * answered salvage: otherwise its files may be all there is.
   */
  private void pipeCreate(boolean replacing, boolean retry) {
    String old = replacing ? sandboxId : null;
    byte[] inMemory = snapshot;
    boolean lookInStore = snapshots != null && (replacing || reportedId != null);
    String sid = sessionId;
    CompletionStage<Salvage> salvaged =
        old == null ? CompletableFuture.completedFuture(new Salvage(null, true)) : salvage(old);
    CompletionStage<Created> created =
        salvaged.thenCompose(
            sv -> {
              CompletionStage<Created> c;
              if (sv.bytes() != null) {
                c =
                    createFrom(sv.bytes())
                        .thenApply(id -> new Created(id, Restored.SALVAGED, true));
              } else if (inMemory != null) {
                c = createFrom(inMemory).thenApply(id -> new Created(id, Restored.SNAPSHOT, true));
              } else if (!lookInStore) {
                c = createFrom(null).thenApply(id -> new Created(id, Restored.NOTHING, true));
              } else {
                c =
                    loadSnapshot(sid)
                        .thenCompose(
                            stored ->
                                createFrom(stored)
                                    .thenApply(
                                        id ->
                                            new Created(
                                                id,
                                                stored == null
                                                    ? Restored.NOTHING
                                                    : Restored.SNAPSHOT,
                                                true)));
              }
              return c.thenApply(x -> x.salvaged(sv.answered()));
            });
    creating = created;
    ctx.pipeToSelf(
        created,
        (c, error) ->
            c == null
                ? new Provisioned(null, error, replacing, retry, null, false)
                : new Provisioned(
                    c.sandboxId(), null, replacing, retry, c.restored(), c.salvaged()));
  }

  private CompletionStage<Salvage> salvage(String id) {
    CompletionStage<byte[]> salvaged;
    try {
      salvaged = provider.salvage(id);
    } catch (RuntimeException e) {
      salvaged = CompletableFuture.failedFuture(e);
    }
    return salvaged.handle(
        (bytes, e) -> {
          if (e != null) {
            log.warn("nothing could be salvaged from sandbox {}: {}", id, cause(e).toString());
            return new Salvage(null, false);
          }
          return new Salvage(bytes, true);
        });
  }

  private CompletionStage<byte[]> loadSnapshot(String sid) {
    CompletionStage<java.util.Optional<SnapshotStore.Snapshot>> loaded;
    try {
      loaded = snapshots.load(sid);
    } catch (RuntimeException e) {
      loaded = CompletableFuture.failedFuture(e);
    }
    return loaded.handle(
        (s, e) -> {
          if (e != null) {
            log.warn(
                "could not load the sandbox snapshot of session {}: {}", sid, cause(e).toString());
            return null;
          }
          return s.map(SnapshotStore.Snapshot::bytes).orElse(null);
        });
  }

  private CompletionStage<String> createFrom(byte[] bytes) {
    try {
      return provider.create(settings.limits(), bytes);
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  private Behavior<Command> onProvisioned(Provisioned p) {
    creating = null;
    Run run = pending.peek();
    if (p.error() != null) {
      String why = cause(p.error()).getMessage();
      // The provider names the Debian package; the session's answer is the same for every
      // distribution.
      boolean noBwrap = why != null && why.startsWith("bubblewrap (bwrap) is not installed");
      // Not a refusal that would only repeat itself (no bwrap, a wrong host token, bad limits).
      boolean lasting =
          noBwrap
              || cause(p.error()) instanceof IllegalArgumentException
              || (why != null && why.contains("refused this node's token"));
      if (!lasting && run != null && run.startBy() != 0 && !run.expired()) {
        // Its host restarting, a sandbox killed while it started: tried again until the call's
        // deadline.
        ctx.getLog()
            .info("could not start a sandbox ({}); trying again in {}", why, settings.retryEvery());
        if (p.replacing()) {
          lost = true;
        } else {
          sandboxId = null;
        }
        retryCreate = p.retry();
        timers.startSingleTimer("retry", new Retry(generation), settings.retryEvery());
        return Behaviors.same();
      }
      ctx.getLog().warn("could not start a sandbox: {}", why);
      if (p.replacing()) {
        lost = true; // the next call tries again, salvaging the lost one first
      } else {
        sandboxId = null;
      }
      changed("none", null);
      finish(new Result(noBwrap ? BWRAP_MISSING : "could not start a sandbox: " + why, true));
      return Behaviors.same();
    }
    String old = p.replacing() ? sandboxId : null;
    if (old != null && p.salvaged()) {
      destroyQuietly(old);
    } else if (old != null) {
      ctx.getLog()
          .warn(
              "sandbox {} is left in place: it did not answer salvage, so its files may be all"
                  + " there is",
              old);
    }
    sandboxId = p.sandboxId();
    lost = false;
    changed("active", old);
    startHealthChecks();
    // A command that may have run is asked again only of a salvaged workspace: its execution
    // records say whether it ran (its result), was cut off (interrupted) or never started (it
    // runs).
    if (p.replacing()
        && run != null
        && run.expired()
        && p.restored() == Restored.SALVAGED
        && !p.retry()) {
      // Too late to ask the records (that could start it): it may have run.
      replacedNote = null;
      finish(new Result(LOST + p.restored().sentence, true));
      return Behaviors.same();
    }
    if (p.replacing() && !p.retry() && p.restored() != Restored.SALVAGED) {
      replacedNote = null; // the answer says so itself
      finish(new Result(LOST + p.restored().sentence, true));
      return Behaviors.same();
    }
    if (p.replacing()) {
      restoredAs = p.restored();
      replacedNote = "[the sandbox was lost and replaced" + p.restored().sentence + "]";
    }
    if (run == null) {
      finish(null); // a health check's replacement, with no call waiting
    } else if (run.expired()) {
      finish(notStarted());
    } else {
      runOp(run);
    }
    return Behaviors.same();
  }

  private Behavior<Command> onRetry(Retry r) {
    Run run = pending.peek();
    if (r.generation() != generation || run == null || !busy) return Behaviors.same();
    if (sandboxId == null || lost) {
      // Provisioning or a replacement failed: start again (nothing ran yet; the deadline is checked
      // when it is there).
      boolean replacing = lost;
      changed(replacing ? "replacing" : "provisioning", null);
      pipeCreate(replacing, retryCreate);
    } else if (run.expired()) {
      finish(unreachable(run, lastUnreachable));
    } else {
      runOp(run);
    }
    return Behaviors.same();
  }

  /** The answer when the sandbox's host stopped answering during the call. */
  private static Result unreachable(Run run, String why) {
    if (run.call() instanceof ToolCall.Bash) {
      return new Result(
          "interrupted: the sandbox could not be reached ("
              + why
              + "); the command may or may not have run",
          true);
    }
    return new Result(
        "the sandbox could not be reached (" + why + "); it may or may not have taken effect",
        true);
  }

  private void runOp(Run run) {
    if (!state.equals("active")) changed("active", null);
    CompletionStage<Result> result;
    try {
      result = execute(sandboxId, run);
    } catch (RuntimeException e) {
      result = CompletableFuture.failedFuture(e);
    }
    ctx.pipeToSelf(result, (r, error) -> new OpDone(run, r, error));
  }

  private Behavior<Command> onOpDone(OpDone d) {
    if (d.error() == null) {
      finish(d.result());
      return Behaviors.same();
    }
    Throwable cause = cause(d.error());
    if (cause instanceof SandboxProvider.CommandInterruptedException) {
      replacedNote = null; // the answer says so itself
      finish(new Result(LOST + (restoredAs == null ? "" : restoredAs.sentence), true));
      return Behaviors.same();
    }
    if (cause instanceof SandboxGoneException gone && !gone.confirmed()) {
      // Its host did not answer: the sandbox may be fine, so it is kept. A call that is safe to
      // repeat (a command by its execution id, which the host runs once; a file operation other
      // than edit) is asked again until its start deadline; then, or for an edit, the call fails.
      lastUnreachable = cause.getMessage();
      boolean repeatable = !(d.run().call() instanceof ToolCall.Edit);
      if (repeatable && d.run().startBy() != 0 && !d.run().expired()) {
        ctx.getLog()
            .info(
                "sandbox {} could not be reached ({}); asking again in {}",
                sandboxId,
                cause.getMessage(),
                settings.retryEvery());
        timers.startSingleTimer("retry", new Retry(generation), settings.retryEvery());
        return Behaviors.same();
      }
      ctx.getLog().warn("sandbox {} could not be reached: {}", sandboxId, cause.getMessage());
      finish(unreachable(d.run(), cause.getMessage()));
      return Behaviors.same();
    }
    if (cause instanceof SandboxGoneException && ++replacements > MAX_REPLACEMENTS_PER_CALL) {
      finish(
          new Result(
              "the sandbox was lost "
                  + MAX_REPLACEMENTS_PER_CALL
                  + " times in a row during this call; "
                  + "the last time: "
                  + cause.getMessage(),
              true));
      return Behaviors.same();
    }
    if (cause instanceof SandboxGoneException gone) {
      ctx.getLog()
          .warn("sandbox {} is gone ({}); starting a new one", sandboxId, cause.getMessage());
      changed("replacing", null);
      // A file operation is simply redone on the new sandbox, and so is a command that never
      // started; a command during which the sandbox died is not run twice.
      pipeCreate(true, !(d.run().call() instanceof ToolCall.Bash) || !gone.commandMayHaveRun());
      return Behaviors.same();
    }
    finish(new Result(cause.getMessage() == null ? cause.toString() : cause.getMessage(), true));
    return Behaviors.same();
  }

  /**
   * Answers the call at the head of the queue ({@code result} null: there is none) and goes on with
   * the next, or starts the idle clock.
   */
  private void finish(Result result) {
    Run run = pending.poll();
    if (run != null) replacements = 0;
    if (run != null && replacedNote != null && result != null) {
      result = new Result(replacedNote + "\n" + result.content(), result.isError());
      replacedNote = null;
    }
    if (run != null) run.replyTo().tell(result);
    busy = false;
    if (pending.isEmpty()) {
      if (sandboxId != null)
        timers.startSingleTimer("idle", new IdleTimeout(1, generation), settings.suspendAfter());
    } else {
      next();
    }
  }

  private Behavior<Command> onIdleTimeout(IdleTimeout t) {
    if (busy || t.generation() != generation || sandboxId == null || lost) return Behaviors.same();
    busy = true;
    String id = sandboxId;
    try {
      if (t.stage() == 1) {
        CompletionStage<Void> suspended = provider.suspend(id);
        parking = suspended;
        ctx.pipeToSelf(suspended, (v, error) -> new Parked("suspended", null, error));
      } else {
        CompletionStage<byte[]> hibernated =
            provider.hibernate(id).thenCompose(bytes -> saveSnapshot(id, bytes));
        parking = hibernated;
        ctx.pipeToSelf(hibernated, (bytes, error) -> new Parked("hibernated", bytes, error));
      }
    } catch (RuntimeException e) {
      ctx.getSelf().tell(new Parked(t.stage() == 1 ? "suspended" : "hibernated", null, e));
    }
    return Behaviors.same();
  }

  /**
   * Saves the snapshot to the store (when there is one), off the actor thread; a failure only loses
   * durability.
   */
  private CompletionStage<byte[]> saveSnapshot(String id, byte[] bytes) {
    if (snapshots == null || bytes == null) return CompletableFuture.completedFuture(bytes);
    String sid = sessionId;
    CompletionStage<Void> saved;
    try {
      saved = snapshots.save(sid, id, bytes);
    } catch (RuntimeException e) {
      saved = CompletableFuture.failedFuture(e);
    }
    return saved.handle(
        (v, e) -> {
          if (e != null) {
            log.warn(
                "could not store the snapshot of sandbox {} (session {}): {}",
                id,
                sid,
                cause(e).toString());
          }
          return bytes;
        });
  }

  private Behavior<Command> onParked(Parked p) {
    busy = false;
    parking = null;
    Throwable error = p.error() == null ? null : cause(p.error());
    if (error instanceof SandboxGoneException gone && gone.confirmed()) {
      // Nothing left to freeze or stop: as good as hibernated (the next call replaces it, with its
      // files if they can be salvaged), so the idle session may passivate.
      ctx.getLog()
          .info(
              "sandbox {} is gone ({}); the next call replaces it", sandboxId, error.getMessage());
      lost = true;
      changed("hibernated", null);
    } else if (error != null) {
      // Tried again later (the idle session stays for it, within bounds; see SessionEntity).
      ctx.getLog()
          .warn(
              "sandbox {} could not be {} ({}); trying again in {}",
              sandboxId,
              p.state(),
              error.getMessage(),
              settings.suspendAfter());
      timers.startSingleTimer(
          "idle",
          new IdleTimeout(p.state().equals("suspended") ? 1 : 2, generation),
          settings.suspendAfter());
    } else {
      if (p.snapshot() != null) snapshot = p.snapshot();
      changed(p.state(), null);
      if (p.state().equals("suspended")) {
        Duration rest = settings.hibernateAfter().minus(settings.suspendAfter());
        timers.startSingleTimer(
            "idle", new IdleTimeout(2, generation), rest.isNegative() ? Duration.ZERO : rest);
      }
    }
    next();
    return Behaviors.same();
  }

  /** Lists (and reads) the workspace's files off the actor; the files are there in every state. */
  private Behavior<Command> onCollect(Collect c) {
    if (sandboxId == null || lost || state.equals("replacing") || state.equals("provisioning")) {
      c.replyTo().tell(new Collected(new TreeMap<>(), null));
      return Behaviors.same();
    }
    String id = sandboxId;
    CompletionStage<TreeMap<String, String>> files;
    try {
      files =
          c.contents()
              ? walk(id, "/workspace").thenCompose(f -> readAll(id, f))
              : walk(id, "/workspace");
    } catch (RuntimeException e) {
      files = CompletableFuture.failedFuture(e);
    }
    files.whenComplete(
        (f, e) ->
            c.replyTo()
                .tell(
                    e == null
                        ? new Collected(f, null)
                        : new Collected(
                            new TreeMap<>(),
                            cause(e).getMessage() == null
                                ? cause(e).toString()
                                : cause(e).getMessage())));
    return Behaviors.same();
  }

  private void startHealthChecks() {
    Duration every = settings.healthCheckEvery();
    if (every.isZero() || every.isNegative() || timers.isTimerActive("health")) return;
    timers.startTimerWithFixedDelay("health", HealthTick.INSTANCE, every);
  }

  /** Asks the provider whether the idle sandbox still exists. */
  private Behavior<Command> onHealthTick() {
    if (busy || checking || sandboxId == null || lost) return Behaviors.same();
    checking = true;
    String id = sandboxId;
    long gen = generation;
    CompletionStage<SandboxProvider.State> probe;
    try {
      probe = provider.state(id);
    } catch (RuntimeException e) {
      probe = CompletableFuture.failedFuture(e);
    }
    ctx.pipeToSelf(probe, (s, error) -> new HealthChecked(id, gen, error));
    return Behaviors.same();
  }

  private Behavior<Command> onHealthChecked(HealthChecked h) {
    checking = false;
    if (h.error() == null
        || busy
        || h.generation() != generation
        || !h.sandboxId().equals(sandboxId)) {
      return Behaviors.same(); // healthy, or the answer is stale: a call ran since
    }
    Throwable cause = cause(h.error());
    if (cause instanceof SandboxGoneException gone
        && gone.confirmed()
        && state.equals("hibernated")) {
      // It had no processes to lose: the next call starts its replacement (a cold start anyway).
      ctx.getLog()
          .info(
              "health check: hibernated sandbox {} is gone ({}); the next call replaces it",
              sandboxId,
              cause.getMessage());
      lost = true;
    } else if (cause instanceof SandboxGoneException gone && gone.confirmed()) {
      ctx.getLog()
          .warn(
              "health check: sandbox {} is gone ({}); starting a new one",
              sandboxId,
              cause.getMessage());
      busy = true;
      generation++;
      timers.cancel("idle");
      changed("replacing", null);
      pipeCreate(true, true);
    } else {
      ctx.getLog()
          .info(
              "health check of sandbox {} failed, trying again later: {}",
              sandboxId,
              cause.getMessage());
    }
    return Behaviors.same();
  }

  private void destroyQuietly(String id) {
    CompletionStage<Void> destroyed;
    try {
      destroyed = provider.destroy(id);
    } catch (RuntimeException e) {
      return;
    }
    destroyed.whenComplete(
        (v, e) -> {
          if (e != null && !(cause(e) instanceof SandboxGoneException)) {
            log.info("could not destroy the replaced sandbox {}: {}", id, cause(e).toString());
          }
        });
  }

  private Behavior<Command> onDestroy() {
    timers.cancelAll();
    for (Run run : pending)
      run.replyTo().tell(new Result("the session ended; the sandbox was destroyed", true));
    pending.clear();
    if (sandboxId != null) destroyQuietly(sandboxId);
    sandboxId = null;
    destroyWhenCreated();
    if (snapshots != null) {
      String sid = sessionId;
      // After a hibernation in flight has saved its snapshot, or the delete would come first.
      CompletionStage<?> before =
          parking == null ? CompletableFuture.completedFuture(null) : parking;
      before
          .handle((v, e) -> null)
          .thenCompose(v -> snapshots.delete(sid))
          .whenComplete(
              (v, e) -> {
                if (e != null)
                  log.warn(
                      "could not delete the sandbox snapshot of session {}: {}",
                      sid,
                      cause(e).toString());
              });
    }
    changed("destroyed", null);
    return Behaviors.stopped();
  }

  /**
   * The session actor stopped (passivation, hand-off): freeze the sandbox, the next incarnation
   * resumes it.
   */
  private Behavior<Command> onStopped() {
    if (sandboxId != null && !state.equals("destroyed") && !lost) {
      try {
        provider.suspend(sandboxId);
      } catch (RuntimeException e) {
        log.info("could not freeze sandbox {} as its session stopped: {}", sandboxId, e.toString());
      }
    }
    destroyWhenCreated(); // its id would be known to no one; the next incarnation starts again
    liveState.clear();
    return Behaviors.same();
  }

  /** A sandbox still being created when the handle stops is destroyed once it exists. */
  private void destroyWhenCreated() {
    CompletionStage<Created> pendingCreate = creating;
    creating = null;
    if (pendingCreate != null) {
      pendingCreate.thenAccept(c -> destroyQuietly(c.sandboxId()));
    }
  }

  /** Tells the session about a new state or a new sandbox id, and nothing else. */
  private void changed(String next, String replacedId) {
    boolean newId = sandboxId != null && !sandboxId.equals(reportedId);
    if (next.equals(state) && !newId) return;
    state = next;
    liveState.set(next);
    reportedId = sandboxId == null ? reportedId : sandboxId;
    session.tell(new Report(next, sandboxId, replacedId));
  }

  private static Throwable cause(Throwable e) {
    while (e instanceof CompletionException && e.getCause() != null) e = e.getCause();
    return e;
  }

  // ---------------------------------------------------------------- tools over the provider

  private CompletionStage<Result> execute(String id, Run run) {
    ToolCall call = run.call();
    int maxChars = run.maxChars();
    String path = call.path().toString();
    if (call instanceof ToolCall.Bash b) {
      Duration timeout = b.timeoutMs() == null ? null : Duration.ofMillis(b.timeoutMs());
      return provider
          .exec(id, run.callId(), b.command(), timeout)
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
      return fileOp(
          provider
              .read(id, path)
              .thenCompose(
                  c -> {
                    String edited =
                        TextFiles.edit(path, c, e.oldString(), e.newString(), e.replaceAll());
                    return provider
                        .write(id, path, edited)
                        .thenApply(v -> ok(wrote("edited", path, edited)));
                  }));
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

  private static final int MAX_WALK = 5000;
  private static final int MAX_REPLACEMENTS_PER_CALL = 3;

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
