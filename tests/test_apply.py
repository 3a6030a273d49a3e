"""`/gepa apply N`'s data in the PR body (gepa_bot/github/apply.py) and its command parsing; the end-to-end runs through
the fake GitHub are in tests/test_action.py."""

from __future__ import annotations

import base64
import zlib

from test_report import add_candidate, make_result

from gepa_bot.github.apply import CHOICES, decode, embed
from gepa_bot.github.trigger import parse_command
from gepa_bot.report.render import BODY_BUDGET, render

SHA = "a" * 40


def test_the_choices_round_trip_with_the_best_and_the_shown_variants():
    result, _ = make_result()
    add_candidate(result, "Keep it short {question}\n", {"v000": 1.0})
    add_candidate(result, "Keep it short, {question}.\n", {"v000": 1.0})  # trivially #2: not shown, not stored
    choices = decode("body\n" + embed(result, "main", SHA))
    assert choices is not None and (choices.base, choices.base_sha, choices.best) == ("main", SHA, 1)
    assert sorted(choices.candidates) == [1, 2]
    assert choices.candidates[2].texts == {"p.txt": "Keep it short {question}\n"}


def test_the_choices_are_capped_and_the_body_leaves_room_for_them():
    result, originals = make_result(n_val=3000, feedback="x" * 5000, prompt_lines=4000)
    for k in range(3):
        add_candidate(result, "".join(f"{k} {n} {{question}} {n * 7919 % 10007}\n" for n in range(6000)), {"v001": 1.0})
    data = embed(result, "main", SHA, limit=24_000)
    assert 0 < len(data) <= 24_000
    choices = decode(data)
    assert choices is not None and choices.best in choices.candidates and len(choices.candidates) < 4
    body, _ = render(result, originals, trailer=data)
    assert len(body) <= BODY_BUDGET and body.endswith(data)
    assert embed(result, "main", SHA, limit=10) == ""


def test_bad_or_oversized_choices_read_as_none():
    assert decode("no data here") is None
    assert decode("<!-- gepa-bot:choices=!!! -->") is None
    assert decode("<!-- gepa-bot:choices=" + base64.b64encode(b"not zlib").decode() + " -->") is None
    bomb = base64.b64encode(zlib.compress(b"{" * (8 * 1024 * 1024))).decode()
    assert decode(f"<!-- gepa-bot:choices={bomb} -->") is None
    wrong = base64.b64encode(zlib.compress(b'{"version": 1, "base": "main", "base_sha": "x", "best": 1, '
                                           b'"candidates": {}}')).decode()
    assert decode(f"<!-- gepa-bot:choices={wrong} -->") is None and CHOICES.search(f"<!-- gepa-bot:choices={wrong} -->")


def test_apply_commands_parse():
    assert parse_command("/gepa apply 2").candidate == "2"
    assert parse_command("/gepa apply BEST").candidate == "best"
    for bad in ("/gepa apply", "/gepa apply 2 3", "/gepa apply -1", "/gepa apply two"):
        assert parse_command(bad).verb == "invalid"
