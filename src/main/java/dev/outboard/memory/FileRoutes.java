package dev.outboard.memory;

import dev.outboard.api.ApiError;
import dev.outboard.api.Auth;
import dev.outboard.api.JsonSupport;
import dev.outboard.api.QueryParams;
import dev.outboard.memory.OrgFileOp.Origin;
import dev.outboard.memory.OrgFileOp.Outcome;
import dev.outboard.vfs.VirtualPath;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletionStage;
import java.util.function.Function;
import org.apache.pekko.http.javadsl.model.ContentType;
import org.apache.pekko.http.javadsl.model.ContentTypes;
import org.apache.pekko.http.javadsl.model.HttpEntities;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.model.MediaTypes;
import org.apache.pekko.http.javadsl.model.StatusCode;
import org.apache.pekko.http.javadsl.model.StatusCodes;
import org.apache.pekko.http.javadsl.model.headers.ETag;
import org.apache.pekko.http.javadsl.model.headers.EntityTag;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.PathMatchers;
import org.apache.pekko.http.javadsl.server.Route;

/** {@code /v1/files/{ns}/...}: the org's memory and skills files over HTTP (API.md "Org files"). */
public final class FileRoutes extends AllDirectives {
  private static final Set<String> NAMESPACES = Set.of(OrgFileStore.MEMORY, OrgFileStore.SKILLS);

  /** Subtypes of {@code application/} that pekko-http does not know as text but are. */
  private static final Set<String> TEXT_SUBTYPES =
      Set.of("json", "xml", "yaml", "x-yaml", "toml", "javascript", "x-sh");

  private static final java.util.regex.Pattern ENCODED =
      java.util.regex.Pattern.compile("%(2e|2f|5c|00)", java.util.regex.Pattern.CASE_INSENSITIVE);

  public record Listing(List<Entry> files) {}

  public record Entry(
      String path, long version, long size, java.time.Instant updatedAt, String updatedBy) {}

  public record History(List<Version> versions) {}

  public record Version(
      long version, String op, java.time.Instant updatedAt, String updatedBy, String session) {}

  public record Written(String path, long version) {}

  private final Auth auth;
  private final OrgFiles files;
  private final long maxBody;

  public FileRoutes(Auth auth, OrgFiles files, long maxBody) {
    this.auth = auth;
    this.files = files;
    this.maxBody = maxBody;
  }

  public Route routes() {
    return pathPrefix(
        "files",
        () ->
            auth.org(
                org ->
                    pathPrefix(
                        PathMatchers.segment(),
                        ns -> {
                          if (!NAMESPACES.contains(ns))
                            throw ApiError.notFound(
                                "no file namespace '" + ns + "'; there are memory and skills");
                          return concat(
                              pathEndOrSingleSlash(
                                  () ->
                                      get(
                                          () ->
                                              QueryParams.only(
                                                  List.of("prefix"),
                                                  () ->
                                                      parameterOptional(
                                                          "prefix",
                                                          prefix ->
                                                              list(org, ns, prefix.orElse("")))))),
                              extractUnmatchedPath(
                                  raw -> {
                                    String path = filePath(ns, raw);
                                    return concat(
                                        get(
                                            () ->
                                                QueryParams.only(
                                                    List.of("history"),
                                                    () ->
                                                        parameterOptional(
                                                            "history",
                                                            history ->
                                                                history.isPresent()
                                                                    ? history(org, ns, path)
                                                                    : read(org, ns, path)))),
                                        put(
                                            () ->
                                                QueryParams.none(
                                                    () ->
                                                        ifMatch(
                                                            version ->
                                                                JsonSupport.text(
                                                                    maxBody,
                                                                    FileRoutes::requireText,
                                                                    text ->
                                                                        write(
                                                                            org, ns, path, text,
                                                                            version))))),
                                        delete(
                                            () ->
                                                QueryParams.none(
                                                    () ->
                                                        ifMatch(
                                                            version ->
                                                                JsonSupport.noBody(
                                                                    () ->
                                                                        remove(
                                                                            org, ns, path,
                                                                            version))))));
                                  }));
                        })));
  }

  /**
   * The file's path below its namespace, from the raw (still percent-encoded) rest of the URL:
   * checked before decoding (encoded dots and separators are refused) and after.
   */
  static String filePath(String ns, String raw) {
    try {
      // Before decoding, only what decoding would hide; the limits apply to the decoded path (a
      // legal name of 255 non-ASCII characters is far longer percent-encoded).
      if (ENCODED.matcher(raw).find()) {
        throw ApiError.badRequest(
            "the path contains a percent-encoded '.', '/', '\\' or NUL; write it literally");
      }
      VirtualPath path = VirtualPath.parse("/" + ns + percentDecode(raw));
      if (path.segments().size() < 2)
        throw ApiError.badRequest("a file path is needed after /" + ns + "/");
      String rel = String.join("/", path.segments().subList(1, path.segments().size()));
      if (rel.length() > OrgFileStore.MAX_PATH)
        throw ApiError.badRequest(
            "the path is longer than " + OrgFileStore.MAX_PATH + " characters");
      return rel;
    } catch (VirtualPath.InvalidPathException e) {
      throw ApiError.badRequest(e.getMessage());
    }
  }

