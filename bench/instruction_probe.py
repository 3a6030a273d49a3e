#!/usr/bin/env python3
"""How much one general instruction line is worth on a bench task, and where it goes, with no search at all.

    python bench/instruction_probe.py [--task arithmetic] [--out bench/results/instruction-probe-arithmetic.md]

Scores hand-written variants of the task's seed prompt (the seed, one instruction line before or after the
input, and the best prompts plain gepa found in the bench) on the train and val splits with the embedded task
model, temperature 0, through the task's own eval command. The held-out test split is never scored. It shows
the headroom a search could reach with a single edit, the yardstick for gepa-bot's edit-style reflection.
Run it alone on the machine: it serves the embedded model.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from report import machine_info  # noqa: E402

from gepa_bot.discovery import PLACEHOLDER  # noqa: E402
from gepa_bot.models.modelserver import LocalModelServer  # noqa: E402

LINES = ("Keep the working short and end with the number.", "Answer with only the final number.")


def variants(seed: str, placeholder: str, plain_gepa: dict[str, str]) -> dict[str, str]:
    """The seed prompt, each instruction line before and after the input, and plain gepa's best prompts."""
    head, _, tail = seed.partition(placeholder)
    found = {"seed prompt": seed}
    for line in LINES:
        found[f"before the input: {line}"] = f"{head.rstrip()}\n\n{line}\n\n{placeholder}{tail}"
        found[f"after the input: {line}"] = f"{head}{placeholder}\n\n{line}\n"
    found.update({f"plain gepa's best, {where}": text for where, text in plain_gepa.items()})
    return found


def plain_gepa_prompts(task: str, prompt_file: str) -> dict[str, str]:
    """The prompts plain gepa kept at budget 200 in bench/results/rows.jsonl, one per seed, where they changed."""
    rows = [json.loads(line) for line in (ROOT / "bench/results/rows.jsonl").read_text().splitlines() if line.strip()]
    return {f"seed {r['seed']}": r["prompt"][prompt_file] for r in rows
            if r["task"] == task and r["method"] == "plain_gepa" and r["budget"] == 200 and r["found_at_rollout"]}


def score(task_dir: Path, prompt_file: str, text: str, ids: list[str], env: dict[str, str]) -> dict[str, float]:
    """Per-id scores of ``text`` from the task's eval command (a missing result or an error counts as 0)."""
    return {i: float(r.get("score", 0.0)) for i, r in run_eval(task_dir, prompt_file, text, ids, env).items()}


def run_eval(task_dir: Path, prompt_file: str, text: str, ids: list[str], env: dict[str, str]) -> dict[str, dict]:
    """The eval's result line per id (score, feedback, output; or an error line)."""
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / prompt_file).parent.mkdir(parents=True)
        (Path(work) / prompt_file).write_text(text)
        (Path(work) / "ids").write_text("\n".join(ids) + "\n")
        done = subprocess.run([sys.executable, str(task_dir / "eval.py")], cwd=work, capture_output=True, text=True,
                              env={**env, "GEPA_BOT_MODE": "evaluate", "GEPA_BOT_IDS_FILE": str(Path(work) / "ids")})
    results = {r["id"]: r for r in (json.loads(line) for line in done.stdout.splitlines() if line.startswith("{"))}
    return {i: results.get(i, {"id": i, "score": 0.0, "feedback": "no result"}) for i in ids}


def write_probe_doc(out: Path, title: str, command: str, model: str, started: float, scope: str,
                    columns: list[str], lines: list[str]) -> None:
    """A probe's Markdown result: title, how it ran (command, date, machine, model, seconds), its table."""
    machine = machine_info()
    out.write_text("\n".join([
        f"# {title}", "",
        f"Command: `{command}`; {datetime.date.today()}; machine: {machine['nproc']} cores, {machine['cpu']}, Python "
        f"{machine['python']}; task model `{model}`, temperature 0; {time.monotonic() - started:.0f} s. {scope}", "",
        "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns), *lines, ""]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    task_dir = ROOT / "bench/tasks" / args.task
    prompt_path = next((task_dir / "prompts").iterdir())
    prompt_file, seed = f"prompts/{prompt_path.name}", prompt_path.read_text()
    placeholder = PLACEHOLDER.search(seed).group(0)  # the seed prompt has one: the eval fills it
    rows = [json.loads(line) for line in (task_dir / "data.jsonl").read_text().splitlines() if line.strip()]
    splits = {name: [r["id"] for r in rows if r["split"] == name] for name in ("train", "val")}
    started = time.monotonic()
    server = LocalModelServer().start()
    env = {**os.environ, **server.eval_env()}
    lines = []
    try:
        for name, text in variants(seed, placeholder, plain_gepa_prompts(args.task, prompt_file)).items():
            scores = score(task_dir, prompt_file, text, splits["train"] + splits["val"], env)
            counts = {split: sum(scores[i] for i in ids) for split, ids in splits.items()}
            lines.append(f"| {name} | {counts['train']:.0f}/{len(splits['train'])} | {counts['val']:.0f}/"
                         f"{len(splits['val'])} | {len(text)} |")
            print(lines[-1], flush=True)
    finally:
        server.stop()
    out = args.out or ROOT / f"bench/results/instruction-probe-{args.task}.md"
    write_probe_doc(out, f"One instruction line on `{args.task}`, no search",
                    f"python bench/instruction_probe.py --task {args.task}", server.models[0].name, started,
                    "Train and val only (test is held out).", ["prompt", "train", "val", "chars"], lines)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
