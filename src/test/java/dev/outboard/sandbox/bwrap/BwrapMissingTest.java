package dev.outboard.sandbox.bwrap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.outboard.sandbox.SandboxProvider.Limits;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.CompletionException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Without bubblewrap, create refuses with a message naming the package to install. */
class BwrapMissingTest {
  @Test
  void createNamesThePackageToInstall(@TempDir Path root) {
    try (var provider = new BwrapSandboxProvider(root, Runnable::run, Optional.empty())) {
      assertFalse(provider.available());
      Limits limits = new Limits(1 << 28, 64, Duration.ofSeconds(10), 1024, Duration.ofSeconds(10));
      CompletionException e =
          assertThrows(
              CompletionException.class,
              () -> provider.create(limits, null).toCompletableFuture().join());
      assertEquals(
          "bubblewrap (bwrap) is not installed; install the Debian/Ubuntu package 'bubblewrap'",
          e.getCause().getMessage());
    }
  }
}
