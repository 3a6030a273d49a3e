#!/usr/bin/env python3
"""gepa-bot's own overhead per rollout, with an instant eval and a scripted reflector (no model, no sleep).

    python bench/overhead.py --n-val 10000 --budget 20000 [--repo-root .]   # one JSON line per measurement

Measures, in one process: the first run (every rollout executed: ms of gepa-bot per executed rollout, i.e.
wall time minus the eval processes' own time is NOT subtracted; the eval is a no-op script, so the figure is
an upper bound of the bot's overhead plus one process start per batch), then a fully cached rerun of the same
run directory (wall seconds). ``--repo-root`` picks which checkout of gepa_bot is measured (before/after
comparisons run this same script against two checkouts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

EVAL = """
import json, os, sys
ids = None
if os.environ.get("GEPA_BOT_MODE") == "list":
    n_train, n_val = int(os.environ["OVH_TRAIN"]), int(os.environ["OVH_VAL"])
    for k in range(n_train + n_val):
        print(json.dumps({"id": f"i{k:05d}", "split": "train" if k < n_train else "val"}))
    sys.exit(0)
prompt = open("prompts/main.txt").read()
for i in open(os.environ["GEPA_BOT_IDS_FILE"]).read().split():
    hit = int(i[1:]) % 7 < prompt.count("rule")
    print(json.dumps({"id": i, "score": 1.0 if hit else 0.0, "feedback": "ok" if hit else "add a rule"}))
"""


class Reflector:
    """A scripted reflection model: every proposal adds one more rule (and so scores better)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model, messages, **params):
        from gepa_bot.search.llm import Reply

        self.calls += 1
        rules = "\n".join(f"rule {k}" for k in range(self.calls))
        return Reply(text=f"Rationale: more rules.\n\n````prompt\nAnswer {{question}}.\n{rules}\n````")


def measure(n_val: int, n_train: int, budget: int, work: Path) -> dict:
    from gepa_bot.config import load_config
    from gepa_bot.search.engine import optimize
    from gepa_bot.search.session import RunSettings

    repo = work / "repo"
    (repo / "prompts").mkdir(parents=True)
    (repo / "prompts" / "main.txt").write_text("Answer {question}.\n")
    (repo / "eval.py").write_text(EVAL)
    (repo / ".gepa-bot.yml").write_text(
        "prompts:\n  - path: prompts/main.txt\neval:\n  command: python eval.py\n  timeout: 600\n"
        f"budget:\n  rollouts: {budget}\n  wall_time_minutes: 120\n"
        "models:\n  task: openai/none\n  reflection: openai/scripted\n"
        "optimizer:\n  minibatch_size: 3\n  workers: 2\n  seed: 0\n  reflection_style: rewrite\n")
    os.environ.update(OVH_TRAIN=str(n_train), OVH_VAL=str(n_val))

    def run() -> tuple[dict, float]:
        settings = RunSettings(repo=repo, config=load_config(repo / ".gepa-bot.yml"), config_path=repo / ".gepa-bot.yml",
                               run_dir=work / "run", cache_dir=work / "cache", transport=Reflector())
        started = time.perf_counter()
        result = optimize(settings)
        return result.budget.model_dump(), time.perf_counter() - started

    first, first_s = run()
    rerun, rerun_s = run()
    executed = first["rollouts_executed"]
    return {"n_val": n_val, "budget": budget, "env_vars": len(os.environ), "rollouts": first["rollouts_used"],
            "executed": executed, "first_run_s": round(first_s, 2),
            "ms_per_executed_rollout": round(first_s / max(1, executed) * 1000, 3),
            "rerun_s": round(rerun_s, 2), "rerun_executed": rerun["rollouts_executed"],
            "log_bytes": (work / "run" / "run.jsonl").stat().st_size,
            "cache_disk_bytes": sum(p.stat().st_blocks * 512 for p in (work / "cache").rglob("*") if p.is_file())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-val", type=int, default=2000)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--budget", type=int, default=6000)
    parser.add_argument("--repo-root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    sys.path.insert(0, str(args.repo_root.resolve()))
    with tempfile.TemporaryDirectory(prefix="gepa-bot-overhead-") as tmp:
        row = measure(args.n_val, args.n_train, args.budget, Path(tmp))
    print(json.dumps({"label": args.label, **row}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
