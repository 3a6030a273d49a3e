#!/usr/bin/env python3
"""One proposal of each reflection move on a bench task's seed prompt, scored on val: no search.

    flock /tmp/llama.lock python bench/rules_probe.py --task incidents [--repeats 2]

Scores the seed prompt on train and val with the embedded task model (temperature 0, the task's own eval),
hands the train failures (up to 8, as the search would) to gepa-bot's reflector, asks for one ``rules``,
``example``, ``edit`` and ``simplify`` proposal each (``--repeats`` times), and scores every proposed prompt on
val. Prints the text added, the reflector's rationale and the val score. The held-out test split is never scored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from gepa.proposer.reflective_mutation.reflection_lm import ReflectionProposal  # noqa: E402
from instruction_probe import run_eval  # noqa: E402  (bench/ is this script's directory)

from gepa_bot.models.modelserver import LocalModelServer  # noqa: E402
from gepa_bot.runlog import RunLog  # noqa: E402
from gepa_bot.search.budget import Budget  # noqa: E402
from gepa_bot.search.edits import INSTRUCTION_SCHEMA  # noqa: E402
from gepa_bot.search.llm import LLM  # noqa: E402
from gepa_bot.search.reflection import RationaleReflector  # noqa: E402

MOVES = ("rules", "example", "edit", "simplify")


def mean(results: dict[str, dict]) -> float:
    return sum(r["score"] for r in results.values()) / len(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="incidents")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--moves", default=",".join(MOVES))
    parser.add_argument("--skip-seed-val", action="store_true", help="do not score the seed prompt on val")
    parser.add_argument("--train", type=int, default=0, help="score only the first N train ids (0: all)")
    args = parser.parse_args()
    task_dir = ROOT / "bench/tasks" / args.task
    prompt_path = next((task_dir / "prompts").iterdir())
    prompt_file, seed = f"prompts/{prompt_path.name}", prompt_path.read_text()
    rows = [json.loads(line) for line in (task_dir / "data.jsonl").read_text().splitlines() if line.strip()]
    splits = {name: [r["id"] for r in rows if r["split"] == name] for name in ("train", "val")}
    splits["train"] = splits["train"][:args.train or None]
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch, LocalModelServer() as server:
        env = {**os.environ, **server.eval_env()}
        train = run_eval(task_dir, prompt_file, seed, splits["train"], env)
        val = {} if args.skip_seed_val else run_eval(task_dir, prompt_file, seed, splits["val"], env)
        print(f"seed: train {mean(train):.3f} val {mean(val) if val else float('nan'):.3f} "
              f"({time.monotonic() - started:.0f} s)", flush=True)
        failures = sorted((r for r in train.values() if r["score"] < 1.0), key=lambda r: r["score"])[:8]
        records = [{"Inputs": {"instance_id": r["id"]}, "Generated Outputs": r.get("output") or "",
                    "Feedback": r["feedback"], "score": r["score"]} for r in failures]
        runlog = RunLog(Path(scratch) / "run")
        kwargs = server.litellm_kwargs()
        llm = LLM(kwargs["model"], Budget(max_rollouts=10**6), runlog, max_tokens=384, temperature=0.7,
                  extra={"api_base": kwargs["api_base"], "api_key": kwargs["api_key"], "seed": 0})
        reflector = RationaleReflector(llm=llm, runlog=runlog, style="mixed", attempts=2,
                                       response_format={"type": "json_object", "schema": INSTRUCTION_SCHEMA})
        for move in args.moves.split(","):
            for _ in range(args.repeats):
                began = time.monotonic()
                proposal = reflector._propose_one("p", seed, records, ReflectionProposal(new_texts={}), "seed", move)
                if proposal is None:
                    print(f"[{move}] no proposal; rejected: {[r['reason'][:160] for r in reflector.rejected[-2:]]}")
                    continue
                scored = mean(run_eval(task_dir, prompt_file, proposal.text, splits["val"], env))
                print(f"[{move}] val {scored:.3f} ({time.monotonic() - began:.0f} s), {len(proposal.text)} chars\n"
                      f"  rationale: {proposal.rationale}\n  failures: {', '.join(proposal.failure_ids)}\n"
                      f"  text: {proposal.text!r}", flush=True)
        runlog.close()
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
