"""Running GEPA on a repository: adapter, split, budget, models, and the result.json artifact.

gepa owns the search (reflective mutation, Pareto selection, merge). We own everything that touches
the outside world: evaluating candidates through the repo's suite with an on-disk cache, the hard
budget, the LLM seam with replay, and recording every candidate with its rationale and lineage.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import gepa
from gepa.core.adapter import EvaluationBatch

from gepa_bot.budget import Budget, BudgetExhausted
from gepa_bot.cache import EvalCache, candidate_hash
from gepa_bot.config import CommandSuiteConfig, Config
from gepa_bot.discovery import Component, discover, glob_matches, render_files
from gepa_bot.errors import UserError, describe_error
from gepa_bot.evalsuite import (CommandSuite, EvalSuite, Instance, InstanceResult, SuiteContext, SuiteError,
                                evaluate_parallel, materialize, remove_workdir)
from gepa_bot.llm import LLM, Transport, litellm_transport, worst_case_cost
from gepa_bot.reflection import LOOPBACK, RationaleReflector, edit_response_format
from gepa_bot.runlog import RunLog, read_records

RESULT_NAME = "result.json"
MAX_REFLECTIVE_RECORDS = 8
EXTRA_TRAIN_FAILURES = 4  # cached train failures added to a minibatch's records (no rollout spent)


@dataclass
class RunSettings:
    """Everything one optimize run needs; CLI flags override config values before this is built."""

    repo: Path
    config: Config
    config_path: Path
    run_dir: Path
    cache_dir: Path
    transport: Transport = litellm_transport
    reflection_extra: dict[str, Any] = field(default_factory=dict)
    on_progress: Callable[[Budget], None] | None = None
    use_cache: bool = True  # False re-executes every rollout (for benchmarks)
    only_files: str | None = None  # glob: optimize just these prompt files (e.g. from `/gepa optimize files=...`)
    models: dict[str, dict[str, Any]] | None = None  # pre-resolved litellm params per model string (e.g. a shared server)
    proposer: str = "gepa_bot"  # "gepa_bot": our reflector; "gepa_default": gepa's own reflection prompt (bench arm)


@dataclass
class Split:
    train: list[str]
    val: list[str]

    def split_of(self, instance_id: str) -> str:
        return "val" if instance_id in self._val_set else "train"

    def __post_init__(self) -> None:
        self._val_set = set(self.val)


class RepoAdapter:
    """gepa adapter: a candidate's texts -> prompt files -> the repo's eval suite -> scores + feedback."""

    propose_new_texts = None

    def __init__(self, suite: EvalSuite, components: list[Component], repo: Path, split: Split, cache: EvalCache,
                 budget: Budget, runlog: RunLog, workers: int, scratch: Path,
                 on_progress: Callable[[Budget], None] | None = None, repeats: int = 1,
                 on_val_scored: Callable[[str], None] | None = None):
        self.suite, self.components, self.repo, self.split = suite, components, repo, split
        self.cache, self.budget, self.runlog, self.workers = cache, budget, runlog, workers
        self.scratch, self.on_progress, self.repeats = scratch, on_progress, repeats
        self.on_val_scored = on_val_scored  # told the hash of every candidate GEPA scores on the whole val set
        self.extra_train_failures = 0  # see paid_train_failures

    def evaluate(self, batch: list[str], candidate: dict[str, str], capture_traces: bool = False) -> EvaluationBatch:
        self.budget.reserve_rollouts(len(batch))
        results = self.results_for(candidate, batch)
        if self.on_val_scored and set(batch) == set(self.split.val):
            self.on_val_scored(candidate_hash(candidate))
        if self.on_progress:
            self.on_progress(self.budget)
        ordered = [results[i] for i in batch]
        return EvaluationBatch(outputs=[r.output or "" for r in ordered], scores=[r.score for r in ordered],
                               trajectories=ordered if capture_traces else None)

    def results_for(self, candidate: dict[str, str], ids: list[str]) -> dict[str, InstanceResult]:
        """Cached results where we have them; the rest executed (in parallel), logged and cached.

        The cache key hashes the rendered prompt files, not just the optimized texts, so a change to
        front-matter or to a YAML key that is not optimized is never served a stale score.
        """
        started = time.monotonic()
        files = render_files(self.components, candidate)
        eval_key = candidate_hash(files)
        results: dict[str, InstanceResult] = {}
        for instance_id in ids:
            cached = self.cache.get(eval_key, self.split.split_of(instance_id), instance_id)
            if cached is not None:
                results[instance_id] = cached
        # gepa pads a short epoch with repeated ids, so a minibatch can name an instance twice: run it once
        missing = list(dict.fromkeys(i for i in ids if i not in results))
        if missing:
            results.update(self._execute(candidate, files, eval_key, missing))
        self.budget.record_eval(len(missing), len(ids) - len(missing), time.monotonic() - started)
        return results

    def _execute(self, candidate: dict[str, str], files: dict[str, str], eval_key: str,
                 ids: list[str]) -> dict[str, InstanceResult]:
        workdir = materialize(self.repo, files, candidate, self.scratch)
        started = time.monotonic()
        try:
            runs = [evaluate_parallel(self.suite, workdir, ids, self.workers) for _ in range(self.repeats)]
        finally:
            remove_workdir(workdir)
        batch_seconds = round(time.monotonic() - started, 3)
        fresh = {i: combine_repeats([run[i] for run in runs]) for i in ids}
        cand_hash = candidate_hash(candidate)
        for instance_id in ids:
            split = self.split.split_of(instance_id)
            self.runlog.write("rollout", candidate=cand_hash, eval_key=eval_key, split=split,
                              fingerprint=self.cache.fingerprint, batch_size=len(ids), batch_seconds=batch_seconds,
                              **fresh[instance_id].to_json())
            self.cache.put(eval_key, split, fresh[instance_id])
        return fresh

    def make_reflective_dataset(self, candidate: dict[str, str], eval_batch: EvaluationBatch,
                                components_to_update: list[str]) -> dict[str, list[dict[str, Any]]]:
        results: list[InstanceResult] = list(eval_batch.trajectories or [])
        results += self.paid_train_failures(candidate, {r.id for r in results})
        results = sorted(results, key=lambda r: r.score)[:MAX_REFLECTIVE_RECORDS]
        records = [{"Inputs": {"instance_id": r.id}, "Generated Outputs": r.output or "",
                    "Feedback": r.feedback or "(no feedback)", "score": r.score, "trace": r.trace} for r in results]
        return {name: records for name in components_to_update}

    def paid_train_failures(self, candidate: dict[str, str], exclude: set[str]) -> list[InstanceResult]:
        """Failures of this candidate on other TRAIN instances that are already in the cache (free: no rollout).

        A 3-instance minibatch often holds a single failure, and a small reflection model turns a single
        failure into a rule about that one input; a few more failures show it the pattern. Val results are
        never shown. Off (0) for the plain-gepa bench arm, which must see what gepa alone would show.
        """
        if self.extra_train_failures <= 0:
            return []
        eval_key = candidate_hash(render_files(self.components, candidate))
        found = []
        for instance_id in self.split.train:
            if instance_id in exclude:
                continue
            cached = self.cache.get(eval_key, "train", instance_id)
            if cached is not None and cached.score < 1.0:
                found.append(cached)
                if len(found) >= self.extra_train_failures:
                    break
        return found


def combine_repeats(results: list[InstanceResult]) -> InstanceResult:
    """One result from repeated evals of the same instance: mean score, spread noted when scores differ."""
    if len(results) == 1:
        return results[0]
    scores = [r.score for r in results]
    mean = statistics.fmean(scores)
    spread = statistics.pstdev(scores)
    worst = min(results, key=lambda r: r.score)
    note = f"[score varied over {len(scores)} repeats: {', '.join(f'{s:g}' for s in scores)}] " if spread else ""
    trace = {"repeat_scores": scores, "stdev": spread, "trace": worst.trace}
    return InstanceResult(id=worst.id, score=mean, feedback=note + worst.feedback, trace=trace, output=worst.output,
                          failed=all(r.failed for r in results))


# --- the run ---------------------------------------------------------------------------------------

def build_suite(settings: RunSettings, context: SuiteContext) -> EvalSuite:
    eval_config = settings.config.eval
    if isinstance(eval_config, CommandSuiteConfig):
        context.timeout = eval_config.timeout
        return CommandSuite(context, eval_config.command, eval_config.watch, eval_config.instances)
    return eval_config.build(context)


def choose_split(instances: list[Instance], settings: RunSettings) -> Split:
    """The suite's own train/val labels where given; the rest split by val_fraction with a seeded shuffle."""
    cfg = settings.config.split
    train = [i.id for i in instances if i.split == "train"]
    val = [i.id for i in instances if i.split == "val"]
    unlabelled = [i.id for i in instances if i.split not in ("train", "val", "test")]
    random.Random(cfg.seed).shuffle(unlabelled)
    n_val = round(len(unlabelled) * cfg.val_fraction)
    val += unlabelled[:n_val]
    train += unlabelled[n_val:]
    train, val = train[: cfg.max_train or None], val[: cfg.max_val or None]
    if not train or not val:
        raise UserError(f"{settings.config_path}: field 'split': need at least one train and one val instance "
                        f"(the suite listed {len(instances)}; got {len(train)} train, {len(val)} val)",
                        fix="add instances to the eval suite or adjust split.val_fraction")
    return Split(train=train, val=val)


