"""Finding prompt components in a repo and writing candidate texts back into their files.

A *component* is one optimizable text: a whole file, the body of a file with YAML front-matter (the
front-matter is kept verbatim), or one string value inside a YAML file (spliced in place, so comments
and layout around it survive). Placeholders like ``{question}`` or ``{{ name }}`` must survive rewrites.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gepa_bot.config import Config, PromptSpec
from gepa_bot.errors import UserError

YAML_SUFFIXES = (".yaml", ".yml")
FRONT_MATTER = re.compile(r"\A(---[ \t]*\r?\n.*?\r?\n---[ \t]*(?:\r?\n|\Z))", re.DOTALL)
PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][\w.]*\s*\}\}|(?<!\{)\{[A-Za-z_][\w.]*(?:![rsa])?(?::[^{}]*)?\}(?!\})")
IGNORED_TOP_DIRS = (".git", ".gepa-bot")
YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


@dataclass(frozen=True)
class Component:
    """One optimizable prompt text and where it lives."""

    name: str
    path: str
    kind: str  # "text" | "frontmatter" | "yaml"
    text: str
    key: str | None = None
    source: str = field(default="", repr=False)  # the whole file as discovered: rendering never re-reads disk

    @property
    def placeholders(self) -> frozenset[str]:
        return placeholders_in(self.text)


def placeholders_in(text: str) -> frozenset[str]:
    """Normalized placeholders in ``text`` (``{{ x }}`` and ``{{x}}`` count as the same)."""
    return frozenset(re.sub(r"\s+", "", match) for match in PLACEHOLDER.findall(text))


def placeholder_problem(original: str, candidate: str) -> str | None:
    """Why ``candidate`` cannot replace ``original`` (dropped, invented or repeated placeholders), else None.

    A placeholder used more often than in the original is refused too: an LLM that "mentions" ``{question}``
    in its prose would otherwise put the whole input into the prompt twice.
    """
    before, after = placeholders_in(original), placeholders_in(candidate)
    problems = []
    if before - after:
        problems.append("drops placeholder(s) " + ", ".join(sorted(before - after)))
    if after - before:
        problems.append("adds unknown placeholder(s) " + ", ".join(sorted(after - before)))
    counts_before, counts_after = _placeholder_counts(original), _placeholder_counts(candidate)
    repeated = sorted(p for p in before & after if counts_after[p] > counts_before[p])
    if repeated:
        problems.append("repeats placeholder(s) " + ", ".join(repeated))
    return "; ".join(problems) or None


def _placeholder_counts(text: str) -> Counter[str]:
    return Counter(re.sub(r"\s+", "", match) for match in PLACEHOLDER.findall(text))


def glob_matches(path: str, pattern: str) -> bool:
    """Whether a repo-relative ``path`` matches ``pattern`` the way ``Path.glob`` (discovery) selects files.

    ``*`` and ``?`` stay inside one path segment, ``**`` spans any number of directories (zero included,
    so ``prompts/**/*.md`` matches ``prompts/a.md``; a trailing ``evals/**`` matches every file below
    ``evals/``), ``[...]`` is a character class. One matcher for push triggers and ``files=`` filters,
    agreeing with discovery's ``Path.glob`` on files.
    """
    return re.fullmatch(_glob_regex(pattern), path, flags=re.DOTALL) is not None


def _glob_regex(pattern: str) -> str:
    out, segments = [], pattern.strip("/").split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
            continue
        out.append(_segment_regex(segment) + ("" if last else "/"))
    return "".join(out)


def _segment_regex(segment: str) -> str:
    parts, i = [], 0
    while i < len(segment):
        char = segment[i]
        if char == "*":
            parts.append("[^/]*")
        elif char == "?":
            parts.append("[^/]")
        elif char == "[" and (end := segment.find("]", i + 2)) != -1:
            body = segment[i + 1:end]
            negate = body.startswith("!")
            body = (body[1:] if negate else body).replace("\\", "\\\\").replace("[", "\\[")
            parts.append("[" + ("^" if negate else "") + body + "]")
            i = end
        else:
            parts.append(re.escape(char))
        i += 1
    return "".join(parts)


def discover(repo: Path, config: Config, config_path: Path) -> list[Component]:
    """All components the config's prompt globs select, in a stable order."""
    components: list[Component] = []
    for index, spec in enumerate(config.prompts):
        matches = _glob_files(repo, spec.path)
        if not matches:
            raise UserError(f"{config_path}: field 'prompts[{index}].path': no file matches {spec.path!r}",
                            fix="check the glob (it is relative to the repo root) or add the prompt file")
        for path in matches:
            components.extend(_components_of(repo, path, spec, f"{config_path}: field 'prompts[{index}]'"))
    duplicated = sorted(name for name, count in Counter(c.name for c in components).items() if count > 1)
    if duplicated:
        raise UserError(f"{config_path}: field 'prompts': {', '.join(duplicated)} selected by more than one entry",
                        fix="make the globs select each file (or YAML key) once")
    return components


def _glob_files(repo: Path, pattern: str) -> list[Path]:
    root = repo.resolve()
    files = []
    for path in sorted(repo.glob(pattern)):
        relative = path.relative_to(repo)
        if not path.is_file() or (relative.parts and relative.parts[0] in IGNORED_TOP_DIRS):
            continue
        if not path.resolve().is_relative_to(root):
            raise UserError(f"{relative}: resolves outside the repository (symlink?)",
                            fix="point the glob at files inside the repo")
        files.append(path)
    return files


def _components_of(repo: Path, path: Path, spec: PromptSpec, where: str) -> list[Component]:
    relative = path.relative_to(repo).as_posix()
    try:
        content = path.read_bytes().decode("utf-8")  # not read_text: keep CRLF line endings byte for byte
    except UnicodeDecodeError:
        raise UserError(f"{relative}: not UTF-8 text", fix=f"save it as UTF-8 or exclude it from {where}") from None
    kind = _kind_of(path, spec, content)
    if kind == "yaml":
        return _yaml_components(relative, content, spec, where)
    if kind == "frontmatter":
        match = FRONT_MATTER.match(content)
        if not match:
            raise UserError(f"{relative}: format is 'frontmatter' but the file has no '---' front-matter block",
                            fix=f"add front-matter or set format: text in {where}")
        return [Component(name=relative, path=relative, kind="frontmatter", text=content[match.end():], source=content)]
    return [Component(name=relative, path=relative, kind="text", text=content, source=content)]


def _kind_of(path: Path, spec: PromptSpec, content: str) -> str:
    if spec.format != "auto":
        return spec.format
    if path.suffix.lower() in YAML_SUFFIXES:
        return "yaml"
    return "frontmatter" if FRONT_MATTER.match(content) else "text"


def _yaml_components(relative: str, content: str, spec: PromptSpec, where: str) -> list[Component]:
    if not spec.keys:
        raise UserError(f"{relative}: YAML prompt files need the keys that hold prompts",
                        fix=f"add keys: [some.key] to {where}")
    components = []
    for key in spec.keys:
        node = _yaml_scalar_node(relative, content, key, where)
        components.append(Component(name=f"{relative}#{key}", path=relative, kind="yaml", text=node.value, key=key,
                                    source=content))
    return components


def _yaml_scalar_node(relative: str, content: str, key: str, where: str) -> yaml.ScalarNode:
    try:
        node = yaml.compose(content, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise UserError(f"{relative}: invalid YAML: {exc}", fix="fix the YAML syntax") from None
    for part in key.split("."):
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            child = node.value[int(part)]
        if child is None:
            raise UserError(f"{relative}: key '{key}' not found (missing '{part}')", fix=f"fix keys in {where}")
        node = child
    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
        raise UserError(f"{relative}: key '{key}' is not a string", fix=f"point keys in {where} at text values")
    return node


# --- writing candidates back ------------------------------------------------------------------------

def render_files(components: list[Component], texts: Mapping[str, str]) -> dict[str, str]:
    """New content of every prompt file for a candidate (component name -> text)."""
    by_path: dict[str, list[Component]] = defaultdict(list)
    for component in components:
        by_path[component.path].append(component)
    return {path: _render_file(group, texts) for path, group in by_path.items()}


def _render_file(group: list[Component], texts: Mapping[str, str]) -> str:
    first = group[0]
    content = first.source
    if first.kind == "text":
        return texts[first.name]
    if first.kind == "frontmatter":
        match = FRONT_MATTER.match(content)
        return (match.group(1) if match else "") + texts[first.name]
    for component in group:  # YAML: splice each key's new value in place
        content = splice_yaml_value(content, component.key or "", texts[component.name])
    return content


def splice_yaml_value(content: str, key: str, value: str) -> str:
    """Replace the string at ``key`` with ``value``, keeping the rest of the file byte for byte."""
    node = _yaml_scalar_node("<yaml>", content, key, "config")
    if node.value == value:
        return content
    start, end = node.start_mark.index, node.end_mark.index
    if node.style in ("|", ">"):  # a block scalar's span swallows the line break and blank lines after it
        newline = content.find("\n", len(content[:end].rstrip()))
        end = newline + 1 if 0 <= newline < end else end
    ends_line = content[start:end].endswith("\n")
    indent = _block_indent(content, start)
    for rendered in (_literal_block(value, indent), _double_quoted(value)):
        if rendered is None:
            continue
        tail = content[end:]
        if ends_line and not rendered.endswith("\n"):
            rendered += "\r\n" if content[start:end].endswith("\r\n") else "\n"
        elif rendered.endswith("\n") and not ends_line and (tail.startswith(("\n", "\r\n")) or not tail):
            rendered = rendered[:-1]
        updated = content[:start] + rendered + tail
        try:
            if _yaml_scalar_node("<yaml>", updated, key, "config").value == value:
                return updated
        except UserError:
            continue
    raise UserError(f"cannot write the new text for YAML key '{key}'", fix="report this as a gepa-bot bug")


def _double_quoted(value: str) -> str:
    """A YAML double-quoted scalar: JSON's escapes plus escapes for what YAML reads as line breaks or rejects."""
    return YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False))


def _block_indent(content: str, start: int) -> str:
    line_start = content.rfind("\n", 0, start) + 1
    line = content[line_start:start]
    return " " * (len(line) - len(line.lstrip(" ")) + 2)


def _literal_block(value: str, indent: str) -> str | None:
    """A `|` block scalar for multi-line text (None when a quoted scalar reads better)."""
    if "\n" not in value.rstrip("\n") or value[:1] in (" ", "\t") or "\t" in value:
        return None
    body = value.rstrip("\n")
    trailing = len(value) - len(body)
    chomp = "-" if trailing == 0 else ("" if trailing == 1 else "+")
    lines = [(indent + line) if line else "" for line in body.split("\n")]
    return f"|{chomp}\n" + "\n".join(lines) + "\n" * max(trailing, 1)
