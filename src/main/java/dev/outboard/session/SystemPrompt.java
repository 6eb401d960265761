package dev.outboard.session;

import dev.outboard.vfs.Namespace;
import dev.outboard.vfs.PathRouter;
import java.util.stream.Collectors;

/** The system prompt every model call carries: how the harness works, then the session's own. */
public final class SystemPrompt {
  private SystemPrompt() {}

  public static String build(PathRouter router, String extra) {
    return build(router, extra, null);
  }

  /** With {@code orgSection}: the org's skills index and memory files ({@code SkillIndex}). */
  public static String build(PathRouter router, String extra, String orgSection) {
    StringBuilder sb = new StringBuilder();
    sb.append("You are an agent working through tools. Your filesystem has these directories: ")
        .append(
            router.mounted().stream().map(SystemPrompt::describe).collect(Collectors.joining("; ")))
        .append(". Use absolute paths.");
    if (router.isMounted(Namespace.SESSION)) {
      sb.append(" For work of several steps, keep your plan as a checklist in ")
          .append(Todo.PATH)
          .append(
              " (one line per step: \"- [ ] step\", and \"- [x] step\" once done) and update it as"
                  + " you go;")
          .append(" the people following this session see it.");
    }
    if (orgSection != null && !orgSection.isBlank()) sb.append("\n\n").append(orgSection.strip());
    if (extra != null && !extra.isBlank()) sb.append("\n\n").append(extra);
    return sb.toString();
  }

  private static String describe(Namespace ns) {
    return switch (ns) {
      case WORKSPACE -> "/workspace (your sandbox; bash runs there)";
      case MEMORY -> "/memory (notes shared by your organisation)";
      case SKILLS -> "/skills (your organisation's skills)";
      case SESSION -> "/session (private, durable notes of this session: plans, todo lists)";
    };
  }
}
