package dev.outboard.sandbox;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.typesafe.config.ConfigFactory;
import dev.outboard.JsonSerializable;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.serialization.Serialization;
import org.apache.pekko.serialization.SerializationExtension;
import org.apache.pekko.serialization.Serializer;
import org.apache.pekko.serialization.Serializers;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A sandbox state is spelled as API.md spells it, in JSON as in the API, and a state recorded as a
 * string before it was a type reads back as the same state.
 */
class SandboxStatusTest {
  /** A record that carries a state the way an event or a reply between nodes does. */
  public record Carrier(SandboxStatus state) implements JsonSerializable {}

  static ActorTestKit testKit;
  static Serialization serialization;

  @BeforeAll
  static void start() {
    testKit =
        ActorTestKit.create(
            "SandboxStatusTest",
            ConfigFactory.parseResources("unit-test.conf")
                .withFallback(ConfigFactory.load())
                .resolve());
    serialization = SerializationExtension.get(testKit.system());
  }

  @AfterAll
  static void stop() {
    testKit.shutdownTestKit();
  }

  @Test
  void theWireFormsAreTheApisStatesInOrder() {
    assertThat(Arrays.stream(SandboxStatus.values()).map(SandboxStatus::wire))
        .containsExactly(
            "none", "provisioning", "active", "suspended", "hibernated", "replacing", "destroyed");
    for (SandboxStatus s : SandboxStatus.values()) {
      assertThat(SandboxStatus.fromWire(s.wire())).isSameAs(s);
    }
  }

  @Test
  void anUnknownStateIsAClearError() {
    assertThatThrownBy(() -> SandboxStatus.fromWire("frozen"))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("'frozen'")
        .hasMessageContaining("none, provisioning, active");
  }

  @Test
  void aStateWrittenAsAStringReadsBackAsTheStateAndIsWrittenTheSame() {
    byte[] old = "{\"state\":\"suspended\"}".getBytes(StandardCharsets.UTF_8);
    Carrier sample = new Carrier(SandboxStatus.NONE);
    Serializer serializer = serialization.findSerializerFor(sample);
    String manifest = Serializers.manifestFor(serializer, sample);
    Object back = serialization.deserialize(old, serializer.identifier(), manifest).get();
    assertThat(back).isEqualTo(new Carrier(SandboxStatus.SUSPENDED));
    assertThat(new String(serialization.serialize(back).get(), StandardCharsets.UTF_8))
        .isEqualTo("{\"state\":\"suspended\"}");
  }
}
