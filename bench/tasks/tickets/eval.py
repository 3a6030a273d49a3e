"""Support-ticket triage eval (bench task built from prompts.example), in gepa-bot's command protocol.

    GEPA_BOT_MODE=list      print the train and val ids with their split (test is held out)
    GEPA_BOT_MODE=evaluate  score the ids in GEPA_BOT_IDS_FILE (train+val when none are given)

The candidate prompt is ``prompts/classify.txt`` in the current directory (prompts.example's system
text and classify prompt in one file); ``{ticket}`` is replaced with the ticket. The reply's label is
the first queue name it mentions (``feature request`` counts); 1.0 when it is the expected queue. A
task directory is a self-contained repo (it is copied to a temporary directory to be evaluated).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from gepa_bot import evalkit

DATA = Path(__file__).resolve().parent / "data.jsonl"
PROMPT_FILE = Path("prompts/classify.txt")
LABELS = ("billing", "bug", "account", "feature_request", "other")
LABEL_PATTERN = re.compile(r"\b(billing|bug|account|feature[ _-]?request|other)\b", re.IGNORECASE)


def normalize(reply: str) -> str:
    """The first queue name in the reply, else its first word."""
    match = LABEL_PATTERN.search(reply)
    if match:
        return re.sub(r"[ _-]", "_", match.group(1).lower()).replace("featurerequest", "feature_request")
    words = reply.lower().split()
    return words[0] if words else ""


def score_row(row: dict, reply: str) -> tuple[float, str, dict]:
    expected, got = row["label"], normalize(reply)
    if got == expected:
        return 1.0, f"correct: expected '{expected}'", {"parsed": got}
    if got in LABELS:
        return 0.0, f"expected '{expected}', got '{got}' (raw reply: {reply.strip()[:80]!r})", {"parsed": got}
    return 0.0, (f"expected '{expected}', but the reply {reply.strip()[:80]!r} is not one of the allowed labels "
                 f"({', '.join(LABELS)})"), {"parsed": got}


def main() -> int:
    return evalkit.run_template_eval(DATA, PROMPT_FILE, "{ticket}", score_row, noun="ticket", max_tokens=12)


if __name__ == "__main__":
    sys.exit(main())
