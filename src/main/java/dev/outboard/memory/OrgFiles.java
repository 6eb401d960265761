package dev.outboard.memory;

import com.typesafe.config.Config;
import dev.outboard.memory.OrgFileOp.Origin;
import dev.outboard.memory.OrgFileOp.Outcome;
import dev.outboard.store.Database;
import dev.outboard.tools.ToolCall;
import dev.outboard.vfs.FileTree;
import dev.outboard.vfs.Namespace;
import dev.outboard.vfs.TextFiles.ToolFailure;
import dev.outboard.vfs.VirtualPath;
import java.time.Duration;
import java.time.Instant;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;

/**
 * The agent's tools over {@code /memory/**} and {@code /skills/**}: reads go straight to the
 * database, writes through the org's {@link OrgMemory}. Results are sentences for the model.
 */
public final class OrgFiles {

  /** The session a tool call comes from. */
  public record Caller(String org, String user, String sessionId) {}

  /** What a tool call came to. */
  public record Result(String content, boolean isError) {
    static Result ok(String content) {
      return new Result(content, false);
    }

    static Result error(String content) {
      return new Result(content, true);
    }
  }

  /**
   * Room for the answer's way back (and clocks a little apart) between the writer's bound and the
   * ask's.
   */
  static final Duration ANSWER_MARGIN = Duration.ofSeconds(2);

  private final ClusterSharding sharding;
  private final OrgFileStore store;
  private final Duration writeTimeout;
  private final SkillIndex index;

  /**
   * {@code writeTimeout}: how long a write may wait for the org's writer to start its transaction.
   */
  public OrgFiles(
      ActorSystem<?> system, OrgFileStore store, SkillIndex index, Duration writeTimeout) {
    this.sharding = ClusterSharding.get(system);
    this.store = store;
    this.index = index;
    this.writeTimeout = writeTimeout;
  }

  /**
   * The org files of {@code outboard.memory} on {@code db}, with each org's writer ({@link
   * OrgMemory}) started on this node's sharding.
   */
  public static OrgFiles init(ActorSystem<?> system, Database db) {
    Config memory = system.settings().config().getConfig("outboard.memory");
    OrgFileStore store =
        new OrgFileStore(
            db, memory.getBytes("max-file-bytes"), memory.getDuration("transaction-timeout"));
    OrgMemory.init(system, store, OrgMemory.Settings.from(memory));
    return new OrgFiles(
        system,
        store,
        new SkillIndex(
            store, memory.getInt("prompt-budget-chars"), memory.getDuration("prompt-index-ttl")),
        memory.getDuration("write-timeout"));
  }

  /** The skills and memory section of the system prompt for {@code org}. */
  public CompletionStage<String> promptSection(String org) {
    return index.section(org);
  }

  public OrgFileStore store() {
    return store;
  }

  /**
   * Sends one write to the org's writer and waits for its commit. The writer starts no transaction
   * with it after {@code writeTimeout} and each transaction is bounded by the store, so its answer
   * comes before the ask gives up (write timeout + transaction timeout + a margin); if the ask
   * fails all the same, the write may still be pending.
   */
  public CompletionStage<Outcome> write(String org, OrgFileOp op, Origin origin) {
    Instant deadline = Instant.now().plus(writeTimeout);
    Duration askTimeout = writeTimeout.plus(store.transactionTimeout()).plus(ANSWER_MARGIN);
    return sharding
        .entityRefFor(OrgMemory.ENTITY_KEY, org)
        .<Outcome>ask(replyTo -> new OrgMemory.Apply(op, origin, deadline, replyTo), askTimeout)
        .thenApply(
            outcome -> {
              if (outcome.ok()) index.invalidate(org);
              return outcome;
            });
  }

  /** Runs a tool call on a path in {@code /memory} or {@code /skills}. */
  public CompletionStage<Result> execute(
      Caller caller, String callId, ToolCall call, int maxChars) {
    VirtualPath path = call.path();
    String ns = path.top();
    String rel = String.join("/", path.segments().subList(1, path.segments().size()));
    if (rel.length() > OrgFileStore.MAX_PATH) {
      return done(
          Result.error(
              "path " + path + " is longer than " + OrgFileStore.MAX_PATH + " characters"));
    }
    Origin origin = new Origin(caller.user(), caller.sessionId(), callId);
    if (call instanceof ToolCall.Write w) {
      return writeResult(
          caller.org(), new OrgFileOp.Write(ns, requireFile(path, rel), w.content(), null), origin);
    } else if (call instanceof ToolCall.Edit e) {
      return writeResult(
          caller.org(),
          new OrgFileOp.Edit(
              ns, requireFile(path, rel), e.oldString(), e.newString(), e.replaceAll()),
          origin);
    }
    return store
        .contents(caller.org(), ns)
        .thenApply(
            files -> {
              FileTree tree = new FileTree(files, Set.of("/" + ns));
              try {
                if (call instanceof ToolCall.Read r)
                  return Result.ok(tree.read(path, r.offset(), r.limit(), maxChars));
                if (call instanceof ToolCall.Ls) return Result.ok(tree.ls(path));
                if (call instanceof ToolCall.Glob g) return Result.ok(tree.glob(path, g.pattern()));
                if (call instanceof ToolCall.Grep g)
                  return Result.ok(tree.grep(path, g.pattern(), g.glob(), maxChars));
                return Result.error("this tool does not work on " + path);
              } catch (ToolFailure f) {
                return Result.error(f.getMessage());
              }
            });
  }

  /** All org files (both namespaces) keyed by full path, for a search over {@code /}. */
  public CompletionStage<TreeMap<String, String>> everything(String org) {
    return store
        .contents(org, OrgFileStore.MEMORY)
        .thenCombine(
            store.contents(org, OrgFileStore.SKILLS),
            (m, s) -> {
              TreeMap<String, String> all = new TreeMap<>(m);
              all.putAll(s);
              return all;
            });
  }

  private CompletionStage<Result> writeResult(String org, OrgFileOp op, Origin origin) {
    if (op.path() == null)
      return done(
          Result.error(
              "a file path below /" + op.ns() + " is needed, e.g. /" + op.ns() + "/notes.md"));
    return write(org, op, origin)
        .thenApply(o -> o.ok() ? Result.ok(o.message()) : Result.error(o.message()))
        .exceptionally(
            e -> Result.error(notConfirmed("the write to /" + op.ns() + "/" + op.path())));
  }

  /** What to say when the writer's answer did not come: the write may be pending still. */
  static String notConfirmed(String what) {
    return what
        + " was not confirmed in time: it may still be pending and land later; read the file to see"
        + " whether it did";
  }

  private static String requireFile(VirtualPath path, String rel) {
    return rel.isEmpty() ? null : rel;
  }

  private static CompletionStage<Result> done(Result r) {
    return CompletableFuture.completedFuture(r);
  }

  public static boolean isOrgNamespace(Namespace ns) {
    return ns == Namespace.MEMORY || ns == Namespace.SKILLS;
  }
}
