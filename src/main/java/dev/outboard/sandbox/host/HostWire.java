package dev.outboard.sandbox.host;

import dev.outboard.sandbox.SandboxProvider;
import dev.outboard.sandbox.SandboxProvider.Entry;
import dev.outboard.sandbox.SandboxProvider.ExecResult;
import dev.outboard.sandbox.SandboxProvider.Limits;
import java.time.Duration;
import java.util.Base64;
import java.util.List;

/**
 * The JSON bodies of the sandbox host's API ({@link SandboxHostServer}), shared with {@code
 * RemoteSandboxProvider}: each record is one body, and its conversions to and from the {@link
 * SandboxProvider} types (durations as milliseconds or nanoseconds, snapshots as base64).
 */
public final class HostWire {
  private HostWire() {}

  public record LimitsJson(
      long memoryBytes,
      int maxProcesses,
      Long cpuTimeMs,
      long maxOutputBytes,
      Long defaultTimeoutMs) {
    public static LimitsJson of(Limits l) {
      return new LimitsJson(
          l.memoryBytes(),
          l.maxProcesses(),
          millis(l.cpuTime()),
          l.maxOutputBytes(),
          millis(l.defaultTimeout()));
    }

    public Limits toLimits() {
      return new Limits(
          memoryBytes,
          maxProcesses,
          duration(cpuTimeMs),
          maxOutputBytes,
          duration(defaultTimeoutMs));
    }
  }

  public record CreateRequest(LimitsJson limits, String snapshot) {}

  public record Created(String id) {}

  public record ExecRequest(String executionId, String command, Long timeoutMs) {}

  public record ExecResultJson(
      int exitCode,
      String output,
      boolean truncated,
      boolean timedOut,
      long tookNanos,
      Long firstOutputNanos) {
    public static ExecResultJson of(ExecResult r) {
      return new ExecResultJson(
          r.exitCode(),
          r.output(),
          r.truncated(),
          r.timedOut(),
          r.took() == null ? 0 : r.took().toNanos(),
          r.firstOutput() == null ? null : r.firstOutput().toNanos());
    }

    /** The host's own first-output time; the harness's is longer by the HTTP round trip. */
    public ExecResult toResult() {
      return new ExecResult(
          exitCode,
          output,
          truncated,
          timedOut,
          Duration.ofNanos(tookNanos),
          firstOutputNanos == null ? null : Duration.ofNanos(firstOutputNanos));
    }
  }

  public record FileContent(String content) {}

  public record Listing(List<Entry> entries) {}

  /** A snapshot as base64 ({@code null}: none). */
  public record Snapshot(String snapshot) {
    static Snapshot of(byte[] bytes) {
      return new Snapshot(bytes == null ? null : Base64.getEncoder().encodeToString(bytes));
    }
  }

  /** The provider's state, by its name ({@code "ACTIVE"}, ...). */
  public record StateJson(SandboxProvider.State state) {}

  /** {@code GET /v1/sandboxes}: every sandbox the host holds, with when it was last used. */
  public record HeldJson(List<HeldSandbox> sandboxes) {
    static HeldJson of(List<SandboxProvider.Held> held) {
      return new HeldJson(
          held.stream().map(h -> new HeldSandbox(h.id(), h.lastUsed().toString())).toList());
    }
  }

  public record HeldSandbox(String id, String lastUsed) {}

  private static Long millis(Duration d) {
    return d == null ? null : d.toMillis();
  }

  static Duration duration(Long millis) {
    return millis == null ? null : Duration.ofMillis(millis);
  }
}
