package dev.outboard.vfs;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.EnumSet;
import java.util.Set;
import org.junit.jupiter.api.Test;

class PathRouterTest {

  private final PathRouter sessionOnly = new PathRouter(EnumSet.of(Namespace.SESSION));

  @Test
  void pathsBelowAMountedNamespaceRouteToIt() {
    PathRouter all = new PathRouter(EnumSet.allOf(Namespace.class));
    assertThat(all.route(VirtualPath.parse("/session/notes.md"))).isEqualTo(Namespace.SESSION);
    assertThat(all.route(VirtualPath.parse("/session"))).isEqualTo(Namespace.SESSION);
    assertThat(all.route(VirtualPath.parse("/workspace/src/Main.java")))
        .isEqualTo(Namespace.WORKSPACE);
    assertThat(all.route(VirtualPath.parse("/memory/team/deploys.md"))).isEqualTo(Namespace.MEMORY);
    assertThat(all.route(VirtualPath.parse("/skills/x/SKILL.md"))).isEqualTo(Namespace.SKILLS);
  }

  @Test
  void routingHappensAfterNormalisation() {
    assertThat(sessionOnly.route(VirtualPath.parse("//session/./a//b")))
        .isEqualTo(Namespace.SESSION);
  }

  @Test
  void anUnmountedNamespaceIsRefusedNamingThePathAndWhatIsMounted() {
    assertThatThrownBy(() -> sessionOnly.route(VirtualPath.parse("/workspace/x.txt")))
        .isInstanceOf(VirtualPath.InvalidPathException.class)
        .hasMessage(
            "path \"/workspace/x.txt\" is not in a mounted namespace; this agent's filesystem has"
                + " /session");
  }

  @Test
  void unknownAndUnmountedNamespacesGiveTheSameError() {
    String unknown = message(() -> sessionOnly.route(VirtualPath.parse("/etc/passwd")));
    String unmounted = message(() -> sessionOnly.route(VirtualPath.parse("/memory/passwd")));
    assertThat(unknown).contains("\"/etc/passwd\"");
    assertThat(unmounted).contains("\"/memory/passwd\"");
    assertThat(unknown.replace("/etc/passwd", "<p>"))
        .isEqualTo(unmounted.replace("/memory/passwd", "<p>"));
  }

  @Test
  void theRootAndNearMissNamesAreNotANamespace() {
    assertThatThrownBy(() -> sessionOnly.route(VirtualPath.ROOT))
        .hasMessageContaining("path \"/\" is not in a mounted namespace");
    assertThatThrownBy(() -> sessionOnly.route(VirtualPath.parse("/Session/x")))
        .hasMessageContaining("\"/Session/x\"");
    assertThatThrownBy(() -> sessionOnly.route(VirtualPath.parse("/sessions/x")))
        .hasMessageContaining("\"/sessions/x\"");
  }

  @Test
  void theErrorListsEveryMountedRootSorted() {
    PathRouter router =
        new PathRouter(EnumSet.of(Namespace.WORKSPACE, Namespace.SESSION, Namespace.MEMORY));
    assertThat(router.notMounted(VirtualPath.parse("/skills/a")))
        .endsWith("this agent's filesystem has /memory, /session, /workspace");
  }

  @Test
  void mountedIsADefensiveCopy() {
    Set<Namespace> given = EnumSet.of(Namespace.SESSION);
    PathRouter router = new PathRouter(given);
    given.add(Namespace.WORKSPACE);
    router.mounted().add(Namespace.MEMORY);
    assertThat(router.mounted()).containsExactly(Namespace.SESSION);
    assertThat(router.isMounted(Namespace.WORKSPACE)).isFalse();
    assertThat(router.isMounted(Namespace.SESSION)).isTrue();
  }

  private static String message(Runnable r) {
    try {
      r.run();
    } catch (VirtualPath.InvalidPathException e) {
      return e.getMessage();
    }
    throw new AssertionError("expected an InvalidPathException");
  }
}
