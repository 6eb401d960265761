package dev.outboard.ops;

import java.util.Map;
import java.util.function.Function;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * MDC for every line an actor logs while it handles a message ({@code sessionId}, {@code org}), for
 * JSON logs. {@link Behaviors#withMdc} given the actor's command class skips the messages that are
 * not commands: an event-sourced actor's journal answers (in which its persist callbacks run and
 * its stashed commands are handled) and timer messages delivered through an inner {@code
 * withTimers}. This interceptor takes every message.
 */
public final class LogContext {
  private LogContext() {}

  /**
   * {@code behavior} with {@code staticMdc} plus {@code dynamicMdc} (computed per message, from the
   * message or from what the actor has learned so far) on every message and signal.
   */
  @SuppressWarnings("unchecked")
  public static <T> Behavior<T> everyMessage(
      Map<String, String> staticMdc,
      Function<Object, Map<String, String>> dynamicMdc,
      Behavior<T> behavior) {
    Behavior<Object> any = (Behavior<Object>) (Behavior<?>) behavior;
    return (Behavior<T>)
        (Behavior<?>) Behaviors.withMdc(Object.class, staticMdc, dynamicMdc::apply, any);
  }

  /** {@code behavior} with {@code mdc} on every message and signal. */
  public static <T> Behavior<T> everyMessage(Map<String, String> mdc, Behavior<T> behavior) {
    return everyMessage(mdc, m -> Map.of(), behavior);
  }
}
