package dev.outboard.session;

import com.fasterxml.jackson.databind.node.ObjectNode;
import com.typesafe.config.ConfigFactory;
import dev.outboard.Json;
import dev.outboard.model.ModelDelta;
import dev.outboard.session.SessionEntity.Event;
import dev.outboard.session.SessionFeed.Followed;
import dev.outboard.session.SessionFeed.Item;
import dev.outboard.session.SessionFeed.Live;
import dev.outboard.session.SessionFeed.Message;
import dev.outboard.session.SessionFeed.Recorded;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.pekko.NotUsed;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.pattern.Patterns;
import org.apache.pekko.persistence.Persistence;
import org.apache.pekko.persistence.SelectedSnapshot;
import org.apache.pekko.persistence.SnapshotProtocol;
import org.apache.pekko.persistence.SnapshotSelectionCriteria;
import org.apache.pekko.persistence.jdbc.query.javadsl.JdbcReadJournal;
import org.apache.pekko.persistence.typed.PersistenceId;
import org.apache.pekko.stream.OverflowStrategy;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.stream.typed.javadsl.ActorSource;
import org.apache.pekko.util.ByteString;

/**
 * A session's events as Server-Sent Events. The {@code id} of each is its journal sequence number,
 * so {@code Last-Event-ID: n} gets everything after {@code n}: what is already recorded from the
 * journal, once (starting from the newest snapshot before {@code n}, not from the first event),
 * then what the session pushes as it records it ({@link SessionFeed}), without polling the
 * database. Between a turn's last recorded event and the next model answer the stream also says
 * {@code turn.started} (without an id: it is derived, not recorded).
 */
public final class SessionEventStream {
  /**
   * Pushes a slow client has not taken yet; past this the oldest go, and the gap is read from the
   * journal.
   */
  private static final int FEED_BUFFER = 1024;

  private static final AtomicLong FOLLOWERS = new AtomicLong();

  private final ActorSystem<?> system;
  private final JdbcReadJournal journal;
  private final org.apache.pekko.actor.ActorRef snapshots;
  private final Duration askTimeout;

  public SessionEventStream(ActorSystem<?> system, JdbcReadJournal journal) {
    this.system = system;
    this.journal = journal;
    this.snapshots =
        Persistence.get(org.apache.pekko.actor.typed.javadsl.Adapter.toClassic(system))
            .snapshotStoreFor("jdbc-snapshot-store", ConfigFactory.empty());
    this.askTimeout = system.settings().config().getDuration("outboard.http.ask-timeout");
  }

  /**
   * The whole transcript, compactions undone: every message the session recorded, folded from its
   * first event (compaction keeps the journal whole; snapshots hold the compacted state).
   */
  public CompletionStage<Transcript> fullTranscript(String sessionId) {
    return journal
        .currentEventsByPersistenceId(persistenceId(sessionId), 0, Long.MAX_VALUE)
        .runFold(
            SessionState.empty(sessionId),
            (state, envelope) -> {
              Event event = (Event) envelope.event();
              return event instanceof SessionEntity.TranscriptCompacted
                  ? state
                  : state.apply(event);
            },
            system)
        .thenApply(SessionState::transcript);
  }

  /** The recorded events after {@code after} up to {@code to}: the stream of a finished session. */
  public Source<Item, NotUsed> recorded(String sessionId, long after, long to) {
    return replay(sessionId, after + 1, to);
  }

  /**
   * Events after {@code after} until the terminal event: the recorded ones from the journal up to
   * where the session is when the stream starts following it, then its pushes. A push that is older
   * than what was sent is dropped; one that skips ahead first reads the missing events.
   */
  public Source<Item, NotUsed> follow(String sessionId, long after) {
    Source<Message, ActorRef<Message>> feed =
        ActorSource.actorRef(
            m -> false, m -> Optional.empty(), FEED_BUFFER, OverflowStrategy.dropHead());
    return feed.mapMaterializedValue(
            out -> {
              system.systemActorOf(
                  SessionFollower.create(sessionId, out, askTimeout),
                  "follower-" + FOLLOWERS.incrementAndGet(),
                  Props.empty());
              return NotUsed.getInstance();
            })
        .flatMapConcat(new Sequencer(sessionId, after)::next)
        .takeWhile(item -> !item.terminal(), true);
  }

  /** Turns the feed into items in sequence order, each recorded event exactly once. */
  private final class Sequencer {
    private final String sessionId;

    /** The sequence number of the last recorded event sent (or read, for one being read). */
    private long sent;

    Sequencer(String sessionId, long after) {
      this.sessionId = sessionId;
      this.sent = after;
    }

