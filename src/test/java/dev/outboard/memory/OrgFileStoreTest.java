package dev.outboard.memory;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.tuple;

import dev.outboard.memory.OrgFileOp.Delete;
import dev.outboard.memory.OrgFileOp.Edit;
import dev.outboard.memory.OrgFileOp.Origin;
import dev.outboard.memory.OrgFileOp.Outcome;
import dev.outboard.memory.OrgFileOp.Rename;
import dev.outboard.memory.OrgFileOp.Write;
import dev.outboard.memory.OrgFileStore.FileContent;
import dev.outboard.memory.OrgFileStore.FileInfo;
import dev.outboard.memory.OrgFileStore.Request;
import dev.outboard.memory.OrgFileStore.VersionInfo;
import dev.outboard.store.Database;
import dev.outboard.store.Migrations;
import dev.outboard.store.StoreSettings;
import dev.outboard.testing.FreshDatabase;
import dev.outboard.testing.TestPostgres;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * {@link OrgFileStore} against a fresh PostgreSQL database migrated as a node migrates it: the
 * semantics of {@link OrgFileStore#applyBatch} (versions, edits, preconditions, deletes, renames,
 * the size cap, the skills policy, (session, call) idempotency) and the reads. Each test works in
 * an org of its own.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class OrgFileStoreTest {
  private static final String MEMORY = OrgFileStore.MEMORY;
  private static final String SKILLS = OrgFileStore.SKILLS;
  private static final long CAP = 256 * 1024;
  private static final Origin ALICE = new Origin("alice", null, null);

  private final AtomicInteger orgs = new AtomicInteger();
  private final AtomicInteger sessions = new AtomicInteger();

  @RegisterExtension static final FreshDatabase postgres = FreshDatabase.create();

  private ExecutorService blocking;
  private Database db;
  private dev.outboard.store.OrgPolicies policies;
  private OrgFileStore store;

  @BeforeAll
  void migrate() {
    blocking = Executors.newFixedThreadPool(2);
    db = database(postgres.get());
    store = new OrgFileStore(db, CAP);
    policies = new dev.outboard.store.OrgPolicies(db, java.time.Duration.ZERO);
  }

  @AfterAll
  void closeStore() {
    if (db != null) db.close();
    if (blocking != null) blocking.shutdownNow();
  }

  // ------------------------------------------------------------------ versions

  @Test
  void aWriteCreatesVersionOneAndLaterWritesAndEditsIncrementIt() {
    String org = newOrg();
    Outcome first = one(org, write("notes.md", "first\n"), ALICE);
    assertThat(first.ok()).as(first.toString()).isTrue();
    assertThat(first.code()).isNull();
    assertThat(first.path()).isEqualTo("/memory/notes.md");
    assertThat(first.version()).isEqualTo(1);
    assertThat(first.created()).isTrue();
    assertThat(first.message()).contains("/memory/notes.md", "version 1", "6 bytes");

    Outcome second = one(org, write("notes.md", "second\n"), ALICE);
    assertThat(second.ok()).isTrue();
    assertThat(second.version()).isEqualTo(2);
    assertThat(second.created()).isFalse();

    Outcome edited =
        one(org, edit("notes.md", "second", "zweite: é", false), new Origin("bob", null, null));
    assertThat(edited.ok()).as(edited.toString()).isTrue();
    assertThat(edited.version()).isEqualTo(3);
    assertThat(edited.created()).isFalse();
    assertThat(edited.message()).startsWith("edited /memory/notes.md").contains("version 3");

    FileContent now = read(org, MEMORY, "notes.md").orElseThrow();
    assertThat(now.content()).isEqualTo("zweite: é\n");
    assertThat(now.info().version()).isEqualTo(3);
    assertThat(now.info().size()).as("UTF-8 bytes, not chars").isEqualTo(11);
    assertThat(now.info().updatedBy()).isEqualTo("bob");
    assertThat(now.info().path()).isEqualTo("notes.md");
    assertThat(now.info().updatedAt())
        .isBetween(Instant.now().minus(Duration.ofMinutes(1)), Instant.now().plusSeconds(1));
    assertThat(history(org, MEMORY, "notes.md"))
        .extracting(VersionInfo::version, VersionInfo::op, VersionInfo::updatedBy)
        .containsExactly(
            tuple(1L, "write", "alice"), tuple(2L, "write", "alice"), tuple(3L, "edit", "bob"));
  }

  @Test
  void theSamePathInTheOtherNamespaceOrInAnotherOrgIsAnotherFile() {
    String org = newOrg();
    String other = newOrg();
    one(org, write("a.md", "memory a"), ALICE);
    one(org, write("a.md", "memory a 2"), ALICE);
    Outcome skill = one(org, new Write(SKILLS, "a.md", "skills a", null), ALICE);
    Outcome foreign = one(other, write("a.md", "other org's a"), ALICE);

    assertThat(skill.version()).isEqualTo(1);
    assertThat(skill.path()).isEqualTo("/skills/a.md");
    assertThat(foreign.version()).isEqualTo(1);
    assertThat(read(org, MEMORY, "a.md").orElseThrow().content()).isEqualTo("memory a 2");
    assertThat(read(org, SKILLS, "a.md").orElseThrow().content()).isEqualTo("skills a");
    assertThat(read(other, MEMORY, "a.md").orElseThrow().content()).isEqualTo("other org's a");
    assertThat(read(other, SKILLS, "a.md")).isEmpty();
    assertThat(history(other, MEMORY, "a.md")).hasSize(1);
  }

  // ------------------------------------------------------------------ edit

  @Test
  void editsThatDoNotMatchExactlyOnceFailWithAClearMessageAndWriteNothing() {
    String org = newOrg();
    Outcome missing = one(org, edit("absent.md", "a", "b", false), ALICE);
    assertFailed(missing, "not_found", "/memory/absent.md");
    assertThat(read(org, MEMORY, "absent.md")).isEmpty();
    assertThat(history(org, MEMORY, "absent.md")).isEmpty();

    one(org, write("deploys.md", "deploy on friday\ndeploy with care\n"), ALICE);

    Outcome notFound = one(org, edit("deploys.md", "tuesday", "monday", false), ALICE);
    assertFailed(notFound, "edit_failed", "not found", "/memory/deploys.md");

    Outcome ambiguous = one(org, edit("deploys.md", "deploy", "ship", false), ALICE);
    assertFailed(ambiguous, "edit_failed", "2 times", "/memory/deploys.md", "replace_all");

    Outcome same = one(org, edit("deploys.md", "friday", "friday", false), ALICE);
    assertFailed(same, "edit_failed", "same");

    assertThat(read(org, MEMORY, "deploys.md").orElseThrow().info().version())
        .as("no failed edit made a version")
        .isEqualTo(1);
    assertThat(history(org, MEMORY, "deploys.md")).hasSize(1);

    Outcome all = one(org, edit("deploys.md", "deploy", "ship", true), ALICE);
    assertThat(all.ok()).as(all.toString()).isTrue();
    assertThat(all.version()).isEqualTo(2);
    Outcome unique = one(org, edit("deploys.md", "friday", "monday", false), ALICE);
    assertThat(unique.version()).isEqualTo(3);
    assertThat(read(org, MEMORY, "deploys.md").orElseThrow().content())
        .isEqualTo("ship on monday\nship with care\n");
  }

  // ------------------------------------------------------------------ preconditions

  @Test
  void ifVersionMismatchIsPreconditionFailedAndChangesNothing() {
    String org = newOrg();
    assertFailed(
        one(org, new Write(MEMORY, "p.md", "x", 1L), ALICE),
        "precondition_failed",
        "/memory/p.md",
        "version 0",
        "not 1");
    assertThat(read(org, MEMORY, "p.md")).isEmpty();

    Outcome created = one(org, new Write(MEMORY, "p.md", "v1", 0L), ALICE);
    assertThat(created.ok()).as("ifVersion 0 means: only if absent").isTrue();
    assertThat(created.version()).isEqualTo(1);
    assertFailed(
        one(org, new Write(MEMORY, "p.md", "again", 0L), ALICE),
        "precondition_failed",
        "version 1",
        "not 0");

    assertFailed(
        one(org, new Write(MEMORY, "p.md", "stale", 2L), ALICE),
        "precondition_failed",
        "is at version 1",
        "not 2");
    Outcome matched = one(org, new Write(MEMORY, "p.md", "v2", 1L), ALICE);
    assertThat(matched.ok()).isTrue();
    assertThat(matched.version()).isEqualTo(2);

    assertFailed(
        one(org, new Delete(MEMORY, "p.md", 1L), ALICE),
        "precondition_failed",
        "is at version 2",
        "not 1");
    assertThat(read(org, MEMORY, "p.md").orElseThrow().content()).isEqualTo("v2");
    assertThat(history(org, MEMORY, "p.md"))
        .extracting(VersionInfo::version)
        .containsExactly(1L, 2L);

    Outcome deleted = one(org, new Delete(MEMORY, "p.md", 2L), ALICE);
    assertThat(deleted.ok()).isTrue();
    assertThat(deleted.version()).isEqualTo(3);
    // Absent again: a create-only write works, and its version follows on.
    assertThat(one(org, new Write(MEMORY, "p.md", "v4", 0L), ALICE).version()).isEqualTo(4);
  }

  // ------------------------------------------------------------------ delete

  @Test
  void deleteThenWriteContinuesTheVersionCounterAndHistoryShowsTheDelete() {
    String org = newOrg();
    one(org, write("gone.md", "one"), ALICE);
    one(org, write("gone.md", "two"), ALICE);
    Outcome deleted = one(org, new Delete(MEMORY, "gone.md", null), new Origin("bob", null, null));
    assertThat(deleted.ok()).isTrue();
    assertThat(deleted.version()).isEqualTo(3);
    assertThat(deleted.message()).contains("deleted /memory/gone.md");

    assertThat(read(org, MEMORY, "gone.md")).isEmpty();
    assertThat(list(org, MEMORY, "")).isEmpty();
    assertThat(contents(org, MEMORY)).isEmpty();
    assertFailed(
        one(org, new Delete(MEMORY, "gone.md", null), ALICE), "not_found", "/memory/gone.md");
    assertFailed(
        one(org, edit("gone.md", "two", "three", false), ALICE), "not_found", "/memory/gone.md");

    Outcome again = one(org, write("gone.md", "back"), ALICE);
    assertThat(again.version()).as("no version number is used twice").isEqualTo(4);
    assertThat(again.created()).isTrue();
    assertThat(read(org, MEMORY, "gone.md").orElseThrow().info().version()).isEqualTo(4);
    assertThat(history(org, MEMORY, "gone.md"))
        .extracting(VersionInfo::version, VersionInfo::op, VersionInfo::updatedBy)
        .containsExactly(
            tuple(1L, "write", "alice"),
            tuple(2L, "write", "alice"),
            tuple(3L, "delete", "bob"),
            tuple(4L, "write", "alice"));
  }

  // ------------------------------------------------------------------ rename

  @Test
  void renameMovesTheContentAndRecordsAVersionOnBothPaths() {
    String org = newOrg();
    one(org, write("old/name.md", "content\n"), ALICE);
    one(org, edit("old/name.md", "content", "contents", false), ALICE);
    Outcome renamed =
        one(org, new Rename(MEMORY, "old/name.md", "new/name.md"), new Origin("bob", null, null));
    assertThat(renamed.ok()).as(renamed.toString()).isTrue();
    assertThat(renamed.path()).isEqualTo("/memory/new/name.md");
    assertThat(renamed.version()).isEqualTo(1);
    assertThat(renamed.message()).contains("/memory/old/name.md", "/memory/new/name.md");

    assertThat(read(org, MEMORY, "old/name.md")).isEmpty();
    FileContent moved = read(org, MEMORY, "new/name.md").orElseThrow();
    assertThat(moved.content()).isEqualTo("contents\n");
    assertThat(moved.info().updatedBy()).isEqualTo("bob");
    assertThat(history(org, MEMORY, "old/name.md"))
        .extracting(VersionInfo::version, VersionInfo::op)
        .containsExactly(tuple(1L, "write"), tuple(2L, "edit"), tuple(3L, "rename"));
    assertThat(history(org, MEMORY, "new/name.md"))
        .extracting(VersionInfo::version, VersionInfo::op, VersionInfo::updatedBy)
        .containsExactly(tuple(1L, "rename", "bob"));
    assertThat(list(org, MEMORY, "")).extracting(FileInfo::path).containsExactly("new/name.md");

    one(org, write("other.md", "x"), ALICE);
    assertFailed(
        one(org, new Rename(MEMORY, "other.md", "new/name.md"), ALICE),
        "exists",
        "/memory/new/name.md");
    assertFailed(
        one(org, new Rename(MEMORY, "old/name.md", "elsewhere.md"), ALICE),
        "not_found",
        "/memory/old/name.md");
    assertThat(read(org, MEMORY, "other.md").orElseThrow().content()).isEqualTo("x");
    assertThat(read(org, MEMORY, "new/name.md").orElseThrow().content()).isEqualTo("contents\n");

    // Renaming back onto the deleted path continues its counter.
    Outcome back = one(org, new Rename(MEMORY, "new/name.md", "old/name.md"), ALICE);
    assertThat(back.version()).isEqualTo(4);
    assertThat(read(org, MEMORY, "old/name.md").orElseThrow().content()).isEqualTo("contents\n");
  }

  // ------------------------------------------------------------------ size cap

  @Test
  void contentOverTheCapIsTooLargeCountedInUtf8Bytes() {
    String org = newOrg();
    OrgFileStore small = new OrgFileStore(db, 100);
    assertThat(small.maxFileBytes()).isEqualTo(100);

    Outcome tooBig =
        small
            .applyBatch(org, List.of(new Request(write("big.md", "x".repeat(101)), ALICE)))
            .toCompletableFuture()
            .join()
            .get(0);
    assertFailed(tooBig, "file_too_large", "/memory/big.md", "101 bytes", "100 bytes");
    assertThat(read(org, MEMORY, "big.md")).isEmpty();
    assertThat(history(org, MEMORY, "big.md")).isEmpty();

    assertThat(oneIn(small, org, write("big.md", "x".repeat(99) + "z")).version()).isEqualTo(1);
    assertThat(oneIn(small, org, write("utf8.md", "é".repeat(50))).ok()).isTrue();
    assertFailed(
        oneIn(small, org, write("utf8.md", "é".repeat(51))), "file_too_large", "102 bytes");

    // An edit that would grow a file over the cap fails too, and leaves it as it was.
    assertFailed(
        oneIn(small, org, edit("big.md", "z", "zz", false)), "file_too_large", "101 bytes");
    assertThat(read(org, MEMORY, "big.md").orElseThrow().content()).isEqualTo("x".repeat(99) + "z");
    assertThat(history(org, MEMORY, "big.md")).hasSize(1);
  }

  // ------------------------------------------------------------------ skills policy

  @Test
  void agentsMayNotWriteSkillsUnlessTheOrgAllowsItButPeopleMay() {
    String org = newOrg();
    assertThat(policies.get(org).toCompletableFuture().join().orElseThrow().agentsMayWriteSkills())
        .isFalse();

    Origin agent = new Origin("alice", newSession(), "call-1");
    Outcome refused =
        one(org, new Write(SKILLS, "deploy/SKILL.md", "---\nname: deploy\n---\n", null), agent);
    assertFailed(refused, "forbidden", "may not write /skills");
    Outcome refusedEdit =
        one(
            org,
            new Edit(SKILLS, "deploy/SKILL.md", "a", "b", false),
            new Origin("alice", agent.sessionId(), "call-2"));
    assertFailed(refusedEdit, "forbidden", "may not write /skills");
    assertThat(read(org, SKILLS, "deploy/SKILL.md")).isEmpty();
    assertThat(history(org, SKILLS, "deploy/SKILL.md")).isEmpty();

    // The same agent may write /memory, and a person may write /skills.
    assertThat(
            one(org, write("ok.md", "fine"), new Origin("alice", agent.sessionId(), "call-3")).ok())
        .isTrue();
    Outcome person =
        one(
            org,
            new Write(SKILLS, "deploy/SKILL.md", "---\nname: deploy\n---\nby a person\n", null),
            ALICE);
    assertThat(person.ok()).as(person.toString()).isTrue();
    assertThat(person.version()).isEqualTo(1);

    assertThat(policies.set(org, true, null, null).toCompletableFuture().join().isPresent())
        .isTrue();
    assertThat(policies.get(org).toCompletableFuture().join().orElseThrow().agentsMayWriteSkills())
        .isTrue();
    Outcome allowed =
        one(
            org,
            new Edit(SKILLS, "deploy/SKILL.md", "by a person", "by an agent", false),
            new Origin("alice", agent.sessionId(), "call-4"));
    assertThat(allowed.ok()).as(allowed.toString()).isTrue();
    assertThat(allowed.version()).isEqualTo(2);
    assertThat(history(org, SKILLS, "deploy/SKILL.md"))
        .extracting(VersionInfo::session)
        .containsExactly(null, agent.sessionId());

    assertThat(policies.set(org, false, null, null).toCompletableFuture().join().isPresent())
        .isTrue();
    assertFailed(
        one(
            org,
            new Delete(SKILLS, "deploy/SKILL.md", null),
            new Origin("alice", agent.sessionId(), "call-5")),
        "forbidden",
        "may not write /skills");
    assertThat(read(org, SKILLS, "deploy/SKILL.md")).isPresent();
    assertThat(
            policies.set("no-such-org", true, null, null).toCompletableFuture().join().isPresent())
        .isFalse();
  }

  // ------------------------------------------------------------------ idempotency

  @Test
  void theSameCallTwiceInOneBatchGetsOneOutcomeAndWritesOnce() throws SQLException {
    String org = newOrg();
    String session = newSession();
    Origin call = new Origin("alice", session, "call-1");
    List<Outcome> outcomes =
        batch(
            org,
            new Request(write("idem.md", "first"), call),
            // A replay carries the same op; even a different one must not be applied under a used
            // (session, call).
            new Request(write("idem.md", "second"), call),
            new Request(write("idem.md", "third"), new Origin("alice", session, "call-2")));
    assertThat(outcomes).hasSize(3);
    assertThat(outcomes.get(0).ok()).isTrue();
    assertThat(outcomes.get(0).version()).isEqualTo(1);
    assertThat(outcomes.get(1)).isEqualTo(outcomes.get(0));
    assertThat(outcomes.get(2).version()).isEqualTo(2);
    assertThat(history(org, MEMORY, "idem.md"))
        .extracting(VersionInfo::version)
        .containsExactly(1L, 2L);
    assertThat(read(org, MEMORY, "idem.md").orElseThrow().content()).isEqualTo("third");
    assertThat(storedOps(session)).isEqualTo(2);
  }

  @Test
  void theSameCallInALaterBatchGetsTheFirstOutcomeAgainAndWritesNothing() throws SQLException {
    String org = newOrg();
    String session = newSession();
    Origin call = new Origin("alice", session, "call-1");
    Outcome first = one(org, write("idem.md", "first"), call);
    one(org, write("idem.md", "meanwhile"), ALICE);

    Outcome replay = one(org, write("idem.md", "first"), call);
    assertThat(replay).isEqualTo(first);
    assertThat(replay.version()).isEqualTo(1);
    assertThat(read(org, MEMORY, "idem.md").orElseThrow().content()).isEqualTo("meanwhile");
    assertThat(history(org, MEMORY, "idem.md")).hasSize(2);

    // A failed outcome is remembered just the same: the replay does not succeed late.
    Origin failing = new Origin("alice", session, "call-2");
    Outcome failed = one(org, edit("later.md", "a", "b", false), failing);
    assertFailed(failed, "not_found", "/memory/later.md");
    one(org, write("later.md", "a"), ALICE);
    assertThat(one(org, edit("later.md", "a", "b", false), failing)).isEqualTo(failed);
    assertThat(read(org, MEMORY, "later.md").orElseThrow().content()).isEqualTo("a");

    // The key is the pair: the same call id in another session is another call; without a call id
    // nothing is remembered.
    assertThat(
            one(org, write("idem.md", "other session"), new Origin("alice", newSession(), "call-1"))
                .version())
        .isEqualTo(3);
    Origin noCall = new Origin("alice", session, null);
    assertThat(one(org, write("idem.md", "no call id"), noCall).version()).isEqualTo(4);
    assertThat(one(org, write("idem.md", "no call id"), noCall).version()).isEqualTo(5);
    assertThat(storedOps(session)).isEqualTo(2);
  }

  // ------------------------------------------------------------------ group commit

  @Test
  void aBatchOfManyOpsOnOneFileYieldsConsecutiveVersionsInOneTransaction() {
    String org = newOrg();
    one(org, write("log.md", "start\n"), ALICE);
    String session = newSession();
    List<Request> requests = new ArrayList<>();
    for (int i = 1; i <= 40; i++) {
      OrgFileOp op =
          i % 2 == 0
              ? write("log.md", "line " + i + "\n")
              : edit("log.md", "\n", "\n" + i + "\n", false);
      requests.add(new Request(op, new Origin("alice", session, "call-" + i)));
    }
    requests.add(new Request(write("other.md", "interleaved"), ALICE));
    requests.add(new Request(write("log.md", "last\n"), ALICE));
    List<Outcome> outcomes = store.applyBatch(org, requests).toCompletableFuture().join();

    assertThat(outcomes).allSatisfy(o -> assertThat(o.ok()).as(o.toString()).isTrue());
    List<Long> logVersions = new ArrayList<>();
    for (int i = 0; i < outcomes.size(); i++)
      if (i != 40) logVersions.add(outcomes.get(i).version());
    assertThat(logVersions).isEqualTo(range(2, 42));
    assertThat(outcomes.get(40).version()).isEqualTo(1);

    List<VersionInfo> history = history(org, MEMORY, "log.md");
    assertThat(history).extracting(VersionInfo::version).isEqualTo(range(1, 42));
    // One transaction: every version of the batch carries the batch's one commit time.
    assertThat(history.subList(1, history.size()).stream().map(VersionInfo::updatedAt).distinct())
        .hasSize(1);
    FileContent log = read(org, MEMORY, "log.md").orElseThrow();
    assertThat(log.content()).isEqualTo("last\n");
    assertThat(log.info().version()).isEqualTo(42);
    assertThat(log.info().updatedAt()).isEqualTo(history.get(history.size() - 1).updatedAt());
  }

  @Test
  void aBatchSeesItsOwnEarlierWrites() {
    String org = newOrg();
    List<Outcome> outcomes =
        batch(
            org,
            new Request(write("a.md", "alpha"), ALICE),
            new Request(edit("a.md", "alpha", "beta", false), ALICE),
            new Request(new Write(MEMORY, "a.md", "gamma", 2L), ALICE),
            new Request(new Rename(MEMORY, "a.md", "b.md"), ALICE),
            new Request(edit("a.md", "gamma", "delta", false), ALICE),
            new Request(edit("b.md", "gamma", "delta", false), ALICE));
    assertThat(outcomes)
        .extracting(Outcome::ok)
        .containsExactly(true, true, true, true, false, true);
    assertThat(outcomes).extracting(Outcome::version).containsExactly(1L, 2L, 3L, 1L, 0L, 2L);
    assertThat(outcomes.get(4).code()).isEqualTo("not_found");
    assertThat(read(org, MEMORY, "a.md")).isEmpty();
    assertThat(read(org, MEMORY, "b.md").orElseThrow().content()).isEqualTo("delta");
    assertThat(history(org, MEMORY, "a.md"))
        .extracting(VersionInfo::op)
        .containsExactly("write", "edit", "write", "rename");
  }

  // ------------------------------------------------------------------ reads

  @Test
  void listByPrefixReturnsOnlyCurrentFilesBelowItInPathOrder() {
    String org = newOrg();
    for (String path :
        List.of(
            "team-y/c.md",
            "team-x/b.md",
            "team-xa.md",
            "team-x/a.md",
            "team-x/sub/d.md",
            "top.md",
            "team-x/gone.md")) {
      one(org, write(path, "content of " + path), new Origin("alice", null, null));
    }
    one(org, new Delete(MEMORY, "team-x/gone.md", null), ALICE);
    one(org, write("team-x/b.md", "b, version 2"), new Origin("bob", null, null));
    one(org, new Write(SKILLS, "team-x/skill.md", "not memory", null), ALICE);

    List<FileInfo> teamX = list(org, MEMORY, "team-x/");
    assertThat(teamX)
        .extracting(FileInfo::path)
        .containsExactly("team-x/a.md", "team-x/b.md", "team-x/sub/d.md");
    FileInfo b = teamX.get(1);
    assertThat(b.version()).isEqualTo(2);
    assertThat(b.size()).isEqualTo("b, version 2".length());
    assertThat(b.updatedBy()).isEqualTo("bob");
    assertThat(b.updatedAt()).isNotNull();

    assertThat(list(org, MEMORY, ""))
        .extracting(FileInfo::path)
        .containsExactly(
            "team-x/a.md", "team-x/b.md", "team-x/sub/d.md", "team-xa.md", "team-y/c.md", "top.md");
    assertThat(list(org, MEMORY, "team-x"))
        .extracting(FileInfo::path)
        .containsExactly("team-x/a.md", "team-x/b.md", "team-x/sub/d.md", "team-xa.md");
    assertThat(list(org, MEMORY, "team-z/")).isEmpty();
    // Characters that are wildcards in SQL are taken literally.
    one(org, write("under_score/a.md", "a"), ALICE);
    one(org, write("underXscore/b.md", "b"), ALICE);
    one(org, write("100%/c.md", "c"), ALICE);
    one(org, write("100x/d.md", "d"), ALICE);
    assertThat(list(org, MEMORY, "under_score/"))
        .extracting(FileInfo::path)
        .containsExactly("under_score/a.md");
    assertThat(list(org, MEMORY, "100%")).extracting(FileInfo::path).containsExactly("100%/c.md");
    assertThat(list(org, SKILLS, "team-x/"))
        .extracting(FileInfo::path)
        .containsExactly("team-x/skill.md");
    assertThat(list(newOrg(), MEMORY, "")).isEmpty();
  }

  @Test
  void historyIsOldestFirstWithWhoAndWhichSession() {
    String org = newOrg();
    String session = newSession();
    one(org, write("h.md", "1"), ALICE);
    one(org, write("h.md", "2"), new Origin("bob", session, "call-7"));
    one(org, edit("h.md", "2", "3", false), new Origin("carol", null, null));
    List<VersionInfo> history = history(org, MEMORY, "h.md");
    assertThat(history)
        .extracting(
            VersionInfo::version, VersionInfo::op, VersionInfo::updatedBy, VersionInfo::session)
        .containsExactly(
            tuple(1L, "write", "alice", null),
            tuple(2L, "write", "bob", session),
            tuple(3L, "edit", "carol", null));
    assertThat(history).extracting(VersionInfo::updatedAt).isSorted();
    assertThat(history(org, MEMORY, "never.md")).isEmpty();
  }

  @Test
  void contentsAreKeyedByFullVirtualPath() {
    String org = newOrg();
    one(org, write("a.md", "A"), ALICE);
    one(org, write("dir/b.md", "B"), ALICE);
    one(org, write("deleted.md", "D"), ALICE);
    one(org, new Delete(MEMORY, "deleted.md", null), ALICE);
    one(org, new Write(SKILLS, "deploy/SKILL.md", "S", null), ALICE);
    one(newOrg(), write("foreign.md", "F"), ALICE);

    assertThat(contents(org, MEMORY))
        .containsExactly(Map.entry("/memory/a.md", "A"), Map.entry("/memory/dir/b.md", "B"));
    assertThat(contents(org, SKILLS)).containsExactly(Map.entry("/skills/deploy/SKILL.md", "S"));
  }

  /**
   * BUG (found by this test): {@code list} relies on the database ordering paths the way {@link
   * String#startsWith} does ({@code path >= prefix ORDER BY path}, stop at the first non-match).
   * Under any collation but "C" (the default of many PostgreSQL installations, e.g. en_US.UTF-8 or
   * ICU) that is not so: "team/a.md" sorts before "Team/b.md", and a listing of "Team/" stops at it
   * and returns nothing. Here the column gets an ICU collation, as a database created with
   * LOCALE_PROVIDER icu would give it. Enable once list() no longer leaves ordering and prefix
   * comparison to the database (e.g. {@code path LIKE ? ESCAPE '!'}, filter and sort in Java).
   */
  @Test
  void listByPrefixDoesNotDependOnTheDatabaseCollation() throws SQLException {
    try (TestPostgres other = TestPostgres.create();
        Database otherDb = database(other)) {
      try (Connection c = other.connection();
          Statement st = c.createStatement()) {
        try (ResultSet rs =
            st.executeQuery("SELECT 1 FROM pg_collation WHERE collname = 'en-US-x-icu'")) {
          Assumptions.assumeTrue(rs.next(), "this PostgreSQL has no ICU collations");
        }
        st.execute(
            "ALTER TABLE org_files ALTER COLUMN path TYPE VARCHAR(1024) COLLATE \"en-US-x-icu\"");
      }
      OrgFileStore icu = new OrgFileStore(otherDb, CAP);
      String org = "icu";
      otherDb.transactNow(c -> insertOrg(c, org));
      for (String path :
          List.of(
              "team/a.md", "Team/b.md", "Team/c.md", "team-x/a.md", "team-xa.md", "team-x/b.md")) {
        oneIn(icu, org, write(path, path));
      }
      assertThat(icu.list(org, MEMORY, "Team/").toCompletableFuture().join())
          .extracting(FileInfo::path)
          .containsExactly("Team/b.md", "Team/c.md");
      assertThat(icu.list(org, MEMORY, "team-x/").toCompletableFuture().join())
          .extracting(FileInfo::path)
          .containsExactly("team-x/a.md", "team-x/b.md");
      assertThat(icu.list(org, MEMORY, "").toCompletableFuture().join())
          .extracting(FileInfo::path)
          .containsExactly(
              "Team/b.md", "Team/c.md", "team-x/a.md", "team-x/b.md", "team-xa.md", "team/a.md");
    }
  }

  // ------------------------------------------------------------------ helpers

  private Database database(TestPostgres pg) {
    Database database =
        new Database(
            new StoreSettings(pg.url(), pg.user(), "", Path.of("target"), false, 2), blocking);
    Migrations.migrate(database.dataSource(), true);
    return database;
  }

  private String newOrg() {
    String org = "org-" + orgs.incrementAndGet();
    db.transactNow(c -> insertOrg(c, org));
    return org;
  }

  private static int insertOrg(Connection c, String org) throws SQLException {
    try (PreparedStatement ps =
        c.prepareStatement("INSERT INTO orgs (id, name, created_at) VALUES (?, ?, now())")) {
      ps.setString(1, org);
      ps.setString(2, "Org " + org);
      return ps.executeUpdate();
    }
  }

  private String newSession() {
    return "s_test" + sessions.incrementAndGet() + "_" + System.nanoTime();
  }

  private static Write write(String path, String content) {
    return new Write(MEMORY, path, content, null);
  }

  private static Edit edit(String path, String oldString, String newString, boolean replaceAll) {
    return new Edit(MEMORY, path, oldString, newString, replaceAll);
  }

  private Outcome one(String org, OrgFileOp op, Origin origin) {
    List<Outcome> outcomes = batch(org, new Request(op, origin));
    assertThat(outcomes).hasSize(1);
    return outcomes.get(0);
  }

  private static Outcome oneIn(OrgFileStore s, String org, OrgFileOp op) {
    return s.applyBatch(org, List.of(new Request(op, ALICE))).toCompletableFuture().join().get(0);
  }

  private List<Outcome> batch(String org, Request... requests) {
    return store.applyBatch(org, List.of(requests)).toCompletableFuture().join();
  }

  private Optional<FileContent> read(String org, String ns, String path) {
    return store.read(org, ns, path).toCompletableFuture().join();
  }

  private List<FileInfo> list(String org, String ns, String prefix) {
    return store.list(org, ns, prefix).toCompletableFuture().join();
  }

  private List<VersionInfo> history(String org, String ns, String path) {
    return store.history(org, ns, path).toCompletableFuture().join();
  }

  private TreeMap<String, String> contents(String org, String ns) {
    return store.contents(org, ns).toCompletableFuture().join();
  }

  private int storedOps(String session) throws SQLException {
    try (Connection c = postgres.connection();
        PreparedStatement ps =
            c.prepareStatement("SELECT count(*) FROM org_file_ops WHERE session_id = ?")) {
      ps.setString(1, session);
      try (ResultSet rs = ps.executeQuery()) {
        rs.next();
        return rs.getInt(1);
      }
    }
  }

  private static void assertFailed(Outcome o, String code, String... messageMentions) {
    assertThat(o.ok()).as("expected %s: %s", code, o).isFalse();
    assertThat(o.code()).as(o.toString()).isEqualTo(code);
    assertThat(o.version()).as("a failed op has no version: " + o).isZero();
    assertThat(o.path()).isNull();
    assertThat(o.message()).as(o.toString()).isNotBlank().contains(messageMentions);
  }

  private static List<Long> range(long fromInclusive, long toInclusive) {
    List<Long> out = new ArrayList<>();
    for (long v = fromInclusive; v <= toInclusive; v++) out.add(v);
    return out;
  }
}
