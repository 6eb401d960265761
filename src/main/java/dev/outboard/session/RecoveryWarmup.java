package dev.outboard.session;

import com.typesafe.config.Config;
import dev.outboard.store.Database;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.persistence.typed.PersistenceId;
import org.apache.pekko.persistence.typed.RecoveryCompleted;
import org.apache.pekko.persistence.typed.SnapshotSelectionCriteria;
import org.apache.pekko.persistence.typed.javadsl.CommandHandler;
import org.apache.pekko.persistence.typed.javadsl.EventHandler;
import org.apache.pekko.persistence.typed.javadsl.EventSourcedBehavior;
import org.apache.pekko.persistence.typed.javadsl.Recovery;
import org.apache.pekko.persistence.typed.javadsl.SignalHandler;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Replays a few recent sessions and shard stores read-only before a node joins the cluster, so that
 * the first sessions handed to it (a rolling deploy gives a new node a whole old node's sessions at
 * once) do not each pay for a cold JVM: measured on two cores, a session's recovery took 0.7-1.7 s
 * on a node that had just started and 20-120 ms on a warm one. Nothing is written: the replaying
 * actors never persist, and they stop as soon as they have recovered.
 */
public final class RecoveryWarmup {
  private static final Logger log = LoggerFactory.getLogger(RecoveryWarmup.class);

  private RecoveryWarmup() {}

  /** {@link #run(ActorSystem, Database, int, int, Duration)} as {@code warmup} configures it. */
  public static long run(ActorSystem<?> system, Database db, Config warmup) {
    return run(
        system,
        db,
        warmup.getInt("sessions"),
        warmup.getInt("rounds"),
        warmup.getDuration("budget"));
  }

  /**
   * Replays up to {@code sessions} recent sessions (and their shards' entity stores), {@code
   * rounds} times, within {@code budget}; returns the number of events replayed (0 when it did
   * nothing).
   */
  public static long run(
      ActorSystem<?> system, Database db, int sessions, int rounds, Duration budget) {
    if (sessions <= 0) return 0;
    long t0 = System.nanoTime();
    List<String> ids;
    try {
      ids = recentPersistenceIds(db, sessions);
    } catch (SQLException e) {
      log.warn("recovery warm-up skipped: {}", e.getMessage());
      return 0;
    }
    if (ids.isEmpty() || rounds <= 0) return 0;
    long events = 0;
    for (int round = 0; round < rounds; round++) {
      List<CompletableFuture<Integer>> done = new ArrayList<>();
      for (String id : ids) {
        CompletableFuture<Integer> recovered = new CompletableFuture<>();
        ActorRef<Object> replay =
            system.systemActorOf(
                new Replay(id, recovered),
                "recovery-warmup-" + round + "-" + done.size(),
                Props.empty());
        recovered.whenComplete((n, e) -> replay.tell(Replay.STOP));
        done.add(recovered);
      }
      try {
        long left = budget.toNanos() - (System.nanoTime() - t0);
        CompletableFuture.allOf(done.toArray(CompletableFuture[]::new))
            .get(Math.max(0, left), TimeUnit.NANOSECONDS);
      } catch (TimeoutException e) {
        log.info("recovery warm-up stopped at its budget of {}", budget);
        return events;
      } catch (Exception e) {
        log.warn("recovery warm-up failed: {}", e.toString());
        return events;
      }
      for (CompletableFuture<Integer> f : done) events += f.join();
    }
    log.info(
        "recovery warm-up: {} replays of {} journals ({} events) in {} ms",
        rounds * ids.size(),
        ids.size(),
        events,
        (System.nanoTime() - t0) / 1_000_000);
    return events;
  }

  /**
   * The most recently written sessions, and the remembered-entity stores of the shards they are in.
   */
  private static List<String> recentPersistenceIds(Database db, int limit) throws SQLException {
    Set<String> ids = new LinkedHashSet<>();
    try (Connection c = db.dataSource().getConnection();
        PreparedStatement st =
            c.prepareStatement(
                // quoted: the H2 schema's names are lower case too
                "SELECT \"persistence_id\" FROM \"event_journal\" WHERE \"ordering\" > (SELECT"
                    + " COALESCE(MAX(\"ordering\"), 0) - 5000 FROM \"event_journal\") ORDER BY"
                    + " \"ordering\" DESC")) {
      st.setMaxRows(5000);
      try (ResultSet rs = st.executeQuery()) {
        int sessions = 0;
        int stores = 0;
        while (rs.next() && (sessions < limit || stores < limit / 4)) {
          String id = rs.getString(1);
          if (id.startsWith(SessionEntity.ENTITY_KEY.name() + "|")) {
            if (sessions < limit && ids.add(id)) sessions++;
          } else if (id.startsWith("/sharding/" + SessionEntity.ENTITY_KEY.name() + "Shard/")) {
            if (stores < limit / 4 && ids.add(id)) stores++;
          }
        }
      }
    }
    return new ArrayList<>(ids);
  }

  /** Replays one journal without snapshots and counts its events; never persists. */
  private static final class Replay extends EventSourcedBehavior<Object, Object, Integer> {
    static final Object STOP = "stop";
    private final CompletableFuture<Integer> recovered;

    Replay(String persistenceId, CompletableFuture<Integer> recovered) {
      super(PersistenceId.ofUniqueId(persistenceId));
      this.recovered = recovered;
    }

    @Override
    public Integer emptyState() {
      return 0;
    }

    @Override
    public Recovery recovery() {
      // A session's snapshot is a SessionState, not this actor's count: events only.
      return Recovery.withSnapshotSelectionCriteria(SnapshotSelectionCriteria.none());
    }

    @Override
    public CommandHandler<Object, Object, Integer> commandHandler() {
      return newCommandHandlerBuilder().forAnyState().onAnyCommand(c -> Effect().stop());
    }

    @Override
    public EventHandler<Integer, Object> eventHandler() {
      return newEventHandlerBuilder().forAnyState().onAnyEvent((count, event) -> count + 1);
    }

    @Override
    public SignalHandler<Integer> signalHandler() {
      return newSignalHandlerBuilder()
          .onSignal(RecoveryCompleted.instance(), recovered::complete)
          .build();
    }
  }
}
