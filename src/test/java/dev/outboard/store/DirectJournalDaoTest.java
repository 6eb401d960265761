package dev.outboard.store;

import static org.assertj.core.api.Assertions.assertThat;

import com.typesafe.config.ConfigFactory;
import dev.outboard.testing.PostgresNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.LongStream;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.persistence.AtomicWrite;
import org.apache.pekko.persistence.JournalProtocol;
import org.apache.pekko.persistence.Persistence;
import org.apache.pekko.persistence.PersistentEnvelope;
import org.apache.pekko.persistence.PersistentRepr;
import org.apache.pekko.persistence.jdbc.query.javadsl.JdbcReadJournal;
import org.apache.pekko.persistence.query.EventEnvelope;
import org.apache.pekko.persistence.query.PersistenceQuery;
import org.apache.pekko.stream.javadsl.Sink;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.extension.RegisterExtension;
import scala.jdk.javaapi.CollectionConverters;

/**
 * The journal's write path (DirectJournalDao) on PostgreSQL, through the journal plugin's own
 * protocol: writes that wait together go in one statement, and a write that cannot be made (its
 * sequence number is taken) fails alone, not the writes it was batched with.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class DirectJournalDaoTest {
  private static final Duration WAIT = Duration.ofSeconds(20);

  /** One writer, so that what arrives while it writes waits and goes together. */
  @RegisterExtension
  static final PostgresNode node = PostgresNode.create().with("jdbc-journal.direct-writers", 1);

  /** With the default four writers, taking writes from one queue. */
  @RegisterExtension static final PostgresNode node4 = PostgresNode.create();

  private static AtomicWrite write(String pid, long from, long to) {
    List<PersistentRepr> reprs = new ArrayList<>();
    for (long seq = from; seq <= to; seq++) {
      reprs.add(
          PersistentRepr.apply(
              "event " + seq + " of " + pid,
              seq,
              pid,
              "",
              false,
              ActorRef.noSender(),
              "test-writer"));
    }
    return AtomicWrite.apply(CollectionConverters.asScala(reprs).toList());
  }

  private static JournalProtocol.WriteMessages messages(ActorRef replyTo, AtomicWrite write) {
    List<PersistentEnvelope> list = List.of(write);
    return new JournalProtocol.WriteMessages(
        CollectionConverters.asScala(list).toList(), replyTo, 1);
  }

  private List<Long> recorded(String pid) {
    return recorded(node, pid);
  }

  private static List<Long> recorded(PostgresNode node, String pid) {
    JdbcReadJournal journal =
        PersistenceQuery.get(Adapter.toClassic(node.system()))
            .getReadJournalFor(JdbcReadJournal.class, JdbcReadJournal.Identifier());
    return journal
        .currentEventsByPersistenceId(pid, 0, Long.MAX_VALUE)
        .map(EventEnvelope::sequenceNr)
        .runWith(Sink.seq(), node.system())
        .toCompletableFuture()
        .join();
  }

  @Test
  void aWriteWhoseSequenceNumberIsTakenFailsAloneAndTheWritesBatchedWithItLand() {
    ActorRef journal =
        Persistence.get(Adapter.toClassic(node.system()))
            .journalFor("jdbc-journal", ConfigFactory.empty());
    TestProbe<Object> taken = TestProbe.create(node.system());
    journal.tell(
        messages(Adapter.toClassic(taken.ref()), write("dao|taken", 1, 1)), ActorRef.noSender());
    taken.expectMessageClass(JournalProtocol.WriteMessagesSuccessful$.class, WAIT);

    // A long write keeps the one writer busy while the next three arrive and wait together.
    TestProbe<Object> big = TestProbe.create(node.system());
    TestProbe<Object> before = TestProbe.create(node.system());
    TestProbe<Object> conflict = TestProbe.create(node.system());
    TestProbe<Object> after = TestProbe.create(node.system());
    journal.tell(
        messages(Adapter.toClassic(big.ref()), write("dao|big", 1, 900)), ActorRef.noSender());
    journal.tell(
        messages(Adapter.toClassic(before.ref()), write("dao|before", 1, 3)), ActorRef.noSender());
    journal.tell(
        messages(Adapter.toClassic(conflict.ref()), write("dao|taken", 1, 2)), ActorRef.noSender());
    journal.tell(
        messages(Adapter.toClassic(after.ref()), write("dao|after", 1, 2)), ActorRef.noSender());

    big.expectMessageClass(JournalProtocol.WriteMessagesSuccessful$.class, WAIT);
    before.expectMessageClass(JournalProtocol.WriteMessagesSuccessful$.class, WAIT);
    conflict.expectMessageClass(JournalProtocol.WriteMessagesFailed.class, WAIT);
    after.expectMessageClass(JournalProtocol.WriteMessagesSuccessful$.class, WAIT);

    assertThat(recorded("dao|big")).isEqualTo(LongStream.rangeClosed(1, 900).boxed().toList());
    assertThat(recorded("dao|before")).containsExactly(1L, 2L, 3L);
    assertThat(recorded("dao|after")).containsExactly(1L, 2L);
    assertThat(recorded("dao|taken"))
        .as("the failed write left nothing, not even its new event 2")
        .containsExactly(1L);
  }

  @Test
  void fourWritersUnderConcurrentWritesLoseNothingAndAnswerEveryWrite() throws Exception {
    ActorRef journal =
        Persistence.get(Adapter.toClassic(node4.system()))
            .journalFor("jdbc-journal", ConfigFactory.empty());
    int writers = 48;
    int writes = 60;
    java.util.concurrent.ExecutorService pool =
        java.util.concurrent.Executors.newFixedThreadPool(writers);
    try {
      List<java.util.concurrent.Future<?>> done = new ArrayList<>();
      for (int w = 0; w < writers; w++) {
        String pid = "dao4|" + w;
        done.add(
            pool.submit(
                () -> {
                  // Like an entity: one write at a time, each of one to three events.
                  TestProbe<Object> probe = TestProbe.create(node4.system());
                  long seq = 1;
                  for (int i = 0; i < writes; i++) {
                    long to = seq + (i % 3);
                    journal.tell(
                        messages(Adapter.toClassic(probe.ref()), write(pid, seq, to)),
                        ActorRef.noSender());
                    probe.expectMessageClass(JournalProtocol.WriteMessagesSuccessful$.class, WAIT);
                    for (long n = seq; n <= to; n++)
                      probe.expectMessageClass(JournalProtocol.WriteMessageSuccess.class, WAIT);
                    seq = to + 1;
                  }
                  return null;
                }));
      }
      for (java.util.concurrent.Future<?> f : done) f.get();
    } finally {
      pool.shutdownNow();
    }
    long perWriter = 0;
    for (int i = 0; i < writes; i++) perWriter += 1 + (i % 3);
    for (int w = 0; w < writers; w++) {
      assertThat(recorded(node4, "dao4|" + w))
          .isEqualTo(LongStream.rangeClosed(1, perWriter).boxed().toList());
    }
  }
}
