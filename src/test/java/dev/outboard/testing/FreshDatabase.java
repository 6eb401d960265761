package dev.outboard.testing;

import java.lang.reflect.Method;
import java.sql.Connection;
import java.sql.SQLException;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.InvocationInterceptor;
import org.junit.jupiter.api.extension.ReflectiveInvocationContext;
import org.opentest4j.TestAbortedException;

/**
 * A JUnit 5 extension that gives the test class a fresh {@link TestPostgres} database, created
 * before all its tests and dropped after them: {@code @RegisterExtension static final FreshDatabase
 * postgres = FreshDatabase.create();}. {@link PostgresNode} and {@link PostgresCluster} start nodes
 * on it.
 *
 * <p>Without a reachable PostgreSQL, {@link TestPostgres} prints a notice and every test of the
 * class reports itself skipped; the class's own {@code @BeforeAll} and {@code @AfterAll} methods
 * are then not run, as they would set up on a database that is not there. Under {@code CI=true} the
 * class fails instead.
 */
public class FreshDatabase
    implements BeforeAllCallback, BeforeEachCallback, AfterAllCallback, InvocationInterceptor {
  private Class<?> owner;
  private TestPostgres postgres;
  private TestAbortedException missing;

  protected FreshDatabase() {}

  public static FreshDatabase create() {
    return new FreshDatabase();
  }

  /** Runs once the database exists, before the class's {@code @BeforeAll} methods. */
  protected void started(TestPostgres postgres) throws Exception {}

  /** Runs after the class's {@code @AfterAll} methods, before the database is dropped. */
  protected void stopping() {}

  @Override
  public final void beforeAll(ExtensionContext context) throws Exception {
    if (owner != null) return; // a @Nested class: the outer class's database serves it
    owner = context.getRequiredTestClass();
    try {
      postgres = TestPostgres.create();
    } catch (TestAbortedException e) {
      missing = e;
      return;
    }
    try {
      started(postgres);
    } catch (Exception | Error e) {
      CapturedLogs.print(owner.getSimpleName() + " set-up on " + postgres.database(), e);
      afterAll(context);
      throw e;
    }
  }

  @Override
  public final void beforeEach(ExtensionContext context) {
    if (missing != null) throw missing;
  }

  @Override
  public final void afterAll(ExtensionContext context) {
    if (context.getRequiredTestClass() != owner) return;
    try {
      if (postgres != null) stopping();
    } finally {
      if (postgres != null) postgres.close();
      postgres = null;
      owner = null;
    }
  }

  @Override
  public void interceptBeforeAllMethod(
      Invocation<Void> invocation,
      ReflectiveInvocationContext<Method> invocationContext,
      ExtensionContext extensionContext)
      throws Throwable {
    proceedUnlessMissing(invocation);
  }

  @Override
  public void interceptAfterAllMethod(
      Invocation<Void> invocation,
      ReflectiveInvocationContext<Method> invocationContext,
      ExtensionContext extensionContext)
      throws Throwable {
    proceedUnlessMissing(invocation);
  }

  private void proceedUnlessMissing(Invocation<Void> invocation) throws Throwable {
    if (missing != null) invocation.skip();
    else invocation.proceed();
  }

  /** The database itself (during the class's tests). */
  public TestPostgres get() {
    if (postgres == null) throw new IllegalStateException("no database outside the test class");
    return postgres;
  }

  public String url() {
    return get().url();
  }

  public String user() {
    return get().user();
  }

  /** A connection to the database, for assertions on what the service stored. */
  public Connection connection() throws SQLException {
    return get().connection();
  }

  /** A fresh database with something started on it for the test class: a node, a cluster. */
  abstract static class Running<T extends AutoCloseable> extends FreshDatabase {
    private T running;

    /** Starts what runs on {@code postgres}; it is closed before the database is dropped. */
    abstract T start(TestPostgres postgres) throws Exception;

    @Override
    protected final void started(TestPostgres postgres) throws Exception {
      running = start(postgres);
    }

    @Override
    protected final void stopping() {
      try {
        if (running != null) running.close();
      } catch (Exception e) {
        throw new IllegalStateException(e);
      } finally {
        running = null;
      }
    }

    /** What runs on the database (during the class's tests). */
    T running() {
      if (running == null) throw new IllegalStateException("nothing runs outside the test class");
      return running;
    }
  }
}
