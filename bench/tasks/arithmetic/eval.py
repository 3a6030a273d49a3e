"""Arithmetic word-problem eval (bench task), speaking gepa-bot's command protocol.

    GEPA_BOT_MODE=list      print the train and val ids with their split (test is held out)
    GEPA_BOT_MODE=evaluate  score the ids in GEPA_BOT_IDS_FILE (train+val when none are given)

The candidate prompt is read from ``prompts/solve.txt`` in the current directory; ``{question}``
is replaced with the problem. The answer is the number after "answer is"/"answer:"/"=" nearest the
end of the reply, else the last number in it (the GSM8K convention). Score 1.0 when it equals the
label, else 0.0. The feedback names the likely mistake (a copied number, the wrong operation).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from gepa_bot import evalkit

DATA = Path(__file__).resolve().parent / "data.jsonl"
PROMPT_FILE = Path("prompts/solve.txt")
PLACEHOLDER = "{question}"
MAX_TOKENS = 48

NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
MARKED = re.compile(rf"(?:answer\s*(?:is)?\s*:?|=)\s*\$?\s*({NUMBER})", re.IGNORECASE)


def load_data() -> dict[str, dict]:
    with DATA.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return {row["id"]: row for row in rows}


def _to_number(token: str) -> float | None:
    try:
        return float(token.replace(",", ""))
    except ValueError:
        return None


def extract(reply: str) -> float | None:
    marked = MARKED.findall(reply)
    if marked:
        return _to_number(marked[-1])
    numbers = re.findall(NUMBER, reply)
    return _to_number(numbers[-1]) if numbers else None


def _looks_cut_off(reply: str) -> bool:
    """Long and without a closing mark: probably stopped by the token limit."""
    text = reply.rstrip()
    return len(text.split()) >= MAX_TOKENS * 0.6 and not re.search(r"[.!?)\]]$|\d$", text)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def diagnose(row: dict, got: float) -> str:
    """A hint about how ``got`` may have come about."""
    nums = row.get("numbers", [])
    if got in nums:
        return "that number is copied from the question; the answer must be computed"
    if len(nums) == 2:
        a, b = nums
        ops = {"added": a + b, "subtracted": a - b, "multiplied": a * b}
        if b and a % b == 0:
            ops["divided"] = a // b
        for verb, value in ops.items():
            if got == value:
                return f"that is what you get if the numbers are {verb}, but the problem needs {row['op']}"
    if len(nums) == 3:
        a, b, c = nums
        if got == a + b:
            return f"that stops after the first step ({a} + {b}); the items given away must be subtracted too"
        if got == a - c:
            return f"that forgets the {b} bought; the problem needs {row['op']}"
        if got == a + b + c:
            return f"that adds the {c} given away instead of subtracting; the problem needs {row['op']}"
    return f"the problem needs {row['op']}"


def score(row: dict, reply: str) -> tuple[float, str, float | None]:
    expected = row["label"]
    shown = " ".join(reply.split())[:120]
    got = extract(reply)
    if not reply.strip():
        return 0.0, f"expected {expected}, got an empty reply; give the final answer as a number", None
    cut = _looks_cut_off(reply)
    if got is None:
        why = "the reply was cut off before any number" if cut else "the reply has no number"
        return 0.0, (f"expected {expected}, but {why}: {shown!r}; "
                     f"the answer must end with the number ({row['op']} = {expected})"), None
    if got == float(expected):
        note = "" if len(reply.split()) <= 6 else f" (reply: {shown!r})"
        return 1.0, f"correct: {expected}{note}", got
    hint = diagnose(row, got)
    if cut:
        hint += f"; the reply looks cut off (limit {MAX_TOKENS} tokens): keep the working short and end with the number"
    return 0.0, f"expected {expected}, got {_fmt(got)}: {hint}; reply: {shown!r}", got


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
        if PLACEHOLDER not in template:
            evalkit.emit(instance_id, 0.0, f"the prompt has no {PLACEHOLDER} placeholder, so the model never saw "
                         f"the problem; expected {row['label']}; problem: {row['input']!r}", trace={"raw": None})
            continue
        prompt = template.replace(PLACEHOLDER, row["input"])
        started = time.monotonic()
        try:
            reply = evalkit.complete(prompt, req, max_tokens=MAX_TOKENS)
        except Exception as exc:  # one failing call must not sink the batch
            evalkit.emit(instance_id, 0.0, f"model call failed: {type(exc).__name__}: {exc}")
            continue
        value, feedback, got = score(row, reply)
        evalkit.emit(
            instance_id, value, f"{feedback}; problem: {row['input']!r}",
            trace={"raw": reply, "parsed": got, "expected": row["label"], "kind": row["kind"],
                   "seconds": round(time.monotonic() - started, 3)},
            output=reply,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
