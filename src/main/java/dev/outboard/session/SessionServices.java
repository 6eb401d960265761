package dev.outboard.session;

import dev.outboard.mcp.McpToolbox;
import dev.outboard.memory.OrgFiles;
import dev.outboard.model.ModelClients;
import dev.outboard.sandbox.SandboxProvider;
import dev.outboard.sandbox.SandboxSettings;
import dev.outboard.sandbox.SnapshotStore;
import dev.outboard.store.OrgPolicies;
import dev.outboard.vfs.Namespace;
import dev.outboard.vfs.PathRouter;

/**
 * What a session needs from its node; {@code orgFiles} is null where no org store is mounted,
 * {@code policies} where orgs have no approval policies (only the session's own apply), {@code mcp}
 * where the node offers no MCP servers' tools.
 */
public record SessionServices(
    ModelClients models,
    PathRouter router,
    SessionObserver observer,
    SessionSettings settings,
    OrgFiles orgFiles,
    SandboxProvider sandboxes,
    SandboxSettings sandboxSettings,
    SnapshotStore snapshots,
    OrgPolicies policies,
    McpToolbox mcp) {
  /** True when {@code /workspace} and {@code bash} have a sandbox behind them. */
  public boolean hasSandboxes() {
    return sandboxes != null && router.isMounted(Namespace.WORKSPACE);
  }

  /** The state as the API shows it, with the sandbox's isolation when it has none. */
  Summary summary(SessionState state) {
    return sandboxes == null
        ? state.summary()
        : state.summary().withSandboxIsolation(sandboxes.isolation());
  }
}
