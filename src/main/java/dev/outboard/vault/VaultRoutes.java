package dev.outboard.vault;

import dev.outboard.api.ApiError;
import dev.outboard.api.Auth;
import dev.outboard.api.JsonSupport;
import dev.outboard.api.QueryParams;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.function.Supplier;
import org.apache.pekko.http.javadsl.model.StatusCodes;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.PathMatchers;
import org.apache.pekko.http.javadsl.server.Route;

/**
 * {@code /v1/admin/orgs/{org}/secrets}: an org's vault, behind the admin token. Values go in and
 * never come out; the listing gives names and times. Without a vault key every route answers 503
 * {@value #DISABLED}.
 */
public final class VaultRoutes extends AllDirectives {
  /** 503 code: the node has no vault key. */
  public static final String DISABLED = "vault_disabled";

  /** 413 code: a value over {@link Vault#MAX_VALUE_BYTES}. */
  public static final String TOO_LARGE = "secret_too_large";

  /** The body of a PUT. */
  public record SecretValue(String value) {}

  /** The answer of a GET. */
  public record Listing(List<Vault.Entry> secrets) {}

  private final Auth auth;
  private final Vault vault;
  private final long maxBody;

  public VaultRoutes(Auth auth, Vault vault, long maxBody) {
    this.auth = auth;
    this.vault = vault;
    this.maxBody = maxBody;
  }

  public Route routes() {
    return pathPrefix(
        "admin",
        () ->
            pathPrefix(
                "orgs",
                () ->
                    pathPrefix(
                        PathMatchers.segment().slash("secrets"),
                        org ->
                            auth.admin(
                                () ->
                                    QueryParams.none(
                                        () ->
                                            enabled(
                                                () ->
                                                    concat(
                                                        pathEndOrSingleSlash(
                                                            () -> get(() -> list(org))),
                                                        path(
                                                            PathMatchers.segment(),
                                                            name -> secret(org, name)))))))));
  }

  private Route secret(String org, String name) {
    return concat(
        put(() -> JsonSupport.body(SecretValue.class, maxBody, body -> put(org, name, body))),
        delete(() -> JsonSupport.noBody(() -> delete(org, name))));
  }

  private Route enabled(Supplier<Route> inner) {
    if (!vault.enabled()) {
      throw new ApiError(
          StatusCodes.SERVICE_UNAVAILABLE,
          DISABLED,
          "the vault is disabled on this node: set "
              + VaultKey.VARIABLE
              + " to base64 of 32 random bytes (`openssl rand -base64 32`) and restart it");
    }
    return inner.get();
  }

  private static void checkName(String name) {
    Vault.nameProblem(name)
        .ifPresent(
            problem -> {
              throw ApiError.badRequest(problem);
            });
  }

  private Route put(String org, String name, SecretValue body) {
    checkName(name);
    if (body.value() == null || body.value().isEmpty())
      throw ApiError.badRequest("value is required: a non-empty string");
    int bytes = body.value().getBytes(StandardCharsets.UTF_8).length;
    if (bytes > Vault.MAX_VALUE_BYTES) {
      throw new ApiError(
          StatusCodes.CONTENT_TOO_LARGE,
          TOO_LARGE,
          "the value is " + bytes + " bytes of UTF-8; the limit is " + Vault.MAX_VALUE_BYTES);
    }
    return onSuccess(
        vault.put(org, name, body.value()),
        found -> {
          if (!found) throw ApiError.notFound("no org " + org);
          return complete(StatusCodes.NO_CONTENT);
        });
  }

  private Route list(String org) {
    return onSuccess(
        vault.list(org),
        entries -> {
          if (entries.isEmpty()) throw ApiError.notFound("no org " + org);
          return complete(StatusCodes.OK, new Listing(entries.get()), JsonSupport.marshaller());
        });
  }

  private Route delete(String org, String name) {
    checkName(name);
    return onSuccess(
        vault.delete(org, name),
        removed -> {
          if (!removed) throw ApiError.notFound("org " + org + " has no secret " + name);
          return complete(StatusCodes.NO_CONTENT);
        });
  }
}
