"""The bench's arms: what each method does with one task, one seed and a rollout budget.

Every arm runs once at the largest budget and reports an *anytime trajectory*: the val-best candidate
known after ``r`` rollouts, for each candidate it scores. The harness reads the candidate each arm
would have returned at every smaller budget checkpoint from that trajectory, and scores it on the
held-out test split (which no arm ever sees).

- ``seed``: the prompt as written.
- ``best_of_n``: N feedback-free rewrites by the reflection model, N distinct samples (the LLM seam
  offsets the sampling seed on every repeat of the same request), each scored on the whole val split.
- ``plain_gepa``: ``gepa.optimize`` with gepa's own default reflection prompt and full-text proposals.
- ``gepa_bot``: gepa-bot as configured (mixed-style reflection for the embedded model).
- ``gepa_bot_nocache``: the same search with the eval cache off (reflection replies replayed).
- ``gepa_bot_shorter``: gepa-bot's own search, its proposal chosen with ``prefer_shorter_within: 1`` (DERIVED).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gepa_bot.config import DEFAULT_CONFIG_NAME, LOCAL_MODEL, Config
from gepa_bot.result import BudgetSummary, RejectedProposal, RunResult
from gepa_bot.runlog import RUN_LOG_NAME, read_records
from gepa_bot.search import engine
from gepa_bot.search.budget import BudgetExhausted
from gepa_bot.search.llm import Transport, default_transport
from gepa_bot.search.reflection import RationaleReflector
from gepa_bot.search.selection import val_best
from gepa_bot.search.session import RunSettings, open_session, select_components
from gepa_bot.significance import val_scores
from gepa_bot.verdict import opens_pr

METHODS = ("seed", "best_of_n", "plain_gepa", "gepa_bot", "gepa_bot_nocache", "gepa_bot_shorter")
DERIVED = {"gepa_bot_shorter": ("gepa_bot", 1)}
"""Arms computed from another arm's search, no run of their own: ``gepa_bot_shorter`` proposes gepa-bot's
shortest candidate within 1 val instance of its best (optimizer.prefer_shorter_within: 1, the default since
f132ffb; with that default it is the gepa_bot arm itself). On a run with prefer_shorter_within 0 its candidates are
the ones whose trimming worked on the val-best: a run with the rule trims its own pick, so its prompts are at most
this long."""



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


@dataclass
class BenchOptions:
    budgets: list[int]
    task_model: str = LOCAL_MODEL
    reflection_model: str = LOCAL_MODEL
    workers: int = 2
    seeds: list[int] = field(default_factory=lambda: [0])
    methods: tuple[str, ...] = METHODS
    nocache_seeds: int = 1  # the no-cache arm (same search, cache off) runs for the first N seeds only
    max_val: int | None = None
    max_train: int | None = None
    transport: Transport = default_transport
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # pre-resolved model params (shared server)
    work_dir: Path | None = None
    log: Any = print
    reflection_max_tokens: int | None = None
    reflection_style: str | None = None  # override the tasks' optimizer.reflection_style


@dataclass(frozen=True)
class Point:
    """One step of an arm's anytime trajectory: a candidate, its val score, and the rollouts spent when it was found."""

    rollouts: int
    val_score: float | None  # None: not scored on val (the seed arm)
    candidate: dict[str, str]  # component name -> prompt text
    val: dict[str, float] = field(default_factory=dict)  # val instance id -> score (empty: not scored)


@dataclass
class Outcome:
    """What an arm returns: its anytime trajectory and what it spent."""

    trajectory: list[Point]  # in discovery order
    budget: BudgetSummary | None = None  # None: the arm spent nothing (the seed)
    rejected: list[RejectedProposal] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def opens_pr(self, pick: Point, config: Config) -> bool | None:
        """Would gepa-bot open a pull request for ``pick`` against the seed (the trajectory's first point)? The
        product's gate on the val scores (output.min_improvement, output.min_confidence); None: nothing on val."""
        seed = self.trajectory[0]
        if not seed.val or not pick.val:
            return None
        return pick.candidate != seed.candidate and opens_pr(seed.val, pick.val, config.output.min_improvement,
                                                             config.output.min_confidence)

    def best_at(self, rollouts: int, slack: float = 0.0) -> Point:
        """The val-best entry known within ``rollouts`` (the seed if nothing fits), chosen by gepa-bot's own
        ``val_best`` for every arm alike: on a tie the shorter prompt, then the earliest; with ``slack`` the shortest
        within that much of the best val score."""
        known = [t for t in self.trajectory if t.rollouts <= rollouts] or self.trajectory[:1]
        return known[val_best([{"val_mean": t.val_score if t.val_score is not None else -1.0,
                                "components": t.candidate} for t in known], slack)]


def make_config(task: Task, budget: int, seed: int, opts: BenchOptions) -> Config:
    data = task.base_config()
    data["budget"] = {**data.get("budget", {}), "rollouts": budget}
    data["models"] = {**data.get("models", {}), "task": opts.task_model, "reflection": opts.reflection_model}
    if opts.reflection_max_tokens:
        data["models"]["reflection_max_tokens"] = opts.reflection_max_tokens
    data["optimizer"] = {**data.get("optimizer", {}), "workers": opts.workers, "seed": seed}
    if opts.reflection_style:
        data["optimizer"]["reflection_style"] = opts.reflection_style
    split = dict(data.get("split", {}))
    if opts.max_val:
        split["max_val"] = opts.max_val
    if opts.max_train:
        split["max_train"] = opts.max_train
    data["split"] = split
    return Config.model_validate(data)


