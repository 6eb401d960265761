package dev.outboard.vault;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Json;
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
        put(() -> JsonSupport.text(maxBody, body -> put(org, name, value(body)))),
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

  /**
   * The {@code value} of a PUT's body {@code {"value": "..."}}: a non-empty JSON string without
   * NUL. Parsed here rather than by {@link JsonSupport#body}, whose messages may quote what was
   * sent (an unrecognised token) and which would take a number for a string; a refusal never quotes
   * it.
   */
  private static String value(String body) {
    JsonNode json;
    try {
      json = Json.MAPPER.readTree(body);
    } catch (JsonProcessingException e) {
      long at = e.getLocation() == null ? -1 : e.getLocation().getCharOffset();
      throw ApiError.badRequest(
          "the body is not valid JSON"
              + (at < 0 ? "" : " (at character " + at + ")")
              + "; send {\"value\": \"...\"}");
    }
    if (json == null || !json.isObject())
      throw ApiError.badRequest("the body must be a JSON object {\"value\": \"...\"}");
    if (json.size() != (json.has("value") ? 1 : 0))
      throw ApiError.badRequest("unknown field: the body takes only \"value\"");
    JsonNode value = json.get("value");
    if (value == null || !value.isTextual() || value.textValue().isEmpty())
      throw ApiError.badRequest("value is required: a non-empty JSON string");
    if (value.textValue().indexOf('\0') >= 0)
      throw ApiError.badRequest("value may not contain NUL (\\u0000)");
    return value.textValue();
  }

  private Route put(String org, String name, String value) {
    checkName(name);
    int bytes = value.getBytes(StandardCharsets.UTF_8).length;
    if (bytes > Vault.MAX_VALUE_BYTES) {
      throw new ApiError(
          StatusCodes.CONTENT_TOO_LARGE,
          TOO_LARGE,
          "the value is " + bytes + " bytes of UTF-8; the limit is " + Vault.MAX_VALUE_BYTES);
    }
    return onSuccess(
        vault.put(org, name, value),
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
