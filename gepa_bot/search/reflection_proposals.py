"""The reflection model's replies turned into proposals, and the checks that refuse unusable ones.

A ``rewrite``/``simplify`` reply is a rationale and a fenced prompt (parse_reply), an ``edit`` reply one JSON
instruction (parse_edit_proposal), a ``rules`` reply the chosen feedback statements (parse_rules_proposal); a
worked example needs no reply at all (example_proposal). ProposalRejected says why a reply cannot be used, and
guard_generality refuses new text that names details of a single training example.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gepa_bot.discovery import PLACEHOLDER, placeholder_problem, placeholders_in
from gepa_bot.search.edits import (
    Edit,
    EditRejected,
    apply_edits,
    keep_wrapping,
    normalized,
    parse_edit_reply,
    parse_role_reply,
    parse_rules_reply,
    same_apart_from_whitespace,
    with_final_newline_of,
    words_of,
)
from gepa_bot.search.feedback_rules import (
    SENTENCE_OR_LINE,
    STOPWORDS,
    Statement,
    added_pieces,
    bare_label,
    extract_statements,
    record_id,
    specific_phrases,
    stated_labels,
    worked_example,
)
from gepa_bot.search.label_definitions import agrees_with, defined_labels

FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w-]*)[ \t]*$", re.MULTILINE)
RATIONALE_HEADING = re.compile(r"^\s*(?:#+\s*)?[*_]*\s*(?:rationale|reason)\s*[*_]*\s*:?\s*[*_]*\s*", re.IGNORECASE)
MAX_GROWTH = 4  # a proposal may be at most this many times longer than the current text (+ 2000 chars)
GROUNDED_SHARE = 0.7  # of an instruction's content words that must come from the kept rules, the prompt or the labels


@dataclass
class Proposal:
    """A parsed reflection answer."""

    rationale: str
    text: str
    summary: str = ""  # what an edit changed, e.g. "add 'Answer in one word.'" (edit style)
    kind: str = "rewrite"  # "rewrite" | "simplify" | "edit" | "rules" | "example" | "role"
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
    text = keep_wrapping(current, text)
    if same_apart_from_whitespace(text, current):
        raise ProposalRejected("the proposed prompt is identical to the current one (apart from spacing and wrapping)")
    if len(text) > MAX_GROWTH * len(current) + 2000:
        raise ProposalRejected(f"the proposed prompt is {len(text)} chars, far longer than the current {len(current)}")
    problem = placeholder_problem(current, text) or _rationale_in_prompt(text, current)
    if problem:
        raise ProposalRejected(f"the proposed prompt {problem}")
    return Proposal(rationale=rationale or "(no rationale given)", text=with_final_newline_of(current, text))


REASONING_LABEL = re.compile(r"\A\s*(?:#+\s*)?[*_]*\s*(?:rationale|reason(?:ing)?|explanation)\s*[*_]*\s*:", re.IGNORECASE)
PLACEHOLDER_IN_PROSE = re.compile(r"\bplaceholders?\s+\{[^{}]*\}|\{[^{}]*\}\s+placeholders?\b", re.IGNORECASE)


def _rationale_in_prompt(text: str, current: str) -> str | None:
    """Why a fenced block holds the reflector's reasoning rather than a prompt, else None. Seen with the 1.5B
    model: "Reason:\nI changed the placeholder {ticket} to ensure it is clear ...\n\nQueue:" (the placeholder
    only named in prose, so the task model would get the ticket inside that sentence)."""
    if REASONING_LABEL.match(text) and not REASONING_LABEL.match(current):
        return "starts with the rationale instead of the prompt"
    if PLACEHOLDER_IN_PROSE.search(text) and not PLACEHOLDER_IN_PROSE.search(current):
        return "talks about its placeholder instead of using it for the input"
    if not _speaks_of_prompts(current):
        meta = next((s for s in SENTENCE_OR_LINE.split(text) if _speaks_of_prompts(s)), None)
        if meta:
            return f"speaks about the prompt ({meta.strip()[:80]!r}) instead of telling the model what to do"
    return None


def _short_closing_fence(reply: str, start: int, fence: str) -> re.Match[str] | None:
    """A closing fence shorter than the opening one (````prompt ... ```), accepted only as the reply's last line.

    Small models often close a four-backtick block with three. Anywhere else a shorter fence may belong to
    the prompt itself (a code example), so the block is only taken when nothing follows that line. A block
    opened with three backticks has no shorter fence.
    """
    if len(fence) <= 3:
        return None
    short_at_end = re.compile(rf"^{re.escape(fence[0])}{{3,{len(fence) - 1}}}[ \t]*$(?=\s*\Z)", re.MULTILINE)
    return short_at_end.search(reply, start)



def parse_edit_proposal(reply: str, current: str) -> Proposal:
    """An edit reply applied to ``current``; EditRejected/ProposalRejected say why it cannot be used."""
    try:
        parsed = parse_edit_reply(reply)
        edits = [_without_meta(_only_new_sentences(edit, current), current) for edit in parsed.edits]
        text = apply_edits(current, edits)
    except EditRejected as exc:
        raise ProposalRejected(str(exc)) from None
    leaked = _reply_format_leak(edits, current)
    if leaked:
        raise ProposalRejected(leaked)
    text = with_final_newline_of(current, text)
    summary = "; ".join(e.describe() for e in edits)
    return Proposal(rationale=parsed.rationale or summary, text=text, summary=summary, kind="edit")


def _without_meta(edit: Edit, current: str) -> Edit:
    """``edit`` without the sentences in its text that speak about the prompt rather than to the model (seen on
    incidents: "In the prompt, explicitly define that P1 means ..." went in beside the definitions it restates);
    EditRejected when nothing else is left. A prompt that itself speaks of prompts is left to say what it likes."""
    if edit.op == "delete" or not _speaks_of_prompts(edit.text):
        return edit
    text = without_meta_sentences(edit.text, current)
    if not text:
        raise EditRejected(f"the edit {edit.text[:80]!r} speaks about the prompt instead of telling the model what "
                           "to do; write the rule itself")
    return Edit(edit.op, edit.target, text)


def _only_new_sentences(edit: Edit, current: str) -> Edit:
    """An ``add`` edit without the sentences the prompt already has word for word, whatever the punctuation or case
    (seen on incidents: an added paragraph that began with the prompt's own first sentence; on tickets: "... classified
    as a 'bug'." under "... classified as a bug."); EditRejected when nothing new is left."""
    if edit.op != "add" or placeholders_in(edit.text):  # a placeholder is refused with its own reason
        return edit
    sentences = _one_line_sentences(edit.text)
    said = {tuple(words_of(s)) for s in _one_line_sentences(current)}
    new = [s for s in sentences if normalized(s) not in normalized(current) and tuple(words_of(s)) not in said]
    if not new:
        raise EditRejected(f"the edit {edit.text[:80]!r} only repeats what the prompt already says")
    return edit if len(new) == len(sentences) else Edit(edit.op, edit.target, " ".join(new))


def _one_line_sentences(text: str) -> list[str]:
    """``text``'s sentences, each with its whitespace collapsed."""
    return re.split(r"(?<=[.!?])\s+", " ".join(text.split()))


def _speaks_of_prompts(text: str) -> bool:
    return bool(META_SENTENCE.search(text))


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
    instruction = without_meta_sentences(parsed.instruction, current)
    condensed = grounded(instruction, vocabulary) and not labels_left_out(instruction, chosen)
    wording = _as_sentence(instruction) if instruction and condensed else "\n".join(_verbatim(s) for s in chosen)
    try:
        text = apply_edits(current, [Edit("add", "", wording)])
    except EditRejected as exc:
        raise ProposalRejected(str(exc)) from None
    text = with_final_newline_of(current, text)
    ids = tuple(dict.fromkeys(i for s in chosen for i in s.ids))
    numbers = ", ".join(str(n) for n in parsed.keep)
    summary = f"add rules {numbers} from the feedback: {wording!r}"
    reason = usable_reason(parsed.reason, records, current) or f"The feedback on these failures states: {_quote_all(chosen)}"
    return Proposal(rationale=reason, text=text, summary=summary, kind="rules", failure_ids=ids)


MAX_REASON_CHARS = 240
META_SENTENCE = re.compile(
    r"\b(?:the|this) (?:prompt|rule|rules|instruction|instructions)\b[^.!?]*\b(?:should|must|needs? to|will)\b|"
    r"\bbe (?:modified|updated|changed|added|rewritten)\b|\bexplicitly (?:state|define|mention|say)|"
    r"\bprompts?\b", re.IGNORECASE)  # a task prompt that is not about prompts has no use for the word


def without_meta_sentences(instruction: str, current: str) -> str:
    """The instruction without sentences about the prompt itself (seen with the 1.5B model after a correct rule:
    "The prompt should be modified to explicitly state this rule."; on continents the whole rule came as "Modify the
    prompt to include the rule '...'"), which the task model would read as noise."""
    if _speaks_of_prompts(current):
        return instruction  # a prompt about prompts may say so
    kept = [s for s in _one_line_sentences(instruction) if not _speaks_of_prompts(s) or normalized(s) in normalized(current)]
    return " ".join(kept).strip()


def usable_reason(reason: str, records: Sequence[Mapping[str, Any]], current: str) -> str | None:
    """The model's own reason, unless it is empty, long, or retells single examples (seen with the 1.5B model:
    "The prompt should state 'To determine the total number of pencils Zoe buys ...'"); then None."""
    reason = " ".join(reason.split())
    if not reason or len(reason) > MAX_REASON_CHARS:
        return None
    return None if specific_phrases(reason, records, current, extract_statements(records, current)) else reason


CHANGE_WORDS = re.compile(
    r"\b(?:prompts?|instructions?|model|answers?|repl(?:y|ies)|outputs?|format|wording|words?|sentences?|rules?|"
    r"labels?|steps?|examples?|clear(?:er|ly)?|short(?:er)?|simpl(?:e|er|ified|ify)|plain(?:er)?|explicit(?:ly)?|"
    r"direct(?:ly)?|concise|specific|ambigu(?:ous|ity)|remov(?:e|ed|ing)|add(?:ed|ing|s)?|rephras(?:e|ed|ing)|"
    r"reword(?:ed|ing)?|chang(?:e|ed|es|ing))\b", re.IGNORECASE)


def rewrite_facts(current: str, new: str) -> str:
    """What a plain rewrite did, from the texts (the rewrite request asks for no reason: see SIMPLIFY_INSTRUCTIONS):
    its length and the first sentence it dropped and the first it added."""
    def sentences(text: str) -> list[str]:
        return [" ".join(p.split()) for p in SENTENCE_OR_LINE.split(text) if p.strip()]

    def short(sentence: str) -> str:
        return sentence if len(sentence) <= 90 else sentence[:87].rstrip() + "..."

    old, fresh = sentences(current), sentences(new)
    dropped = next((x for x in old if x not in fresh), None)
    added = next((x for x in fresh if x not in old), None)
    parts = ([f"dropped {short(dropped)!r}"] if dropped else []) + ([f"added {short(added)!r}"] if added else [])
    return (f"Plain rewrite, {len(current)} -> {len(new)} chars, asked only to make the prompt easier for a small "
            f"model (no failures shown)" + (": " + "; ".join(parts) if parts else "") + ".")


def reason_about_the_change(reason: str) -> bool:
    """Whether a rewrite's reason speaks of the prompt or the answers at all. Seen with the 1.5B model, shown a
    ticket classifier: "The ticket should be directed to the billing queue as it pertains to financial
    transactions." (it answered the task instead of explaining its rewrite)."""
    return bool(CHANGE_WORDS.search(reason))


def grounded(instruction: str, vocabulary: str) -> bool:
    """True when most content words of ``instruction`` occur in ``vocabulary`` (nothing invented)."""
    known = {w.lower() for w in re.findall(r"[A-Za-z0-9_]+", vocabulary)}
    words = [w.lower() for w in re.findall(r"[A-Za-z0-9_]+", instruction) if w.lower() not in STOPWORDS]
    return bool(words) and sum(w in known or w.rstrip("s") in known for w in words) >= GROUNDED_SHARE * len(words)


def labels_left_out(instruction: str, chosen: Sequence[Statement]) -> list[str]:
    """The labels that the chosen statements define and the condensed ``instruction`` never names: a condensing
    that drops part of a scale (P1-P4 down to P1 and P4) falls back to the statements' own words."""
    said = instruction.lower()
    return [label for s in chosen for label, _ in s.definitions
            if not re.search(rf"(?<![\w-]){re.escape(bare_label(label))}(?![\w-])", said)]


def _verbatim(statement: Statement) -> str:
    """A statement as prompt text: one sentence, or for a group of definitions one line per label."""
    if not statement.definitions:
        return _as_sentence(statement.text)
    lines = [_as_sentence(f"{label} means {meaning}") for label, meaning in statement.definitions]
    return "\n".join(([_as_sentence(statement.scope).rstrip(".") + ":"] if statement.scope else []) + lines)


def _as_sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def _quote_all(statements: Sequence[Statement]) -> str:
    return "; ".join(repr(s.text) for s in statements)


def task_prompt_of(current: str, siblings: Mapping[str, str]) -> str:
    """The sibling that states the task (the first with a placeholder) when ``current`` has none, else "": a
    system prompt or preamble the model gets beside the prompt it answers."""
    if placeholders_in(current):
        return ""
    return next((text for text in siblings.values() if placeholders_in(text)), "")


def parse_role_proposal(reply: str, current: str, task_prompt: str,
                        records: Sequence[Mapping[str, Any]]) -> Proposal:
    """The ``role`` reply as the new system prompt: "task" + "answer", each one sentence, their words from the task
    prompt, the current text or the labels the feedback states (GROUNDED_SHARE; an invented task is refused)."""
    try:
        parsed = parse_role_reply(reply)
    except EditRejected as exc:
        raise ProposalRejected(str(exc)) from None
    text = f"{_as_sentence(parsed.task)} {_as_sentence(parsed.answer)}"
    vocabulary = " ".join([task_prompt, current, *stated_labels(records)])
    if not grounded(text, vocabulary):
        raise ProposalRejected(f"the system prompt {text[:120]!r} brings in words neither the task prompt nor the "
                               "current system prompt has; use their words")
    problem = placeholder_problem(current, text)
    if problem:
        raise ProposalRejected(f"the proposed prompt {problem}")
    if same_apart_from_whitespace(text, current):
        raise ProposalRejected("the proposed prompt is identical to the current one (apart from spacing and wrapping)")
    reason = usable_reason(parsed.reason, records, current) or \
        "The system prompt did not say what the model does or what its answer looks like; the task prompt does."
    return Proposal(rationale=reason, text=with_final_newline_of(current, text),
                    summary=f"system prompt: {text!r}", kind="role")


def example_proposal(current: str, records: Sequence[Mapping[str, Any]]) -> Proposal | None:
    """A worked example (no LLM call) when the failures are about the answer's form; None when there is none."""
    example = worked_example(records, current)
    if example is None:
        return None
    try:
        text = apply_edits(current, [Edit("add", "", example.line())])
    except EditRejected:
        return None
    text = with_final_newline_of(current, text)
    form_ids = [record_id(r) for r in records if float(r.get("score", 0.0)) < 1.0]
    rationale = (f"The feedback on failures {', '.join(form_ids)} says the answer's form was wrong; this shows train "
                 f"instance {example.instance_id} with its expected answer ({example.expected}).")
    return Proposal(rationale=rationale, text=text, summary=f"add example {example.instance_id}", kind="example",
                    failure_ids=tuple(form_ids))


STATED_NUMBER = re.compile(r"(?<![\w.])(?<![A-Za-z_][-\u2212])[-\u2212]?\d+(?:,\d{3})*(?:\.\d+)?")
"""A number written on its own ("-5", "0.5", "12,000", the 1 and 5 of "1-5"), not one in a name (P1, gpt-4, v2)."""


def stated_numbers(text: str) -> set[float]:
    """The numbers ``text`` states (see STATED_NUMBER), by value: "5" and "5.0" are one number."""
    return {float(match.replace("\u2212", "-").replace(",", "")) for match in STATED_NUMBER.findall(text)}


def guard_stated_numbers(proposal: Proposal, current: str, original: str) -> None:
    """ProposalRejected when the new text drops a number that both the user's prompt and the current one state: a
    scale, a limit or a format is the user's decision (seen on afinn: "-5 (very negative) to 5 (very positive)"
    rewritten to "1 (negative) to 5 (positive)" reached val on a tie at 0)."""
    dropped = (stated_numbers(original) & stated_numbers(current)) - stated_numbers(proposal.text)
    if dropped:
        shown = ", ".join(f"{n:g}" for n in sorted(dropped))
        raise ProposalRejected(f"the proposed prompt drops the number(s) {shown} that the original prompt states (a "
                               "scale, a limit or a format); keep them as they are")


def answer_cue(prompt: str) -> str | None:
    """The line the model's answer follows ("Queue:", "Priority:"): the prompt's last non-empty line when it ends
    with a colon and comes after the last placeholder; else None."""
    ends = [m.end() for m in PLACEHOLDER.finditer(prompt)]
    tail = [line.strip() for line in prompt[ends[-1] if ends else 0:].splitlines() if line.strip()]
    return tail[-1] if tail and tail[-1].endswith(":") and len(tail[-1]) <= 40 else None


ALTERNATIVES = re.compile(r",|\bor\b|/|\||<|\[")  # "billing, bug or other", "<queue>": a list or a form, not an answer


def guard_answer_cue(proposal: Proposal, current: str) -> None:
    """ProposalRejected when the new prompt ends with the current prompt's answer cue filled in with one answer.
    Seen on the tickets bench: a rewrite ended "Queue: billing", which tells the model the answer to every ticket.
    The cue followed by the choices ("Queue: billing, bug, account, feature_request or other"), or cue lines that
    define each answer with more text after them, are instructions and pass (best-of-N's best tickets prompts)."""
    cue = answer_cue(current)
    lines = [line.strip() for line in proposal.text.splitlines() if line.strip()]
    if cue is None or not lines or not lines[-1].lower().startswith(cue.lower()):
        return
    filled = lines[-1][len(cue):].strip()
    if filled and not ALTERNATIVES.search(filled):
        raise ProposalRejected(f"the proposed prompt ends with {filled[:40]!r} after {cue!r}, where the model's answer "
                               "begins: that answers every input alike; end the prompt with that line as it is")


def guard_stated_meanings(proposal: Proposal, current: str, meanings: Mapping[str, str]) -> None:
    """ProposalRejected when the new text defines a label the feedback defines, in other words than the feedback's.
    Seen on the quick start: a plain rewrite listed "1. Bug - If the issue is a problem with the software or
    hardware" and "3. Billing - If there's an issue with our payment system" after "Queue:", where the triage guide
    the feedback quotes calls a broken payment page a bug: a reviewer would have to correct every line."""
    if not meanings:
        return
    for key, label, meaning in defined_labels("\n".join(added_pieces(proposal.text, current)), meanings):
        if not agrees_with(meaning, meanings[key]):
            raise ProposalRejected(f"the new text defines {label!r} as {meaning[:60]!r}, but the feedback defines it "
                                   f"as {meanings[key][:90]!r}; use the feedback's definition or leave "
                                   f"{label!r} undefined")


def guard_generality(proposal: Proposal, current: str, records: Sequence[Mapping[str, Any]]) -> None:
    """ProposalRejected when the new text quotes a phrase that only one training instance's input/feedback has."""
    if proposal.kind == "example" or not records:
        return
    added = " ".join(added_pieces(proposal.text, current))
    phrases = specific_phrases(added, records, current, extract_statements(records, current))
    if phrases:
        shown = ", ".join(f"{p!r} (only in {i})" for p, i in phrases[:3])
        raise ProposalRejected(f"the new text names details of single training examples: {shown}; state the general "
                               "rule instead")

