"""Which candidate the pull request proposes: the best val score, or a clearly shorter one within the slack
(``optimizer.prefer_shorter_within``) that still passes the PR checks."""

from __future__ import annotations

from typing import Any

from gepa_bot.result import RunResult
from gepa_bot.search.session import RunSession
from gepa_bot.verdict import verdict


def val_best(candidates: list[dict[str, Any]], slack: float = 0.0) -> int:
    """The index of the best val mean; at equal scores the shorter prompt (less to review, fewer tokens per call,
    and in the bench the shorter of equal-val prompts held up better on test), then the earlier one. With ``slack``
    (optimizer.prefer_shorter_within, as a share of val), the shortest prompt within that much of the best val mean:
    a longer prompt has to win by more than ``slack`` on val."""
    return shortest_within(candidates, slack)[0]


SHORTER_BY = 0.1
"""A candidate below the best val mean (within the slack) is preferred only when it is at least this share shorter
than the best: seen on arithmetic (seed 0, 2026-12-06), the slack traded a val instance for one character (the same
two sentences on one line, 91 -> 90 chars) and the pick scored 0.733 on test against 0.933."""


def shortest_within(candidates: list[dict[str, Any]], slack: float) -> list[int]:
    """The indices of the candidates that score the best val mean, and of those within ``slack`` of it that are at
    least SHORTER_BY shorter than the shortest best, shortest first (then the higher score, then the earlier)."""
    top = max(c["val_mean"] for c in candidates)

    def length(i: int) -> int:
        return sum(map(len, candidates[i]["components"].values()))

    best = min(length(i) for i, c in enumerate(candidates) if c["val_mean"] >= top - 1e-9)
    within = [i for i, c in enumerate(candidates) if c["val_mean"] >= top - 1e-9
              or (c["val_mean"] >= top - slack - 1e-9 and length(i) <= (1 - SHORTER_BY) * best)]
    return sorted(within, key=lambda i: (length(i), -candidates[i]["val_mean"], i))


def parsimony_slack(session: RunSession) -> float:
    """optimizer.prefer_shorter_within as a share of the val set (1 of 20 instances: 0.05)."""
    return session.config.optimizer.prefer_shorter_within / max(1, len(session.split.val))


def proposable(result: RunResult, slack: float) -> int:
    """The shortest candidate within ``slack`` of the best val score that the verdict would propose as a PR, else the
    shortest within ``slack`` (result.best_candidate): preferring a shorter prompt never costs the pull request (the
    quick start: a rewrite one val instance under the best, 5 improved and 1 regressed against 6 and 1, missed the sign
    test the best passed)."""
    within = shortest_within([{"val_mean": c.val_mean, "components": c.components} for c in result.candidates], slack)
    return next((i for i in within if verdict(result.model_copy(update={"best_candidate": i})).improved),
                result.best_candidate)
