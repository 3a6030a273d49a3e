"""Reflective mutation: the LLM reads feedback, writes a rationale, then proposes a new prompt.

This is gepa's ``reflection_strategy`` (ReflectionLM protocol). Owning it lets us keep the rationale
of every candidate and refuse bad proposals before a single rollout is spent on them. Two styles:

- ``rewrite``: the complete new prompt in a fence (GEPA's own way; for strong models). Refused: no
  closed fence (truncated reply), empty or unchanged text, placeholders dropped or invented.
- ``edit``: one small JSON edit (gepa_bot/search/edits.py) applied deterministically; for small models.
  Constrained decoding (JSON schema) is requested where the server supports it, and the model is
  told which edits of the same parent were already tried without success.
- ``mixed``: rotates four moves: ``rules`` (the model picks, by number, which general statements of the
  failures' feedback to add, and condenses them; gepa_bot/search/feedback_rules.py), ``example`` (when the feedback
  says the answer's form was wrong: one train instance with its expected answer as an example line, no LLM
  call), a plain rewrite ("so that a small model answers it better") and an edit. A move with nothing to work
  on hands over to the next. A prompt without placeholders beside one with them (a system prompt) gets a ``role``
  instead of its first plain rewrite per parent: shown the task prompt, the model says what the model does and
  what its answer looks like (a blind rewrite of a one-line system prompt invents a task). GEPA's minibatch
  check and the val set decide which proposals stay, as for any other proposal, except the first few (warm start):
  those rewrites go to the val set without the minibatch gate, as in a best-of-N search (engine.ValGate).

Every proposal but a worked example passes the generality guard first: a new phrase that only one training
instance's input/feedback contains ("an export feature in Firefox") is refused, and the model retried with
the reason; so is one that drops a number the user's prompt states (a scale such as "-5 to 5", a limit), or
that writes an answer after the prompt's answer cue ("Queue: billing"). Each proposal keeps the model's own
reason and the ids of the failures it was shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gepa.proposer.reflective_mutation.reflection_lm import ReflectionProposal

from gepa_bot.errors import RunStopped, describe_error
from gepa_bot.evals.cache import candidate_hash
from gepa_bot.runlog import RunLog
from gepa_bot.search.adapter import SearchStatus
from gepa_bot.search.budget import BudgetExhausted
from gepa_bot.search.edits import ROLE_SCHEMA, RULES_SCHEMA, same_words
from gepa_bot.search.feedback_rules import Statement, extract_statements, worked_example
from gepa_bot.search.label_definitions import stated_meanings
from gepa_bot.search.llm import LLM, LLMError
from gepa_bot.search.reflection_prompts import (
    MAX_EDIT_EXAMPLES,
    MAX_EXAMPLES,
    build_edit_messages,
    build_messages,
    build_role_messages,
    build_rules_messages,
    build_simplify_messages,
    edit_response_format,
    shown_ids,
    with_schema,
)
from gepa_bot.search.reflection_proposals import (
    Proposal,
    ProposalRejected,
    example_proposal,
    guard_answer_cue,
    guard_generality,
    guard_stated_meanings,
    guard_stated_numbers,
    parse_edit_proposal,
    parse_reply,
    parse_role_proposal,
    parse_rules_proposal,
    reason_about_the_change,
    rewrite_facts,
    task_prompt_of,
    usable_reason,
)

__all__ = [  # the requests and the reply parsers live in reflection_prompts / reflection_proposals; re-exported
    "MIXED_ROTATION", "Proposal", "ProposalRejected", "RationaleReflector", "build_edit_messages", "build_messages",
    "build_rules_messages", "build_simplify_messages", "edit_response_format", "motivated", "parse_edit_proposal",
    "parse_reply", "parse_rules_proposal", "with_schema",
]

MIXED_ROTATION = ("rules", "example", "simplify", "edit")
"""The ``mixed`` style's moves, in turn; a move with nothing to work on hands over (see RationaleReflector.next_kind)."""