def check_budget_fits(settings: RunSettings, split: Split) -> None:
    needed = len(split.val) + 2 * settings.config.optimizer.minibatch_size
    if settings.config.budget.rollouts < needed:
        raise UserError(f"{settings.config_path}: field 'budget.rollouts': {settings.config.budget.rollouts} is too "
                        f"small: the baseline alone takes {len(split.val)} val rollouts and one GEPA step "
                        f"{2 * settings.config.optimizer.minibatch_size} more", fix=f"use --budget {needed} or more "
                        "(3-10x the val size lets GEPA try several candidates), or lower split.max_val")


@contextlib.contextmanager
def resolved_models(*models: str, known: dict[str, dict[str, Any]] | None = None) -> Iterator[list[dict[str, Any]]]:
    """litellm parameters per model string; embedded ``local/...`` models are served by ONE local server.

    ``known`` maps model strings to parameters resolved by the caller (e.g. a local server it already runs).
    """
    from gepa_bot.localmodel import LocalModelServer, LocalModelUnavailable, local_model

    known = known or {}
    wanted = [spec for m in dict.fromkeys(models) if m not in known and (spec := local_model(m)) is not None]
    if not wanted:
        yield [dict(known[m]) if m in known else {"model": m} for m in models]
        return
    server = LocalModelServer(wanted)
    try:
        server.start()
    except LocalModelUnavailable as exc:
        raise UserError(str(exc), fix="run scripts/install-local-model, or set models.task/"
                        "models.reflection (or --model/--reflection-model) to a hosted litellm model") from None
    served = {spec.name: server.litellm_kwargs(spec) for spec in wanted}
    try:
        yield [dict(known[m]) if m in known else dict(served.get(m.strip().lower(), {"model": m})) for m in models]
    finally:
        server.stop()


