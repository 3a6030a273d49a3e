"""Sentiment eval (bench task), speaking gepa-bot's command protocol.

    GEPA_BOT_MODE=list      print the train and val ids with their split (test is held out)
    GEPA_BOT_MODE=evaluate  score the ids in GEPA_BOT_IDS_FILE (train+val when none are given)

The candidate prompt is read from ``prompts/sentiment.txt`` in the current directory; ``{text}``
is replaced with the review sentence. The model must answer ``positive`` or ``negative``:
score 1.0 when the first word of the reply is the right label, 0.5 when the reply names the right
label (and not the other one) but not as its first word, 0.0 otherwise.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from gepa_bot import evalkit

DATA = Path(__file__).resolve().parent / "data.jsonl"
PROMPT_FILE = Path("prompts/sentiment.txt")
PLACEHOLDER = "{text}"
LABELS = ("positive", "negative")
SYNONYMS = {"pos": "positive", "good": "positive", "neg": "negative", "bad": "negative"}
PREFIXES = ("sentiment", "answer", "label", "the", "is")
MAX_TOKENS = 8


def parse(reply: str) -> tuple[str, set[str]]:
    """(first word after trivial prefixes, mapped through synonyms; labels mentioned anywhere)."""
    words = re.findall(r"[a-z]+", reply.lower())
    mentioned = {w for w in words if w in LABELS}
    while words and words[0] in PREFIXES:
        words = words[1:]
    first = SYNONYMS.get(words[0], words[0]) if words else ""
    return first, mentioned


def score(expected: str, reply: str) -> tuple[float, str]:
    first, mentioned = parse(reply)
    other = "negative" if expected == "positive" else "positive"
    shown = reply.strip().replace("\n", " ")[:80]
    if first == expected:
        if len(reply.split()) > 3:
            return 1.0, f"correct ({expected}), but the reply had extra words: {shown!r}; answer with one word"
        return 1.0, f"correct: {expected}"
    if not reply.strip():
        return 0.0, f"expected {expected}, got an empty reply; the answer must be one word: positive or negative"
    if expected in mentioned and other not in mentioned:
        return 0.5, (f"expected {expected}; the reply names it but does not start with it: {shown!r}; "
                     "the answer must be one word: positive or negative")
    if first == other or (other in mentioned and expected not in mentioned):
        return 0.0, f"expected {expected}, got {other} (reply: {shown!r}); wrong sentiment"
    if expected in mentioned and other in mentioned:
        return 0.0, f"expected {expected}; the reply names both labels: {shown!r}; answer with exactly one word"
    return 0.0, (f"expected {expected}, got {shown!r}; the answer must be one word: positive or negative")


def score_row(row: dict, reply: str) -> tuple[float, str, dict]:
    value, feedback = score(row["label"], reply)
    return value, feedback, {"parsed": parse(reply)[0], "expected": row["label"]}


def main() -> int:
    return evalkit.run_template_eval(DATA, PROMPT_FILE, PLACEHOLDER, score_row, noun="review", max_tokens=MAX_TOKENS)


if __name__ == "__main__":
    sys.exit(main())
