package dev.outboard.sandbox;

import static dev.outboard.Futures.cause;

import dev.outboard.Futures;
import dev.outboard.sandbox.Provisioner.Created;
import dev.outboard.sandbox.Provisioner.Restored;
import dev.outboard.sandbox.SandboxProvider.SandboxGoneException;
import dev.outboard.tools.ToolCall;
import java.time.Duration;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;

/**
 * One session's sandbox (DESIGN.md §4), a child of the session actor. It provisions the sandbox on
 * the first {@code /workspace} tool call, runs the calls one after the other ({@link CallQueue},
 * {@link WorkspaceTools}), freezes the sandbox after {@code suspend-after} without calls and
 * hibernates it after {@code hibernate-after}, and resumes it transparently on the next call. When
 * the provider says the sandbox is gone it starts a new one from the lost one's files or the last
 * hibernation snapshot ({@link Provisioner}). Every state change is reported to the session, which
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
 *
 * <p>The handlers stay together in this file, though it is long: they share the sandbox's lifecycle
 * (its id, whether it is lost or busy, the generation that makes old timers stale), which reads top
 * to bottom in one place. The tools, the queue of calls and their answers, provisioning, the
 * health-check verdict, the reports to the session and the settings are classes of their own.
 */
public final class SandboxHandle {
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

