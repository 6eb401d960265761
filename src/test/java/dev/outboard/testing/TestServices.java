package dev.outboard.testing;

import dev.outboard.memory.OrgFiles;
import dev.outboard.model.ModelClients;
import dev.outboard.sandbox.SandboxProvider;
import dev.outboard.sandbox.SandboxSettings;
import dev.outboard.session.SessionObserver;
import dev.outboard.session.SessionServices;
import dev.outboard.session.SessionSettings;
import dev.outboard.vfs.PathRouter;

/** A session's {@link SessionServices} for a test: what it needs, the rest absent. */
public final class TestServices {

  private final ModelClients models;
  private final PathRouter router;
  private final SessionObserver observer;
  private final SessionSettings settings;
  private OrgFiles orgFiles;
  private SandboxProvider sandboxes;
  private SandboxSettings sandboxSettings;

  private TestServices(
      ModelClients models, PathRouter router, SessionObserver observer, SessionSettings settings) {
    this.models = models;
    this.router = router;
    this.observer = observer;
    this.settings = settings;
  }

  /** Services without org files, sandboxes, snapshots or org policies. */
  public static SessionServices of(
      ModelClients models, PathRouter router, SessionObserver observer, SessionSettings settings) {
    return builder(models, router, observer, settings).build();
  }

  public static TestServices builder(
      ModelClients models, PathRouter router, SessionObserver observer, SessionSettings settings) {
    return new TestServices(models, router, observer, settings);
  }

  public TestServices orgFiles(OrgFiles orgFiles) {
    this.orgFiles = orgFiles;
    return this;
  }

  public TestServices sandboxes(SandboxProvider sandboxes, SandboxSettings sandboxSettings) {
    this.sandboxes = sandboxes;
    this.sandboxSettings = sandboxSettings;
    return this;
  }

  public SessionServices build() {
    return new SessionServices(
        models, router, observer, settings, orgFiles, sandboxes, sandboxSettings, null, null, null);
  }
}
