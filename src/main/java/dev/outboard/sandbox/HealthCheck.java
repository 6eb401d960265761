package dev.outboard.sandbox;

import static dev.outboard.Futures.cause;

import dev.outboard.sandbox.SandboxProvider.SandboxGoneException;

/**
 * What a failed idle health check ({@link SandboxProvider#state}) of a {@link SandboxHandle}'s
 * sandbox means, logged once: a sandbox the provider confirms gone is replaced at once, unless it
 * was hibernated (it had no processes to lose: the next call replaces it); a host that cannot be
 * reached is not a confirmed loss, and the check tries again later.
 */
final class HealthCheck {
  private static final org.slf4j.Logger log = org.slf4j.LoggerFactory.getLogger(HealthCheck.class);

  enum Verdict {
    REPLACE_NOW,
    REPLACE_ON_NEXT_CALL,
    TRY_AGAIN_LATER
  }

  private HealthCheck() {}

  /**
   * The verdict on sandbox {@code id}, last in {@code status}, whose check failed with {@code
   * error}.
   */
  static Verdict failed(String id, SandboxStatus status, Throwable error) {
    Throwable cause = cause(error);
    boolean gone = cause instanceof SandboxGoneException g && g.confirmed();
    if (gone && status == SandboxStatus.HIBERNATED) {
      log.info(
          "health check: hibernated sandbox {} is gone ({}); the next call replaces it",
          id,
          cause.getMessage());
      return Verdict.REPLACE_ON_NEXT_CALL;
    } else if (gone) {
      log.warn("health check: sandbox {} is gone ({}); starting a new one", id, cause.getMessage());
      return Verdict.REPLACE_NOW;
    }
    log.info("health check of sandbox {} failed, trying again later: {}", id, cause.getMessage());
    return Verdict.TRY_AGAIN_LATER;
  }
}
