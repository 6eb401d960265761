package dev.outboard.session;

import dev.outboard.JsonSerializable;
import java.util.List;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * What a session pushes to those who follow it (its open event streams, on any node): each recorded
 * event as soon as its write succeeded, rendered once by the session, and live-only events such as
 * {@code model.delta}. A follower that sees a gap in the sequence numbers reads the missing events
 * from the journal, so a lost or late push costs a query, never an event.
 */
public final class SessionFeed {
  private SessionFeed() {}

  /**
   * One SSE event as sent: {@code id} is the journal sequence number, or null for derived and live
   * events.
   */
  public record Item(String id, String type, String data) implements JsonSerializable {
    public boolean terminal() {
      return type.equals("session.completed")
          || type.equals("session.failed")
          || type.equals("session.cancelled");
    }
  }

  public sealed interface Message extends JsonSerializable {}

  /**
   * The answer to a follow: pushes of events after {@code seq} follow; {@code entity} is the
   * incarnation.
   */
  public record Followed(long seq, ActorRef<SessionEntity.Command> entity) implements Message {}

  /**
   * Journal event {@code seq}, as the SSE items it stands for (the event, maybe a derived {@code
   * turn.started}).
   */
  public record Recorded(long seq, List<Item> items) implements Message {}

  /** A live-only event, sent while {@code seq} was the session's last recorded event. */
  public record Live(long seq, Item item) implements Message {}
}
