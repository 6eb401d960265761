package dev.outboard.sandbox;

import static dev.outboard.Futures.cause;

import dev.outboard.Futures;
import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.sandbox.SandboxProvider.SandboxGoneException;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;

/**
 * Where a session's sandboxes and their workspaces come from and are kept: it starts a sandbox with
 * the best workspace there is (the lost sandbox's salvaged files, else the last hibernation
 * snapshot in memory or in the {@link SnapshotStore}, else an empty one), hibernates a sandbox and
 * stores its snapshot, and destroys sandboxes and snapshots quietly. Runs off the actor; failures
 * of the store only lose durability and are logged.
 */
final class Provisioner {
  private static final org.slf4j.Logger log = org.slf4j.LoggerFactory.getLogger(Provisioner.class);

  /** Where a new sandbox's workspace came from. */
  enum Restored {
    NOTHING(" with an empty workspace"),
    SALVAGED(", its workspace recovered as the lost sandbox left it"),
    SNAPSHOT(", its workspace restored from the last snapshot");

    final String sentence;

    Restored(String sentence) {
      this.sentence = sentence;
    }
  }

  /**
   * A started sandbox; {@code salvaged}: the lost sandbox (if any) answered salvage, so destroying
   * it loses nothing.
   */
  record Created(String sandboxId, Restored restored, boolean salvaged) {}

  /** What salvage gave: the files ({@code bytes}, null: none left), or {@code answered} false. */
  private record Salvage(byte[] bytes, boolean answered) {}

  private record Workspace(byte[] bytes, Restored restored) {}

  private final SandboxProvider provider;
  private final Limits limits;
  private final SnapshotStore snapshots;
  private final String sessionId;

  /** With {@code snapshots} null (or no {@code sessionId}), snapshots are kept in memory only. */
  Provisioner(SandboxProvider provider, Limits limits, SnapshotStore snapshots, String sessionId) {
    this.provider = provider;
    this.limits = limits;
    this.snapshots = sessionId == null ? null : snapshots;
    this.sessionId = sessionId;
  }

  /**
   * Starts a sandbox in place of {@code lostId} (null: the first one). A replacement's workspace
   * comes from the lost sandbox itself when its files are still there ({@link
   * SandboxProvider#salvage}), else from {@code inMemory}, else (when {@code lookInStore}) from the
   * store.
   */
  CompletionStage<Created> start(String lostId, byte[] inMemory, boolean lookInStore) {
    CompletionStage<Salvage> salvaged =
        lostId == null
            ? CompletableFuture.completedFuture(new Salvage(null, true))
            : salvage(lostId);
    return salvaged.thenCompose(
        sv ->
            workspace(sv.bytes(), inMemory, lookInStore && snapshots != null)
                .thenCompose(
                    w ->
                        Futures.attempt(() -> provider.create(limits, w.bytes()))
                            .thenApply(id -> new Created(id, w.restored(), sv.answered()))));
  }

  private CompletionStage<Workspace> workspace(
      byte[] salvaged, byte[] inMemory, boolean lookInStore) {
    if (salvaged != null) {
      return CompletableFuture.completedFuture(new Workspace(salvaged, Restored.SALVAGED));
    } else if (inMemory != null) {
      return CompletableFuture.completedFuture(new Workspace(inMemory, Restored.SNAPSHOT));
    } else if (!lookInStore) {
      return CompletableFuture.completedFuture(new Workspace(null, Restored.NOTHING));
    }
    return loadSnapshot()
        .thenApply(
            stored -> new Workspace(stored, stored == null ? Restored.NOTHING : Restored.SNAPSHOT));
  }

  /**
   * Whether a failure to start a sandbox would only repeat itself (no bwrap, a wrong host token,
   * bad limits), rather than pass (its host restarting, a sandbox killed while it started).
   */
  static boolean lasting(Throwable cause) {
    String why = cause.getMessage();
    return noBwrap(why)
        || cause instanceof IllegalArgumentException
        || (why != null && why.contains("refused this node's token"));
  }

