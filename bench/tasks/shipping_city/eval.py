"""Delivery-city extraction eval (bench task), speaking gepa-bot's command protocol.

    GEPA_BOT_MODE=list      print the train and val ids with their split (test is held out)
    GEPA_BOT_MODE=evaluate  score the ids in GEPA_BOT_IDS_FILE (train+val when none are given)

The candidate prompt is read from ``prompts/extract.txt`` in the current directory; ``{message}``
is replaced with the customer message. Score 1.0 when the reply is exactly the delivery city
(case, surrounding quotes/punctuation and a "City:" prefix ignored), 0.5 when the reply contains the
delivery city but also other words (and not the other city), 0.0 otherwise. "Dublin, Ireland" counts
as "Dublin".
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from gepa_bot import evalkit

DATA = Path(__file__).resolve().parent / "data.jsonl"
PROMPT_FILE = Path("prompts/extract.txt")
PLACEHOLDER = "{message}"
MAX_TOKENS = 12
PREFIX = re.compile(r"^(?:the\s+)?(?:delivery\s+|destination\s+|shipping\s+)?(?:city|answer)\s*(?:is|:)\s*",
                    re.IGNORECASE)


def normalize(reply: str) -> str:
    lines = [line for line in reply.strip().splitlines() if line.strip()]
    first = lines[0].strip() if lines else ""
    first = PREFIX.sub("", first)
    return first.strip(" \t\"'`*.,;:!?()[]").strip()


def _mentions(text: str, city: str | None) -> bool:
    return bool(city) and re.search(rf"\b{re.escape(city)}\b", text, re.IGNORECASE) is not None


def score(row: dict, reply: str) -> tuple[float, str, str]:
    expected, other = row["label"], row.get("distractor")
    answer = normalize(reply)
    shown = " ".join(reply.split())[:100]
    if not reply.strip():
        return 0.0, f"expected {expected}, got an empty reply; answer with the delivery city only", answer
    if answer.lower() == expected.lower():
        return 1.0, f"correct: {expected}", answer
    head, _, rest = answer.partition(",")
    if head.strip().lower() == expected.lower() and len(answer.split()) <= 4:  # "Dublin, Ireland"
        return 1.0, f"correct: {expected} (the country after the comma was not needed)", answer
    has_expected, has_other = _mentions(reply, expected), _mentions(reply, other)
    if has_other and not has_expected:
        return 0.0, (f"expected {expected}, got {other}: that city is in the message but it is not where the "
                     f"order must be delivered (reply: {shown!r})"), answer
    if has_expected and has_other:
        return 0.0, (f"expected {expected}; the reply names both {expected} and {other} ({shown!r}); "
                     "give only the delivery city"), answer
    if has_expected:
        return 0.5, (f"right city ({expected}) but the reply has extra words: {shown!r}; "
                     "answer with the city name only"), answer
    return 0.0, f"expected {expected}, got {shown!r}; answer with the delivery city name only", answer


def score_row(row: dict, reply: str) -> tuple[float, str, dict]:
    value, feedback, answer = score(row, reply)
    return value, feedback, {"parsed": answer, "expected": row["label"], "distractor": row.get("distractor")}


def main() -> int:
    return evalkit.run_template_eval(DATA, PROMPT_FILE, PLACEHOLDER, score_row, noun="message", max_tokens=MAX_TOKENS)


if __name__ == "__main__":
    sys.exit(main())
