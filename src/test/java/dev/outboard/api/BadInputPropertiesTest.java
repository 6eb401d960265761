package dev.outboard.api;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.outboard.testing.ApiClient;
import dev.outboard.testing.ApiClient.Response;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.RawHttp;
import dev.outboard.testing.ScriptedSessions;
import dev.outboard.tools.ToolCatalog;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.Function;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Property tests of bad input (issue 13): whatever bytes, encodings, JSON shapes and paths a client
 * sends, the API answers with a clean 2xx or a 4xx in API.md's error shape, never a 5xx; whatever
 * arguments a model gives its tools, each call gets a result (a tool error when they are bad) and
 * the session finishes. One embedded node (H2) for every try; bounded tries, so the class stays
 * within a few seconds of its node's start.
 *
 * <p>Plain JUnit 5: each property is a {@link TestFactory} of as many {@link DynamicTest}s as it
 * has tries, each try drawing its inputs from its own {@link Random}. The seeds derive from one
 * base seed, printed at the start (in the class's {@code -output.txt} under
 * target/surefire-reports): a fixed one by default, so the suite is the same on every run; {@code
 * -Doutboard.props.seed=N} takes another, {@code -Doutboard.props.seed=random} a new one per run
 * (to explore); the same seed gives every try the same inputs again. A try's name says its number,
 * its seed and its input; its failure says those and the base seed.
 */
class BadInputPropertiesTest {
  /** The system property that fixes the base seed. */
  static final String SEED_PROPERTY = "outboard.props.seed";

  private static final long BASE_SEED = baseSeed();
  private static final String JSON = "application/json; charset=utf-8";
  private static final Duration SESSION_TIMEOUT = Duration.ofSeconds(20);
  private static final JsonNodeFactory NODES = JsonNodeFactory.instance;

  /**
   * Field names the API and the tools know, so that random objects often get past "unknown field".
   */
  private static final List<String> KNOWN_FIELDS =
      List.of(
          "prompt",
          "user",
          "model",
          "maxTurns",
          "keepOpen",
          "metadata",
          "approvals",
          "budget",
          "text",
          "toolUseId",
          "decision",
          "message",
          "maxTokens",
          "provider",
          "name",
          "script",
          "path",
          "content",
          "old_string",
          "new_string",
          "replace_all",
          "offset",
          "limit",
          "pattern",
          "glob");

  /** Paths that climb, double slashes, encodings, unicode, control characters and the like. */
  private static final List<String> PATH_PIECES =
      List.of(
          "..",
          ".",
          "",
          "a",
          "b.md",
          "日本語",
          "🚀",
          "é",
          "%2e%2e",
          "%2F",
          "%00",
          "%zz",
          "%",
          "\u0000",
          "\u0007",
          "\n",
          "\t",
          " ",
          "\\",
          "~",
          "?",
          "#",
          "*",
          "\u202e",
          "\ud800",
          "CON",
          "x".repeat(300));

  private static final List<String> CONTENT_TYPES =
      List.of(
          "",
          "application/json",
          "application/json; charset=utf-16",
          "text/plain",
          "text/plain; charset=utf-8",
          "text/plain; charset=iso-8859-1",
          "text/markdown",
          "image/png",
          "application/octet-stream",
          "multipart/form-data; boundary=x",
          "application/x-www-form-urlencoded",
          "nonsense");

  private static InProcessNode node;
  private static String key;
  private static ApiClient api;
  private static String waitingSession;

  @BeforeAll
  static void startNode() throws Exception {
    System.out.println(
        "BadInputPropertiesTest: base seed "
            + BASE_SEED
            + (System.getProperty(SEED_PROPERTY, "").isBlank()
                ? " (random; rerun with -D" + SEED_PROPERTY + "=" + BASE_SEED + ")"
                : " (from -D" + SEED_PROPERTY + ")"));
    node =
        InProcessNode.start(
            null,
            Map.of(
                "outboard.http.max-body-bytes", "64KiB", "outboard.memory.max-file-bytes", 8192));
    key = node.admin().createOrgWithKey("props");
    api = node.client(key);
    waitingSession =
        ScriptedSessions.create(
            api, ScriptedSessions.body("props", true, List.of(ScriptedSessions.say("ready"))));
    ScriptedSessions.awaitStatus(api, waitingSession, "waiting", SESSION_TIMEOUT);
  }

  @AfterAll
  static void stopNode() {
    if (node != null) node.close();
  }

  // ------------------------------------------------------------------ properties