    Source<Item, NotUsed> next(Message message) {
      if (message instanceof Followed f) return catchUp(f.seq());
      if (message instanceof Recorded r) {
        if (r.seq() <= sent) return Source.empty();
        if (r.seq() == sent + 1) {
          sent = r.seq();
          return Source.from(r.items()); // the usual case: flattened without a substream
        }
        Source<Item, NotUsed> missing = catchUp(r.seq() - 1);
        sent = r.seq();
        return missing.concat(Source.from(r.items()));
      }
      if (message instanceof Live l && l.seq() == sent) return Source.single(l.item());
      return Source.empty();
    }

    /** Reads what was recorded after {@code sent} up to {@code to} (nothing if already sent). */
    private Source<Item, NotUsed> catchUp(long to) {
      if (to <= sent) return Source.empty();
      long from = sent + 1;
      sent = to;
      return replay(sessionId, from, to);
    }
  }

  /**
   * Recorded events {@code from..to}, rendered with the state before each: folded from the newest
   * snapshot before {@code from}.
   */
  private Source<Item, NotUsed> replay(String sessionId, long from, long to) {
    if (from > to) return Source.empty();
    String pid = persistenceId(sessionId);
    return Source.completionStage(stateBefore(pid, sessionId, from))
        .flatMapConcat(
            start ->
                journal
                    .currentEventsByPersistenceId(pid, start.seq() + 1, to)
                    .statefulMapConcat(
                        () -> {
                          SessionState[] state = {start.state()};
                          return envelope -> {
                            Event event = (Event) envelope.event();
                            SessionState before = state[0];
                            state[0] = before.apply(event);
                            return envelope.sequenceNr() < from
                                ? List.of()
                                : render(envelope.sequenceNr(), event, before, state[0]);
                          };
                        }));
  }

  private record Start(long seq, SessionState state) {}

  /** The newest snapshot before {@code from}, or the empty state before event 1. */
  private CompletionStage<Start> stateBefore(String pid, String sessionId, long from) {
    Start empty = new Start(0, SessionState.empty(sessionId));
    if (from <= 1) return CompletableFuture.completedFuture(empty);
    var load =
        new SnapshotProtocol.LoadSnapshot(
            pid, SnapshotSelectionCriteria.create(from - 1, Long.MAX_VALUE), from - 1);
    return Patterns.ask(snapshots, load, askTimeout)
        .thenApply(
            reply -> {
              if (reply instanceof SnapshotProtocol.LoadSnapshotResult r
                  && r.snapshot().isDefined()) {
                SelectedSnapshot selected = r.snapshot().get();
                if (selected.snapshot() instanceof SessionState s)
                  return new Start(selected.metadata().sequenceNr(), s);
              }
              return empty;
            })
        .exceptionally(e -> empty); // an unreadable snapshot costs a longer read, not the stream
  }

  static String persistenceId(String sessionId) {
    return PersistenceId.of(SessionEntity.ENTITY_KEY.name(), sessionId).id();
  }

  /** The SSE items of recorded event {@code seq}, given the state before and after it. */
  static List<Item> render(long seq, Event event, SessionState before, SessionState after) {
    List<Item> out = new ArrayList<>(2);
    ObjectNode data = data(event);
    // Every sandbox event says the state the sandbox is in after it.
    if (type(event).equals("sandbox.changed") && after.sandbox() != null)
      data.put("state", after.sandbox().state().wire());
    if (event instanceof SessionEntity.ApprovalRequested e) {
      // What is to be approved: the call's arguments, from the answer that asked for it.
      after.lastToolUses().stream()
          .filter(u -> u.id().equals(e.callId()))
          .findFirst()
          .ifPresent(u -> data.set("input", u.input()));
    } else if (event instanceof SessionEntity.EventReceived e) {
      Holds.Wait taker =
          before.status() == SessionStatus.RUNNING ? before.holds().waitFor(e.name()) : null;
      if (taker != null) data.put("toolUseId", taker.callId());
      data.put("queued", taker == null);
    }
    out.add(new Item(Long.toString(seq), type(event), Json.write(data)));
    if (after.readyForModel() && !before.readyForModel()
        || event instanceof SessionEntity.SessionStarted) {
      out.add(
          new Item(
              null,
              "turn.started",
              Json.write(Json.MAPPER.createObjectNode().put("turn", after.turns() + 1))));
    }
    return out;
  }

  /**
   * A piece of turn {@code turn}'s model answer as a {@code model.delta} item (live only: no id).
   */
  static Item delta(int turn, ModelDelta delta) {
    ObjectNode data = Json.MAPPER.createObjectNode().put("turn", turn).put("index", delta.index());
    if (delta instanceof ModelDelta.Text t) {
      data.put("type", "text").put("text", t.text());
    } else if (delta instanceof ModelDelta.ToolInput t) {
      data.put("type", "tool_input")
          .put("toolUseId", t.toolUseId())
          .put("name", t.name())
          .put("partialJson", t.partialJson());
    }
    return new Item(null, "model.delta", Json.write(data));
  }

