package dev.outboard.api;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.exc.InputCoercionException;
import com.fasterxml.jackson.databind.DeserializationContext;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.deser.std.StdScalarDeserializer;
import com.fasterxml.jackson.databind.deser.std.StringDeserializer;
import com.fasterxml.jackson.databind.exc.MismatchedInputException;
import com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException;
import com.fasterxml.jackson.databind.module.SimpleModule;
import dev.outboard.Futures;
import dev.outboard.Json;
import dev.outboard.session.SessionEntity;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;
import java.util.function.Function;
import org.apache.pekko.http.javadsl.marshalling.Marshaller;
import org.apache.pekko.http.javadsl.model.ContentType;
import org.apache.pekko.http.javadsl.model.ContentTypes;
import org.apache.pekko.http.javadsl.model.HttpCharsets;
import org.apache.pekko.http.javadsl.model.HttpEntities;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.model.MediaTypes;
import org.apache.pekko.http.javadsl.model.RequestEntity;
import org.apache.pekko.http.javadsl.model.ResponseEntity;
import org.apache.pekko.http.javadsl.model.StatusCodes;
import org.apache.pekko.http.javadsl.server.Directives;
import org.apache.pekko.http.javadsl.server.Route;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.util.ByteString;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * JSON in and out of routes with {@link Json#MAPPER}, and the mapping of failures to {@link
 * ApiError}.
 */
public final class JsonSupport {
  private static final Logger log = LoggerFactory.getLogger(JsonSupport.class);

  /**
   * API.md's content type of every JSON answer, {@code application/json; charset=utf-8}:
   * pekko-http's own {@code application/json} is rendered without the charset parameter.
   */
  public static final ContentType.WithCharset JSON =
      ContentTypes.create(
          MediaTypes.applicationWithOpenCharset("json"), HttpCharsets.custom("utf-8"));

  private JsonSupport() {}

  public static <T> Marshaller<T, RequestEntity> marshaller() {
    return Marshaller.withFixedContentType(JSON, value -> HttpEntities.create(JSON, toJson(value)));
  }

  /** {@code value} as JSON bytes, through {@link Json#MAPPER}. */
  static byte[] toJson(Object value) {
    try {
      return Json.MAPPER.writeValueAsBytes(value);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(
          "cannot write " + value.getClass().getSimpleName() + " as JSON", e);
    }
  }

  /**
   * {@code response} with {@link #JSON} if it is JSON under another content type (e.g. without the
   * charset).
   */
  static HttpResponse withJsonCharset(HttpResponse response) {
    ContentType type = response.entity().getContentType();
    if (!type.mediaType().equals(MediaTypes.APPLICATION_JSON) || type.equals(JSON)) return response;
    return response.withEntity((ResponseEntity) response.entity().withContentType(JSON));
  }

  /**
   * 413 code: the request body is over {@code outboard.http.max-body-bytes} (or the drain limit).
   */
  public static final String BODY_TOO_LARGE = "body_too_large";

  /**
   * Parses the request body as {@code type}; bad JSON, wrong types and unknown fields → 400, a body
   * over {@code maxBytes} → 413. The body is read to its end even when too large, so that the
   * client, still sending, receives the 413 instead of a reset connection.
   */
  public static <T> Route body(Class<T> type, long maxBytes, Function<T, Route> inner) {
    return text(maxBytes, text -> inner.apply(parse(type, text)));
  }

  /**
   * The request body as UTF-8 text, read to its end; over {@code maxBytes} → 413 {@link
   * #BODY_TOO_LARGE}.
   */
  public static Route text(long maxBytes, Function<String, Route> inner) {
    return text(maxBytes, BODY_TOO_LARGE, "the request body", type -> {}, inner);
  }

  /**
   * {@link #text(long, Function)}, with {@code checkType} run on the body's content type (before it
   * is decoded).
   */
  public static Route text(
      long maxBytes, Consumer<ContentType> checkType, Function<String, Route> inner) {
    return text(maxBytes, BODY_TOO_LARGE, "the request body", checkType, inner);
  }

  /**
   * The request body as UTF-8 text, read to its end. Over {@code maxBytes} → 413 with {@code
   * tooLargeCode} ({@code what} names the body in the message); a body that is not UTF-8 → 400, and
   * one whose {@code Content-Type} declares another charset → 415 ({@code checkType} may refuse the
   * type before that). Nothing is decoded with replacement characters: the text is exactly the
   * bytes sent, or there is no text.
   */
  public static Route text(
      long maxBytes,
      String tooLargeCode,
      String what,
      Consumer<ContentType> checkType,
      Function<String, Route> inner) {
    return Directives.extractRequestEntity(
        entity ->
            Directives.extractMaterializer(
                mat -> {
                  CompletionStage<Body> read =
                      entity
                          .withoutSizeLimit()
                          .getDataBytes()
                          .runFold(
                              new Body(ByteString.emptyByteString(), 0),
                              (acc, chunk) -> acc.add(chunk, maxBytes),
                              mat);
                  return Directives.onSuccess(
                      read,
                      body -> {
                        if (body.size() > maxBytes) {
                          throw new ApiError(
                              StatusCodes.CONTENT_TOO_LARGE,
                              tooLargeCode,
                              what
                                  + " is "
                                  + body.size()
                                  + " bytes; the limit is "
                                  + maxBytes
                                  + " bytes");
                        }
                        checkType.accept(entity.getContentType());
                        requireUtf8Charset(entity.getContentType());
                        return inner.apply(utf8(body.bytes()));
                      });
                }));
  }