  /** A body of any shape, size and encoding, to any endpoint that reads one, is never a 5xx. */
  @TestFactory
  Stream<DynamicTest> anyBodyToAnEndpointIsACleanAnswer() {
    record Input(String endpoint, byte[] body, String contentType) {}
    return tries(
        "anyBodyToAnEndpointIsACleanAnswer",
        200,
        random -> new Input(endpoint(random), body(random), contentType(random)),
        in ->
            in.endpoint()
                + ", "
                + (in.contentType().isEmpty() ? "no content type" : in.contentType())
                + ", "
                + describe(in.body()),
        in -> anyBodyToAnEndpointIsACleanAnswer(in.endpoint(), in.body(), in.contentType()));
  }

  private static void anyBodyToAnEndpointIsACleanAnswer(
      String endpoint, byte[] body, String contentType) {
    String[] methodAndPath = endpoint.split(" ", 2);
    String bearer = methodAndPath[1].startsWith("/v1/admin") ? node.adminToken() : key;
    assertClean(
        RawHttp.sendBytes(
            methodAndPath[0],
            node.baseUrl(),
            methodAndPath[1],
            bearer,
            contentType.isEmpty() ? null : contentType,
            body),
        endpoint);
  }

  /**
   * Any path below {@code /v1/files/memory/} is a clean answer for GET, PUT and DELETE, and what a
   * PUT accepted reads back unchanged.
   */
  @TestFactory
  Stream<DynamicTest> anyFilePathIsACleanAnswerAndAnAcceptedWriteReadsBack() {
    record Input(String path, String content) {}
    return tries(
        "anyFilePathIsACleanAnswerAndAnAcceptedWriteReadsBack",
        150,
        random -> new Input(filePath(random), text(random)),
        in -> "path " + in.path() + ", " + in.content().length() + " chars: " + in.content(),
        in -> anyFilePathIsACleanAnswerAndAnAcceptedWriteReadsBack(in.path(), in.content()));
  }

  private static void anyFilePathIsACleanAnswerAndAnAcceptedWriteReadsBack(
      String path, String content) {
    String target = "/v1/files/memory/" + path;
    byte[] bytes = content.getBytes(StandardCharsets.UTF_8); // an unpaired surrogate goes as '?'
    Response put = RawHttp.sendBytes("PUT", node.baseUrl(), target, key, "text/plain", bytes);
    assertClean(put, "PUT " + target);
    Response get = RawHttp.sendBytes("GET", node.baseUrl(), target, key, null, null);
    assertClean(get, "GET " + target);
    if (put.status() == 200 || put.status() == 201) {
      assertThat(get.status()).as("GET after an accepted PUT of " + target).isEqualTo(200);
      assertThat(get.body())
          .as("content of " + target)
          .isEqualTo(new String(bytes, StandardCharsets.UTF_8));
      assertClean(
          RawHttp.sendBytes("DELETE", node.baseUrl(), target, key, null, null), "DELETE " + target);
    }
  }

  /**
   * Any arguments for any tool name are a typed call or an {@link
   * ToolCatalog.InvalidToolCallException}, nothing else.
   */
  @TestFactory
  Stream<DynamicTest> anyToolArgumentsParseOrAreAToolError() {
    record Input(String name, JsonNode input) {}
    return tries(
        "anyToolArgumentsParseOrAreAToolError",
        200,
        random -> new Input(toolName(random), randomToolInput(random)),
        in -> "tool \"" + in.name() + "\", input " + in.input(),
        in -> anyToolArgumentsParseOrAreAToolError(in.name(), in.input()));
  }

  private static void anyToolArgumentsParseOrAreAToolError(String name, JsonNode input) {
    try {
      assertThat(ToolCatalog.parse(name, input)).isNotNull();
    } catch (ToolCatalog.InvalidToolCallException e) {
      assertThat(e.getMessage()).isNotBlank().doesNotContain("java.", "Exception");
    }
  }

  /**
   * A scripted model that gives its tools random arguments (wrong types, missing or unknown ones,
   * bad paths, NULs): every call gets exactly one result, and the session completes.
   */
  @TestFactory
  Stream<DynamicTest> aSessionWhoseModelGivesBadToolArgumentsStillFinishes() {
    return tries(
        "aSessionWhoseModelGivesBadToolArgumentsStillFinishes",
        40,
        BadInputPropertiesTest::toolCallList,
        calls ->
            calls.size()
                + " calls: "
                + String.join(
                    ", ", calls.stream().map(c -> c.get("name") + " " + c.get("input")).toList()),
        BadInputPropertiesTest::aSessionWhoseModelGivesBadToolArgumentsStillFinishes);
  }

