"""`gepa-bot check`: is this repo ready for a run? Checked in the order a run needs it, in seconds.

1. the config and the prompt files (components, placeholders);
2. the eval suite lists its instances (train / val / held-out test counts) and the budget can pay for
   the baseline plus one GEPA step;
3. the current prompts scored on a few val instances, through the same session a run uses (cached, so
   the run does not pay for them again): a suite that cannot produce result lines, or fails every
   instance, is caught here instead of after the whole baseline;
4. the reflection model answers.

Each finding is one line: ``ok``, ``warning`` or ``problem`` with what to do. Exit code 1 when any
problem was found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gepa_bot.discovery import placeholders_in
from gepa_bot.errors import RunStopped, UserError
from gepa_bot.models.completion import chat
from gepa_bot.search.adapter import RepoAdapter
from gepa_bot.search.errorpolicy import EvalErrors
from gepa_bot.search.session import RunSettings, check_budget_fits, open_session, resolved_models
from gepa_bot.text import one_line

SAMPLE = 3  # val instances scored by the check


@dataclass
class Finding:
    level: str  # "ok" | "warning" | "problem"
    message: str

    def line(self) -> str:
        return f"{self.level:8} {self.message}"


def run_checks(settings: RunSettings, emit: Callable[[Finding], None]) -> list[Finding]:
    """Run every check, reporting each finding as it comes; returns them all."""
    findings: list[Finding] = []

    def report(level: str, message: str) -> None:
        findings.append(Finding(level, message))
        emit(findings[-1])

    with open_session(settings, with_reflection=False, max_rollouts=lambda split: min(SAMPLE, len(split.val))) as s:
        for component in s.components:
            marks = ", ".join(sorted(placeholders_in(component.text))) or "no placeholders"
            report("ok", f"prompt {component.name}: {len(component.text)} chars, {marks}")
        report("ok", f"eval suite: {len(s.split.train)} train and {len(s.split.val)} val instances "
                     f"(instances labelled test are never used)")
        try:
            check_budget_fits(settings, s.split)
            report("ok", f"budget: {settings.config.budget.rollouts} rollouts (the baseline val pass takes "
                         f"{len(s.split.val)})")
        except UserError as exc:
            report("problem", str(exc))
        sample = s.split.val[:SAMPLE]
        s.budget.reserve_rollouts(len(sample))
        s.adapter.retries = 0  # a check reports an error at once; a run retries it
        _check_sample(s.adapter, s.seed_candidate, sample, report)
    _check_reflection_model(settings, report)
    return findings


def _check_sample(adapter: RepoAdapter, candidate: dict[str, str], sample: list[str],
                  report: Callable[[str, str], None]) -> None:
    """The current prompts scored on ``sample``: each score an ``ok``, each error (never cached) a ``problem``."""
    try:
        results = adapter.results_for(candidate, sample)
    except (EvalErrors, RunStopped) as exc:
        errors = exc.errors if isinstance(exc, EvalErrors) else {}
        for instance_id, error in errors.items():
            report("problem", f"eval of val instance {instance_id}: ERROR (not a score): {one_line(error.feedback, 300)}")
        if not errors:
            report("problem", str(exc))
        report("problem", f"the eval could not score {len(errors) or 'the'} sampled instance(s). Fix: run the eval "
                          "command by hand (docs/eval-protocol.md) until it prints a result line per id, and make its "
                          "model reachable (docs/faults.md)")
        results = {}
    for instance_id, result in results.items():
        feedback = one_line(result.feedback or "", 160)
        report("ok", f"eval of val instance {instance_id}: score {result.score:g}; feedback: {feedback}")


def _check_reflection_model(settings: RunSettings, report: Callable[[str, str], None]) -> None:
    model = settings.config.models.reflection
    try:
        with resolved_models(model, known=settings.models) as (params,):
            reply = chat(params.pop("model"), [{"role": "user", "content": "Answer with the word OK."}],
                         max_tokens=8, temperature=0, **params)
        report("ok", f"reflection model {model} answers ({reply.text.strip()[:20]!r})")
    except UserError as exc:
        report("problem", f"reflection model {model}: {exc}")
    except Exception as exc:  # any provider error: the run would fail the same way
        detail = one_line(exc, 300)
        report("problem", f"reflection model {model} does not answer: {type(exc).__name__}: {detail}. Fix: check "
                          "the model name and its API key (see docs/models.md)")
