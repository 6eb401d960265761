import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.outboard.Main;
import dev.outboard.memory.OrgFileOp;
import dev.outboard.memory.OrgFileStore;
import dev.outboard.memory.OrgFiles;
import dev.outboard.memory.SkillIndex;
import dev.outboard.store.Database;
import dev.outboard.store.StoreSettings;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * The org writer without HTTP: a node started in this JVM (Main.start, on the given PostgreSQL
 * database) and N threads that each rewrite their own memory file through OrgFiles.write — the
 * same call the agent's tools and the files API make — one write at a time, for S seconds. Shows
 * what one org's OrgMemory (queue + group commit) sustains, apart from the HTTP stack and client.
 *
 * <p>Compiled and run by bench-memory.sh against ../target/outboard.jar:
 * {@code OrgWriterBenchmark <jdbc-url> <http-port> <management-port> <seconds> <writers>...}
 */
public final class OrgWriterBenchmark {
  public static void main(String[] args) throws Exception {
    String url = args[0];
    int seconds = Integer.parseInt(args[3]);
    Map<String, Object> settings = new HashMap<>();
    settings.put("outboard.db.url", url);
    settings.put("outboard.db.user", "postgres");
    settings.put("outboard.http.port", Integer.parseInt(args[1]));
    settings.put("pekko.management.http.port", Integer.parseInt(args[2]));
    settings.put("pekko.remote.artery.canonical.port", 0);
    settings.put("pekko.coordinated-shutdown.exit-jvm", "off");
    settings.put("pekko.loglevel", "WARNING");
    Config config = ConfigFactory.parseMap(settings)
        .withFallback(ConfigFactory.defaultApplication()).withFallback(ConfigFactory.defaultReference()).resolve();
    StoreSettings store = StoreSettings.from(config);
    config = store.persistenceOverlay().withFallback(config).resolve();
    ActorSystem<Void> system = ActorSystem.create(Behaviors.empty(), "outboard", config);
    try {
      Database db = Main.start(system, store);
      db.transactNow(c -> c.createStatement().executeUpdate(
          "INSERT INTO orgs (id, name, created_at) VALUES ('bench', 'Bench', CURRENT_TIMESTAMP)"));
      OrgFileStore files = new OrgFileStore(db, 256 * 1024);
      OrgFiles org = new OrgFiles(system, files, new SkillIndex(files, 4000, Duration.ofSeconds(2)), Duration.ofSeconds(30));
      run(org, 16, 3, false); // warm-up, not reported
      for (int i = 4; i < args.length; i++) run(org, Integer.parseInt(args[i]), seconds, true);
    } finally {
      system.terminate();
    }
  }

  private static void run(OrgFiles org, int writers, int seconds, boolean report) throws InterruptedException {
    long end = System.nanoTime() + seconds * 1_000_000_000L;
    AtomicLong count = new AtomicLong();
    AtomicReference<String> failure = new AtomicReference<>();
    List<long[]> latencies = new ArrayList<>();
    List<Thread> threads = new ArrayList<>();
    for (int w = 0; w < writers; w++) {
      String path = "inproc/w" + w + ".md";
      long[] lat = new long[2_000_000];
      latencies.add(lat);
      Thread t = new Thread(() -> {
        int n = 0;
        while (System.nanoTime() < end && failure.get() == null && n < lat.length) {
          long start = System.nanoTime();
          OrgFileOp.Outcome o = org.write("bench", new OrgFileOp.Write("memory", path, "x".repeat(90) + n, null),
              new OrgFileOp.Origin(null, null, null)).toCompletableFuture().join();
          if (!o.ok()) failure.set(o.message());
          lat[n++] = System.nanoTime() - start;
          count.incrementAndGet();
        }
        lat[lat.length - 1] = n;
      });
      t.start();
      threads.add(t);
    }
    for (Thread t : threads) t.join();
    if (failure.get() != null) throw new IllegalStateException("a write failed: " + failure.get());
    if (!report) return;
    long[] all = latencies.stream().flatMapToLong(l -> Arrays.stream(l, 0, (int) l[l.length - 1])).sorted().toArray();
    System.out.printf(Locale.ROOT, "RESULT inprocess writers=%d writes_per_s=%.1f p50_ms=%.3f p99_ms=%.3f%n",
        writers, count.get() / (double) seconds, all[all.length / 2] / 1e6, all[(int) (all.length * 0.99)] / 1e6);
  }
}
