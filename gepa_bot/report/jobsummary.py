"""The Actions job summary ($GITHUB_STEP_SUMMARY) of every run: what a run that opened no pull request leaves.

The verdict line, the score-vs-rollouts chart, the top of the per-instance table, the budget, and what happened to
the pull request: opened or updated (with its link), or why none was (no gain, a gain inside the noise, not
significant, a proposal a maintainer declined, or a run stopped by errors). GitHub takes at most 1 MiB per step;
:func:`gepa_bot.github.workflow.write_outputs` cuts there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gepa_bot.escaping import untrusted
from gepa_bot.report.render import ENV, LADDER, instance_rows
from gepa_bot.report.variants import mermaid_chart
from gepa_bot.result import RunResult
from gepa_bot.runlog import read_records
from gepa_bot.verdict import verdict

SUMMARY_ROWS = 10


def headline(result: RunResult) -> str:
    """The PR body's first line: the verdict."""
    v = verdict(result)
    if v.improved:
        return f"## gepa-bot: improved prompts ({v.gain * 100:+.1f} pts on validation)"
    if v.beats:
        return f"## gepa-bot: no reliable improvement ({v.gain * 100:+.1f} pts on validation, not proposed)"
    return "## gepa-bot: no candidate beats the current prompts"


def run_summary(result: RunResult, pull_request: str) -> str:
    """The job summary of a finished optimization; ``pull_request``: one line on what happened to the PR."""
    detail = LADDER[2]
    rows = instance_rows(result, detail)
    return ENV.get_template("summary.md.j2").render(
        headline=headline(result), v=verdict(result), pull_request=pull_request, chart=mermaid_chart(result),
        rows=rows[:SUMMARY_ROWS], rows_cut=max(len(rows) - SUMMARY_ROWS, 0), budget=result.budget,
        untrusted=untrusted)


def no_pull_request(result: RunResult) -> str:
    """Why a finished run proposes nothing (the verdict's reason, which names the threshold it missed)."""
    return f"No pull request: {verdict(result).reason}."


def stopped_summary(cause: str, run_dir: Path | None) -> str:
    """The job summary of a run errors stopped: the cause, and the budget spent when the run log has it."""
    lines = ["## gepa-bot: run stopped by errors", "",
             f"No pull request was opened, updated or closed, and the bot's branch was left as it is: "
             f"{untrusted(cause.removeprefix('gepa-bot: '), 3000)}"]
    records: list[dict[str, Any]] = list(read_records(run_dir, "stopped")) if run_dir is not None else []
    # this run's record (a resumed run dir may hold an earlier stop): its cause is the one reported
    budget = records[-1].get("budget") if records and str(records[-1].get("cause")) in cause else None
    if isinstance(budget, dict):
        lines += ["", f"Spent before it stopped: {budget.get('rollouts_used', '?')} of {budget.get('rollouts_limit', '?')} "
                      f"rollouts ({budget.get('rollouts_executed', '?')} executed, {budget.get('cache_hits', '?')} "
                      "from the cache; the cache keeps every finished rollout for the next run)."]
    return "\n".join(lines) + "\n"
