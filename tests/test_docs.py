"""The docs stay true: the configuration page matches the CLI, and no relative link is
dead. Both are cheap and need no model, so they run everywhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from earshot import config_reference

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [REPO / "README.md", REPO / "client_js" / "README.md", *(REPO / "docs").glob("*.md")]
)

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def relative_links(markdown: str) -> list[str]:
    """Link targets that point into the repository or the same page (not URLs),
    outside code blocks and code spans."""
    text = CODE_SPAN.sub("", FENCE.sub("", markdown))
    targets = INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def anchors(markdown: str) -> set[str]:
    """The heading anchors GitHub makes: lowercase, punctuation dropped, spaces to
    hyphens, ``-1``, ``-2``... for repeats."""
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", markdown)):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def test_configuration_page_matches_the_cli() -> None:
    page = REPO / "docs" / "configuration.md"
    expected = config_reference.render()
    assert page.is_file(), f"docs/configuration.md is missing: run `{config_reference.REGENERATE}`"
    assert page.read_text(encoding="utf-8") == expected, (
        "docs/configuration.md is out of date with earshot.cli's options: regenerate it with "
        f"`.venv/bin/{config_reference.REGENERATE}`"
    )


def test_configuration_page_lists_environment_variables() -> None:
    page = config_reference.render()
    assert "| `--model` | `EARSHOT_MODEL` | `base` |" in page
    assert "EARSHOT_MAX_SESSIONS" in page
    assert "/__home__" not in page  # the placeholder home is written as ~


def _resolves(page: Path, target: str) -> bool:
    """The file exists and, for a ``.md#heading`` link, so does the heading."""
    path, _, fragment = target.partition("#")
    linked = (page.parent / path.split("?", 1)[0]) if path else page
    if not linked.exists():
        return False
    if fragment and linked.suffix == ".md":
        return fragment in anchors(linked.read_text(encoding="utf-8"))
    return True


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_at_existing_files(page: Path) -> None:
    dead = [
        target
        for target in relative_links(page.read_text(encoding="utf-8"))
        if not _resolves(page, target)
    ]
    assert not dead, f"{page.relative_to(REPO)} has dead links (file or heading): {dead}"


def test_link_finder_skips_code_and_urls() -> None:
    markdown = (
        "[a](docs/a.md) ![b](img.png) [c](https://x.y) [d](#here)\n"
        "`[e](no.md)`\n```\n[f](no.md)\n```\n[g]: ref.md\n"
    )
    assert relative_links(markdown) == ["docs/a.md", "img.png", "#here", "ref.md"]


def test_anchors_follow_github() -> None:
    markdown = (
        "# Earshot\n## Capacity — 2026-11-25, code f943877\n## `earshot eval`\n## Tests\n## Tests\n"
    )
    assert anchors(markdown) == {
        "earshot",
        "capacity--2026-11-25-code-f943877",
        "earshot-eval",
        "tests",
        "tests-1",
    }
