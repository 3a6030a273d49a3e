"""The README and docs/*.md: every relative link resolves, the README links the docs pages, and it stays short.

A relative link `[text](path#anchor)` must name a file or directory that exists, relative to the linking file;
an `#anchor` into a Markdown file (or a pure `#anchor` into the same file) must match one of its headings,
slugged as GitHub does. http(s), mailto and other URLs with a scheme are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args
from urllib.parse import unquote

import pytest
from pydantic import BaseModel

from gepa_bot.config import SUITE_CONFIGS, Config

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_BYTES = 15_000

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
HTML_ANCHOR = re.compile(r"<a\s+[^>]*(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _without_fences(text: str) -> str:
    """Markdown text with fenced code blocks blanked (a `# comment` in a shell block is no heading)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def _without_code(text: str) -> str:
    """Markdown text with fenced blocks and code spans blanked (a link in code is no link)."""
    return CODE_SPAN.sub("code", _without_fences(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub makes for a Markdown file: heading slugs (repeats get -1, -2, ...) and HTML anchors."""
    text = path.read_text(encoding="utf-8")
    found: set[str] = set()
    seen: dict[str, int] = {}
    for match in HEADING.finditer(_without_fences(text)):
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    found.update(HTML_ANCHOR.findall(text))
    return found


def links(path: Path) -> list[str]:
    """The link targets in a Markdown file, in order (code blocks and code spans left out)."""
    text = _without_code(path.read_text(encoding="utf-8"))
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def resolve(source: Path, target: str) -> tuple[Path | None, str]:
    """(file the link points to, anchor); the file is None for URLs with a scheme."""
    if SCHEME.match(target):
        return None, ""
    path_part, _, anchor = target.partition("#")
    path_part = unquote(path_part.split("?", 1)[0])
    return (source if not path_part else (source.parent / path_part).resolve()), unquote(anchor)


def broken_links(path: Path) -> list[str]:
    """Each relative link of ``path`` whose file, or whose heading in a Markdown file, does not exist."""
    problems = []
    for target in links(path):
        file, anchor = resolve(path, target)
        if file is None:
            continue
        if not file.exists():
            problems.append(f"{target}: no such file {file}")
        elif anchor and file.is_file() and file.suffix == ".md" and anchor not in anchors(file):
            problems.append(f"{target}: no heading #{anchor} in {file.name}")
    return problems


def markdown_pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def linked_docs(path: Path) -> set[Path]:
    """The docs/*.md pages ``path`` links to."""
    pages = set()
    for target in links(path):
        file, _ = resolve(path, target)
        if file is not None and file.suffix == ".md" and file.parent == DOCS.resolve() and file.is_file():
            pages.add(file)
    return pages


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_readme_links_the_docs_pages():
    direct = linked_docs(README)
    assert len(direct) >= 5, sorted(p.name for p in direct)
    for name in ("configuration.md", "how-it-works.md", "action.md", "models.md", "testing.md", "security.md"):
        assert DOCS.resolve() / name in direct, f"the README does not link docs/{name}"
    reachable, todo = set(direct), list(direct)
    while todo:
        for page in linked_docs(todo.pop()) - reachable:
            reachable.add(page)
            todo.append(page)
    orphans = sorted(p.name for p in DOCS.resolve().glob("*.md") if p not in reachable)
    assert orphans == [], f"docs pages no link from the README leads to: {orphans}"


def test_readme_is_at_most_15000_bytes():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move reference material to docs/"


def test_the_checker_reports_a_broken_file_and_a_broken_anchor(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "real.md").write_text("# Real page\n\n## Some `gepa_bot.x`: here\n\n```sh\n# not a heading\n```\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Top\n\n"
        "[ok](docs/real.md) [ok anchor](docs/real.md#some-gepa_botx-here) [self](#top) [web](https://example.com/x.md)\n"
        "[mail](mailto:a@b.c) [dir](docs/) ![img](docs/real.md)\n"
        "[gone](docs/missing.md) [bad anchor](docs/real.md#not-a-heading) [bad self](#nowhere)\n"
        "`[in code](docs/nothing.md)`\n\n```md\n[in a fence](docs/nothing.md)\n```\n"
        "[ref]: docs/also-missing.md\n"
    )
    problems = broken_links(page)
    assert len(problems) == 4, problems
    assert problems[0].startswith("docs/missing.md: no such file")
    assert problems[1] == "docs/real.md#not-a-heading: no heading #not-a-heading in real.md"
    assert problems[2] == "#nowhere: no heading #nowhere in README.md"
    assert problems[3].startswith("docs/also-missing.md: no such file")


def _schemas(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models inside a field's annotation (``list[PromptSpec]`` -> PromptSpec)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _schemas(arg)]


def test_the_configuration_page_lists_every_field_of_the_schema():
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\s*(?:- )?(\w+):", page, re.MULTILINE))
    missing = [f"{section}: {model.__name__}.{name}" for section, field in Config.model_fields.items()
               for model in (SUITE_CONFIGS if section == "eval" else _schemas(field.annotation))
               for name in model.model_fields if name not in documented]
    sections = [name for name in Config.model_fields if not re.search(rf"^{name}:", page, re.MULTILINE)]
    assert sections == [], f"top-level sections missing from the page's YAML block: {sections}"
    assert missing == [], f"docs/configuration.md does not list: {missing}"


def test_slugs_match_github():
    assert slug("Quick start") == "quick-start"
    assert slug("Choosing a variant: `/gepa apply`") == "choosing-a-variant-gepa-apply"
    assert slug("`gepa_bot.evalkit` reference") == "gepa_botevalkit-reference"
    assert slug("Scaling out (Ray)") == "scaling-out-ray"
    assert slug("3. The GEPA search") == "3-the-gepa-search"
    assert slug("Tokens, permissions and CI on the bot's PR") == "tokens-permissions-and-ci-on-the-bots-pr"
