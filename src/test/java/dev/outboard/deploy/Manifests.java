package dev.outboard.deploy;

import com.fasterxml.jackson.annotation.JsonProperty;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.KubernetesResource;
import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import tools.jackson.core.JacksonException;
import tools.jackson.databind.DeserializationFeature;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.MapperFeature;
import tools.jackson.databind.cfg.CoercionAction;
import tools.jackson.databind.cfg.CoercionInputShape;
import tools.jackson.databind.type.LogicalType;
import tools.jackson.dataformat.yaml.YAMLMapper;

/**
 * Renders kustomizations with {@code kubectl kustomize} and parses what they render into the
 * fabric8 Kubernetes model as strictly as the API server would read it: a kind that the model does
 * not know, a field that the kind does not have, or a value of the wrong JSON type is an error that
 * names the object and the field path.
 */
final class Manifests {

  /** One rendered object, with the YAML document it came from. */
  record Manifest(HasMetadata object, JsonNode source) {
    String describe() {
      return object.getKind() + " " + object.getMetadata().getName();
    }
  }

  /** What went wrong, for all documents of one rendering. */
  static final class InvalidManifestException extends RuntimeException {
    InvalidManifestException(String message) {
      super(message);
    }
  }

  // FAIL_ON_UNKNOWN_PROPERTIES alone is not enough: every fabric8 model class has a
  // @JsonAnySetter additionalProperties map that swallows unknown fields, so parse() also walks
  // the parsed objects (unknownFields). Scalars are not coerced (the API server does not turn
  // "3" into 3, nor 3 into "3").
  static final YAMLMapper MAPPER =
      YAMLMapper.builder()
          .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
          .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
          .disable(MapperFeature.ALLOW_COERCION_OF_SCALARS)
          .withCoercionConfig(
              LogicalType.Textual,
              c ->
                  c.setCoercion(CoercionInputShape.Integer, CoercionAction.Fail)
                      .setCoercion(CoercionInputShape.Float, CoercionAction.Fail)
                      .setCoercion(CoercionInputShape.Boolean, CoercionAction.Fail))
          .build();

  private Manifests() {}

  /** kubectl on the PATH (or at /usr/bin/kubectl), if there is one. */
  static Optional<Path> kubectl() {
    List<Path> candidates = new ArrayList<>();
    String pathVar = System.getenv("PATH");
    if (pathVar != null) {
      for (String dir : pathVar.split(File.pathSeparator)) {
        if (!dir.isEmpty()) {
          candidates.add(Path.of(dir, "kubectl"));
        }
      }
    }
    candidates.add(Path.of("/usr/bin/kubectl"));
    return candidates.stream().filter(Files::isExecutable).findFirst();
  }

