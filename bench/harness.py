"""The gepa-bot bench: seed vs best-of-N random rewrites vs gepa-bot (with and without cache).

For every task x rollout budget each method gets the same budget of val rollouts; the prompt it picks
is then scored on the task's held-out ``test`` ids (never listed by the eval, asked for explicitly).
``bench/run`` is the command line; tests/test_bench.py drives :func:`run_bench` with a scripted LLM.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gepa_bot import engine
from gepa_bot.budget import Budget, BudgetExhausted
from gepa_bot.cache import EvalCache, candidate_hash
from gepa_bot.config import DEFAULT_CONFIG_NAME, LOCAL_MODEL, Config
from gepa_bot.discovery import placeholders_in, render_files
from gepa_bot.evalsuite import (EvalSuite, InstanceResult, SuiteContext, Workdir, evaluate_parallel, materialize,
                                remove_workdir)
from gepa_bot.llm import LLM, LLMError, Transport, litellm_transport
from gepa_bot.reflection import ProposalRejected, parse_reply
from gepa_bot.runlog import RUN_LOG_NAME, RunLog, read_records

BENCH_DIR = Path(__file__).resolve().parent
TASKS_DIR = BENCH_DIR / "tasks"
RESULTS_DIR = BENCH_DIR / "results"
METHODS = ("seed", "best_of_n", "gepa_bot", "gepa_bot_nocache")
METHOD_LABELS = {"seed": "seed prompt", "best_of_n": "best-of-N rewrites", "gepa_bot": "gepa-bot",
                 "gepa_bot_nocache": "gepa-bot, no cache"}
ROW_FIELDS = ("task", "budget", "method", "test_score", "val_score", "rollouts_used", "rollouts_executed",
              "cache_hits", "cache_hit_rate", "llm_calls", "prompt_tokens", "completion_tokens", "wall_time_s",
              "eval_time_s", "llm_time_s", "overhead_share", "prompt_chars", "candidates", "rejected_proposals")

REWRITE_INSTRUCTIONS = """Rewrite the prompt below so that a small language model answers it better.

````prompt
{current}
````

