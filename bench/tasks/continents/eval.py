"""Country-to-continent eval (bench task, npm `countries-list@3.4.1`), speaking gepa-bot's command protocol.

    GEPA_BOT_MODE=list      print the train and val ids with their split (test is held out)
    GEPA_BOT_MODE=evaluate  score the ids in GEPA_BOT_IDS_FILE (train+val when none are given)

The candidate prompt is read from ``prompts/continent.txt`` in the current directory; ``{country}`` is
replaced with a country's name. The answer is the list's two-letter continent code (AF, AN, AS, EU, NA,
OC, SA). Score 1.0 for the right code; 0.5 when the reply names the right continent in words instead of
its code ("Europe" for EU); 0.0 otherwise. The feedback states the codes and the list's conventions.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from gepa_bot import evalkit

DATA = Path(__file__).resolve().parent / "data.jsonl"
PROMPT_FILE = Path("prompts/continent.txt")
PLACEHOLDER = "{country}"
MAX_TOKENS = 8
CONTINENTS = {"AF": "Africa", "AN": "Antarctica", "AS": "Asia", "EU": "Europe", "NA": "North America",
              "OC": "Oceania", "SA": "South America"}
CODES = "the codes are " + ", ".join(f"{c} {n}" for c, n in CONTINENTS.items())
CONVENTIONS = {"AS": "in this list Russia, Türkiye and the Caucasus count as AS",
               "NA": "in this list Central America and the Caribbean count as NA",
               "OC": "in this list Australia, New Zealand and the Pacific islands count as OC"}
CODE = re.compile(r"\b(AF|AN|AS|EU|NA|OC|SA)\b")
NAME = re.compile("|".join(sorted((re.escape(n) for n in CONTINENTS.values()), key=len, reverse=True)) +
                  r"|\bAustralia\b|\bOceania\b", re.IGNORECASE)


def parse(reply: str) -> tuple[str | None, bool]:
    """(continent code, given as a code?) from the first code or continent name in the reply."""
    code, name = CODE.search(reply), NAME.search(reply)
    if code and (not name or code.start() <= name.start()):
        return code.group(1), True
    if name:
        word = name.group(0).lower()
        return ("OC" if word == "australia" else next(c for c, n in CONTINENTS.items() if n.lower() == word)), False
    return None, False


def score(row: dict, reply: str) -> tuple[float, str, str | None]:
    expected = row["label"]
    got, as_code = parse(reply)
    shown = " ".join(reply.split())[:80]
    head = f"expected {expected} ({CONTINENTS[expected]})"
    if got == expected and as_code:
        return 1.0, f"correct: {expected}", got
    if got == expected:
        return 0.5, f"{head}, got {shown!r}: right continent, but answer with the two-letter continent code only; {CODES}", got
    if got is None:
        return 0.0, f"{head}, but the reply {shown!r} names no continent; answer with the two-letter code only; {CODES}", got
    convention = f"; {CONVENTIONS[expected]}" if expected in CONVENTIONS else ""
    form = "" if as_code else f"; answer with the two-letter continent code only; {CODES}"
    return 0.0, f"{head}, got {got} ({CONTINENTS[got]}){convention}{form}", got


def score_row(row: dict, reply: str) -> tuple[float, str, dict]:
    value, feedback, got = score(row, reply)
    return value, feedback, {"parsed": got, "expected": row["label"]}


def main() -> int:
    return evalkit.run_template_eval(DATA, PROMPT_FILE, PLACEHOLDER, score_row, noun="country", max_tokens=MAX_TOKENS)


if __name__ == "__main__":
    sys.exit(main())
