"""Errors are not scores: what an eval error or an unreachable model does to a run.

An instance that could not be scored (the eval said so, crashed, hung, printed garbage, or its model was
unreachable) is retried a few times with backoff. One that still errors is not scored: the GEPA step that asked
for it is skipped (:class:`EvalErrors`), nothing about it is cached or shown to the reflection model. Errors in
the baseline, errors above ``eval.max_error_rate`` of the instances run, or a reflection model that fails
``MAX_LLM_FAILURES`` calls in a row stop the run (:class:`RunStopped`, exit code 3) with a one-line cause. Every
result scored before the stop is in the run log and the cache, so the same command resumes without paying twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gepa_bot.errors import RunStopped
from gepa_bot.evals.suite import InstanceResult
from gepa_bot.text import one_line

MAX_LLM_FAILURES = 3  # reflection calls in a row that failed for good (each after its own retries)

EVAL_FIX = ("run `gepa-bot check` and fix the eval or its model until it scores by hand (docs/faults.md); then run "
            "the same command again: it resumes, and nothing already scored is paid twice")
LLM_FIX = ("check models.reflection, its API key and that it is reachable (`gepa-bot check`); then run the same "
           "command again: it resumes, and nothing already scored is paid twice")


class EvalErrors(Exception):
    """Instances of one batch that could not be scored, after retries: the GEPA step that asked is skipped."""

    def __init__(self, errors: Mapping[str, InstanceResult]):
        self.errors = dict(errors)
        first = next(iter(self.errors.values()))
        super().__init__(f"{len(self.errors)} instance(s) could not be scored (first: {first.id}: "
                         f"{one_line(first.feedback, 300)})")


@dataclass
class ErrorPolicy:
    """Counts errors over a run and decides when they stop it (``stop_cause`` set: stop)."""

    max_error_rate: float = 0.05
    attempted: int = 0  # instances run (each counted once per batch, retries not counted again)
    errors: int = 0  # instances still erroring after their retries
    last_error: str = ""
    llm_failures_in_a_row: int = 0
    stop_cause: str | None = None
    fix: str = EVAL_FIX

    def record_batch(self, attempted: int, errors: Mapping[str, InstanceResult], baseline: bool) -> None:
        """One executed batch: ``attempted`` instances of which ``errors`` still erred after retries."""
        self.attempted += attempted
        if not errors:
            return
        self.errors += len(errors)
        self.last_error = one_line(next(iter(errors.values())).feedback, 300)
        if baseline:
            self._stop(f"{len(errors)} of {attempted} instances of the current prompts could not be scored, so there "
                       "is no baseline to compare with", EVAL_FIX)
        elif self.errors > max(1.0, self.max_error_rate * self.attempted):
            self._stop(f"{self.errors} eval errors in {self.attempted} instances run (more than "
                       f"eval.max_error_rate = {self.max_error_rate:g})", EVAL_FIX)

    def record_llm(self, failure: str | None) -> None:
        """One reflection call: ``failure`` is its error message, None when it answered."""
        if failure is None:
            self.llm_failures_in_a_row = 0
            return
        self.llm_failures_in_a_row += 1
        self.last_error = one_line(failure, 300)
        if self.llm_failures_in_a_row >= MAX_LLM_FAILURES:
            self._stop(f"the reflection model failed {self.llm_failures_in_a_row} calls in a row", LLM_FIX)

    def stop_now(self, cause: str, fix: str) -> None:
        """Stop for a cause found elsewhere (e.g. the embedded model server died for good)."""
        self._stop(cause, fix)

    def _stop(self, cause: str, fix: str) -> None:
        if self.stop_cause is None:
            self.stop_cause, self.fix = cause, fix

    def stopped(self) -> RunStopped:
        """The exception that ends a stopped run: one line with the cause, the last error and a Fix."""
        assert self.stop_cause is not None
        last = f"; last error: {self.last_error}" if self.last_error else ""
        return RunStopped(f"run stopped: {self.stop_cause}{last}", fix=self.fix)
