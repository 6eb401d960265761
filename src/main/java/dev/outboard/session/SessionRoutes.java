package dev.outboard.session;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.api.ApiError;
import dev.outboard.api.Auth;
import dev.outboard.api.JsonSupport;
import dev.outboard.api.QueryParams;
import dev.outboard.model.ModelClients;
import dev.outboard.sandbox.SandboxStatus;
import dev.outboard.session.SessionRequests.BudgetRequest;
import dev.outboard.session.SessionRequests.CreateRequest;
import dev.outboard.session.SessionRequests.DecisionRequest;
import dev.outboard.session.SessionRequests.MessageRequest;
import dev.outboard.tools.ToolCatalog;
import java.security.SecureRandom;
import java.time.Duration;
import java.time.Instant;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.function.Function;
import java.util.function.Supplier;
import org.apache.pekko.NotUsed;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityRef;
import org.apache.pekko.http.javadsl.model.HttpEntities;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.model.MediaTypes;
import org.apache.pekko.http.javadsl.model.StatusCodes;
import org.apache.pekko.http.javadsl.model.headers.Location;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.PathMatchers;
import org.apache.pekko.http.javadsl.server.Route;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.util.ByteString;

/** The sessions API of API.md: a thin adapter from HTTP to {@link SessionEntity}. */
public final class SessionRoutes extends AllDirectives {
  private static final SecureRandom RANDOM = new SecureRandom();

  /** The statuses the sessions list filters by: every one the API shows. */
  private static final List<String> STATUSES =
      java.util.Arrays.stream(SessionStatus.values())
          .filter(s -> s != SessionStatus.NEW)
          .map(SessionStatus::wire)
          .toList();

  private static final int MAX_DECISION_MESSAGE = 10_000;

  /** 413 code: an event's payload is over {@code outboard.waits.max-payload-bytes}. */
  static final String EVENT_TOO_LARGE = "event_too_large";

  private final ClusterSharding sharding;
  private final Auth auth;
  private final SessionIndex index;
  private final SessionEventStream events;
  private final ModelClients models;
  private final SessionSettings settings;
  private final boolean scriptedAllowed;
  private final Duration askTimeout;
  private final long maxBody;
  private final Duration maxWait;
  private final Duration sseHeartbeat;
  private final ByteString sseRetry;
  private static final ByteString PING = ByteString.fromString(": ping\n\n");

  public SessionRoutes(
      ActorSystem<?> system,
      Auth auth,
      SessionIndex index,
      SessionEventStream events,
      ModelClients models,
      SessionSettings settings,
      boolean scriptedAllowed) {
    this.sharding = ClusterSharding.get(system);
    this.auth = auth;
    this.index = index;
    this.events = events;
    this.models = models;
    this.settings = settings;
    this.scriptedAllowed = scriptedAllowed;
    this.askTimeout = system.settings().config().getDuration("outboard.http.ask-timeout");
    this.maxBody = system.settings().config().getBytes("outboard.http.max-body-bytes");
    this.maxWait = system.settings().config().getDuration("outboard.http.max-wait");
    this.sseHeartbeat = system.settings().config().getDuration("outboard.http.sse-heartbeat");
    this.sseRetry =
        ByteString.fromString(
            "retry: "
                + system.settings().config().getDuration("outboard.http.sse-retry").toMillis()
                + "\n\n");
  }

  public Route routes() {
    return pathPrefix(
        "sessions",
        () ->
            auth.org(
                org ->
                    concat(
                        pathEndOrSingleSlash(
                            () ->
                                concat(
                                    post(() -> QueryParams.none(() -> create(org))),
                                    get(
                                        () ->
                                            QueryParams.only(
                                                List.of("status", "user", "limit", "cursor"),
                                                () -> list(org))))),
                        pathPrefix(
                            PathMatchers.segment(), id -> owned(org, id, () -> session(id))))));
  }

