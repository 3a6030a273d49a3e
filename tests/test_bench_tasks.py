"""The rule-in-feedback bench tasks: deterministic data, split sizes, and feedback that states the rules."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from gepa_bot.search.feedback_rules import extract_statements

TASKS = Path(__file__).resolve().parents[1] / "bench" / "tasks"


def _eval_module(task: str):
    spec = importlib.util.spec_from_file_location(f"bench_eval_{task}", TASKS / task / "eval.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(task: str) -> list[dict]:
    return [json.loads(line) for line in (TASKS / task / "data.jsonl").read_text(encoding="utf-8").splitlines()]


def _records(module, cases, noun: str) -> list[dict]:
    records = []
    for number, (row, reply) in enumerate(cases):
        value, feedback, _ = module.score_row(row, reply)
        records.append({"Inputs": {"instance_id": f"x{number}"}, "score": value,
                        "Feedback": f"{feedback}; {noun}: {row['input']!r}"})
    return records


def test_incidents_data_is_deterministic_and_split_per_priority():
    made = subprocess.run([sys.executable, str(TASKS / "incidents" / "make_data.py")], capture_output=True, text=True,
                          check=True).stdout
    assert made == (TASKS / "incidents" / "data.jsonl").read_text(encoding="utf-8")
    rows = _rows("incidents")
    assert Counter(r["split"] for r in rows) == {"train": 32, "val": 24, "test": 104}
    assert len({r["input"] for r in rows}) == len(rows)
    assert Counter(r["label"] for r in rows if r["split"] == "test") == {p: 26 for p in ("P1", "P2", "P3", "P4")}


def test_incidents_feedback_states_the_policy_rule_the_seed_prompt_lacks():
    module = _eval_module("incidents")
    seed = (TASKS / "incidents" / "prompts" / "triage.txt").read_text(encoding="utf-8")
    assert "outage" not in seed
    rows = {r["label"]: r for r in _rows("incidents") if r["split"] == "train"}
    assert module.score_row(rows["P1"], "P1")[0] == 1.0 and module.score_row(rows["P1"], "Priority: 1")[0] == 1.0
    records = _records(module, [(rows["P1"], "P3"), (rows["P1"], "P2"), (rows["P4"], "P1"), (rows["P2"], "High")],
                       "report")
    statements = extract_statements(records, seed)
    assert statements[0].scope == "Under our policy" and statements[0].ids == ("x0", "x1", "x2", "x3")
    assert statements[0].definitions == tuple(module.POLICY.items())  # the whole scale, in the policy's words


def test_continents_has_a_large_test_split_and_feedback_with_the_codes():
    rows = _rows("continents")
    assert Counter(r["split"] for r in rows) == {"train": 24, "val": 20, "test": 208}
    assert {r["label"] for r in rows} == {"AF", "AN", "AS", "EU", "NA", "OC", "SA"}
    module = _eval_module("continents")
    row = {"input": "France", "label": "EU"}
    assert [module.score_row(row, r)[0] for r in ("EU", "Europe", "Asia", "AS", "no idea")] == [1.0, 0.5, 0.0, 0.0, 0.0]
    seed = (TASKS / "continents" / "prompts" / "continent.txt").read_text(encoding="utf-8")
    records = _records(module, [(row, "Europe"), ({"input": "Panama", "label": "NA"}, "South America")], "country")
    texts = [s.text for s in extract_statements(records, seed)]
    assert texts[:2] == ["Answer with the two-letter continent code only",
                         "The codes are AF Africa, AN Antarctica, AS Asia, EU Europe, NA North America, OC Oceania, "
                         "SA South America"]