def motivated(rationale: str, ids: Sequence[str]) -> str:
    """The rationale with the failures that motivated it, as the PR shows it."""
    unique = list(dict.fromkeys(ids))  # gepa pads a short minibatch with repeats: name each failure once
    return f"{rationale} (failures: {', '.join(unique)})" if unique else rationale


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
    roles_tried: set[tuple[str, str]] = field(default_factory=set)  # (parent, comp) whose system prompt got a role
    known: set[str] = field(default_factory=set)  # hashes of every candidate reflected on or proposed so far
    calls: int = 0  # proposals asked for so far; ``mixed`` rotates on it
    warm_start_rewrites: int = 0  # the first N reflections are plain rewrites that skip the minibatch gate
    reflections: int = 0
    ungated: set[str] = field(default_factory=set)  # candidate hashes of warm-start rewrites: scored on val as is
    status: SearchStatus | None = None  # counts for the progress line
    barren_streak: int = 0  # reflections in a row that proposed nothing new (engine stops at STALLED_AFTER)
    originals: Mapping[str, str] = field(default_factory=dict)  # the user's prompts (seed candidate), by component
    meanings: dict[str, str] = field(default_factory=dict)  # label -> meaning, as the feedback seen so far defines it

    def reflect(self, candidate: dict[str, str], reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]],
                components_to_update: list[str]) -> tuple[ReflectionProposal, RationaleReflector]:
        proposal = ReflectionProposal(new_texts={})
        results: dict[str, Proposal] = {}
        parent_hash = candidate_hash(candidate)
        self.known.add(parent_hash)
        warm = self.reflections < self.warm_start_rewrites
        self.reflections += 1
        for name in components_to_update:
            records = reflective_dataset.get(name) or []
            if not records:
                continue
            self.meanings = {**stated_meanings(records), **self.meanings}  # the first definition seen stays
            try:
                result = self._propose_one(name, candidate[name], records, proposal, parent_hash,
                                           kind=self._warm_kind(candidate[name], records) if warm else None,
                                           siblings={n: t for n, t in candidate.items() if n != name})
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
        self.barren_streak = 0 if proposal.new_texts else self.barren_streak + 1
        return proposal, self

    def _warm_kind(self, current: str, records: Sequence[Mapping[str, Any]]) -> str:
        """The warm start's move: the first reflection carries what the feedback states (``rules``) when it states
        anything, the second shows a worked example when the failures are about the answer's form (no LLM call);
        the others are plain rewrites."""
        if self.style == "mixed" and self.reflections == 1 and extract_statements(records, current):
            return "rules"
        if self.style == "mixed" and self.reflections == 2 and worked_example(records, current) is not None:
            return "example"
        return "simplify"

    def _record(self, parent_hash: str, child: dict[str, str], results: Mapping[str, Proposal], warm: bool) -> None:
        child_hash = candidate_hash(child)
        self.known.add(child_hash)
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
            if result.kind == "role":
                self.roles_tried.add((parent_hash, name))
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
                  parent_hash: str, statements: Sequence[Statement] = (), task_prompt: str = "") -> list[dict[str, str]]:
        if kind == "role":
            return build_role_messages(current, task_prompt, retry_note)
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
               statements: Sequence[Statement] = (), task_prompt: str = "") -> Proposal:
        if kind == "role":
            proposal = parse_role_proposal(reply, current, task_prompt, records)
        elif kind == "edit":
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
                if proposal.rationale == "(no rationale given)" or not reason_about_the_change(proposal.rationale):
                    proposal.rationale = rewrite_facts(current, proposal.text)  # (a reason given unasked may stay)
        return proposal

    def _refuse_unmergeable(self, name: str, result: Proposal, current: str, records: Sequence[Mapping[str, Any]],
                            siblings: Mapping[str, str] | None) -> None:
        """Every refusal of a parsed proposal, before any rollout is spent on it (ProposalRejected says why)."""
        if same_words(result.text, current):
            raise ProposalRejected("the proposed prompt is identical to the current one apart from punctuation and "
                                   "case; change what it says")
        guard_generality(result, current, records)
        guard_stated_numbers(result, current, self.originals.get(name, ""))
        guard_answer_cue(result, current)
        guard_stated_meanings(result, current, self.meanings)
        self._refuse_a_known_candidate(name, result, siblings)

    def simplify(self, name: str, current: str) -> Proposal | None:
        """One feedback-free "rewrite it so a small model answers better" proposal (retries and rejection
        rules as in the search); None when every attempt was rejected. The bench's best-of-N arm uses it."""
        return self._propose_one(name, current, [], ReflectionProposal(new_texts={}), kind="simplify")

    def _propose_one(self, name: str, current: str, records: Sequence[Mapping[str, Any]],
                     proposal: ReflectionProposal, parent_hash: str = "", kind: str | None = None,
                     siblings: Mapping[str, str] | None = None) -> Proposal | None:
        retry_note = ""
        kind = kind or self.next_kind(current, records, parent_hash, name)
        task_prompt = task_prompt_of(current, siblings or {})
        if kind == "simplify" and task_prompt and self.style == "mixed" and (parent_hash, name) not in self.roles_tried:
            kind = "role"  # a system prompt rewritten blind invents a task; this one is told the task prompt
        if kind == "example":
            return example_proposal(current, records)
        statements = extract_statements(records, current) if kind == "rules" else []
        params = self._format_params(kind)
        for attempt in range(1, self.attempts + 1):
            messages = self._messages(kind, name, current, records, retry_note, parent_hash, statements, task_prompt)
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
                result = self._parse(kind, reply.text, current, records, statements, task_prompt)
                self._refuse_unmergeable(name, result, current, records, siblings)
                return result
            except ProposalRejected as exc:
                self._reject(name, attempt, str(exc), reply.text)
                retry_note = self._retry_note(kind, exc)
        return None

    def _refuse_a_known_candidate(self, name: str, result: Proposal, siblings: Mapping[str, str] | None) -> None:
        """ProposalRejected when the child is a candidate already proposed or reflected on (seen on the metres
        example: four rewrites of a child went back to its parent's text, and each took over the parent's rationale)."""
        if siblings is not None and candidate_hash({**siblings, name: result.text}) in self.known:
            raise ProposalRejected("the proposed prompt is the same as an earlier candidate's; write a different one")

    def _format_params(self, kind: str) -> dict[str, Any]:
        if kind not in ("edit", "rules", "role"):
            return {}
        if callable(self.response_format):
            self.response_format = self.response_format()
        schemas = {"rules": (RULES_SCHEMA, "prompt_rules"), "role": (ROLE_SCHEMA, "prompt_role")}
        fmt = self.response_format if kind == "edit" else with_schema(self.response_format, *schemas[kind])
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
