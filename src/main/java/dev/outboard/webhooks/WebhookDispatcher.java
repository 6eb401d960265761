package dev.outboard.webhooks;

import com.typesafe.config.Config;
import dev.outboard.ops.ServiceStop;
import dev.outboard.store.Database;
import dev.outboard.store.Sql;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.InvalidKeyException;
import java.security.NoSuchAlgorithmException;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.apache.pekko.actor.typed.ActorSystem;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Delivers the webhook outbox: POSTs each owed status change to its org's URL, signed ({@code
 * Outboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the org's secret>})
 * and named ({@code Outboard-Event-Id}); a 2xx answer delivers it, anything else is tried again
 * with exponential backoff and jitter until {@code max-attempts}. A node claims a delivery for
 * {@code lease} before it sends it, so nodes do not send the same one at once.
 *
 * <p>It looks at the outbox when told a change was enqueued, when a retry falls due, and once at
 * start (what a stopped node still owed); with nothing owed it does not query at all.
 */
public final class WebhookDispatcher implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(WebhookDispatcher.class);

  /** The {@code outboard.webhooks} settings. */
  public record Settings(
      Duration timeout,
      Duration firstRetry,
      Duration maxRetry,
      int maxAttempts,
      Duration lease,
      int batch) {
    public static Settings from(Config config) {
      Config c = config.getConfig("outboard.webhooks");
      return new Settings(
          c.getDuration("timeout"),
          c.getDuration("first-retry"),
          c.getDuration("max-retry"),
          c.getInt("max-attempts"),
          c.getDuration("lease"),
          c.getInt("batch"));
    }
  }

  private record Due(String eventId, String org, String payload, int attempts) {}

  private final Database db;
  private final Webhooks webhooks;
  private final Settings settings;
  private final HttpClient http;
  private final ScheduledExecutorService timer =
      Executors.newSingleThreadScheduledExecutor(
          r -> {
            Thread t = new Thread(r, "webhook-dispatcher");
            t.setDaemon(true);
            return t;
          });

  /** The next scan already scheduled (only touched on the timer thread). */
  private ScheduledFuture<?> nextScan;

  private Instant nextScanAt;

  public WebhookDispatcher(Database db, Webhooks webhooks, Settings settings) {
    this.db = db;
    this.webhooks = webhooks;
    this.settings = settings;
    this.http =
        HttpClient.newBuilder()
            .connectTimeout(settings.timeout())
            .followRedirects(HttpClient.Redirect.NEVER)
            .build();
  }

  /**
   * A dispatcher on {@code outboard.webhooks}, delivering from now on and stopped with the node.
   */
  public static WebhookDispatcher init(ActorSystem<?> system, Database db, Webhooks webhooks) {
    WebhookDispatcher dispatcher =
        new WebhookDispatcher(db, webhooks, Settings.from(system.settings().config()));
    ServiceStop.register(system, "stop-webhooks", dispatcher::close);
    dispatcher.start();
    return dispatcher;
  }

  /** Starts delivering: what is owed already, then each change as it is enqueued. */
  public void start() {
    webhooks.onEnqueued(this::nudge);
    nudge();
  }

  private void nudge() {
    timer.execute(() -> scheduleScan(Instant.now()));
  }

  /** On the timer thread: makes sure a scan runs at {@code at} or earlier. */
  private void scheduleScan(Instant at) {
    if (nextScan != null && !nextScan.isDone() && !nextScanAt.isAfter(at)) return;
    if (nextScan != null) nextScan.cancel(false);
    nextScanAt = at;
    long delay = Math.max(0, Duration.between(Instant.now(), at).toMillis());
    nextScan = timer.schedule(this::scan, delay, TimeUnit.MILLISECONDS);
  }

  private void scan() {
    nextScan = null;
    try {
      List<Due> due = db.transactNow(this::claim);
      Map<String, Optional<Webhooks.Target>> targets = new HashMap<>();
      for (Due d : due) {
        Optional<Webhooks.Target> target =
            targets.computeIfAbsent(d.org(), org -> db.transactNow(c -> webhooks.target(c, org)));
        if (target.isPresent()) deliver(d, target.get());
        else db.transactNow(c -> drop(c, d.eventId())); // the org removed its endpoint
      }
      if (due.size() == settings.batch()) {
        scheduleScan(Instant.now());
      } else {
        db.transactNow(this::earliestDue).ifPresent(this::scheduleScan);
      }
    } catch (RuntimeException e) {
      log.warn(
          "webhook outbox scan failed; trying again in {}: {}",
          settings.firstRetry(),
          e.toString());
      scheduleScan(Instant.now().plus(settings.firstRetry()));
    }
  }

  /** Claims up to {@code batch} due deliveries for {@code lease}. */
  private List<Due> claim(Connection c) throws SQLException {
    Instant now = Instant.now();
    List<Candidate> candidates =
        Sql.query(
            c,
            "SELECT event_id, org_id, payload, attempts, next_attempt_at FROM webhook_outbox WHERE"
                + " delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ? ORDER BY"
                + " next_attempt_at, event_id LIMIT "
                + settings.batch(),
            rs ->
                new Candidate(
                    new Due(rs.getString(1), rs.getString(2), rs.getString(3), rs.getInt(4)),
                    rs.getObject(5, OffsetDateTime.class)),
            now);
    List<Due> claimed = new ArrayList<>();
    try (PreparedStatement ps =
        c.prepareStatement(
            "UPDATE webhook_outbox SET next_attempt_at = ? WHERE event_id = ? AND next_attempt_at ="
                + " ? AND delivered_at IS NULL")) {
      for (Candidate cand : candidates) {
        Sql.bind(ps, now.plus(settings.lease()), cand.due().eventId(), cand.seenAt());
        if (ps.executeUpdate() == 1) claimed.add(cand.due());
      }
    }
    return claimed;
  }

  /** A due delivery and its {@code next_attempt_at} as read: the claim holds if it is unchanged. */
  private record Candidate(Due due, OffsetDateTime seenAt) {}

  private Optional<Instant> earliestDue(Connection c) throws SQLException {
    return Sql.one(
        c,
        "SELECT MIN(next_attempt_at) FROM webhook_outbox WHERE delivered_at IS NULL AND"
            + " failed_at IS NULL",
        rs -> Sql.instant(rs, 1));
  }

  private void deliver(Due d, Webhooks.Target target) {
    long t = Instant.now().getEpochSecond();
    HttpRequest request;
    try {
      request =
          HttpRequest.newBuilder(URI.create(target.url()))
              .timeout(settings.timeout())
              .header("Content-Type", "application/json; charset=utf-8")
              .header("User-Agent", "Outboard-Webhooks")
              .header("Outboard-Event-Id", d.eventId())
              .header(
                  "Outboard-Signature",
                  "t=" + t + ",v1=" + sign(target.secret(), t + "." + d.payload()))
              .POST(HttpRequest.BodyPublishers.ofString(d.payload(), StandardCharsets.UTF_8))
              .build();
    } catch (IllegalArgumentException e) {
      failed(d, "the webhook URL is unusable: " + e.getMessage());
      return;
    }
    http.sendAsync(request, HttpResponse.BodyHandlers.discarding())
        .whenComplete(
            (response, error) -> {
              if (error == null && response.statusCode() / 100 == 2) {
                db.transact(c -> delivered(c, d.eventId()))
                    .whenComplete(
                        (ok, e) -> {
                          if (e != null)
                            log.warn(
                                "webhook {} was delivered but not marked: {}",
                                d.eventId(),
                                e.toString());
                        });
              } else {
                failed(
                    d,
                    error == null
                        ? "HTTP " + response.statusCode()
                        : error.getClass().getSimpleName() + ": " + error.getMessage());
              }
            });
  }

  /**
   * Records a failed attempt: tried again after a backoff, or given up after {@code max-attempts}.
   */
  private void failed(Due d, String why) {
    int attempts = d.attempts() + 1;
    boolean giveUp = attempts >= settings.maxAttempts();
    Instant next = Instant.now().plus(backoff(attempts));
    String error = why.length() > 500 ? why.substring(0, 500) : why;
    if (giveUp)
      log.warn(
          "webhook {} of org {} given up after {} attempts: {}",
          d.eventId(),
          d.org(),
          attempts,
          error);
    db.transact(
            c ->
                Sql.update(
                    c,
                    "UPDATE webhook_outbox SET attempts = ?, next_attempt_at = ?, "
                        + "last_error = ?, failed_at = ? WHERE event_id = ?",
                    attempts,
                    next,
                    error,
                    giveUp ? Instant.now() : null,
                    d.eventId()))
        .whenComplete(
            (ok, e) -> {
              if (e != null)
                log.warn(
                    "could not record a failed webhook attempt of {}: {}",
                    d.eventId(),
                    e.toString());
              if (!giveUp) timer.execute(() -> scheduleScan(next));
            });
  }

  /** {@code first-retry} doubled per attempt, at most {@code max-retry}, with up to 20 % jitter. */
  Duration backoff(int attempts) {
    long first = settings.firstRetry().toMillis();
    long capped = Math.min(settings.maxRetry().toMillis(), first << Math.min(attempts - 1, 30));
    return Duration.ofMillis(capped + ThreadLocalRandom.current().nextLong(capped / 5 + 1));
  }

  private static int delivered(Connection c, String eventId) throws SQLException {
    return Sql.update(
        c,
        "UPDATE webhook_outbox SET delivered_at = ?, attempts = attempts + 1 WHERE event_id = ?",
        Instant.now(),
        eventId);
  }

  private static int drop(Connection c, String eventId) throws SQLException {
    return Sql.update(c, "DELETE FROM webhook_outbox WHERE event_id = ?", eventId);
  }

  /** The hex HMAC-SHA256 of {@code message} with {@code secret}. */
  public static String sign(String secret, String message) {
    try {
      Mac mac = Mac.getInstance("HmacSHA256");
      mac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
      return HexFormat.of().formatHex(mac.doFinal(message.getBytes(StandardCharsets.UTF_8)));
    } catch (NoSuchAlgorithmException | InvalidKeyException e) {
      throw new IllegalStateException(e);
    }
  }

  @Override
  public void close() {
    timer.shutdownNow();
  }
}
