package dev.outboard.session;

import dev.outboard.Futures;
import dev.outboard.model.Block;
import dev.outboard.model.Message;
import dev.outboard.model.ModelClient;
import dev.outboard.model.ModelClients;
import dev.outboard.model.ModelRequest;
import dev.outboard.model.ModelResponse;
import dev.outboard.model.Usage;
import dev.outboard.session.SessionEntity.ToolCallCompleted;
import dev.outboard.session.SessionEntity.TranscriptCompacted;
import dev.outboard.tools.ToolCatalog;
import dev.outboard.tools.ToolSpec;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.stream.Collectors;

/**
 * Compaction of a session's transcript (outboard.sessions.compaction): when the input of the next
 * model call would pass the threshold of the model's context window, the oldest messages are
 * summarised by the model and replaced by the summary, their text kept as a history file under
 * {@link #HISTORY_DIR}; a tool result too long for the transcript is stored whole as a session
 * file. Used on the actor's thread only (it remembers what it counted last).
 */
final class Compaction {

  static final String HISTORY_DIR = "/session/history/";

  /** Each tool's definition as sent: its description and input schema, in characters. */
  private static final Map<String, Integer> TOOL_CHARS =
      ToolCatalog.ALL.stream()
          .collect(
              Collectors.toMap(
                  ToolSpec::name,
                  t ->
                      t.name().length()
                          + t.description().length()
                          + t.inputSchema().toString().length()));

  private final SessionSettings settings;
  private final ModelClients models;
  private final String sessionId;

  /** The transcript that transcriptChars counted last, and its characters. */
  private List<Message> counted = List.of();

  private long countedChars;

  /** The turn whose summary call failed, so that it goes on without compaction (0: none). */
  private int summaryFailedTurn;

  Compaction(SessionSettings settings, ModelClients models, String sessionId) {
    this.settings = settings;
    this.models = models;
    this.sessionId = sessionId;
  }

  /** The user message that stands for the messages a compaction replaced. */
  static String compactedHead(TranscriptCompacted e) {
    return "[Summary of the conversation before this point ("
        + e.replaced()
        + " messages; the full text is in "
        + e.historyPath()
        + ")]\n"
        + e.summary();
  }

  /**
   * How many of the oldest messages to summarise before the call of {@code turn}, which offers
   * {@code tools}: 0 when its input stays within the threshold of the model's context window, or
   * there is too little to replace. The kept part starts at an answer of the model, so no tool
   * result loses its call.
   */
  int cut(SessionState state, int turn, List<ToolSpec> tools) {
    SessionSettings.Compaction c = settings.compaction();
    if (turn == summaryFailedTurn) return 0;
    // The messages, the tool definitions, the session's system text and the harness's (about 2,000
    // characters).
    long chars = 2_000 + (state.spec().system() == null ? 0 : state.spec().system().length());
    for (ToolSpec t : tools) chars += TOOL_CHARS.getOrDefault(t.name(), 0);
    chars += transcriptChars(state.messages());
    long tokens = chars / c.charsPerToken();
    if (tokens <= c.threshold() * c.window(state.spec().model().name())) return 0;
    List<Message> messages = state.messages();
    for (int cut = messages.size() - c.keepMessages(); cut >= 2; cut--) {
      if (messages.get(cut).role().equals(Message.ASSISTANT)) return cut;
    }
    return 0;
  }

  /**
   * The characters of {@code messages}. The transcript only grows between compactions, so when it
   * starts and goes on with the messages counted last, only the ones appended since are counted
   * (measuring it whole before every call made a long session's turns grow with its length).
   */
  private long transcriptChars(List<Message> messages) {
    int n = counted.size();
    boolean grown =
        n > 0
            && n <= messages.size()
            && messages.get(0) == counted.get(0)
            && messages.get(n - 1) == counted.get(n - 1);
    long chars = grown ? countedChars : 0;
    for (int i = grown ? n : 0; i < messages.size(); i++)
      chars += charsOf(messages.get(i).content());
    counted = messages;
    countedChars = chars;
    return chars;
  }

