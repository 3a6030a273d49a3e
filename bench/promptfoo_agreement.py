#!/usr/bin/env python3
"""gepa-bot's promptfoo suite vs `promptfoo eval` itself, per test, on promptfoo's own example configs.

    python bench/promptfoo_agreement.py [--out bench/results/promptfoo-agreement.md]

Every config of tests/fixtures/promptfoo/examples/ (promptfoo's examples, adapted only to run offline; see its
README) and gepa-bot's edge cases (tests/fixtures/promptfoo/edge-cases/) is scored by both against the same
loopback stub model; a test agrees when each of its rows (prompt x provider x vars) has the same score and the
same pass/fail. The fixtures, the stub and the comparison are tests/promptfoo_examples.py's, the ones
tests/test_suite_promptfoo.py asserts. Needs Node.js and promptfoo in .ci (npm ci --prefix .ci).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from promptfoo_examples import (  # noqa: E402
    EDGE_CASES,
    PROMPTFOO_EXAMPLES,
    ConfigAgreement,
    StubModel,
    compare,
)

OUT = ROOT / "bench" / "results" / "promptfoo-agreement.md"


def table_row(r: ConfigAgreement) -> str:
    equal_scores = sum(t.equal_scores for t in r.tests)
    equal_verdicts = sum(t.equal_verdicts for t in r.tests)
    return (f"| {r.fixture.removeprefix('examples/')} | {r.config} | {len(r.tests)} | {r.rows} | {r.passing_rows} | "
            f"{equal_scores}/{len(r.tests)} | {equal_verdicts}/{len(r.tests)} |")


def agree(results: list[ConfigAgreement]) -> tuple[int, int]:
    """(tests whose every row has equal scores and verdicts, tests)."""
    tests = [t for r in results for t in r.tests]
    return sum(t.equal_scores and t.equal_verdicts for t in tests), len(tests)


def report(examples: list[ConfigAgreement], edge: list[ConfigAgreement]) -> str:
    header = ["| example | config | tests | rows | passing rows | equal scores | equal verdicts |",
              "|---|---|---:|---:|---:|---:|---:|"]
    agreed, total = agree(examples)
    rows, passing = sum(r.rows for r in examples), sum(r.passing_rows for r in examples)
    edge_agreed, edge_total = agree(edge)
    version = examples[0].promptfoo_version if examples else "?"
    lines = [
        "# promptfoo agreement: gepa-bot's promptfoo suite vs `promptfoo eval`", "",
        f"promptfoo {version}, {datetime.date.today().isoformat()}, `python bench/promptfoo_agreement.py`. Each "
        "config of promptfoo's own examples directory (copied to `tests/fixtures/promptfoo/examples/`, adapted only "
        "to run offline: see its README) is scored twice against the same loopback stub model "
        "(`tests/promptfoo_examples.py`: a few canned answers, else the prompt's last line; llm-rubric graded by "
        "the stub): by gepa-bot's promptfoo suite (`providers: task_model`, `grader: task_model`, one instance per "
        "test case) and by `promptfoo eval -c <config> -r openai:chat:stub --grader openai:chat:stub` run "
        "directly. A row is one prompt x provider x vars combination of a test; *equal scores* / *equal verdicts* "
        "count the tests whose every row has the same score / the same pass-fail in both runs.", "",
        *header, *map(table_row, examples),
        f"| **total** | {len(examples)} configs | {total} | {rows} | {passing} | "
        f"{sum(t.equal_scores for r in examples for t in r.tests)}/{total} | "
        f"{sum(t.equal_verdicts for r in examples for t in r.tests)}/{total} |", "",
        f"**{agreed}/{total} tests agree** (every row's score and verdict) on promptfoo's examples.", "",
        "gepa-bot's own edge cases (`tests/fixtures/promptfoo/edge-cases/`, written for gepa-bot in promptfoo's "
        "format: YAML 1.1 look-alikes, JavaScript regex syntax, weight-0 assertions, defaultTest "
        "transform/transformVars):", "", *header, *map(table_row, edge), "",
        f"**{edge_agreed}/{edge_total} tests agree** on the edge cases.",
    ]
    differ = [(r, t) for r in examples + edge for t in r.tests if not (t.equal_scores and t.equal_verdicts)]
    if differ:
        lines += ["", "## Disagreements", ""]
        lines += [f"- {r.fixture} {r.config} `{t.id}`: gepa-bot {t.ours} vs promptfoo {t.theirs}" for r, t in differ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    stub = StubModel()
    try:
        with tempfile.TemporaryDirectory(prefix="promptfoo-agreement-") as tmp:
            def run(fixture: str, config: str) -> ConfigAgreement:
                result = compare(fixture, config, stub, Path(tmp) / f"{fixture}-{config}")
                print(table_row(result), flush=True)
                return result
            examples = [run(*c) for c in PROMPTFOO_EXAMPLES]
            edge = [run(*c) for c in EDGE_CASES]
    finally:
        stub.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(examples, edge), encoding="utf-8")
    agreed, total = agree(examples + edge)
    print(f"{agreed}/{total} tests agree; wrote {args.out}")
    return 0 if agreed == total else 1


if __name__ == "__main__":
    sys.exit(main())
