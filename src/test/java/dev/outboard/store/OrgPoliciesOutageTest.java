package dev.outboard.store;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.sql.PreparedStatement;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.junit.jupiter.api.Test;

/**
 * The org's policy during a database outage (found by the fault campaign: a PostgreSQL restart
 * while a session's model thought made every call of that answer wait for an approval nobody was
 * going to give). The policy read last on this node is used; a node that never read it fails, so
 * its sessions' calls still fail closed.
 */
class OrgPoliciesOutageTest {

  @Test
  void theLastPolicyReadIsUsedWhileTheDatabaseIsAwayAndOnlyANodeThatNeverReadItFails()
      throws Exception {
    ExecutorService io = Executors.newFixedThreadPool(2);
    Database db =
        new Database(
            new StoreSettings(
                "jdbc:h2:mem:policies-" + UUID.randomUUID() + ";DB_CLOSE_DELAY=-1",
                "sa",
                "",
                Path.of("target"),
                false,
                2),
            io);
    try {
      Migrations.migrate(db.dataSource(), false);
      db.transact(
              c -> {
                try (PreparedStatement ps =
                    c.prepareStatement(
                        "INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)")) {
                  ps.setString(1, "acme");
                  ps.setString(2, "Acme");
                  ps.setObject(3, OffsetDateTime.now(ZoneOffset.UTC));
                  return ps.executeUpdate();
                }
              })
          .toCompletableFuture()
          .join();
      OrgPolicies policies = new OrgPolicies(db, Duration.ofMillis(1), Duration.ofMillis(20), 3);
      OrgPolicies neverRead = new OrgPolicies(db, Duration.ofMillis(1), Duration.ofMillis(20), 3);
      policies.set("acme", null, List.of("bash"), null).toCompletableFuture().join();
      assertThat(
              policies
                  .forSessions("acme")
                  .toCompletableFuture()
                  .join()
                  .approvals()
                  .requires("bash", null))
          .isTrue();
      Thread.sleep(5); // the cached copy is stale now

      db.close(); // the database is away
      OrgPolicies.ForSessions during = policies.forSessions("acme").toCompletableFuture().join();
      assertThat(during.approvals().requires("bash", null)).isTrue();
      assertThat(during.approvals().requires("read", null)).isFalse();
      assertThat(neverRead.forSessions("acme").toCompletableFuture().handle((p, e) -> e).join())
          .isInstanceOf(CompletionException.class);
    } finally {
      db.close();
      io.shutdownNow();
    }
  }
}
