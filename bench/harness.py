"""The gepa-bot bench: seed vs best-of-N vs plain gepa vs gepa-bot, at equal rollout budgets, over seeds.

Each (task, seed, method) runs once at the largest budget; the val-best candidate at every budget
checkpoint is scored on the task's held-out ``test`` ids (never listed by the eval, asked for by id).
Results are appended to ``rows.jsonl`` in the output dir as they come, so a long bench can run in
chunks (``--tasks``, ``--seeds``) and be rendered at the end (``--render-only``).
``bench/run`` is the command line; tests/test_bench.py drives :func:`run_bench` with a scripted LLM.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from arms import (
    DERIVED,
    METHODS,
    BenchOptions,
    Outcome,
    Point,
    Task,
    best_of_n_count,
    make_config,
    outcome_of,
    run_arm,
    seed_candidate,
    settings_for,
)
from report import ROW_FIELDS, machine_info, write_plot, write_results

from gepa_bot.cli import interrupt_on_sigterm
from gepa_bot.config import DEFAULT_CONFIG_NAME, LOCAL_MODEL, Config
from gepa_bot.discovery import render_files
from gepa_bot.evals.cache import candidate_hash
from gepa_bot.evals.suite import evaluate_parallel, materialize, remove_workdir
from gepa_bot.report.rejections import rejection_reasons
from gepa_bot.result import BudgetSummary, RejectedProposal, RunResult
from gepa_bot.search.session import choose_split, open_suite, resolved_models, select_components

BENCH_DIR = Path(__file__).resolve().parent
TASKS_DIR = BENCH_DIR / "tasks"
RESULTS_DIR = BENCH_DIR / "results"
GEPA_BOT_ARMS = ("gepa_bot", "gepa_bot_nocache")

__all__ = ["METHODS", "ROW_FIELDS", "BenchOptions", "best_of_n_count", "find_tasks", "run_bench", "main"]


def find_tasks(names: list[str] | None, tasks_dir: Path = TASKS_DIR) -> list[Task]:
    available = sorted(p.name for p in tasks_dir.iterdir() if (p / DEFAULT_CONFIG_NAME).is_file())
    chosen = names or available
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise SystemExit(f"unknown task(s) {', '.join(unknown)}; available: {', '.join(available)}")
    return [Task(n, tasks_dir / n) for n in chosen]


class TestScorer:
    """Scores a candidate on a task's test ids through the task's own suite; memoized per rendered prompt."""

    def __init__(self, opts: BenchOptions, scratch: Path):
        self.opts, self.scratch = opts, scratch
        self.memo: dict[tuple[str, str], float] = {}
        self.seconds = 0.0

    def score(self, task: Task, config: Config, candidate: dict[str, str]) -> float:
        settings = settings_for(task, config, self.scratch / "test-settings", self.opts)
        components = select_components(settings)
        files = render_files(components, candidate)
        key = (task.name, candidate_hash(files))
        if key not in self.memo:
            started = time.monotonic()
            ids = task.test_ids()
            with open_suite(settings, with_reflection=False) as (suite, _t, _r):
                workdir = materialize(task.repo, files, candidate, self.scratch)
                try:
                    results = evaluate_parallel(suite, workdir, ids, self.opts.workers)
                finally:
                    remove_workdir(workdir)
            failed = [r for r in results.values() if r.failed]
            if failed:
                self.opts.log(f"  warning: {len(failed)}/{len(ids)} test instances failed to run for {task.name}: "
                              f"{failed[0].feedback[:300]}")
            self.memo[key] = sum(r.score for r in results.values()) / len(ids)
            self.seconds += time.monotonic() - started
        return self.memo[key]


def rows_for(task: Task, seed: int, method: str, outcome: Outcome, budgets: list[int], scorer: TestScorer,
             config: Config, wall_s: float, slack: float = 0.0) -> list[dict[str, Any]]:
    """One row per budget checkpoint: the arm's val-best candidate within that many rollouts (with ``slack``: the
    shortest within that much of the best val score), on test."""
    rows = []
    for budget in budgets:
        best = outcome.best_at(budget, slack)
        candidate = best.candidate
        row = {"task": task.name, "budget": budget, "method": method, "seed": seed,
               "test_score": round(scorer.score(task, config, candidate), 4), "test_n": len(task.test_ids()),
               "val_score": None if best.val_score is None else round(best.val_score, 4),
               "prompt_chars": sum(len(t) for t in candidate.values()),
               "found_at_rollout": best.rollouts, "pr_opens": outcome.opens_pr(best, config),
               "candidates_within_budget": sum(1 for t in outcome.trajectory if t.rollouts <= budget),
               **_spent(outcome.budget), "run_wall_s": round(wall_s, 1), "rejected_proposals": len(outcome.rejected),
               "rejected_reason_counts": _reason_counts(outcome.rejected), **outcome.extra, "prompt": candidate}
        rows.append(row)
    return rows


def _spent(budget: BudgetSummary | None) -> dict[str, Any]:
    """A row's budget columns (all 0 for an arm that spent nothing)."""
    b = budget
    return {"rollouts_used": b.rollouts_used if b else 0, "rollouts_executed": b.rollouts_executed if b else 0,
            "cache_hits": b.cache_hits if b else 0, "cache_hit_rate": b.cache_hit_rate if b else 0.0,
            "llm_calls": b.llm_calls if b else 0, "llm_calls_replayed": b.llm_calls_replayed if b else 0,
            "prompt_tokens": b.prompt_tokens if b else 0, "completion_tokens": b.completion_tokens if b else 0,
            "eval_time_s": b.eval_time_s if b else 0.0, "llm_time_s": b.llm_time_s if b else 0.0}


