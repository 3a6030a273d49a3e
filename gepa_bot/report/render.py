"""A finished run as Markdown: :func:`render` is the one way from a :class:`RunResult` to a :class:`Report`, the
pull-request body (verdict, scores, diffs, per-instance table, rationale, lineage, budget) and the complete report.

GitHub refuses bodies over 65,536 characters (gepa_bot/text.py). The renderer degrades in steps (fewer rows, shorter
excerpts, diffs folded) until the body fits, and the complete report is always written to a file.
Text that comes from evals or the LLM is untrusted: it is escaped (gepa_bot/escaping.py) so it cannot close our `<details>`
blocks, break tables, or start workflow commands when echoed in a GitHub Actions log.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from jinja2 import Environment, PackageLoader, StrictUndefined

from gepa_bot.escaping import fence_for, untrusted, untrusted_block
from gepa_bot.redact import redact
from gepa_bot.report.rejections import rejection_reasons
from gepa_bot.report.variants import component_diff, mermaid_chart, pick, wins_and_losses
from gepa_bot.result import NOTHING_TO_REFLECT_ON, REFLECTION_STALLED, RunResult
from gepa_bot.text import BODY_LIMIT, truncate
from gepa_bot.verdict import verdict

BODY_BUDGET = BODY_LIMIT - 1_536  # room for a truncation note and GitHub's own counting quirks


@dataclass(frozen=True)
class Detail:
    """How much to show; the renderer walks down this ladder until the body fits."""

    max_rows: int
    excerpt: int
    max_diff_lines: int
    max_rationale: int
    variants: bool = True  # the last resort before a hard cut drops the variant sections (the full report has them)


LADDER = (Detail(200, 300, 400, 3000), Detail(60, 160, 200, 1500), Detail(25, 80, 80, 600), Detail(10, 40, 30, 200),
          Detail(10, 40, 30, 200, variants=False))


def suite_warnings(result: RunResult) -> list[str]:
    """Loud warnings about the eval suite itself: a baseline of 0 everywhere, or mostly missing results."""
    baseline = [e for e in result.baseline.val.values() if e is not None]
    if not baseline:
        return []
    warnings = []
    failed = sum(1 for e in baseline if e.failed)
    if failed * 2 > len(baseline):
        warnings.append(f"{failed} of {len(baseline)} validation instances got no valid result line from the eval for "
                        "the current prompts: the eval is probably broken (run it by hand; see docs/eval-protocol.md)")
    elif all(e.score == 0.0 for e in baseline):
        warnings.append(f"the current prompts score 0 on all {len(baseline)} validation instances: check the eval "
                        "(a scorer that never gives credit cannot guide the search)")
    if result.budget.stop_reason == NOTHING_TO_REFLECT_ON:
        warnings.append(f"the search stopped early: the prompts already score 1 on all {len(result.split.train)} "
                        "train instances, and gepa-bot learns only from failures. Give it train instances they get "
                        "wrong: label some failing instances 'train' in the eval's list output, or lower "
                        "split.val_fraction so that more instances go to train")
    if result.budget.stop_reason == REFLECTION_STALLED:
        warnings.append(f"the search stopped early, {result.budget.rollouts_limit - result.budget.rollouts_used} "
                        f"rollouts unspent: {REFLECTION_STALLED} ({len(result.rejected_proposals)} refused replies; "
                        "their reasons are listed below). The reflection model is likely too weak for these prompts: "
                        "set models.reflection to a stronger model")
    return warnings


def instance_rows(result: RunResult, detail: Detail) -> list[dict[str, Any]]:
    """Per-instance baseline vs best, regressions first, then fixes, then the rest."""
    baseline, best = result.baseline.val, result.best.val
    rows = []
    for instance_id in result.split.val:
        before, after = baseline.get(instance_id), best.get(instance_id)
        if before is None or after is None:
            continue
        delta = after.score - before.score
        rows.append({"id": untrusted(instance_id, 60), "before": before.score, "after": after.score,
                     "noise": max(before.stdev, after.stdev), "delta": delta,
                     "status": "regressed" if delta < 0 else ("fixed" if delta > 0 else "same"),
                     "feedback": untrusted(after.feedback, detail.excerpt)})
    order = {"regressed": 0, "fixed": 1, "same": 2}
    return sorted(rows, key=lambda r: (order[r["status"]], r["delta"], r["id"]))


def file_diffs(result: RunResult, original_files: dict[str, str], detail: Detail) -> list[dict[str, Any]]:
    """Unified diff per prompt file between the repo's version and the best candidate's."""
    diffs = []
    for path, new in sorted(result.best_files.items()):
        old = original_files.get(path, "")
        lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), f"a/{path}", f"b/{path}", lineterm=""))
        if not lines:
            continue
        cut = len(lines) - detail.max_diff_lines
        diff = "\n".join(lines[: detail.max_diff_lines])  # byte-exact: only the fence adapts to it
        diffs.append({"path": untrusted(path, 200), "diff": diff, "fence": fence_for(diff), "cut": max(cut, 0)})
    return diffs


def lineage(result: RunResult, index: int) -> list[int]:
    """Ancestors of a candidate back to the seed (first parent at each step)."""
    chain = [index]
    while result.candidates[chain[-1]].parents:
        chain.append(result.candidates[chain[-1]].parents[0])
    return list(reversed(chain))


FULL_REPORT_NAME = "report-full.md"
FULL_REPORT_HERE = f"in `{FULL_REPORT_NAME}` in the run directory"
PR_BODY_NAME = "pr-body.md"  # where `gepa-bot optimize` writes the body (--out elsewhere)


class Report(NamedTuple):
    """A run as Markdown: ``body`` is the pull-request body (it fits GitHub's limit, its trailer included) and
    ``full`` the complete report (``report-full.md``)."""

    body: str
    full: str

    def write(self, run_dir: Path, body_file: Path | None = None) -> None:
        """The complete report into ``run_dir``, and the body into ``body_file`` when one is given."""
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / FULL_REPORT_NAME).write_text(self.full, encoding="utf-8")
        if body_file is not None:
            body_file.parent.mkdir(parents=True, exist_ok=True)
            body_file.write_text(self.body, encoding="utf-8")


def original_files(result: RunResult, workspace: Path) -> dict[str, str]:
    """The checkout's current text of each file the best candidate rewrites (what the PR's diffs start from)."""
    return {path: (workspace / path).read_text(encoding="utf-8") for path in result.best_files}


def render(result: RunResult, original_files: dict[str, str], full_report_where: str = FULL_REPORT_HERE,
           trailer: str = "") -> Report:
    """The run's report. The body ends with ``trailer`` (what the caller appends: the embedded choices of
    `/gepa apply`, a footer) and fits GitHub's limit with it; ``full_report_where`` says where the complete report
    is."""
    result = RunResult.model_validate(redact(result.model_dump()))
    full = _render(result, original_files, LADDER[0], None, every_variant=True)
    budget = BODY_BUDGET - len(trailer)
    for detail in LADDER:
        body = _render(result, original_files, detail, full_report_where if detail is not LADDER[0] else None)
        if len(body) <= budget:
            return Report(body + trailer, full)
    note = f"\n\n> Report cut to fit GitHub's limit; the complete report is {full_report_where}.\n"
    return Report(truncate(body, budget, note) + trailer, full)


ENV = Environment(loader=PackageLoader("gepa_bot.report.render", "templates"), undefined=StrictUndefined, autoescape=False,
                   trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _render(result: RunResult, original_files: dict[str, str], detail: Detail, overflow: str | None,
            every_variant: bool = False) -> str:
    candidates = result.candidates
    shown = sorted(result.pareto_front or [result.best_candidate], key=lambda i: -candidates[i].val_mean)[:10]
    rows = instance_rows(result, detail)
    return ENV.get_template("pr_body.md.j2").render(
        v=verdict(result), result=result, best=result.best, budget=result.budget, warnings=suite_warnings(result),
        pareto=[candidates[i] for i in shown], rows=rows[: detail.max_rows], rows_cut=max(len(rows) - detail.max_rows, 0),
        diffs=file_diffs(result, original_files, detail), lineage=lineage(result, result.best_candidate),
        steps=[{"index": i, "origin": candidates[i].origin, "val_mean": candidates[i].val_mean,
                 "rationale": [(untrusted(name, 120), untrusted_block(text, detail.max_rationale))
                               for name, text in candidates[i].rationale.items()]}
               for i in lineage(result, result.best_candidate)],
        rejected=len(result.rejected_proposals), rejection_reasons=rejection_reasons(result.rejected_proposals),
        overflow=overflow, untrusted=untrusted, chart=mermaid_chart(result),
        variants=variant_sections(result, detail, None if every_variant else result.variants),
        variants_dropped=not detail.variants and bool(pick(result, result.variants)),
        passed_over=higher_but_longer(result))


def higher_but_longer(result: RunResult) -> dict[str, Any] | None:
    """The candidate with the highest val score when the proposal is another one (optimizer.prefer_shorter_within
    chose a shorter prompt within that many val instances of it), else None."""
    top = max(result.candidates, key=lambda c: (c.val_mean, -c.index))
    if top.val_mean <= result.best.val_mean + 1e-9:
        return None
    return {"index": top.index, "val_mean": top.val_mean, "chars": sum(map(len, top.components.values())),
            "best_chars": sum(map(len, result.best.components.values()))}


def variant_sections(result: RunResult, detail: Detail, limit: int | None) -> list[dict[str, Any]]:
    """The PR body's variant sections (gepa_bot/report/variants.py): up to ``limit`` (None: all) Pareto candidates."""
    if not detail.variants:
        return []
    sections = []
    shown_ids = max(5, detail.max_rows // 10)
    for candidate in pick(result, limit):
        wins, losses = wins_and_losses(result, candidate)
        diffs = [{**d, "label": untrusted(d["label"], 200), "fence": fence_for(d["diff"])}
                 for d in component_diff(result, candidate, detail.max_diff_lines)]
        sections.append({
            "index": candidate.index, "origin": candidate.origin, "val_mean": candidate.val_mean,
            "rollout": candidate.discovered_at_rollout, "diffs": diffs,
            "wins": [untrusted(i, 60) for i in wins[:shown_ids]], "wins_cut": max(len(wins) - shown_ids, 0),
            "losses": [untrusted(i, 60) for i in losses[:shown_ids]], "losses_cut": max(len(losses) - shown_ids, 0),
            "rationale": [(untrusted(name, 120), untrusted(text, detail.max_rationale))
                          for name, text in candidate.rationale.items()]})
    return sections
