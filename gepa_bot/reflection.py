"""Reflective mutation: the LLM reads feedback, writes a rationale, then proposes a new prompt.

This is gepa's ``reflection_strategy`` (ReflectionLM protocol). Owning it lets us keep the rationale
of every candidate and refuse bad proposals before a single rollout is spent on them. Two styles:

- ``rewrite``: the complete new prompt in a fence (GEPA's own way; for strong models). Refused: no
  closed fence (truncated reply), empty or unchanged text, placeholders dropped or invented.
- ``edit``: one small JSON edit (gepa_bot/edits.py) applied deterministically; for small models.
  Constrained decoding (JSON schema) is requested where the server supports it, and the model is
  told which edits of the same parent were already tried without success.
- ``mixed``: rotates four moves: ``rules`` (the model picks, by number, which general statements of the
  failures' feedback to add, and condenses them; gepa_bot/feedback_rules.py), ``example`` (when the feedback
  says the answer's form was wrong: one train instance with its expected answer as an example line, no LLM
  call), a plain rewrite ("so that a small model answers it better") and an edit. A move with nothing to work
  on hands over to the next. GEPA's minibatch check and the val set decide which proposals stay, as for any
  other proposal, except the first few (warm start): those rewrites go to the val set without the minibatch
  gate, as in a best-of-N search (engine.ValGate).

Every proposal but a worked example passes the generality guard first: a new phrase that only one training
instance's input/feedback contains ("an export feature in Firefox") is refused, and the model retried with
the reason. Each proposal keeps the model's own reason and the ids of the failures it was shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gepa.proposer.reflective_mutation.reflection_lm import ReflectionProposal

from gepa_bot.adapter import SearchStatus
from gepa_bot.budget import BudgetExhausted
from gepa_bot.cache import candidate_hash
from gepa_bot.completion import is_loopback
from gepa_bot.discovery import placeholder_problem, placeholders_in
from gepa_bot.edits import INSTRUCTION_SCHEMA, RULES_SCHEMA, Edit, EditRejected, apply_edits, parse_edit_reply, parse_rules_reply
from gepa_bot.errorpolicy import RunStopped
from gepa_bot.errors import describe_error
from gepa_bot.feedback_rules import (
    STOPWORDS,
    Statement,
    covered_by,
    extract_statements,
    record_id,
    specific_phrases,
    stated_labels,
    worked_example,
)
from gepa_bot.llm import LLM, LLMError
from gepa_bot.runlog import RunLog

FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w-]*)[ \t]*$", re.MULTILINE)
RATIONALE_HEADING = re.compile(r"^\s*(?:#+\s*)?[*_]*\s*(?:rationale|reason)\s*[*_]*\s*:?\s*[*_]*\s*", re.IGNORECASE)
MAX_EXAMPLES = 8
MAX_GROWTH = 4  # a proposal may be at most this many times longer than the current text (+ 2000 chars)

INSTRUCTIONS = """You improve one prompt of a software system, using results from its evaluation suite.

## Current prompt (component `{name}`)
````prompt
{current}
````

{placeholder_rule}

## Evaluation results with feedback (worst first)
{examples}
{statements}
## Your task
1. Write "Rationale:" followed by 2-5 sentences: what the failures have in common and what to change.
2. Then write the complete new prompt inside ONE fenced block that opens with ````prompt and closes with ````.
Write nothing after the closing fence.{retry_note}"""


EDIT_INSTRUCTIONS = """A small language model answers with the prompt below, and an evaluation checks its answers.

PROMPT (component `{name}`):
<<<
{current}
>>>

WRONG ANSWERS, with the evaluation's feedback:
{examples}
{tried}
What should the model do differently? The feedback usually says it (the expected answer, the right form of the
answer, what went wrong). Write ONE instruction sentence for the model that would have fixed most of these answers,
as a direct order, e.g. "Answer with ..." or "If ..., then ...". It is added to the prompt as it is, so it must make
sense for every future input: state the general rule, and do not name details of these examples (products, people,
places, numbers). {placeholder_rule}
Answer in JSON: {{"problem": "<what went wrong, in one sentence>", "instruction": "<the instruction sentence>"}}{retry_note}"""

SIMPLIFY_INSTRUCTIONS = """Rewrite the prompt below so that a small language model answers it better.

````prompt
{current}
````

