/**
 * The vault: each org's named secrets (tokens for the APIs its agents call), encrypted at rest with
 * AES-256-GCM under a key from {@code OUTBOARD_VAULT_KEY} ({@link dev.outboard.vault.VaultKey}),
 * written and listed through the admin API ({@link dev.outboard.vault.VaultRoutes}) and read back
 * only in-process, at call time, through {@link dev.outboard.vault.Vault#resolve}.
 */
package dev.outboard.vault;
