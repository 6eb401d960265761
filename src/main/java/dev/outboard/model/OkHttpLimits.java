package dev.outboard.model;

import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.ArrayDeque;
import java.util.Collections;
import java.util.Deque;
import java.util.IdentityHashMap;
import java.util.Set;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import okhttp3.Dispatcher;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * How many calls a provider's OkHttp client keeps in flight: OkHttp's default dispatcher allows 64
 * (per host and in all) and queues the rest, while a node must keep about a thousand calls to one
 * host. The OpenAI client gets a {@link #dispatcher} of ours; the Anthropic SDK builds its client
 * itself, so its dispatcher is found and {@link #raise raised} by reflection.
 */
final class OkHttpLimits {
  private static final Logger log = LoggerFactory.getLogger(OkHttpLimits.class);

  private OkHttpLimits() {}

  /** A dispatcher for {@code limit} calls at once on daemon threads {@code <threads>-<n>}. */
  static Dispatcher dispatcher(String threads, int limit) {
    AtomicInteger n = new AtomicInteger();
    Dispatcher dispatcher =
        new Dispatcher(
            new ThreadPoolExecutor(
                0,
                Integer.MAX_VALUE,
                60,
                TimeUnit.SECONDS,
                new SynchronousQueue<>(),
                r -> {
                  Thread t = new Thread(r, threads + "-" + n.incrementAndGet());
                  t.setDaemon(true);
                  return t;
                }));
    dispatcher.setMaxRequests(limit);
    dispatcher.setMaxRequestsPerHost(limit);
    return dispatcher;
  }

  /**
   * The Anthropic SDK (3.14.0) builds its own OkHttp client: the builder exposes the dispatcher's
   * executor, the idle-connection pool and the timeouts, but not the dispatcher's limits (the SDK
   * copies OkHttp's 64 to the per-host limit). OkHttp is only a runtime dependency of that SDK, so
   * the dispatcher is found in the built client ({@code httpClient}, walking fields of classes in
   * {@code sdkPackage} and okhttp3) and raised through its public setters by reflection. Returns
   * the per-host limit in effect afterwards, or -1 if the dispatcher was not found (then the SDK
   * defaults apply and a warning is logged).
   */
  static int raise(String provider, Object httpClient, String sdkPackage, int limit) {
    try {
      Object dispatcher = findDispatcher(httpClient, sdkPackage);
      if (dispatcher == null) {
        log.warn(
            "{}: OkHttp dispatcher not found; at most 64 calls run at once (the SDK's default)",
            provider);
        return -1;
      }
      dispatcher.getClass().getMethod("setMaxRequests", int.class).invoke(dispatcher, limit);
      dispatcher.getClass().getMethod("setMaxRequestsPerHost", int.class).invoke(dispatcher, limit);
      return (Integer) dispatcher.getClass().getMethod("getMaxRequestsPerHost").invoke(dispatcher);
    } catch (ReflectiveOperationException | RuntimeException e) {
      log.warn(
          "{}: could not raise OkHttp's request limits ({}); at most 64 calls run at once",
          provider,
          e.toString());
      return -1;
    }
  }

  /**
   * Walks the SDK's HTTP client wrappers (fields of its and okhttp3's classes) to the dispatcher.
   */
  private static Object findDispatcher(Object root, String sdkPackage)
      throws IllegalAccessException {
    Deque<Object[]> queue = new ArrayDeque<>();
    Set<Object> seen = Collections.newSetFromMap(new IdentityHashMap<>());
    queue.add(new Object[] {root, 0});
    while (!queue.isEmpty()) {
      Object[] item = queue.poll();
      Object o = item[0];
      int depth = (Integer) item[1];
      if (o == null || !seen.add(o)) continue;
      String cls = o.getClass().getName();
      if (cls.equals("okhttp3.Dispatcher")) return o;
      if (depth > 12 || !(cls.startsWith(sdkPackage) || cls.startsWith("okhttp3."))) continue;
      for (Class<?> c = o.getClass(); c != null && c != Object.class; c = c.getSuperclass()) {
        for (Field f : c.getDeclaredFields()) {
          if (Modifier.isStatic(f.getModifiers()) || f.getType().isPrimitive()) continue;
          try {
            f.setAccessible(true);
          } catch (RuntimeException inaccessible) {
            continue;
          }
          queue.add(new Object[] {f.get(o), depth + 1});
        }
      }
    }
    return null;
  }
}
