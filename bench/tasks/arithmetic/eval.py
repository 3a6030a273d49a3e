"""Arithmetic word-problem eval (bench task), speaking gepa-bot's command protocol.

    GEPA_BOT_MODE=list      print the train and val ids with their split (test is held out)
    GEPA_BOT_MODE=evaluate  score the ids in GEPA_BOT_IDS_FILE (train+val when none are given)

The candidate prompt is read from ``prompts/solve.txt`` in the current directory; ``{question}``
is replaced with the problem. The answer is the number after "answer is"/"answer:"/"=" nearest the
end of the reply, else the last number in it (the GSM8K convention). Score 1.0 when it equals the
label, else 0.0. The feedback names the likely mistake (a copied number, the wrong operation).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from gepa_bot import evalkit

DATA = Path(__file__).resolve().parent / "data.jsonl"
PROMPT_FILE = Path("prompts/solve.txt")
PLACEHOLDER = "{question}"
MAX_TOKENS = 48

NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
MARKED = re.compile(rf"(?:answer\s*(?:is)?\s*:?|=)\s*\$?\s*({NUMBER})", re.IGNORECASE)


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


def score_row(row: dict, reply: str) -> tuple[float, str, dict]:
    value, feedback, got = score(row, reply)
    return value, feedback, {"parsed": got, "expected": row["label"], "kind": row["kind"]}


def main() -> int:
    return evalkit.run_template_eval(DATA, PROMPT_FILE, PLACEHOLDER, score_row, noun="problem", max_tokens=MAX_TOKENS)


if __name__ == "__main__":
    sys.exit(main())