  /**
   * 415 if {@code type} declares a charset that is not UTF-8 (US-ASCII is a part of it): the API
   * reads UTF-8 only.
   */
  static void requireUtf8Charset(ContentType type) {
    type.getCharsetOption()
        .ifPresent(
            charset -> {
              String name = charset.value();
              if (!name.equalsIgnoreCase("utf-8")
                  && !name.equalsIgnoreCase("utf8")
                  && !name.equalsIgnoreCase("us-ascii")) {
                throw new ApiError(
                    StatusCodes.UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "the body is declared as charset="
                        + name
                        + "; the API reads UTF-8 only: send it as UTF-8 with charset=utf-8");
              }
            });
  }

  /**
   * {@code bytes} decoded as UTF-8, strictly: a malformed sequence is a 400 naming its offset,
   * never a U+FFFD.
   */
  static String utf8(ByteString bytes) {
    CharsetDecoder decoder =
        StandardCharsets.UTF_8
            .newDecoder()
            .onMalformedInput(CodingErrorAction.REPORT)
            .onUnmappableCharacter(CodingErrorAction.REPORT);
    ByteBuffer in = bytes.asByteBuffer();
    CharBuffer out = CharBuffer.allocate(bytes.size());
    CoderResult result = decoder.decode(in, out, true);
    if (!result.isError()) result = decoder.flush(out);
    if (result.isError()) {
      throw ApiError.badRequest(
          "the body is not valid UTF-8 (a malformed byte sequence at byte "
              + in.position()
              + "); send text as UTF-8");
    }
    return out.flip().toString();
  }

  /**
   * For routes that take no body: reads whatever the client sent anyway (e.g. {@code {}}) and drops
   * it, so that the answer is not an "early response" after which pekko-http closes the connection.
   */
  public static Route noBody(java.util.function.Supplier<Route> inner) {
    return Directives.extractRequestEntity(
        entity ->
            Directives.extractMaterializer(
                mat ->
                    Directives.onSuccess(
                        entity.discardBytes(mat).completionStage(), done -> inner.get())));
  }

  /** The bytes read so far (only up to the limit) and the total size seen. */
  private record Body(ByteString bytes, long size) {
    Body add(ByteString chunk, long maxBytes) {
      long total = size + chunk.size();
      return new Body(
          total <= maxBytes ? bytes.concat(chunk) : ByteString.emptyByteString(), total);
    }
  }

  private static <T> T parse(Class<T> type, String text) {
    if (text.isBlank()) throw ApiError.badRequest("a JSON request body is required");
    T value;
    try {
      value = REQUESTS.readValue(text, type);
    } catch (NulInText e) {
      throw ApiError.badRequest("text in the body may not contain NUL (\\u0000)" + where(e));
    } catch (UnrecognizedPropertyException e) {
      throw ApiError.badRequest("unknown field '" + e.getPropertyName() + "'" + where(e));
    } catch (MismatchedInputException e) {
      if (e.getPath().isEmpty())
        throw ApiError.badRequest("the body must be a JSON object, not " + given(e));
      throw ApiError.badRequest(
          "invalid value"
              + where(e)
              + ": expected "
              + expected(e.getTargetType())
              + ", got "
              + given(e));
    } catch (JsonMappingException e) {
      // A number too large for its field (a wrapped InputCoercionException), or a value a record
      // refused.
      String why =
          e.getCause() instanceof InputCoercionException c
              ? "the number is out of range for " + expected(c.getTargetType())
              : "not a valid value";
      throw ApiError.badRequest("invalid value" + where(e) + ": " + why);
    } catch (JsonProcessingException e) {
      throw notJson(e);
    }
    if (value == null) throw ApiError.badRequest("the body must be a JSON object");
    return value;
  }

  private static final java.util.regex.Pattern SOURCE =
      java.util.regex.Pattern.compile(
          "\\s*\\(?start marker at \\[Source:[^\\]]*\\]\\)?|\\s*\\[Source:[^\\]]*\\]");

  /**
   * 400 for a body that is not JSON: Jackson's reason and where, without its notes on its own
   * settings.
   */
  public static ApiError notJson(JsonProcessingException e) {
    String reason = SOURCE.matcher(e.getOriginalMessage()).replaceAll("");
    String where =
        e.getLocation() == null || e.getLocation().getLineNr() < 0
            ? ""
            : " (line "
                + e.getLocation().getLineNr()
                + ", column "
                + e.getLocation().getColumnNr()
                + ")";
    return ApiError.badRequest("the body is not valid JSON" + where + ": " + reason);
  }