def _reason_counts(rejected: list[RejectedProposal]) -> dict[str, int]:
    """Rejections per reason, grouped as the PR body groups them (each group under one of its reasons)."""
    return {group.reason: group.count for group in rejection_reasons(rejected)}


def run_bench(tasks: list[Task], opts: BenchOptions, rows_file: Path | None = None) -> dict[str, Any]:
    """Every method for every task x seed at the largest budget; rows at every budget checkpoint."""
    work = opts.work_dir or Path(tempfile.mkdtemp(prefix="gepa-bench-"))
    scorer = TestScorer(opts, work / "test-scratch")
    rows: list[dict[str, Any]] = []
    splits: dict[str, dict[str, int]] = {}
    top = max(opts.budgets)
    for task in tasks:
        for seed in opts.seeds:
            config = make_config(task, top, seed, opts)
            if task.name not in splits:  # (setdefault would run list mode again for every seed)
                splits[task.name] = _split_sizes(task, config, opts, work)
            outcomes: dict[str, tuple[Outcome, float]] = {}
            for method in opts.methods:
                if method == "gepa_bot_nocache" and (seed not in opts.seeds[:opts.nocache_seeds]
                                                     or "gepa_bot" not in opts.methods):
                    continue
                if method in DERIVED and DERIVED[method][0] not in outcomes:
                    continue  # its source arm did not run (or runs later in --methods)
                started = time.monotonic()
                slack = 0.0
                if method == "seed":
                    outcome = Outcome([Point(0, None, seed_candidate(task, config, opts, work))])
                elif method in DERIVED:
                    source, instances = DERIVED[method]
                    outcome, slack = outcomes[source][0], instances / splits[task.name]["val"]
                else:
                    outcome = run_arm(method, task, config, work / task.name / str(seed) / method, opts)
                    if method in GEPA_BOT_ARMS:  # the proposal as gepa-bot makes it (plain gepa: its val-best)
                        slack = config.optimizer.prefer_shorter_within / splits[task.name]["val"]
                outcomes[method] = (outcome, time.monotonic() - started)
                wall = outcomes[DERIVED[method][0]][1] if method in DERIVED else time.monotonic() - started
                new = rows_for(task, seed, method, outcome, opts.budgets, scorer, config, wall, slack)
                rows += new
                if rows_file is not None:
                    with rows_file.open("a", encoding="utf-8") as handle:
                        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in new)
                last = new[-1]
                opts.log(f"[{task.name} seed {seed}] {method}: test " + " ".join(
                    f"@{r['budget']}={r['test_score']:.3f}" for r in new) + f" val {last['val_score']} "
                    f"chars {last['prompt_chars']} rollouts {last['rollouts_used']} (executed "
                    f"{last['rollouts_executed']}) rejected {last['rejected_proposals']} in "
                    f"{time.monotonic() - started:.0f}s")
    return {"rows": rows, "splits": splits, "test_eval_seconds": round(scorer.seconds, 1)}


