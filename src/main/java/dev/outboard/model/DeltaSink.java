package dev.outboard.model;

import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Hands a streamed call's {@link ModelDelta}s to the caller's consumer, on the SDK's thread and in
 * arrival order. Deltas are a live view only, so a consumer that throws must not fail the call: its
 * exception is swallowed and logged once (at debug) per call.
 */
final class DeltaSink {
  private static final Logger log = LoggerFactory.getLogger(DeltaSink.class);

  private final String provider;
  private final Consumer<ModelDelta> consumer;
  private boolean failed;

  DeltaSink(String provider, Consumer<ModelDelta> consumer) {
    this.provider = provider;
    this.consumer = consumer == null ? delta -> {} : consumer;
  }

  void accept(ModelDelta delta) {
    try {
      consumer.accept(delta);
    } catch (RuntimeException e) {
      if (!failed) {
        failed = true;
        log.debug(
            "{}: the delta consumer failed; the call goes on without it ({})",
            provider,
            Secrets.redact(e.toString()));
      }
    }
  }
}
