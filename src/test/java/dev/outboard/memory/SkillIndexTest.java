package dev.outboard.memory;

import static org.assertj.core.api.Assertions.assertThat;

import dev.outboard.memory.SkillIndex.Skill;
import java.time.Duration;
import java.util.List;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;

/**
 * The org's part of the system prompt (DESIGN.md §5): the skills index from {@code
 * /skills/<name>/SKILL.md} front matter, and the memory listing within its budget.
 */
class SkillIndexTest {

  private static TreeMap<String, String> files(String... pathsAndContents) {
    TreeMap<String, String> m = new TreeMap<>();
    for (int i = 0; i < pathsAndContents.length; i += 2)
      m.put(pathsAndContents[i], pathsAndContents[i + 1]);
    return m;
  }

  /** The store is not touched by {@code render}. */
  private static SkillIndex index(int budgetChars) {
    return new SkillIndex(null, budgetChars, Duration.ofSeconds(2));
  }

  // ------------------------------------------------------------------ front matter

  @Test
  void frontMatterIsTheKeyValueLinesBetweenTheDashes() {
    assertThat(
            SkillIndex.frontMatter(
                "---\n"
                    + "name: deploy\n"
                    + "description: Ships the service: safely\n"
                    + "---\n"
                    + "# Body\n"
                    + "key: not front matter\n"))
        .containsExactlyInAnyOrderEntriesOf(
            java.util.Map.of("name", "deploy", "description", "Ships the service: safely"));
  }

  @Test
  void frontMatterUnquotesValuesAndToleratesSpacesAndCarriageReturns() {
    assertThat(
            SkillIndex.frontMatter(
                "---\r\n"
                    + "name: \"quoted name\"\r\n"
                    + "description:   'single: quoted'  \r\n"
                    + "empty: \"\"\r\n"
                    + "---\r\n"
                    + "body"))
        .containsExactlyInAnyOrderEntriesOf(
            java.util.Map.of("name", "quoted name", "description", "single: quoted", "empty", ""));
    // A lone quote or mismatched quotes are kept as they are.
    assertThat(SkillIndex.frontMatter("---\na: \"\nb: \"x'\n---\n"))
        .containsEntry("a", "\"")
        .containsEntry("b", "\"x'");
  }

  @Test
  void withoutLeadingDashesThereIsNoFrontMatter() {
    assertThat(SkillIndex.frontMatter("name: deploy\n---\ndescription: x\n---\n")).isEmpty();
    assertThat(SkillIndex.frontMatter("")).isEmpty();
    assertThat(SkillIndex.frontMatter("\n---\nname: late\n---\n")).isEmpty();
    assertThat(SkillIndex.frontMatter("---\n: no key\njust text\n---\n")).isEmpty();
  }

  // ------------------------------------------------------------------ skills

  @Test
  void skillsComeFromSkillFilesOneDirectoryDownWithTheirFrontMatter() {
    List<Skill> skills =
        SkillIndex.skills(
            files(
                "/skills/deploy/SKILL.md",
                    "---\n"
                        + "name: \"Deploy\"\n"
                        + "description: \"How we ship: canary first\"\n"
                        + "---\n"
                        + "# Deploy\n",
                "/skills/deploy/notes.md", "---\nname: not a skill\n---\n",
                "/skills/deploy/sub/SKILL.md", "---\nname: nested too deep\n---\n",
                "/skills/SKILL.md", "---\nname: top level\n---\n",
                "/skills/incident/SKILL.md", "---\ndescription: What to do when paged\n---\n",
                "/skills/plain/SKILL.md", "# No front matter at all\n",
                "/skills/lower/skill.md", "---\nname: wrong case\n---\n"));
    assertThat(skills)
        .containsExactly(
            new Skill("Deploy", "How we ship: canary first", "/skills/deploy/SKILL.md"),
            new Skill("incident", "What to do when paged", "/skills/incident/SKILL.md"),
            new Skill("plain", "(no description)", "/skills/plain/SKILL.md"));
  }

