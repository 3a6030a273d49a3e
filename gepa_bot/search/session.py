"""One run session: everything a strategy (optimize, evaluate, a bench arm) needs, opened in order and
closed in reverse.

    config -> RunSession (models + local server, suite, split, budget, cache + log restore, run log, LLM,
    adapter) -> strategy (gepa search, a plain val pass, best-of-N) -> result -> report/publish

Strategies never build these parts themselves, so every way of running gepa-bot shares the same budget
accounting, cache, write-ahead log and LLM seam.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gepa_bot.config import Config
from gepa_bot.containment import evals_contained
from gepa_bot.discovery import Component, discover, glob_matches
from gepa_bot.errors import UserError
from gepa_bot.evals.cache import EvalCache
from gepa_bot.evals.executor import make_executor
from gepa_bot.evals.registry import build_suite
from gepa_bot.evals.suite import EvalSuite, Instance, InstanceResult, SuiteContext, SuiteError
from gepa_bot.redact import secrets_of_this_run
from gepa_bot.runlog import RunLog, read_records
from gepa_bot.search.adapter import RepoAdapter, SearchStatus, Split
from gepa_bot.search.budget import Budget
from gepa_bot.search.errorpolicy import ErrorPolicy
from gepa_bot.search.llm import LLM, Transport, default_transport, worst_case_cost


@dataclass
class RunSettings:
    """Everything one run needs; CLI flags override config values before this is built."""

    repo: Path
    config: Config
    config_path: Path
    run_dir: Path
    cache_dir: Path
    transport: Transport = default_transport
    reflection_extra: dict[str, Any] = field(default_factory=dict)
    on_progress: Callable[[Budget, SearchStatus], None] | None = None
    use_cache: bool = True  # False re-executes every rollout (for benchmarks)
    only_files: str | None = None  # glob: optimize just these prompt files (e.g. from `/gepa optimize files=...`)
    models: dict[str, dict[str, Any]] | None = None  # pre-resolved litellm params per model string (e.g. a shared server)
    proposer: str = "gepa_bot"  # "gepa_bot": our reflector; "gepa_default": gepa's own reflection prompt (bench arm)


@dataclass
class RunSession:
    """The opened parts of one run. ``llm`` and ``reflection_model`` are None in an eval-only session."""

    settings: RunSettings
    components: list[Component]
    runlog: RunLog
    task_model: dict[str, Any]
    reflection_model: dict[str, Any] | None
    context: SuiteContext
    suite: EvalSuite
    split: Split
    budget: Budget
    cache: EvalCache
    adapter: RepoAdapter
    llm: LLM | None
    restored_rollouts: int = 0

    @property
    def config(self) -> Config:
        return self.settings.config

    @property
    def seed_candidate(self) -> dict[str, str]:
        return {c.name: c.text for c in self.components}


@contextlib.contextmanager
def open_session(settings: RunSettings, *, with_reflection: bool = True,
                 max_rollouts: Callable[[Split], int] | None = None) -> Iterator[RunSession]:
    """Open a run session; ``max_rollouts`` overrides the config's budget (e.g. one val pass)."""
    config = settings.config
    components = select_components(settings)
    with contextlib.ExitStack() as stack:
        stack.enter_context(evals_contained())  # first in, last out: kills what the evals left running
        runlog = RunLog(settings.run_dir)
        stack.callback(runlog.close)
        suite, task_model, reflection_model = stack.enter_context(open_suite(settings, with_reflection))
        stack.enter_context(secrets_of_this_run())  # one scan of the environment, not one per record
        context = suite.context
        split = choose_split(list_instances(suite, settings), settings)
        if with_reflection:
            check_budget_fits(settings, split)
            check_cost_cap_can_trigger(settings, reflection_model["model"])  # type: ignore[index]
        budget = make_budget(config, max_rollouts(split) if max_rollouts else None)
        context.deadline = budget.deadline()
        cache = EvalCache(settings.cache_dir, cache_fingerprint(suite, config.optimizer.eval_repeats),
                          enabled=settings.use_cache)
        stack.callback(cache.close)
        restored = restore_logged_rollouts(settings.run_dir, cache) if settings.use_cache else 0
        executor = make_executor(config.eval.executor, settings.repo, settings.run_dir / "scratch",
                                 config.optimizer.workers, config.eval.timeout, config.ray)
        stack.callback(executor.close)
        errors = ErrorPolicy(max_error_rate=config.eval.max_error_rate)
        adapter = RepoAdapter(suite, components, split, cache, budget, runlog, executor,
                              settings.on_progress, repeats=config.optimizer.eval_repeats, errors=errors,
                              retries=config.eval.retries)
        llm = make_llm(settings, reflection_model, budget, runlog, errors) if reflection_model else None
        yield RunSession(settings, components, runlog, task_model, reflection_model, context, suite, split, budget,
                         cache, adapter, llm, restored)


