package dev.outboard.session;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

class TranscriptsTest {
  @Test
  void appendLeavesTheOriginalAsItWasAndBranchesAreIndependent() {
    List<String> base = Transcripts.append(List.of("a", "b"), "c");
    List<String> left = Transcripts.append(base, "left");
    List<String> right = Transcripts.append(base, "right"); // not the tip: copies
    List<String> leftMore = Transcripts.append(left, "more");
    assertThat(base).containsExactly("a", "b", "c");
    assertThat(left).containsExactly("a", "b", "c", "left");
    assertThat(right).containsExactly("a", "b", "c", "right");
    assertThat(leftMore).containsExactly("a", "b", "c", "left", "more");
    assertThat(Transcripts.append(base, "left"))
        .as("the same item again shares the slot")
        .isEqualTo(left);
    assertThatThrownBy(() -> base.add("x")).isInstanceOf(UnsupportedOperationException.class);
    assertThatThrownBy(() -> base.get(3)).isInstanceOf(IndexOutOfBoundsException.class);
    assertThatThrownBy(() -> Transcripts.append(base, null))
        .isInstanceOf(NullPointerException.class);
  }

  @Test
  void aLongChainEqualsTheListItStandsFor() {
    List<Integer> list = List.of();
    List<Integer> expected = new ArrayList<>();
    List<List<Integer>> snapshots = new ArrayList<>();
    for (int i = 0; i < 10_000; i++) {
      list = Transcripts.append(list, i);
      expected.add(i);
      if (i % 1000 == 0) snapshots.add(list);
    }
    assertThat(list).isEqualTo(expected);
    assertThat(list.hashCode()).isEqualTo(expected.hashCode());
    for (int k = 0; k < snapshots.size(); k++)
      assertThat(snapshots.get(k)).isEqualTo(expected.subList(0, k * 1000 + 1));
  }

  @Test
  void threadsAppendingToOneListEachGetTheirOwn() throws Exception {
    List<Integer> base = Transcripts.append(List.of(), -1);
    ExecutorService pool = Executors.newFixedThreadPool(4);
    try {
      List<Future<List<Integer>>> results = new ArrayList<>();
      for (int t = 0; t < 8; t++) {
        int id = t;
        results.add(
            pool.submit(
                () -> {
                  List<Integer> mine = base;
                  for (int i = 0; i < 2_000; i++) mine = Transcripts.append(mine, id * 100_000 + i);
                  return mine;
                }));
      }
      for (int t = 0; t < 8; t++) {
        List<Integer> mine = results.get(t).get();
        assertThat(mine).hasSize(2_001).startsWith(-1);
        for (int i = 0; i < 2_000; i++) assertThat(mine.get(i + 1)).isEqualTo(t * 100_000 + i);
      }
    } finally {
      pool.shutdownNow();
    }
    assertThat(base).containsExactly(-1);
  }
}