  /** The output of {@code kubectl kustomize <dir>}; fails with kubectl's message. */
  static String render(Path kubectl, Path kustomization) {
    ProcessBuilder pb =
        new ProcessBuilder(kubectl.toString(), "kustomize", kustomization.toString());
    try {
      Process p = pb.start();
      p.getOutputStream().close();
      CompletableFuture<String> err =
          CompletableFuture.supplyAsync(() -> readAll(p.getErrorStream()));
      String out = readAll(p.getInputStream());
      if (!p.waitFor(120, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new AssertionError(
            "kubectl kustomize " + kustomization + " did not finish within 120 s");
      }
      if (p.exitValue() != 0) {
        throw new AssertionError(
            "kubectl kustomize "
                + kustomization
                + " failed (exit "
                + p.exitValue()
                + "):\n"
                + err.join());
      }
      return out;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AssertionError("interrupted while rendering " + kustomization, e);
    }
  }

  private static String readAll(java.io.InputStream in) {
    try (in) {
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The YAML documents of a multi-document stream, empty ones left out. */
  static List<JsonNode> documents(String yaml) {
    List<JsonNode> docs = new ArrayList<>();
    for (JsonNode doc : MAPPER.readerFor(JsonNode.class).<JsonNode>readValues(yaml).readAll()) {
      if (doc != null && !doc.isMissingNode() && !doc.isNull()) {
        docs.add(doc);
      }
    }
    return docs;
  }

  /**
   * Parses every document strictly; throws one exception listing every problem found.
   *
   * @param origin what rendered the YAML (named in the message)
   */
  static List<Manifest> parse(String origin, String yaml) {
    List<Manifest> manifests = new ArrayList<>();
    List<String> problems = new ArrayList<>();
    List<JsonNode> docs = documents(yaml);
    for (int i = 0; i < docs.size(); i++) {
      JsonNode doc = docs.get(i);
      String where =
          "document "
              + (i + 1)
              + " (apiVersion "
              + doc.path("apiVersion").asString("?")
              + ", kind "
              + doc.path("kind").asString("?")
              + ", name "
              + doc.path("metadata").path("name").asString("?")
              + ")";
      KubernetesResource parsed;
      try {
        parsed = MAPPER.treeToValue(doc, KubernetesResource.class);
      } catch (JacksonException e) {
        problems.add(where + ": field " + fieldPath(e) + ": " + e.getOriginalMessage());
        continue;
      }
      if (parsed instanceof GenericKubernetesResource || !(parsed instanceof HasMetadata object)) {
        problems.add(
            where
                + ": apiVersion/kind is not a type of the Kubernetes model (a typo in kind or"
                + " apiVersion?)");
        continue;
      }
      List<String> unknown = new ArrayList<>();
      unknownFields(object, "", unknown);
      for (String field : unknown) {
        problems.add(
            object.getKind() + " " + object.getMetadata().getName() + ": unknown field " + field);
      }
      manifests.add(new Manifest(object, doc));
    }
    if (!problems.isEmpty()) {
      throw new InvalidManifestException(
          "invalid manifests in " + origin + ":\n  " + String.join("\n  ", problems));
    }
    return manifests;
  }

  /**
   * Appends the path of every field that landed in a fabric8 {@code additionalProperties} map, at
   * any depth, e.g. {@code spec.template.spec.containers[0].lifecycle.preStopp}.
   */
  static void unknownFields(Object value, String path, List<String> out) {
    if (value == null
        || value instanceof String
        || value instanceof Number
        || value instanceof Boolean
        || value instanceof Enum<?>) {
      return;
    }
    if (value instanceof Collection<?> items) {
      int i = 0;
      for (Object item : items) {
        unknownFields(item, path + "[" + i++ + "]", out);
      }
      return;
    }
    if (value instanceof Map<?, ?> map) {
      map.forEach((k, v) -> unknownFields(v, path + "[" + k + "]", out));
      return;
    }
    if (!value.getClass().getName().startsWith("io.fabric8.")) {
      return;
    }
    Map<?, ?> additional = additionalProperties(value);
    if (additional != null) {
      additional.keySet().forEach(k -> out.add(join(path, String.valueOf(k))));
    }
    for (Class<?> c = value.getClass(); c != null && c != Object.class; c = c.getSuperclass()) {
      for (Field f : c.getDeclaredFields()) {
        if (Modifier.isStatic(f.getModifiers()) || f.getName().equals("additionalProperties")) {
          continue;
        }
        JsonProperty json = f.getAnnotation(JsonProperty.class);
        String name = json != null && !json.value().isEmpty() ? json.value() : f.getName();
        f.setAccessible(true);
        try {
          unknownFields(f.get(value), join(path, name), out);
        } catch (IllegalAccessException e) {
          throw new IllegalStateException("cannot read " + c.getName() + "." + f.getName(), e);
        }
      }
    }
  }

  private static Map<?, ?> additionalProperties(Object value) {
    try {
      Method m = value.getClass().getMethod("getAdditionalProperties");
      return (Map<?, ?>) m.invoke(value);
    } catch (NoSuchMethodException e) {
      return null;
    } catch (IllegalAccessException | InvocationTargetException e) {
      throw new IllegalStateException(
          "cannot read additionalProperties of " + value.getClass().getName(), e);
    }
  }

  /**
   * Where in the document a parse error is, as in kubectl's messages:
   * spec.template.spec.containers[0].ports[0].
   */
  private static String fieldPath(JacksonException e) {
    StringBuilder path = new StringBuilder();
    for (JacksonException.Reference r : e.getPath()) {
      if (r.getPropertyName() != null) {
        path.append(path.isEmpty() ? "" : ".").append(r.getPropertyName());
      } else if (r.getIndex() >= 0) {
        path.append('[').append(r.getIndex()).append(']');
      }
    }
    return path.isEmpty() ? "(top level)" : path.toString();
  }

  private static String join(String path, String name) {
    return path.isEmpty() ? name : path + "." + name;
  }
}