def reflection_style(configured: str, model: str, api_base: str | None) -> str:
    """``edit``, ``rewrite`` or ``mixed``: auto picks mixed for embedded or loopback-served models (small ones, in
    practice), rewrite for hosted ones.

    Measured (bench/results, the quick start): with Qwen2.5-Coder-1.5B reflecting, gepa's own full-rewrite request
    was never usable (dropped placeholders, instructions echoed back); one-sentence edits reached the val set
    several times per run but only ever add text, while plain "make it better for a small model" rewrites came
    back shorter and scored best in the bench's best-of-N arm. ``mixed`` alternates the two.
    """
    if configured != "auto":
        return configured
    from gepa_bot.localmodel import local_model

    loopback = bool(api_base and LOOPBACK.match(api_base))
    return "mixed" if local_model(model) is not None or loopback else "rewrite"


def acceptance(configured: str, style: str, proposer: str) -> str:
    """gepa's acceptance criterion. Plain gepa (the bench arm) keeps gepa's default, strict improvement."""
    if proposer == "gepa_default":
        return "strict_improvement"
    if configured != "auto":
        return configured
    return "improvement_or_equal" if style in ("edit", "mixed") else "strict_improvement"


@dataclass
class SearchErrors:
    """gepa callback: exceptions inside the search (gepa logs them and goes on); budget stops are not errors."""

    errors: list[dict[str, Any]] = field(default_factory=list)

    def on_error(self, event: dict[str, Any]) -> None:
        exc = event["exception"]
        if isinstance(exc, BudgetExhausted):
            return
        self.errors.append(describe_error(f"search iteration {event['iteration']}", exc))


