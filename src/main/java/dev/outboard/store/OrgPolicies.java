package dev.outboard.store;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import dev.outboard.Json;
import dev.outboard.session.Budget;
import dev.outboard.tools.ApprovalPolicy;
import java.sql.SQLException;
import java.sql.Types;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The per-org policy of the admin API: whether agents may write {@code /skills}, and which tool
 * calls need a person's approval. Sessions read the approval part before each model call, cached
 * per org for {@code ttl} (a change through this node applies at once, on other nodes within the
 * ttl).
 */
public final class OrgPolicies {
  private static final org.slf4j.Logger log = org.slf4j.LoggerFactory.getLogger(OrgPolicies.class);
  private static final TypeReference<List<String>> PATTERNS = new TypeReference<>() {};

  public record Policy(boolean agentsMayWriteSkills, List<String> approvals, Budget budget) {}

  /** What a session's next model call needs of its org's policy. */
  public record ForSessions(ApprovalPolicy approvals, Budget budget) {}

  private record Cached(ForSessions policy, long expiresNanos) {}

  private final Database db;
  private final long ttlNanos;
  private final Map<String, Cached> cache = new ConcurrentHashMap<>();

  public OrgPolicies(Database db, Duration ttl) {
    this(db, ttl, Duration.ofMillis(500), 16);
  }

  /**
   * {@code readAttempts} reads in all, {@code retryEvery} apart, while the database does not
   * answer.
   */
  public OrgPolicies(Database db, Duration ttl, Duration retryEvery, int readAttempts) {
    this.db = db;
    this.ttlNanos = ttl.toNanos();
    this.retryEvery = retryEvery;
    this.readAttempts = readAttempts;
  }

  /** The org's policy, or empty if there is no such org. */
  public CompletionStage<Optional<Policy>> get(String org) {
    return db.transact(
        c ->
            Sql.one(
                c,
                "SELECT agents_write_skills, approval_policy, budget_policy FROM orgs WHERE id = ?",
                rs ->
                    new Policy(
                        rs.getBoolean(1), patterns(rs.getString(2)), budget(rs.getString(3))),
                org));
  }

  /**
   * Sets the parts given (null: unchanged; a budget without limits removes it); the policy after,
   * or empty if there is no such org.
   */
  public CompletionStage<Optional<Policy>> set(
      String org, Boolean agentsMayWriteSkills, List<String> approvals, Budget budget) {
    return db.transact(
            c -> {
              boolean limits =
                  budget != null && (budget.maxTokens() != null || budget.maxTurns() != null);
              return Sql.update(
                      c,
                      "UPDATE orgs SET agents_write_skills = COALESCE(?, agents_write_skills),"
                          + " approval_policy = COALESCE(?, approval_policy), budget_policy = CASE"
                          + " WHEN ? THEN ? ELSE budget_policy END WHERE id = ?",
                      Sql.orNull(agentsMayWriteSkills, Types.BOOLEAN),
                      Sql.orNull(approvals == null ? null : json(approvals), Types.VARCHAR),
                      budget != null,
                      Sql.orNull(limits ? json(budget) : null, Types.VARCHAR),
                      org)
                  == 1;
            })
        .thenCompose(
            found -> {
              cache.remove(org);
              return found ? get(org) : CompletableFuture.completedFuture(Optional.<Policy>empty());
            });
  }

  /**
   * The org's approval patterns and budget, for a session's next model call. A database that does
   * not answer (a restart, a pause) is asked again (every 500 ms, 16 times in all, by default);
   * then the policy this node read last is used, however old (an admin's change could not have been
   * written meanwhile either); only a node that never read it fails, and the session's calls then
   * wait for approval (fail closed).
   */
  public CompletionStage<ForSessions> forSessions(String org) {
    Cached cached = cache.get(org);
    if (cached != null && cached.expiresNanos() > System.nanoTime())
      return CompletableFuture.completedFuture(cached.policy());
    return read(org, 1)
        .handle(
            (p, e) -> {
              if (e == null) return CompletableFuture.completedFuture(p);
              Cached last = cache.get(org);
              if (last != null) {
                log.warn(
                    "the policy of org {} could not be read ({}); using the one read last",
                    org,
                    e.toString());
                return CompletableFuture.completedFuture(last.policy());
              }
              return CompletableFuture.<ForSessions>failedFuture(e);
            })
        .thenCompose(f -> f);
  }

  private final Duration retryEvery;
  private final int readAttempts;

  private CompletionStage<ForSessions> read(String org, int attempt) {
    return get(org)
        .thenApply(
            policy -> {
              ForSessions p =
                  new ForSessions(
                      ApprovalPolicy.of(policy.map(Policy::approvals).orElse(List.of())),
                      policy.map(Policy::budget).orElse(Budget.NONE));
              cache.put(org, new Cached(p, System.nanoTime() + ttlNanos));
              return p;
            })
        .handle(
            (p, e) -> {
              if (e == null) return CompletableFuture.completedFuture(p);
              if (attempt >= readAttempts || !Database.isTransient(e))
                return CompletableFuture.<ForSessions>failedFuture(e);
              return dev.outboard.Futures.after(retryEvery)
                  .thenCompose(v -> read(org, attempt + 1));
            })
        .thenCompose(f -> f);
  }

  private static String json(Object policy) throws SQLException {
    try {
      return Json.MAPPER.writeValueAsString(policy);
    } catch (JsonProcessingException e) {
      throw new SQLException(e);
    }
  }

  private static Budget budget(String json) throws SQLException {
    try {
      return json == null ? Budget.NONE : Json.MAPPER.readValue(json, Budget.class);
    } catch (JsonProcessingException e) {
      throw new SQLException("unreadable budget policy", e);
    }
  }

  private static List<String> patterns(String json) throws SQLException {
    try {
      return json == null ? List.of() : Json.MAPPER.readValue(json, PATTERNS);
    } catch (JsonProcessingException e) {
      throw new SQLException("unreadable approval policy", e);
    }
  }
}
