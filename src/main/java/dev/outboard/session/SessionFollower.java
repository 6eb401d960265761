package dev.outboard.session;

import dev.outboard.session.SessionFeed.Followed;
import dev.outboard.session.SessionFeed.Message;
import java.time.Duration;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityRef;

/**
 * One open event stream's subscription to its session: asks the session entity, wherever it runs,
 * to push to the stream ({@code out}, so that a push is one hop), and watches it. When the entity
 * stops (passivation, hand-off, its node gone) it asks the next incarnation; the stream reads
 * whatever it missed in between from the journal. Stops with the stream.
 */
final class SessionFollower {
  private SessionFollower() {}

  interface Command {}

  private record Answered(Followed followed, Throwable error) implements Command {}

  private record EntityGone(ActorRef<SessionEntity.Command> entity) implements Command {}

  private enum Retry implements Command {
    INSTANCE
  }

  private enum StreamGone implements Command {
    INSTANCE
  }

  private static final Duration FIRST_RETRY = Duration.ofMillis(50);
  private static final Duration MAX_RETRY = Duration.ofSeconds(5);

  static Behavior<Command> create(String sessionId, ActorRef<Message> out, Duration askTimeout) {
    return Behaviors.setup(
        ctx ->
            Behaviors.withTimers(
                timers -> {
                  ctx.watchWith(out, StreamGone.INSTANCE);
                  EntityRef<SessionEntity.Command> entity =
                      ClusterSharding.get(ctx.getSystem())
                          .entityRefFor(SessionEntity.ENTITY_KEY, sessionId);
                  Following following = new Following(ctx, timers, entity, out, askTimeout);
                  following.follow();
                  return following.behavior();
                }));
  }

  private static final class Following {
    private final ActorContext<Command> ctx;
    private final TimerScheduler<Command> timers;
    private final EntityRef<SessionEntity.Command> entity;
    private final ActorRef<Message> out;
    private final Duration askTimeout;

    /** The incarnation followed, null while (re)connecting. */
    private ActorRef<SessionEntity.Command> incarnation;

    private Duration nextRetry = FIRST_RETRY;

    Following(
        ActorContext<Command> ctx,
        TimerScheduler<Command> timers,
        EntityRef<SessionEntity.Command> entity,
        ActorRef<Message> out,
        Duration askTimeout) {
      this.ctx = ctx;
      this.timers = timers;
      this.entity = entity;
      this.out = out;
      this.askTimeout = askTimeout;
    }

    /**
     * The session pushes straight to the stream ({@code out}); this actor only keeps it following.
     */
    void follow() {
      ctx.pipeToSelf(
          entity.<Followed>askWithStatus(r -> new SessionEntity.Follow(out, r), askTimeout),
          Answered::new);
    }

    Behavior<Command> behavior() {
      return Behaviors.receive(Command.class)
          .onMessage(Answered.class, this::onAnswered)
          .onMessage(
              EntityGone.class,
              m -> {
                if (m.entity().equals(incarnation)) lost();
                return Behaviors.same();
              })
          .onMessageEquals(
              Retry.INSTANCE,
              () -> {
                follow();
                return Behaviors.same();
              })
          .onMessageEquals(StreamGone.INSTANCE, Behaviors::stopped)
          .build();
    }

    private Behavior<Command> onAnswered(Answered answer) {
      if (answer.error() != null) {
        // The session is moving or its node is gone: ask again, less often each time.
        timers.startSingleTimer(Retry.INSTANCE, nextRetry);
        nextRetry =
            nextRetry.multipliedBy(2).compareTo(MAX_RETRY) > 0
                ? MAX_RETRY
                : nextRetry.multipliedBy(2);
        return Behaviors.same();
      }
      nextRetry = FIRST_RETRY;
      if (incarnation != null) ctx.unwatch(incarnation);
      incarnation = answer.followed().entity();
      ctx.watchWith(incarnation, new EntityGone(incarnation));
      out.tell(answer.followed());
      return Behaviors.same();
    }

    /**
     * The incarnation stopped: follow the next one (which the ask starts, wherever sharding puts
     * it).
     */
    private void lost() {
      if (incarnation != null) ctx.unwatch(incarnation);
      incarnation = null;
      timers.startSingleTimer(Retry.INSTANCE, FIRST_RETRY);
    }
  }
}
