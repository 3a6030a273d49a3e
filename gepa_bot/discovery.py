"""Finding prompt components in a repo and writing candidate texts back into their files.

A *component* is one optimizable text: a whole file, the body of a file with YAML front-matter (the
front-matter is kept verbatim), or one string value inside a YAML file (spliced in place, so comments
and layout around it survive). Placeholders like ``{question}`` or ``{{ name }}`` must survive rewrites.
"""

from __future__ import annotations

import json
import os
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
        matches = _glob_files(repo, spec.path, f"{config_path}: field 'prompts[{index}].path'")
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


def _glob_files(repo: Path, pattern: str, field: str = "prompts") -> list[Path]:
    root = repo.resolve()
    files = []
    for path in sorted(repo.glob(pattern)):
        relative = path.relative_to(repo)
        if relative.parts and relative.parts[0] in IGNORED_TOP_DIRS:
            continue
        if (link := symlink_in(repo, relative.as_posix())) is not None:
            raise UserError(f"{field}: {relative.as_posix()} is a symlink ({link} -> {os.readlink(repo / link)}); "
                            "prompt files must be regular files",
                            fix="replace the symlink with the file itself or narrow the glob to exclude it")
        if not path.is_file():
            continue
        if not path.resolve().is_relative_to(root):
            raise UserError(f"{relative}: resolves outside the repository (symlink?)",
                            fix="point the glob at files inside the repo")
        files.append(path)
    return files


def symlink_in(repo: Path, relative: str) -> str | None:
    """The first part of repo-relative ``relative`` (the file or a directory above it) that is a symlink, else None.

    Prompt files are refused when reached through any symlink, even one pointing inside the repo: a link to
    ``.git/config`` (or to an eval's fixtures) would be optimized, written back and proposed in a pull request.
    """
    parts = Path(relative).parts
    for depth in range(1, len(parts) + 1):
        part = Path(*parts[:depth])
        if (repo / part).is_symlink():
            return part.as_posix()
    return None


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
        return same_line_endings(first.text, texts[first.name])
    if first.kind == "frontmatter":
        match = FRONT_MATTER.match(content)
        return (match.group(1) if match else "") + same_line_endings(first.text, texts[first.name])
    for component in group:  # YAML: splice each key's new value in place
        content = splice_yaml_value(content, component.key or "", texts[component.name])
    return content


def same_line_endings(original: str, text: str) -> str:
    """``text`` with CRLF line endings if ``original`` uses CRLF throughout, else unchanged.

    The new text is otherwise written exactly as given (its line wrapping included): a model that answers
    with LF line endings must not turn every line of a CRLF file into a diff line.
    """
    if "\r\n" in original and original.count("\n") == original.count("\r\n"):
        return re.sub(r"(?<!\r)\n", "\r\n", text)
    return text


@dataclass(frozen=True)
class _Span:
    """Where a YAML scalar's text sits in the file, and how it was written."""

    start: int
    end: int  # a block scalar's end after its last content line (blank lines after it stay in the file)
    node_end: int  # the node's own end (a block scalar's trailing blank lines included)
    style: str | None  # None (plain), "'", '"', "|" or ">"
    newline: str  # "\n" or "\r\n", as the line holding the value ends


def splice_yaml_value(content: str, key: str, value: str) -> str:
    """Replace the string at ``key`` with ``value``, keeping the rest of the file byte for byte.

    The value keeps its layout where it can: a block scalar stays a block scalar with the same style,
    header (indentation indicator, comment), indentation and, when the new text allows it, chomping
    indicator; a folded (``>``) block keeps the line wrapping of its unchanged paragraphs. A one-line
    value keeps its plain or quoted style. Multi-line text in a plain or quoted scalar becomes a ``|``
    block. Every rendering is read back, and the first that gives exactly ``value`` is used (a
    double-quoted scalar, which holds any text, comes last).
    """
    node = _yaml_scalar_node("<yaml>", content, key, "config")
    if node.value == value:
        return content
    span = _span_of(content, node)
    for rendered, keep in _renderings(content, span, value):
        updated, start = _placed(content, span, rendered, keep), span.start
        if _reads_back(updated, key, value, start, rendered):
            return updated
    raise UserError(f"cannot write the new text for YAML key '{key}'", fix="report this as a gepa-bot bug")


def _span_of(content: str, node: yaml.ScalarNode) -> _Span:
    start, end = node.start_mark.index, node.end_mark.index
    node_end = end
    if node.style in ("|", ">"):  # a block scalar's span swallows the line break and blank lines after it
        newline = content.find("\n", len(content[:end].rstrip()))
        end = newline + 1 if 0 <= newline < end else end
    line_end = content.find("\n", start)
    crlf = line_end > 0 and content[line_end - 1] == "\r"
    return _Span(start, end, node_end, node.style, "\r\n" if crlf else "\n")


def _renderings(content: str, span: _Span, value: str) -> list[tuple[str, bool]]:
    """Candidate renderings of ``value``, best first; each with whether it is a keep-chomped (``+``) block."""
    original, nl = content[span.start:span.end], span.newline
    out: list[tuple[str, bool]] = []
    if span.style in ("|", ">"):
        header = BLOCK_HEADER.match(original)
        assert header is not None, "a block scalar starts with its header"
        indent = _content_indent(content, span, header)
        for chomp in _chomps(header.group("indicators"), value):
            rest = _with_chomp(header.group("indicators"), chomp) + header.group("rest")
            if span.style == ">":
                out.append((">" + rest + nl + _folded_body(value, indent, nl, _paragraphs(original, indent)), chomp == "+"))
            out.append(("|" + rest + nl + _literal_body(value, indent, nl), chomp == "+"))
    else:
        if "\n" not in value and "\r" not in value:
            out += [(text, False) for text in (_flow_scalar(value, span.style),) if text is not None]
        if "\n" in value.rstrip("\n") and value[:1] not in (" ", "\t"):  # readable multi-line text
            indent = _block_indent(content, span.start)
            for chomp in _chomps("", value):
                out.append(("|" + chomp + nl + _literal_body(value, indent, nl), chomp == "+"))
    out.append((_double_quoted(value), False))
    return out