  /**
   * A Java type as the JSON a client should send: the messages of Jackson name Java classes ({@code
   * java.lang.Integer}), which mean nothing to a client of the API.
   */
  static String expected(Class<?> type) {
    if (type == null) return "another type";
    if (type == Integer.class
        || type == int.class
        || type == Long.class
        || type == long.class
        || type == Short.class
        || type == short.class
        || type == Byte.class
        || type == byte.class
        || type == java.math.BigInteger.class) {
      return "an integer";
    }
    if (Number.class.isAssignableFrom(type) || type == double.class || type == float.class)
      return "a number";
    if (type == Boolean.class || type == boolean.class) return "a boolean (true or false)";
    if (CharSequence.class.isAssignableFrom(type)
        || type == Character.class
        || type == char.class
        || type.isEnum()
        || java.time.temporal.Temporal.class.isAssignableFrom(type)
        || type == java.time.Duration.class) {
      return "a string";
    }
    if (java.util.Collection.class.isAssignableFrom(type) || type.isArray()) return "an array";
    if (com.fasterxml.jackson.databind.JsonNode.class.isAssignableFrom(type)) return "a JSON value";
    return "an object";
  }

  /** What the client sent where the parse failed, as a JSON type. */
  private static String given(MismatchedInputException e) {
    JsonToken token = e.getProcessor() instanceof JsonParser p ? p.currentToken() : null;
    if (token == null) return "another type";
    return switch (token) {
      case START_OBJECT, END_OBJECT, FIELD_NAME -> "an object";
      case START_ARRAY, END_ARRAY -> "an array";
      case VALUE_STRING -> "a string";
      case VALUE_NUMBER_INT -> "an integer";
      case VALUE_NUMBER_FLOAT -> "a number";
      case VALUE_TRUE, VALUE_FALSE -> "a boolean";
      case VALUE_NULL -> "null";
      default -> "another type";
    };
  }

  /**
   * Request bodies are read with {@link Json#MAPPER} plus one rule: a JSON string read into a Java
   * {@code String} may not hold NUL ({@code \\u0000}), since PostgreSQL's text cannot store it (a
   * session's user, an org's name, a webhook's secret). Values kept as JSON ({@code metadata}, a
   * scripted tool call's {@code input}) may: they are stored escaped.
   */
  private static final ObjectMapper REQUESTS =
      Json.MAPPER
          .copy()
          .registerModule(
              new SimpleModule("no-nul-in-text")
                  .addDeserializer(
                      String.class,
                      new StdScalarDeserializer<String>(String.class) {
                        @Override
                        public String deserialize(JsonParser p, DeserializationContext ctxt)
                            throws java.io.IOException {
                          String s = StringDeserializer.instance.deserialize(p, ctxt);
                          if (s != null && s.indexOf('\0') >= 0) throw new NulInText(p);
                          return s;
                        }
                      }));

  /** A NUL in a string of a request body; Jackson adds the path as it unwinds. */
  private static final class NulInText extends JsonMappingException {
    NulInText(JsonParser p) {
      super(p, "text may not contain NUL (\\u0000)");
    }
  }

  private static String where(JsonMappingException e) {
    String path =
        e.getPath().stream()
            .map(r -> r.getFieldName() != null ? r.getFieldName() : "[" + r.getIndex() + "]")
            .reduce((a, b) -> b.startsWith("[") ? a + b : a + "." + b)
            .orElse("");
    return path.isEmpty() ? "" : " at " + path;
  }

  /** An entity's error reply, an ask timeout or anything else, as an API error. */
  public static ApiError toApiError(Throwable error) {
    Throwable e = Futures.cause(error);
    if (e instanceof ApiError api) return api;
    if (e instanceof StatusReply.ErrorMessage m) {
      String msg = m.getMessage();
      int colon = msg.indexOf(": ");
      String code = colon < 0 ? "" : msg.substring(0, colon);
      String text = colon < 0 ? msg : msg.substring(colon + 2);
      if (code.equals(SessionEntity.NOT_FOUND)) return ApiError.notFound(text);
      if (code.equals(SessionEntity.CONFLICT)) return ApiError.conflict(text);
      return new ApiError(StatusCodes.INTERNAL_SERVER_ERROR, "internal", text);
    }
    if (e instanceof TimeoutException
        || e instanceof org.apache.pekko.pattern.AskTimeoutException) {
      return new ApiError(
          StatusCodes.SERVICE_UNAVAILABLE,
          "unavailable",
          "the session did not answer in time; try again");
    }
    // The client learns nothing more than "internal error"; the operator must learn why.
    log.error("request failed", e);
    return new ApiError(StatusCodes.INTERNAL_SERVER_ERROR, "internal", "internal error");
  }
}
