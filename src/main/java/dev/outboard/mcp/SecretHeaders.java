package dev.outboard.mcp;

import dev.outboard.vault.Vault;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The headers of an MCP server as the admin API stores them: templates in which {@code
 * ${secret:NAME}} stands for the org's vault secret {@code NAME}. A header that carries a
 * credential ({@code Authorization}, a cookie, a name with token, key, secret, auth or password in
 * it) must take its value from the vault, so no credential is stored or listed in the clear.
 * Templates are resolved only for the request at hand ({@link #resolve}).
 */
public final class SecretHeaders {
  private SecretHeaders() {}

  /** A reference to a vault secret inside a header template. */
  static final Pattern REFERENCE = Pattern.compile("\\$\\{secret:([^}]*)}");

  private static final Pattern HEADER_NAME = Pattern.compile("[A-Za-z0-9-]{1,64}");

  public static final int MAX_HEADERS = 16;
  public static final int MAX_TEMPLATE_CHARS = 4096;

  /**
   * Headers the harness or the MCP transport sets itself, or the JDK's HTTP client refuses: a
   * template may not name them.
   */
  private static final Set<String> RESERVED =
      Set.of(
          "host",
          "connection",
          "content-length",
          "content-type",
          "accept",
          "expect",
          "te",
          "upgrade",
          "transfer-encoding",
          "last-event-id",
          "mcp-session-id",
          "mcp-protocol-version",
          McpToolbox.IDEMPOTENCY_HEADER.toLowerCase(Locale.ROOT));

  /** Whether a header of this name carries a credential, so that it must reference the vault. */
  static boolean carriesCredential(String name) {
    String n = name.toLowerCase(Locale.ROOT);
    return n.equals("authorization")
        || n.equals("proxy-authorization")
        || n.equals("cookie")
        || List.of("token", "key", "secret", "auth", "password", "session").stream()
            .anyMatch(n::contains);
  }

  /** What is wrong with {@code headers} (name to template) as an MCP server's headers, if any. */
  public static Optional<String> problem(Map<String, String> headers) {
    if (headers.size() > MAX_HEADERS)
      return Optional.of("at most " + MAX_HEADERS + " headers per MCP server");
    Set<String> seen = new LinkedHashSet<>();
    for (Map.Entry<String, String> h : headers.entrySet()) {
      String name = h.getKey();
      String template = h.getValue();
      if (!HEADER_NAME.matcher(name).matches())
        return Optional.of(
            "header names are 1 to 64 characters of A-Z, a-z, 0-9 and '-'; got a name of "
                + name.length()
                + " characters");
      if (!seen.add(name.toLowerCase(Locale.ROOT)))
        return Optional.of("header " + name + " is given twice (header names ignore case)");
      if (RESERVED.contains(name.toLowerCase(Locale.ROOT)))
        return Optional.of("header " + name + " is set by the harness and cannot be configured");
      if (template == null || template.isEmpty())
        return Optional.of("header " + name + ": the value must be a non-empty string");
      if (template.length() > MAX_TEMPLATE_CHARS)
        return Optional.of(
            "header " + name + ": the value is longer than " + MAX_TEMPLATE_CHARS + " characters");
      if (template.chars().anyMatch(c -> c < 0x20 && c != '\t' || c == 0x7f))
        return Optional.of("header " + name + ": the value may not contain control characters");
      Matcher m = REFERENCE.matcher(template);
      boolean references = false;
      while (m.find()) {
        references = true;
        Optional<String> bad = Vault.nameProblem(m.group(1));
        if (bad.isPresent())
          return Optional.of("header " + name + ": in ${secret:NAME}, " + bad.get());
      }
      String rest = REFERENCE.matcher(template).replaceAll("");
      if (rest.contains("${"))
        return Optional.of(
            "header " + name + ": the only substitution is ${secret:NAME}, a secret of the vault");
      if (!references && carriesCredential(name))
        return Optional.of(
            "header "
                + name
                + " carries a credential: its value must come from the org's vault, e.g. \"Bearer"
                + " ${secret:GITHUB_TOKEN}\" (PUT /v1/admin/orgs/{org}/secrets/{name} first);"
                + " the value sent is not echoed");
    }
    return Optional.empty();
  }

  /** The vault secrets that {@code headers} reference, in order of first use. */
  public static Set<String> secretNames(Map<String, String> headers) {
    Set<String> names = new LinkedHashSet<>();
    for (String template : headers.values()) {
      Matcher m = REFERENCE.matcher(template);
      while (m.find()) names.add(m.group(1));
    }
    return names;
  }

  /** A secret that a header references is not in the org's vault. */
  public static final class MissingSecret extends RuntimeException {
    public MissingSecret(String server, String name) {
      super(
          "the secret "
              + name
              + " that MCP server '"
              + server
              + "' needs is not in the org's vault (PUT /v1/admin/orgs/{org}/secrets/"
              + name
              + ")",
          null,
          false,
          false);
    }
  }

  /** Headers with their secrets filled in, and the redactor that hides those secrets again. */
  public record Resolved(Map<String, String> headers, Redactor redactor) {
    public static final Resolved NONE = new Resolved(Map.of(), Redactor.NONE);

    @Override
    public String toString() {
      return "Resolved" + headers.keySet(); // never the values
    }
  }

  /**
   * The headers of {@code server} with every secret read from {@code vault} now. Fails with {@link
   * MissingSecret} if one is missing, with {@link Vault.Disabled} if the node has no vault key.
   */
  public static CompletionStage<Resolved> resolve(
      Vault vault, String org, String server, Map<String, String> templates) {
    Set<String> names = secretNames(templates);
    if (names.isEmpty())
      return CompletableFuture.completedFuture(new Resolved(templates, Redactor.NONE));
    Map<String, String> values = new LinkedHashMap<>();
    CompletionStage<Void> all = CompletableFuture.completedFuture(null);
    for (String name : names) {
      all =
          all.thenCompose(
              ignored ->
                  vault
                      .resolve(org, name)
                      .thenAccept(
                          value ->
                              values.put(
                                  name, value.orElseThrow(() -> new MissingSecret(server, name)))));
    }
    return all.thenApply(
        ignored -> {
          Map<String, String> headers = new LinkedHashMap<>();
          templates.forEach(
              (header, template) -> {
                Matcher m = REFERENCE.matcher(template);
                StringBuilder out = new StringBuilder();
                while (m.find())
                  m.appendReplacement(out, Matcher.quoteReplacement(values.get(m.group(1))));
                m.appendTail(out);
                headers.put(header, out.toString());
              });
          List<Redactor.Secret> secrets = new ArrayList<>();
          values.forEach((name, value) -> secrets.add(new Redactor.Secret(name, value)));
          return new Resolved(Map.copyOf(headers), new Redactor(secrets));
        });
  }
}