def derive_rows(work: Path, tasks: list[Task], opts: BenchOptions, rows_file: Path) -> dict[str, Any]:
    """The DERIVED arms' rows from a kept bench work dir (``--keep-work``): every TASK/SEED/gepa_bot run in it
    that has a result.json, without searching again (only the test split is scored)."""
    scorer = TestScorer(opts, work / "test-scratch")
    rows: list[dict[str, Any]] = []
    splits: dict[str, dict[str, int]] = {}
    for task in tasks:
        for seed_dir in sorted((work / task.name).glob("*")):
            for method, (source, instances) in DERIVED.items():
                if method not in opts.methods or not (seed_dir / source / "run" / "result.json").is_file():
                    continue
                seed = int(seed_dir.name)
                config = make_config(task, max(opts.budgets), seed, opts)
                result = RunResult.read(seed_dir / source / "run")
                outcome = outcome_of(result)
                splits[task.name] = {"val": len(result.split.val), "train": len(result.split.train),
                                     "test": len(task.test_ids())}
                new = rows_for(task, seed, method, outcome, opts.budgets, scorer, config, 0.0,
                               instances / len(result.split.val))
                rows += new
                with rows_file.open("a", encoding="utf-8") as handle:
                    handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in new)
                opts.log(f"[{task.name} seed {seed}] {method} (from {seed_dir / source}): test " + " ".join(
                    f"@{r['budget']}={r['test_score']:.3f} ({r['prompt_chars']} chars)" for r in new))
    return {"rows": rows, "splits": splits, "test_eval_seconds": round(scorer.seconds, 1)}


def rescore_rows(source: Path, tasks: list[Task], opts: BenchOptions, rows_file: Path) -> dict[str, Any]:
    """``source``'s rows of ``tasks`` (every arm, seed and budget) with each row's prompt scored again on the task's
    current test split: for a test split that grew (the search never sees test, so the rows' searches stand).
    Only ``test_score`` and ``test_n`` change; the old pair is kept as ``rescored_from``."""
    scorer = TestScorer(opts, (opts.work_dir or rows_file.parent) / "test-scratch")
    old = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows: list[dict[str, Any]] = []
    splits: dict[str, dict[str, int]] = {}
    for task in tasks:
        config = make_config(task, max(opts.budgets), 0, opts)
        splits[task.name] = _split_sizes(task, config, opts, scorer.scratch)
        test_n = splits[task.name]["test"]
        for row in (r for r in old if r["task"] == task.name):
            score = round(scorer.score(task, config, row["prompt"]), 4)
            rows.append({**row, "test_score": score, "test_n": test_n,
                         "rescored_from": {"test_score": row["test_score"], "test_n": row.get("test_n")}})
            with rows_file.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(rows[-1], ensure_ascii=False) + "\n")
            opts.log(f"[{task.name} seed {row['seed']}] {row['method']} @{row['budget']}: test "
                     f"{row['test_score']:.3f} (n {row.get('test_n')}) -> {score:.3f} (n {test_n})")
    return {"rows": rows, "splits": splits, "test_eval_seconds": round(scorer.seconds, 1)}


def _split_sizes(task: Task, config: Config, opts: BenchOptions, work: Path) -> dict[str, int]:
    settings = settings_for(task, config, work / "probe", opts)
    with open_suite(settings, with_reflection=False) as (suite, _t, _r):
        split = choose_split(suite.list_instances(), settings)
    return {"train": len(split.train), "val": len(split.val), "test": len(task.test_ids())}


