package dev.outboard.model;

import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;

/** The providers configured on this node, by {@code model.provider} name. */
public final class ModelClients {
  private final Map<String, ModelClient> clients = new TreeMap<>();
  private final String defaultProvider;

  public ModelClients(String defaultProvider, ModelClient... clients) {
    this.defaultProvider = defaultProvider;
    for (ModelClient c : clients) this.clients.put(c.provider(), c);
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
