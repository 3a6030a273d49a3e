"""Progress of a running search, as plain status lines (the CLI's bar and the Action's log)."""

from __future__ import annotations

import time
from collections.abc import Callable

from gepa_bot.search.adapter import SearchStatus
from gepa_bot.search.budget import Budget


def repeats_note(count: int) -> str:
    """gepa pads a short minibatch with an id it already holds: that rollout is counted, neither run nor cached."""
    return f", {count} repeated in a minibatch" if count else ""


def status_line(budget: Budget, status: SearchStatus, total: int, elapsed: float) -> str:
    """One plain progress line: rollouts, the val scores so far, what happened to proposals, time and ETA."""
    line = (f"rollouts {budget.rollouts}/{total} ({budget.executed} executed, {budget.cache_hits} cached"
            f"{repeats_note(budget.repeats)})")
    if status.best_val is not None:
        line += f"; val best {status.best_val:.3f} (baseline {status.baseline_val:.3f})"
    line += (f"; {status.proposals} proposals, {max(0, status.val_passes - 1)} reached val, "
             f"{status.rejected_replies} replies rejected; {elapsed:.0f}s")
    if 0 < budget.rollouts < total:
        line += f", ~{elapsed / budget.rollouts * (total - budget.rollouts):.0f}s left at this pace"
    return line


def progress_lines(total: int, emit: Callable[[str], None]) -> Callable[[Budget, SearchStatus], None]:
    """A progress callback that emits one plain ``progress: ...`` status line per 10% of the rollout budget."""
    started, printed = time.monotonic(), [0]

    def update(budget: Budget, status: SearchStatus) -> None:
        step = budget.rollouts * 10 // max(1, total)
        if step > printed[0]:
            printed[0] = step
            emit(f"progress: {status_line(budget, status, total, time.monotonic() - started)}")

    return update
