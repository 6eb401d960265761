/**
 * Sandboxes as long-lived local shells, shared by the process-based sandbox providers (bubblewrap
 * and unisolated): {@link dev.outboard.sandbox.shell.ShellSandboxProvider}, which the two extend
 * with how their shell is started, and its parts: command framing with an end marker and output
 * cap, a helper that signals process groups, and the confinement of file paths to the workspace.
 */
package dev.outboard.sandbox.shell;
