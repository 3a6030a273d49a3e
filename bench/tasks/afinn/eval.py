"""Word valence eval (bench task, AFINN-165), speaking gepa-bot's command protocol.

    GEPA_BOT_MODE=list      print the train and val ids with their split (test is held out)
    GEPA_BOT_MODE=evaluate  score the ids in GEPA_BOT_IDS_FILE (train+val when none are given)

The candidate prompt is read from ``prompts/afinn.txt`` in the current directory; ``{word}`` is
replaced with an English word. The model must rate the word's valence as AFINN's annotators did,
an integer from -5 to 5: score 1.0 for the exact value, 0.5 for the right sign one step off,
0.0 otherwise. The first integer in the reply is the answer.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from gepa_bot import evalkit

DATA = Path(__file__).resolve().parent / "data.jsonl"
PROMPT_FILE = Path("prompts/afinn.txt")
PLACEHOLDER = "{word}"
MAX_TOKENS = 6
INTEGER = re.compile(r"[-+\u2212]?\d+")


def parse(reply: str) -> int | None:
    """The first integer in the reply (a Unicode minus counts as '-'), or None."""
    match = INTEGER.search(reply)
    return int(match.group().replace("\u2212", "-")) if match else None


def score(expected: int, reply: str) -> tuple[float, str]:
    got = parse(reply)
    shown = reply.strip().replace("\n", " ")[:80]
    if got is None:
        return 0.0, f"expected {expected}, got {shown!r}: no integer; answer with one integer from -5 to 5"
    if got == expected:
        return 1.0, f"correct: {expected}"
    if not -5 <= got <= 5:
        return 0.0, f"expected {expected}, got {got}: outside the scale; answer with one integer from -5 to 5"
    if (got > 0) != (expected > 0):
        return 0.0, f"expected {expected}, got {got}: wrong sign"
    off = abs(got) - abs(expected)
    how = f"too strong by {off}" if off > 0 else f"too weak by {-off}"
    return (0.5 if abs(off) == 1 else 0.0), f"expected {expected}, got {got}: {how}"


def score_row(row: dict, reply: str) -> tuple[float, str, dict]:
    value, feedback = score(int(row["label"]), reply)
    return value, feedback, {"parsed": parse(reply), "expected": int(row["label"])}


def main() -> int:
    return evalkit.run_template_eval(DATA, PROMPT_FILE, PLACEHOLDER, score_row, noun="word", max_tokens=MAX_TOKENS)


if __name__ == "__main__":
    sys.exit(main())