{placeholder_rule}
Write the complete new prompt inside ONE fenced block that opens with ````prompt and closes with ````.
Write nothing after the closing fence.{retry_note}"""


# --- tasks ----------------------------------------------------------------------------------------

@dataclass
class Task:
    """A task directory with a .gepa-bot.yml, a data.jsonl holding held-out ``test`` rows, and prompts."""

    name: str
    repo: Path

    def base_config(self) -> dict[str, Any]:
        return yaml.safe_load((self.repo / DEFAULT_CONFIG_NAME).read_text(encoding="utf-8"))

    def test_ids(self) -> list[str]:
        rows = [json.loads(line) for line in (self.repo / "data.jsonl").read_text(encoding="utf-8").splitlines()
                if line.strip()]
        return [str(r["id"]) for r in rows if r.get("split") == "test"]


def find_tasks(names: list[str] | None, tasks_dir: Path = TASKS_DIR) -> list[Task]:
    available = sorted(p.name for p in tasks_dir.iterdir() if (p / DEFAULT_CONFIG_NAME).is_file())
    chosen = names or available
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise SystemExit(f"unknown task(s) {', '.join(unknown)}; available: {', '.join(available)}")
    return [Task(n, tasks_dir / n) for n in chosen]


@dataclass
class BenchOptions:
    budgets: list[int]
    task_model: str = LOCAL_MODEL
    reflection_model: str = LOCAL_MODEL
    workers: int = 2
    seed: int = 0
    max_val: int | None = None
    max_train: int | None = None
    transport: Transport = litellm_transport
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # pre-resolved model params (shared server)
    work_dir: Path | None = None
    log: Any = print
    replay_nocache: bool = True  # the no-cache arm replays the cached arm's reflection replies (same search)
    reflection_max_tokens: int | None = None


def make_config(task: Task, budget: int, opts: BenchOptions) -> Config:
    data = task.base_config()
    data["budget"] = {**data.get("budget", {}), "rollouts": budget}
    data["models"] = {**data.get("models", {}), "task": opts.task_model, "reflection": opts.reflection_model}
    if opts.reflection_max_tokens:
        data["models"]["reflection_max_tokens"] = opts.reflection_max_tokens
    data["optimizer"] = {**data.get("optimizer", {}), "workers": opts.workers, "seed": opts.seed}
    split = dict(data.get("split", {}))
    if opts.max_val:
        split["max_val"] = opts.max_val
    if opts.max_train:
        split["max_train"] = opts.max_train
    data["split"] = split
    return Config.model_validate(data)


def _settings(task: Task, config: Config, run_dir: Path, opts: BenchOptions, use_cache: bool = True) -> engine.RunSettings:
    return engine.RunSettings(repo=task.repo, config=config, config_path=task.repo / DEFAULT_CONFIG_NAME,
                              run_dir=run_dir / "run", cache_dir=run_dir / "cache", transport=opts.transport,
                              reflection_extra={"seed": opts.seed}, use_cache=use_cache, models=opts.models or None)


@contextlib.contextmanager
def _suite(settings: engine.RunSettings) -> Iterator[tuple[EvalSuite, dict[str, Any], dict[str, Any]]]:
    with engine.resolved_models(settings.config.models.task, settings.config.models.reflection,
                                known=settings.models) as (task_model, reflection_model):
        context = SuiteContext(repo=settings.repo, model=task_model["model"], api_base=task_model.get("api_base"),
                               api_key=task_model.get("api_key"))
        yield engine.build_suite(settings, context), task_model, reflection_model


# --- the methods ----------------------------------------------------------------------------------

def best_of_n_count(budget: int, n_val: int) -> int:
    """How many rewrites fit: the seed and every rewrite are each scored on the whole val split."""
    return max(0, budget // n_val - 1)


def rewrite_messages(current: str, retry_note: str = "") -> list[dict[str, str]]:
    kept = sorted(placeholders_in(current))
    rule = ("Keep these placeholders exactly as written: " + ", ".join(kept) + ". Do not add other text in braces."
            if kept else "Do not add any text in curly braces.")
    return [{"role": "user", "content": REWRITE_INSTRUCTIONS.format(current=current, placeholder_rule=rule,
                                                                   retry_note=retry_note)}]


def run_best_of_n(task: Task, config: Config, run_dir: Path, opts: BenchOptions) -> dict[str, Any]:
    """Seed + N feedback-free rewrites by the reflection LLM, each scored on val; the best on val wins."""
    settings = _settings(task, config, run_dir, opts)
    components = engine.select_components(settings)
    runlog = RunLog(settings.run_dir)
    try:
        with _suite(settings) as (suite, _task_model, reflection):
            split = engine.choose_split(suite.list_instances(), settings)
            budget = Budget(max_rollouts=config.budget.rollouts)
            cache = EvalCache(settings.cache_dir, suite.fingerprint())
            adapter = engine.RepoAdapter(suite, components, task.repo, split, cache, budget, runlog,
                                         config.optimizer.workers, settings.run_dir / "scratch")
            llm = LLM(reflection["model"], budget, runlog, transport=opts.transport,
                      max_tokens=config.models.reflection_max_tokens, temperature=config.models.reflection_temperature,
                      extra={**{k: v for k, v in reflection.items() if k != "model"}, **settings.reflection_extra})
            n = best_of_n_count(config.budget.rollouts, len(split.val))
            seed = {c.name: c.text for c in components}
            candidates = [seed]
            rejected: list[dict[str, str]] = []
            for _ in range(n):
                child = dict(seed)
                for c in components:
                    text = _rewrite(llm, c.text, config.optimizer.reflection_attempts, rejected)
                    if text is not None:
                        child[c.name] = text
                if child != seed:
                    candidates.append(child)
            scored = []
            for cand in candidates:
                try:
                    batch = adapter.evaluate(split.val, cand)
                except BudgetExhausted:
                    break
                scored.append((sum(batch.scores) / len(batch.scores), cand))
            best_index = max(range(len(scored)), key=lambda i: (scored[i][0], -i))
            return {"candidate": scored[best_index][1], "val_score": scored[best_index][0], "n": n,
                    "candidates": len(scored), "rejected_proposals": rejected, "budget": _budget_json(budget),
                    "components": components}
    finally:
        runlog.close()


def _rewrite(llm: LLM, current: str, attempts: int, rejected: list[dict[str, str]]) -> str | None:
    retry_note = ""
    for attempt in range(1, attempts + 1):
        try:
            reply = llm.complete(rewrite_messages(current, retry_note), purpose="rewrite")
        except LLMError as exc:
            rejected.append({"attempt": str(attempt), "reason": f"LLM call failed: {exc}"})
            return None
        try:
            return parse_reply(reply.text, current).text
        except ProposalRejected as exc:
            rejected.append({"attempt": str(attempt), "reason": str(exc), "reply_excerpt": reply.text[:300]})
            retry_note = f"\n\nYour previous answer was rejected: {exc}. Follow the format exactly."
    return None


def _budget_json(budget: Budget) -> dict[str, Any]:
    data = budget.to_json()
    data["cache_hit_rate"] = round(budget.cache_hits / budget.rollouts, 4) if budget.rollouts else 0.0
    return data


def run_gepa(task: Task, config: Config, run_dir: Path, opts: BenchOptions, use_cache: bool,
             replay_from: Path | None = None) -> dict[str, Any]:
    """One gepa-bot run. ``replay_from``: a finished run dir whose reflection replies are replayed (gepa-bot's
    resume mechanism), so the no-cache run makes exactly the same search without paying for the LLM again."""
    settings = _settings(task, config, run_dir, opts, use_cache=use_cache)
    replayed = 0
    if replay_from is not None:
        records = list(read_records(replay_from / "run", "llm"))
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        (settings.run_dir / RUN_LOG_NAME).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                                     encoding="utf-8")
        replayed = len(records)
    result = engine.optimize(settings)
    best = result["candidates"][result["best_candidate"]]
    return {"candidate": best["components"], "val_score": best["val_mean"], "candidates": len(result["candidates"]),
            "rejected_proposals": result["rejected_proposals"], "budget": result["budget"],
            "components": engine.select_components(settings),
            "accepted": sum(1 for c in result["candidates"] if c["origin"] != "seed"), "replay_records": replayed}


# --- held-out test scoring ------------------------------------------------------------------------

class TestScorer:
    """Scores a candidate on a task's test ids through the task's own CommandSuite; memoized per prompt."""

    def __init__(self, opts: BenchOptions, scratch: Path):
        self.opts, self.scratch = opts, scratch
        self.memo: dict[tuple[str, str], tuple[float, float]] = {}
        self.seconds = 0.0

    def score(self, task: Task, config: Config, candidate: dict[str, str]) -> float:
        settings = _settings(task, config, self.scratch / "test-settings", self.opts)
        components = engine.select_components(settings)
        files = render_files(components, candidate)
        key = (task.name, candidate_hash(files))
        if key not in self.memo:
            started = time.monotonic()
            ids = task.test_ids()
            with _suite(settings) as (suite, _t, _r):
                workdir = materialize(task.repo, files, candidate, self.scratch)
                try:
                    results = evaluate_parallel(suite, workdir, ids, self.opts.workers)
                finally:
                    remove_workdir(workdir)
            failed = sum(1 for r in results.values() if r.failed)
            if failed:
                self.opts.log(f"  warning: {failed}/{len(ids)} test instances failed to run for {task.name}: "
                              f"{next(r.feedback for r in results.values() if r.failed)[:300]}")
            self.memo[key] = (sum(r.score for r in results.values()) / len(ids), time.monotonic() - started)
            self.seconds += self.memo[key][1]
        return self.memo[key][0]


# --- the bench ------------------------------------------------------------------------------------

def _row(task: Task, budget: int, method: str, outcome: dict[str, Any] | None, test_score: float,
         candidate: dict[str, str]) -> dict[str, Any]:
    b = (outcome or {}).get("budget") or {}
    row = {"task": task.name, "budget": budget, "method": method, "test_score": round(test_score, 4),
           "val_score": None if outcome is None else round(outcome["val_score"], 4),
           "rollouts_used": b.get("rollouts_used", 0), "rollouts_executed": b.get("rollouts_executed", 0),
           "cache_hits": b.get("cache_hits", 0), "cache_hit_rate": b.get("cache_hit_rate", 0.0),
           "llm_calls": b.get("llm_calls", 0), "llm_calls_replayed": b.get("llm_calls_replayed", 0), "prompt_tokens": b.get("prompt_tokens", 0),
           "completion_tokens": b.get("completion_tokens", 0), "wall_time_s": b.get("wall_time_s", 0.0),
           "eval_time_s": b.get("eval_time_s", 0.0), "llm_time_s": b.get("llm_time_s", 0.0),
           "overhead_share": b.get("overhead_share", 0.0),
           "prompt_chars": sum(len(t) for t in candidate.values()),
           "candidates": (outcome or {}).get("candidates", 1),
           "rejected_proposals": len((outcome or {}).get("rejected_proposals", [])),
           "stop_reason": b.get("stop_reason")}
    if outcome and "n" in outcome:
        row["n_rewrites"] = outcome["n"]
    if outcome and "accepted" in outcome:
        row["accepted_candidates"] = outcome["accepted"]
    if outcome and outcome.get("rejected_proposals"):
        row["rejected_reasons"] = sorted({r["reason"] for r in outcome["rejected_proposals"]})[:5]
        counts: dict[str, int] = {}
        for r in outcome["rejected_proposals"]:
            counts[r["reason"]] = counts.get(r["reason"], 0) + 1
        row["rejected_reason_counts"] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
    row["prompt"] = candidate
    return row


def run_bench(tasks: list[Task], opts: BenchOptions) -> dict[str, Any]:
    """All methods for every task x budget; returns the raw results (rows + split sizes)."""
    work = opts.work_dir or Path(tempfile.mkdtemp(prefix="gepa-bench-"))
    scorer = TestScorer(opts, work / "test-scratch")
    rows: list[dict[str, Any]] = []
    splits: dict[str, dict[str, int]] = {}
    for task in tasks:
        seed_config = make_config(task, max(opts.budgets), opts)
        seed_components = engine.select_components(_settings(task, seed_config, work / "probe", opts))
        seed = {c.name: c.text for c in seed_components}
        seed_test = scorer.score(task, seed_config, seed)
        opts.log(f"[{task.name}] seed prompt: test {seed_test:.3f}")
        for budget in opts.budgets:
            config = make_config(task, budget, opts)
            rows.append(_row(task, budget, "seed", None, seed_test, seed))
            for method in METHODS[1:]:
                run_dir = work / task.name / str(budget) / method
                started = time.monotonic()
                if method == "best_of_n":
                    outcome = run_best_of_n(task, config, run_dir, opts)
                elif method == "gepa_bot":
                    outcome = run_gepa(task, config, run_dir, opts, use_cache=True)
                else:
                    outcome = run_gepa(task, config, run_dir, opts, use_cache=False,
                                       replay_from=run_dir.parent / "gepa_bot" if opts.replay_nocache else None)
                test = scorer.score(task, config, outcome["candidate"])
                row = _row(task, budget, method, outcome, test, outcome["candidate"])
                rows.append(row)
                opts.log(f"[{task.name} budget {budget}] {method}: test {test:.3f} val {row['val_score']:.3f} "
                         f"rollouts {row['rollouts_used']} (executed {row['rollouts_executed']}) "
                         f"rejected {row['rejected_proposals']} in {time.monotonic() - started:.0f}s")
            splits.setdefault(task.name, _split_sizes(task, config, opts, work))
    return {"rows": rows, "splits": splits, "test_eval_seconds": round(scorer.seconds, 1)}


def _split_sizes(task: Task, config: Config, opts: BenchOptions, work: Path) -> dict[str, int]:
    settings = _settings(task, config, work / "probe", opts)
    with _suite(settings) as (suite, _t, _r):
        split = engine.choose_split(suite.list_instances(), settings)
    return {"train": len(split.train), "val": len(split.val), "test": len(task.test_ids())}


# --- parallel evaluation speedup ------------------------------------------------------------------

class SleepSuite(EvalSuite):
    """Every instance sleeps ``delay`` seconds and scores 1: measures evaluate_parallel alone."""

    def __init__(self, delay: float):
        super().__init__(SuiteContext(repo=Path(".")))
        self.delay = delay

    def list_instances(self) -> list[Any]:
        return []

    def fingerprint_parts(self) -> list[str]:
        return ["sleep"]

    def evaluate(self, workdir: Workdir, ids: list[str]) -> dict[str, InstanceResult]:
        results = {}
        for i in ids:
            time.sleep(self.delay)
            results[i] = InstanceResult(id=i, score=1.0, feedback="ok")
        return results


def measure_speedup(instances: int = 24, delay: float = 0.1, workers: tuple[int, ...] = (1, 2, 4)) -> dict[str, Any]:
    suite = SleepSuite(delay)
    workdir = Workdir(path=Path("."), components={}, files={}, candidate_file=Path("candidate.json"))
    ids = [f"s{k:02d}" for k in range(instances)]
    times = {}
    for w in workers:
        started = time.perf_counter()
        results = evaluate_parallel(suite, workdir, ids, w)
        times[w] = time.perf_counter() - started
        assert len(results) == instances
    t1 = times[workers[0]]
    return {"instances": instances, "sleep_s": delay, "seconds": {str(w): round(t, 3) for w, t in times.items()},
            "speedup": {str(w): round(t1 / t, 2) for w, t in times.items()}}


# --- reports --------------------------------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        nproc = str(os.cpu_count())
    return {"nproc": nproc, "cpu": cpu, "python": platform.python_version(), "platform": platform.platform(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def task_table(rows: list[dict[str, Any]]) -> str:
    header = ("| budget | method | test score | val score | rollouts used | rollouts executed | cache hit rate "
              "| LLM calls | LLM tokens (prompt+completion) | wall time (s) | eval time (s) | bot overhead share "
              "| prompt chars | candidates scored | rejected proposals |")
    lines = [header, "|" + " --- |" * 15]
    for r in rows:
        label = METHOD_LABELS[r["method"]] + (f" (N={r['n_rewrites']})" if "n_rewrites" in r else "")
        replayed = f" ({r['llm_calls_replayed']} replayed)" if r.get("llm_calls_replayed") else ""
        lines.append(f"| {r['budget']} | {label} | {_fmt(r['test_score'])} | {_fmt(r['val_score'])} "
                     f"| {r['rollouts_used']} | {r['rollouts_executed']} | {_fmt(r['cache_hit_rate'], 2)} "
                     f"| {r['llm_calls']}{replayed} | {r['prompt_tokens']}+{r['completion_tokens']} "
                     f"| {_fmt(r['wall_time_s'], 1)} | {_fmt(r['eval_time_s'], 1)} "
                     f"| {_fmt(r['overhead_share'], 3)} | {r['prompt_chars']} | {r['candidates']} "
                     f"| {r['rejected_proposals']} |")
    return "\n".join(lines)


def speedup_table(speed: dict[str, Any]) -> str:
    lines = ["| workers | time (s) | speedup vs 1 worker |", "| --- | --- | --- |"]
    for w, t in speed["seconds"].items():
        lines.append(f"| {w} | {t:.3f} | {speed['speedup'][w]:.2f}x |")
    return "\n".join(lines)


def auto_notes(data: dict[str, Any]) -> list[str]:
    """Observations computed from the numbers (no cherry-picking: one line per task x budget)."""
    notes = []
    by_key: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in data["rows"]:
        by_key.setdefault((r["task"], r["budget"]), {})[r["method"]] = r
    for (task, budget), methods in by_key.items():
        s, b, g, nc = (methods.get(m) for m in METHODS)
        if not (g and b and s):
            continue
        verdict = ("beats" if g["test_score"] > max(b["test_score"], s["test_score"]) else
                   "ties the best baseline" if g["test_score"] == max(b["test_score"], s["test_score"])
                   else "does NOT beat the best baseline")
        line = (f"`{task}` @ {budget}: gepa-bot test {g['test_score']:.3f} vs seed {s['test_score']:.3f}, "
                f"best-of-{b.get('n_rewrites', '?')} {b['test_score']:.3f} -> {verdict}. "
                f"GEPA kept {g.get('accepted_candidates', 0)} new candidate(s); "
                f"{g['rejected_proposals']} reflection repl(ies) rejected before any rollout")
        if g.get("rejected_reason_counts"):
            line += " (" + "; ".join(f"{n}x {why}" for why, n in list(g["rejected_reason_counts"].items())[:4]) + ")"
        elif g.get("rejected_reasons"):
            line += " (" + "; ".join(g["rejected_reasons"][:3]) + ")"
        line += f"; best-of-N had {b['rejected_proposals']} rejected rewrite(s)."
        if nc:
            saved = nc["rollouts_executed"] - g["rollouts_executed"]
            line += (f" Cache: {g['rollouts_executed']} of {g['rollouts_used']} rollouts executed "
                     f"(hit rate {g['cache_hit_rate']:.2f}) vs {nc['rollouts_executed']} without cache "
                     f"({saved} saved; eval time {g['eval_time_s']:.0f}s vs {nc['eval_time_s']:.0f}s).")
            if nc["val_score"] != g["val_score"] or nc["prompt"] != g["prompt"]:
                line += " The no-cache run did not reproduce the cached run's search exactly (see notes)."
        notes.append(line)
    return notes


STATIC_NOTES = [
    "Rollouts are (candidate, val/train instance) evaluations; the held-out test scoring of each method's "
    "chosen prompt is outside the budget and identical for all methods (memoized per prompt text, the task "
    "model runs at temperature 0).",
    "Best-of-N: N = budget // |val| - 1 so that the seed and N rewrites are each scored on the whole val "
    "split; rewrites that the parser rejects (no fence, identical text, dropped/invented placeholders) are "
    "retried once (as gepa-bot's reflection is) and otherwise skipped, so fewer than N may be scored.",
    "gepa-bot picks its best candidate on val, like best-of-N; neither sees the test split.",
    "With the 135M model as both task and reflection model, reflection replies are often malformed or ignore the "
    "feedback; every rejected reply is counted in the tables. Scores on 15-18 test examples move in steps of "
    "~0.06, so small differences are noise.",
    "The no-cache run replays the cached run's reflection replies from its run log (gepa-bot's own resume "
    "mechanism; LLM calls shown as replayed, 0 s), so it makes the same search at the same seed: compare its "
    "rollouts executed and eval time with the cached run's. Its wall time excludes the reflection LLM time "
    "the cached run paid; the cached run's eval time (in results.json) is the like-for-like number.",
    "Bot overhead share = (wall time - eval time - LLM time) / wall time, from gepa-bot's Budget. Eval time is "
    "measured around the adapter's whole evaluation (cache lookups, materializing the workdir, the eval "
    "processes), so what remains is GEPA's own bookkeeping and the reflector's parsing: a lower bound on the "
    "bot's cost. Best-of-N's first run in a process also pays the one-off litellm import there.",
]


def write_results(data: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "md": out_dir / "results.md"}
    paths["json"].write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    meta, machine = data["meta"], data["machine"]
    md = ["# gepa-bot bench results", "",
          f"Command: `{meta['command']}` — total wall time {meta['total_wall_s']:.0f}s "
          f"({meta['total_wall_s'] / 60:.1f} min).", "",
          "## Machine", "",
          f"- nproc: {machine['nproc']}", f"- CPU: {machine['cpu']}", f"- Python: {machine['python']}",
          f"- platform: {machine['platform']}", f"- date: {machine['date']}",
          f"- task model: `{meta['task_model']}`, reflection model: `{meta['reflection_model']}`",
          f"- budgets (rollouts): {', '.join(map(str, meta['budgets']))}; eval workers: {meta['workers']}; "
          f"seed: {meta['seed']}"
          + (f"; reflection_max_tokens: {meta['reflection_max_tokens']}" if meta.get("reflection_max_tokens") else ""),
          "- split sizes used (train/val/test): "
          + "; ".join(f"`{t}` {s['train']}/{s['val']}/{s['test']}" for t, s in data["splits"].items())
          + (f" (val capped with split.max_val={meta['max_val']})" if meta.get("max_val") else ""), ""]
    for task in dict.fromkeys(r["task"] for r in data["rows"]):
        md += [f"## `{task}`", "", task_table([r for r in data["rows"] if r["task"] == task]), ""]
    speed = data["speedup"]
    md += ["## Parallel evaluation speedup", "",
           f"`evaluate_parallel` on a sleep-bound toy suite: {speed['instances']} instances x {speed['sleep_s']}s sleep.",
           "", speedup_table(speed), "",
           f"t1/t2 = {speed['speedup'].get('2', '-')}, t1/t4 = {speed['speedup'].get('4', '-')}.", ""]
    md += ["## Notes", ""] + [f"- {n}" for n in auto_notes(data) + STATIC_NOTES + meta.get("notes", [])] + [""]
    if meta.get("png"):
        md += ["![test score vs rollout budget](score_vs_rollouts.png)", ""]
    paths["md"].write_text("\n".join(md), encoding="utf-8")
    return paths


def write_plot(data: dict[str, Any], path: Path) -> bool:
    """Test score vs rollout budget, one panel per task; False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    tasks = list(dict.fromkeys(r["task"] for r in data["rows"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
    styles = {"seed": ("k", "--", "o"), "best_of_n": ("tab:orange", "-", "s"), "gepa_bot": ("tab:blue", "-", "^"),
              "gepa_bot_nocache": ("tab:green", ":", "v")}
    budgets = sorted({r["budget"] for r in data["rows"]})
    dodge = (budgets[-1] - budgets[0] or budgets[0]) * 0.012  # so identical scores stay visible side by side
    for ax, task in zip(axes[0], tasks):
        for k, method in enumerate(METHODS):
            pts = sorted((r["budget"], r["test_score"]) for r in data["rows"] if r["task"] == task and r["method"] == method)
            if pts:
                color, line, marker = styles[method]
                ax.plot([p[0] + (k - 1.5) * dodge for p in pts], [p[1] for p in pts], color=color, linestyle=line,
                        marker=marker, markersize=7,
                        label=METHOD_LABELS[method], alpha=0.85)
        ax.set_title(f"{task}")
        ax.set_xlabel("rollout budget")
        ax.set_ylabel("held-out test score")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xticks(budgets)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"held-out test score vs rollout budget (task {data['meta']['task_model']}, reflection "
                 f"{data['meta']['reflection_model']}; points dodged sideways, equal scores overlap)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- command line ---------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small run (<10 min on 2 cores with the local model)")
    p.add_argument("--tasks", help="comma-separated task names (default: all; quick: sentiment,shipping_city)")
    p.add_argument("--budgets", help="comma-separated rollout budgets (default 50,100,200; quick 20,40)")
    p.add_argument("--model", default=LOCAL_MODEL, help="task model (litellm string or local/smollm2-135m)")
    p.add_argument("--reflection-model", default=None, help="reflection/rewrite model (default: --model)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-val", type=int, default=None, help="cap the val split (quick default 6)")
    p.add_argument("--reflection-max-tokens", type=int, default=None, help="quick default 256; else the task config's")
    p.add_argument("--no-replay", action="store_true", help="the no-cache arm calls the reflection LLM live")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--keep-work", action="store_true", help="keep run dirs (printed) instead of deleting them")
    p.add_argument("--note", action="append", default=[], help="a line for the notes section (repeatable)")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite results.md and the PNG from OUT/results.json (adding --note lines); no runs")
    return p.parse_args(argv)


QUICK = {"tasks": "sentiment,shipping_city", "budgets": "20,40", "max_val": 6, "reflection_max_tokens": 256}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        data = json.loads((args.out / "results.json").read_text(encoding="utf-8"))
        data["meta"]["notes"] = list(dict.fromkeys(data["meta"].get("notes", []) + args.note))
        data["meta"]["png"] = write_plot(data, args.out / "score_vs_rollouts.png")
        print(f"rewrote {write_results(data, args.out)['md']}")
        return 0
    started = time.monotonic()
    tasks = find_tasks((args.tasks or (QUICK["tasks"] if args.quick else "")).split(",") if
                       (args.tasks or args.quick) else None)
    budgets = [int(b) for b in (args.budgets or (QUICK["budgets"] if args.quick else "50,100,200")).split(",")]
    max_val = args.max_val or (QUICK["max_val"] if args.quick else None)
    refl_tokens = args.reflection_max_tokens or (QUICK["reflection_max_tokens"] if args.quick else None)
    reflection_model = args.reflection_model or args.model
    work = Path(tempfile.mkdtemp(prefix="gepa-bench-"))
    server = None
    models: dict[str, dict[str, Any]] = {}
    try:
        if LOCAL_MODEL in (args.model, reflection_model):
            from gepa_bot.localmodel import LocalModelServer
            server = LocalModelServer().start()  # one server for the whole bench
            models[LOCAL_MODEL] = server.litellm_kwargs()
            print(f"local model server: {server.api_base}", flush=True)
        opts = BenchOptions(budgets=budgets, task_model=args.model, reflection_model=reflection_model,
                            workers=args.workers, seed=args.seed, max_val=max_val, models=models, work_dir=work,
                            replay_nocache=not args.no_replay, reflection_max_tokens=refl_tokens,
                            log=lambda m: print(m, flush=True))
        speed = measure_speedup()
        print(f"parallel speedup: {speed['speedup']}", flush=True)
        data = run_bench(tasks, opts)
    finally:
        if server is not None:
            server.stop()
        if args.keep_work:
            print(f"run dirs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    data["speedup"] = speed
    data["machine"] = machine_info()
    data["meta"] = {"command": "bench/run " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "quick": args.quick, "tasks": [t.name for t in tasks], "budgets": budgets,
                    "task_model": args.model, "reflection_model": reflection_model, "workers": args.workers,
                    "seed": args.seed, "max_val": max_val, "reflection_max_tokens": refl_tokens,
                    "nocache_replays_llm": not args.no_replay, "notes": args.note, "total_wall_s": round(time.monotonic() - started, 1)}
    data["meta"]["png"] = write_plot(data, args.out / "score_vs_rollouts.png")
    paths = write_results(data, args.out)
    print(f"wrote {paths['md']}, {paths['json']}" + (", score_vs_rollouts.png" if data["meta"]["png"] else
                                                     " (no PNG: matplotlib not installed)"))
    return 0