  private static String percentDecode(String raw) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    for (int i = 0; i < raw.length(); i++) {
      char c = raw.charAt(i);
      if (c == '%') {
        try {
          out.write(Integer.parseInt(raw.substring(i + 1, i + 3), 16));
          i += 2;
          continue;
        } catch (NumberFormatException | IndexOutOfBoundsException e) {
          throw ApiError.badRequest("the path has a malformed percent-encoding");
        }
      }
      out.writeBytes(String.valueOf(c).getBytes(StandardCharsets.UTF_8));
    }
    return out.toString(StandardCharsets.UTF_8);
  }

  /**
   * 415 unless the body is declared as text: {@code text/*}, JSON, XML, YAML, or no type in
   * particular ({@code application/octet-stream}, which is also what a body without {@code
   * Content-Type} is, and curl's {@code application/x-www-form-urlencoded}), whose bytes must then
   * be UTF-8 (400 otherwise, see {@link JsonSupport#text}).
   */
  static void requireText(ContentType type) {
    String sub = type.mediaType().subType();
    boolean text =
        !type.binary()
            || type.mediaType().equals(MediaTypes.APPLICATION_OCTET_STREAM)
            || TEXT_SUBTYPES.contains(sub)
            || sub.endsWith("+json")
            || sub.endsWith("+xml")
            || sub.endsWith("+yaml");
    if (!text) {
      throw new ApiError(
          StatusCodes.UNSUPPORTED_MEDIA_TYPE,
          "unsupported_media_type",
          "org files are UTF-8 text; a body of type "
              + type.mediaType()
              + " is not (send text/plain or text/markdown)");
    }
  }

  private Route ifMatch(Function<Long, Route> inner) {
    return optionalHeaderValueByName(
        "If-Match",
        header -> {
          if (header.isEmpty() || header.get().trim().equals("*")) return inner.apply(null);
          String v = header.get().trim();
          if (v.startsWith("W/")) v = v.substring(2);
          v = v.replace("\"", "");
          try {
            return inner.apply(Long.parseLong(v));
          } catch (NumberFormatException e) {
            throw ApiError.badRequest("If-Match must be a version as returned in ETag, e.g. \"3\"");
          }
        });
  }

  private Route list(String org, String ns, String prefix) {
    return onSuccess(
        files.store().list(org, ns, prefix),
        rows ->
            complete(
                StatusCodes.OK,
                new Listing(
                    rows.stream()
                        .map(
                            r ->
                                new Entry(
                                    r.path(), r.version(), r.size(), r.updatedAt(), r.updatedBy()))
                        .toList()),
                JsonSupport.marshaller()));
  }

  private Route read(String org, String ns, String path) {
    return onSuccess(
        files.store().read(org, ns, path),
        file -> {
          if (file.isEmpty()) throw ApiError.notFound("no file /" + ns + "/" + path);
          return complete(
              HttpResponse.create()
                  .withStatus(StatusCodes.OK)
                  .addHeader(
                      ETag.create(
                          EntityTag.create(Long.toString(file.get().info().version()), false)))
                  .withEntity(
                      HttpEntities.create(ContentTypes.TEXT_PLAIN_UTF8, file.get().content())));
        });
  }

  private Route history(String org, String ns, String path) {
    return onSuccess(
        files.store().history(org, ns, path),
        versions -> {
          if (versions.isEmpty()) throw ApiError.notFound("no file /" + ns + "/" + path);
          return complete(
              StatusCodes.OK,
              new History(
                  versions.stream()
                      .map(
                          v ->
                              new Version(
                                  v.version(), v.op(), v.updatedAt(), v.updatedBy(), v.session()))
                      .toList()),
              JsonSupport.marshaller());
        });
  }

  private Route write(String org, String ns, String path, String content, Long ifVersion) {
    return outcome(
        files.write(
            org, new OrgFileOp.Write(ns, path, content, ifVersion), new Origin(null, null, null)),
        o ->
            respondWithHeader(
                ETag.create(EntityTag.create(Long.toString(o.version()), false)),
                () ->
                    complete(
                        o.created() ? StatusCodes.CREATED : StatusCodes.OK,
                        new Written("/" + ns + "/" + path, o.version()),
                        JsonSupport.marshaller())));
  }

  private Route remove(String org, String ns, String path, Long ifVersion) {
    return outcome(
        files.write(org, new OrgFileOp.Delete(ns, path, ifVersion), new Origin(null, null, null)),
        o -> complete(StatusCodes.NO_CONTENT));
  }

  private Route outcome(CompletionStage<Outcome> stage, Function<Outcome, Route> ok) {
    return onComplete(
        stage,
        result -> {
          if (result.isFailure()) {
            throw new ApiError(
                StatusCodes.SERVICE_UNAVAILABLE, "unavailable", OrgFiles.notConfirmed("the write"));
          }
          Outcome o = result.get();
          if (o.ok()) return ok.apply(o);
          throw new ApiError(statusOf(o.code()), o.code(), o.message());
        });
  }

  private static StatusCode statusOf(String code) {
    return switch (Optional.ofNullable(code).orElse("")) {
      case "not_found" -> StatusCodes.NOT_FOUND;
      case "precondition_failed" -> StatusCodes.PRECONDITION_FAILED;
      case OrgFileStore.FILE_TOO_LARGE -> StatusCodes.CONTENT_TOO_LARGE;
      case "forbidden" -> StatusCodes.FORBIDDEN;
      case "exists", "edit_failed" -> StatusCodes.CONFLICT;
      case "unavailable", "overloaded", "timed_out", "unconfirmed" ->
          StatusCodes.SERVICE_UNAVAILABLE;
      default -> StatusCodes.BAD_REQUEST;
    };
  }
}
