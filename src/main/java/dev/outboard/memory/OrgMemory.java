package dev.outboard.memory;

import com.typesafe.config.Config;
import dev.outboard.Futures;
import dev.outboard.JsonSerializable;
import dev.outboard.memory.OrgFileOp.Origin;
import dev.outboard.memory.OrgFileOp.Outcome;
import dev.outboard.ops.Metrics;
import dev.outboard.store.Database;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.cluster.sharding.typed.ClusterShardingSettings;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.Entity;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityTypeKey;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.slf4j.MDC;

/**
 * The single writer of one org's {@code /memory} and {@code /skills} files (sharded by org id, so
 * one per org in the cluster). Writes queue here and are applied in order; while one transaction
 * runs, the next ones queue up and then go together in the next transaction (group commit). Every
 * write is acknowledged only after its transaction committed. The state lives in the database: the
 * actor holds only the queue.
 *
 * <p>The queue is bounded ({@link Settings#maxQueuedWrites}): a write beyond it is refused at once
 * as {@code overloaded}. Each write carries the deadline after which its caller stops waiting; a
 * transaction is never started with a write whose deadline has passed (it is answered {@code
 * timed_out}, not written), and the store bounds each transaction, so the true answer reaches the
 * caller before it gives up (see {@link OrgFiles#write}).
 */
public final class OrgMemory extends AbstractBehavior<OrgMemory.Command> {

  public static final EntityTypeKey<Command> ENTITY_KEY =
      EntityTypeKey.create(Command.class, "OrgMemory");
  private static final int MAX_BATCH = 500;

  /** How long a write that could not reach the database waits before it goes again. */
  private static final Duration TRANSIENT_RETRY = Duration.ofMillis(500);

  private static final Logger log = LoggerFactory.getLogger(OrgMemory.class);
  private static final CompletionStage<Void> DONE = CompletableFuture.completedFuture(null);

  // ---------------------------------------------------------------- protocol

  public sealed interface Command extends JsonSerializable {}

  /** A write; {@code deadline} is when its caller stops waiting for the answer. */
  public record Apply(OrgFileOp op, Origin origin, Instant deadline, ActorRef<Outcome> replyTo)
      implements Command {}

  /** Stops the actor (passivation and hand-off); queued writes are answered first. */
  public enum Stop implements Command {
    INSTANCE
  }

  private record BatchDone(List<Queued> batch, Throwable error) implements Command {}

  private enum IdleTimeout implements Command {
    INSTANCE
  }

  /**
   * A write waiting or being written: when it arrived (for its latency) and whether it was
   * answered.
   */
  private record Queued(Apply apply, long arrivedNanos, AtomicBoolean answered) {
    /**
     * Answers the write once (from any thread: the write's outcome is known as soon as its
     * transaction ends).
     */
    void answer(Outcome outcome) {
      if (!answered.compareAndSet(false, true)) return;
      apply.replyTo().tell(outcome);
      Metrics.ORG_WRITE_SECONDS.observe(Metrics.secondsSince(arrivedNanos));
    }
  }

  /**
   * {@code maxQueuedWrites}: writes waiting (beyond the transaction running) before more are
   * refused.
   */
  public record Settings(Duration passivateAfter, int maxQueuedWrites) {
    public static Settings from(Config memory) {
      return new Settings(
          memory.getDuration("passivate-after"), memory.getInt("max-queued-writes"));
    }
  }

  // ---------------------------------------------------------------- wiring

  public static void init(ActorSystem<?> system, OrgFileStore store, Settings settings) {
    ClusterSharding.get(system)
        .init(
            Entity.of(ENTITY_KEY, ctx -> create(ctx.getEntityId(), ctx.getShard(), store, settings))
                // Its state is in the database: nothing to remember, nothing to restart after a
                // crash.
                .withSettings(ClusterShardingSettings.create(system).withRememberEntities(false))
                .withStopMessage(Stop.INSTANCE));
  }

  public static Behavior<Command> create(
      String org,
      ActorRef<ClusterSharding.ShardCommand> shard,
      OrgFileStore store,
      Settings settings) {
    return Behaviors.setup(
        ctx ->
            Behaviors.withMdc(
                Command.class,
                Map.of("org", org),
                new OrgMemory(ctx, org, shard, store, settings)));
  }

  private final String org;
  private final ActorRef<ClusterSharding.ShardCommand> shard;
  private final OrgFileStore store;
  private final Settings settings;
  private final ArrayDeque<Queued> queue = new ArrayDeque<>();
  private boolean writing;
  private boolean stopping;

  private OrgMemory(
      ActorContext<Command> ctx,
      String org,
      ActorRef<ClusterSharding.ShardCommand> shard,
      OrgFileStore store,
      Settings settings) {
    super(ctx);
    this.org = org;
    this.shard = shard;
    this.store = store;
    this.settings = settings;
    ctx.setReceiveTimeout(settings.passivateAfter(), IdleTimeout.INSTANCE);
  }

  @Override
  public Receive<Command> createReceive() {
    return newReceiveBuilder()
        .onMessage(Apply.class, this::onApply)
        .onMessage(BatchDone.class, this::onBatchDone)
        .onMessageEquals(IdleTimeout.INSTANCE, this::onIdle)
        .onMessageEquals(Stop.INSTANCE, this::onStop)
        .build();
  }