def settings_for(task: Task, config: Config, run_dir: Path, opts: BenchOptions, **overrides: Any) -> RunSettings:
    return RunSettings(repo=task.repo, config=config, config_path=task.repo / DEFAULT_CONFIG_NAME,
                              run_dir=run_dir / "run", cache_dir=run_dir / "cache", transport=opts.transport,
                              reflection_extra={"seed": config.optimizer.seed}, models=opts.models or None,
                              **overrides)


def seed_candidate(task: Task, config: Config, opts: BenchOptions, work: Path) -> dict[str, str]:
    components = select_components(settings_for(task, config, work / "probe", opts))
    return {c.name: c.text for c in components}


# --- best-of-N ---------------------------------------------------------------------------------------

def best_of_n_count(budget: int, n_val: int) -> int:
    """How many rewrites fit: the seed and every rewrite are each scored on the whole val split."""
    return max(0, budget // n_val - 1)


def run_best_of_n(task: Task, config: Config, run_dir: Path, opts: BenchOptions) -> Outcome:
    """Seed + N feedback-free rewrites, each scored on val in order; trajectory = after each candidate."""
    with open_session(settings_for(task, config, run_dir, opts)) as session:
        assert session.llm is not None
        split, budget = session.split, session.budget
        n = best_of_n_count(config.budget.rollouts, len(split.val))
        seed = session.seed_candidate
        reflector = RationaleReflector(llm=session.llm, runlog=session.runlog,
                                       attempts=config.optimizer.reflection_attempts, style="mixed")
        candidates = [seed] + [_rewritten(reflector, seed) for _ in range(n)]
        rejected = [RejectedProposal.model_validate(r) for r in reflector.rejected]
        trajectory = []
        for cand in [c for c in candidates if c is not None]:
            try:
                batch = session.adapter.evaluate(split.val, cand)
            except BudgetExhausted:
                break
            trajectory.append(Point(budget.rollouts, sum(batch.scores) / len(batch.scores), cand,
                                    dict(zip(split.val, batch.scores, strict=True))))
        distinct = len({json.dumps(c, sort_keys=True) for c in candidates[1:] if c is not None})
        return Outcome(trajectory, BudgetSummary.of(budget), rejected, {"n": n, "distinct_rewrites": distinct})


def _rewritten(reflector: RationaleReflector, seed: dict[str, str]) -> dict[str, str] | None:
    """One best-of-N sample: every component rewritten by the reflector's own simplify request (the same
    request, retries and rejection rules as gepa-bot's rewrite proposals), distinct by the LLM's sampling seed."""
    child = {name: (p.text if (p := reflector.simplify(name, text)) else text) for name, text in seed.items()}
    return child if child != seed else None


# --- GEPA arms ---------------------------------------------------------------------------------------

def run_gepa(task: Task, config: Config, run_dir: Path, opts: BenchOptions, *, use_cache: bool = True,
             proposer: str = "gepa_bot", replay_from: Path | None = None) -> Outcome:
    """One engine.optimize run. ``replay_from``: a finished run dir whose LLM replies are replayed, so the
    no-cache run makes the same search without paying for the reflection model again."""
    settings = settings_for(task, config, run_dir, opts, use_cache=use_cache, proposer=proposer)
    replayed = 0
    if replay_from is not None:
        records = list(read_records(replay_from / "run", "llm"))
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        (settings.run_dir / RUN_LOG_NAME).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                                     encoding="utf-8")
        replayed = len(records)
    return outcome_of(engine.optimize(settings), replayed, proposer)


def outcome_of(result: RunResult, replayed: int = 0, proposer: str = "gepa_bot") -> Outcome:
    """A finished gepa run (its result.json) as an arm's outcome."""
    trajectory = sorted((Point(c.discovered_at_rollout, c.val_mean, c.components, val_scores(c))
                         for c in result.candidates), key=lambda t: t.rollouts)
    return Outcome(trajectory, result.budget, result.rejected_proposals,
                   {"accepted": len(result.candidates) - 1, "replay_records": replayed,
                    "reflection_style": result.reflection_style if proposer == "gepa_bot" else "gepa-default"})


def run_arm(method: str, task: Task, config: Config, run_dir: Path, opts: BenchOptions) -> Outcome:
    if method == "best_of_n":
        return run_best_of_n(task, config, run_dir, opts)
    if method == "plain_gepa":
        return run_gepa(task, config, run_dir, opts, proposer="gepa_default")
    if method == "gepa_bot":
        return run_gepa(task, config, run_dir, opts)
    if method == "gepa_bot_nocache":
        return run_gepa(task, config, run_dir, opts, use_cache=False, replay_from=run_dir.parent / "gepa_bot")
    raise ValueError(f"unknown method {method!r}")
