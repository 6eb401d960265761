package dev.outboard.model;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.outboard.Json;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;

/**
 * A delta consumer for streaming tests: keeps every delta in arrival order with the thread that
 * delivered it, and checks them against the answer they streamed.
 */
final class DeltaRecorder implements Consumer<ModelDelta> {
  private final List<ModelDelta> deltas = new CopyOnWriteArrayList<>();
  private final List<String> threads = new CopyOnWriteArrayList<>();

  @Override
  public void accept(ModelDelta delta) {
    deltas.add(delta);
    threads.add(Thread.currentThread().getName());
  }

  List<ModelDelta> all() {
    return List.copyOf(deltas);
  }

  List<String> threads() {
    return List.copyOf(threads);
  }

  List<ModelDelta.Text> texts(int index) {
    return deltas.stream()
        .filter(ModelDelta.Text.class::isInstance)
        .map(ModelDelta.Text.class::cast)
        .filter(d -> d.index() == index)
        .toList();
  }

  List<ModelDelta.ToolInput> toolInputs(int index) {
    return deltas.stream()
        .filter(ModelDelta.ToolInput.class::isInstance)
        .map(ModelDelta.ToolInput.class::cast)
        .filter(d -> d.index() == index)
        .toList();
  }

  String text(int index) {
    StringBuilder sb = new StringBuilder();
    texts(index).forEach(d -> sb.append(d.text()));
    return sb.toString();
  }

  String toolInput(int index) {
    StringBuilder sb = new StringBuilder();
    toolInputs(index).forEach(d -> sb.append(d.partialJson()));
    return sb.toString();
  }

  /**
   * The deltas rebuild {@code response} block by block: they come block after block (indexes never
   * go back), each index is a block of the same kind, text deltas add up to the block's text, tool
   * input deltas carry the block's id and name and add up to its input JSON; every block that has
   * content was streamed.
   */
  void assertRebuilds(ModelResponse response) {
    List<ModelDelta> all = all();
    for (int i = 1; i < all.size(); i++) {
      assertThat(all.get(i).index())
          .as("index of delta %d of %s", i, all)
          .isGreaterThanOrEqualTo(all.get(i - 1).index());
    }
    for (ModelDelta d : all) {
      assertThat(d.index()).as("index of %s", d).isBetween(0, response.content().size() - 1);
      Block block = response.content().get(d.index());
      if (d instanceof ModelDelta.Text) {
        assertThat(block).as("block of %s", d).isInstanceOf(Block.Text.class);
      } else {
        ModelDelta.ToolInput t = (ModelDelta.ToolInput) d;
        assertThat(block).as("block of %s", d).isInstanceOf(Block.ToolUse.class);
        assertThat(t.toolUseId()).isEqualTo(((Block.ToolUse) block).id());
        assertThat(t.name()).isEqualTo(((Block.ToolUse) block).name());
      }
    }
    for (int i = 0; i < response.content().size(); i++) {
      Block block = response.content().get(i);
      if (block instanceof Block.Text t) {
        assertThat(text(i)).as("text of block %d", i).isEqualTo(t.text());
      } else if (block instanceof Block.ToolUse u) {
        assertThat(toolInputs(i)).as("deltas of block %d", i).isNotEmpty();
        assertThat(parse(toolInput(i))).as("input of block %d", i).isEqualTo(u.input());
      }
    }
  }

  private static JsonNode parse(String json) {
    try {
      return Json.MAPPER.readTree(json);
    } catch (Exception e) {
      throw new AssertionError("tool input deltas do not add up to JSON: " + json, e);
    }
  }
}