  private static void aSessionWhoseModelGivesBadToolArgumentsStillFinishes(
      List<Map<String, Object>> calls) {
    List<Map<String, Object>> turns = new ArrayList<>();
    Map<String, Object> turn = new LinkedHashMap<>();
    turn.put("text", "calling");
    turn.put("toolCalls", calls);
    turns.add(turn);
    turns.add(ScriptedSessions.say("done"));
    String id = ScriptedSessions.create(api, ScriptedSessions.body("props-tools", false, turns));
    JsonNode done = ScriptedSessions.awaitStatus(api, id, "completed", SESSION_TIMEOUT);
    assertThat(done.path("result").asText()).isEqualTo("done");
    List<ScriptedSessions.ToolCall> results = ScriptedSessions.toolCalls(api, id);
    assertThat(results)
        .hasSize(calls.size())
        .allSatisfy(
            c -> {
              assertThat(c.results()).as("results of " + c).isEqualTo(1);
              assertThat(c.content()).as("result of " + c).isNotNull();
            });
  }

  // ------------------------------------------------------------------ tries and seeds

  /** What a try checks of its input; anything it throws fails the try. */
  private interface Check<T> {
    void accept(T input) throws Exception;
  }

  /**
   * {@code tries} dynamic tests of {@code check}, try {@code i} on what {@code generator} draws
   * from {@code new Random(trySeed(property, i))}; each named by its number, its seed and (in
   * printable ASCII, shortened) its input, and a failure says the same and the base seed. The
   * stream is lazy: a try's input is drawn just before it runs.
   */
  private static <T> Stream<DynamicTest> tries(
      String property,
      int tries,
      Function<Random, T> generator,
      Function<T, String> describe,
      Check<T> check) {
    return IntStream.rangeClosed(1, tries)
        .mapToObj(
            i -> {
              long seed = trySeed(property, i);
              T input = generator.apply(new Random(seed));
              String what =
                  "try "
                      + i
                      + "/"
                      + tries
                      + ", seed "
                      + seed
                      + ": "
                      + printable(describe.apply(input));
              return DynamicTest.dynamicTest(
                  abbreviate(what, 160),
                  () -> {
                    try {
                      check.accept(input);
                    } catch (Exception | AssertionError e) {
                      throw new AssertionError(
                          property
                              + " failed on "
                              + abbreviate(what, 1000)
                              + " (base seed "
                              + BASE_SEED
                              + ", rerun with -D"
                              + SEED_PROPERTY
                              + "="
                              + BASE_SEED
                              + "): "
                              + e.getMessage(),
                          e);
                    }
                  });
            });
  }

  /**
   * {@code -Doutboard.props.seed=N} if given ({@code random}: a new one), else the suite's fixed
   * seed.
   */
  private static long baseSeed() {
    String fixed = System.getProperty(SEED_PROPERTY, "").strip();
    if (fixed.isEmpty()) return 20261203L;
    if (fixed.equals("random")) return new Random().nextLong();
    try {
      return Long.parseLong(fixed);
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(
          "-D" + SEED_PROPERTY + " must be a long, not \"" + fixed + "\"", e);
    }
  }

  /**
   * The seed of try {@code i} of {@code property}: the base seed, the property and the try, mixed
   * (SplitMix64's finaliser).
   */
  static long trySeed(String property, int i) {
    long z = BASE_SEED ^ ((property.hashCode() * 0x9E3779B97F4A7C15L) + (i * 0xBF58476D1CE4E5B9L));
    z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
    z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
    return z ^ (z >>> 31);
  }

