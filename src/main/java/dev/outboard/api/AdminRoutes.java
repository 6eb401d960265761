package dev.outboard.api;

import dev.outboard.session.Budget;
import dev.outboard.store.OrgPolicies;
import dev.outboard.tools.ApprovalPolicy;
import dev.outboard.webhooks.Webhooks;
import java.util.List;
import org.apache.pekko.http.javadsl.model.StatusCodes;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.PathMatchers;
import org.apache.pekko.http.javadsl.server.Route;

/** {@code /v1/admin}: orgs and their API keys, behind the admin token. */
public final class AdminRoutes extends AllDirectives {

  public record CreateOrg(String id, String name) {}

  public record IssuedKey(String org, String key) {}

  /**
   * Per-org policy: whether the org's agents may write {@code /skills} (default no), and which tool
   * calls wait for a person's approval ({@link ApprovalPolicy} patterns; default none). A PUT sets
   * the parts it names.
   */
  public record Policy(Boolean agentsMayWriteSkills, List<String> approvals, Budget budget) {}

  /** An org's status webhook: where to POST, and the secret its deliveries are signed with. */
  public record WebhookRequest(String url, String secret) {}

  private final Auth auth;
  private final ApiKeys keys;

  private final long maxBody;
  private final OrgPolicies policies;
  private final Webhooks webhooks;

  public AdminRoutes(
      Auth auth, ApiKeys keys, long maxBody, OrgPolicies policies, Webhooks webhooks) {
    this.auth = auth;
    this.keys = keys;
    this.maxBody = maxBody;
    this.policies = policies;
    this.webhooks = webhooks;
  }

  public Route routes() {
    // No admin endpoint takes query parameters.
    return pathPrefix(
        "admin",
        () ->
            auth.admin(
                () ->
                    QueryParams.none(
                        () ->
                            pathPrefix(
                                "orgs",
                                () ->
                                    concat(
                                        pathEndOrSingleSlash(
                                            () ->
                                                post(
                                                    () ->
                                                        JsonSupport.body(
                                                            CreateOrg.class,
                                                            maxBody,
                                                            this::createOrg))),
                                        path(
                                            PathMatchers.segment().slash("keys"),
                                            org ->
                                                post(
                                                    () -> JsonSupport.noBody(() -> issueKey(org)))),
                                        path(
                                            PathMatchers.segment().slash("policy"),
                                            org ->
                                                concat(
                                                    put(
                                                        () ->
                                                            JsonSupport.body(
                                                                Policy.class,
                                                                maxBody,
                                                                p -> setPolicy(org, p))),
                                                    get(() -> getPolicy(org)))),
                                        path(
                                            PathMatchers.segment().slash("webhook"),
                                            org ->
                                                concat(
                                                    put(
                                                        () ->
                                                            JsonSupport.body(
                                                                WebhookRequest.class,
                                                                maxBody,
                                                                w -> setWebhook(org, w))),
                                                    get(() -> getWebhook(org)),
                                                    delete(() -> removeWebhook(org)))))))));
  }

  private Route getWebhook(String org) {
    return onSuccess(
        webhooks.get(org),
        endpoint -> {
          if (endpoint.isEmpty()) throw ApiError.notFound("org " + org + " has no webhook");
          return complete(StatusCodes.OK, endpoint.get(), JsonSupport.marshaller());
        });
  }

  private Route removeWebhook(String org) {
    return onSuccess(
        webhooks.remove(org),
        removed -> {
          if (!removed) throw ApiError.notFound("org " + org + " has no webhook");
          return complete(StatusCodes.NO_CONTENT);
        });
  }

  /** Sets the org's webhook; the answer never repeats the secret. */
  private Route setWebhook(String org, WebhookRequest req) {
    Webhooks.problem(req.url())
        .ifPresent(
            problem -> {
              throw ApiError.badRequest(problem);
            });
    if (req.secret() == null || req.secret().length() < 16 || req.secret().length() > 256) {
      throw ApiError.badRequest("secret must be 16 to 256 characters");
    }
    return onSuccess(
        webhooks.set(org, req.url(), req.secret()),
        found -> {
          if (!found) throw ApiError.notFound("no org " + org);
          return onSuccess(
              webhooks.get(org),
              endpoint ->
                  complete(StatusCodes.OK, endpoint.orElseThrow(), JsonSupport.marshaller()));
        });
  }

  private Route createOrg(CreateOrg req) {
    if (!ApiKeys.validOrgId(req.id())) {
      throw ApiError.badRequest(
          "id must be 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit");
    }
    String name = req.name() == null || req.name().isBlank() ? req.id() : req.name();
    if (name.length() > 256) throw ApiError.badRequest("name is longer than 256 characters");
    return onSuccess(
        keys.createOrg(req.id(), name),
        org -> {
          if (org.isEmpty()) throw ApiError.conflict("org " + req.id() + " exists already");
          return complete(StatusCodes.CREATED, org.get(), JsonSupport.marshaller());
        });
  }

  private Route setPolicy(String org, Policy policy) {
    if (policy.agentsMayWriteSkills() == null
        && policy.approvals() == null
        && policy.budget() == null) {
      throw ApiError.badRequest(
          "give agentsMayWriteSkills (true or false), approvals (a list of patterns), budget, or"
              + " several");
    }
    if (policy.budget() != null) {
      policy
          .budget()
          .problem("budget")
          .ifPresent(
              problem -> {
                throw ApiError.badRequest(problem);
              });
    }
    ApprovalPolicy.problem(policy.approvals())
        .ifPresent(
            problem -> {
              throw ApiError.badRequest("approvals: " + problem);
            });
    List<String> approvals =
        policy.approvals() == null ? null : policy.approvals().stream().map(String::trim).toList();
    return onSuccess(
        policies.set(org, policy.agentsMayWriteSkills(), approvals, policy.budget()),
        after -> {
          if (after.isEmpty()) throw ApiError.notFound("no org " + org);
          return complete(StatusCodes.OK, view(after.get()), JsonSupport.marshaller());
        });
  }

  private Route getPolicy(String org) {
    return onSuccess(
        policies.get(org),
        policy -> {
          if (policy.isEmpty()) throw ApiError.notFound("no org " + org);
          return complete(StatusCodes.OK, view(policy.get()), JsonSupport.marshaller());
        });
  }

  private static Policy view(OrgPolicies.Policy p) {
    return new Policy(p.agentsMayWriteSkills(), p.approvals(), p.budget());
  }

  private Route issueKey(String org) {
    return onSuccess(
        keys.issueKey(org),
        key -> {
          if (key.isEmpty()) throw ApiError.notFound("no org " + org);
          return complete(
              StatusCodes.CREATED, new IssuedKey(org, key.get()), JsonSupport.marshaller());
        });
  }
}
