"""Strategies over a run session: the GEPA search (``optimize``) and a plain val pass (``evaluate_current``).

gepa owns the search (reflective mutation, Pareto selection, merge). The session (gepa_bot/search/session.py)
owns everything that touches the outside world: the suite with its cache and run log, the hard budget,
the LLM seam with replay. This module wires gepa to it and turns gepa's result into result.json.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO, cast

import gepa
from gepa.core.callbacks import GEPACallback
from gepa.strategies.acceptance import ImprovementOrEqualAcceptance, StrictImprovementAcceptance
from gepa.utils.stop_condition import StopperProtocol

from gepa_bot.config import Config
from gepa_bot.discovery import Component, render_files
from gepa_bot.errors import RunStopped, UserError, describe_error
from gepa_bot.evals.cache import candidate_hash
from gepa_bot.models.completion import is_loopback
from gepa_bot.result import (
    NOTHING_TO_REFLECT_ON,
    REFLECTION_STALLED,
    RESULT_NAME,
    STALLED_AFTER,
    BudgetSummary,
    Candidate,
    ComponentInfo,
    Evaluation,
    InstanceScore,
    Models,
    RejectedProposal,
    RunResult,
    SearchError,
    Split,
)
from gepa_bot.search.adapter import EXTRA_TRAIN_FAILURES
from gepa_bot.search.budget import BudgetExhausted
from gepa_bot.search.errorpolicy import EvalErrors
from gepa_bot.search.feedback_rules import shape_changed
from gepa_bot.search.reflection import RationaleReflector, edit_response_format
from gepa_bot.search.selection import parsimony_slack, proposable, val_best
from gepa_bot.search.session import RunSession, RunSettings, open_session
from gepa_bot.search.trim import TrimOutcome, TrimStep, removable_sentences, trials_wanted, trim


def optimize(settings: RunSettings) -> RunResult:
    """Run GEPA on the repo's prompts; returns (and writes) the result (result.json)."""
    with open_session(settings) as session:
        return run_search(session)


def evaluate_current(settings: RunSettings) -> Evaluation:
    """Score the prompts as they are on the validation set (cached; no GEPA, no reflection model)."""
    with open_session(settings, with_reflection=False, max_rollouts=lambda split: len(split.val)) as session:
        val = session.split.val
        session.budget.reserve_rollouts(len(val))
        try:
            results = session.adapter.results_for(session.seed_candidate, val)
        except EvalErrors:
            raise session.adapter.errors.stopped() from None
    scores = [results[i].score for i in val]
    return Evaluation(val_mean=sum(scores) / len(scores), val={i: instance_score(results[i]) for i in val},
                      budget=BudgetSummary.of(session.budget))


