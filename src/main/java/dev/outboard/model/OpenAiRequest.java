package dev.outboard.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.openai.core.JsonValue;
import com.openai.models.FunctionDefinition;
import com.openai.models.FunctionParameters;
import com.openai.models.chat.completions.ChatCompletionAssistantMessageParam;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.chat.completions.ChatCompletionFunctionTool;
import com.openai.models.chat.completions.ChatCompletionMessageFunctionToolCall;
import com.openai.models.chat.completions.ChatCompletionToolMessageParam;
import dev.outboard.Json;
import dev.outboard.tools.ToolSpec;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * A {@link ModelRequest} as a chat-completions request (see {@link OpenAiModel} for the transcript
 * mapping): the system prompt, each message's {@code tool}, {@code user} or {@code assistant}
 * messages, and the tools as functions with the catalog's JSON Schemas.
 */
final class OpenAiRequest {
  private OpenAiRequest() {}

  /** {@code allTools}: {@link #toolsOf} the whole catalog, built once per client. */
  static ChatCompletionCreateParams params(
      ModelRequest request, ProviderSettings settings, List<ChatCompletionFunctionTool> allTools) {
    String model = ProviderClient.modelName(request, settings);
    ChatCompletionCreateParams.Builder b =
        ChatCompletionCreateParams.builder().model(model).maxCompletionTokens(settings.maxTokens());
    if (request.system() != null && !request.system().isEmpty())
      b.addSystemMessage(request.system());
    for (Message m : request.messages()) {
      if (Message.ASSISTANT.equals(m.role())) addAssistant(b, m);
      else addUser(b, m);
    }
    List<ChatCompletionFunctionTool> requestTools =
        request.tools() == null || request.tools() == dev.outboard.tools.ToolCatalog.ALL
            ? allTools
            : toolsOf(request.tools());
    for (ChatCompletionFunctionTool t : requestTools) b.addTool(t);
    return b.build();
  }

  private static void addUser(ChatCompletionCreateParams.Builder b, Message m) {
    StringBuilder text = new StringBuilder();
    for (Block block : m.content()) {
      if (block instanceof Block.ToolResult r) {
        String content = r.isError() ? "ERROR: " + r.content() : r.content();
        b.addMessage(
            ChatCompletionToolMessageParam.builder()
                .toolCallId(r.toolUseId())
                .content(content)
                .build());
      } else if (block instanceof Block.Text t) {
        if (text.length() > 0) text.append("\n\n");
        text.append(t.text());
      }
    }
    if (text.length() > 0) b.addUserMessage(text.toString());
  }

  private static void addAssistant(ChatCompletionCreateParams.Builder b, Message m) {
    StringBuilder text = new StringBuilder();
    List<ChatCompletionMessageFunctionToolCall> calls = new ArrayList<>();
    for (Block block : m.content()) {
      if (block instanceof Block.Text t) text.append(t.text());
      else if (block instanceof Block.ToolUse u) {
        calls.add(
            ChatCompletionMessageFunctionToolCall.builder()
                .id(u.id())
                .function(
                    ChatCompletionMessageFunctionToolCall.Function.builder()
                        .name(u.name())
                        .arguments(argumentsOf(u.input()))
                        .build())
                .build());
      }
    }
    if (text.length() == 0 && calls.isEmpty()) return;
    ChatCompletionAssistantMessageParam.Builder a = ChatCompletionAssistantMessageParam.builder();
    if (text.length() > 0) a.content(text.toString());
    for (ChatCompletionMessageFunctionToolCall c : calls) a.addToolCall(c);
    b.addMessage(a.build());
  }

  private static String argumentsOf(JsonNode input) {
    return Json.write(input == null ? Json.MAPPER.createObjectNode() : input);
  }

  static List<ChatCompletionFunctionTool> toolsOf(List<ToolSpec> specs) {
    List<ChatCompletionFunctionTool> out = new ArrayList<>();
    for (ToolSpec spec : specs) {
      FunctionParameters.Builder params = FunctionParameters.builder();
      ObjectNode schema = spec.inputSchema();
      for (Iterator<Map.Entry<String, JsonNode>> it = schema.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> field = it.next();
        params.putAdditionalProperty(field.getKey(), JsonValue.fromJsonNode(field.getValue()));
      }
      out.add(
          ChatCompletionFunctionTool.builder()
              .function(
                  FunctionDefinition.builder()
                      .name(spec.name())
                      .description(spec.description())
                      .parameters(params.build())
                      .build())
              .build());
    }
    return List.copyOf(out);
  }
}