  private Route session(String id) {
    return concat(
        pathEndOrSingleSlash(
            () ->
                get(
                    () ->
                        QueryParams.only(
                            List.of("wait"),
                            () ->
                                parameterOptional(
                                    "wait",
                                    wait ->
                                        wait.isEmpty()
                                            ? reply(ask(id, SessionEntity.Get::new), this::ok)
                                            : awaitSettled(
                                                id,
                                                SessionRequests.parseWait(wait.get(), maxWait)))))),
        path("messages", () -> post(() -> QueryParams.none(() -> message(id)))),
        path("approvals", () -> post(() -> QueryParams.none(() -> decide(id)))),
        path("budget", () -> post(() -> QueryParams.none(() -> raiseBudget(id)))),
        path(
            PathMatchers.segment("events").slash(PathMatchers.segment()),
            name -> post(() -> QueryParams.none(() -> event(id, name)))),
        path(
            "cancel",
            () ->
                post(
                    () ->
                        QueryParams.none(
                            () ->
                                JsonSupport.noBody(
                                    () ->
                                        reply(
                                            ask(id, SessionEntity.Cancel::new), this::accepted))))),
        path(
            "transcript",
            () ->
                get(
                    () ->
                        QueryParams.only(
                            List.of("full"),
                            () ->
                                parameterOptional(
                                    "full",
                                    full -> {
                                      if (full.isEmpty() || full.get().equals("false"))
                                        return reply(
                                            ask(id, SessionEntity.GetTranscript::new), this::ok);
                                      if (!full.get().equals("true"))
                                        throw ApiError.badRequest("full must be true or false");
                                      return reply(events.fullTranscript(id), this::ok);
                                    })))),
        path("events", () -> get(() -> QueryParams.only(List.of("after"), () -> events(id)))));
  }

  private <T> Route ok(T value) {
    return complete(StatusCodes.OK, value, JsonSupport.marshaller());
  }

  private <T> Route accepted(T value) {
    return complete(StatusCodes.ACCEPTED, value, JsonSupport.marshaller());
  }

  // ------------------------------------------------------------------ create

  private Route create(String org) {
    return optionalHeaderValueByName(
        "Idempotency-Key",
        idemKey ->
            JsonSupport.body(
                CreateRequest.class,
                maxBody,
                req -> {
                  SessionSpec spec =
                      SessionRequests.validate(req, settings, models, scriptedAllowed);
                  String user = req.user();
                  if (idemKey.isPresent()
                      && (idemKey.get().isBlank() || idemKey.get().length() > 256)) {
                    throw ApiError.badRequest("Idempotency-Key must be 1 to 256 characters");
                  }
                  String id = newSessionId();
                  Instant now = Instant.now();
                  Summary provisional =
                      new Summary(
                          id,
                          org,
                          user,
                          "running",
                          0,
                          new Summary.UsageView(0, 0, 0, 0),
                          new Summary.SandboxView(SandboxStatus.NONE.wire()),
                          null,
                          null,
                          spec.metadata(),
                          now,
                          now,
                          null,
                          null,
                          null,
                          null,
                          null,
                          null);
                  CompletionStage<Summary> created =
                      index
                          .register(provisional, idemKey.orElse(null))
                          .thenCompose(
                              owner ->
                                  entity(owner)
                                      .<Summary>askWithStatus(
                                          r -> new SessionEntity.Create(org, user, spec, r),
                                          askTimeout));
                  return reply(
                      created,
                      s ->
                          respondWithHeader(
                              Location.create("/v1/sessions/" + s.id()),
                              () -> complete(StatusCodes.CREATED, s, JsonSupport.marshaller())));
                }));
  }

  private static String newSessionId() {
    byte[] bytes = new byte[16];
    RANDOM.nextBytes(bytes);
    return "s_" + HexFormat.of().formatHex(bytes);
  }

  // ------------------------------------------------------------------ the rest

