package dev.outboard.tools;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.outboard.Json;
import java.util.List;

/**
 * One tool as the model sees it. For the harness's own tools the parameter list is the single
 * definition from which both the JSON Schema sent to every provider and the validation of the
 * model's arguments are derived; a tool of an MCP server ({@link #external}) brings its own schema
 * ({@code schema}, null otherwise), and its server validates the arguments.
 */
public record ToolSpec(String name, String description, List<Param> params, ObjectNode schema) {

  public enum Type {
    STRING("string"),
    INTEGER("integer"),
    BOOLEAN("boolean"),
    /** A JSON array of strings. */
    STRING_LIST("array");

    final String json;

    Type(String json) {
      this.json = json;
    }
  }

  public record Param(String name, Type type, boolean required, String description) {}

  public ToolSpec {
    params = List.copyOf(params);
    if (schema != null) schema = schema.deepCopy();
  }

  public ToolSpec(String name, String description, List<Param> params) {
    this(name, description, params, null);
  }

  /** A tool defined elsewhere (an MCP server's), with its own input schema, an object's. */
  public static ToolSpec external(String name, String description, ObjectNode schema) {
    return new ToolSpec(name, description, List.of(), schema);
  }

  /** The JSON Schema of this tool's input object. */
  public ObjectNode inputSchema() {
    if (schema != null) return schema.deepCopy();
    ObjectNode schema = Json.MAPPER.createObjectNode().put("type", "object");
    ObjectNode properties = schema.putObject("properties");
    ArrayNode required = Json.MAPPER.createArrayNode();
    for (Param p : params) {
      ObjectNode property =
          properties
              .putObject(p.name())
              .put("type", p.type().json)
              .put("description", p.description());
      if (p.type() == Type.STRING_LIST) property.putObject("items").put("type", "string");
      if (p.required()) required.add(p.name());
    }
    schema.set("required", required);
    schema.put("additionalProperties", false);
    return schema;
  }
}
