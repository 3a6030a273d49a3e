"""The requests to the reflection model: the prompt texts, the message builders, the response formats.

One request per move of gepa_bot/search/reflection.py: ``rewrite`` (the failures with their feedback, a complete new
prompt in a fence), ``simplify`` (a plain "rewrite it so a small model answers better", without failures),
``edit`` (one instruction sentence as JSON, INSTRUCTION_SCHEMA), ``rules`` (numbered statements from the
feedback to pick and condense, RULES_SCHEMA) and ``role`` (a system prompt from the task prompt, ROLE_SCHEMA).
The replies are parsed in gepa_bot/search/reflection_proposals.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from gepa_bot.discovery import placeholders_in
from gepa_bot.models.completion import is_loopback
from gepa_bot.search.edits import INSTRUCTION_SCHEMA
from gepa_bot.search.feedback_rules import Statement, extract_statements, record_id

MAX_EXAMPLES = 8

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
Write the complete new prompt inside ONE fenced block that opens with ````prompt and closes with ````.
Write nothing after the closing fence.{retry_note}"""
"""Deliberately without the failures: shown them, Qwen2.5-Coder-1.5B mostly returned the prompt unchanged. And
without a reason: asked for one first, it gave a usable rewrite of the tickets prompt 0 times in 12 (the prompt
unchanged 7 times, the placeholder dropped 3), against 6 in 12 without (bench/results/simplify-probe.md); the PR
states what the rewrite changed instead (reflection_proposals.rewrite_facts)."""

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

ROLE_INSTRUCTIONS = """A small language model gets a system prompt and a task prompt. The task prompt says what to do:
<<<
{task_prompt}
>>>

The current system prompt:
<<<
{current}
>>>

The system prompt should tell the model what it does and what its answer must look like. Write it as two
sentences, in the task prompt's own words: "task" starts with "You" and says what the model does; "answer" starts
with "Reply with" and says what the answer must look like (its form, not its content). Name no detail of a single
input. Never write curly braces.
Answer in JSON: {{"reason": "<what the current system prompt lacks, in one sentence>", "task": "You ...",
"answer": "Reply with ..."}}{retry_note}"""
"""For a context component (no placeholders; a sibling with placeholders states the task). Measured on
prompts.example: a plain rewrite of its one-line system prompt invented a task ("... find a root cause for an
intermittent crash"); a role line stating the task and the answer's form took val from 0.435 to 0.696 beside the
triage guide's definitions (bench/results/quickstart-2026-12-06.md)."""
MAX_TASK_PROMPT_CHARS = 1500


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


def brace_rule(current: str) -> str:
    """The edit and rules requests' rule on braces, naming the placeholders that stay."""
    kept = sorted(placeholders_in(current))
    return (f"Never write curly braces: the placeholders {', '.join(kept)} stay where they are." if kept
            else "Never write curly braces.")


def tried_list(tried: Sequence[str], ask: str) -> str:
    """The last five proposals of this parent that did not help, for the model to avoid ("" when none)."""
    return ("\nALREADY TRIED, DID NOT HELP (" + ask + "):\n" + "\n".join(f"- {t}" for t in tried[-5:]) + "\n"
            if tried else "")


def build_edit_messages(name: str, current: str, records: Sequence[Mapping[str, Any]], retry_note: str = "",
                        tried: Sequence[str] = ()) -> list[dict[str, str]]:
    content = EDIT_INSTRUCTIONS.format(name=name, current=current.rstrip("\n"), examples=render_failures(records),
                                       tried=tried_list(tried, "write something different"),
                                       placeholder_rule=brace_rule(current), retry_note=retry_note)
    return [{"role": "user", "content": content}]


def build_rules_messages(name: str, current: str, records: Sequence[Mapping[str, Any]], statements: Sequence[Statement],
                         retry_note: str = "", tried: Sequence[str] = ()) -> list[dict[str, str]]:
    """The ``rules`` request: numbered statements from the feedback, pick and condense (RULES_SCHEMA)."""
    content = RULES_INSTRUCTIONS.format(name=name, current=current.rstrip("\n"), statements=render_statements(statements),
                                        examples=render_failures(records, MAX_RULES_EXAMPLES),
                                        tried=tried_list(tried, "choose differently"),
                                        placeholder_rule=brace_rule(current), retry_note=retry_note)
    return [{"role": "user", "content": content}]



def build_role_messages(current: str, task_prompt: str, retry_note: str = "") -> list[dict[str, str]]:
    """The ``role`` request for a system prompt, shown the task prompt it goes with (ROLE_SCHEMA)."""
    content = ROLE_INSTRUCTIONS.format(task_prompt=task_prompt.strip()[:MAX_TASK_PROMPT_CHARS],
                                       current=current.strip(), retry_note=retry_note)
    return [{"role": "user", "content": content}]


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

