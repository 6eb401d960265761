package dev.outboard.session;

import dev.outboard.model.ModelClient;
import dev.outboard.model.ModelDelta;
import dev.outboard.model.Secrets;
import dev.outboard.ops.Metrics;
import dev.outboard.session.SessionEntity.Command;
import dev.outboard.session.SessionEntity.DeltaArrived;
import dev.outboard.session.SessionEntity.ModelAnswered;
import dev.outboard.session.SessionEntity.ModelFailed;
import dev.outboard.session.SessionEntity.Summarised;
import dev.outboard.session.SessionEntity.SummaryFailed;
import java.util.function.Consumer;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.ActorContext;

/**
 * The model call this incarnation has in flight: asked once per turn, after a compaction's summary
 * if the transcript needs one, streamed to the followers, its answer piped back to the entity; and
 * the timing of the turn it starts. Used on the actor's thread only ({@link ModelTurn} makes the
 * call itself).
 */
final class ModelCalls {

  private final SessionServices services;
  private final ActorContext<Command> ctx;
  private final ModelTurn modelTurn;
  private final Compaction compaction;
  private final Followers followers;

  /**
   * The turn whose model call is in flight, so that it is never asked twice by this incarnation.
   */
  private int callInFlight;

  private long turnStartNanos;

  /** The turn whose duration turnStartNanos times (0: none), see {@link #recorded}. */
  private int timedTurn;

  ModelCalls(
      SessionServices services,
      ActorContext<Command> ctx,
      ModelTurn modelTurn,
      Compaction compaction,
      Followers followers) {
    this.services = services;
    this.ctx = ctx;
    this.modelTurn = modelTurn;
    this.compaction = compaction;
    this.followers = followers;
  }

  /** Whether the call of {@code turn} is in flight. */
  boolean inFlight(int turn) {
    return callInFlight == turn;
  }

  /**
   * The call in flight came back (answered, failed, over budget, or its summary did): whether it is
   * the call of {@code turn} that {@code state} waits for (or came too late).
   */
  boolean returned(SessionState state, int turn) {
    callInFlight = 0;
    return turn == state.turns() + 1 && state.readyForModel();
  }

  /** Forgets the call of the previous incarnation (it died with it) and the turn it timed. */
  void forget() {
    callInFlight = 0;
    timedTurn = 0;
  }

  /**
   * Asks the model for the next turn, unless this incarnation asked already; a transcript over its
   * compaction threshold is summarised first.
   */
  void call(SessionState state) {
    int turn = state.turns() + 1;
    if (callInFlight == turn) return;
    int cut = compaction.cut(state, turn, modelTurn.tools(state));
    if (cut > 0) {
      summarise(state, turn, cut);
      return;
    }
    callInFlight = turn;
    turnStartNanos = System.nanoTime();
    timedTurn = turn;
    ModelClient client = services.models().get(state.spec().model().provider()).orElse(null);
    if (client == null) {
      ctx.getSelf()
          .tell(
              new ModelFailed(
                  turn,
                  "model_unavailable",
                  "model provider '"
                      + state.spec().model().provider()
                      + "' is not available on this node"));
      return;
    }
    ActorRef<Command> self = ctx.getSelf();
    Consumer<ModelDelta> deltas =
        followers.none() ? null : delta -> self.tell(new DeltaArrived(turn, delta));
    ctx.pipeToSelf(
        modelTurn.call(state, turn, client, deltas),
        (answer, error) -> {
          if (error != null) return ModelTurn.failed(turn, error);
          Metrics.MODEL_CALL_SECONDS.observe(Metrics.secondsSince(turnStartNanos));
          return new ModelAnswered(turn, answer.response(), answer.orgPolicy());
        });
  }

  /**
   * Asks for a summary of {@code messages[0, cut)} before the call of {@code turn} (compaction).
   */
  private void summarise(SessionState state, int turn, int cut) {
    callInFlight = turn;
    ctx.pipeToSelf(
        compaction.summarise(state, turn, cut),
        (response, error) ->
            error == null
                ? new Summarised(turn, cut, response.text(), response.usage())
                : new SummaryFailed(turn, Secrets.redact(String.valueOf(error.getMessage()))));
  }

  /** A write is recorded: once it holds the last result of the timed turn, the turn's time. */
  void recorded(SessionState state) {
    if (timedTurn != 0 && timedTurn == state.turns() && state.openCalls().isEmpty()) {
      Metrics.TURN_SECONDS.observe(
          Metrics.secondsSince(turnStartNanos)); // the turn's last result is recorded
      timedTurn = 0;
    }
  }
}
