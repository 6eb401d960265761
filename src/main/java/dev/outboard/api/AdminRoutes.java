package dev.outboard.api;

import org.apache.pekko.http.javadsl.model.StatusCodes;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.PathMatchers;
import org.apache.pekko.http.javadsl.server.Route;

/** {@code /v1/admin}: orgs and their API keys, behind the admin token. */
public final class AdminRoutes extends AllDirectives {

  public record CreateOrg(String id, String name) {}

  public record IssuedKey(String org, String key) {}

  /** Per-org policy: whether the org's agents may write {@code /skills} (default no). */
  public record Policy(Boolean agentsMayWriteSkills) {}

  private final Auth auth;
  private final ApiKeys keys;

  private final long maxBody;
  private final dev.outboard.memory.OrgFileStore orgFiles;

  public AdminRoutes(Auth auth, ApiKeys keys, long maxBody, dev.outboard.memory.OrgFileStore orgFiles) {
    this.auth = auth;
    this.keys = keys;
    this.maxBody = maxBody;
    this.orgFiles = orgFiles;
  }

  public Route routes() {
    return pathPrefix("admin", () -> auth.admin(() -> pathPrefix("orgs", () -> concat(
        pathEndOrSingleSlash(() -> post(() -> JsonSupport.body(CreateOrg.class, maxBody, this::createOrg))),
        path(PathMatchers.segment().slash("keys"), org -> post(() -> JsonSupport.noBody(() -> issueKey(org)))),
        path(PathMatchers.segment().slash("policy"), org -> put(() -> JsonSupport.body(Policy.class, maxBody, p -> setPolicy(org, p))))))));
  }

  private Route createOrg(CreateOrg req) {
    if (!ApiKeys.validOrgId(req.id())) {
      throw ApiError.badRequest("id must be 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit");
    }
    String name = req.name() == null || req.name().isBlank() ? req.id() : req.name();
    if (name.length() > 256) throw ApiError.badRequest("name is longer than 256 characters");
    return onSuccess(keys.createOrg(req.id(), name), org -> {
      if (org.isEmpty()) throw ApiError.conflict("org " + req.id() + " exists already");
      return complete(StatusCodes.CREATED, org.get(), JsonSupport.marshaller());
    });
  }

  private Route setPolicy(String org, Policy policy) {
    if (policy.agentsMayWriteSkills() == null) throw ApiError.badRequest("agentsMayWriteSkills (true or false) is required");
    return onSuccess(orgFiles.setAgentsMayWriteSkills(org, policy.agentsMayWriteSkills()), found -> {
      if (!found) throw ApiError.notFound("no org " + org);
      return complete(StatusCodes.OK, policy, JsonSupport.marshaller());
    });
  }

  private Route issueKey(String org) {
    return onSuccess(keys.issueKey(org), key -> {
      if (key.isEmpty()) throw ApiError.notFound("no org " + org);
      return complete(StatusCodes.CREATED, new IssuedKey(org, key.get()), JsonSupport.marshaller());
    });
  }
}