class _GepaLog:
    """gepa's logger protocol, written to an open text file in the run dir."""

    def __init__(self, handle: TextIO):
        self.handle = handle

    def log(self, message: str) -> None:
        self.handle.write(message.rstrip() + "\n")
        self.handle.flush()


def select_components(settings: RunSettings) -> list[Component]:
    """The config's prompt components, narrowed to ``only_files`` when given."""
    components = discover(settings.repo, settings.config, settings.config_path)
    if settings.only_files:
        components = [c for c in components if glob_matches(c.path, settings.only_files)]
        if not components:
            raise UserError(f"files={settings.only_files}: matches none of the prompt files in {settings.config_path}",
                            fix="use a glob that matches a file selected by the config's prompts")
    return components


def optimize(settings: RunSettings) -> dict[str, Any]:
    """Run GEPA on the repo's prompts; returns (and writes) the result.json data."""
    config = settings.config
    components = select_components(settings)
    runlog = RunLog(settings.run_dir)
    try:
        with resolved_models(config.models.task, config.models.reflection, known=settings.models) as (task, reflection):
            return _optimize(settings, components, runlog, task, reflection)
    finally:
        runlog.close()


def _optimize(settings: RunSettings, components: list[Component], runlog: RunLog, task: dict[str, Any],
              reflection: dict[str, Any]) -> dict[str, Any]:
    config = settings.config
    context = SuiteContext(repo=settings.repo, model=task["model"], api_base=task.get("api_base"),
                           api_key=task.get("api_key"))
    suite = build_suite(settings, context)
    split = choose_split(_list_instances(suite, settings), settings)
    check_budget_fits(settings, split)
    import litellm  # noqa: F401  (a cold import takes ~2 s: pay it before the wall-time clock starts)

    check_cost_cap_can_trigger(settings, reflection["model"])
    budget = Budget(max_rollouts=config.budget.rollouts, max_cost_usd=config.budget.max_llm_cost_usd,
                    max_seconds=config.budget.wall_time_minutes * 60 if config.budget.wall_time_minutes else None)
    context.deadline = budget.deadline()
    cache = EvalCache(settings.cache_dir, cache_fingerprint(suite, config.optimizer.eval_repeats),
                      enabled=settings.use_cache)
    restored = restore_logged_rollouts(settings.run_dir, cache) if settings.use_cache else 0
    runlog.write("start", repo=str(settings.repo), components=[c.name for c in components], train=split.train,
                 val=split.val, budget=config.budget.model_dump(), models=config.models.model_dump(),
                 seed=config.optimizer.seed, fingerprint=cache.fingerprint,
                 restored_rollouts=restored)
    adapter = RepoAdapter(suite, components, settings.repo, split, cache, budget, runlog,
                          config.optimizer.workers, settings.run_dir / "scratch", settings.on_progress,
                          repeats=config.optimizer.eval_repeats)
    llm = LLM(reflection["model"], budget, runlog, transport=settings.transport,
              replay=list(read_records(settings.run_dir, "llm")),
              max_tokens=config.models.reflection_max_tokens, temperature=config.models.reflection_temperature,
              extra={**{k: v for k, v in reflection.items() if k != "model"}, **settings.reflection_extra})
    style = reflection_style(config.optimizer.reflection_style, config.models.reflection, reflection.get("api_base"))
    reflector = RationaleReflector(llm=llm, runlog=runlog, attempts=config.optimizer.reflection_attempts, style=style,
                                   response_format=edit_response_format(reflection["model"], reflection.get("api_base")))
    adapter.on_val_scored = reflector.accepted.add
    adapter.extra_train_failures = EXTRA_TRAIN_FAILURES if settings.proposer == "gepa_bot" else 0
    if settings.proposer == "gepa_default":  # gepa's own prompt and full-text proposals, through our LLM seam
        proposer: dict[str, Any] = {"reflection_lm": lambda prompt: llm.complete(
            [{"role": "user", "content": prompt}], purpose="reflect:gepa-default").text}
    else:
        proposer = {"reflection_strategy": reflector}
    seed = {c.name: c.text for c in components}
    search_errors = SearchErrors()
    try:
        with (settings.run_dir / "gepa.log").open("a", encoding="utf-8") as gepa_log:
            gepa_result = gepa.optimize(
                seed_candidate=seed, trainset=split.train, valset=split.val, adapter=adapter,
                **proposer, candidate_selection_strategy=config.optimizer.candidate_selection,
                reflection_minibatch_size=config.optimizer.minibatch_size,
                acceptance_criterion=acceptance(config.optimizer.acceptance, style, settings.proposer), use_merge=_use_merge(config, components),
                max_merge_invocations=config.optimizer.max_merge_invocations,
                stop_callbacks=[lambda _state: budget.should_stop()], logger=_GepaLog(gepa_log), callbacks=[search_errors],
                seed=config.optimizer.seed, raise_on_exception=False,
                cache_evaluation=False, display_progress_bar=False, track_best_outputs=False)
    except BudgetExhausted as exc:  # raised outside gepa's iteration loop: the baseline itself did not fit
        raise UserError(f"{settings.config_path}: field 'budget': ran out while scoring the baseline ({exc})",
                        fix="raise budget.wall_time_minutes / budget.max_llm_cost_usd, or lower split.max_val") from None
    result = build_result(gepa_result, components, split, adapter, reflector, budget, settings)
    result["search_errors"] = reflector.errors + search_errors.errors  # gepa swallows both kinds
    for error in search_errors.errors:
        runlog.write("search_error", **error)  # (the reflector logs its own as they happen)
    (settings.run_dir / RESULT_NAME).write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    runlog.write("end", best=result["best_candidate"], budget=result["budget"])
    return result


