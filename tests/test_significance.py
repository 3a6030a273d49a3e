"""The exact sign test (McNemar on 0/1 scores) and the seeded bootstrap interval, against known values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gepa_bot.significance import (
    bootstrap_interval,
    format_level,
    format_p,
    paired_test,
    sign_test_p,
    val_scores,
)


@pytest.mark.parametrize("wins, losses, p", [
    (8, 1, 10 / 512),  # (C(9,8) + C(9,9)) / 2^9
    (5, 0, 1 / 32),
    (0, 0, 1.0),  # nothing discordant: no evidence
    (0, 5, 1.0),
    (1, 1, 3 / 4),
    (3, 1, 5 / 16),
    (15, 5, 21_700 / 1_048_576),  # textbook: P(X >= 15 | n = 20) = 0.0207
    (10, 10, 616_666 / 1_048_576),  # (2^20 + C(20,10)) / 2^21 = 0.5881
    (9, 1, 11 / 1024),  # 0.0107, the classic "9 of 10" sign test
])
def test_sign_test_known_values(wins, losses, p):
    assert sign_test_p(wins, losses) == p


def test_sign_test_is_exact_for_a_large_val_set():
    p = sign_test_p(1700, 1300)  # 2^3000 overflows a float; the exact fraction does not
    assert 0 < p < 1e-12
    # normal approximation with continuity correction, for comparison: z = (1700 - 1500 - 0.5) / sqrt(750)
    z = (1700 - 1500 - 0.5) / math.sqrt(3000 / 4)
    assert p == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=0.1)
    with pytest.raises(ValueError):
        sign_test_p(-1, 2)


@given(wins=st.integers(1, 60), losses=st.integers(0, 60))
def test_the_two_tails_add_up_to_one(wins, losses):
    # P(X >= w) + P(X <= w - 1) = 1, and by symmetry P(X <= w - 1) = P(X >= n - w + 1)
    assert sign_test_p(wins, losses) + sign_test_p(losses + 1, wins - 1) == pytest.approx(1.0, abs=1e-12)
    assert sign_test_p(wins, losses) <= sign_test_p(wins - 1, losses + 1)  # more wins, smaller p


def test_binary_scores_count_flips_like_mcnemar():
    baseline = {f"i{k}": s for k, s in enumerate([0.0] * 8 + [1.0] + [1.0] * 7 + [0.0] * 7)}
    candidate = {f"i{k}": s for k, s in enumerate([1.0] * 8 + [0.0] + [1.0] * 7 + [0.0] * 7)}
    test = paired_test(baseline, candidate)
    assert (test.improved, test.regressed, test.ties, test.n) == (8, 1, 14, 23)
    assert test.binary and test.interval is None and test.p_value == 0.01953125
    assert test.summary() == "8 instances improved, 1 regressed, exact sign test p = 0.0195 (one-sided)"


def test_fractional_scores_ignore_ties_and_only_pair_shared_instances():
    baseline = {"a": 0.3, "b": 0.5, "c": 0.2, "d": 0.9, "only_base": 0.0}
    candidate = {"a": 0.1 + 0.2, "b": 0.75, "c": 0.6, "d": 0.8, "only_cand": 1.0}  # 0.1 + 0.2 != 0.3 in floats
    test = paired_test(baseline, candidate)
    assert (test.improved, test.regressed, test.ties) == (2, 1, 1) and not test.binary
    assert test.p_value == sign_test_p(2, 1) == 0.5
    assert test.interval is not None and test.level == 0.9


def test_bootstrap_interval_is_seeded_and_brackets_the_mean_gain():
    diffs = (0.4, 0.4, 0.1, 0.5, 0.0, 0.4, 0.5, -0.1, 0.4, 0.4)
    low, high = bootstrap_interval(diffs, 0.9)
    assert low <= sum(diffs) / len(diffs) <= high and 0 < low < high <= 0.5
    assert bootstrap_interval.__wrapped__(diffs, 0.9) == (low, high)  # the same without the cache: seeded
    wide = bootstrap_interval(diffs, 0.99)
    assert wide[0] <= low and high <= wide[1]
    assert bootstrap_interval((0.2,) * 5, 0.9) == (0.2, 0.2)
    with pytest.raises(ValueError):
        bootstrap_interval(diffs, 1.0)


def test_summary_with_an_interval_and_formatting():
    test = paired_test({"a": 0.2, "b": 0.4}, {"a": 0.5, "b": 0.9}, level=0.95)
    assert test.summary().startswith("2 instances improved, 0 regressed, exact sign test p = 0.2500 (one-sided); "
                                     "paired bootstrap 95% interval of the mean gain: +")
    assert format_p(1e-7) == "< 0.0001" and format_p(0.19) == "= 0.1900"
    assert format_level(0.9) == "90%" and format_level(0.995) == "99.5%"


def test_val_scores_skip_unscored_instances():
    from gepa_bot.result import Candidate

    def candidate(val):
        return Candidate(index=0, hash="h", components={}, parents=[], origin="seed", val_mean=0.0, val=val,
                         discovered_at_rollout=0)

    scored = candidate({"a": {"score": 1.0, "feedback": ""}, "b": None, "c": {"score": 0.25, "feedback": ""}})
    assert val_scores(scored) == {"a": 1.0, "c": 0.25}
    assert val_scores(candidate({})) == {}