  /**
   * The SSE items of {@code events} recorded from {@code firstSeq} on, starting in state {@code
   * before}.
   */
  static List<Recorded> render(long firstSeq, List<Event> events, SessionState before) {
    List<Recorded> out = new ArrayList<>(events.size());
    SessionState state = before;
    for (int i = 0; i < events.size(); i++) {
      SessionState next = state.apply(events.get(i));
      out.add(new Recorded(firstSeq + i, render(firstSeq + i, events.get(i), state, next)));
      state = next;
    }
    return out;
  }

  /**
   * An item on the wire: {@code id:}, {@code event:} and one {@code data:} line per line of data.
   */
  public static ByteString wire(Item item) {
    StringBuilder b = new StringBuilder(item.data().length() + 64);
    if (item.id() != null) b.append("id: ").append(item.id()).append('\n');
    b.append("event: ").append(item.type()).append('\n');
    for (String line : item.data().split("\n", -1)) b.append("data: ").append(line).append('\n');
    return ByteString.fromString(b.append('\n').toString(), StandardCharsets.UTF_8);
  }

  /** The SSE event type of a journal event (API.md "events"). */
  public static String type(Event event) {
    if (event instanceof SessionEntity.SessionStarted) return "session.started";
    if (event instanceof SessionEntity.UserMessageAdded) return "message.added";
    if (event instanceof SessionEntity.ModelResponded) return "model.responded";
    if (event instanceof SessionEntity.ToolCallStarted) return "tool.started";
    if (event instanceof SessionEntity.ToolCallCompleted) return "tool.completed";
    if (event instanceof SessionEntity.SessionWaiting) return "session.waiting";
    if (event instanceof SessionEntity.SessionCompleted) return "session.completed";
    if (event instanceof SessionEntity.SessionFailed) return "session.failed";
    if (event instanceof SessionEntity.SessionCancelled) return "session.cancelled";
    if (event instanceof SessionEntity.TranscriptCompacted) return "transcript.compacted";
    if (event instanceof SessionEntity.BudgetExceeded) return "budget.exceeded";
    if (event instanceof SessionEntity.BudgetRaised) return "budget.raised";
    if (event instanceof SessionEntity.TaskStarted) return "task.started";
    if (event instanceof SessionEntity.TaskFinished) return "task.finished";
    if (event instanceof SessionEntity.ApprovalRequested) return "approval.requested";
    if (event instanceof SessionEntity.ApprovalDecided) return "approval.decided";
    if (event instanceof SessionEntity.WaitStarted) return "wait.started";
    if (event instanceof SessionEntity.EventReceived) return "event.received";
    if (event instanceof SessionEntity.SandboxAttached
        || event instanceof SessionEntity.SandboxReplaced
        || event instanceof SessionEntity.SandboxChanged) return "sandbox.changed";
    throw new IllegalArgumentException("no SSE type for " + event.getClass());
  }

  private static ObjectNode data(Event event) {
    ObjectNode node = Json.MAPPER.valueToTree(event);
    if (event instanceof SessionEntity.SessionStarted e) {
      // The spec carries the model script and settings; clients get the essentials.
      node.remove("spec");
      node.put("prompt", e.spec().prompt());
      node.set("metadata", e.spec().metadata());
    } else if (event instanceof SessionEntity.ToolCallCompleted) {
      node.remove("change");
      node.set("toolUseId", node.remove("callId"));
    } else if (event instanceof SessionEntity.ToolCallStarted
        || event instanceof SessionEntity.ApprovalRequested
        || event instanceof SessionEntity.WaitStarted) {
      node.set("toolUseId", node.remove("callId"));
    } else if (event instanceof SessionEntity.TaskStarted
        || event instanceof SessionEntity.TaskFinished) {
      node.set("toolUseId", node.remove("callId"));
      node.set("session", node.remove("childId"));
    } else if (event instanceof SessionEntity.ApprovalDecided e) {
      node.set("toolUseId", node.remove("callId"));
      node.remove("allowed");
      node.put("decision", e.allowed() ? "allow" : "deny");
    } else if (event instanceof SessionEntity.EventReceived) {
      node.remove("payload"); // it is the result of the wait that takes it (tool.completed)
    } else if (event instanceof SessionEntity.SessionWaiting) {
      node.set("result", node.remove("text"));
    } else if (event instanceof SessionEntity.SessionFailed e) {
      node.remove("code");
      node.remove("message");
      node.putObject("error").put("code", e.code()).put("message", e.message());
    }
    return node;
  }
}
