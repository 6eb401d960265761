package dev.outboard.model;

import com.anthropic.core.JsonValue;
import com.anthropic.models.messages.CacheControlEphemeral;
import com.anthropic.models.messages.ContentBlockParam;
import com.anthropic.models.messages.MessageCreateParams;
import com.anthropic.models.messages.MessageParam;
import com.anthropic.models.messages.TextBlockParam;
import com.anthropic.models.messages.Tool;
import com.anthropic.models.messages.ToolResultBlockParam;
import com.anthropic.models.messages.ToolUseBlockParam;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.outboard.tools.ToolCatalog;
import dev.outboard.tools.ToolSpec;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A {@link ModelRequest} as the Anthropic Messages API's request. Prompt caching: the stable prefix
 * — tool definitions and system prompt (which carries the skills and memory index) — is marked
 * {@code cache_control: ephemeral} on the last tool and on the system block; the newest transcript
 * block carries a third breakpoint so that the conversation itself is read from the cache on the
 * next turn.
 */
final class AnthropicRequest {
  private static final CacheControlEphemeral EPHEMERAL = CacheControlEphemeral.builder().build();

  private AnthropicRequest() {}

  static MessageCreateParams params(ModelRequest request, ProviderSettings settings) {
    String model = ProviderClient.modelName(request, settings);
    MessageCreateParams.Builder b =
        MessageCreateParams.builder().model(model).maxTokens(settings.maxTokens());
    if (request.system() != null && !request.system().isBlank()) {
      b.systemOfTextBlockParams(
          List.of(TextBlockParam.builder().text(request.system()).cacheControl(EPHEMERAL).build()));
    }
    List<ToolSpec> tools = request.tools() == null ? ToolCatalog.ALL : request.tools();
    for (int i = 0; i < tools.size(); i++) {
      ToolSpec t = tools.get(i);
      Tool.Builder tb =
          Tool.builder()
              .name(t.name())
              .description(t.description())
              .inputSchema(inputSchema(t.inputSchema()));
      if (i == tools.size() - 1) tb.cacheControl(EPHEMERAL);
      b.addTool(tb.build());
    }
    List<Message> merged = normalise(request.messages());
    for (int i = 0; i < merged.size(); i++) {
      Message m = merged.get(i);
      boolean last = i == merged.size() - 1;
      List<ContentBlockParam> blocks = new ArrayList<>();
      for (int j = 0; j < m.content().size(); j++) {
        blocks.add(toParam(m.content().get(j), last && j == m.content().size() - 1));
      }
      b.addMessage(
          Message.ASSISTANT.equals(m.role())
              ? MessageParam.ofAssistantOfContentBlockParams(blocks)
              : MessageParam.ofUserOfContentBlockParams(blocks));
    }
    return b.build();
  }

  /** The one shared JSON Schema of a tool, as the SDK's input schema. */
  static Tool.InputSchema inputSchema(ObjectNode schema) {
    Tool.InputSchema.Builder s = Tool.InputSchema.builder();
    Map<String, JsonValue> props = new LinkedHashMap<>();
    JsonNode properties = schema.path("properties");
    for (Iterator<Map.Entry<String, JsonNode>> it = properties.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      props.put(e.getKey(), JsonValue.fromJsonNode(e.getValue()));
    }
    s.properties(Tool.InputSchema.Properties.builder().putAllAdditionalProperties(props).build());
    List<String> required = new ArrayList<>();
    schema.path("required").forEach(r -> required.add(r.asText()));
    s.required(required);
    for (Iterator<Map.Entry<String, JsonNode>> it = schema.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      if (!Set.of("type", "properties", "required").contains(e.getKey())) {
        s.putAdditionalProperty(e.getKey(), JsonValue.fromJsonNode(e.getValue()));
      }
    }
    return s.build();
  }

  /**
   * The transcript as the API accepts it: no empty messages or empty text blocks (an assistant turn
   * may have been recorded with no content), and strictly alternating roles — consecutive messages
   * of one role, which skipping can produce, are merged.
   */
  static List<Message> normalise(List<Message> messages) {
    List<Message> out = new ArrayList<>();
    for (Message m : messages) {
      List<Block> content =
          m.content().stream()
              .filter(
                  bl -> !(bl instanceof Block.Text t) || (t.text() != null && !t.text().isEmpty()))
              .toList();
      if (content.isEmpty()) continue;
      String role = Message.ASSISTANT.equals(m.role()) ? Message.ASSISTANT : Message.USER;
      if (!out.isEmpty() && out.get(out.size() - 1).role().equals(role)) {
        Message prev = out.remove(out.size() - 1);
        List<Block> joined = new ArrayList<>(prev.content());
        joined.addAll(content);
        out.add(new Message(role, joined));
      } else {
        out.add(new Message(role, content));
      }
    }
    return out;
  }

  private static ContentBlockParam toParam(Block block, boolean cacheBreakpoint) {
    if (block instanceof Block.Text t) {
      TextBlockParam.Builder p = TextBlockParam.builder().text(t.text());
      if (cacheBreakpoint) p.cacheControl(EPHEMERAL);
      return ContentBlockParam.ofText(p.build());
    }
    if (block instanceof Block.ToolUse u) {
      ToolUseBlockParam.Input.Builder input = ToolUseBlockParam.Input.builder();
      JsonNode in = u.input();
      if (in != null && in.isObject()) {
        for (Iterator<Map.Entry<String, JsonNode>> it = in.fields(); it.hasNext(); ) {
          Map.Entry<String, JsonNode> e = it.next();
          input.putAdditionalProperty(e.getKey(), JsonValue.fromJsonNode(e.getValue()));
        }
      }
      ToolUseBlockParam.Builder p =
          ToolUseBlockParam.builder().id(u.id()).name(u.name()).input(input.build());
      if (cacheBreakpoint) p.cacheControl(EPHEMERAL);
      return ContentBlockParam.ofToolUse(p.build());
    }
    Block.ToolResult r = (Block.ToolResult) block;
    ToolResultBlockParam.Builder p = ToolResultBlockParam.builder().toolUseId(r.toolUseId());
    if (r.content() != null && !r.content().isEmpty()) p.content(r.content());
    if (r.isError()) p.isError(true);
    if (cacheBreakpoint) p.cacheControl(EPHEMERAL);
    return ContentBlockParam.ofToolResult(p.build());
  }
}
