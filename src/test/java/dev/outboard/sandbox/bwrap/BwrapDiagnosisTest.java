package dev.outboard.sandbox.bwrap;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.outboard.sandbox.SandboxProvider.Limits;
import dev.outboard.testing.Sandboxes;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Function;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Why bubblewrap cannot start sandboxes: the kernel setting at fault, from fake /proc/sys values,
 * always with bwrap's own stderr; and that stderr reaching both the start-up probe and the error of
 * a sandbox that fails to start (through a stand-in {@code bwrap} that fails as a real one does).
 */
class BwrapDiagnosisTest {
  static final String NO_USERNS =
      "bwrap: No permissions to creating new namespace, likely because the kernel does not allow"
          + " non-privileged user namespaces. On e.g. debian this can be enabled with 'sysctl"
          + " kernel.unprivileged_userns_clone=1'.";
  static final String UID_MAP = "bwrap: setting up uid map: Permission denied";
  static final Limits LIMITS =
      new Limits(256L << 20, 64, Duration.ofSeconds(10), 64 * 1024, Duration.ofSeconds(10));

  @TempDir Path tmp;
  final ExecutorService executor = Executors.newCachedThreadPool();

  @AfterEach
  void stop() {
    executor.shutdownNow();
  }

  static Function<String, Optional<String>> sysctl(Map<String, String> values) {
    return name -> Optional.ofNullable(values.get(name));
  }

  @Test
  void debianStyleSwitchOffIsNamed() {
    String message =
        BwrapDiagnosis.explain(
            NO_USERNS,
            sysctl(
                Map.of(
                    "kernel.unprivileged_userns_clone", "0", "user.max_user_namespaces", "15000")));
    assertThat(message)
        .contains("kernel.unprivileged_userns_clone = 0")
        .contains("sysctl -w kernel.unprivileged_userns_clone=1")
        .doesNotContain("max_user_namespaces = ")
        .contains("bwrap said: " + NO_USERNS);
  }

  @Test
  void zeroUserNamespacesIsNamed() {
    String message =
        BwrapDiagnosis.explain(
            UID_MAP,
            sysctl(
                Map.of("kernel.unprivileged_userns_clone", "1", "user.max_user_namespaces", "0")));
    assertThat(message)
        .contains("user.max_user_namespaces = 0")
        .doesNotContain("unprivileged_userns_clone = ")
        .endsWith("bwrap said: " + UID_MAP);
  }

  @Test
  void ubuntusAppArmorRestrictionIsNamed() {
    String message =
        BwrapDiagnosis.explain(
            UID_MAP,
            sysctl(
                Map.of(
                    "user.max_user_namespaces",
                    "63000",
                    "kernel.apparmor_restrict_unprivileged_userns",
                    "1")));
    assertThat(message)
        .contains("kernel.apparmor_restrict_unprivileged_userns = 1")
        .contains("AppArmor")
        .endsWith("bwrap said: " + UID_MAP);
  }

  @Test
  void withNoSettingAtFaultTheContainerIsSuspectedAndTheValuesShown() {
    String message =
        BwrapDiagnosis.explain(UID_MAP, sysctl(Map.of("user.max_user_namespaces", "63000")));
    assertThat(message)
        .contains("user.max_user_namespaces = 63000")
        .contains("kernel.unprivileged_userns_clone = absent")
        .contains("seccomp or AppArmor profile")
        .endsWith("bwrap said: " + UID_MAP);
  }

  @Test
  void aMaskedProcIsExplainedAndLongStderrIsCapped() {
    String proc = "bwrap: Can't mount proc on /newroot/proc: Operation not permitted";
    assertThat(BwrapDiagnosis.explain(proc, sysctl(Map.of())))
        .contains("cannot mount /proc")
        .endsWith(proc);
    String noisy = "x".repeat(10_000);
    String message = BwrapDiagnosis.explain(noisy, sysctl(Map.of()));
    assertThat(message)
        .contains("bwrap could not start a trivial sandbox")
        .contains("more characters]");
    assertThat(message.length()).isLessThan(BwrapDiagnosis.MAX_STDERR + 200);
  }

  @Test
  void aSandboxWhoseBwrapFailsToStartSaysWhatBwrapPrinted() throws Exception {
    try (var provider =
        new BwrapSandboxProvider(
            tmp.resolve("sandboxes"), executor, Optional.of(fakeBwrap(UID_MAP)))) {
      assertThatThrownBy(() -> provider.create(LIMITS, null).toCompletableFuture().join())
          .isInstanceOf(CompletionException.class)
          .cause()
          .hasMessageStartingWith("bwrap could not start the sandbox: ")
          .hasMessageContaining(UID_MAP);
      assertThat(tmp.resolve("sandboxes"))
          .isDirectoryNotContaining(p -> p.getFileName().toString().startsWith("sbx-"));
    }
  }

  @Test
  void theProbeQuotesBwrapAndCleansUp() throws Exception {
    try (var provider =
        new BwrapSandboxProvider(
            tmp.resolve("sandboxes"), executor, Optional.of(fakeBwrap(NO_USERNS)))) {
      BwrapSandboxProvider.Probe probe = provider.probe();
      assertThat(probe.usable()).isFalse();
      assertThat(probe.detail()).contains("bwrap said: " + NO_USERNS).contains("(exit 1)");
      assertThat(tmp.resolve("sandboxes").resolve(".probe")).doesNotExist();
    }
  }

  @Test
  void theProbeOfAMissingBwrapNamesThePackage() {
    try (var provider =
        new BwrapSandboxProvider(tmp.resolve("sandboxes"), executor, Optional.empty())) {
      assertThat(provider.probe())
          .isEqualTo(new BwrapSandboxProvider.Probe(false, BwrapSandboxProvider.NOT_INSTALLED));
    }
  }

  @Test
  void theProbeOfARealBwrapStartsASandbox() throws Exception {
    Sandboxes.requireBwrap(BwrapDiagnosisTest.class);
    Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rwx--x--x"));
    try (var provider = new BwrapSandboxProvider(tmp.resolve("sandboxes"), executor)) {
      BwrapSandboxProvider.Probe probe = provider.probe();
      assertThat(probe.usable()).as(probe.detail()).isTrue();
      assertThat(probe.detail()).contains("bwrap").contains("a trivial sandbox started in");
    }
  }

  /** A stand-in for bwrap that fails at once as a real one does: {@code stderr} and exit 1. */
  private Path fakeBwrap(String stderr) throws Exception {
    // Under root the provider starts bwrap as uid 65534: it must reach and run the script.
    Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rwx--x--x"));
    Path bin = Files.createDirectories(tmp.resolve("bin"));
    Files.setPosixFilePermissions(bin, PosixFilePermissions.fromString("rwxr-xr-x"));
    Path script = bin.resolve("bwrap");
    Files.writeString(
        script, "#!/bin/sh\nprintf '%s\\n' '" + stderr.replace("'", "'\\''") + "' >&2\nexit 1\n");
    Files.setPosixFilePermissions(script, PosixFilePermissions.fromString("rwxr-xr-x"));
    return script;
  }
}