def run_search(session: RunSession) -> RunResult:
    """gepa.optimize over the session's adapter, budget and reflection model; the result (written to result.json)."""
    settings, config, runlog = session.settings, session.config, session.runlog
    reflection = session.reflection_model or {}
    assert session.llm is not None, "a search session opens the reflection model"
    runlog.write("start", repo=str(settings.repo), components=[c.name for c in session.components],
                 train=session.split.train, val=session.split.val, budget=config.budget.model_dump(),
                 models=config.models.model_dump(), seed=config.optimizer.seed, fingerprint=session.cache.fingerprint,
                 restored_rollouts=session.restored_rollouts)
    style = reflection_style(config.optimizer.reflection_style, config.models.reflection, reflection.get("api_base"))
    reflector = RationaleReflector(llm=session.llm, runlog=runlog, attempts=config.optimizer.reflection_attempts,
                                   style=style, response_format=functools.partial(
                                       edit_response_format, reflection["model"], reflection.get("api_base")),
                                   status=session.adapter.status, originals=session.seed_candidate,
                                   warm_start_rewrites=warm_start_rewrites(config, style, len(session.split.val)))
    session.adapter.on_val_scored = reflector.accepted.add
    session.adapter.extra_train_failures = EXTRA_TRAIN_FAILURES if settings.proposer == "gepa_bot" else 0
    search_errors = SearchErrors()
    try:
        with _fresh_gepa_log(settings.run_dir).open("w", encoding="utf-8") as gepa_log:
            gepa_result = gepa.optimize(
                seed_candidate=session.seed_candidate, trainset=session.split.train, valset=session.split.val,
                adapter=session.adapter, **proposer_arguments(session, reflector),
                candidate_selection_strategy=config.optimizer.candidate_selection,
                reflection_minibatch_size=config.optimizer.minibatch_size,
                acceptance_criterion=ValGate(acceptance(config.optimizer.acceptance, style, settings.proposer),
                                             reflector.ungated),
                use_merge=_use_merge(config, session.components),
                max_merge_invocations=config.optimizer.max_merge_invocations,
                stop_callbacks=[search_stopper(session, reflector)], logger=_GepaLog(gepa_log),
                callbacks=[cast(GEPACallback, search_errors)],  # gepa calls only the hooks a callback defines
                seed=config.optimizer.seed, raise_on_exception=False,
                cache_evaluation=False, display_progress_bar=False, track_best_outputs=False)
    except BudgetExhausted as exc:  # raised outside gepa's iteration loop: the baseline itself did not fit
        raise UserError(f"{settings.config_path}: field 'budget': ran out while scoring the baseline ({exc})",
                        fix="raise budget.wall_time_minutes / budget.max_llm_cost_usd, or lower split.max_val") from None
    except (EvalErrors, RunStopped):  # the baseline (outside gepa's iteration loop) could not be scored
        stop_if_errors_decided(session)
        raise
    stop_if_errors_decided(session)
    result = build_result(gepa_result, session, reflector)
    if trimming(session):  # trim what would be proposed (it may be longer than the shortest within the slack)
        trimmed = trim_proposal(gepa_result, session, result.best_candidate)
        stop_if_errors_decided(session)
        if trimmed.steps:
            result = build_result(gepa_result, session, reflector, trimmed)
    result.search_errors = [SearchError.model_validate(e)
                            for e in reflector.errors + search_errors.errors]  # gepa swallows both kinds
    for error in search_errors.errors:
        runlog.write("search_error", **error)  # (the reflector logs its own as they happen)
    result.write(settings.run_dir)
    runlog.write("end", best=result.best_candidate, budget=result.budget.model_dump())
    return result


def stop_if_errors_decided(session: RunSession) -> None:
    """Raise RunStopped (exit code 3) when errors stopped the search: no result.json is written for it (a stale one
    is removed), so nothing can publish a run that errors cut short; the run log keeps every scored result."""
    errors = session.adapter.errors
    if errors.stop_cause is None:
        return
    (session.settings.run_dir / RESULT_NAME).unlink(missing_ok=True)
    session.runlog.write("stopped", cause=errors.stop_cause, last_error=errors.last_error, errors=errors.errors,
                         attempted=errors.attempted, budget=session.budget.to_json())
    raise errors.stopped()


def trimming(session: RunSession) -> bool:
    """Trimming is gepa-bot's step; the plain-gepa bench arm gets what gepa alone does."""
    return session.config.optimizer.trim and session.settings.proposer == "gepa_bot"


def search_stopper(session: RunSession, reflector: RationaleReflector | None = None) -> StopperProtocol:
    """gepa's stop callback: the budget's caps, with rollouts held back for trimming the current val-best;
    also (gepa-bot's proposer only) once no candidate fails a train instance, or once the reflector proposed nothing
    new STALLED_AFTER times in a row (more of the budget would buy the same refusals)."""
    budget, seed, n_val = session.budget, session.seed_candidate, len(session.split.val)

    def should_stop(gepa_state: Any) -> bool:
        if trimming(session):
            means = [sum(s.values()) / len(s) if s else 0.0 for s in gepa_state.prog_candidate_val_subscores]
            best = val_best([{"val_mean": m, "components": c} for m, c in zip(means, gepa_state.program_candidates,
                                                                               strict=True)], parsimony_slack(session))
            budget.held_back = n_val * trials_wanted(seed, gepa_state.program_candidates[best], n_val,
                                                     budget.max_rollouts)
        if session.settings.proposer == "gepa_bot" and all(
                session.adapter.perfect_on_train(candidate) for candidate in gepa_state.program_candidates):
            budget.stop(NOTHING_TO_REFLECT_ON)  # plain gepa (the bench arm) would go on skipping minibatches
        if session.settings.proposer == "gepa_bot" and reflector is not None \
                and reflector.barren_streak >= STALLED_AFTER:
            budget.stop(REFLECTION_STALLED)
        return budget.should_stop()

    return should_stop