def evaluate_current(settings: RunSettings) -> dict[str, Any]:
    """Score the prompts as they are on the validation set (cached; no GEPA, no reflection model)."""
    components = select_components(settings)
    runlog = RunLog(settings.run_dir)
    try:
        with resolved_models(settings.config.models.task, known=settings.models) as (task,):
            context = SuiteContext(repo=settings.repo, model=task["model"], api_base=task.get("api_base"),
                                   api_key=task.get("api_key"))
            suite = build_suite(settings, context)
            split = choose_split(_list_instances(suite, settings), settings)
            budget = Budget(max_rollouts=len(split.val))
            adapter = RepoAdapter(suite, components, settings.repo, split,
                                  EvalCache(settings.cache_dir, suite.fingerprint()), budget, runlog,
                                  settings.config.optimizer.workers, settings.run_dir / "scratch")
            budget.reserve_rollouts(len(split.val))
            results = adapter.results_for({c.name: c.text for c in components}, split.val)
    finally:
        runlog.close()
    scores = [results[i].score for i in split.val]
    return {"val_mean": sum(scores) / len(scores), "val": {i: results[i].to_json() for i in split.val},
            "budget": budget.to_json()}


def check_cost_cap_can_trigger(settings: RunSettings, model: str) -> None:
    """Fail closed: a cost cap on a model litellm has no price for would silently never trigger."""
    from gepa_bot.localmodel import local_model

    config = settings.config
    if config.budget.max_llm_cost_usd is None or local_model(config.models.reflection) is not None:
        return  # no cap, or the embedded model (free: a cap is harmless)
    if worst_case_cost(model, 4000, config.models.reflection_max_tokens) > 0:
        return
    raise UserError(f"{settings.config_path}: field 'budget.max_llm_cost_usd': litellm has no price for the reflection "
                    f"model {config.models.reflection!r}, so the cost cap could never trigger",
                    fix="set budget.max_llm_cost_usd: null (and rely on budget.rollouts / wall_time_minutes), use a "
                        "model litellm prices, or register its price with litellm.register_model")