  private static long charsOf(List<Block> blocks) {
    long n = 0;
    for (Block b : blocks) {
      if (b instanceof Block.Text t) n += t.text().length();
      else if (b instanceof Block.ToolResult r) n += r.content().length();
      else if (b instanceof Block.ToolUse u) n += u.name().length() + u.input().toString().length();
    }
    return n;
  }

  /** Asks the model for a summary of {@code messages[0, cut)}, for the call of {@code turn}. */
  CompletionStage<ModelResponse> summarise(SessionState state, int turn, int cut) {
    ModelClient client = models.get(state.spec().model().provider()).orElse(null);
    if (client == null)
      return CompletableFuture.failedFuture(new IllegalStateException("no model client"));
    String older = render(state.messages().subList(0, cut), Integer.MAX_VALUE);
    String system =
        "You compact the transcript of an agent session. Summarise the conversation below for the"
            + " agent that continues it: the task, what was done and found, decisions and their"
            + " reasons, open questions, files and paths that matter, and what remains to do. Be"
            + " complete but brief; answer with the summary only.";
    ModelRequest request =
        new ModelRequest(
            sessionId,
            turn,
            state.spec().model(),
            system,
            List.of(),
            List.of(Message.user(List.of(new Block.Text(older)))),
            ModelRequest.Purpose.SUMMARY);
    return Futures.attempt(() -> client.complete(request));
  }

  /** The summary call of {@code turn} failed: that turn goes on without compaction. */
  void summaryFailed(int turn) {
    summaryFailedTurn = turn;
  }

  /** The compaction that replaces {@code messages[0, replaced)} by {@code summary}. */
  TranscriptCompacted compacted(SessionState state, int replaced, String summary, Usage usage) {
    int part =
        (int) state.files().files().keySet().stream().filter(f -> f.startsWith(HISTORY_DIR)).count()
            + 1;
    String path = String.format("%s%03d.md", HISTORY_DIR, part);
    return new TranscriptCompacted(
        replaced,
        summary.isBlank() ? "(no summary)" : summary,
        path,
        settings.compaction().maxHistoryChars(),
        usage,
        Instant.now());
  }

  /** Messages as plain text for a summary or a history file, cut to {@code max} characters. */
  static String render(List<Message> messages, int max) {
    StringBuilder sb = new StringBuilder();
    for (Message m : messages) {
      sb.append("## ").append(m.role()).append('\n');
      for (Block b : m.content()) {
        if (b instanceof Block.Text t) sb.append(t.text()).append('\n');
        else if (b instanceof Block.ToolUse u)
          sb.append("[tool call ")
              .append(u.id())
              .append(": ")
              .append(u.name())
              .append(' ')
              .append(u.input())
              .append("]\n");
        else if (b instanceof Block.ToolResult r)
          sb.append("[result of ")
              .append(r.toolUseId())
              .append(r.isError() ? " (error)" : "")
              .append("]\n")
              .append(r.content())
              .append('\n');
      }
      sb.append('\n');
      if (sb.length() > max) {
        sb.setLength(Math.max(0, max - 200));
        sb.append(
            "\n"
                + "[cut here: the rest of this part is in GET"
                + " /v1/sessions/{id}/transcript?full=true]\n");
        break;
      }
    }
    return sb.toString();
  }

  /**
   * A tool's result longer than compaction.max-tool-result-chars is stored whole as {@code
   * /session/results/<call id>.txt}; the result the model sees is a pointer and a preview ({@code
   * max}: compaction.max-tool-result-chars).
   */
  static ToolCallCompleted offloaded(ToolCallCompleted c, int max) {
    if (c.change() != null || c.content().length() <= max) return c;
    String path = "/session/results/" + c.callId() + ".txt";
    String preview = c.content().substring(0, Math.min(2_000, max));
    String pointer =
        "[this result is "
            + c.content().length()
            + " characters; it is stored whole in "
            + path
            + " (read it with offset and limit, or grep it); its beginning:]\n"
            + preview;
    return new ToolCallCompleted(
        c.turn(),
        c.callId(),
        pointer,
        c.isError(),
        new SessionFiles.Change(path, c.content()),
        c.at());
  }
}