def trim_proposal(gepa_result: Any, session: RunSession, best: int) -> TrimOutcome:
    """Sentences the search added to candidate ``best`` (the one a PR would propose), deleted one at a time on the
    rollouts it left."""
    budget, adapter, val, seed = session.budget, session.adapter, session.split.val, session.seed_candidate
    budget.release_held_back()
    components = dict(gepa_result.candidates[best])
    if not trials_wanted(seed, components, len(val), budget.max_rollouts):
        return TrimOutcome()
    best_scores = {val[k]: score for k, score in gepa_result.val_subscores[best].items()}

    def score(child: dict[str, str], ids: list[str]) -> dict[str, float] | None:
        ids = ids[:budget.rollouts_left()]
        try:
            return dict(zip(ids, adapter.evaluate(ids, child).scores, strict=True)) if ids else None
        except (BudgetExhausted, EvalErrors, RunStopped):  # (a stop is raised again after trimming)
            return None

    outcome = trim(components, best_scores, seed, len(removable_sentences(seed, components)), score,
                   rollouts_left=budget.rollouts_left,
                   batch=session.config.optimizer.workers, rollouts_used=lambda: budget.rollouts)
    for step in outcome.steps:
        session.runlog.write("trim", parent=candidate_hash(step.parent), child=candidate_hash(step.child),
                             component=step.removed.component, removed=step.removed.text, val_mean=step.val_mean,
                             scored=len(step.scores), kept=step.kept)
    return outcome


def _fresh_gepa_log(run_dir: Path) -> Path:
    """gepa.log of this run; the previous run's (a resumed one) is kept as gepa.log.1, older ones dropped."""
    path = run_dir / "gepa.log"
    if path.exists():
        path.replace(run_dir / "gepa.log.1")
    return path


def proposer_arguments(session: RunSession, reflector: RationaleReflector) -> dict[str, Any]:
    """Our reflection strategy, or (the plain-gepa bench arm) gepa's own prompt through our LLM seam."""
    llm = session.llm
    assert llm is not None
    if session.settings.proposer == "gepa_default":
        return {"reflection_lm": lambda prompt: llm.complete([{"role": "user", "content": prompt}],
                                                             purpose="reflect:gepa-default").text}
    return {"reflection_strategy": reflector}


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
    from gepa_bot.models.localmodel import local_model

    return "mixed" if local_model(model) is not None or is_loopback(api_base) else "rewrite"


def acceptance(configured: str, style: str, proposer: str) -> Literal["strict_improvement", "improvement_or_equal"]:
    """gepa's acceptance criterion. Plain gepa (the bench arm) keeps gepa's default, strict improvement."""
    if proposer == "gepa_default":
        return "strict_improvement"
    if configured == "strict_improvement":
        return "strict_improvement"
    if configured == "improvement_or_equal":
        return "improvement_or_equal"
    return "improvement_or_equal" if style in ("edit", "mixed") else "strict_improvement"


WARM_START_SHARE = 0.4  # of the rollout budget, for auto warm-start rewrites
MAX_AUTO_WARM_START = 6


def warm_start_rewrites(config: Config, style: str, n_val: int) -> int:
    """How many proposals, at the start, are plain rewrites scored on the whole val set (mixed style only).

    Measured (bench/results, tickets): a best-of-N search over plain rewrites, each scored on all of val, beat
    minibatch-gated steps with a 1.5B reflector; a gate of 3 instances lets lucky edits through and turns down
    good rewrites. auto spends about 40% of the budget that way (one rewrite costs |val| plus two minibatches),
    then the search goes on with feedback from the best of them.
    """
    configured = config.optimizer.warm_start_rewrites
    if style != "mixed":
        return 0
    if configured != "auto":
        return configured
    per_rewrite = n_val + 2 * config.optimizer.minibatch_size
    return max(1, min(MAX_AUTO_WARM_START, round(WARM_START_SHARE * config.budget.rollouts / per_rewrite)))