BLOCK_HEADER = re.compile(r"[|>](?P<indicators>[-+]?[1-9]?[-+]?)(?P<rest>[^\r\n]*)")


def _chomps(indicators: str, value: str) -> list[str]:
    """Chomping indicators that can give ``value``'s trailing line breaks: the original's first if it can."""
    trailing = len(value) - len(value.rstrip("\n"))
    needed = "-" if trailing == 0 else ("" if trailing == 1 else "+")
    current = next((c for c in indicators if c in "+-"), "")
    fits = {"-": trailing == 0, "": trailing == 1, "+": trailing >= 1}[current]
    return [current, needed] if fits and current != needed else [needed]


def _with_chomp(indicators: str, chomp: str) -> str:
    digits = "".join(c for c in indicators if c.isdigit())
    return chomp + digits if indicators[:1] in ("+", "-") else digits + chomp


def _content_indent(content: str, span: _Span, header: re.Match[str]) -> str:
    """The indentation of a block scalar's content lines (from its indentation indicator, or measured)."""
    digits = "".join(c for c in header.group("indicators") if c.isdigit())
    if digits:
        line_start = content.rfind("\n", 0, span.start) + 1
        line = content[line_start:span.start]
        return " " * (len(line) - len(line.lstrip(" ")) + int(digits))
    lines = [line for line in content[span.start:span.end].splitlines()[1:] if line.strip()]
    if not lines:
        return _block_indent(content, span.start)
    return " " * min(len(line) - len(line.lstrip(" ")) for line in lines)


def _literal_body(value: str, indent: str, nl: str) -> str:
    """The content lines of a ``|`` block holding ``value`` (the header's chomping indicator fits it)."""
    body = value.rstrip("\n")
    lines = body.split("\n") if body else []
    trailing = len(value) - len(body)
    return "".join(((indent + line) if line else "") + nl for line in lines) + nl * max(trailing - 1, 0)


def _paragraphs(original: str, indent: str) -> dict[str, list[str]]:
    """A folded block's text lines (paragraphs) -> the source lines it was wrapped into."""
    groups: list[list[str]] = [[]]
    for line in original.splitlines()[1:]:
        text = line[len(indent):] if line.startswith(indent) else line.lstrip(" ")
        if text and text[0] not in " \t":
            groups[-1].append(text)
        elif groups[-1]:
            groups.append([])
    return {" ".join(group): group for group in groups if group}


def _folded_body(value: str, indent: str, nl: str, paragraphs: dict[str, list[str]]) -> str:
    """The content lines of a ``>`` block holding ``value``: unchanged paragraphs keep their wrapping.

    A line break between two text lines is written as a blank line (folding would turn a single break into
    a space); changed paragraphs are wrapped as wide as the original's widest line if it wrapped at all.
    """
    body = value.rstrip("\n")
    width = max((len(line) for lines in paragraphs.values() if len(lines) > 1 for line in lines), default=0)
    source: list[str] = []
    previous_text = False
    for line in body.split("\n") if body else []:
        text = bool(line) and line[0] not in " \t"
        if text and previous_text:
            source.append("")
        source += (paragraphs.get(line) or _wrapped(line, width)) if text else [line]
        previous_text = text if line else previous_text
    trailing = len(value) - len(body)
    return "".join(((indent + line) if line else "") + nl for line in source) + nl * max(trailing - 1, 0)


def _wrapped(line: str, width: int) -> list[str]:
    """``line`` cut at single spaces (where folding puts them back) into lines of at most ``width``."""
    if not width:
        return [line]
    lines: list[str] = []
    for word in re.split(r"(?<=[^ \t]) (?=[^ \t])", line):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _flow_scalar(value: str, style: str | None) -> str | None:
    """A one-line ``value`` in the original's plain or single-quoted style (None for double quotes)."""
    if style is None:
        return value
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    return None


def _placed(content: str, span: _Span, rendered: str, keep: bool) -> str:
    """``content`` with ``rendered`` in place of the old value; a keep-chomped block replaces its blank lines too."""
    end = span.node_end if keep and span.style in ("|", ">") else span.end
    ends_line, tail = content[span.start:end].endswith("\n"), content[end:]
    if ends_line and not rendered.endswith("\n"):
        rendered += span.newline
    elif rendered.endswith("\n") and not ends_line and (tail.startswith(("\n", "\r\n")) or not tail):
        rendered = rendered[:-len(span.newline)] if rendered.endswith(span.newline) else rendered[:-1]
    return content[:span.start] + rendered + tail


def _reads_back(updated: str, key: str, value: str, start: int, rendered: str) -> bool:
    """Whether ``updated`` holds exactly ``value`` at ``key``, written exactly where and as ``rendered``."""
    try:
        node = _yaml_scalar_node("<yaml>", updated, key, "config")
    except UserError:
        return False
    written = updated[start:node.end_mark.index].rstrip()
    return node.value == value and node.start_mark.index == start and written == rendered.rstrip()


def _double_quoted(value: str) -> str:
    """A YAML double-quoted scalar: JSON's escapes plus escapes for what YAML reads as line breaks or rejects."""
    return YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False))


def _block_indent(content: str, start: int) -> str:
    line_start = content.rfind("\n", 0, start) + 1
    line = content[line_start:start]
    return " " * (len(line) - len(line.lstrip(" ")) + 2)
