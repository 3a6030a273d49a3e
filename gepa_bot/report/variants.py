"""The PR body's other choices: Pareto variants besides the best, and the score-vs-rollouts chart.

A *variant* is a Pareto-front candidate other than the best and the baseline, shown in a collapsed section with
its diff against the base (per prompt), its val score, the val instances it wins where the best loses and the
reverse, and its rationale. Candidates whose prompts differ only trivially (case, whitespace, punctuation) from
one already shown are skipped. The chart is a Mermaid ``xychart-beta`` block, which GitHub renders in PR bodies,
comments and job summaries: the val best so far as a line and each candidate's val score as a bar, in the order
the search found them (x: rollouts at discovery).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from gepa_bot.result import Candidate, RunResult
from gepa_bot.text import truncate

CHART_POINTS = 60  # a chart with more bars is unreadable; the best-so-far steps are always kept


def normalized(candidate: Candidate) -> tuple[tuple[str, str], ...]:
    """The candidate's prompts with case, whitespace and punctuation removed: equal means a trivial difference."""
    return tuple(sorted((name, re.sub(r"[\W_]+", "", text.casefold())) for name, text in candidate.components.items()))


def pick(result: RunResult, limit: int | None) -> list[Candidate]:
    """Up to ``limit`` (None: all) Pareto candidates besides the best and the baseline, best val score first,
    skipping any whose prompts differ only trivially from the best's, the baseline's or a variant already picked,
    and any that wins no val instance the best loses (gepa's front also holds candidates that only tie where every
    candidate scores 0: nothing to choose them for)."""
    seen = {normalized(result.best), normalized(result.baseline)}
    shown: list[Candidate] = []
    front = sorted(set(result.pareto_front), key=lambda i: (-result.candidates[i].val_mean, i))
    for index in front:
        if limit is not None and len(shown) >= limit:
            break
        candidate = result.candidates[index]
        if index in (result.best_candidate, result.baseline_candidate) or normalized(candidate) in seen:
            continue
        if not wins_and_losses(result, candidate)[0]:
            continue
        seen.add(normalized(candidate))
        shown.append(candidate)
    return shown


def wins_and_losses(result: RunResult, candidate: Candidate) -> tuple[list[str], list[str]]:
    """(val instances where ``candidate`` scores higher than the best, those where the best scores higher)."""
    wins, losses = [], []
    for instance_id in result.split.val:
        mine, best = candidate.val.get(instance_id), result.best.val.get(instance_id)
        if mine is None or best is None:
            continue
        if mine.score > best.score:
            wins.append(instance_id)
        elif mine.score < best.score:
            losses.append(instance_id)
    return wins, losses


def component_diff(result: RunResult, candidate: Candidate, max_lines: int) -> list[dict[str, Any]]:
    """A unified diff per prompt between the baseline's text and the candidate's (changed prompts only):
    (label, diff text, lines not shown)."""
    diffs = []
    for info in result.components:
        old, new = result.baseline.components.get(info.name, ""), candidate.components.get(info.name, "")
        label = info.path + (f" ({info.key})" if info.key else "")
        lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), f"a/{label}", f"b/{label}",
                                          lineterm=""))
        if lines:
            kept = [truncate(line, 400) for line in lines[:max_lines]]
            diffs.append({"label": label, "diff": "\n".join(kept), "cut": max(len(lines) - max_lines, 0)})
    return diffs


def chart_points(result: RunResult) -> list[tuple[int, int, float, float]]:
    """(candidate index, rollouts at discovery, its val score, val best so far), in discovery order.

    With more than CHART_POINTS candidates, the ones that raised the best so far are kept first, then the others
    evenly spread; the best-so-far column is computed over all candidates either way.
    """
    order = sorted(result.candidates, key=lambda c: (c.discovered_at_rollout, c.index))
    points, best = [], float("-inf")
    for candidate in order:
        best = max(best, candidate.val_mean)
        points.append((candidate.index, candidate.discovered_at_rollout, candidate.val_mean, best))
    if len(points) <= CHART_POINTS:
        return points
    steps = {k for k, p in enumerate(points) if k == 0 or p[3] > points[k - 1][3]}
    others = [k for k in range(len(points)) if k not in steps]
    room = max(CHART_POINTS - len(steps), 0)
    spread = {others[round(j * (len(others) - 1) / max(room - 1, 1))] for j in range(room)} if room else set()
    return [p for k, p in enumerate(points) if k in steps or k in spread][-CHART_POINTS:]


def mermaid_chart(result: RunResult) -> str:
    """A Mermaid ``xychart-beta`` block: x rollouts at discovery, y val score; bars: each candidate, line: the
    val best so far. One x category per candidate (a rollout count shared by several gets ``#index``)."""
    points = chart_points(result)
    if not points:
        return ""
    counts: dict[int, int] = {}
    for _, rollout, _, _ in points:
        counts[rollout] = counts.get(rollout, 0) + 1
    labels = [f'"{rollout}"' if counts[rollout] == 1 else f'"{rollout} #{index}"' for index, rollout, _, _ in points]
    top = max(1.0, max(p[2] for p in points))
    bottom = min(0.0, min(p[2] for p in points))
    return "\n".join([
        "```mermaid", "xychart-beta",
        '    title "Validation score vs rollouts"',
        f'    x-axis "rollouts" [{", ".join(labels)}]',
        f'    y-axis "validation score" {bottom:g} --> {top:g}',
        f"    bar [{', '.join(f'{p[2]:.4g}' for p in points)}]",
        f"    line [{', '.join(f'{p[3]:.4g}' for p in points)}]",
        "```"])