def cache_fingerprint(suite: EvalSuite, repeats: int) -> str:
    """The suite's fingerprint, plus the repeat count when it is not 1: a mean over 3 runs is another result
    than a single run, and must never be served for it (or the other way round)."""
    base = suite.fingerprint()
    return base if repeats == 1 else hashlib.sha256(f"{base}\nrepeats={repeats}".encode()).hexdigest()


def _list_instances(suite: EvalSuite, settings: RunSettings) -> list[Instance]:
    try:
        return suite.list_instances()
    except SuiteError as exc:
        raise UserError(f"{settings.config_path}: field 'eval': {exc}", fix="make the eval command work by hand first "
                        "(see README 'Eval protocol')") from None


def restore_logged_rollouts(run_dir: Path, cache: EvalCache) -> int:
    """Put rollouts from the write-ahead log back into the cache (a kill may land between log and cache)."""
    restored = 0
    for record in read_records(run_dir, "rollout"):
        if record.get("fingerprint") != cache.fingerprint or not {"eval_key", "split", "id", "score"} <= set(record):
            continue  # another eval suite, or a record from an older gepa-bot: re-executed if needed
        if not cache.contains(record["eval_key"], record["split"], record["id"]):
            cache.put(record["eval_key"], record["split"], InstanceResult.from_json(record))
            restored += 1
    return restored


def _use_merge(config: Config, components: list[Component]) -> bool:
    merge = config.optimizer.merge
    return len(components) > 1 if merge == "auto" else bool(merge)


def build_result(gepa_result: Any, components: list[Component], split: Split, adapter: RepoAdapter,
                 reflector: RationaleReflector, budget: Budget, settings: RunSettings) -> dict[str, Any]:
    """Everything the report and the PR need, JSON-serializable."""
    front = sorted({idx for ids in gepa_result.per_val_instance_best_candidates.values() for idx in ids})
    candidates = []
    for index, texts in enumerate(gepa_result.candidates):
        cand_hash = candidate_hash(texts)
        eval_key = candidate_hash(render_files(components, texts))
        parents = [p for p in gepa_result.parents[index] if p is not None]
        val_results = {split.val[k]: adapter.cache.get(eval_key, "val", split.val[k])
                       for k in gepa_result.val_subscores[index]}
        candidates.append({
            "index": index, "hash": cand_hash, "components": texts, "parents": parents,
            "origin": "seed" if index == 0 else ("merge" if len(parents) > 1 else "reflection"),
            "rationale": reflector.rationales.get(cand_hash, {}),
            "val_mean": gepa_result.val_aggregate_scores[index],
            "val": {i: {"score": r.score, "feedback": r.feedback, "failed": r.failed,
                        "stdev": (r.trace or {}).get("stdev", 0.0) if isinstance(r.trace, dict) else 0.0} if r else None
                    for i, r in val_results.items()},
            "discovered_at_rollout": gepa_result.discovery_eval_counts[index],
        })
    best = max(range(len(candidates)), key=lambda i: (candidates[i]["val_mean"], -i))
    return {
        "version": 1,
        "components": [{"name": c.name, "path": c.path, "kind": c.kind, "key": c.key} for c in components],
        "split": {"train": split.train, "val": split.val},
        "candidates": candidates, "pareto_front": front, "best_candidate": best, "baseline_candidate": 0,
        "best_files": render_files(components, candidates[best]["components"]),
        "rejected_proposals": reflector.rejected,
        "reflection_style": reflector.style,
        "eval_repeats": settings.config.optimizer.eval_repeats,
        "budget": {**budget.to_json(), "cache_hit_rate": round(budget.cache_hits / budget.rollouts, 4)
                   if budget.rollouts else 0.0},
        "models": settings.config.models.model_dump(),
        "seed": settings.config.optimizer.seed,
        "min_improvement": settings.config.output.min_improvement,
    }
