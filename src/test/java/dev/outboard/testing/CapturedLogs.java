package dev.outboard.testing;

import java.lang.reflect.Method;
import org.apache.pekko.actor.testkit.typed.internal.CapturingAppender;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.LifecycleMethodExecutionExceptionHandler;
import org.opentest4j.TestAbortedException;

/**
 * Prints the log lines captured so far (logback-test.xml buffers them in Pekko's {@link
 * CapturingAppender}) when a set-up or tear-down fails. Pekko's {@code LogCapturingExtension}
 * prints them for a failing test method only; this extension, registered beside it in {@code
 * META-INF/services}, covers {@code @BeforeAll}, {@code @BeforeEach}, {@code @AfterEach} and
 * {@code @AfterAll} methods, and {@link FreshDatabase} calls {@link #print} when its nodes fail to
 * start.
 */
public final class CapturedLogs implements LifecycleMethodExecutionExceptionHandler {

  /** Prints the captured lines between markers naming {@code what} failed, then forgets them. */
  public static void print(String what, Throwable failure) {
    if (failure instanceof TestAbortedException) return;
    System.out.println("--> [" + what + "] log messages before it failed with " + failure);
    CapturingAppender.get("").flush();
    System.out.println("<-- [" + what + "] end of log messages");
  }

  @Override
  public void handleBeforeAllMethodExecutionException(ExtensionContext context, Throwable t)
      throws Throwable {
    print(name(context), t);
    throw t;
  }

  @Override
  public void handleBeforeEachMethodExecutionException(ExtensionContext context, Throwable t)
      throws Throwable {
    print(name(context), t);
    throw t;
  }

  @Override
  public void handleAfterEachMethodExecutionException(ExtensionContext context, Throwable t)
      throws Throwable {
    print(name(context), t);
    throw t;
  }

  @Override
  public void handleAfterAllMethodExecutionException(ExtensionContext context, Throwable t)
      throws Throwable {
    print(name(context), t);
    throw t;
  }

  private static String name(ExtensionContext context) {
    return context.getRequiredTestClass().getSimpleName()
        + context.getTestMethod().map(Method::getName).map(m -> ": " + m).orElse("")
        + " set-up or tear-down";
  }
}