# --- command line ---------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small run (one task, one seed, budgets 40,80)")
    p.add_argument("--tasks", help="comma-separated task names (default: all)")
    p.add_argument("--budgets", default="50,100,200", help="comma-separated rollout budget checkpoints")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (optimizer and reflection sampling)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated arms")
    p.add_argument("--model", default=LOCAL_MODEL, help="task model (litellm string or local/...)")
    p.add_argument("--reflection-model", default=None, help="reflection/rewrite model (default: --model)")
    p.add_argument("--reflection-style", choices=("auto", "edit", "rewrite", "mixed"), default=None)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-val", type=int, default=None)
    p.add_argument("--reflection-max-tokens", type=int, default=None)
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--keep-work", action="store_true", help="keep run dirs (printed) instead of deleting them")
    p.add_argument("--note", action="append", default=[], help="a line for the notes section (repeatable)")
    p.add_argument("--derive-from", type=Path, default=None, metavar="WORK_DIR",
                   help="rows of the derived arms (gepa_bot_shorter) from a --keep-work dir's finished gepa_bot "
                        "runs: no search, only the test split is scored")
    p.add_argument("--rescore-test", type=Path, default=None, metavar="ROWS_FILE",
                   help="the rows of --tasks in ROWS_FILE with their prompts scored again on the current test split "
                        "(after the test split grew); no search")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite results.md/json and the PNG from OUT/rows.jsonl and OUT/meta.json; no runs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_sigterm()  # `kill` of a bench run stops its model server too (atexit does not run on SIGTERM)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.render_only:
        return render(args.out, args.note)
    started = time.monotonic()
    tasks = find_tasks(args.tasks.split(",") if args.tasks else (["tickets"] if args.quick else None))
    budgets = [int(b) for b in ("40,80" if args.quick else args.budgets).split(",")]
    seeds = [int(s) for s in ("0" if args.quick else args.seeds).split(",")]
    reflection_model = args.reflection_model or args.model
    work = args.derive_from or Path(tempfile.mkdtemp(prefix="gepa-bench-"))
    try:
        with resolved_models(args.model, reflection_model) as (task_params, reflection_params):
            opts = BenchOptions(budgets=budgets, task_model=args.model, reflection_model=reflection_model,
                                workers=args.workers, seeds=seeds, methods=tuple(args.methods.split(",")),
                                max_val=args.max_val, work_dir=work, reflection_max_tokens=args.reflection_max_tokens,
                                reflection_style=args.reflection_style, log=lambda m: print(m, flush=True),
                                models={args.model: task_params, reflection_model: reflection_params})
            rows_file = args.out / "rows.jsonl"
            data = (rescore_rows(args.rescore_test, tasks, opts, rows_file) if args.rescore_test else
                    derive_rows(args.derive_from, tasks, opts, rows_file) if args.derive_from else
                    run_bench(tasks, opts, rows_file=rows_file))
    finally:
        if args.keep_work or args.derive_from:
            print(f"run dirs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    chunk = {"command": "bench/run " + " ".join(argv if argv is not None else sys.argv[1:]),
             "tasks": [t.name for t in tasks], "seeds": seeds, "budgets": budgets, "task_model": args.model,
             "reflection_model": reflection_model, "workers": args.workers, "max_val": args.max_val,
             "splits": data["splits"], "wall_s": round(time.monotonic() - started, 1), "machine": machine_info()}
    with (args.out / "chunks.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(chunk) + "\n")
    return render(args.out, args.note)


def duplicate_rows(rows: list[dict[str, Any]]) -> list[tuple[str, int, str, int]]:
    """(task, budget, method, seed) measured twice: the mean would count one seed twice."""
    counts = Counter((r["task"], r["budget"], r["method"], r["seed"]) for r in rows)
    return [key for key, n in counts.items() if n > 1]


def render(out: Path, notes: list[str]) -> int:
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    twins = duplicate_rows(rows)
    if twins:
        print(f"error: {out / 'rows.jsonl'} has {len(twins)} (task, budget, method, seed) with more than one row, "
              f"e.g. {twins[0]}: a re-run appends, so remove the rows it replaces first "
              "(git keeps them: bench/results/README.md)",
              file=sys.stderr)
        return 1
    chunks = [json.loads(line) for line in (out / "chunks.jsonl").read_text(encoding="utf-8").splitlines()
              if line.strip()] if (out / "chunks.jsonl").exists() else []
    notes_file = out / "notes.json"
    kept = json.loads(notes_file.read_text(encoding="utf-8")) if notes_file.exists() else []
    kept = list(dict.fromkeys(kept + notes))
    notes_file.write_text(json.dumps(kept, indent=1) + "\n", encoding="utf-8")
    data = {"rows": rows, "chunks": chunks, "notes": kept}
    data["png"] = write_plot(data, out / "score_vs_rollouts.png")
    paths = write_results(data, out)
    print(f"wrote {paths['md']}, {paths['json']}" + (", score_vs_rollouts.png" if data["png"] else ""))
    return 0
