package dev.outboard.ops;

import java.time.Duration;
import java.util.List;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.sharding.ShardRegion.CurrentShardRegionState;
import org.apache.pekko.cluster.sharding.ShardRegion.ShardState;
import org.apache.pekko.cluster.sharding.typed.ClusterShardingQuery;
import org.apache.pekko.cluster.sharding.typed.GetShardRegionState;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityTypeKey;

/**
 * Asks this node's shard regions every {@code interval} how many shards and entities they host and
 * sets {@link Metrics#SHARDS} and {@link Metrics#ENTITIES} by entity type. The asks are messages
 * (nothing blocks, nothing runs at scrape time); a region that does not answer within the interval
 * keeps its last values.
 */
public final class ShardStats {

  public sealed interface Command {}

  private enum Tick implements Command {
    INSTANCE
  }

  private record Answered(String type, CurrentShardRegionState state, Throwable error)
      implements Command {}

  /** Spawns the logger for {@code types}, every {@code outboard.metrics.shard-stats-interval}. */
  public static void init(ActorSystem<?> system, List<EntityTypeKey<?>> types) {
    Duration interval =
        system.settings().config().getDuration("outboard.metrics.shard-stats-interval");
    system.systemActorOf(create(types, interval), "shard-stats", Props.empty());
  }

  public static Behavior<Command> create(List<EntityTypeKey<?>> types, Duration interval) {
    return Behaviors.setup(
        ctx ->
            Behaviors.withTimers(
                timers -> {
                  timers.startTimerWithFixedDelay(Tick.INSTANCE, Duration.ZERO, interval);
                  return new ShardStats(ctx, types, interval).behavior();
                }));
  }

  private final ActorContext<Command> ctx;
  private final List<EntityTypeKey<?>> types;
  private final Duration interval;
  private final ActorRef<ClusterShardingQuery> query;

  private ShardStats(ActorContext<Command> ctx, List<EntityTypeKey<?>> types, Duration interval) {
    this.ctx = ctx;
    this.types = types;
    this.interval = interval;
    this.query = ClusterSharding.get(ctx.getSystem()).shardState();
  }

  private Behavior<Command> behavior() {
    return Behaviors.receive(Command.class)
        .onMessageEquals(Tick.INSTANCE, this::onTick)
        .onMessage(Answered.class, this::onAnswered)
        .build();
  }

  private Behavior<Command> onTick() {
    for (EntityTypeKey<?> type : types) {
      ctx.ask(
          CurrentShardRegionState.class,
          query,
          interval,
          replyTo -> new GetShardRegionState(type, replyTo),
          (state, error) -> new Answered(type.name(), state, error));
    }
    return Behaviors.same();
  }

  private Behavior<Command> onAnswered(Answered a) {
    if (a.error() != null) return Behaviors.same();
    int entities = 0;
    for (ShardState shard : a.state().getShards()) entities += shard.getEntityIds().size();
    Metrics.SHARDS.labelValues(a.type()).set(a.state().getShards().size());
    Metrics.ENTITIES.labelValues(a.type()).set(entities);
    return Behaviors.same();
  }
}
