"""Sentiment eval (bench task), speaking gepa-bot's command protocol.

    GEPA_BOT_MODE=list      print the train and val ids with their split (test is held out)
    GEPA_BOT_MODE=evaluate  score the ids in GEPA_BOT_IDS_FILE (train+val when none are given)

The candidate prompt is read from ``prompts/sentiment.txt`` in the current directory; ``{text}``
is replaced with the review sentence. The model must answer ``positive`` or ``negative``:
score 1.0 when the first word of the reply is the right label, 0.5 when the reply names the right
label (and not the other one) but not as its first word, 0.0 otherwise.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from gepa_bot import evalkit

DATA = Path(__file__).resolve().parent / "data.jsonl"
PROMPT_FILE = Path("prompts/sentiment.txt")
PLACEHOLDER = "{text}"
LABELS = ("positive", "negative")
SYNONYMS = {"pos": "positive", "good": "positive", "neg": "negative", "bad": "negative"}
PREFIXES = ("sentiment", "answer", "label", "the", "is")
MAX_TOKENS = 8


def load_data() -> dict[str, dict]:
    with DATA.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return {row["id"]: row for row in rows}


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


def main() -> int:
    req = evalkit.request()
    data = load_data()
    if req.mode == "list":
        evalkit.emit_ids([(i, row["split"]) for i, row in data.items() if row["split"] in ("train", "val")])
        return 0
    ids = req.ids or [i for i, row in data.items() if row["split"] in ("train", "val")]
    try:
        template = PROMPT_FILE.read_text(encoding="utf-8")
    except OSError as exc:
        for i in ids:
            evalkit.emit(i, 0.0, f"cannot read the prompt file {PROMPT_FILE} in {Path.cwd()}: {exc}")
        return 0
    for instance_id in ids:
        row = data.get(instance_id)
        if row is None:
            evalkit.emit(instance_id, 0.0, f"unknown instance id {instance_id!r}")
            continue
        expected, text = row["label"], row["input"]
        if PLACEHOLDER not in template:
            evalkit.emit(instance_id, 0.0, f"the prompt has no {PLACEHOLDER} placeholder, so the model never saw "
                         f"the review; expected {expected}; review: {text!r}", trace={"raw": None})
            continue
        prompt = template.replace(PLACEHOLDER, text)
        started = time.monotonic()
        try:
            reply = evalkit.complete(prompt, req, max_tokens=MAX_TOKENS)
        except Exception as exc:  # one failing call must not sink the batch
            evalkit.emit(instance_id, 0.0, f"model call failed: {type(exc).__name__}: {exc}")
            continue
        value, feedback = score(expected, reply)
        evalkit.emit(
            instance_id, value, f"{feedback}; review: {text!r}",
            trace={"raw": reply, "parsed": parse(reply)[0], "expected": expected,
                   "seconds": round(time.monotonic() - started, 3)},
            output=reply,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