  private Route message(String id) {
    return JsonSupport.body(
        MessageRequest.class,
        maxBody,
        req -> {
          if (req.text() == null || req.text().isBlank())
            throw ApiError.badRequest("text is required");
          if (req.text().length() > SessionRequests.MAX_TEXT)
            throw ApiError.badRequest(
                "text is longer than " + SessionRequests.MAX_TEXT + " characters");
          return reply(
              this.<Summary>ask(id, r -> new SessionEntity.AddMessage(req.text(), r)),
              this::accepted);
        });
  }

  private Route decide(String id) {
    return JsonSupport.body(
        DecisionRequest.class,
        maxBody,
        req -> {
          if (req.toolUseId() == null || req.toolUseId().isBlank())
            throw ApiError.badRequest("toolUseId is required");
          if (!"allow".equals(req.decision()) && !"deny".equals(req.decision())) {
            throw ApiError.badRequest("decision must be \"allow\" or \"deny\"");
          }
          if (req.message() != null && req.message().length() > MAX_DECISION_MESSAGE) {
            throw ApiError.badRequest(
                "message is longer than " + MAX_DECISION_MESSAGE + " characters");
          }
          return reply(
              this.<Summary>ask(
                  id,
                  r ->
                      new SessionEntity.Decide(
                          req.toolUseId(), req.decision().equals("allow"), req.message(), r)),
              this::accepted);
        });
  }

  private Route raiseBudget(String id) {
    return JsonSupport.body(
        BudgetRequest.class,
        maxBody,
        req -> {
          if (req.maxTokens() == null && req.maxTurns() == null)
            throw ApiError.badRequest("give maxTokens, maxTurns or both");
          if (req.maxTurns() != null && req.maxTurns() > settings.maxMaxTurns()) {
            throw ApiError.badRequest("maxTurns must be at most " + settings.maxMaxTurns());
          }
          new Budget(req.maxTokens(), req.maxTurns(), null)
              .problem("")
              .ifPresent(
                  why -> {
                    throw ApiError.badRequest(why.substring(1));
                  });
          return reply(
              this.<Summary>ask(
                  id, r -> new SessionEntity.RaiseBudget(req.maxTokens(), req.maxTurns(), r)),
              this::accepted);
        });
  }