@dataclass
class ValGate:
    """gepa's acceptance criterion: gepa's own minibatch rule as configured, except for warm-start rewrites
    (candidate hashes in ``ungated``), which go to the val set when they score at least as well as their parent on
    the minibatch (a tie included; a rewrite that lost minibatch instances is not worth a val pass).

    ``improvement_or_equal`` sends a tie at 0 (parent and child both score 0 on the minibatch) to the val set only
    when the child's answers changed form (feedback_rules.shape_changed: length class, lines, number/JSON/text on
    at least half the minibatch): two all-wrong candidates whose answers look alike cannot be told apart, and
    scoring such a child on val spends the budget on nothing."""

    criterion: Literal["strict_improvement", "improvement_or_equal"]
    ungated: set[str]

    def __post_init__(self) -> None:
        self.rule = StrictImprovementAcceptance() if self.criterion == "strict_improvement" else \
            ImprovementOrEqualAcceptance()

    def should_accept(self, proposal: Any, state: Any) -> bool:
        if candidate_hash(proposal.candidate) in self.ungated:
            return sum(proposal.subsample_scores_after or []) >= sum(proposal.subsample_scores_before or [])
        if self.criterion == "improvement_or_equal" and self._zero_tie(proposal):
            return shape_changed(_outputs(proposal.eval_before), _outputs(proposal.eval_after))
        return self.rule.should_accept(proposal, state)

    def reject_reason(self, proposal: Any, state: Any) -> str:
        if self.criterion == "improvement_or_equal" and self._zero_tie(proposal):
            return "tie at 0 on the minibatch and the answers did not change form: not scored on val"
        return (f"minibatch score {sum(proposal.subsample_scores_after or [])} not better than "
                f"{sum(proposal.subsample_scores_before or [])}")

    @staticmethod
    def _zero_tie(proposal: Any) -> bool:
        return not any(proposal.subsample_scores_before or []) and not any(proposal.subsample_scores_after or [])


def _outputs(evaluation: Any) -> list[Any]:
    return list(getattr(evaluation, "outputs", None) or [])


@dataclass
class SearchErrors:
    """gepa callback: exceptions inside the search (gepa logs them and goes on); budget stops are not errors."""

    errors: list[dict[str, Any]] = field(default_factory=list)

    def on_error(self, event: dict[str, Any]) -> None:
        exc = event["exception"]
        if isinstance(exc, BudgetExhausted | EvalErrors | RunStopped):  # a skipped step or a stop, not a bug
            return
        self.errors.append(describe_error(f"search iteration {event['iteration']}", exc))


class _GepaLog:
    """gepa's logger protocol, written to an open text file in the run dir."""

    def __init__(self, handle: TextIO):
        self.handle = handle

    def log(self, message: str) -> None:
        self.handle.write(message.rstrip() + "\n")
        self.handle.flush()


def _use_merge(config: Config, components: list[Component]) -> bool:
    merge = config.optimizer.merge
    return len(components) > 1 if merge == "auto" else bool(merge)


def pareto_front(gepa_result: Any) -> list[int]:
    """Candidates best on at least one val instance that some candidate solves: a tie at 0 on an instance no one
    gets right makes nobody "best" there (gepa's own front counts it)."""
    scores = gepa_result.val_subscores
    return sorted({idx for instance, ids in gepa_result.per_val_instance_best_candidates.items()
                   if any(scores[i].get(instance, 0) > 0 for i in ids) for idx in ids})


