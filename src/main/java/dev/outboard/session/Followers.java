package dev.outboard.session;

import dev.outboard.model.ModelDelta;
import dev.outboard.session.SessionEntity.Command;
import dev.outboard.session.SessionEntity.FollowerGone;
import dev.outboard.session.SessionEntity.WaitDue;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.apache.pekko.pattern.StatusReply;

/**
 * Who follows a session in this incarnation: its open event streams ({@link SessionFollower}, on
 * any node), pushed each recorded event and the model's answer as it streams, and the callers
 * waiting for it to leave running (AwaitSettled). Used on the actor's thread only.
 */
final class Followers {

  private final ActorContext<Command> ctx;
  private final TimerScheduler<Command> timers;

  /** The open event streams that follow this session (SessionFollower), on any node. */
  private final Set<ActorRef<SessionFeed.Message>> streams = new HashSet<>();

  /** Callers waiting for the session to leave running (AwaitSettled). */
  private final List<ActorRef<StatusReply<Summary>>> waiters = new ArrayList<>();

  Followers(ActorContext<Command> ctx, TimerScheduler<Command> timers) {
    this.ctx = ctx;
    this.timers = timers;
  }

  /** Whether no event stream follows the session. */
  boolean none() {
    return streams.isEmpty();
  }

  void follow(ActorRef<SessionFeed.Message> stream) {
    if (streams.add(stream)) ctx.watchWith(stream, new FollowerGone(stream));
  }

  void gone(ActorRef<SessionFeed.Message> stream) {
    streams.remove(stream);
  }

  void push(SessionFeed.Message message) {
    for (ActorRef<SessionFeed.Message> stream : streams) stream.tell(message);
  }

  /** Pushes {@code delta}, a piece of turn {@code turn}'s answer after event {@code seq}, live. */
  void live(long seq, int turn, ModelDelta delta) {
    if (!none()) push(new SessionFeed.Live(seq, SessionEventStream.delta(turn, delta)));
  }

  /** The streams watch this incarnation, which stops: they follow the next. */
  void clear() {
    streams.clear();
  }

  /** {@code waiter} is answered when the session leaves running, or after {@code waitMillis}. */
  void await(ActorRef<StatusReply<Summary>> waiter, long waitMillis) {
    waiters.add(waiter);
    timers.startSingleTimer(
        new WaitDue(waiter), new WaitDue(waiter), Duration.ofMillis(Math.max(0, waitMillis)));
  }

  /** The wait of {@code waiter} ran out: if it still waits, it is answered {@code summary}. */
  void due(ActorRef<StatusReply<Summary>> waiter, Supplier<Summary> summary) {
    if (waiters.remove(waiter)) waiter.tell(StatusReply.success(summary.get()));
  }

  /**
   * Answers the callers waiting for the session to leave running (it did, or this incarnation
   * stops).
   */
  void release(Supplier<Summary> summary) {
    for (ActorRef<StatusReply<Summary>> waiter : waiters) {
      timers.cancel(new WaitDue(waiter));
      waiter.tell(StatusReply.success(summary.get()));
    }
    waiters.clear();
  }
}