{placeholder_rule}
First write "Reason:" and ONE sentence: what you change and why.
Then write the complete new prompt inside ONE fenced block that opens with ````prompt and closes with ````.
Write nothing after the closing fence.{retry_note}"""
"""Deliberately without the failures: shown them, Qwen2.5-Coder-1.5B mostly returned the prompt unchanged."""

MAX_EDIT_EXAMPLES = 5

RULES_INSTRUCTIONS = """A small language model answers with the prompt below, and an evaluation checks its answers.

PROMPT (component `{name}`):
<<<
{current}
>>>

The evaluation's feedback on its wrong answers states these rules (in brackets: how many wrong answers said it):
{statements}

Some of the wrong answers:
{examples}
{tried}
Which of these numbered rules should the prompt state, so that the model gets such answers right? Choose their
numbers, then write them as ONE instruction for the model (one to three direct sentences), in the rules' own
words: keep their names, labels and definitions, add nothing they do not say, and name no detail of the
examples. {placeholder_rule}
Answer in JSON: {{"keep": [<numbers>], "reason": "<why these rules, in one sentence>",
"instruction": "<the instruction>"}}{retry_note}"""
MAX_RULES_EXAMPLES = 3
GROUNDED_SHARE = 0.7  # of an instruction's content words that must come from the kept rules, the prompt or the labels


@dataclass
class Proposal:
    """A parsed reflection answer."""

    rationale: str
    text: str
    summary: str = ""  # what an edit changed, e.g. "add 'Answer in one word.'" (edit style)
    kind: str = "rewrite"  # "rewrite" | "simplify" | "edit" | "rules" | "example"
    failure_ids: tuple[str, ...] = ()  # the failing instances the proposal was made from


class ProposalRejected(ValueError):
    """The reply cannot be used; the message says why."""


def parse_reply(reply: str, current: str) -> Proposal:
    """Split a reply into rationale and new prompt, refusing truncated or malformed answers."""
    opening = FENCE_OPEN.search(reply)
    if not opening:
        raise ProposalRejected("no fenced prompt block in the reply")
    fence = opening.group("fence")
    closing = re.compile(rf"^{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
    end = closing.search(reply, opening.end()) or _short_closing_fence(reply, opening.end(), fence)
    if not end:
        raise ProposalRejected("the fenced prompt block is never closed (reply truncated?)")
    text = reply[opening.end():end.start()].strip("\n")
    if not opening.group("lang"):
        text = re.sub(r"\A[ \t]*prompt[ \t]*\n", "", text)  # ```` then "prompt" on its own line
    rationale = RATIONALE_HEADING.sub("", reply[:opening.start()].strip())
    if not text.strip():
        raise ProposalRejected("the proposed prompt is empty")
    if text.strip() == current.strip():
        raise ProposalRejected("the proposed prompt is identical to the current one")
    if len(text) > MAX_GROWTH * len(current) + 2000:
        raise ProposalRejected(f"the proposed prompt is {len(text)} chars, far longer than the current {len(current)}")
    problem = placeholder_problem(current, text)
    if problem:
        raise ProposalRejected(f"the proposed prompt {problem}")
    if current.endswith("\n") and not text.endswith("\n"):
        text += "\n"  # keep the file's trailing-newline convention
    return Proposal(rationale=rationale or "(no rationale given)", text=text)


def _short_closing_fence(reply: str, start: int, fence: str) -> re.Match[str] | None:
    """A closing fence shorter than the opening one (````prompt ... ```), accepted only as the reply's last line.

    Small models often close a four-backtick block with three. Anywhere else a shorter fence may belong to
    the prompt itself (a code example), so the block is only taken when nothing follows that line.
    """
    short_at_end = re.compile(rf"^{re.escape(fence[0])}{{3,{len(fence) - 1}}}[ \t]*$(?=\s*\Z)", re.MULTILINE)
    return short_at_end.search(reply, start)


def render_examples(records: Sequence[Mapping[str, Any]]) -> str:
    """The reflective dataset as readable Markdown, lowest scores first."""
    ordered = sorted(records, key=lambda r: r.get("score", 0.0))[:MAX_EXAMPLES]
    blocks = []
    for number, record in enumerate(ordered, start=1):
        outputs = record.get("Generated Outputs", "")
        if not isinstance(outputs, str):
            outputs = json.dumps(outputs, ensure_ascii=False)
        blocks.append(f"### Example {number} (score {record.get('score', 0):g})\n"
                      f"Instance: {json.dumps(record.get('Inputs', {}), ensure_ascii=False)}\n"
                      f"Output: {outputs[:800]}\nFeedback: {str(record.get('Feedback', ''))[:1500]}")
    return "\n\n".join(blocks) or "(no examples)"


def render_statements(statements: Sequence[Statement]) -> str:
    return "\n".join(f"{n}. {s.text} [{s.support}]" for n, s in enumerate(statements, start=1))


def build_messages(name: str, current: str, records: Sequence[Mapping[str, Any]], retry_note: str = "") -> list[dict[str, str]]:
    kept = sorted(placeholders_in(current))
    rule = ("## Placeholders\nThe prompt is a template. Keep these placeholders exactly as written: "
            + ", ".join(kept) + ". Do not add other placeholders in braces.") if kept else \
        "## Placeholders\nThe prompt has no placeholders; do not add any text in curly braces."
    statements = extract_statements(records, current)
    stated = ("\n## Rules the feedback states (in brackets: how many results said it)\n" + render_statements(statements)
              + "\nState the ones that apply in the new prompt, in their own words; do not name details of single "
              "examples.\n") if statements else ""
    content = INSTRUCTIONS.format(name=name, current=current, placeholder_rule=rule, statements=stated,
                                  examples=render_examples(records), retry_note=retry_note)
    return [{"role": "user", "content": content}]


def build_simplify_messages(current: str, retry_note: str = "") -> list[dict[str, str]]:
    """The plain "rewrite it so a small model answers better" request, as in the bench's best-of-N arm."""
    kept = sorted(placeholders_in(current))
    rule = (f"Keep the placeholder{'s' if len(kept) > 1 else ''} {', '.join(kept)} exactly as written, once each; "
            "do not add other text in curly braces.") if kept else "Do not add any text in curly braces."
    content = SIMPLIFY_INSTRUCTIONS.format(current=current.rstrip("\n"), placeholder_rule=rule, retry_note=retry_note)
    return [{"role": "user", "content": content}]


def parse_edit_proposal(reply: str, current: str) -> Proposal:
    """An edit reply applied to ``current``; EditRejected/ProposalRejected say why it cannot be used."""
    try:
        parsed = parse_edit_reply(reply)
        text = apply_edits(current, parsed.edits)
    except EditRejected as exc:
        raise ProposalRejected(str(exc)) from None
    leaked = _reply_format_leak(parsed.edits, current)
    if leaked:
        raise ProposalRejected(leaked)
    if current.endswith("\n") and not text.endswith("\n"):
        text += "\n"
    summary = "; ".join(e.describe() for e in parsed.edits)
    return Proposal(rationale=parsed.rationale or summary, text=text, summary=summary, kind="edit")


def _reply_format_leak(edits: Sequence[Edit], current: str) -> str | None:
    """Why an edit that asks for JSON, the format of the reflection's own constrained answer, is refused.

    Seen with Qwen2.5-Coder-1.5B: "The model should answer with the prompt in JSON format, ...". A prompt that
    already speaks of JSON may well want more of it, so the check applies only when it does not.
    """
    if "json" in current.lower():
        return None
    for edit in edits:
        if "json" in edit.text.lower():
            return (f"the edit {edit.text[:80]!r} asks for JSON, the format of this reflection answer, "
                    "which the prompt never asks for")
    return None


def render_failures(records: Sequence[Mapping[str, Any]], limit: int = MAX_EDIT_EXAMPLES) -> str:
    """Up to ``limit`` of the lowest-scored records, compact (small models have small attention spans)."""
    ordered = sorted(records, key=lambda r: r.get("score", 0.0))
    failing = [r for r in ordered if r.get("score", 0.0) < 1.0] or ordered
    lines = []
    for number, record in enumerate(failing[:limit], start=1):
        outputs = record.get("Generated Outputs", "")
        if not isinstance(outputs, str):
            outputs = json.dumps(outputs, ensure_ascii=False)
        lines.append(f"{number}. model output: {outputs[:160]!r}\n"
                     f"   feedback (score {record.get('score', 0):g}): {str(record.get('Feedback', ''))[:500]}")
    return "\n".join(lines) or "(no examples)"


def build_edit_messages(name: str, current: str, records: Sequence[Mapping[str, Any]], retry_note: str = "",
                        tried: Sequence[str] = ()) -> list[dict[str, str]]:
    kept = sorted(placeholders_in(current))
    rule = (f"Never write curly braces: the placeholders {', '.join(kept)} stay where they are." if kept
            else "Never write curly braces.")
    tried_text = ("\nALREADY TRIED, DID NOT HELP (write something different):\n"
                  + "\n".join(f"- {t}" for t in tried[-5:]) + "\n") if tried else ""
    content = EDIT_INSTRUCTIONS.format(name=name, current=current.rstrip("\n"), examples=render_failures(records),
                                       tried=tried_text, placeholder_rule=rule, retry_note=retry_note)
    return [{"role": "user", "content": content}]


def build_rules_messages(name: str, current: str, records: Sequence[Mapping[str, Any]], statements: Sequence[Statement],
                         retry_note: str = "", tried: Sequence[str] = ()) -> list[dict[str, str]]:
    """The ``rules`` request: numbered statements from the feedback, pick and condense (RULES_SCHEMA)."""
    kept = sorted(placeholders_in(current))
    rule = (f"Never write curly braces: the placeholders {', '.join(kept)} stay where they are." if kept
            else "Never write curly braces.")
    tried_text = ("\nALREADY TRIED, DID NOT HELP (choose differently):\n"
                  + "\n".join(f"- {t}" for t in tried[-5:]) + "\n") if tried else ""
    content = RULES_INSTRUCTIONS.format(name=name, current=current.rstrip("\n"), statements=render_statements(statements),
                                        examples=render_failures(records, MAX_RULES_EXAMPLES), tried=tried_text,
                                        placeholder_rule=rule, retry_note=retry_note)
    return [{"role": "user", "content": content}]


def parse_rules_proposal(reply: str, current: str, statements: Sequence[Statement],
                         records: Sequence[Mapping[str, Any]]) -> Proposal:
    """The chosen statements added to ``current``: in the model's condensed wording when that is grounded in them
    (GROUNDED_SHARE of its content words from the kept statements, the prompt or the stated labels), else verbatim."""
    try:
        parsed = parse_rules_reply(reply, len(statements))
    except EditRejected as exc:
        raise ProposalRejected(str(exc)) from None
    chosen = [statements[n - 1] for n in parsed.keep]
    vocabulary = " ".join([current, *(s.text for s in chosen), *stated_labels(records)])
    wording = parsed.instruction if parsed.instruction and grounded(parsed.instruction, vocabulary) else \
        " ".join(_as_sentence(s.text) for s in chosen)
    try:
        text = apply_edits(current, [Edit("add", "", wording)])
    except EditRejected as exc:
        raise ProposalRejected(str(exc)) from None
    if current.endswith("\n") and not text.endswith("\n"):
        text += "\n"
    ids = tuple(dict.fromkeys(i for s in chosen for i in s.ids))
    numbers = ", ".join(str(n) for n in parsed.keep)
    summary = f"add rules {numbers} from the feedback: {wording!r}"
    reason = usable_reason(parsed.reason, records, current) or f"The feedback on these failures states: {_quote_all(chosen)}"
    return Proposal(rationale=reason, text=text, summary=summary, kind="rules", failure_ids=ids)


MAX_REASON_CHARS = 240


def usable_reason(reason: str, records: Sequence[Mapping[str, Any]], current: str) -> str | None:
    """The model's own reason, unless it is empty, long, or retells single examples (seen with the 1.5B model:
    "The prompt should state 'To determine the total number of pencils Zoe buys ...'"); then None."""
    reason = " ".join(reason.split())
    if not reason or len(reason) > MAX_REASON_CHARS:
        return None
    return None if specific_phrases(reason, records, current, extract_statements(records, current)) else reason


def grounded(instruction: str, vocabulary: str) -> bool:
    """True when most content words of ``instruction`` occur in ``vocabulary`` (nothing invented)."""
    known = {w.lower() for w in re.findall(r"[A-Za-z0-9_]+", vocabulary)}
    words = [w.lower() for w in re.findall(r"[A-Za-z0-9_]+", instruction) if w.lower() not in STOPWORDS]
    return bool(words) and sum(w in known or w.rstrip("s") in known for w in words) >= GROUNDED_SHARE * len(words)


def _as_sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def _quote_all(statements: Sequence[Statement]) -> str:
    return "; ".join(repr(s.text) for s in statements)


def example_proposal(current: str, records: Sequence[Mapping[str, Any]]) -> Proposal | None:
    """A worked example (no LLM call) when the failures are about the answer's form; None when there is none."""
    example = worked_example(records, current)
    if example is None:
        return None
    try:
        text = apply_edits(current, [Edit("add", "", example.line())])
    except EditRejected:
        return None
    if current.endswith("\n") and not text.endswith("\n"):
        text += "\n"
    form_ids = [record_id(r) for r in records if float(r.get("score", 0.0)) < 1.0]
    rationale = (f"The feedback on failures {', '.join(form_ids)} says the answer's form was wrong; this shows train "
                 f"instance {example.instance_id} with its expected answer ({example.expected}).")
    return Proposal(rationale=rationale, text=text, summary=f"add example {example.instance_id}", kind="example",
                    failure_ids=tuple(form_ids))


def guard_generality(proposal: Proposal, current: str, records: Sequence[Mapping[str, Any]]) -> None:
    """ProposalRejected when the new text quotes a phrase that only one training instance's input/feedback has."""
    if proposal.kind == "example" or not records:
        return
    added = " ".join(line for line in re.split(r"(?<=[.!?])\s+|\n+", proposal.text)
                     if line.strip() and not covered_by(line, current))
    phrases = specific_phrases(added, records, current, extract_statements(records, current))
    if phrases:
        shown = ", ".join(f"{p!r} (only in {i})" for p, i in phrases[:3])
        raise ProposalRejected(f"the new text names details of single training examples: {shown}; state the general "
                               "rule instead")


def with_schema(response_format: dict[str, Any] | None, schema: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The same constrained mode as ``response_format``, for another JSON schema."""
    if not response_format:
        return None
    if response_format.get("type") == "json_schema":
        return {**response_format, "json_schema": {**response_format["json_schema"], "name": name, "schema": schema}}
    return {**response_format, "schema": schema}


def shown_ids(records: Sequence[Mapping[str, Any]], limit: int) -> tuple[str, ...]:
    """The ids of the failing records a request shows (lowest scores first, as the renderers order them)."""
    ordered = sorted(records, key=lambda r: r.get("score", 0.0))
    failing = [r for r in ordered if r.get("score", 0.0) < 1.0]
    return tuple(i for i in (record_id(r) for r in failing[:limit]) if i)


def edit_response_format(model: str, api_base: str | None) -> dict[str, Any] | None:
    """The ``response_format`` that constrains a reply to INSTRUCTION_SCHEMA, or None when the model has no such mode.

    llama.cpp's server (our embedded models, and any loopback OpenAI-compatible server) takes a JSON
    schema in ``json_object`` mode and turns it into a grammar; hosted models get OpenAI-style structured
    outputs when litellm says they support them.
    """
    if is_loopback(api_base):
        return {"type": "json_object", "schema": INSTRUCTION_SCHEMA}
    try:
        import litellm

        if litellm.supports_response_schema(model=model):
            return {"type": "json_schema", "json_schema": {"name": "prompt_edit", "schema": INSTRUCTION_SCHEMA,
                                                           "strict": True}}
    except Exception:  # unknown to litellm's model table: no constrained mode, the text format still parses
        pass
    return None


MIXED_ROTATION = ("rules", "example", "simplify", "edit")
"""The ``mixed`` style's moves, in turn; a move with nothing to work on hands over (see RationaleReflector.next_kind)."""


def motivated(rationale: str, ids: Sequence[str]) -> str:
    """The rationale with the failures that motivated it, as the PR shows it."""
    return f"{rationale} (failures: {', '.join(ids)})" if ids else rationale


@dataclass
class RationaleReflector:
    """gepa ReflectionLM that records a rationale per proposed candidate and rejects bad replies."""

    llm: LLM
    runlog: RunLog
    attempts: int = 2
    style: str = "rewrite"  # "rewrite" | "edit" | "mixed"
    # constrained decoding for edit replies: the format, or a zero-argument function that computes it when the
    # first edit is asked for (for a hosted model that reads litellm's model table: a run that asks for no edit,
    # a rewrite-style one, never imports litellm)
    response_format: dict[str, Any] | Callable[[], dict[str, Any] | None] | None = None
    rationales: dict[str, dict[str, str]] = field(default_factory=dict)  # child hash -> component -> rationale
    motivations: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # child hash -> component -> failure ids
    kinds: dict[str, dict[str, str]] = field(default_factory=dict)  # child hash -> component -> move
    rejected: list[dict[str, str]] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)  # candidate hashes GEPA kept (scored on val)
    errors: list[dict[str, str]] = field(default_factory=list)  # our own bugs: gepa would only log them
    tried: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)  # (parent, comp) -> (child, what)
    examples_tried: set[tuple[str, str]] = field(default_factory=set)  # (parent, comp) that got a worked example
    calls: int = 0  # proposals asked for so far; ``mixed`` rotates on it
    warm_start_rewrites: int = 0  # the first N reflections are plain rewrites that skip the minibatch gate
    reflections: int = 0
    ungated: set[str] = field(default_factory=set)  # candidate hashes of warm-start rewrites: scored on val as is
    status: SearchStatus | None = None  # counts for the progress line

    def reflect(self, candidate: dict[str, str], reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]],
                components_to_update: list[str]) -> tuple[ReflectionProposal, RationaleReflector]:
        proposal = ReflectionProposal(new_texts={})
        results: dict[str, Proposal] = {}
        parent_hash = candidate_hash(candidate)
        warm = self.reflections < self.warm_start_rewrites
        self.reflections += 1
        for name in components_to_update:
            records = reflective_dataset.get(name) or []
            if not records:
                continue
            try:
                result = self._propose_one(name, candidate[name], records, proposal, parent_hash,
                                           kind="simplify" if warm else None)
            except (BudgetExhausted, RunStopped):  # a stop, not a bug of ours
                raise
            except Exception as exc:
                self.errors.append(describe_error(f"reflection on {name}", exc))
                self.runlog.write("search_error", **self.errors[-1])
                raise
            if result:
                proposal.new_texts[name] = result.text
                results[name] = result
        if proposal.new_texts:
            self._record(parent_hash, {**candidate, **proposal.new_texts}, results, warm)
        return proposal, self

    def _record(self, parent_hash: str, child: dict[str, str], results: Mapping[str, Proposal], warm: bool) -> None:
        child_hash = candidate_hash(child)
        self.rationales[child_hash] = {n: motivated(r.rationale, r.failure_ids) for n, r in results.items()}
        self.motivations[child_hash] = {n: list(r.failure_ids) for n, r in results.items()}
        self.kinds[child_hash] = {n: r.kind for n, r in results.items()}
        if warm:
            self.ungated.add(child_hash)
        for name, result in results.items():
            if result.kind in ("edit", "rules"):  # listed as "tried, did not help"; rewrites are not edits
                self.tried.setdefault((parent_hash, name), []).append((child_hash, result.summary or result.rationale))
            if result.kind == "example":
                self.examples_tried.add((parent_hash, name))
        self.runlog.write("proposal", parent=parent_hash, child=child_hash, rationale=self.rationales[child_hash],
                          kinds=self.kinds[child_hash], failures=self.motivations[child_hash],
                          texts={n: child[n] for n in results})
        if self.status:
            self.status.proposals += 1

    def failed_before(self, parent_hash: str, name: str) -> list[str]:
        """What earlier proposals from this parent changed, for those GEPA did not keep."""
        return [what for child, what in self.tried.get((parent_hash, name), []) if child not in self.accepted]

    def next_kind(self, current: str = "", records: Sequence[Mapping[str, Any]] = (), parent_hash: str = "",
                  name: str = "") -> str:
        """What to ask for next. ``mixed`` rotates MIXED_ROTATION; ``example`` without a form failure (or once one
        was tried on this parent) hands over to ``rules``, and ``rules`` without general statements in the feedback
        to a plain rewrite or an edit, alternating."""
        self.calls += 1
        if self.style != "mixed":
            return self.style
        kind = MIXED_ROTATION[(self.calls - 1) % len(MIXED_ROTATION)]
        if kind == "example" and ((parent_hash, name) in self.examples_tried or worked_example(records, current) is None):
            kind = "rules"
        if kind == "rules" and not extract_statements(records, current):
            kind = "simplify" if self.calls % 2 else "edit"  # nothing stated: the plain alternation
        return kind

    def _messages(self, kind: str, name: str, current: str, records: Sequence[Mapping[str, Any]], retry_note: str,
                  parent_hash: str, statements: Sequence[Statement] = ()) -> list[dict[str, str]]:
        if kind == "edit":
            return build_edit_messages(name, current, records, retry_note, self.failed_before(parent_hash, name))
        if kind == "rules":
            return build_rules_messages(name, current, records, statements, retry_note,
                                        self.failed_before(parent_hash, name))
        if kind == "simplify":
            return build_simplify_messages(current, retry_note)
        return build_messages(name, current, records, retry_note)

    @staticmethod
    def _parse(kind: str, reply: str, current: str, records: Sequence[Mapping[str, Any]] = (),
               statements: Sequence[Statement] = ()) -> Proposal:
        if kind == "edit":
            proposal = parse_edit_proposal(reply, current)
            proposal.failure_ids = shown_ids(records, MAX_EDIT_EXAMPLES)
            proposal.rationale = usable_reason(proposal.rationale, records, current) or proposal.summary
        elif kind == "rules":
            proposal = parse_rules_proposal(reply, current, statements, records)
        else:
            proposal = parse_reply(reply, current)
            proposal.kind = kind
            proposal.failure_ids = () if kind == "simplify" else shown_ids(records, MAX_EXAMPLES)
            if kind == "simplify":
                proposal.summary = f"rewrite ({len(current)} -> {len(proposal.text)} chars)"
                if proposal.rationale == "(no rationale given)":
                    proposal.rationale = (f"Plain rewrite, {len(current)} -> {len(proposal.text)} chars; the model was "
                                          "shown no failures and gave no reason.")
        guard_generality(proposal, current, records)
        return proposal

    def simplify(self, name: str, current: str) -> Proposal | None:
        """One feedback-free "rewrite it so a small model answers better" proposal (retries and rejection
        rules as in the search); None when every attempt was rejected. The bench's best-of-N arm uses it."""
        return self._propose_one(name, current, [], ReflectionProposal(new_texts={}), kind="simplify")

    def _propose_one(self, name: str, current: str, records: Sequence[Mapping[str, Any]],
                     proposal: ReflectionProposal, parent_hash: str = "", kind: str | None = None) -> Proposal | None:
        retry_note = ""
        kind = kind or self.next_kind(current, records, parent_hash, name)
        if kind == "example":
            return example_proposal(current, records)
        statements = extract_statements(records, current) if kind == "rules" else []
        params = self._format_params(kind)
        for attempt in range(1, self.attempts + 1):
            messages = self._messages(kind, name, current, records, retry_note, parent_hash, statements)
            try:
                reply = self.llm.complete(messages, purpose=f"reflect:{name}", params=params)
            except LLMError as exc:
                self._reject(name, attempt, f"LLM call failed: {exc}")
                return None
            except (BudgetExhausted, RunStopped):
                raise
            proposal.prompts[name] = messages[0]["content"]
            proposal.raw_lm_outputs[name] = reply.text
            try:
                return self._parse(kind, reply.text, current, records, statements)
            except ProposalRejected as exc:
                self._reject(name, attempt, str(exc), reply.text)
                retry_note = self._retry_note(kind, exc)
        return None

    def _format_params(self, kind: str) -> dict[str, Any]:
        if kind not in ("edit", "rules"):
            return {}
        if callable(self.response_format):
            self.response_format = self.response_format()
        fmt = self.response_format if kind == "edit" else with_schema(self.response_format, RULES_SCHEMA, "prompt_rules")
        return {"response_format": fmt} if fmt else {}

    @staticmethod
    def _retry_note(kind: str, exc: ProposalRejected) -> str:
        if kind == "simplify" and "identical" in str(exc):
            return ("\n\nYour previous answer repeated the prompt unchanged. Write a different prompt: shorter, "
                    "with plainer words and a clear rule for the answer.")
        return f"\n\nYour previous answer was rejected: {exc}. Follow the format exactly."

    def _reject(self, name: str, attempt: int, reason: str, reply: str = "") -> None:
        entry = {"component": name, "attempt": str(attempt), "reason": reason, "reply_excerpt": reply[:300]}
        self.rejected.append(entry)
        if self.status:
            self.status.rejected_replies += 1
        self.runlog.write("rejected_proposal", **entry)