def build_result(gepa_result: Any, session: RunSession, reflector: RationaleReflector,
                 trimmed: TrimOutcome | None = None) -> RunResult:
    """Everything the report and the PR need (result.json)."""
    components, split, budget, settings = session.components, session.split, session.budget, session.settings
    front = pareto_front(gepa_result)
    candidates = []
    for index, texts in enumerate(gepa_result.candidates):
        cand_hash = candidate_hash(texts)
        eval_key = candidate_hash(render_files(components, texts))
        parents = [p for p in gepa_result.parents[index] if p is not None]
        val_results = {split.val[k]: session.adapter.seen_results.get((eval_key, split.val[k]))
                       for k in gepa_result.val_subscores[index]}
        candidates.append(Candidate(
            index=index, hash=cand_hash, components=texts, parents=parents,
            origin="seed" if index == 0 else ("merge" if len(parents) > 1 else "reflection"),
            rationale=reflector.rationales.get(cand_hash, {}),
            motivated_by=reflector.motivations.get(cand_hash, {}), move=reflector.kinds.get(cand_hash, {}),
            val_mean=gepa_result.val_aggregate_scores[index],
            val=val_table(val_results),
            discovered_at_rollout=gepa_result.discovery_eval_counts[index],
        ))
    candidates += trimmed_candidates(trimmed or TrimOutcome(), candidates, session)
    best = val_best([{"val_mean": c.val_mean, "components": c.components} for c in candidates], parsimony_slack(session))
    result = RunResult(
        components=[ComponentInfo(name=c.name, path=c.path, kind=c.kind, key=c.key) for c in components],
        split=Split(train=split.train, val=split.val),
        candidates=candidates, pareto_front=front, best_candidate=best, baseline_candidate=0,
        best_files=render_files(components, candidates[best].components),
        rejected_proposals=[RejectedProposal.model_validate(r) for r in reflector.rejected],
        reflection_style=reflector.style,
        eval_repeats=settings.config.optimizer.eval_repeats,
        budget=BudgetSummary.of(budget),
        models=Models.model_validate(settings.config.models.model_dump()),
        seed=settings.config.optimizer.seed,
        min_improvement=settings.config.output.min_improvement,
        min_confidence=settings.config.output.min_confidence,
        variants=settings.config.output.variants,
    )
    proposed = proposable(result, parsimony_slack(session))
    return result.model_copy(update={"best_candidate": proposed,
                                     "best_files": render_files(components, candidates[proposed].components)})


def instance_score(r: Any) -> InstanceScore:
    """One val instance's result: score, feedback, failed, and the spread over repeats."""
    stdev = (r.trace or {}).get("stdev", 0.0) if isinstance(r.trace, dict) else 0.0
    return InstanceScore(score=r.score, feedback=r.feedback, failed=r.failed, stdev=stdev or 0.0)


def val_table(results: dict[str, Any]) -> dict[str, InstanceScore | None]:
    """Per val instance: score, feedback, failed, and the spread over repeats (None: not scored)."""
    return {i: instance_score(r) if r else None for i, r in results.items()}


def trim_rationale(step: TrimStep) -> str:
    """Why a sentence went, and how much of the val set showed it."""
    shown = ("the validation score does not drop without it" if step.complete else
             f"without it the prompt already reaches its parent's validation total on {len(step.scores)} of "
             f"{step.n_val} instances (scored best-first; the rest can only add)")
    return f"Removed {step.removed.text!r}: {shown}, and a shorter prompt is less to review and to pay for on every call."


def trimmed_candidates(trimmed: TrimOutcome, searched: list[Candidate], session: RunSession) -> list[Candidate]:
    """The kept deletions as result candidates (origin ``trim``), each the child of the one before."""
    index_of = {c.hash: c.index for c in searched}
    out: list[Candidate] = []
    for step in trimmed.kept:
        cand_hash = candidate_hash(step.child)
        eval_key = candidate_hash(render_files(session.components, step.child))
        val = {i: session.adapter.seen_results.get((eval_key, i)) for i in session.split.val}
        index = len(searched) + len(out)
        out.append(Candidate(
            index=index, hash=cand_hash, components=step.child, parents=[index_of[candidate_hash(step.parent)]],
            origin="trim",
            rationale={step.removed.component: trim_rationale(step)},
            val_mean=step.val_mean,
            val_scored=len(step.scores),
            val=val_table(val),
            discovered_at_rollout=step.rollouts_after,
        ))
        index_of[cand_hash] = index
    return out