    /** Whether it has a start deadline that has not passed: it may be asked again until then. */
    boolean mayWait() {
      return startBy != 0 && !expired();
    }
  }

  /**
   * The files under {@code /workspace} (with their text when {@code contents}), for a {@code glob}
   * or {@code grep} over {@code /}. Answered from the files alone: nothing is provisioned, resumed
   * or started for it; a session without a sandbox (or with one being replaced) gets none.
   */
  public record Collect(boolean contents, ActorRef<Collected> replyTo) implements Command {}

  /** What {@link Collect} found: files by path, or {@code error} (then {@code files} is empty). */
  public record Collected(SortedMap<String, String> files, String error) {}

  /** Destroys the sandbox (the session ended) and stops. */
  public enum Destroy implements Command {
    INSTANCE
  }

  /** A tool call's result, a sentence for the model. */
  public record Result(String content, boolean isError) {}

  /**
   * Sent to the session on every change: {@code status} is the API's sandbox state; {@code
   * sandboxId} the current sandbox (null before the first one); {@code replacedId} the sandbox it
   * replaced.
   */
  public record Report(SandboxStatus status, String sandboxId, String replacedId) {
    /** The status in its wire form, as the session records it. */
    public String state() {
      return status.wire();
    }
  }

  /** The idle clock's two stages: freeze the sandbox, then hibernate it. */
  private enum Stage {
    SUSPEND(SandboxStatus.SUSPENDED),
    HIBERNATE(SandboxStatus.HIBERNATED);

    final SandboxStatus reached;

    Stage(SandboxStatus reached) {
      this.reached = reached;
    }
  }

  /** Whether a sandbox being started is the session's first one or replaces a lost one. */
  private enum Creation {
    FIRST,
    REPLACEMENT
  }

  /**
   * Whether the call at the head of the queue may run on the sandbox being started ({@code
   * MAY_RUN}), or may have run on the lost one and so is not run again ({@code MAY_HAVE_RUN}).
   */
  private enum HeadCall {
    MAY_RUN,
    MAY_HAVE_RUN
  }

  private record IdleTimeout(Stage stage, long generation) implements Command {}

  /** A sandbox was started ({@code created}), or could not be ({@code error}). */
  private record Provisioned(Created created, Throwable error, Creation creation, HeadCall head)
      implements Command {}

  private record OpDone(Run run, Result result, Throwable error) implements Command {}

  private record Parked(Stage stage, byte[] snapshot, Throwable error) implements Command {}

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
   * A handle for a session that has no sandbox yet ({@code knownId} null) or had {@code knownId},
   * last in {@code knownState} (its wire form, as the session recorded it; null: none).
   */
  public static Behavior<Command> create(
      SandboxProvider provider,
      SandboxSettings settings,
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
      SandboxSettings settings,
      ActorRef<Report> session,
      String knownId,
      String knownState,
      SnapshotStore snapshots,
      String sessionId) {
    SandboxStatus known =
        knownState == null ? SandboxStatus.NONE : SandboxStatus.fromWire(knownState);
    Provisioner provisioner = new Provisioner(provider, settings.limits(), snapshots, sessionId);
    return Behaviors.setup(
        ctx ->
            Behaviors.withTimers(
                timers ->
                    new SandboxHandle(
                            provider, provisioner, settings, session, knownId, known, ctx, timers)
                        .behavior()));
  }

  private final SandboxProvider provider;
  private final Provisioner provisioner;
  private final WorkspaceTools tools;
  private final SandboxSettings settings;
  private final StatusReports reports;
  private final ActorContext<Command> ctx;
  private final TimerScheduler<Command> timers;
  private final CallQueue pending;
  private String sandboxId;
  private byte[] snapshot;
  private boolean busy;
  private boolean checking;

  /** Where the last replacement's workspace came from (null: no replacement yet). */
  private Restored restoredAs;

  /** Whether the call at the head may run on the sandbox being started again (see pipeCreate). */
  private HeadCall retryHead = HeadCall.MAY_RUN;

  /** A sandbox being created, so that one the handle stops meanwhile does not outlive it. */
  private CompletionStage<Created> creating;

  /** A suspend or hibernate in flight (its snapshot save included). */
  private CompletionStage<?> parking;

  /** A health check found the (hibernated) sandbox gone; the next call replaces it. */
  private boolean lost;

  private long generation;

  private SandboxHandle(
      SandboxProvider provider,
      Provisioner provisioner,
      SandboxSettings settings,
      ActorRef<Report> session,
      String knownId,
      SandboxStatus knownState,
      ActorContext<Command> ctx,
      TimerScheduler<Command> timers) {
    this.provider = provider;
    this.provisioner = provisioner;
    this.tools = new WorkspaceTools(provider);
    this.settings = settings;
    this.pending = new CallQueue(settings.maxPending(), settings.startTimeout());
    this.reports = new StatusReports(session, knownId, knownState);
    this.sandboxId = knownId;
    this.ctx = ctx;
    this.timers = timers;
    if (knownId != null) {
      startHealthChecks();
      // A new handle (the session restarted or moved) goes on with the idle clock where it stood.
      if (knownState == SandboxStatus.ACTIVE) {
        startIdleClock(Stage.SUSPEND);
      } else if (knownState == SandboxStatus.SUSPENDED) {
        startIdleClock(Stage.HIBERNATE);
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
    if (pending.add(run, busy)) next();
    return Behaviors.same();
  }

  private void next() {
    if (busy || pending.next() == null) return;
    busy = true;
    generation++;
    if (sandboxId == null) {
      pipeCreate(Creation.FIRST, HeadCall.MAY_RUN);
    } else if (lost) {
      pipeCreate(Creation.REPLACEMENT, HeadCall.MAY_RUN);
    } else {
      runOp(pending.head());
    }
  }

  /**
   * Reports the new state and starts a sandbox ({@link Provisioner#start}); the lost one is
   * destroyed once the replacement runs (it may live on behind a network blip), and only if it
   * answered salvage: otherwise its files may be all there is.
   */
  private void pipeCreate(Creation creation, HeadCall head) {
    boolean replacing = creation == Creation.REPLACEMENT;
    changed(replacing ? SandboxStatus.REPLACING : SandboxStatus.PROVISIONING, null);
    CompletionStage<Created> created =
        provisioner.start(
            replacing ? sandboxId : null, snapshot, replacing || reports.knowsASandbox());
    creating = created;
    ctx.pipeToSelf(created, (c, error) -> new Provisioned(c, error, creation, head));
  }

  private Behavior<Command> onProvisioned(Provisioned p) {
    creating = null;
    Run run = pending.head();
    boolean replacing = p.creation() == Creation.REPLACEMENT;
    if (p.error() != null) {
      String why = cause(p.error()).getMessage();
      if (replacing) {
        lost = true; // the next call tries again, salvaging the lost one first
      } else {
        sandboxId = null;
      }
      if (!Provisioner.lasting(cause(p.error())) && run != null && run.mayWait()) {
        // Its host restarting, a sandbox killed while it started: tried again until the call's
        // deadline.
        ctx.getLog()
            .info("could not start a sandbox ({}); trying again in {}", why, settings.retryEvery());
        retryHead = p.head();
        retryLater();
        return Behaviors.same();
      }
      ctx.getLog().warn("could not start a sandbox: {}", why);
      changed(SandboxStatus.NONE, null);
      finish(CallQueue.couldNotStart(why));
      return Behaviors.same();
    }
    Created c = p.created();
    String old = replacing ? sandboxId : null;
    if (old != null) provisioner.retire(old, c.salvaged());
    sandboxId = c.sandboxId();
    lost = false;
    changed(SandboxStatus.ACTIVE, old);
    startHealthChecks();
    if (replacing) {
      Result notRunAgain = pending.replaced(c.restored(), p.head() == HeadCall.MAY_HAVE_RUN);
      if (notRunAgain != null) {
        finish(notRunAgain);
        return Behaviors.same();
      }
      restoredAs = c.restored();
    }
    if (run == null) {
      finish(null); // a health check's replacement, with no call waiting
    } else if (run.expired()) {
      finish(pending.notStarted());
    } else {
      runOp(run);
    }
    return Behaviors.same();
  }

  private Behavior<Command> onRetry(Retry r) {
    Run run = pending.head();
    if (r.generation() != generation || run == null || !busy) return Behaviors.same();
    if (sandboxId == null || lost) {
      // Provisioning or a replacement failed: start again (nothing ran yet; the deadline is checked
      // when it is there).
      pipeCreate(lost ? Creation.REPLACEMENT : Creation.FIRST, retryHead);
    } else if (run.expired()) {
      finish(CallQueue.unreachable(run, pending.lastUnreachable()));
    } else {
      runOp(run);
    }
    return Behaviors.same();
  }

  private void runOp(Run run) {
    if (reports.status() != SandboxStatus.ACTIVE) changed(SandboxStatus.ACTIVE, null);
    String id = sandboxId;
    CompletionStage<Result> result =
        Futures.attempt(() -> tools.run(id, run.callId(), run.call(), run.maxChars()));
    ctx.pipeToSelf(result, (r, error) -> new OpDone(run, r, error));
  }

  private Behavior<Command> onOpDone(OpDone d) {
    if (d.error() == null) {
      finish(d.result());
      return Behaviors.same();
    }
    Throwable cause = cause(d.error());
    if (cause instanceof SandboxProvider.CommandInterruptedException) {
      pending.dropNote(); // the answer says so itself
      finish(CallQueue.lost(restoredAs));
    } else if (cause instanceof SandboxGoneException gone && !gone.confirmed()) {
      onUnreachable(d.run(), cause.getMessage());
    } else if (cause instanceof SandboxGoneException && pending.lostAgain()) {
      finish(CallQueue.lostTooOften(cause.getMessage()));
    } else if (cause instanceof SandboxGoneException gone) {
      ctx.getLog()
          .warn("sandbox {} is gone ({}); starting a new one", sandboxId, cause.getMessage());
      // A file operation is simply redone on the new sandbox, and so is a command that never
      // started; a command during which the sandbox died is not run twice.
      boolean mayRun = !(d.run().call() instanceof ToolCall.Bash) || !gone.commandMayHaveRun();
      pipeCreate(Creation.REPLACEMENT, mayRun ? HeadCall.MAY_RUN : HeadCall.MAY_HAVE_RUN);
    } else {
      finish(new Result(WorkspaceTools.describe(cause), true));
    }
    return Behaviors.same();
  }

  /** The sandbox's host did not answer: the sandbox may be fine, so it is kept. */
  private void onUnreachable(Run run, String why) {
    if (pending.askAgain(run, why)) {
      ctx.getLog()
          .info(
              "sandbox {} could not be reached ({}); asking again in {}",
              sandboxId,
              why,
              settings.retryEvery());
      retryLater();
    } else {
      ctx.getLog().warn("sandbox {} could not be reached: {}", sandboxId, why);
      finish(CallQueue.unreachable(run, why));
    }
  }

  /**
   * Asks again for the call at the head after {@code retry-every} (unless a call ran meanwhile).
   */
  private void retryLater() {
    timers.startSingleTimer("retry", new Retry(generation), settings.retryEvery());
  }

  /**
   * Answers the call at the head of the queue ({@code result} null: there is none) and goes on with
   * the next, or starts the idle clock.
   */
  private void finish(Result result) {
    pending.answerHead(result);
    busy = false;
    if (pending.isEmpty()) {
      if (sandboxId != null) startIdleClock(Stage.SUSPEND);
    } else {
      next();
    }
  }

  /** Starts the idle clock towards {@code stage}, counting from when the sandbox idled. */
  private void startIdleClock(Stage stage) {
    Duration after =
        stage == Stage.SUSPEND ? settings.suspendAfter() : settings.hibernateAfterSuspended();
    timers.startSingleTimer("idle", new IdleTimeout(stage, generation), after);
  }

  private Behavior<Command> onIdleTimeout(IdleTimeout t) {
    if (busy || t.generation() != generation || sandboxId == null || lost) return Behaviors.same();
    busy = true;
    String id = sandboxId;
    CompletionStage<byte[]> parked =
        t.stage() == Stage.SUSPEND
            ? Futures.attempt(() -> provider.suspend(id)).thenApply(v -> null)
            : Futures.attempt(() -> provisioner.hibernate(id));
    parking = parked;
    ctx.pipeToSelf(parked, (bytes, error) -> new Parked(t.stage(), bytes, error));
    return Behaviors.same();
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
      changed(SandboxStatus.HIBERNATED, null);
    } else if (error != null) {
      // Tried again later (the idle session stays for it, within bounds; see SessionEntity).
      ctx.getLog()
          .warn(
              "sandbox {} could not be {} ({}); trying again in {}",
              sandboxId,
              p.stage().reached,
              error.getMessage(),
              settings.suspendAfter());
      timers.startSingleTimer(
          "idle", new IdleTimeout(p.stage(), generation), settings.suspendAfter());
    } else {
      if (p.snapshot() != null) snapshot = p.snapshot();
      changed(p.stage().reached, null);
      if (p.stage() == Stage.SUSPEND) startIdleClock(Stage.HIBERNATE);
    }
    next();
    return Behaviors.same();
  }

  /** Lists (and reads) the workspace's files off the actor; the files are there in every state. */
  private Behavior<Command> onCollect(Collect c) {
    if (sandboxId == null
        || lost
        || reports.status() == SandboxStatus.REPLACING
        || reports.status() == SandboxStatus.PROVISIONING) {
      c.replyTo().tell(new Collected(new TreeMap<>(), null));
      return Behaviors.same();
    }
    tools.files(sandboxId, c.contents()).thenAccept(c.replyTo()::tell);
    return Behaviors.same();
  }

  private void startHealthChecks() {
    if (!settings.healthChecks() || timers.isTimerActive("health")) return;
    timers.startTimerWithFixedDelay("health", HealthTick.INSTANCE, settings.healthCheckEvery());
  }

  /** Asks the provider whether the idle sandbox still exists. */
  private Behavior<Command> onHealthTick() {
    if (busy || checking || sandboxId == null || lost) return Behaviors.same();
    checking = true;
    String id = sandboxId;
    long gen = generation;
    ctx.pipeToSelf(
        Futures.attempt(() -> provider.state(id)), (s, error) -> new HealthChecked(id, gen, error));
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
    switch (HealthCheck.failed(sandboxId, reports.status(), h.error())) {
      case REPLACE_ON_NEXT_CALL -> lost = true;
      case REPLACE_NOW -> {
        busy = true;
        generation++;
        timers.cancel("idle");
        pipeCreate(Creation.REPLACEMENT, HeadCall.MAY_RUN);
      }
      case TRY_AGAIN_LATER -> {}
    }
    return Behaviors.same();
  }

  private Behavior<Command> onDestroy() {
    timers.cancelAll();
    pending.endAll("the session ended; the sandbox was destroyed");
    if (sandboxId != null) provisioner.destroyQuietly(sandboxId);
    sandboxId = null;
    destroyWhenCreated();
    provisioner.deleteSnapshot(parking);
    changed(SandboxStatus.DESTROYED, null);
    return Behaviors.stopped();
  }

  /**
   * The session actor stopped (passivation, hand-off): freeze the sandbox, the next incarnation
   * resumes it.
   */
  private Behavior<Command> onStopped() {
    if (sandboxId != null && reports.status() != SandboxStatus.DESTROYED && !lost) {
      provisioner.suspendQuietly(sandboxId);
    }
    destroyWhenCreated(); // its id would be known to no one; the next incarnation starts again
    reports.stopped();
    return Behaviors.same();
  }

  /** A sandbox still being created when the handle stops is destroyed once it exists. */
  private void destroyWhenCreated() {
    CompletionStage<Created> pendingCreate = creating;
    creating = null;
    if (pendingCreate != null) {
      pendingCreate.thenAccept(c -> provisioner.destroyQuietly(c.sandboxId()));
    }
  }

  /** Tells the session about a new state or a new sandbox id, and nothing else. */
  private void changed(SandboxStatus next, String replacedId) {
    reports.changed(next, sandboxId, replacedId);
  }
}
