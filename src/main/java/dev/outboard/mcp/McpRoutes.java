package dev.outboard.mcp;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.outboard.Futures;
import dev.outboard.Json;
import dev.outboard.api.ApiError;
import dev.outboard.api.Auth;
import dev.outboard.api.JsonSupport;
import dev.outboard.api.QueryParams;
import dev.outboard.mcp.McpServers.Server;
import dev.outboard.tools.ToolSpec;
import dev.outboard.vault.Vault;
import dev.outboard.vault.VaultRoutes;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.stream.Collectors;
import org.apache.pekko.http.javadsl.model.StatusCodes;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.PathMatchers;
import org.apache.pekko.http.javadsl.server.Route;

/**
 * {@code /v1/admin/orgs/{org}/mcp-servers}: an org's MCP servers, behind the admin token. A PUT
 * names the server's Streamable HTTP endpoint and its header templates; every secret they reference
 * must be in the org's vault. {@code GET .../{name}/tools} lists the server's tools now, as the
 * model sees them: the check that the server answers and that its token works.
 */
public final class McpRoutes extends AllDirectives {
  /** 502 code: the server could not be listed. */
  public static final String UNAVAILABLE = "mcp_unavailable";

  /** 409 code: the org already has {@link McpServers#MAX_PER_ORG} servers. */
  public static final String TOO_MANY = "too_many_mcp_servers";

  public record Listing(List<Server> servers) {}

  public record Tool(String name, String description, JsonNode inputSchema) {}

  public record Tools(List<Tool> tools) {}

  private final Auth auth;
  private final McpToolbox toolbox;
  private final Vault vault;
  private final long maxBody;

