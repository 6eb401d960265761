/**
 * The shell protocol shared by the process-based sandbox providers (bubblewrap and unisolated):
 * command framing with an end marker and output cap, a helper that signals process groups, and
 * the confinement of file paths to the workspace.
 */
package dev.outboard.sandbox.shell;
