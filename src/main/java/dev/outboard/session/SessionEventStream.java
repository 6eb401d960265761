package dev.outboard.session;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.outboard.Json;
import dev.outboard.session.SessionEntity.Event;
import dev.outboard.session.SessionEntity.State;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.NotUsed;
import org.apache.pekko.http.javadsl.model.sse.ServerSentEvent;
import org.apache.pekko.persistence.jdbc.query.javadsl.JdbcReadJournal;
import org.apache.pekko.persistence.query.EventEnvelope;
import org.apache.pekko.persistence.typed.PersistenceId;
import org.apache.pekko.stream.javadsl.Source;

/**
 * A session's events as Server-Sent Events, read from the journal: the {@code id} of each is its
 * journal sequence number, so {@code Last-Event-ID: n} replays everything after {@code n} and then
 * follows live. Between a turn's last recorded event and the next model answer the stream also
 * says {@code turn.started} (without an id: it is derived, not recorded).
 */
public final class SessionEventStream {
  private final JdbcReadJournal journal;

  public SessionEventStream(JdbcReadJournal journal) {
    this.journal = journal;
  }

  /** Events after sequence number {@code after}; live streams end after the terminal event. */
  public Source<ServerSentEvent, NotUsed> events(String sessionId, long after, boolean live) {
    String pid = PersistenceId.of(SessionEntity.ENTITY_KEY.name(), sessionId).id();
    Source<EventEnvelope, NotUsed> envelopes = live
        ? journal.eventsByPersistenceId(pid, 1, Long.MAX_VALUE)
        : journal.currentEventsByPersistenceId(pid, 1, Long.MAX_VALUE);
    // The whole history is folded through the entity's own event handler, so that derived
    // events (turn.started) are exact; only events after `after` are sent.
    return envelopes
        .statefulMapConcat(() -> {
          State[] state = {State.empty(sessionId)};
          return envelope -> {
            Event event = (Event) envelope.event();
            State before = state[0];
            state[0] = SessionEntity.apply(before, event);
            if (envelope.sequenceNr() <= after) return List.of();
            return render(envelope.sequenceNr(), event, before, state[0]);
          };
        })
        .takeWhile(sse -> !isTerminal(sse), true);
  }

  private static boolean isTerminal(ServerSentEvent sse) {
    Optional<String> type = sse.getEventType();
    return type.isPresent()
        && (type.get().equals("session.completed") || type.get().equals("session.failed") || type.get().equals("session.cancelled"));
  }

  private static List<ServerSentEvent> render(long seq, Event event, State before, State after) {
    List<ServerSentEvent> out = new ArrayList<>(2);
    ObjectNode data = data(event);
    // Every sandbox event says the state the sandbox is in after it.
    if (type(event).equals("sandbox.changed") && after.sandbox() != null) data.put("state", after.sandbox().state());
    out.add(ServerSentEvent.create(json(data), type(event), Long.toString(seq)));
    if (after.readyForModel() && !before.readyForModel() || event instanceof SessionEntity.SessionStarted) {
      ObjectNode turn = Json.MAPPER.createObjectNode().put("turn", after.turns() + 1);
      out.add(ServerSentEvent.create(json(turn), "turn.started"));
    }
    return out;
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
    } else if (event instanceof SessionEntity.ToolCallStarted) {
      node.set("toolUseId", node.remove("callId"));
    } else if (event instanceof SessionEntity.SessionWaiting) {
      node.set("result", node.remove("text"));
    } else if (event instanceof SessionEntity.SessionFailed e) {
      node.remove("code");
      node.remove("message");
      node.putObject("error").put("code", e.code()).put("message", e.message());
    }
    return node;
  }

  private static String json(Object value) {
    try {
      return Json.MAPPER.writeValueAsString(value);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }
}
