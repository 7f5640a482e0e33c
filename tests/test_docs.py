"""README.md and docs/*.md: every relative link names a file that exists and, with a #fragment,
a heading of that file (GitHub's anchors); the README stays a front page."""

import re
import urllib.parse
from pathlib import Path

import pytest

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 250

FENCE = re.compile(r"^ {0,3}(```|~~~)")
# [text](target) and ![alt](target); the target ends at whitespace (a "title" may follow) or ")".
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ID = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks, inline code blanked out."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, re.sub(r"`+[^`]*`+", lambda m: " " * len(m.group()), line)))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text as rendered (no markup, link text kept), lower
    case, every character but letters, digits, '_', '-' and spaces dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every #fragment a link into `page` may use: its headings' slugs (repeats numbered -1,
    -2, ... as GitHub numbers them) and explicit <a id="..."> anchors."""
    text = page.read_text()
    found, seen = set(), {}
    for _, line in _prose_lines(text):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    found.update(HTML_ID.findall(text))
    return found


def broken_links(page: Path) -> list[str]:
    """'line N: target (problem)' for every relative link of `page` that does not resolve."""
    problems = []
    for number, line in _prose_lines(page.read_text()):
        for target in LINK.findall(line):
            if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue  # http:, https:, mailto:, ...
            path, _, fragment = urllib.parse.unquote(target).partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                problems.append(f"line {number}: {target} (no file {path})")
            elif fragment and file.suffix == ".md" and fragment not in anchors(file):
                problems.append(f"line {number}: {target} (no heading #{fragment} in {path or page.name})")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_pages_are_there():
    names = {p.name for p in PAGES}
    assert {"README.md", "model.md", "training.md", "serving.md", "evaluation.md", "speed.md",
            "bad-input.md", "experiments.md"} <= names
    # The README links to every page of docs/, so none is unreachable from the front page.
    readme = (REPO / "README.md").read_text()
    assert [p.name for p in PAGES[1:] if f"docs/{p.name}" not in readme] == []


def test_readme_is_a_front_page():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES
    commands = [line.split("#")[0].strip() for line in lines if line.startswith("make ")]
    assert commands[:2] == ["make train", "make test"]


@pytest.mark.parametrize("heading, expected", [
    ("The shipped model's report", "the-shipped-models-report"),
    ("GPUs, several GPUs, several machines", "gpus-several-gpus-several-machines"),
    ("Speed: what was tried", "speed-what-was-tried"),
    ("Checking an export for TF Serving", "checking-an-export-for-tf-serving"),
    ("`serving_default` and `decode`", "serving_default-and-decode"),
    ("[Bad input](docs/bad-input.md) rows", "bad-input-rows"),
    ("Versions 4 to 6", "versions-4-to-6"),
])
def test_slug_follows_github(heading, expected):
    assert slug(heading) == expected


def test_a_broken_link_or_heading_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Two words\n\n## Two words\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/a.md) [ok](docs/a.md#two-words) [repeat](docs/a.md#two-words-1)\n"
        "[here](#top) [web](https://example.com/x.md#nowhere)\n"
        "`[in code](missing.md)`\n"
        "```\n[in a block](missing.md)\n```\n"
        "# Top\n"
        "[gone](docs/b.md) [no heading](docs/a.md#three-words) ![picture](docs/a.png)\n")
    assert broken_links(page) == [
        "line 8: docs/b.md (no file docs/b.md)",
        "line 8: docs/a.md#three-words (no heading #three-words in docs/a.md)",
        "line 8: docs/a.png (no file docs/a.png)",
    ]
