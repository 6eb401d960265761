package dev.outboard.model;

import com.typesafe.config.Config;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;

/**
 * The providers configured on this node, by {@code model.provider} name: the scripted model, and
 * each provider that has a key or a base URL of its own, behind the retry loop.
 */
public final class ModelClients {
  private final Map<String, ModelClient> clients = new TreeMap<>();
  private final String defaultProvider;

  public ModelClients(String defaultProvider, ModelClient... clients) {
    this.defaultProvider = defaultProvider;
    for (ModelClient c : clients) this.clients.put(c.provider(), c);
  }

  /** The clients {@code outboard.model} (keys and base URLs from the environment) configures. */
  public static ModelClients fromConfig(Config modelConfig) {
    RetryPolicy retry = RetryPolicy.from(modelConfig.getConfig("retry"));
    List<ModelClient> clients = new ArrayList<>(List.of(new ScriptedModel()));
    ProviderSettings anthropic = ProviderSettings.from(modelConfig, AnthropicModel.PROVIDER);
    if (anthropic.configured("https://api.anthropic.com"))
      clients.add(new RetryingModelClient(new AnthropicModel(anthropic), retry));
    ProviderSettings openai = ProviderSettings.from(modelConfig, OpenAiModel.PROVIDER);
    if (openai.configured("https://api.openai.com/v1"))
      clients.add(new RetryingModelClient(new OpenAiModel(openai), retry));
    return new ModelClients(
        modelConfig.getString("default-provider"), clients.toArray(ModelClient[]::new));
  }

  public String defaultProvider() {
    return defaultProvider;
  }

  public Optional<ModelClient> get(String provider) {
    return Optional.ofNullable(clients.get(provider));
  }

  /** Null if {@code spec} can be served here, else a sentence saying why not. */
  public String check(ModelSpec spec) {
    ModelClient client = clients.get(spec.provider());
    if (client == null) {
      return "model provider '"
          + spec.provider()
          + "' is not available on this node (available: "
          + String.join(", ", clients.keySet())
          + ")";
    }
    return client.validate(spec).orElse(null);
  }
}
