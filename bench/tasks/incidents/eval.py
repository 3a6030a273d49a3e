"""Incident-priority eval (bench task), speaking gepa-bot's command protocol.

    GEPA_BOT_MODE=list      print the train and val ids with their split (test is held out)
    GEPA_BOT_MODE=evaluate  score the ids in GEPA_BOT_IDS_FILE (train+val when none are given)

The candidate prompt is read from ``prompts/triage.txt`` in the current directory; ``{report}`` is
replaced with the incident report. The answer is the first priority label in the reply ("P2",
"p 2", "priority 2"). Score 1.0 when it is the expected label, else 0.0. The labels follow a written
policy (POLICY) that the seed prompt does not state: the feedback on a failure states the policy's rule
for the expected label (and for the label given), as a reviewer applying the policy would.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from gepa_bot import evalkit

DATA = Path(__file__).resolve().parent / "data.jsonl"
PROMPT_FILE = Path("prompts/triage.txt")
PLACEHOLDER = "{report}"
MAX_TOKENS = 8
LABELS = ("P1", "P2", "P3", "P4")
POLICY = {
    "P1": "a customer-facing outage, data loss or a security breach, however calmly it is reported",
    "P2": "a core feature broken or badly degraded for many customers with no workaround",
    "P3": "a problem that affects a single customer or only internal tools, or that has a workaround",
    "P4": "a cosmetic issue, a question or a feature request, however urgent the wording",
}
LABEL = re.compile(r"\b(?:p\s*-?\s*|priority\s*:?\s*)([1-4])\b", re.IGNORECASE)


def parse(reply: str) -> str | None:
    match = LABEL.search(reply)
    return f"P{match.group(1)}" if match else None


def score(row: dict, reply: str) -> tuple[float, str, str | None]:
    expected, got = row["label"], parse(reply)
    shown = " ".join(reply.split())[:80]
    rule = f"under our policy {expected} means {POLICY[expected]}"
    if got == expected:
        return 1.0, f"correct: {expected}", got
    if got is None:
        return 0.0, (f"expected {expected}, but the reply {shown!r} has no priority label; answer with exactly one of "
                     f"P1, P2, P3 or P4; {rule}"), got
    return 0.0, f"expected {expected}, got {got}: {rule}; {got} means {POLICY[got]}", got


def score_row(row: dict, reply: str) -> tuple[float, str, dict]:
    value, feedback, got = score(row, reply)
    return value, feedback, {"parsed": got, "expected": row["label"]}


def main() -> int:
    return evalkit.run_template_eval(DATA, PROMPT_FILE, PLACEHOLDER, score_row, noun="report", max_tokens=MAX_TOKENS)


if __name__ == "__main__":
    sys.exit(main())
