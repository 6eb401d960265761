/**
 * Sandboxes as long-lived local shells, shared by the process-based sandbox providers (bubblewrap
 * and unisolated): {@link dev.outboard.sandbox.shell.ShellSandboxProvider}, which the two extend
 * with how their shell is started, and its parts: one sandbox's shell ({@code ShellProcess}) and
 * the loop it runs (resource {@code loop.sh}), command framing with an end marker and output cap,
 * the execution records that make a command run once, a helper that signals process groups, and the
 * file tools and tar archives of the workspace, confined to it.
 */
package dev.outboard.sandbox.shell;
