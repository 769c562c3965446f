"""The README stays a three-minute read and no link in the docs leads nowhere.

Links go to files, never to a heading's anchor: sections move between documents, files stay. A link inside a code
span or block is text, not a link, so it is not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 150

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+).*?\1")
#: ``[text](target)`` and ``![alt](target)``, an optional title after the target; ``<target>`` autolinks.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^>\s]*)>")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def link_targets(markdown: str) -> list[str]:
    """Every link target outside code, in order: inline links, images, reference definitions and autolinks."""
    targets: list[str] = []
    in_code_block = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            in_code_block = not in_code_block
            continue
        if in_code_block:
            continue
        prose = CODE_SPAN.sub("", line)
        targets += INLINE_LINK.findall(prose)
        targets += REFERENCE_DEFINITION.findall(prose)
        targets += AUTOLINK.findall(prose)
    return targets


def relative_links(document: Path) -> list[str]:
    """The links of ``document`` that point into the repository (no scheme such as https: or mailto:)."""
    return [target for target in link_targets(document.read_text(encoding="utf-8")) if not SCHEME.match(target)]


def test_the_link_finder_sees_links_and_skips_code() -> None:
    markdown = "\n".join(
        [
            'See [the CLI](docs/CLI.md), ![chart](docs/chart.png "a title") and <https://dagster.io>.',
            "[ref]: docs/ENERGY.md",
            "`[not a link](nowhere.md)` in a code span",
            "```",
            "[not a link either](nowhere.md)",
            "```",
            "[an anchor](#somewhere)",
        ]
    )
    assert link_targets(markdown) == [
        "docs/CLI.md",
        "docs/chart.png",
        "https://dagster.io",
        "docs/ENERGY.md",
        "#somewhere",
    ]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_names_an_existing_file_without_an_anchor(document: Path) -> None:
    broken = []
    for target in relative_links(document):
        resolved = (document.parent / target.split("#", 1)[0]).resolve()
        if "#" in target:
            broken.append(f"{target}: link to the file, not to a heading (anchors break when sections move)")
        elif not resolved.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
    assert not broken, f"{document.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_the_docs_folder_is_linked_from_the_readme() -> None:
    """A reference page nobody links to is one nobody finds."""
    linked = {(README.parent / target).resolve() for target in relative_links(README)}
    orphans = [path.name for path in DOCUMENTS[1:] if path.resolve() not in linked]
    assert not orphans, f"README.md links none of {orphans}"


def test_the_readme_is_a_three_minute_read() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, over {README_MAX_LINES}: move reference to docs/"
