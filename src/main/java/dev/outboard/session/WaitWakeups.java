package dev.outboard.session;

import dev.outboard.ops.ServiceStop;
import java.time.Duration;
import java.time.Instant;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.pekko.actor.Cancellable;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The durable part of wait timeouts. A session in memory times its waits itself; one that
 * passivated, or whose node went away, is not in memory to do so. The sessions list keeps each
 * waiting session's earliest deadline ({@code wake_at}), and every node looks every {@code
 * scan-interval} for deadlines that have come and sends those sessions {@link SessionEntity.Wake}:
 * sharding starts each where it lives, it recovers, and its due wait times out. Several nodes
 * waking the same session is harmless (a wait times out once: it is an event).
 */
public final class WaitWakeups implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(WaitWakeups.class);
  private static final int BATCH = 1000;

  private final ActorSystem<?> system;
  private final SessionIndex index;
  private final Duration interval;
  private final AtomicBoolean scanning = new AtomicBoolean();
  private volatile Cancellable schedule;

  public WaitWakeups(ActorSystem<?> system, SessionIndex index, Duration interval) {
    this.system = system;
    this.index = index;
    this.interval = interval;
  }

  /** Scans every {@code outboard.waits.scan-interval} from now on, until the node stops. */
  public static WaitWakeups init(ActorSystem<?> system, SessionIndex index) {
    WaitWakeups wakeups =
        new WaitWakeups(
            system, index, system.settings().config().getDuration("outboard.waits.scan-interval"));
    wakeups.start();
    ServiceStop.register(system, "stop-wait-wakeups", wakeups::close);
    return wakeups;
  }

  public void start() {
    schedule =
        system
            .scheduler()
            .scheduleWithFixedDelay(interval, interval, this::scan, system.executionContext());
  }

  /** One look for due waits; skipped while the previous one is still running. */
  void scan() {
    if (!scanning.compareAndSet(false, true)) return;
    ClusterSharding sharding = ClusterSharding.get(system);
    index
        .due(Instant.now(), BATCH)
        .whenComplete(
            (ids, error) -> {
              scanning.set(false);
              if (error != null) {
                log.warn("could not look for due waits: {}", error.toString());
                return;
              }
              for (String id : ids)
                sharding
                    .entityRefFor(SessionEntity.ENTITY_KEY, id)
                    .tell(SessionEntity.Wake.INSTANCE);
            });
  }

  @Override
  public void close() {
    Cancellable s = schedule;
    if (s != null) s.cancel();
  }
}