  /**
   * The provider says bubblewrap is missing (it names the Debian package; the session's answer is
   * the same for every distribution).
   */
  static boolean noBwrap(String why) {
    return why != null && why.startsWith("bubblewrap (bwrap) is not installed");
  }

  private CompletionStage<Salvage> salvage(String id) {
    return Futures.attempt(() -> provider.salvage(id))
        .handle(
            (bytes, e) -> {
              if (e != null) {
                log.warn("nothing could be salvaged from sandbox {}: {}", id, cause(e).toString());
                return new Salvage(null, false);
              }
              return new Salvage(bytes, true);
            });
  }

  private CompletionStage<byte[]> loadSnapshot() {
    String sid = sessionId;
    return Futures.<Optional<SnapshotStore.Snapshot>>attempt(() -> snapshots.load(sid))
        .handle(
            (s, e) -> {
              if (e != null) {
                log.warn(
                    "could not load the sandbox snapshot of session {}: {}",
                    sid,
                    cause(e).toString());
                return null;
              }
              return s.map(SnapshotStore.Snapshot::bytes).orElse(null);
            });
  }

  /**
   * Hibernates sandbox {@code id} and saves its snapshot to the store (when there is one); the
   * stage gives the snapshot once it is saved, or failed to be.
   */
  CompletionStage<byte[]> hibernate(String id) {
    return provider.hibernate(id).thenCompose(bytes -> saveSnapshot(id, bytes));
  }

  private CompletionStage<byte[]> saveSnapshot(String id, byte[] bytes) {
    if (snapshots == null || bytes == null) return CompletableFuture.completedFuture(bytes);
    String sid = sessionId;
    return Futures.attempt(() -> snapshots.save(sid, id, bytes))
        .handle(
            (v, e) -> {
              if (e != null) {
                log.warn(
                    "could not store the snapshot of sandbox {} (session {}): {}",
                    id,
                    sid,
                    cause(e).toString());
              }
              return bytes;
            });
  }

  /** Freezes sandbox {@code id} as its session stops; a failure to ask is logged. */
  void suspendQuietly(String id) {
    try {
      provider.suspend(id);
    } catch (RuntimeException e) {
      log.info("could not freeze sandbox {} as its session stopped: {}", id, e.toString());
    }
  }

  /** Destroys sandbox {@code id}; a failure is logged (one already gone is not). */
  void destroyQuietly(String id) {
    CompletionStage<Void> destroyed;
    try {
      destroyed = provider.destroy(id);
    } catch (RuntimeException e) {
      return;
    }
    destroyed.whenComplete(
        (v, e) -> {
          if (e != null && !(cause(e) instanceof SandboxGoneException)) {
            log.info("could not destroy the replaced sandbox {}: {}", id, cause(e).toString());
          }
        });
  }

  /**
   * Retires the lost sandbox {@code id} once its replacement runs (it may live on behind a network
   * blip): destroyed when it answered salvage ({@code salvaged}), else left in place, since its
   * files may be all there is.
   */
  void retire(String id, boolean salvaged) {
    if (salvaged) {
      destroyQuietly(id);
    } else {
      log.warn(
          "sandbox {} is left in place: it did not answer salvage, so its files may be all there"
              + " is",
          id);
    }
  }

  /**
   * Deletes the session's stored snapshot once {@code after} is done (a hibernation in flight saves
   * its snapshot first, or the delete would come before it).
   */
  void deleteSnapshot(CompletionStage<?> after) {
    if (snapshots == null) return;
    String sid = sessionId;
    CompletionStage<?> before = after == null ? CompletableFuture.completedFuture(null) : after;
    before
        .handle((v, e) -> null)
        .thenCompose(v -> snapshots.delete(sid))
        .whenComplete(
            (v, e) -> {
              if (e != null)
                log.warn(
                    "could not delete the sandbox snapshot of session {}: {}",
                    sid,
                    cause(e).toString());
            });
  }
}
