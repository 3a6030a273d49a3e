#!/usr/bin/env python3
"""Can the rule gepa-bot found fit in twice the seed prompt's length? Hand-condensed forms, no search.

    python bench/length_probe.py [--tasks continents,incidents] [--out bench/results/length-probe.md]

#29's target asks for prompts at most 2x the seed's length. For each task this scores, on the train and val
splits (test stays held out), the seed prompt, gepa-bot's best prompts at budget 200 from
bench/results/rows.jsonl, and hand-written forms of the same rules that fit in 2x the seed. It tells whether a
miss of the length target is the search's verbosity (a short form scores as well) or the rule's size (it does
not). Run it alone on the machine: it serves the embedded model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from instruction_probe import score, write_probe_doc  # noqa: E402

from gepa_bot.models.modelserver import LocalModelServer  # noqa: E402

SHORT_FORMS: dict[str, dict[str, str]] = {
    "continents": {
        "codes only": "Which continent is this country in?\nAnswer with its code: AF, AN, AS, EU, NA, OC, SA.\n\n"
                      "Country: {country}\n\nContinent:\n",
        "codes, Oceania named": "Which continent is this country in?\nAnswer with its code: AF, AN, AS, EU, NA, "
                                "SA, or OC (Oceania).\n\nCountry: {country}\n\nContinent:\n",
    },
    "incidents": {
        "P1 and P4 in short": "Read the incident report below and assign it a priority from P1 (highest) to P4 "
                              "(lowest).\nP1: outage, data loss or breach. P4: cosmetic, question or feature "
                              "request.\n\nReport: {report}\n\nPriority:\n",
        "all four in short": "Read the incident report below and assign it a priority from P1 (highest) to P4 "
                             "(lowest).\nP1 outage/data loss/breach; P2 core feature broken; P3 has workaround; "
                             "P4 cosmetic/question.\n\nReport: {report}\n\nPriority:\n",
    },
}


def gepa_bot_prompts(task: str, prompt_file: str) -> dict[str, str]:
    """gepa-bot's best prompts at budget 200 in bench/results/rows.jsonl, one per seed, where they changed."""
    rows = [json.loads(line) for line in (ROOT / "bench/results/rows.jsonl").read_text().splitlines() if line.strip()]
    return {f"gepa-bot's best, seed {r['seed']}": r["prompt"][prompt_file] for r in rows
            if r["task"] == task and r["method"] == "gepa_bot" and r["budget"] == 200 and r["found_at_rollout"]}


def probe(task: str, env: dict[str, str]) -> list[str]:
    """Table rows: each variant's train and val totals and its length against 2x the seed."""
    task_dir = ROOT / "bench/tasks" / task
    prompt_path = next((task_dir / "prompts").iterdir())
    prompt_file, seed = f"prompts/{prompt_path.name}", prompt_path.read_text()
    rows = [json.loads(line) for line in (task_dir / "data.jsonl").read_text().splitlines() if line.strip()]
    splits = {name: [r["id"] for r in rows if r["split"] == name] for name in ("train", "val")}
    variants = {"seed prompt": seed, **gepa_bot_prompts(task, prompt_file), **SHORT_FORMS[task]}
    lines = []
    for name, text in variants.items():
        scores = score(task_dir, prompt_file, text, splits["train"] + splits["val"], env)
        counts = {split: sum(scores[i] for i in ids) for split, ids in splits.items()}
        lines.append(f"| `{task}` | {name} | {counts['train']:.1f}/{len(splits['train'])} | {counts['val']:.1f}/"
                     f"{len(splits['val'])} | {len(text)} | {len(text) / len(seed):.1f}x |")
        print(lines[-1], flush=True)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(SHORT_FORMS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/length-probe.md")
    args = parser.parse_args()
    started = time.monotonic()
    server = LocalModelServer().start()
    env = {**os.environ, **server.eval_env()}
    try:
        lines = [line for task in args.tasks.split(",") for line in probe(task, env)]
    finally:
        server.stop()
    write_probe_doc(args.out, "Length probe: the found rules in at most 2x the seed prompt, no search",
                    f"python bench/length_probe.py --tasks {args.tasks}", server.models[0].name, started,
                    "Train and val totals (a partly right answer scores 0.5 on continents); test is held out.",
                    ["task", "prompt", "train", "val", "chars", "vs seed"], lines)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
