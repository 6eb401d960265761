package dev.outboard.vfs;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class VirtualPathTest {

  @Test
  void repeatedSlashesAndDotSegmentsAreNormalisedAway() {
    VirtualPath p = VirtualPath.parse("//session//notes/./plan.md/");
    assertThat(p.segments()).containsExactly("session", "notes", "plan.md");
    assertThat(p).hasToString("/session/notes/plan.md");
    assertThat(p).isEqualTo(VirtualPath.parse("/session/notes/plan.md"));
  }

  @Test
  void slashAloneAndDotsAloneAreTheRoot() {
    assertThat(VirtualPath.parse("/").isRoot()).isTrue();
    assertThat(VirtualPath.parse("/././/").isRoot()).isTrue();
    assertThat(VirtualPath.parse("/")).isEqualTo(VirtualPath.ROOT).hasToString("/");
    assertThat(VirtualPath.ROOT.top()).isEmpty();
  }

  @Test
  void namesThatMerelyContainDotsAreOrdinaryNames() {
    assertThat(VirtualPath.parse("/session/a..b/...").segments())
        .containsExactly("session", "a..b", "...");
    assertThat(VirtualPath.parse("/session/.hidden").segments())
        .containsExactly("session", ".hidden");
    assertThat(VirtualPath.parse("/session/100%25 sure %41").segments())
        .containsExactly("session", "100%25 sure %41");
  }

  @Test
  void topStartsWithAndChildDescribeTheTree() {
    VirtualPath p = VirtualPath.parse("/session/notes/plan.md");
    assertThat(p.top()).isEqualTo("session");
    assertThat(p.startsWith(VirtualPath.parse("/session"))).isTrue();
    assertThat(p.startsWith(VirtualPath.parse("/session/notes/plan.md"))).isTrue();
    assertThat(p.startsWith(VirtualPath.parse("/session/note"))).isFalse();
    assertThat(p.startsWith(VirtualPath.ROOT)).isTrue();
    assertThat(VirtualPath.parse("/session").child("x.md"))
        .isEqualTo(VirtualPath.parse("/session/x.md"));
  }

  @Test
  void segmentsAreImmutable() {
    VirtualPath p = VirtualPath.parse("/session/a");
    assertThatThrownBy(() -> p.segments().add("b"))
        .isInstanceOf(UnsupportedOperationException.class);
    java.util.ArrayList<String> source = new java.util.ArrayList<>(List.of("session"));
    VirtualPath q = new VirtualPath(source);
    source.add("changed");
    assertThat(q).hasToString("/session");
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "/session/../etc/passwd",
        "/..",
        "/session/a/..",
        "/workspace/../session/x",
        "/session/./../x"
      })
  void dotDotIsRefusedEvenWhenItWouldStayInside(String raw) {
    assertThatThrownBy(() -> VirtualPath.parse(raw))
        .isInstanceOf(VirtualPath.InvalidPathException.class)
        .hasMessageContaining("\"" + raw + "\"")
        .hasMessageContaining("'..'");
  }

  @Test
  void nulByteIsRefusedAndShownEscaped() {
    assertThatThrownBy(() -> VirtualPath.parse("/session/a\0.md"))
        .isInstanceOf(VirtualPath.InvalidPathException.class)
        .hasMessageContaining("NUL")
        .hasMessageContaining("/session/a\\0.md")
        .hasMessageNotContaining("\0");
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "/session/a\nb",
        "/session/a\tb",
        "/session/\u001b[31m",
        "/session/a\u007fb",
        "/session/\rx"
      })
  void controlCharactersAreRefused(String raw) {
    assertThatThrownBy(() -> VirtualPath.parse(raw))
        .isInstanceOf(VirtualPath.InvalidPathException.class)
        .hasMessageContaining("control character")
        .hasMessageStartingWith("path \"/session/");
  }

  @Test
  void backslashIsRefused() {
    assertThatThrownBy(() -> VirtualPath.parse("/session\\..\\x"))
        .isInstanceOf(VirtualPath.InvalidPathException.class)
        .hasMessageContaining("backslash")
        .hasMessageContaining("/session\\..\\x");
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "/session/%2e%2e/x",
        "/session/%2E%2E/x",
        "/session%2fx",
        "/session/a%2Fb",
        "/session/a%5cb",
        "/session/a%00"
      })
  void percentEncodedDotsSeparatorsAndNulAreRefused(String raw) {
    assertThatThrownBy(() -> VirtualPath.parse(raw))
        .isInstanceOf(VirtualPath.InvalidPathException.class)
        .hasMessageContaining("percent-encoded")
        .hasMessageContaining(raw);
  }

  @ParameterizedTest
  @ValueSource(strings = {"session/notes.md", "./session/x", "../x", "notes.md", "~/x"})
  void relativePathsAreRefusedWithAHintAtTheNamespaces(String raw) {
    assertThatThrownBy(() -> VirtualPath.parse(raw))
        .isInstanceOf(VirtualPath.InvalidPathException.class)
        .hasMessageContaining("\"" + raw + "\"")
        .hasMessageContaining("not absolute")
        .hasMessageContaining("/session");
  }

  @Test
  void emptyOrMissingPathIsRefused() {
    assertThatThrownBy(() -> VirtualPath.parse(""))
        .isInstanceOf(VirtualPath.InvalidPathException.class)
        .hasMessage("path is empty");
    assertThatThrownBy(() -> VirtualPath.parse(null))
        .isInstanceOf(VirtualPath.InvalidPathException.class)
        .hasMessage("path is empty");
  }

  @Test
  void pathsUpTo4096CharactersAreAcceptedAndLongerOnesRefusedWithAShortenedEcho() {
    String ok = longPath(VirtualPath.MAX_LENGTH);
    assertThat(ok).hasSize(4096);
    assertThat(VirtualPath.parse(ok).toString()).isEqualTo(ok);

    String tooLong = longPath(VirtualPath.MAX_LENGTH + 1);
    assertThatThrownBy(() -> VirtualPath.parse(tooLong))
        .isInstanceOf(VirtualPath.InvalidPathException.class)
        .hasMessageContaining("longer than 4096 characters")
        .hasMessageContaining(tooLong.substring(0, 120) + "...")
        .satisfies(e -> assertThat(e.getMessage().length()).isLessThan(300));
  }

  @Test
  void namesUpTo255CharactersAreAcceptedAndLongerOnesRefused() {
    String name255 = "n".repeat(255);
    assertThat(VirtualPath.parse("/session/" + name255).segments())
        .containsExactly("session", name255);
    assertThatThrownBy(() -> VirtualPath.parse("/session/" + "n".repeat(256) + "/x"))
        .isInstanceOf(VirtualPath.InvalidPathException.class)
        .hasMessageContaining("name longer than 255 characters")
        .hasMessageContaining("/session/nnnn");
  }

  /** An absolute path of exactly {@code length} characters made of names of 200 characters. */
  private static String longPath(int length) {
    StringBuilder sb = new StringBuilder("/session");
    while (sb.length() < length) {
      sb.append('/');
      int room = length - sb.length();
      if (room == 0) {
        sb.setLength(sb.length() - 1);
        sb.append('x');
        break;
      }
      sb.append("a".repeat(Math.min(200, room)));
    }
    return sb.toString();
  }
}