  @Test
  void noSkillFilesNoSkills() {
    assertThat(SkillIndex.skills(files())).isEmpty();
    assertThat(SkillIndex.skills(files("/skills/readme.md", "hello"))).isEmpty();
  }

  // ------------------------------------------------------------------ render

  @Test
  void theSectionExplainsHowMemoryWorksEvenWhenThereAreNoFiles() {
    String text = index(4000).render(files(), files());
    assertThat(text)
        .contains(
            "/memory",
            "organisation",
            "survives this session",
            "write or edit",
            "exact string",
            "/session");
    assertThat(text).doesNotContain("Skills", "Memory files:");
  }

  @Test
  void theSectionListsSkillsAndMemoryFilesWithTheirFirstLine() {
    String text =
        index(4000)
            .render(
                files(
                    "/skills/deploy/SKILL.md",
                    "---\nname: deploy\ndescription: \"How we ship\"\n---\nbody stays out\n"),
                files(
                    "/memory/team-x/deploys.md",
                        "  Deploys happen on Tuesdays  \nsecond line stays out\n",
                    "/memory/empty.md", "",
                    "/memory/long.md", "y".repeat(300)));
    assertThat(text).contains("- deploy: How we ship (/skills/deploy/SKILL.md)\n");
    assertThat(text).doesNotContain("body stays out", "second line stays out");
    assertThat(text).contains("Memory files:\n");
    assertThat(text).contains("- /memory/team-x/deploys.md: Deploys happen on Tuesdays\n");
    assertThat(text).contains("- /memory/empty.md\n");
    assertThat(text)
        .contains("- /memory/long.md: " + "y".repeat(160) + "...\n")
        .doesNotContain("y".repeat(161));
    assertThat(text.indexOf("Skills"))
        .as("skills before memory files")
        .isLessThan(text.indexOf("Memory files:"));
  }

  @Test
  void theMemoryListingStopsAtTheBudgetAndSaysHowManyMoreThereAre() {
    TreeMap<String, String> memory = new TreeMap<>();
    for (int i = 0; i < 200; i++)
      memory.put(
          String.format("/memory/notes/%03d.md", i), "Note number " + i + " about something\n");
    int budget = 2000;
    String text = index(budget).render(files(), memory);

    List<String> listed = text.lines().filter(l -> l.startsWith("- /memory/notes/")).toList();
    assertThat(listed).isNotEmpty().hasSizeLessThan(200);
    assertThat(listed.get(0)).isEqualTo("- /memory/notes/000.md: Note number 0 about something");
    String last = text.lines().reduce((a, b) -> b).orElseThrow();
    assertThat(last).isEqualTo("- ... " + (200 - listed.size()) + " more: ls /memory");
    // Everything listed fits the budget; only the closing "more" line may go past it.
    assertThat(text.length() - last.length() - 1).isLessThanOrEqualTo(budget);

    // With room for everything there is no "more" line.
    assertThat(index(100_000).render(files(), memory))
        .doesNotContain("more: ls /memory")
        .contains("- /memory/notes/199.md: Note number 199 about something\n");
  }

  @Test
  void theSkillsIndexTakesAtMostHalfTheBudget() {
    TreeMap<String, String> skills = new TreeMap<>();
    for (int i = 0; i < 100; i++) {
      skills.put(
          String.format("/skills/skill-%03d/SKILL.md", i),
          "---\nname: skill-" + i + "\ndescription: Does thing " + i + "\n---\n");
    }
    int budget = 2000;
    String text =
        index(budget).render(skills, files("/memory/a.md", "Memory still gets its share\n"));
    int skillLines = (int) text.lines().filter(l -> l.startsWith("- skill-")).count();
    assertThat(skillLines).isBetween(1, 99);
    assertThat(text).contains("- ... more skills: ls /skills\n");
    assertThat(text.substring(0, text.indexOf("- ... more skills")).length())
        .isLessThanOrEqualTo(budget / 2);
    assertThat(text).contains("- /memory/a.md: Memory still gets its share\n");
  }
}
