"""Reflective mutation: the LLM reads feedback, writes a rationale, then the new prompt in a fence.

This is gepa's ``reflection_strategy`` (ReflectionLM protocol). Owning it lets us keep the rationale
of every candidate and refuse bad proposals before a single rollout is spent on them: no closed fence
(truncated reply), empty or unchanged text, or placeholders dropped/invented.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gepa.proposer.reflective_mutation.reflection_lm import ReflectionProposal

from gepa_bot.budget import BudgetExhausted
from gepa_bot.cache import candidate_hash
from gepa_bot.discovery import placeholder_problem, placeholders_in
from gepa_bot.llm import LLM, LLMError
from gepa_bot.runlog import RunLog

FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w-]*)[ \t]*$", re.MULTILINE)
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

## Your task
1. Write "Rationale:" followed by 2-5 sentences: what the failures have in common and what to change.
2. Then write the complete new prompt inside ONE fenced block that opens with ````prompt and closes with ````.
Write nothing after the closing fence.{retry_note}"""


@dataclass
class Proposal:
    """A parsed reflection answer."""

    rationale: str
    text: str


class ProposalRejected(ValueError):
    """The reply cannot be used; the message says why."""


def parse_reply(reply: str, current: str) -> Proposal:
    """Split a reply into rationale and new prompt, refusing truncated or malformed answers."""
    opening = FENCE_OPEN.search(reply)
    if not opening:
        raise ProposalRejected("no fenced prompt block in the reply")
    fence = opening.group("fence")
    closing = re.compile(rf"^{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
    end = closing.search(reply, opening.end())
    if not end:
        raise ProposalRejected("the fenced prompt block is never closed (reply truncated?)")
    text = reply[opening.end():end.start()].strip("\n")
    rationale = re.sub(r"^\s*\**rationale\**\s*:?\s*", "", reply[:opening.start()].strip(), flags=re.IGNORECASE)
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


def build_messages(name: str, current: str, records: Sequence[Mapping[str, Any]], retry_note: str = "") -> list[dict[str, str]]:
    kept = sorted(placeholders_in(current))
    rule = ("## Placeholders\nThe prompt is a template. Keep these placeholders exactly as written: "
            + ", ".join(kept) + ". Do not add other placeholders in braces.") if kept else \
        "## Placeholders\nThe prompt has no placeholders; do not add any text in curly braces."
    content = INSTRUCTIONS.format(name=name, current=current, placeholder_rule=rule,
                                  examples=render_examples(records), retry_note=retry_note)
    return [{"role": "user", "content": content}]


@dataclass
class RationaleReflector:
    """gepa ReflectionLM that records a rationale per proposed candidate and rejects bad replies."""

    llm: LLM
    runlog: RunLog
    attempts: int = 2
    rationales: dict[str, dict[str, str]] = field(default_factory=dict)  # child hash -> component -> rationale
    rejected: list[dict[str, str]] = field(default_factory=list)

    def reflect(self, candidate: dict[str, str], reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]],
                components_to_update: list[str]) -> tuple[ReflectionProposal, RationaleReflector]:
        proposal = ReflectionProposal(new_texts={})
        rationales: dict[str, str] = {}
        for name in components_to_update:
            records = reflective_dataset.get(name) or []
            if not records:
                continue
            result = self._propose_one(name, candidate[name], records, proposal)
            if result:
                proposal.new_texts[name] = result.text
                rationales[name] = result.rationale
        if proposal.new_texts:
            child = {**candidate, **proposal.new_texts}
            child_hash = candidate_hash(child)
            self.rationales[child_hash] = rationales
            self.runlog.write("proposal", parent=candidate_hash(candidate), child=child_hash, rationale=rationales,
                              texts=proposal.new_texts)
        return proposal, self

    def _propose_one(self, name: str, current: str, records: Sequence[Mapping[str, Any]],
                     proposal: ReflectionProposal) -> Proposal | None:
        retry_note = ""
        for attempt in range(1, self.attempts + 1):
            messages = build_messages(name, current, records, retry_note)
            try:
                reply = self.llm.complete(messages, purpose=f"reflect:{name}")
            except LLMError as exc:
                self._reject(name, attempt, f"LLM call failed: {exc}")
                return None
            except BudgetExhausted:
                raise
            proposal.prompts[name] = messages[0]["content"]
            proposal.raw_lm_outputs[name] = reply.text
            try:
                return parse_reply(reply.text, current)
            except ProposalRejected as exc:
                self._reject(name, attempt, str(exc), reply.text)
                retry_note = f"\n\nYour previous answer was rejected: {exc}. Follow the format exactly."
        return None

    def _reject(self, name: str, attempt: int, reason: str, reply: str = "") -> None:
        entry = {"component": name, "attempt": str(attempt), "reason": reason, "reply_excerpt": reply[:300]}
        self.rejected.append(entry)
        self.runlog.write("rejected_proposal", **entry)