  /** {@code POST /v1/sessions/{id}/events/{name}}: the body (any JSON) is the payload. */
  private Route event(String id, String name) {
    if (!ToolCatalog.EVENT_NAME.matcher(name).matches()) {
      throw ApiError.badRequest(
          "an event name is 1 to 128 of letters, digits and . _ : - (starting with a letter or"
              + " digit)");
    }
    return JsonSupport.text(
        settings.waits().maxPayloadBytes(),
        EVENT_TOO_LARGE,
        "the event's payload",
        type -> {},
        text -> {
          if (text.isBlank())
            throw ApiError.badRequest("the body must be the event's JSON payload ({} for none)");
          JsonNode payload;
          try {
            payload = dev.outboard.Json.MAPPER.readTree(text);
          } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw JsonSupport.notJson(e);
          }
          return reply(
              this.<SessionEntity.EventAccepted>ask(
                  id, r -> new SessionEntity.DeliverEvent(name, payload.toString(), r)),
              this::accepted);
        });
  }

  private Route list(String org) {
    return parameterOptional(
        "status",
        status ->
            parameterOptional(
                "user",
                user ->
                    parameterOptional(
                        "limit",
                        limit ->
                            parameterOptional(
                                "cursor",
                                cursor -> {
                                  if (status.isPresent() && !STATUSES.contains(status.get())) {
                                    throw ApiError.badRequest("status must be one of " + STATUSES);
                                  }
                                  int n = SessionRequests.parseLimit(limit);
                                  CompletionStage<SessionIndex.Page> page;
                                  try {
                                    page =
                                        index.list(
                                            org,
                                            status.orElse(null),
                                            user.orElse(null),
                                            n,
                                            cursor.orElse(null));
                                  } catch (IllegalArgumentException e) {
                                    throw ApiError.badRequest(e.getMessage());
                                  }
                                  return onSuccess(page, this::ok);
                                }))));
  }

  /**
   * The session's events after {@code Last-Event-ID} (or {@code ?after}): a running session's
   * stream follows it until its terminal event; a finished one's has what was recorded after that
   * id, and is 204 when there is nothing, so that standard clients stop reconnecting.
   */
  private Route events(String id) {
    return optionalHeaderValueByName(
        "Last-Event-ID",
        header ->
            parameterOptional(
                "after",
                param -> {
                  long after = SessionRequests.parseSeq(header.or(() -> param).orElse("0"));
                  return reply(
                      ask(id, SessionEntity.GetPosition::new),
                      position -> {
                        Source<SessionFeed.Item, NotUsed> items;
                        if (position.finished()) {
                          if (after >= position.seq()) return complete(StatusCodes.NO_CONTENT);
                          items = events.recorded(id, after, position.seq());
                        } else {
                          items = events.follow(id, after);
                        }
                        Source<ByteString, NotUsed> body =
                            Source.single(sseRetry)
                                .concat(items.map(SessionEventStream::wire))
                                .keepAlive(sseHeartbeat, () -> PING);
                        return complete(
                            HttpResponse.create()
                                .withEntity(
                                    HttpEntities.createChunked(
                                        MediaTypes.TEXT_EVENT_STREAM.toContentType(), body)));
                      });
                }));
  }

  /**
   * {@code GET /v1/sessions/{id}?wait=30s}: the session once it is not {@code running}, or as it is
   * when the wait is over. A hand-off in between only means asking its next incarnation.
   */
  private Route awaitSettled(String id, Duration wait) {
    long deadline = System.nanoTime() + wait.toNanos();
    return withRequestTimeout(
        wait.plus(askTimeout).plus(askTimeout), () -> reply(settled(id, deadline), this::ok));
  }

  private CompletionStage<Summary> settled(String id, long deadlineNanos) {
    long remainingMs = Math.max(0, (deadlineNanos - System.nanoTime()) / 1_000_000);
    CompletionStage<Summary> answer =
        entity(id)
            .<Summary>askWithStatus(
                r -> new SessionEntity.AwaitSettled(remainingMs, r),
                Duration.ofMillis(remainingMs).plus(askTimeout));
    return answer
        .thenCompose(
            s ->
                s.status().equals("running") && deadlineNanos - System.nanoTime() > 20_000_000L
                    ? settled(id, deadlineNanos)
                    : CompletableFuture.completedFuture(s))
        // The session's node went away while it waited: answer with where it stands now.
        .exceptionallyCompose(e -> ask(id, SessionEntity.Get::new));
  }

  // ------------------------------------------------------------------ helpers

  /** Runs {@code inner} only if {@code id} is a session of {@code org}; otherwise 404. */
  private Route owned(String org, String id, Supplier<Route> inner) {
    return onSuccess(
        index.orgOf(id),
        owner -> {
          if (owner.isEmpty() || !owner.get().equals(org))
            throw ApiError.notFound("no session " + id);
          return inner.get();
        });
  }

  private EntityRef<SessionEntity.Command> entity(String id) {
    return sharding.entityRefFor(SessionEntity.ENTITY_KEY, id);
  }

  private <T> CompletionStage<T> ask(
      String id, Function<ActorRef<StatusReply<T>>, SessionEntity.Command> message) {
    return entity(id).askWithStatus(message::apply, askTimeout);
  }

  /** Completes with {@code ok} on success; maps the entity's error replies to API errors. */
  private <T> Route reply(CompletionStage<T> stage, Function<T, Route> ok) {
    return onComplete(
        stage,
        result -> {
          if (result.isSuccess()) return ok.apply(result.get());
          throw JsonSupport.toApiError(result.failed().get());
        });
  }
}