  public McpRoutes(Auth auth, McpToolbox toolbox, Vault vault, long maxBody) {
    this.auth = auth;
    this.toolbox = toolbox;
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
                        PathMatchers.segment().slash("mcp-servers"),
                        org ->
                            auth.admin(
                                () ->
                                    QueryParams.none(
                                        () ->
                                            concat(
                                                pathEndOrSingleSlash(() -> get(() -> list(org))),
                                                path(
                                                    PathMatchers.segment().slash("tools"),
                                                    name -> get(() -> tools(org, name))),
                                                path(
                                                    PathMatchers.segment(),
                                                    name -> server(org, name))))))));
  }

  private Route server(String org, String name) {
    return concat(
        put(() -> JsonSupport.text(maxBody, body -> put(org, name, parse(body)))),
        delete(() -> JsonSupport.noBody(() -> delete(org, name))));
  }

  /** A PUT's body. */
  private record Body(String url, Map<String, String> headers) {}

  /**
   * {@code {"url": "...", "headers": {"Name": "template"}}}, parsed here so that a refusal never
   * quotes what was sent (a header may hold what should have been a secret).
   */
  private static Body parse(String body) {
    JsonNode json;
    try {
      json = Json.MAPPER.readTree(body);
    } catch (JsonProcessingException e) {
      long at = e.getLocation() == null ? -1 : e.getLocation().getCharOffset();
      throw ApiError.badRequest(
          "the body is not valid JSON"
              + (at < 0 ? "" : " (at character " + at + ")")
              + "; send {\"url\": \"https://...\", \"headers\": {...}}");
    }
    if (json == null || !json.isObject())
      throw ApiError.badRequest("the body must be a JSON object {\"url\": ..., \"headers\": ...}");
    for (Iterator<String> it = json.fieldNames(); it.hasNext(); ) {
      String field = it.next();
      if (!Set.of("url", "headers").contains(field))
        throw ApiError.badRequest("unknown field: the body takes only \"url\" and \"headers\"");
    }
    JsonNode url = json.get("url");
    if (url == null || !url.isTextual())
      throw ApiError.badRequest("url is required: the server's Streamable HTTP endpoint");
    McpServers.urlProblem(url.textValue())
        .ifPresent(
            p -> {
              throw ApiError.badRequest(p);
            });
    Map<String, String> headers = new LinkedHashMap<>();
    JsonNode h = json.get("headers");
    if (h != null && !h.isNull()) {
      if (!h.isObject())
        throw ApiError.badRequest("headers must be a JSON object of header name to string");
      for (Iterator<Map.Entry<String, JsonNode>> it = h.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        if (!e.getValue().isTextual())
          throw ApiError.badRequest("headers must be a JSON object of header name to string");
        headers.put(e.getKey(), e.getValue().textValue());
      }
    }
    SecretHeaders.problem(headers)
        .ifPresent(
            p -> {
              throw ApiError.badRequest(p);
            });
    return new Body(url.textValue(), headers);
  }

  private Route put(String org, String name, Body body) {
    McpServers.nameProblem(name)
        .ifPresent(
            p -> {
              throw ApiError.badRequest(p);
            });
    return onSuccess(
        secretsPresent(org, SecretHeaders.secretNames(body.headers()))
            .thenCompose(ignored -> toolbox.registry().put(org, name, body.url(), body.headers()))
            .exceptionally(
                e -> {
                  if (Futures.cause(e) instanceof McpServers.TooMany t)
                    throw new ApiError(StatusCodes.CONFLICT, TOO_MANY, t.getMessage());
                  throw Futures.cause(e) instanceof RuntimeException r
                      ? r
                      : new IllegalStateException(Futures.cause(e));
                }),
        saved -> {
          Server server = saved.orElseThrow(() -> ApiError.notFound("no org " + org));
          toolbox.invalidate(org);
          return complete(StatusCodes.OK, server, JsonSupport.marshaller());
        });
  }

  /**
   * Completes if every secret of {@code names} is in {@code org}'s vault; fails with the API error
   * that says which are not (or that the vault is disabled, or there is no org).
   */
  private CompletionStage<Void> secretsPresent(String org, Set<String> names) {
    if (names.isEmpty()) return CompletableFuture.completedFuture(null);
    if (!vault.enabled()) {
      return CompletableFuture.failedFuture(
          new ApiError(
              StatusCodes.SERVICE_UNAVAILABLE,
              VaultRoutes.DISABLED,
              "the headers reference the vault, and " + new Vault.Disabled().getMessage()));
    }
    return vault
        .list(org)
        .thenAccept(
            entries -> {
              if (entries.isEmpty()) throw ApiError.notFound("no org " + org);
              Set<String> have =
                  entries.get().stream().map(Vault.Entry::name).collect(Collectors.toSet());
              List<String> missing = names.stream().filter(n -> !have.contains(n)).toList();
              if (!missing.isEmpty())
                throw ApiError.badRequest(
                    "the headers reference secrets that are not in org "
                        + org
                        + "'s vault: "
                        + String.join(", ", missing)
                        + " (PUT /v1/admin/orgs/"
                        + org
                        + "/secrets/{name} first)");
            });
  }

  private Route list(String org) {
    return onSuccess(
        toolbox.registry().list(org),
        servers -> {
          if (servers.isEmpty()) throw ApiError.notFound("no org " + org);
          return complete(StatusCodes.OK, new Listing(servers.get()), JsonSupport.marshaller());
        });
  }

  private Route tools(String org, String name) {
    return onSuccess(
        toolbox
            .listNow(org, name)
            .exceptionally(
                e -> {
                  throw new ApiError(
                      StatusCodes.BAD_GATEWAY, UNAVAILABLE, Futures.cause(e).getMessage());
                }),
        tools -> {
          List<ToolSpec> specs =
              tools.orElseThrow(
                  () -> ApiError.notFound("org " + org + " has no MCP server " + name));
          List<Tool> out =
              specs.stream()
                  .map(t -> new Tool(t.name(), t.description(), (ObjectNode) t.inputSchema()))
                  .toList();
          return complete(StatusCodes.OK, new Tools(out), JsonSupport.marshaller());
        });
  }

  private Route delete(String org, String name) {
    return onSuccess(
        toolbox.registry().delete(org, name),
        removed -> {
          if (!removed) throw ApiError.notFound("org " + org + " has no MCP server " + name);
          toolbox.invalidate(org);
          return complete(StatusCodes.NO_CONTENT);
        });
  }
}
