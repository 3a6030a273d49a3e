"""Edit-style proposals: the reflection model names a small edit, gepa-bot applies it deterministically.

A small model asked to rewrite a whole prompt tends to return it unchanged or mangled; asked for ONE
instruction sentence it writes usable rules. So in ``edit`` mode the model answers with JSON::

    {"rationale": "...", "edits": [{"op": "add", "target": "", "text": "Answer with one word."}]}

- ``add``: insert ``text`` as its own paragraph before the line that contains ``target``; with an empty
  target, before the input section (the label line above the first placeholder), else at the end.
- ``replace``: replace the one occurrence of ``target`` with ``text``.
- ``delete``: remove the one occurrence of ``target``.

Placeholders survive by construction: an edit may not put a placeholder in its text (new or duplicated)
and may not touch text that holds one. Targets must occur exactly once; edits may not overlap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gepa_bot.discovery import PLACEHOLDER, placeholder_problem

MAX_EDITS = 3
MAX_EDIT_CHARS = 500
INSTRUCTION_MAX_CHARS = 300
CUT_MARGIN = 8  # a text this close to its schema's maxLength, with no sentence end, was cut by the grammar
SENTENCE_ENDS = (".", "!", "?", ":", ";", '"', "'", ")", "`")
OPS = ("add", "replace", "delete")

INSTRUCTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "problem": {"type": "string", "maxLength": 240},
        "instruction": {"type": "string", "maxLength": INSTRUCTION_MAX_CHARS},
    },
    "required": ["problem", "instruction"],
    "additionalProperties": False,
}
"""The short form small models are asked for (and constrained to): one instruction sentence to add."""

RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "keep": {"type": "array", "minItems": 1, "maxItems": 8, "items": {"type": "integer", "minimum": 1}},
        "reason": {"type": "string", "maxLength": 240},
        "instruction": {"type": "string", "maxLength": MAX_EDIT_CHARS},
    },
    "required": ["keep", "reason", "instruction"],
    "additionalProperties": False,
}
"""The ``rules`` move: the numbers of the feedback's statements to keep, why, and their condensed wording."""

ROLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "maxLength": 240},
        "task": {"type": "string", "maxLength": 200},
        "answer": {"type": "string", "maxLength": 160},
    },
    "required": ["reason", "task", "answer"],
    "additionalProperties": False,
}
"""The ``role`` move: a system prompt as two sentences, what the model does and what its answer looks like."""

EDIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rationale": {"type": "string", "maxLength": 300},
        "edits": {
            "type": "array", "minItems": 1, "maxItems": MAX_EDITS,
            "items": {
                "type": "object",
                "properties": {
                    "op": {"type": "string", "enum": list(OPS)},
                    "target": {"type": "string", "maxLength": MAX_EDIT_CHARS},
                    "text": {"type": "string", "maxLength": MAX_EDIT_CHARS},
                },
                "required": ["op", "target", "text"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["rationale", "edits"],
    "additionalProperties": False,
}
"""The general form: up to three add/replace/delete edits (also accepted in replies)."""


class EditRejected(ValueError):
    """The edit cannot be applied; the message says why (it is shown to the model on retry)."""


@dataclass(frozen=True)
class Edit:
    op: Literal["add", "replace", "delete"]
    target: str = ""
    text: str = ""

    def describe(self) -> str:
        if self.op == "add":
            return f"add {self.text!r}"
        if self.op == "delete":
            return f"delete {self.target!r}"
        return f"replace {self.target!r} with {self.text!r}"


@dataclass(frozen=True)
class EditReply:
    rationale: str
    edits: list[Edit]


def parse_edit_reply(reply: str) -> EditReply:
    """The JSON object in ``reply`` (bare, or inside a code fence) as an :class:`EditReply`.

    Two forms: ``{"problem", "instruction"}`` (one sentence to add) or ``{"rationale", "edits": [...]}``.
    """
    data = _first_json_object(reply)
    if not isinstance(data, dict):
        raise EditRejected("no JSON object with \"instruction\" or \"edits\" in the reply")
    if "instruction" in data and "edits" not in data:
        text = whole_sentences(str(data.get("instruction") or "").strip(), INSTRUCTION_MAX_CHARS)
        if not text:
            raise EditRejected("the reply's \"instruction\" is empty")
        return EditReply(rationale=str(data.get("problem") or "").strip(), edits=[_edit_from({"op": "add", "text": text})])
    raw_edits = data.get("edits")
    if isinstance(raw_edits, dict):
        raw_edits = [raw_edits]
    if not isinstance(raw_edits, list) or not raw_edits:
        raise EditRejected("the reply's \"edits\" is missing or empty")
    if len(raw_edits) > MAX_EDITS:
        raise EditRejected(f"the reply has {len(raw_edits)} edits; at most {MAX_EDITS} are allowed")
    edits = [_edit_from(item) for item in raw_edits]
    return EditReply(rationale=str(data.get("rationale") or "").strip(), edits=edits)


@dataclass(frozen=True)
class RulesReply:
    keep: list[int]
    reason: str
    instruction: str


def parse_rules_reply(reply: str, count: int) -> RulesReply:
    """The ``{"keep", "reason", "instruction"}`` object in ``reply``; ``keep`` must name statements 1..count."""
    data = _first_json_object(reply)
    if not isinstance(data, dict) or "keep" not in data:
        raise EditRejected('no JSON object with "keep" in the reply')
    raw = data.get("keep")
    raw = raw if isinstance(raw, list) else [raw]
    keep: list[int] = []
    for item in raw:
        try:
            number = int(str(item).strip().strip("#."))
        except ValueError:
            continue
        if 1 <= number <= count and number not in keep:
            keep.append(number)
    if not keep:
        choices = "give the number 1" if count == 1 else f"give numbers from 1 to {count}"
        raise EditRejected(f'"keep" names no statement: {choices}')
    instruction = " ".join(str(data.get("instruction") or "").split())
    try:
        instruction = whole_sentences(instruction, MAX_EDIT_CHARS)
    except EditRejected:
        instruction = ""  # nothing whole: the chosen statements go in verbatim
    return RulesReply(keep=keep, reason=whole_reason(data, RULES_SCHEMA), instruction=instruction)


@dataclass(frozen=True)
class RoleReply:
    reason: str
    task: str
    answer: str


ANSWER_STARTS = ("Reply with", "Answer with", "Respond with")


def parse_role_reply(reply: str) -> RoleReply:
    """The ``{"reason", "task", "answer"}`` object in ``reply``; "task" must start with "You"."""
    data = _first_json_object(reply)
    if not isinstance(data, dict) or "task" not in data:
        raise EditRejected('no JSON object with "task" in the reply')
    task = whole_sentences(" ".join(str(data.get("task") or "").split()), ROLE_SCHEMA["properties"]["task"]["maxLength"])
    answer = whole_sentences(" ".join(str(data.get("answer") or "").split()),
                             ROLE_SCHEMA["properties"]["answer"]["maxLength"])
    if not task.startswith("You "):
        raise EditRejected(f'"task" must start with "You" and say what the model does, not {task[:60]!r}')
    if not answer.startswith(ANSWER_STARTS):
        raise EditRejected(f'"answer" must start with "Reply with" and say what the answer looks like, not {answer[:60]!r}')
    return RoleReply(reason=whole_reason(data, ROLE_SCHEMA), task=task, answer=answer)


def whole_reason(data: dict[str, Any], schema: dict[str, Any]) -> str:
    """The reply's "reason" without a sentence its schema's maxLength cut off ("" when nothing whole is left: the
    caller then states the facts of the change). Seen: "... without unnecessary units or additional\u8d58"."""
    reason = " ".join(str(data.get("reason") or "").split())
    try:
        return whole_sentences(reason, schema["properties"]["reason"]["maxLength"])
    except EditRejected:
        return ""


def whole_sentences(text: str, limit: int) -> str:
    """``text`` without a sentence the schema's ``maxLength`` cut off (a constrained reply stops mid-word at the
    limit: "..., if the ticket mentions 'billing' or 'invoice', it" went into a tickets prompt); EditRejected when
    no whole sentence is left. A text that ends well short of the limit is the model's own and kept as is."""
    if len(text) < limit - CUT_MARGIN or text.endswith(SENTENCE_ENDS):
        return text
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s)", text)]
    if not ends:
        raise EditRejected(f"the instruction was cut off at the {limit}-character limit; write one shorter sentence")
    return text[:ends[-1]].strip()


def _first_json_object(reply: str) -> Any:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", reply):
        try:
            value, _ = decoder.raw_decode(reply, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _edit_from(item: Any) -> Edit:
    if not isinstance(item, dict):
        raise EditRejected("each edit must be an object with op, target and text")
    op = str(item.get("op", "")).strip().lower()
    if op not in OPS:
        raise EditRejected(f"unknown edit op {op!r}; use one of {', '.join(OPS)}")
    target, text = str(item.get("target") or ""), str(item.get("text") or "").strip()
    if op in ("add", "replace") and not text:
        raise EditRejected(f"the {op} edit has no text")
    if op in ("replace", "delete") and not target.strip():
        raise EditRejected(f"the {op} edit has no target: copy the exact text to {op} from the prompt")
    if len(text) > MAX_EDIT_CHARS:
        raise EditRejected(f"the edit's text is {len(text)} chars; keep it under {MAX_EDIT_CHARS}")
    text = whole_sentences(text, MAX_EDIT_CHARS) if text else text
    return Edit(op=op, target=target, text=text)  # type: ignore[arg-type]


_PARAGRAPH_BREAK = re.compile(r"(\n[ \t]*\n+)")


def same_apart_from_whitespace(a: str, b: str) -> bool:
    """True when two prompts differ only in spacing and line wrapping: nothing a reviewer could merge."""
    return a.split() == b.split()


def same_words(a: str, b: str) -> bool:
    """True when two prompts have the same words in the same order: only punctuation, case or spacing differ
    (seen on incidents: a rewrite that added one comma, "Under our policy, P2 means ...", cost a minibatch)."""
    return words_of(a) == words_of(b)


def words_of(text: str) -> list[str]:
    """``text``'s words, lowercased, without punctuation."""
    return re.findall(r"\w+", text.lower())


def keep_wrapping(current: str, proposed: str) -> str:
    """``proposed`` with every paragraph whose words are unchanged taken verbatim from ``current``.

    A model that rewrites a whole prompt often re-wraps paragraphs it did not change; keeping the original
    wrapping keeps the diff to the lines that really changed (and what is measured is what is written).
    """
    originals = {tuple(part.split()): part for part in _PARAGRAPH_BREAK.split(current)[::2] if part.strip()}
    pieces = _PARAGRAPH_BREAK.split(proposed)
    for index in range(0, len(pieces), 2):
        original = originals.get(tuple(pieces[index].split()))
        if original is not None and pieces[index].strip():
            pieces[index] = original
    return "".join(pieces)


def apply_edits(current: str, edits: Sequence[Edit]) -> str:
    """``current`` with every edit applied, or EditRejected (placeholder, anchor, overlap, no-op)."""
    if not edits:
        raise EditRejected("no edits")
    spans = sorted((_span(current, edit), index) for index, edit in enumerate(edits))
    for (first, _), (second, _) in zip(spans, spans[1:], strict=False):
        if second[0] < first[1] or (second[0] == first[0] and first[0] == first[1] == second[1]):
            raise EditRejected("two edits overlap: make one edit per place")
    text = current
    for (start, end), index in reversed(spans):
        after_newline = text[:start].endswith("\n") or not text[:start]
        text = text[:start] + _replacement(edits[index], at_end=start == len(text), after_newline=after_newline) + text[end:]
    text = tidy_blank_lines(text)
    if same_apart_from_whitespace(text, current):
        raise EditRejected("the edits leave the prompt unchanged")
    problem = placeholder_problem(current, text)
    if problem:  # unreachable by construction; a last guard
        raise EditRejected(f"the edited prompt {problem}")
    return text


def _span(current: str, edit: Edit) -> tuple[int, int]:
    if PLACEHOLDER.search(edit.text):
        raise EditRejected(f"the edit's text {edit.text!r} contains a placeholder; placeholders are kept as they are, "
                           "write plain text")
    if edit.op == "add":
        if normalized(edit.text) in normalized(current):
            raise EditRejected(f"{edit.text!r} is already in the prompt")
        if not edit.target.strip():
            point = default_insertion_point(current)
            return point, point
        start, _ = _find_once(current, edit.target)
        point = current.rfind("\n", 0, start) + 1
        return point, point
    start, end = _find_once(current, edit.target)
    if PLACEHOLDER.search(current[start:end]):
        raise EditRejected(f"the target {edit.target!r} holds a placeholder; edits may not touch placeholders")
    return start, end


def _find_once(current: str, target: str) -> tuple[int, int]:
    """The span of ``target`` in ``current``: exact, else ignoring case and runs of white space."""
    count = current.count(target)
    if count == 1:
        start = current.index(target)
        return start, start + len(target)
    if count == 0:
        pattern = r"\s+".join(re.escape(word) for word in target.split())
        matches = list(re.finditer(pattern, current, flags=re.IGNORECASE)) if pattern else []
        if len(matches) == 1:
            return matches[0].span()
        count = len(matches)
    if count == 0:
        raise EditRejected(f"the target {target.strip()!r} is not in the prompt: copy it exactly")
    raise EditRejected(f"the target {target.strip()!r} occurs {count} times; quote a longer, unique part")


def _replacement(edit: Edit, *, at_end: bool, after_newline: bool) -> str:
    if edit.op == "add" and at_end:
        return ("" if after_newline else "\n") + edit.text + "\n"
    if edit.op == "add":
        return edit.text + "\n\n"
    if edit.op == "replace":
        return edit.text
    return ""


def default_insertion_point(current: str) -> int:
    """Where a new instruction goes: before the input section (the label line above the first placeholder,
    e.g. ``Ticket:``), else after the last line. A question after the last placeholder ("{quantity}\nHow long is
    that?") takes the instruction after it, where it constrains the answer: on examples/pytest-metres the same
    sentence scored 11/20 there and 5/20 before the input (bench/results/metres-2026-12-06.md)."""
    match = PLACEHOLDER.search(current)
    if not match or ends_with_question(current):
        return len(current)
    line_start = current.rfind("\n", 0, match.start()) + 1
    if current[line_start:match.start()].strip():
        return line_start  # "Ticket: {ticket}": before that line
    previous_start = current.rfind("\n", 0, max(0, line_start - 1)) + 1
    previous = current[previous_start:line_start].strip()
    if previous and previous.endswith(":") and len(previous) <= 40:
        return previous_start  # a short label line such as "Ticket:" belongs with its placeholder
    return line_start


def ends_with_question(current: str) -> bool:
    """True when the text after the last placeholder ends with a question (its last non-empty line ends with "?")."""
    *_, last = PLACEHOLDER.finditer(current)
    lines = [line.strip() for line in current[last.end():].splitlines() if line.strip()]
    return bool(lines) and lines[-1].endswith("?")


def with_final_newline_of(original: str, text: str) -> str:
    """``text`` ending in a newline when ``original`` does (a prompt file's trailing-newline convention)."""
    return text + "\n" if original.endswith("\n") and not text.endswith("\n") else text


def tidy_blank_lines(text: str) -> str:
    """Collapse the blank lines an edit may leave (three or more newlines become two)."""
    return re.sub(r"\n{3,}", "\n\n", text)


def normalized(text: str) -> str:
    return " ".join(text.lower().split())