  /**
   * Printable ASCII as it is, anything else as a Java escape (a NUL or a lone surrogate in a test's
   * name breaks reports).
   */
  private static String printable(String s) {
    StringBuilder out = new StringBuilder();
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c >= 0x20 && c < 0x7F) out.append(c);
      else out.append(String.format("\\u%04x", (int) c));
    }
    return out.toString();
  }

  private static String abbreviate(String s, int max) {
    return s.length() <= max ? s : s.substring(0, max) + "... (" + s.length() + " chars)";
  }

  /** Its length and its start, byte by byte (as ISO-8859-1, so it stays one char a byte). */
  private static String describe(byte[] body) {
    return body.length
        + " bytes: "
        + new String(body, 0, Math.min(body.length, 60), StandardCharsets.ISO_8859_1);
  }

  // ------------------------------------------------------------------ generators

  private static <T> T oneOf(Random random, List<T> values) {
    return values.get(random.nextInt(values.size()));
  }

  private static String endpoint(Random random) {
    String s = "/v1/sessions/" + waitingSession;
    return oneOf(
        random,
        List.of(
            "POST /v1/sessions",
            "POST " + s + "/messages",
            "POST " + s + "/approvals",
            "POST " + s + "/budget",
            "POST " + s + "/events/ci.done",
            "POST " + s + "/cancel",
            "PUT /v1/files/memory/props/any.md",
            "PUT /v1/files/skills/props/SKILL.md",
            "GET /v1/sessions",
            "PUT /v1/admin/orgs/props/policy",
            "POST /v1/admin/orgs",
            "PUT /v1/admin/orgs/props/webhook"));
  }

  private static String contentType(Random random) {
    return oneOf(random, CONTENT_TYPES);
  }

  /** JSON of random shapes, then as it is, re-encoded, damaged or replaced by random bytes. */
  private static byte[] body(Random random) {
    byte[] json = ApiClient.json(randomJson(random, 4)).getBytes(StandardCharsets.UTF_8);
    return switch (random.nextInt(10)) {
      case 0 -> randomBytes(random, random.nextInt(2000));
      case 1 -> concat(new byte[] {(byte) 0xEF, (byte) 0xBB, (byte) 0xBF}, json); // UTF-8 BOM
      case 2 ->
          new String(json, StandardCharsets.UTF_8)
              .getBytes(StandardCharsets.UTF_16); // BOM + UTF-16BE
      case 3 -> new String(json, StandardCharsets.UTF_8).getBytes(StandardCharsets.UTF_16LE);
      case 4 -> insert(json, random.nextInt(json.length + 1), new byte[] {0});
      case 5 ->
          insert(json, random.nextInt(json.length + 1), new byte[] {(byte) 0xC3}); // a cut sequence
      case 6 -> java.util.Arrays.copyOf(json, random.nextInt(json.length + 1)); // truncated
      case 7 ->
          ("{\"prompt\": \"" + "x".repeat(70_000) + "\"}")
              .getBytes(StandardCharsets.UTF_8); // over the limit
      default -> json;
    };
  }

  private static String filePath(Random random) {
    StringBuilder raw = new StringBuilder();
    int segments = 1 + random.nextInt(5);
    for (int i = 0; i < segments; i++) {
      if (i > 0) raw.append(random.nextInt(8) == 0 ? "//" : "/");
      raw.append(
          random.nextInt(3) == 0
              ? randomString(random, 12)
              : PATH_PIECES.get(random.nextInt(PATH_PIECES.size())));
    }
    if (random.nextInt(20) == 0) raw.append("/").append("y".repeat(1100)); // over the path limit
    return encodeForUri(raw.toString(), random);
  }

  private static String text(Random random) {
    return randomString(random, random.nextInt(4) == 0 ? 3000 : 40);
  }

  private static String toolName(Random random) {
    List<String> names = new ArrayList<>(ToolCatalog.ALL.stream().map(t -> t.name()).toList());
    names.addAll(List.of("", "READ", "unknown", "../read", "read\u0000"));
    return oneOf(random, names);
  }

  /**
   * One to four calls of the file tools (the sandbox's, subagents and waits stay out: they would
   * start sandboxes, sessions or waits) or unknown tools, with random arguments.
   */
  private static List<Map<String, Object>> toolCallList(Random random) {
    List<String> names = List.of("read", "write", "edit", "ls", "glob", "grep", "nope");
    List<Map<String, Object>> calls = new ArrayList<>();
    for (int i = 1 + random.nextInt(4); i > 0; i--) {
      Map<String, Object> call = new LinkedHashMap<>();
      call.put("name", names.get(random.nextInt(names.size())));
      call.put("input", randomToolInput(random));
      calls.add(call);
    }
    return calls;
  }

  // ------------------------------------------------------------------ helpers

  /**
   * API.md: a 2xx, or a 4xx with {@code {"error": {"code", "message"}}} as UTF-8 JSON; never a 5xx.
   */
  private static void assertClean(Response r, String what) {
    assertThat(r.status()).as(what + " -> " + r).isBetween(200, 499);
    if (r.status() < 400) return;
    assertThat(r.header("Content-Type")).as("content type of " + what + " -> " + r).contains(JSON);
    JsonNode error = r.json().path("error");
    assertThat(error.path("code").isTextual()).as(what + " -> " + r).isTrue();
    assertThat(error.path("message").asText())
        .as(what + " -> " + r)
        .isNotBlank()
        .doesNotContain("java.lang", "`");
  }

  private static JsonNode randomToolInput(Random random) {
    if (random.nextInt(10) == 0) return randomJson(random, 2); // not even an object, often
    ObjectNode input = NODES.objectNode();
    for (int i = random.nextInt(4); i >= 0; i--) {
      String field = KNOWN_FIELDS.get(random.nextInt(KNOWN_FIELDS.size()));
      input.set(
          field,
          switch (random.nextInt(6)) {
            case 0, 1 -> NODES.textNode(randomVirtualPath(random));
            case 2 -> NODES.textNode(randomString(random, 30));
            default -> randomJson(random, 2);
          });
    }
    return input;
  }

  private static String randomVirtualPath(Random random) {
    String[] roots = {
      "/session/", "/memory/", "/skills/", "/", "", "/etc/", "session/", "/session/../memory/"
    };
    StringBuilder p = new StringBuilder(roots[random.nextInt(roots.length)]);
    for (int i = random.nextInt(3); i >= 0; i--) {
      p.append(PATH_PIECES.get(random.nextInt(PATH_PIECES.size())));
      if (random.nextBoolean()) p.append('/');
    }
    return p.toString();
  }

  static JsonNode randomJson(Random random, int depth) {
    int kind = random.nextInt(depth <= 0 ? 6 : 8);
    return switch (kind) {
      case 0 -> NODES.nullNode();
      case 1 -> NODES.booleanNode(random.nextBoolean());
      case 2 ->
          NODES.numberNode(
              random.nextInt(5) == 0 ? random.nextLong() : random.nextInt(2000) - 1000);
      case 3 -> NODES.numberNode(random.nextDouble() * 1e6);
      case 4, 5 -> NODES.textNode(randomString(random, 20));
      case 6 -> {
        ArrayNode array = NODES.arrayNode();
        for (int i = random.nextInt(4); i > 0; i--) array.add(randomJson(random, depth - 1));
        yield array;
      }
      default -> {
        ObjectNode object = NODES.objectNode();
        for (int i = random.nextInt(5); i > 0; i--) {
          String field =
              random.nextInt(3) == 0
                  ? randomString(random, 8)
                  : KNOWN_FIELDS.get(random.nextInt(KNOWN_FIELDS.size()));
          object.set(field, randomJson(random, depth - 1));
        }
        yield object;
      }
    };
  }

  /**
   * Letters, digits, punctuation, control characters, NUL, non-ASCII, emoji and lone surrogates.
   */
  static String randomString(Random random, int maxLength) {
    StringBuilder s = new StringBuilder();
    for (int i = random.nextInt(maxLength + 1); i > 0; i--) {
      switch (random.nextInt(8)) {
        case 0 -> s.append((char) random.nextInt(0x20));
        case 1 -> s.append("é日🚀\u202e\ufeff".charAt(random.nextInt(6)));
        case 2 -> s.append(random.nextBoolean() ? '\ud83d' : '\udc00');
        case 3 -> s.append("/.\\%\"'{}[]:*?".charAt(random.nextInt(13)));
        default -> s.append((char) ('a' + random.nextInt(26)));
      }
    }
    return s.toString();
  }

  private static boolean isHex(char c) {
    return Character.digit(c, 16) >= 0;
  }

  /**
   * Percent-encodes what a URI cannot carry literally; leaves {@code /}, dots and (at random) the
   * well-formed {@code %} escapes of the pieces to the server. A malformed escape ({@code %zz})
   * goes as {@code %25zz}: {@link java.net.URI} cannot send it.
   */
  private static String encodeForUri(String raw, Random random) {
    StringBuilder out = new StringBuilder();
    for (int i = 0; i < raw.length(); i++) {
      char c = raw.charAt(i);
      boolean plain =
          (c >= 'a' && c <= 'z')
              || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9')
              || "/.-_~".indexOf(c) >= 0
              || (c == '%'
                  && i + 2 < raw.length()
                  && isHex(raw.charAt(i + 1))
                  && isHex(raw.charAt(i + 2))
                  && random.nextBoolean());
      if (plain) {
        out.append(c);
        continue;
      }
      String one =
          Character.isHighSurrogate(c)
                  && i + 1 < raw.length()
                  && Character.isLowSurrogate(raw.charAt(i + 1))
              ? raw.substring(i, ++i + 1)
              : String.valueOf(c);
      for (byte b : one.getBytes(StandardCharsets.UTF_8))
        out.append('%').append(String.format("%02X", b & 0xFF));
    }
    return out.toString();
  }

  private static byte[] randomBytes(Random random, int n) {
    byte[] b = new byte[n];
    random.nextBytes(b);
    return b;
  }

  private static byte[] concat(byte[] a, byte[] b) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.writeBytes(a);
    out.writeBytes(b);
    return out.toByteArray();
  }

  private static byte[] insert(byte[] into, int at, byte[] what) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.write(into, 0, at);
    out.writeBytes(what);
    out.write(into, at, into.length - at);
    return out.toByteArray();
  }
}
