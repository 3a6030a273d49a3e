"""Lengths converted to metres by the task model that gepa-bot optimizes prompts/convert.md for.

Each case is one gepa-bot instance. A reply must be the number of metres alone ("1.83"), within 1% of the
exact value; on a miss the test records the feedback the reflection model reads.
"""

import re
from pathlib import Path

import pytest

from gepa_bot import evalkit

PROMPT = Path(__file__).resolve().parents[1] / "prompts" / "convert.md"
PLACEHOLDER = "{quantity}"
TOLERANCE = 0.01  # relative
CASES = [
    ("6 feet", 1.8288), ("12 inches", 0.3048), ("3 yards", 2.7432), ("1 mile", 1609.344),
    ("250 centimetres", 2.5), ("42 millimetres", 0.042), ("2.5 kilometres", 2500.0), ("1 nautical mile", 1852.0),
    ("5 feet 10 inches", 1.778), ("100 yards", 91.44), ("half a mile", 804.672), ("30 cm", 0.3),
    ("10 km", 10000.0), ("8 inches", 0.2032), ("26.2 miles", 42164.8), ("1 foot", 0.3048),
    ("750 mm", 0.75), ("3 feet 3 inches", 0.9906), ("two and a half feet", 0.762), ("50 centimeters", 0.5),
]
BARE_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
FORM_RULE = "answer with the number of metres only, no unit"  # what the feedback states when the form is wrong


def shown(metres: float) -> str:
    """The expected value as a person would write it: 1.83, 0.042, 1609."""
    return f"{metres:.3g}" if metres < 100 else f"{metres:.0f}"


def verdict(reply: str, metres: float) -> str:
    """Why ``reply`` is wrong, or "" when it is the right bare number."""
    text = reply.strip().rstrip(".").replace(",", "")
    if not BARE_NUMBER.fullmatch(text):
        return "not a bare number" if BARE_NUMBER.search(text) else "no number in it"
    if abs(float(text) - metres) > TOLERANCE * metres:
        return "wrong value"
    return ""


@pytest.mark.parametrize(("quantity", "metres"), CASES, ids=[quantity for quantity, _ in CASES])
def test_converts_to_metres(quantity, metres, record_property):
    template = PROMPT.read_text(encoding="utf-8")
    if PLACEHOLDER not in template:
        record_property("gepa_feedback", f"the prompt lost its {PLACEHOLDER} placeholder, so the model never saw "
                        f"{quantity!r}")
        pytest.fail("placeholder missing")
    reply = evalkit.complete(template.replace(PLACEHOLDER, quantity), max_tokens=32)  # no model: an error, not a 0
    problem = verdict(reply, metres)
    if problem:
        rule = "" if problem == "wrong value" else f"; {FORM_RULE}"
        record_property("gepa_feedback", f"{quantity}: expected {shown(metres)} metres as a bare number, "
                        f"reply was {reply.strip()!r} ({problem}){rule}")
    assert not problem, problem
