package dev.outboard.memory;

import dev.outboard.JsonSerializable;
import dev.outboard.memory.OrgFileOp.Origin;
import dev.outboard.memory.OrgFileOp.Outcome;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
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
 * write is acknowledged only after its transaction committed. The state lives in the database:
 * the actor holds only the queue.
 */
public final class OrgMemory extends AbstractBehavior<OrgMemory.Command> {

  public static final EntityTypeKey<Command> ENTITY_KEY = EntityTypeKey.create(Command.class, "OrgMemory");
  private static final int MAX_BATCH = 500;
  private static final Logger log = LoggerFactory.getLogger(OrgMemory.class);

  // ---------------------------------------------------------------- protocol

  public sealed interface Command extends JsonSerializable {}

  public record Apply(OrgFileOp op, Origin origin, ActorRef<Outcome> replyTo) implements Command {}

  /** Stops the actor (passivation and hand-off); queued writes are answered first. */
  public enum Stop implements Command {
    INSTANCE
  }

  private record BatchDone(List<Apply> batch, List<Outcome> outcomes, Throwable error) implements Command {}

  private enum IdleTimeout implements Command {
    INSTANCE
  }

  // ---------------------------------------------------------------- wiring

  public static void init(ActorSystem<?> system, OrgFileStore store, Duration passivateAfter) {
    ClusterSharding.get(system)
        .init(Entity.of(ENTITY_KEY, ctx -> create(ctx.getEntityId(), ctx.getShard(), store, passivateAfter))
            // Its state is in the database: nothing to remember, nothing to restart after a crash.
            .withSettings(ClusterShardingSettings.create(system).withRememberEntities(false))
            .withStopMessage(Stop.INSTANCE));
  }

  public static Behavior<Command> create(
      String org, ActorRef<ClusterSharding.ShardCommand> shard, OrgFileStore store, Duration passivateAfter) {
    return Behaviors.setup(ctx -> Behaviors.withMdc(Command.class, Map.of("org", org),
        new OrgMemory(ctx, org, shard, store, passivateAfter)));
  }

  private final String org;
  private final ActorRef<ClusterSharding.ShardCommand> shard;
  private final OrgFileStore store;
  private final Duration passivateAfter;
  private final ArrayDeque<Apply> queue = new ArrayDeque<>();
  /** When each write not yet acknowledged arrived, for its latency. */
  private final Map<Apply, Long> arrived = new IdentityHashMap<>();
  private boolean writing;
  private boolean stopping;

  private OrgMemory(ActorContext<Command> ctx, String org, ActorRef<ClusterSharding.ShardCommand> shard,
      OrgFileStore store, Duration passivateAfter) {
    super(ctx);
    this.org = org;
    this.shard = shard;
    this.store = store;
    this.passivateAfter = passivateAfter;
    ctx.setReceiveTimeout(passivateAfter, IdleTimeout.INSTANCE);
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
    queue.add(apply);
    arrived.put(apply, System.nanoTime());
    if (!writing) writeNext();
    return this;
  }

  /** Takes everything queued (up to a bound) into one transaction. */
  private void writeNext() {
    List<Apply> batch = new ArrayList<>(Math.min(queue.size(), MAX_BATCH));
    while (!queue.isEmpty() && batch.size() < MAX_BATCH) batch.add(queue.poll());
    writing = true;
    dev.outboard.ops.Metrics.ORG_WRITE_BATCH.observe(batch.size());
    getContext().pipeToSelf(applyWithRetry(batch), (outcomes, error) -> new BatchDone(batch, outcomes, error));
  }

  /**
   * The batch in one transaction; if that fails (a conflicting writer, a dropped connection), once
   * more, and then each write in a transaction of its own so that one bad write cannot sink others.
   */
  private CompletionStage<List<Outcome>> applyWithRetry(List<Apply> batch) {
    List<OrgFileStore.Request> requests = batch.stream().map(a -> new OrgFileStore.Request(a.op(), a.origin())).toList();
    return store.applyBatch(org, requests)
        .exceptionallyCompose(e -> store.applyBatch(org, requests))
        .exceptionallyCompose(e -> {
          if (requests.size() == 1) return CompletableFuture.failedFuture(e);
          // Off the actor's thread (a future's callback): its context must not be used here.
          MDC.put("org", org);
          try {
            log.warn("group write of {} failed ({}); writing one by one", requests.size(), e.toString());
          } finally {
            MDC.remove("org");
          }
          CompletionStage<List<Outcome>> all = CompletableFuture.completedFuture(new ArrayList<>());
          for (OrgFileStore.Request r : requests) {
            all = all.thenCompose(done -> store.applyBatch(org, List.of(r))
                .exceptionally(err -> List.of(unavailable(err)))
                .thenApply(one -> {
                  done.addAll(one);
                  return done;
                }));
          }
          return all;
        });
  }

  private Behavior<Command> onBatchDone(BatchDone done) {
    writing = false;
    for (int i = 0; i < done.batch().size(); i++) {
      Outcome outcome = done.error() != null ? unavailable(done.error()) : done.outcomes().get(i);
      done.batch().get(i).replyTo().tell(outcome);
      Long at = arrived.remove(done.batch().get(i));
      if (at != null) dev.outboard.ops.Metrics.ORG_WRITE_SECONDS.observe(dev.outboard.ops.Metrics.secondsSince(at));
    }
    if (done.error() != null) getContext().getLog().error("org file write failed: {}", done.error().toString());
    if (!queue.isEmpty()) {
      writeNext();
      return this;
    }
    return stopping ? Behaviors.stopped() : this;
  }

  private static Outcome unavailable(Throwable error) {
    return Outcome.failed("unavailable", "the org file store is unavailable; nothing was written (" + error.getClass().getSimpleName() + ")");
  }

  private Behavior<Command> onIdle() {
    if (!writing && queue.isEmpty()) shard.tell(new ClusterSharding.Passivate<>(getContext().getSelf()));
    return this;
  }

  private Behavior<Command> onStop() {
    if (!writing && queue.isEmpty()) return Behaviors.stopped();
    stopping = true;
    return this;
  }
}
