"""Is the best candidate really better than the baseline? A paired test on the per-instance val scores.

Both prompts are scored on the same val instances, so the test looks at each instance's pair of scores.
Instances where the two score the same (ties) carry no evidence either way and are left out. On the others
the candidate either wins or loses; if it were no better than the baseline, a win would be a coin toss. The
one-sided p-value is the chance of at least that many wins out of ``wins + losses`` fair tosses: the exact
sign test. For 0/1 scores this is the exact McNemar test on the discordant pairs (instances that flipped
0 -> 1 vs 1 -> 0). It is exact for any number of instances (no normal approximation, no scipy).

For fractional scores the sign test ignores how much each instance moved, so a seeded (deterministic)
paired bootstrap interval of the mean difference is given as well, for the reader: it does not gate the PR.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gepa_bot.result import Candidate

TIE_TOLERANCE = 1e-9  # scores this close count as a tie (means over eval repeats are floats)
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class PairedTest:
    """The sign test of a candidate against the baseline on the val instances both were scored on."""

    improved: int  # instances where the candidate scores higher
    regressed: int  # instances where it scores lower
    ties: int
    p_value: float  # one-sided: the chance of at least ``improved`` wins if the candidate were no better
    binary: bool  # all scores are 0 or 1 (the test is then the exact McNemar test)
    interval: tuple[float, float] | None = None  # bootstrap interval of the mean difference (fractional scores)
    level: float = 0.0  # the interval's confidence level

    @property
    def n(self) -> int:
        """Paired instances (ties included)."""
        return self.improved + self.regressed + self.ties

    def summary(self) -> str:
        """One line for the report: counts, the test and its p-value."""
        line = (f"{self.improved} instance{'s' if self.improved != 1 else ''} improved, {self.regressed} regressed, "
                f"exact sign test p {format_p(self.p_value)} (one-sided)")
        if self.interval is not None:
            low, high = self.interval
            line += (f"; paired bootstrap {format_level(self.level)} interval of the mean gain: "
                     f"{low * 100:+.1f} to {high * 100:+.1f} pts")
        return line


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided exact sign test: P(X >= wins) for X ~ Binomial(wins + losses, 1/2); 1.0 with no pairs."""
    if wins < 0 or losses < 0:
        raise ValueError("wins and losses must not be negative")
    n = wins + losses
    if n == 0:
        return 1.0
    return float(Fraction(sum(math.comb(n, k) for k in range(wins, n + 1)), 2 ** n))


def paired_test(baseline: Mapping[str, float], candidate: Mapping[str, float], level: float = 0.9) -> PairedTest:
    """Sign test of ``candidate`` against ``baseline`` on the ids both score (instance id -> score).

    ``level`` is the confidence level of the bootstrap interval, computed only for fractional scores.
    """
    ids = sorted(set(baseline) & set(candidate))
    diffs = tuple(candidate[i] - baseline[i] for i in ids)
    improved = sum(1 for d in diffs if d > TIE_TOLERANCE)
    regressed = sum(1 for d in diffs if d < -TIE_TOLERANCE)
    binary = all(s in (0.0, 1.0) for i in ids for s in (baseline[i], candidate[i]))
    interval = None if binary or not diffs else bootstrap_interval(diffs, level)
    return PairedTest(improved, regressed, len(ids) - improved - regressed, sign_test_p(improved, regressed),
                      binary, interval, level if interval is not None else 0.0)


@lru_cache(maxsize=16)
def bootstrap_interval(diffs: tuple[float, ...], level: float, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences: seeded, so the same input gives the same
    interval on every machine and every call."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng, n = random.Random(seed), len(diffs)
    means = sorted(math.fsum(rng.choices(diffs, k=n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    return means[int(math.floor(tail * (resamples - 1)))], means[int(math.ceil((1 - tail) * (resamples - 1)))]


def val_scores(candidate: Candidate) -> dict[str, float]:
    """A result candidate's val scores (instance id -> score), leaving out instances it was not scored on."""
    return {i: entry.score for i, entry in candidate.val.items() if entry is not None}


def format_p(p: float) -> str:
    """``= 0.0195`` style, or ``< 0.0001`` for tiny values (the sign is part of the text)."""
    return "< 0.0001" if p < 0.0001 else f"= {p:.4f}"


def format_level(level: float) -> str:
    """A confidence level as a percentage: ``90%``, ``99.5%``."""
    return f"{round(level * 100, 4):g}%"
