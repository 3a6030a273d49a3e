"""The gepa adapter: a candidate's texts -> prompt files -> the repo's eval suite -> scores + feedback.

Every rollout goes through ``results_for``: cached results where the content-addressed cache has them,
the rest executed in parallel, written to the run log (write-ahead) and then to the cache. The budget is
reserved before anything runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from gepa.core.adapter import EvaluationBatch, GEPAAdapter

from gepa_bot.discovery import Component, render_files
from gepa_bot.evals.cache import EvalCache, candidate_hash
from gepa_bot.evals.executor import Executor
from gepa_bot.evals.suite import EvalSuite, InstanceResult
from gepa_bot.models.modelserver import check_model_servers
from gepa_bot.runlog import RunLog
from gepa_bot.search.budget import Budget
from gepa_bot.search.errorpolicy import ErrorPolicy, EvalErrors

MAX_REFLECTIVE_RECORDS = 8
EXTRA_TRAIN_FAILURES = 4  # cached train failures added to a minibatch's records (no rollout spent)
RETRY_DELAYS_S = (2.0, 8.0, 20.0)  # backoff before each retry of instances that could not be scored


@dataclass
class Split:
    train: list[str]
    val: list[str]

    def split_of(self, instance_id: str) -> str:
        return "val" if instance_id in self._val_set else "train"

    def __post_init__(self) -> None:
        self._val_set = set(self.val)


@dataclass
class SearchStatus:
    """What a progress line shows besides the budget: val scores so far and what happened to proposals."""

    baseline_val: float | None = None
    best_val: float | None = None
    val_passes: int = 0  # candidates scored on the whole val set (the baseline included)
    proposals: int = 0  # children proposed (each then tried on a minibatch)
    rejected_replies: int = 0  # reflection replies refused before any rollout


# One row of the reflective dataset the reflection model reads, with gepa's suggested keys (one has a space).
ReflectiveRecord = TypedDict("ReflectiveRecord", {"Inputs": dict[str, str], "Generated Outputs": str,
                                                  "Feedback": str, "score": float, "trace": Any})


class RepoAdapter(GEPAAdapter[str, InstanceResult, str]):
    """gepa adapter: a candidate's texts -> prompt files -> the repo's eval suite -> scores + feedback.

    DataInst is an instance id (str), the trajectory is the suite's InstanceResult, the rollout output the
    model's text. Proposals come from our reflection strategy (gepa_bot/search/reflection.py), not from here.
    """

    propose_new_texts = None

    def __init__(self, suite: EvalSuite, components: list[Component], split: Split, cache: EvalCache,
                 budget: Budget, runlog: RunLog, executor: Executor,
                 on_progress: Callable[[Budget, SearchStatus], None] | None = None, repeats: int = 1,
                 on_val_scored: Callable[[str], None] | None = None, errors: ErrorPolicy | None = None,
                 retries: int = 2):
        self.suite, self.components, self.split = suite, components, split
        self.errors = errors or ErrorPolicy()
        self.retries, self.retry_delays = retries, RETRY_DELAYS_S
        self.seed_eval_key = candidate_hash(render_files(components, {c.name: c.text for c in components}))
        self.cache, self.budget, self.runlog, self.executor = cache, budget, runlog, executor
        self.on_progress, self.repeats = on_progress, repeats
        self.on_val_scored = on_val_scored  # told the hash of every candidate GEPA scores on the whole val set
        self.extra_train_failures = 0  # see paid_train_failures
        self.seen_results: dict[tuple[str, str], InstanceResult] = {}  # (eval key, id) -> result, cache on or off
        self.status = SearchStatus()

    def evaluate(self, batch: list[str], candidate: dict[str, str],
                 capture_traces: bool = False) -> EvaluationBatch[InstanceResult, str]:
        """gepa's evaluate. Raises EvalErrors (gepa skips the step) when an instance could not be scored, and
        RunStopped once errors stop the run."""
        if self.errors.stop_cause:
            raise self.errors.stopped()
        self.budget.reserve_rollouts(len(batch))
        results = self.results_for(candidate, batch)
        if set(batch) == set(self.split.val):
            self._record_val_pass(sum(results[i].score for i in batch) / len(batch))
            if self.on_val_scored:
                self.on_val_scored(candidate_hash(candidate))
        if self.on_progress:
            self.on_progress(self.budget, self.status)
        ordered = [results[i] for i in batch]
        return EvaluationBatch(outputs=[r.output or "" for r in ordered], scores=[r.score for r in ordered],
                               trajectories=ordered if capture_traces else None)

    def _record_val_pass(self, mean: float) -> None:
        status = self.status
        status.val_passes += 1
        if status.baseline_val is None:
            status.baseline_val = mean
        status.best_val = mean if status.best_val is None else max(status.best_val, mean)

    def results_for(self, candidate: dict[str, str], ids: list[str]) -> dict[str, InstanceResult]:
        """Cached results where we have them; the rest executed (in parallel), logged and cached.

        The cache key hashes the rendered prompt files, not just the optimized texts, so a change to
        front-matter or to a YAML key that is not optimized is never served a stale score.
        """
        started = time.monotonic()
        files = render_files(self.components, candidate)
        eval_key = candidate_hash(files)
        results = self.cache.get_many(eval_key, {i: self.split.split_of(i) for i in ids})
        hits = sum(1 for i in ids if i in results)
        # gepa pads a short epoch with repeated ids, so a minibatch can name an instance twice: run it once
        # (the repeat is neither executed nor a cache hit: rollouts = executed + cache hits + repeats)
        missing = list(dict.fromkeys(i for i in ids if i not in results))
        try:
            if missing:
                results.update(self._execute(candidate, files, eval_key, missing))
        finally:
            self.budget.record_eval(len(missing), hits, time.monotonic() - started,
                                    repeats=len(ids) - hits - len(missing))
        for instance_id in ids:
            self.seen_results[(eval_key, instance_id)] = results[instance_id]
        return results

    def perfect_on_train(self, candidate: dict[str, str]) -> bool:
        """True once this candidate has been scored on every train instance and scored 1 on each.

        GEPA reflects only on a minibatch with a failure in it, so from then on such a candidate can
        only spend rollouts on minibatches it is sure to skip.
        """
        eval_key = candidate_hash(render_files(self.components, candidate))
        seen = [self.seen_results.get((eval_key, instance_id)) for instance_id in self.split.train]
        return all(result is not None and result.score >= 1.0 for result in seen)

    def _execute(self, candidate: dict[str, str], files: dict[str, str], eval_key: str,
                 ids: list[str]) -> dict[str, InstanceResult]:
        """Run ``ids`` (retrying the ones that could not be scored), log and cache the scored ones; raise
        EvalErrors for the rest (RunStopped once they stop the run)."""
        started = time.monotonic()
        fresh = self._run_with_retries(candidate, files, eval_key, ids)
        batch_seconds = round(time.monotonic() - started, 3)
        scored = {i: r for i, r in fresh.items() if not r.failed}
        errors = {i: r for i, r in fresh.items() if r.failed}
        cand_hash = candidate_hash(candidate)
        for instance_id in scored:  # the log first: a kill between the two loses nothing (the log refills the cache)
            self.runlog.write("rollout", candidate=cand_hash, eval_key=eval_key, split=self.split.split_of(instance_id),
                              fingerprint=self.cache.fingerprint, batch_size=len(ids), batch_seconds=batch_seconds,
                              **scored[instance_id].to_json())
        self.cache.put_many([(eval_key, self.split.split_of(i), r) for i, r in scored.items()])
        if errors:
            self.budget.check_time()  # evals the wall-time cap cut short: a budget stop, not errors
        baseline = eval_key == self.seed_eval_key and all(self.split.split_of(i) == "val" for i in ids)
        self.errors.record_batch(len(ids), errors, baseline=baseline)
        if errors:  # (the caller sees which; when they stop the run, gepa's stopper and the engine end it)
            if self.errors.stop_cause:
                self.budget.stop(f"stopped by errors: {self.errors.stop_cause}")
            raise EvalErrors(errors)
        return fresh

    def _run_with_retries(self, candidate: dict[str, str], files: dict[str, str], eval_key: str,
                          ids: list[str]) -> dict[str, InstanceResult]:
        """One run of ``ids``, then up to ``retries`` more of those that could not be scored, with backoff; every
        error is logged (never cached). The embedded model server is checked before each run."""
        results: dict[str, InstanceResult] = {}
        pending = ids
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.retry_delays[min(attempt, len(self.retry_delays)) - 1]
                left = self.budget.remaining_seconds()
                if left is not None and left <= delay:  # no time for a retry under the wall-time cap
                    break
                time.sleep(delay)
            self._check_model_server()
            runs = [self.executor.evaluate(self.suite, files, candidate, pending) for _ in range(self.repeats)]
            results.update({i: combine_repeats([run[i] for run in runs]) for i in pending})
            pending = [i for i in pending if results[i].failed]
            for instance_id in pending:
                self.runlog.write("eval_error", candidate=candidate_hash(candidate), eval_key=eval_key,
                                  split=self.split.split_of(instance_id), attempt=attempt + 1,
                                  retries=self.retries, id=instance_id, message=results[instance_id].feedback)
            if not pending:
                break
        return results

    def _check_model_server(self) -> None:
        """A dead embedded server is restarted once; after that the run stops."""
        cause = check_model_servers()
        if cause is not None:
            self.errors.stop_now(cause, "the embedded model crashed (docs/faults.md: rebuild it with "
                                        "scripts/install-local-model, or set a hosted model); then run the same "
                                        "command again to resume")
            self._stop_if_decided()

    def _stop_if_decided(self) -> None:
        if self.errors.stop_cause:
            self.budget.stop(f"stopped by errors: {self.errors.stop_cause}")
            raise self.errors.stopped()

    def make_reflective_dataset(self, candidate: dict[str, str], eval_batch: EvaluationBatch,
                                components_to_update: list[str]) -> dict[str, list[ReflectiveRecord]]:
        results: list[InstanceResult] = list(eval_batch.trajectories or [])
        results += self.paid_train_failures(candidate, {r.id for r in results})
        results = sorted(results, key=lambda r: r.score)[:MAX_REFLECTIVE_RECORDS]
        records: list[ReflectiveRecord] = [
            {"Inputs": {"instance_id": r.id}, "Generated Outputs": r.output or "", "Feedback": r.feedback or "(no feedback)",
             "score": r.score, "trace": r.trace} for r in results]
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
        cached = self.cache.get_many(eval_key, {i: "train" for i in self.split.train if i not in exclude})
        failures = [cached[i] for i in self.split.train if i in cached and cached[i].score < 1.0]
        return failures[:self.extra_train_failures]


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
    errors = [r for r in results if r.failed]
    if errors:  # one repeat that could not be scored makes the mean meaningless: the instance errs
        return errors[0]
    return InstanceResult(id=worst.id, score=mean, feedback=note + worst.feedback, trace=trace, output=worst.output)
