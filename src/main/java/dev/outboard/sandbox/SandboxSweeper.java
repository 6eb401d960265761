package dev.outboard.sandbox;

import com.typesafe.config.Config;
import dev.outboard.Futures;
import dev.outboard.ops.ServiceStop;
import dev.outboard.sandbox.SandboxProvider.Held;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Function;
import java.util.function.Predicate;
import org.apache.pekko.actor.Cancellable;
import org.apache.pekko.actor.typed.ActorSystem;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Sandboxes nobody needs any more are destroyed: those of sessions that ended while their sandbox
 * could not be destroyed (its host was away, the node died first), replaced ones that did not
 * answer salvage, and workspaces left over from before a provider restarted. Every {@code interval}
 * (and shortly after the node starts) the provider says what it holds ({@link
 * SandboxProvider#held}); the sessions list says whose current sandbox each one is. The current
 * sandbox of a session that has not finished is kept; that of a finished session goes at once; one
 * that no session holds goes once unused for {@code unownedAfter}, which is longer than {@code
 * hibernate-after}, so whatever it held was snapshotted first (a session whose list entry lags
 * behind loses at most a replacement from its last snapshot, never running work). A sandbox host
 * that was away is swept within one interval of coming back. Several nodes sweeping the same host
 * is harmless: a sandbox is destroyed once, the others find it gone.
 */
public final class SandboxSweeper implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(SandboxSweeper.class);
  private static final Duration FIRST_SWEEP = Duration.ofSeconds(10);

  /**
   * The status of the session whose current sandbox each id is (ids no session holds are absent).
   */
  public interface Owners {
    CompletionStage<Map<String, String>> of(Collection<String> sandboxIds);

    /** Whether {@code status} is a finished session's. */
    boolean finished(String status);

    /** Owners from two functions (e.g. the session index's). */
    static Owners of(
        Function<Collection<String>, CompletionStage<Map<String, String>>> owners,
        Predicate<String> finished) {
      return new Owners() {
        @Override
        public CompletionStage<Map<String, String>> of(Collection<String> sandboxIds) {
          return owners.apply(sandboxIds);
        }

        @Override
        public boolean finished(String status) {
          return finished.test(status);
        }
      };
    }
  }

  /** What one sweep did. */
  public record Swept(int held, int kept, List<String> destroyed) {}

  private final ActorSystem<?> system;
  private final SandboxProvider provider;
  private final Owners owners;
  private final Duration interval;
  private final Duration unownedAfter;
  private final AtomicBoolean sweeping = new AtomicBoolean();
  private volatile Cancellable schedule;

  public SandboxSweeper(
      ActorSystem<?> system,
      SandboxProvider provider,
      Owners owners,
      Duration interval,
      Duration unownedAfter) {
    this.system = system;
    this.provider = provider;
    this.owners = owners;
    this.interval = interval;
    this.unownedAfter = unownedAfter;
  }

  /**
   * Sweeps {@code provider} every {@code outboard.sandbox.sweep-interval} until the node stops;
   * {@code sweep-unowned-after} is at least {@code hibernate-after} + 10 min.
   */
  public static SandboxSweeper init(
      ActorSystem<?> system, SandboxProvider provider, Owners owners) {
    Config c = system.settings().config().getConfig("outboard.sandbox");
    Duration unowned = c.getDuration("sweep-unowned-after");
    Duration floor = c.getDuration("hibernate-after").plusMinutes(10);
    if (unowned.compareTo(floor) < 0) {
      log.warn(
          "outboard.sandbox.sweep-unowned-after ({}) is shorter than hibernate-after + 10 min;"
              + " using {}",
          unowned,
          floor);
      unowned = floor;
    }
    SandboxSweeper sweeper =
        new SandboxSweeper(system, provider, owners, c.getDuration("sweep-interval"), unowned);
    sweeper.start();
    ServiceStop.register(system, "stop-sandbox-sweep", sweeper::close);
    return sweeper;
  }

  public void start() {
    Duration first = interval.compareTo(FIRST_SWEEP) < 0 ? interval : FIRST_SWEEP;
    schedule =
        system
            .scheduler()
            .scheduleWithFixedDelay(first, interval, () -> sweep(), system.executionContext());
  }

  /** One sweep (skipped, answering nothing destroyed, while the previous one runs). */
  public CompletionStage<Swept> sweep() {
    if (!sweeping.compareAndSet(false, true))
      return CompletableFuture.completedFuture(new Swept(0, 0, List.of()));
    CompletionStage<Swept> swept =
        Futures.attempt(
            () ->
                provider
                    .held()
                    .thenCompose(
                        held ->
                            owners
                                .of(held.stream().map(Held::id).toList())
                                .thenCompose(owned -> destroyUnneeded(held, owned))));
    return swept.whenComplete(
        (s, error) -> {
          sweeping.set(false);
          if (error != null) {
            log.info("sandbox sweep skipped: {}", error.toString());
          } else if (!s.destroyed().isEmpty()) {
            log.info(
                "sandbox sweep: destroyed {} of {} sandboxes no running session holds: {}",
                s.destroyed().size(),
                s.held(),
                s.destroyed());
          }
        });
  }

  private CompletionStage<Swept> destroyUnneeded(List<Held> held, Map<String, String> owned) {
    Instant idleSince = Instant.now().minus(unownedAfter);
    List<String> doomed = new ArrayList<>();
    for (Held h : held) {
      String status = owned.get(h.id());
      boolean ended = status != null && owners.finished(status);
      boolean abandoned = status == null && h.lastUsed().isBefore(idleSince);
      if (ended || abandoned) doomed.add(h.id());
    }
    CompletionStage<Void> all = CompletableFuture.completedFuture(null);
    List<String> destroyed = new ArrayList<>();
    for (String id : doomed) {
      all =
          all.thenCompose(
              v ->
                  destroy(id)
                      .thenAccept(
                          ok -> {
                            if (ok) destroyed.add(id);
                          }));
    }
    return all.thenApply(v -> new Swept(held.size(), held.size() - doomed.size(), destroyed));
  }

  /** Destroys one; true if it is gone now (destroyed, or already gone). */
  private CompletionStage<Boolean> destroy(String id) {
    return Futures.attempt(() -> provider.destroy(id))
        .handle(
            (v, e) -> {
              if (e == null) return true;
              Throwable c = Futures.cause(e);
              if (c instanceof SandboxProvider.SandboxGoneException gone && gone.confirmed())
                return true;
              log.info("sandbox sweep could not destroy {}: {}", id, c.toString());
              return false;
            });
  }

  @Override
  public void close() {
    Cancellable s = schedule;
    if (s != null) s.cancel();
  }
}
