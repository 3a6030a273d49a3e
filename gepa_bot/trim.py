"""Trimming: after the search, delete sentences the search added to the best prompt while val does not drop.

Proposals from a small reflection model mostly add text: the same rule twice, generic advice next to the one
sentence that helps. Nothing in GEPA's loop takes a sentence out again, so the best prompt grows. Here each
sentence of the best candidate that is not in the seed prompt (and holds no placeholder) is tried without it,
duplicates first and then the longest; a shorter candidate is kept when its val mean is at least the best's.

The rollouts for it are held back from the search (``held_back``): as many full val passes as the current
val-best has added sentences, at most ``TRIM_SHARE`` of the budget (at least one pass), and none while the
seed is best: the search comes first (on afinn, gepa-bot's best prompt of one bench seed was found 23 rollouts
before the end of a 200-rollout run).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from gepa_bot.discovery import PLACEHOLDER
from gepa_bot.edits import normalized, tidy_blank_lines

TRIM_SHARE = 0.15  # of the rollout budget, at most, for trimming (but one val pass when the budget is small)
MIN_VAL_PASSES = 4  # a budget of fewer val passes than this is all the search's
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
    """One tried deletion and what the val set said."""

    parent: dict[str, str]
    child: dict[str, str]
    removed: Sentence
    val_mean: float
    kept: bool
    rollouts_after: int


@dataclass
class TrimOutcome:
    steps: list[TrimStep] = field(default_factory=list)

    @property
    def kept(self) -> list[TrimStep]:
        return [step for step in self.steps if step.kept]


def removable_sentences(seed: Mapping[str, str], candidate: Mapping[str, str]) -> list[Sentence]:
    """Sentences of ``candidate`` that the seed does not have, in the order to try: repeats first, then longest."""
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
    return repeats + rest


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
    trimmed = tidy_blank_lines(before + after)
    if text.endswith("\n") and not trimmed.endswith("\n"):
        trimmed += "\n"
    return trimmed


def trim(best: dict[str, str], best_val: float, seed: Mapping[str, str], trials: int,
         score: Callable[[dict[str, str]], tuple[float, int] | None]) -> TrimOutcome:
    """Greedy deletions from ``best``: each tried sentence costs one ``score`` call (val mean, rollouts so far;
    None when the budget is gone). A deletion is kept when the val mean does not drop."""
    outcome = TrimOutcome()
    tried: set[tuple[str, bool]] = set()  # (sentence, whether it was a repeat): a kept repeat's twin is tried again
    while len(outcome.steps) < trials:
        sentences = removable_sentences(seed, best)
        counts = Counter(s.key for s in sentences)
        sentence = next((s for s in sentences if (s.key, counts[s.key] > 1) not in tried), None)
        if sentence is None:
            break
        tried.add((sentence.key, counts[sentence.key] > 1))
        child = {**best, sentence.component: without(best[sentence.component], sentence)}
        scored = score(child)
        if scored is None:
            break
        val_mean, rollouts = scored
        kept = val_mean >= best_val
        outcome.steps.append(TrimStep(parent=best, child=child, removed=sentence, val_mean=val_mean, kept=kept,
                                      rollouts_after=rollouts))
        if kept:
            best, best_val = child, val_mean
    return outcome


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