  private Behavior<Command> onApply(Apply apply) {
    Queued queued = new Queued(apply, System.nanoTime(), new AtomicBoolean());
    if (queue.size() >= settings.maxQueuedWrites()) {
      queued.answer(
          Outcome.failed(
              "overloaded",
              "not written: "
                  + settings.maxQueuedWrites()
                  + " writes to this organisation's files are queued already (the database is slow"
                  + " or unavailable); nothing was written, try again later"));
      return this;
    }
    queue.add(queued);
    if (!writing) writeNext();
    return this;
  }

  /** Takes everything queued (up to a bound) into one transaction. */
  private void writeNext() {
    List<Queued> batch = new ArrayList<>(Math.min(queue.size(), MAX_BATCH));
    while (!queue.isEmpty() && batch.size() < MAX_BATCH) batch.add(queue.poll());
    writing = true;
    Metrics.ORG_WRITE_BATCH.observe(batch.size());
    getContext().pipeToSelf(attempt(batch, false), (ignored, error) -> new BatchDone(batch, error));
  }

  /**
   * The writes in one transaction, each answered as soon as its outcome is known; if that fails (a
   * conflicting writer, a dropped connection), once more, and then each write in a transaction of
   * its own so that one bad write cannot sink others. A write whose deadline has passed is answered
   * instead of taken into the next transaction. Runs off the actor's thread from the first callback
   * on: its context must not be used here.
   */
  private CompletionStage<Void> attempt(List<Queued> writes, boolean retried) {
    List<Queued> live = startable(writes);
    if (live.isEmpty()) return DONE;
    List<OrgFileStore.Request> requests =
        live.stream()
            .map(q -> new OrgFileStore.Request(q.apply().op(), q.apply().origin()))
            .toList();
    return store
        .applyBatch(org, requests)
        .handle(
            (outcomes, error) -> {
              if (error == null) {
                for (int i = 0; i < live.size(); i++) live.get(i).answer(outcomes.get(i));
                return DONE;
              }
              Throwable e = Futures.cause(error);
              if (e instanceof Database.CommitUnconfirmed) { // trying again could write twice
                logged("org file write failed: {}", e);
                live.forEach(q -> q.answer(unconfirmed()));
                return DONE;
              }
              if (Database.isTransient(e)) {
                // The database restarted or paused: nothing committed, so the same writes go again,
                // as long
                // as their callers wait (startable answers the others "timed out").
                logged("org file write could not reach the database ({}); trying again", e);
                return dev.outboard.Futures.after(TRANSIENT_RETRY)
                    .thenCompose(v -> attempt(live, retried));
              }
              if (!retried) return attempt(live, true);
              if (live.size() == 1) {
                logged("org file write failed: {}", e);
                live.get(0).answer(unavailable(e));
                return DONE;
              }
              logged("group write of " + live.size() + " failed ({}); writing one by one", e);
              CompletionStage<Void> all = DONE;
              for (Queued q : live) all = all.thenCompose(v -> attempt(List.of(q), true));
              return all;
            })
        .thenCompose(next -> next);
  }

  /** The writes whose caller still waits; the others are answered that they were not written. */
  private static List<Queued> startable(List<Queued> writes) {
    Instant now = Instant.now();
    List<Queued> live = new ArrayList<>(writes.size());
    for (Queued q : writes) {
      if (now.isBefore(q.apply().deadline())) {
        live.add(q);
      } else {
        q.answer(
            Outcome.failed(
                "timed_out",
                "not written: timed out waiting for the org's writer (earlier writes to this"
                    + " organisation's files held it up); nothing was written"));
      }
    }
    return live;
  }

  /** A warning with the org in the MDC, from whatever thread the store's callback runs on. */
  private void logged(String message, Throwable error) {
    MDC.put("org", org);
    try {
      log.warn(message, error.toString());
    } finally {
      MDC.remove("org");
    }
  }

  private Behavior<Command> onBatchDone(BatchDone done) {
    writing = false;
    if (done.error() != null) { // not expected: every failure above becomes an answer
      getContext().getLog().error("org file write failed: {}", done.error().toString());
      done.batch().forEach(q -> q.answer(unavailable(done.error())));
    }
    if (!queue.isEmpty()) {
      writeNext();
      return this;
    }
    return stopping ? Behaviors.stopped() : this;
  }

  private static Outcome unavailable(Throwable error) {
    if (error instanceof Database.TransactionTimeout) {
      return Outcome.failed(
          "unavailable", "the org file store did not answer in time; nothing was written");
    }
    return Outcome.failed(
        "unavailable",
        "the org file store is unavailable; nothing was written ("
            + error.getClass().getSimpleName()
            + ")");
  }

  private static Outcome unconfirmed() {
    return Outcome.failed(
        "unconfirmed",
        "the database did not confirm the write in time: it may still land;"
            + " read the file to see whether it did");
  }

  private Behavior<Command> onIdle() {
    if (!writing && queue.isEmpty())
      shard.tell(new ClusterSharding.Passivate<>(getContext().getSelf()));
    return this;
  }

  private Behavior<Command> onStop() {
    if (!writing && queue.isEmpty()) return Behaviors.stopped();
    stopping = true;
    return this;
  }
}
