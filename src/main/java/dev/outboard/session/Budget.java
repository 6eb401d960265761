package dev.outboard.session;

import com.fasterxml.jackson.annotation.JsonInclude;
import dev.outboard.JsonSerializable;
import java.util.Optional;

/**
 * A spending limit: at most {@code maxTokens} (input plus output) and {@code maxTurns} model turns
 * per session, and what reaching one does ({@code onExceeded}: {@code fail}, the default, fails the
 * session with {@code budget_exceeded}; {@code pause} moves it to {@code requires_action} until the
 * budget is raised). A session's own budget (create body) and its org's (admin policy) both apply:
 * the lower limit wins; the session's action, else the org's.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record Budget(Long maxTokens, Integer maxTurns, String onExceeded)
    implements JsonSerializable {
  public static final String FAIL = "fail";
  public static final String PAUSE = "pause";
  public static final Budget NONE = new Budget(null, null, null);

  /** What is wrong with this budget, for a 400 naming {@code field}. */
  public Optional<String> problem(String field) {
    if (maxTokens != null && maxTokens < 1)
      return Optional.of(field + ".maxTokens must be at least 1");
    if (maxTurns != null && maxTurns < 1)
      return Optional.of(field + ".maxTurns must be at least 1");
    if (onExceeded != null && !onExceeded.equals(FAIL) && !onExceeded.equals(PAUSE)) {
      return Optional.of(field + ".onExceeded must be \"fail\" or \"pause\"");
    }
    return Optional.empty();
  }

  /** Both budgets at once: each limit the lower of the two, the action this one's if it has one. */
  public Budget and(Budget other) {
    if (other == null) return this;
    return new Budget(
        min(maxTokens, other.maxTokens),
        min(maxTurns, other.maxTurns),
        onExceeded != null ? onExceeded : other.onExceeded);
  }

  public boolean pauses() {
    return PAUSE.equals(onExceeded);
  }

  private static <T extends Comparable<T>> T min(T a, T b) {
    if (a == null) return b;
    if (b == null) return a;
    return a.compareTo(b) <= 0 ? a : b;
  }
}
