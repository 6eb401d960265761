package dev.outboard.session;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import dev.outboard.Json;
import dev.outboard.tools.ToolCall;
import dev.outboard.tools.ToolCatalog;
import java.time.Duration;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

class SessionFilesTest {

  private static final SessionFiles.Limits LIMITS =
      new SessionFiles.Limits(1 << 20, 8 << 20, 256 * 1024);

  private static ToolCall call(String tool, String input) {
    try {
      return ToolCatalog.parse(tool, Json.MAPPER.readTree(input.replace('\'', '"')));
    } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
      throw new IllegalArgumentException(input, e);
    }
  }

  private static SessionFiles files(String... pathsAndContents) {
    TreeMap<String, String> m = new TreeMap<>();
    for (int i = 0; i < pathsAndContents.length; i += 2)
      m.put(pathsAndContents[i], pathsAndContents[i + 1]);
    return new SessionFiles(m);
  }

  private static SessionFiles.Outcome ok(
      SessionFiles files, ToolCall call, SessionFiles.Limits limits) {
    SessionFiles.Outcome o = files.execute(call, limits);
    assertThat(o.isError()).as("error: %s", o.content()).isFalse();
    return o;
  }

  private static SessionFiles.Outcome ok(SessionFiles files, ToolCall call) {
    return ok(files, call, LIMITS);
  }

  private static String error(SessionFiles files, ToolCall call, SessionFiles.Limits limits) {
    SessionFiles.Outcome o = files.execute(call, limits);
    assertThat(o.isError()).as("expected an error, got: %s", o.content()).isTrue();
    assertThat(o.change()).isNull();
    return o.content();
  }

  private static String error(SessionFiles files, ToolCall call) {
    return error(files, call, LIMITS);
  }

  // ------------------------------------------------------------------ read

  @Test
  void readNumbersLinesLikeCatDashN() {
    SessionFiles f = files("/session/a.md", "alpha\nbeta\ngamma\n");
    assertThat(ok(f, call("read", "{'path': '/session/a.md'}")).content())
        .isEqualTo("     1\talpha\n     2\tbeta\n     3\tgamma\n");
    assertThat(
            ok(files("/session/b", "no newline\nat end"), call("read", "{'path': '/session/b'}"))
                .content())
        .isEqualTo("     1\tno newline\n     2\tat end\n");
  }

  @Test
  void readHonoursOffsetAndLimitAndSaysHowToReadOn() {
    SessionFiles f = files("/session/a.md", "1\n2\n3\n4\n5\n");
    assertThat(ok(f, call("read", "{'path': '/session/a.md', 'offset': 2, 'limit': 2}")).content())
        .isEqualTo("     2\t2\n     3\t3\n[2 more lines; read on with offset=4]\n");
    assertThat(ok(f, call("read", "{'path': '/session/a.md', 'offset': 5}")).content())
        .isEqualTo("     5\t5\n");
    assertThat(
            ok(f, call("read", "{'path': '/session/a.md', 'offset': 4, 'limit': 100}")).content())
        .isEqualTo("     4\t4\n     5\t5\n");
  }

  @Test
  void readPastTheEndIsAnErrorNamingTheLength() {
    SessionFiles f = files("/session/a.md", "1\n2\n3\n");
    assertThat(error(f, call("read", "{'path': '/session/a.md', 'offset': 4}")))
        .isEqualTo("offset 4 is past the end of /session/a.md (3 lines)");
  }

  @Test
  void readReturnsAtMost2000LinesByDefault() {
    String content =
        IntStream.rangeClosed(1, 2001)
            .mapToObj(i -> "l" + i)
            .collect(Collectors.joining("\n", "", "\n"));
    String out =
        ok(files("/session/big", content), call("read", "{'path': '/session/big'}")).content();
    assertThat(out)
        .contains("  2000\tl2000\n")
        .doesNotContain("l2001")
        .endsWith("[1 more lines; read on with offset=2001]\n");
  }

  @Test
  void readTruncatesAtTheOutputCapAndSaysWhereToGoOn() {
    SessionFiles f = files("/session/a.md", "aaaaaaaaaa\nbbbbbbbbbb\ncccccccccc\n");
    SessionFiles.Limits tiny = new SessionFiles.Limits(1 << 20, 8 << 20, 40);
    String out = ok(f, call("read", "{'path': '/session/a.md'}"), tiny).content();
    assertThat(out)
        .isEqualTo(
            "     1\taaaaaaaaaa\n"
                + "     2\tbbbbbbbbbb\n"
                + "[output truncated at 40 characters; read on with offset=3]\n");
  }

  @Test
  void aLineLongerThanTheOutputCapIsShownCutAndReadingOnMovesPastIt() {
    SessionFiles f = files("/session/min.json", "short\n" + "x".repeat(100) + "\nlast\n");
    SessionFiles.Limits tiny = new SessionFiles.Limits(1 << 20, 8 << 20, 40);
    String first = ok(f, call("read", "{'path': '/session/min.json'}"), tiny).content();
    assertThat(first).startsWith("     1\tshort\n").contains("read on with offset=2");
    // Following that advice must make progress: line 2 alone is longer than the cap.
    String second =
        ok(f, call("read", "{'path': '/session/min.json', 'offset': 2}"), tiny).content();
    assertThat(second).as("the long line is shown, cut").startsWith("     2\txxxxxxxxxx");
    assertThat(second)
        .as("reading on moves past the long line")
        .doesNotContain("offset=2")
        .contains("offset=3");
  }

  @Test
  void readOfAnEmptyFileSaysSo() {
    assertThat(ok(files("/session/e", ""), call("read", "{'path': '/session/e'}")).content())
        .isEqualTo("(/session/e is empty)");
  }

  @Test
  void readOfAMissingFileOrADirectoryIsAnError() {
    SessionFiles f = files("/session/dir/a.md", "x");
    assertThat(error(f, call("read", "{'path': '/session/nope.md'}")))
        .isEqualTo("file not found: /session/nope.md");
    assertThat(error(f, call("read", "{'path': '/session/dir'}")))
        .isEqualTo("/session/dir is a directory; use ls");
    assertThat(error(f, call("read", "{'path': '/session'}")))
        .isEqualTo("/session is a directory; use ls");
  }

  // ------------------------------------------------------------------ write

  @Test
  void writeReturnsTheChangeAndLeavesTheFilesUntouched() {
    SessionFiles f = SessionFiles.EMPTY;
    SessionFiles.Outcome o =
        ok(f, call("write", "{'path': '/session//notes/./plan.md', 'content': 'héllo'}"));
    assertThat(o.content()).isEqualTo("wrote /session/notes/plan.md (6 bytes)");
    assertThat(o.change()).isEqualTo(new SessionFiles.Change("/session/notes/plan.md", "héllo"));
    assertThat(f.files()).isEmpty();
    SessionFiles after = f.apply(o.change());
    assertThat(after.files()).containsExactly(Map.entry("/session/notes/plan.md", "héllo"));
    assertThat(ok(after, call("read", "{'path': '/session/notes/plan.md'}")).content())
        .isEqualTo("     1\théllo\n");
    assertThat(after.apply(new SessionFiles.Change("/session/notes/plan.md", null)).files())
        .isEmpty();
  }

  @Test
  void writeOverAFileReplacesIt() {
    SessionFiles f = files("/session/a", "old");
    SessionFiles.Outcome o = ok(f, call("write", "{'path': '/session/a', 'content': 'new'}"));
    assertThat(f.apply(o.change()).files()).containsExactly(Map.entry("/session/a", "new"));
  }

  @Test
  void writeRefusesAFileOverTheSizeCapCountingUtf8Bytes() {
    SessionFiles.Limits limits = new SessionFiles.Limits(10, 100, 1000);
    ok(
        SessionFiles.EMPTY,
        call("write", "{'path': '/session/a', 'content': '0123456789'}"),
        limits);
    // six characters, twelve bytes
    assertThat(
            error(
                SessionFiles.EMPTY,
                call("write", "{'path': '/session/a', 'content': 'éééééé'}"),
                limits))
        .isEqualTo("content of /session/a is 12 bytes; session files are limited to 10 bytes");
  }

  @Test
  void writeRefusesToExceedTheTotalCapButCountsAnOverwrittenFileOnce() {
    SessionFiles.Limits limits = new SessionFiles.Limits(10, 25, 1000);
    SessionFiles f = files("/session/a", "0123456789", "/session/b", "0123456789");
    assertThat(f.totalBytes()).isEqualTo(20);
    assertThat(error(f, call("write", "{'path': '/session/c', 'content': '012345'}"), limits))
        .isEqualTo("session files would total 26 bytes; the limit is 25 bytes");
    ok(f, call("write", "{'path': '/session/c', 'content': '01234'}"), limits);
    ok(f, call("write", "{'path': '/session/a', 'content': '0123456789'}"), limits);
  }

  @Test
  void writeRefusesDirectoriesAndFilesInTheWay() {
    SessionFiles f = files("/session/dir/x", "1", "/session/file", "2");
    assertThat(error(f, call("write", "{'path': '/session', 'content': 'x'}")))
        .contains("/session is a directory");
    assertThat(error(f, call("write", "{'path': '/session/dir', 'content': 'x'}")))
        .isEqualTo("/session/dir is a directory");
    assertThat(error(f, call("write", "{'path': '/session/file/deeper/y', 'content': 'x'}")))
        .isEqualTo("cannot create /session/file/deeper/y: /session/file is a file");
  }

  // ------------------------------------------------------------------ edit

  @Test
  void editReplacesAUniqueString() {
    SessionFiles f = files("/session/a", "one two three");
    SessionFiles.Outcome o =
        ok(f, call("edit", "{'path': '/session/a', 'old_string': 'two', 'new_string': '2'}"));
    assertThat(o.content()).isEqualTo("edited /session/a (11 bytes)");
    assertThat(o.change()).isEqualTo(new SessionFiles.Change("/session/a", "one 2 three"));
  }

  @Test
  void editOfAMissingStringIsAnError() {
    SessionFiles f = files("/session/a", "one two three");
    assertThat(
            error(
                f, call("edit", "{'path': '/session/a', 'old_string': 'four', 'new_string': '4'}")))
        .isEqualTo("old_string was not found in /session/a");
  }

  @Test
  void editOfAnAmbiguousStringIsAnErrorUnlessReplaceAll() {
    SessionFiles f = files("/session/a", "x-x-x");
    assertThat(
            error(f, call("edit", "{'path': '/session/a', 'old_string': 'x', 'new_string': 'y'}")))
        .isEqualTo(
            "old_string occurs 3 times in /session/a; include more context to make it unique, or"
                + " set replace_all");
    SessionFiles.Outcome o =
        ok(
            f,
            call(
                "edit",
                "{'path': '/session/a', 'old_string': 'x', 'new_string': 'yy', 'replace_all':"
                    + " true}"));
    assertThat(o.change()).isEqualTo(new SessionFiles.Change("/session/a", "yy-yy-yy"));
  }

  @Test
  void editWithTheSameOldAndNewStringIsAnError() {
    SessionFiles f = files("/session/a", "abc");
    assertThat(
            error(f, call("edit", "{'path': '/session/a', 'old_string': 'b', 'new_string': 'b'}")))
        .isEqualTo("old_string and new_string are the same; nothing to change in /session/a");
  }

  @Test
  void editOfAMissingFileIsAnErrorAndAnEditIsBoundByTheSizeCap() {
    assertThat(
            error(
                SessionFiles.EMPTY,
                call("edit", "{'path': '/session/a', 'old_string': 'b', 'new_string': 'c'}")))
        .isEqualTo("file not found: /session/a");
    SessionFiles.Limits limits = new SessionFiles.Limits(5, 100, 1000);
    assertThat(
            error(
                files("/session/a", "abc"),
                call("edit", "{'path': '/session/a', 'old_string': 'b', 'new_string': 'bbbb'}"),
                limits))
        .contains("is 6 bytes; session files are limited to 5 bytes");
  }

  // ------------------------------------------------------------------ ls

  private static final SessionFiles TREE =
      files(
          "/session/a.md", "# A\nTODO: first\n",
          "/session/notes/b.md", "nothing here\n",
          "/session/notes/deep/c.md", "TODO: deep\nand TODO again\n",
          "/session/notes/d.txt", "TODO in text\n",
          "/session/x.txt", "plain\n");

  @Test
  void lsListsTheDirectEntriesOfADirectoryWithSubdirectoriesMarked() {
    assertThat(ok(TREE, call("ls", "{'path': '/session'}")).content())
        .isEqualTo("a.md\nnotes/\nx.txt");
    assertThat(ok(TREE, call("ls", "{'path': '/session/notes'}")).content())
        .isEqualTo("b.md\nd.txt\ndeep/");
  }

  @Test
  void lsOfAFileNamesItAndOfAMissingPathIsAnError() {
    assertThat(ok(TREE, call("ls", "{'path': '/session/notes/b.md'}")).content())
        .isEqualTo("/session/notes/b.md");
    assertThat(error(TREE, call("ls", "{'path': '/session/note'}")))
        .isEqualTo("no such file or directory: /session/note");
    assertThat(ok(SessionFiles.EMPTY, call("ls", "{'path': '/session'}")).content())
        .isEqualTo("(/session is empty)");
  }

  // ------------------------------------------------------------------ glob

  @Test
  void globWithDoubleStarCrossesDirectoriesAndMatchesAtTheTop() {
    assertThat(
            ok(TREE, call("glob", "{'pattern': '**/*.md', 'path': '/session'}")).content().lines())
        .containsExactly("/session/a.md", "/session/notes/b.md", "/session/notes/deep/c.md");
    assertThat(ok(TREE, call("glob", "{'pattern': '**/*.md'}")).content().lines())
        .containsExactly("/session/a.md", "/session/notes/b.md", "/session/notes/deep/c.md");
  }

  @Test
  void globWithASingleStarStaysInOneDirectory() {
    assertThat(ok(TREE, call("glob", "{'pattern': '*.md', 'path': '/session'}")).content())
        .isEqualTo("/session/a.md");
    assertThat(
            ok(TREE, call("glob", "{'pattern': '*', 'path': '/session/notes'}")).content().lines())
        .containsExactly("/session/notes/b.md", "/session/notes/d.txt");
    assertThat(ok(TREE, call("glob", "{'pattern': 'session/*.txt'}")).content())
        .isEqualTo("/session/x.txt");
  }

  @Test
  void globWithoutMatchesOrWithABadPatternSaysSo() {
    assertThat(ok(TREE, call("glob", "{'pattern': '*.py', 'path': '/session'}")).content())
        .isEqualTo("no files match *.py under /session");
    assertThat(error(TREE, call("glob", "{'pattern': 'a[b', 'path': '/session'}")))
        .startsWith("invalid glob pattern 'a[b'");
  }

  // ------------------------------------------------------------------ grep

  @Test
  void grepAnswersPathLineText() {
    assertThat(ok(TREE, call("grep", "{'pattern': 'TODO', 'path': '/session'}")).content().lines())
        .containsExactly(
            "/session/a.md:2:TODO: first",
            "/session/notes/d.txt:1:TODO in text",
            "/session/notes/deep/c.md:1:TODO: deep",
            "/session/notes/deep/c.md:2:and TODO again");
    assertThat(
            ok(
                    TREE,
                    call(
                        "grep",
                        "{'pattern': '^TODO: \\\\w+$', 'path': '/session/notes/deep/c.md'}"))
                .content())
        .isEqualTo("/session/notes/deep/c.md:1:TODO: deep");
  }

  @Test
  void grepWithAGlobOnlySearchesMatchingFiles() {
    assertThat(
            ok(TREE, call("grep", "{'pattern': 'TODO', 'path': '/session', 'glob': '**/*.md'}"))
                .content()
                .lines())
        .containsExactly(
            "/session/a.md:2:TODO: first",
            "/session/notes/deep/c.md:1:TODO: deep",
            "/session/notes/deep/c.md:2:and TODO again");
    assertThat(
            ok(TREE, call("grep", "{'pattern': 'TODO', 'path': '/session/notes', 'glob': '*.txt'}"))
                .content())
        .isEqualTo("/session/notes/d.txt:1:TODO in text");
  }

  @Test
  void grepOfASingleFileAppliesItsGlobToTheFileNameAsGlobDoes() {
    assertThat(ok(TREE, call("glob", "{'pattern': '*.md', 'path': '/session/a.md'}")).content())
        .isEqualTo("/session/a.md");
    assertThat(
            ok(TREE, call("grep", "{'pattern': 'TODO', 'path': '/session/a.md', 'glob': '*.md'}"))
                .content())
        .isEqualTo("/session/a.md:2:TODO: first");
  }

  @Test
  void grepWithoutMatchesSaysSo() {
    assertThat(ok(TREE, call("grep", "{'pattern': 'FIXME', 'path': '/session'}")).content())
        .isEqualTo("no matches for FIXME under /session");
  }

  @Test
  void grepWithAnInvalidRegexIsAnError() {
    assertThat(error(TREE, call("grep", "{'pattern': '(unclosed', 'path': '/session'}")))
        .startsWith("invalid regular expression: Unclosed group");
  }

  @Test
  void grepStopsAfter500MatchesAndCutsLongLines() {
    String many = "hit\n".repeat(600);
    String out =
        ok(files("/session/many", many), call("grep", "{'pattern': 'hit', 'path': '/session'}"))
            .content();
    assertThat(out.lines().filter(l -> l.startsWith("/session/many:"))).hasSize(500);
    assertThat(out).endsWith("\n[stopped after 500 matches]");

    String longLine = "x".repeat(600) + "NEEDLE";
    String one =
        ok(
                files("/session/long", longLine),
                call("grep", "{'pattern': 'NEEDLE', 'path': '/session'}"))
            .content();
    assertThat(one).isEqualTo("/session/long:1:" + "x".repeat(500) + "...");
  }

  @Test
  void grepOutputIsCappedAtTheOutputLimit() {
    SessionFiles.Limits tiny = new SessionFiles.Limits(1 << 20, 8 << 20, 50);
    String out =
        ok(
                files("/session/many", "hit\n".repeat(20)),
                call("grep", "{'pattern': 'hit', 'path': '/session'}"),
                tiny)
            .content();
    assertThat(out).endsWith("\n[output truncated at 50 characters]");
    assertThat(out.indexOf("\n[output truncated")).isEqualTo(50);
  }

  @Test
  void theTextbookCatastrophicRegexDoesNotHang() {
    // Java 9+ memoises this one; it must simply answer, whatever the engine does.
    SessionFiles f = files("/session/evil", "a".repeat(60) + "b\n");
    String out =
        assertTimeoutPreemptively(
            Duration.ofSeconds(10),
            () ->
                f.execute(call("grep", "{'pattern': '(a+)+$', 'path': '/session'}"), LIMITS)
                    .content());
    assertThat(out)
        .isIn(
            "no matches for (a+)+$ under /session",
            "grep took too long; simplify the regular expression or narrow the path");
  }

  @Test
  void aCatastrophicRegexIsStoppedByTheDeadlineInsteadOfHanging() {
    // Exponential backtracking that Java 17's engine does not optimise away.
    SessionFiles f = files("/session/evil", "a".repeat(40) + "b\n");
    long start = System.nanoTime();
    String message =
        assertTimeoutPreemptively(
            Duration.ofSeconds(15),
            () -> error(f, call("grep", "{'pattern': '(.*a){20}$', 'path': '/session'}")));
    long ms = Duration.ofNanos(System.nanoTime() - start).toMillis();
    assertThat(message)
        .isEqualTo("grep took too long; simplify the regular expression or narrow the path");
    assertThat(ms)
        .as("stopped by the grep budget, long before the test's own timeout")
        .isLessThan(10_000L);
  }

  @Test
  void bashIsNotASessionFileOperation() {
    assertThat(error(TREE, call("bash", "{'command': 'ls'}"))).contains("sandbox");
  }

  @Test
  void filesAreAnImmutableSortedCopy() {
    TreeMap<String, String> source = new TreeMap<>(Map.of("/session/b", "2", "/session/a", "1"));
    SessionFiles f = new SessionFiles(source);
    source.put("/session/c", "3");
    assertThat(f.files().keySet()).containsExactly("/session/a", "/session/b");
    org.assertj.core.api.Assertions.assertThatThrownBy(() -> f.files().put("/session/z", "z"))
        .isInstanceOf(UnsupportedOperationException.class);
  }
}
