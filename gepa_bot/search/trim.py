"""Trimming: after the search, delete sentences the search added to the best prompt while val does not drop.

Proposals from a small reflection model mostly add text: the same rule twice, generic advice next to the one
sentence that helps. Nothing in GEPA's loop takes a sentence out again, so the best prompt grows. Here each
sentence of the best candidate that is not in the seed prompt (and holds no placeholder) is tried without it,
duplicates first, then sentences whose words the rest of the prompt already says, then the longest; a shorter
candidate is kept when its val total reaches what its parent is known to score (a parent decided on part of val
is known by that part: never less than the search's best).

A trial scores val instances a batch at a time, the parent's best-scored first, and stops as soon as the
verdict is certain: kept once its total reaches the parent's (scores are never negative), dropped once it can
no longer reach it (scores are at most 1). A deletion that changes nothing is decided on the parent's wins
alone, so a kept cut costs a fraction of a val pass and the rest of the pass can try the next one; the prompt
trimming ends with is then scored on the val instances its verdict skipped, with rollouts no trial may touch.

The rollouts are held back from the search (``held_back``): as many full val passes as the current val-best
has added sentences, at most ``TRIM_SHARE`` of the budget (at least one pass), and none while the seed is best:
the search comes first (on afinn, gepa-bot's best prompt of one bench seed was found 23 rollouts before the
end of a 200-rollout run). Trimming then uses every rollout the search left.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from gepa_bot.discovery import PLACEHOLDER
from gepa_bot.search.edits import normalized, tidy_blank_lines, with_final_newline_of
from gepa_bot.search.feedback_rules import content_words

TRIM_SHARE = 0.15  # of the rollout budget, at most, for trimming (but one val pass when the budget is small)
MIN_VAL_PASSES = 4  # a budget of fewer val passes than this is all the search's
MAX_SCORE = 1.0  # the eval protocol's score range is 0..1
EPSILON = 1e-9
REDUNDANT_SHARE = 0.8  # of a sentence's content words that the rest of its prompt says: a restatement, cut early
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[*]?[A-Z])")


@dataclass(frozen=True)
class Sentence:
    """One removable sentence: where it is in which component."""

    component: str
    start: int
    end: int
    text: str

    @property
    def key(self) -> str:
        return normalized(self.text)


@dataclass
class TrimStep:
    """One tried deletion and what the val set said: ``scores`` holds the val instances it was scored on
    (all of them, or as many as the verdict needed), ``val_mean`` counts the unscored ones as 0 (a floor)."""

    parent: dict[str, str]
    child: dict[str, str]
    removed: Sentence
    scores: dict[str, float]
    n_val: int
    kept: bool
    rollouts_after: int

    @property
    def val_mean(self) -> float:
        return sum(self.scores.values()) / self.n_val

    @property
    def complete(self) -> bool:
        return len(self.scores) == self.n_val


Scorer = Callable[[dict[str, str], list[str]], dict[str, float] | None]
"""Scores a candidate on val instances: a prefix of them when the budget is short, None when it is gone."""


@dataclass
class Verdict:
    kept: bool
    scores: dict[str, float]


def judge(child: dict[str, str], order: list[str], target: float, score: Scorer, batch: int,
          limit: int | None = None) -> Verdict | None:
    """Score ``child`` along ``order``, on at most ``limit`` instances, until it is certain whether its val total
    reaches ``target`` (None: undecided within the limit, or the budget ran out first)."""
    scores: dict[str, float] = {}
    pending = list(order)
    limit = len(order) if limit is None else limit
    while True:
        total = sum(scores.values())
        if scores and total >= target - EPSILON:
            return Verdict(kept=True, scores=scores)
        if total + len(pending) * MAX_SCORE < target - EPSILON:
            return Verdict(kept=False, scores=scores)
        size = min(max(1, batch), limit - len(scores))
        if size <= 0:
            return None
        got = score(child, pending[:size])
        if not got:
            return None
        scores.update(got)
        pending = [i for i in pending if i not in got]


@dataclass
class TrimOutcome:
    steps: list[TrimStep] = field(default_factory=list)

    @property
    def kept(self) -> list[TrimStep]:
        return [step for step in self.steps if step.kept]


def removable_sentences(seed: Mapping[str, str], candidate: Mapping[str, str]) -> list[Sentence]:
    """Sentences of ``candidate`` that the seed does not have, in the order to try: repeats first, then
    restatements (seen on incidents: "In the prompt, explicitly define that P1 means ..." after the P1 and P4
    definitions), then the longest."""
    found: list[Sentence] = []
    for name, text in candidate.items():
        seed_text = normalized(seed.get(name, ""))
        for sentence in _sentences(name, text):
            if sentence.key and sentence.key not in seed_text and _removable(sentence.text):
                found.append(sentence)
    seen: set[str] = set()
    repeats = []
    for sentence in found:
        if sentence.key in seen:
            repeats.append(sentence)
        seen.add(sentence.key)
    rest = sorted((s for s in found if s not in repeats), key=lambda s: -len(s.text))
    restatements = [s for s in rest if restates(s, candidate[s.component])]
    return repeats + restatements + [s for s in rest if s not in restatements]


def restates(sentence: Sentence, text: str) -> bool:
    """True when REDUNDANT_SHARE of ``sentence``'s content words occur in the other sentences of ``text`` (its
    own copies aside: an exact repeat is a repeat)."""
    words = content_words(sentence.text)
    others = " ".join(s.text for s in _sentences(sentence.component, text) if s.key != sentence.key)
    said = set(content_words(others))
    return bool(words) and sum(w in said for w in words) >= REDUNDANT_SHARE * len(words)


def trials_wanted(seed: Mapping[str, str], candidate: Mapping[str, str], n_val: int, max_rollouts: int) -> int:
    """How many deletions to try on ``candidate``: none unless it is longer than the seed; capped by the share."""
    if _length(candidate) <= _length(seed) or n_val <= 0 or max_rollouts < MIN_VAL_PASSES * n_val:
        return 0
    cap = max(1, int(TRIM_SHARE * max_rollouts) // n_val)
    return min(cap, len(removable_sentences(seed, candidate)))


def without(text: str, sentence: Sentence) -> str:
    """``text`` with ``sentence`` removed, with the spaces or the line it leaves behind."""
    before, after = text[:sentence.start], text[sentence.end:]
    if after.startswith((" ", "\t")):
        after = after.lstrip(" \t")
    elif before.endswith((" ", "\t")):
        before = before.rstrip(" \t")
    line_start = before.rfind("\n") + 1
    line_end_offset = after.find("\n")
    rest_of_line = after if line_end_offset < 0 else after[:line_end_offset]
    if not before[line_start:].strip() and not rest_of_line.strip():  # the sentence was the whole line
        before = before[:line_start]
        after = "" if line_end_offset < 0 else after[line_end_offset + 1:]
        if not before.strip() or before.endswith("\n\n"):  # a paragraph of its own: its blank line goes too
            after = after.lstrip("\n")
    return with_final_newline_of(text, tidy_blank_lines(before + after))


def trim(best: dict[str, str], best_scores: Mapping[str, float], seed: Mapping[str, str], trials: int,
         score: Scorer, rollouts_left: Callable[[], int], batch: int = 1,
         rollouts_used: Callable[[], int] = lambda: 0) -> TrimOutcome:
    """Greedy deletions from ``best`` (its per-instance val scores ``best_scores``), at most ``trials``, while
    the budget lasts. A deletion is kept when its val total reaches its parent's known total; the last kept one is then
    scored on the val instances its verdict did not need.

    That last step always fits: a trial starts only with a full val pass left, and stops undecided before it
    would eat the rollouts that complete the current best. So the prompt trimming ends with has its whole val
    table (unless a time or cost cap interrupts)."""
    outcome = TrimOutcome()
    n_val, target = len(best_scores), sum(best_scores.values())
    reference = dict(best_scores)  # the best-known score per instance, to try likely wins first
    tried: set[tuple[str, bool]] = set()  # (sentence, whether it was a repeat): a kept repeat's twin is tried again
    while len(outcome.steps) < trials and rollouts_left() >= n_val:
        sentences = removable_sentences(seed, best)
        counts = Counter(s.key for s in sentences)
        sentence = next((s for s in sentences if (s.key, counts[s.key] > 1) not in tried), None)
        if sentence is None:
            break
        tried.add((sentence.key, counts[sentence.key] > 1))
        child = {**best, sentence.component: without(best[sentence.component], sentence)}
        order = sorted(reference, key=lambda i: -reference[i])
        owed = n_val - len(outcome.kept[-1].scores) if outcome.kept else 0  # to complete the current best
        verdict = judge(child, order, target, score, batch, limit=rollouts_left() - owed)
        if verdict is None:
            break
        step = TrimStep(parent=best, child=child, removed=sentence, scores=verdict.scores, n_val=n_val,
                        kept=verdict.kept, rollouts_after=rollouts_used())
        outcome.steps.append(step)
        if verdict.kept:
            best, target = child, max(target, sum(verdict.scores.values()))
            reference.update(verdict.scores)
    _complete_last_kept(outcome, list(best_scores), score)
    return outcome


def _complete_last_kept(outcome: TrimOutcome, val_ids: list[str], score: Scorer) -> None:
    """The result's full val table for the prompt trimming ends with, as far as the budget goes."""
    if not outcome.kept or outcome.kept[-1].complete:
        return
    last = outcome.kept[-1]
    rest = [i for i in val_ids if i not in last.scores]
    while rest:
        got = score(last.child, rest)
        if not got:
            return
        last.scores.update(got)
        rest = [i for i in rest if i not in got]


def _sentences(name: str, text: str) -> Iterator[Sentence]:
    offset = 0
    for line in text.splitlines(keepends=True):
        position = 0
        for part in SENTENCE_END.split(line.rstrip("\n")):
            start = line.index(part, position) if part else position
            position = start + len(part)
            stripped = part.strip()
            if stripped:
                lead = len(part) - len(part.lstrip())
                yield Sentence(name, offset + start + lead, offset + start + lead + len(stripped), stripped)
        offset += len(line)


def _removable(sentence: str) -> bool:
    """Plain prose only: not a placeholder's sentence, a label ("Ticket:"), a heading or a fence,
    and at least three words."""
    return (not PLACEHOLDER.search(sentence) and not sentence.endswith(":") and not sentence.startswith(("#", "```", "~~~"))
            and len(sentence.split()) >= 3)


def _length(candidate: Mapping[str, str]) -> int:
    return sum(len(text) for text in candidate.values())
