package dev.outboard.model;

import com.typesafe.config.Config;
import java.time.Duration;

/**
 * One provider's connection settings ({@code outboard.model.<provider>}): where it is, the key
 * (from the environment), the model and output budget used when a session names none, and the
 * client's limits — a node must be able to keep about a thousand calls in flight to one host.
 */
public record ProviderSettings(
    String provider,
    String baseUrl,
    String apiKey,
    String defaultModel,
    long maxTokens,
    Duration requestTimeout,
    int maxConcurrentRequests) {

  public static ProviderSettings from(Config model, String provider) {
    Config c = model.getConfig(provider);
    ProviderSettings s =
        new ProviderSettings(
            provider,
            c.getString("base-url"),
            c.getString("api-key"),
            c.getString("default-model"),
            c.getLong("max-tokens"),
            model.getDuration("request-timeout"),
            model.getInt("max-concurrent-requests"));
    Secrets.register(s.apiKey());
    return s;
  }

  /**
   * A provider is offered when it has a key (or, for OpenAI-compatible local servers, a base URL of
   * its own).
   */
  public boolean configured(String defaultBaseUrl) {
    return !apiKey.isBlank() || !baseUrl.equals(defaultBaseUrl);
  }

  /** Never prints the key. */
  @Override
  public String toString() {
    return "ProviderSettings["
        + provider
        + " at "
        + baseUrl
        + ", model "
        + defaultModel
        + ", key "
        + (apiKey.isBlank() ? "unset" : "set")
        + "]";
  }
}
