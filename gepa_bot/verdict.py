"""Is the run worth a pull request? Baseline vs best on the validation set: gain, measured noise, sign test."""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from gepa_bot.result import DEFAULT_MIN_CONFIDENCE, Candidate, RunResult
from gepa_bot.significance import PairedTest, format_p, paired_test, val_scores


class Verdict(BaseModel):
    """Baseline vs best on the validation set, whether that is worth a PR, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline: float
    best: float
    gain: float
    improved: bool
    noise: float
    needed: float
    n_val: int
    beats: bool
    p_value: float
    improved_instances: int
    regressed_instances: int
    min_confidence: float
    significant: bool
    test: str
    reason: str
    required: str


def verdict(result: RunResult) -> Verdict:
    """Baseline vs best on the validation set, and whether that is worth a PR (``improved``) and why (``reason``).

    A PR needs a candidate other than the baseline whose gain exceeds ``min_improvement`` plus twice the measured
    noise, and that the exact sign test on the per-instance val scores finds significant at ``min_confidence``
    (result.json's; 0 disables the test).
    """
    baseline, best = result.baseline, result.best
    gain = best.val_mean - baseline.val_mean
    noise = measured_noise(baseline, best)
    min_improvement = result.min_improvement
    needed = min_improvement + 2 * noise
    test, min_confidence, significant = significance(result, baseline, best)
    beats = result.best_candidate != result.baseline_candidate and gain > 0
    improved = beats and clears(gain, needed, test, min_confidence)
    if not beats:
        reason = "no candidate scores higher than the current prompts on validation"
    elif gain <= needed:
        reason = (f"gain {gain:+.4f} is not above the {needed:.4f} needed (output.min_improvement: {min_improvement:g}, "
                  f"plus twice the measured noise {noise:.4f})")
    else:
        reason = significance_reason(test, min_confidence, significant)
    return Verdict(baseline=baseline.val_mean, best=best.val_mean, gain=gain, improved=improved,
                   noise=noise, needed=needed, n_val=len(result.split.val), beats=beats,
                   p_value=test.p_value, improved_instances=test.improved, regressed_instances=test.regressed,
                   min_confidence=min_confidence, significant=significant, test=test.summary(), reason=reason,
                   required=f"`output.min_confidence: {min_confidence:g}` requires p <= {p_limit(min_confidence)}"
                   if min_confidence > 0 else "not required (`output.min_confidence: 0`)")


def significance(result: RunResult, baseline: Candidate, best: Candidate) -> tuple[PairedTest, float, bool]:
    """The sign test of ``best`` against ``baseline``, the min_confidence in force, and whether the test passes it."""
    min_confidence = result.min_confidence
    test = paired_test(val_scores(baseline), val_scores(best), level=min_confidence or DEFAULT_MIN_CONFIDENCE)
    return test, min_confidence, passes(test, min_confidence)


def passes(test: PairedTest, min_confidence: float) -> bool:
    """Whether the sign test is significant at ``min_confidence`` (0 disables the test)."""
    return min_confidence <= 0 or test.p_value <= 1 - min_confidence + 1e-12


def opens_pr(baseline: Mapping[str, float], best: Mapping[str, float], min_improvement: float,
             min_confidence: float) -> bool:
    """The PR gate on per-instance val scores alone (instance id -> score; no eval repeats, so no measured noise):
    a mean gain above ``min_improvement`` that the sign test finds significant. The bench asks it of every arm's
    pick; :func:`verdict` applies the same gate to a run's result."""
    gain = sum(best.values()) / max(len(best), 1) - sum(baseline.values()) / max(len(baseline), 1)
    test = paired_test(baseline, best, level=min_confidence or DEFAULT_MIN_CONFIDENCE)
    return clears(gain, min_improvement, test, min_confidence)


def clears(gain: float, needed: float, test: PairedTest, min_confidence: float) -> bool:
    """The gate itself: a positive gain above ``needed`` that the sign test finds significant."""
    return gain > 0 and gain > needed and passes(test, min_confidence)


def significance_reason(test: PairedTest, min_confidence: float, significant: bool) -> str:
    """Why the sign test lets a PR through or not, e.g. ``not significant: p = 0.1875 > 0.10 (...)``."""
    counts = f"{test.improved} improved, {test.regressed} regressed on {test.n} val instances"
    if min_confidence <= 0:
        return f"significance test disabled (output.min_confidence: 0): p {format_p(test.p_value)} ({counts})"
    limit = p_limit(min_confidence)
    if significant:
        return f"significant: p {format_p(test.p_value)} <= {limit} ({counts})"
    return f"not significant: p {format_p(test.p_value)} > {limit} ({counts}; output.min_confidence: {min_confidence:g})"


def p_limit(min_confidence: float) -> str:
    """The largest p-value ``min_confidence`` accepts, as text: 0.9 -> ``0.10``, 0.999 -> ``0.001``."""
    alpha = 1 - min_confidence
    return f"{alpha:.2f}" if abs(alpha * 100 - round(alpha * 100)) < 1e-9 else f"{alpha:.4g}"


def measured_noise(baseline: Candidate, best: Candidate) -> float:
    """The standard error of the val-mean difference, from the per-instance spread over eval repeats.

    0 with ``optimizer.eval_repeats: 1`` (nothing measured). A gain must exceed min_improvement plus twice
    this, so a non-deterministic eval cannot flip the PR open and closed from run to run.
    """
    ids = [i for i in best.val if i in baseline.val]
    if not ids:
        return 0.0
    variance = sum(_stdev(baseline, i) ** 2 + _stdev(best, i) ** 2 for i in ids)
    return math.sqrt(variance) / len(ids)


def _stdev(candidate: Candidate, instance_id: str) -> float:
    entry = candidate.val[instance_id]
    return entry.stdev if entry is not None else 0.0
