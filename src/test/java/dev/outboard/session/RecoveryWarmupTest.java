package dev.outboard.session;

import static org.assertj.core.api.Assertions.assertThat;

import dev.outboard.testing.ApiClient;
import dev.outboard.testing.InProcessNode;
import dev.outboard.testing.ScriptedSessions;
import dev.outboard.testing.TestPostgres;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The read-only replay a node does before it joins: on both databases it finds the recent sessions,
 * replays their events (and their shards' entity stores), and writes nothing.
 */
class RecoveryWarmupTest {

  @Test
  void replaysRecentSessionsOnH2AndWritesNothing() throws Exception {
    try (InProcessNode node = InProcessNode.start("", Map.of())) {
      replaysAndWritesNothing(node);
    }
  }

  @Test
  void replaysRecentSessionsOnPostgresAndWritesNothing() throws Exception {
    try (TestPostgres postgres = TestPostgres.create();
        InProcessNode node = InProcessNode.start(postgres.url(), Map.of())) {
      replaysAndWritesNothing(node);
    }
  }

  private static void replaysAndWritesNothing(InProcessNode node) throws Exception {
    ApiClient api = node.client(node.admin().createOrgWithKey("warm"));
    for (int i = 0; i < 3; i++) {
      String id =
          ScriptedSessions.create(
              api,
              ScriptedSessions.body(
                  "u" + i,
                  false,
                  List.of(
                      ScriptedSessions.tools(
                          "writing",
                          0,
                          ScriptedSessions.call(
                              "write", Map.of("path", "/session/a.md", "content", "x"))),
                      ScriptedSessions.say("done"))));
      ScriptedSessions.awaitStatus(api, id, "completed", Duration.ofSeconds(30));
    }
    long rowsBefore = journalRows(node);
    // 3 sessions of 6 events each, twice, and whatever the shards' entity stores hold
    long replayed =
        RecoveryWarmup.run(node.system(), node.database(), 8, 2, Duration.ofSeconds(20));
    assertThat(replayed).as("events replayed").isGreaterThanOrEqualTo(2 * 3 * 6);
    assertThat(journalRows(node)).as("journal rows after the warm-up").isEqualTo(rowsBefore);
    assertThat(RecoveryWarmup.run(node.system(), node.database(), 0, 2, Duration.ofSeconds(20)))
        .as("turned off")
        .isZero();
  }

  private static long journalRows(InProcessNode node) throws Exception {
    try (Connection c = node.database().dataSource().getConnection();
        Statement st = c.createStatement();
        ResultSet rs = st.executeQuery("SELECT COUNT(*) FROM \"event_journal\"")) {
      rs.next();
      return rs.getLong(1);
    }
  }
}