@contextlib.contextmanager
def open_suite(settings: RunSettings, with_reflection: bool = True
               ) -> Iterator[tuple[EvalSuite, dict[str, Any], dict[str, Any] | None]]:
    """The models resolved (one local server for the embedded ones) and the config's eval suite built on the
    task model: (suite, task model params, reflection model params or None)."""
    models = settings.config.models
    wanted = [models.task] + ([models.reflection] if with_reflection else [])
    with resolved_models(*wanted, known=settings.models) as resolved:
        task_model = resolved[0]
        context = SuiteContext(repo=settings.repo, model=task_model["model"], api_base=task_model.get("api_base"),
                               api_key=task_model.get("api_key"))
        try:
            suite = build_suite(settings.config.eval, context)
        except SuiteError as exc:
            raise suite_error(settings, exc) from None
        yield suite, task_model, (resolved[1] if with_reflection else None)


def make_budget(config: Config, max_rollouts: int | None = None) -> Budget:
    cap = config.budget
    return Budget(max_rollouts=max_rollouts if max_rollouts is not None else cap.rollouts,
                  max_cost_usd=cap.max_llm_cost_usd,
                  max_seconds=cap.wall_time_minutes * 60 if cap.wall_time_minutes else None)


def make_llm(settings: RunSettings, reflection_model: dict[str, Any], budget: Budget, runlog: RunLog,
             errors: ErrorPolicy | None = None) -> LLM:
    """The reflection model behind the LLM seam, replaying the replies this run dir already paid for."""
    models = settings.config.models
    return LLM(reflection_model["model"], budget, runlog, transport=settings.transport, errors=errors,
               replay=list(read_records(settings.run_dir, "llm")),
               max_tokens=models.reflection_max_tokens, temperature=models.reflection_temperature,
               extra={**{k: v for k, v in reflection_model.items() if k != "model"}, **settings.reflection_extra})


def select_components(settings: RunSettings) -> list[Component]:
    """The config's prompt components, narrowed to ``only_files`` when given."""
    components = discover(settings.repo, settings.config, settings.config_path)
    if settings.only_files:
        components = [c for c in components if glob_matches(c.path, settings.only_files)]
        if not components:
            raise UserError(f"files={settings.only_files}: matches none of the prompt files in {settings.config_path}",
                            fix="use a glob that matches a file selected by the config's prompts")
    return components


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
    from gepa_bot.models.localmodel import LocalModelUnavailable, local_model
    from gepa_bot.models.modelserver import LocalModelServer, ServerWatch, unwatch, watching

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
    watch = watching(ServerWatch(server))
    try:
        yield [dict(known[m]) if m in known else dict(served.get(m.strip().lower(), {"model": m})) for m in models]
    finally:
        unwatch(watch)
        server.stop()


def check_cost_cap_can_trigger(settings: RunSettings, model: str) -> None:
    """Fail closed: a cost cap on a model litellm has no price for would silently never trigger."""
    from gepa_bot.models.localmodel import local_model

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


def list_instances(suite: EvalSuite, settings: RunSettings) -> list[Instance]:
    try:
        return suite.list_instances()
    except SuiteError as exc:
        raise suite_error(settings, exc) from None


def suite_error(settings: RunSettings, exc: SuiteError) -> UserError:
    """A suite that cannot be built or listed, as one line naming the config field, with the suite's own Fix."""
    message, _, fix = " ".join(str(exc).split()).partition(" Fix: ")
    return UserError(f"{settings.config_path}: field 'eval': {message.rstrip('.')}",
                     fix=fix or "make the eval command work by hand first (docs/eval-protocol.md)")


def restore_logged_rollouts(run_dir: Path, cache: EvalCache) -> int:
    """Put rollouts from the write-ahead log back into the cache (a kill may land between log and cache)."""
    logged = {(r["eval_key"], r["split"], r["id"]): r for r in read_records(run_dir, "rollout")
              if r.get("fingerprint") == cache.fingerprint and {"eval_key", "split", "id", "score"} <= set(r)
              and not r.get("failed")}  # (errors logged by an older gepa-bot are not results)
    # (records of another eval suite or an older gepa-bot are skipped: re-executed if needed)
    missing = set(logged) - cache.present(list(logged))
    cache.put_many([(key[0], key[1], InstanceResult.from_json(logged[key])) for key in missing])
    return len(missing)
