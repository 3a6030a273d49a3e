"""`gepa-bot action`, phase 3: publish (token, no eval).

Pushes the best variant to the bot's branch and opens, updates or closes ONE pull request, or answers the
comment that asked; writes GITHUB_OUTPUT and GITHUB_STEP_SUMMARY. In the three-job layout (action.yml
``job: publish``) the result comes only from the optimize job's artifact, validated against a fresh checkout of
the planned base commit (:func:`from_artifact`); nothing the optimize job wrote is trusted before that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from gepa_bot.config import load_config
from gepa_bot.errors import UserError
from gepa_bot.escaping import untrusted
from gepa_bot.github import artifact, rest
from gepa_bot.github.action_context import (
    Context,
    Stage,
    State,
    full_report_where,
    repository,
    run_footer,
    score_outputs,
)
from gepa_bot.github.apply import apply_command
from gepa_bot.github.git import branch_for
from gepa_bot.github.publish import PublishTarget, PullRequestSettings, api_url_for, proposal_report, publish
from gepa_bot.github.workflow import Outputs, write_outputs
from gepa_bot.report.jobsummary import stopped_summary
from gepa_bot.result import RunResult


def from_artifact(ctx: Context, state: State, artifact_dir: Path, base_sha: str) -> tuple[State, RunResult | None]:
    """The publish job's state and result, from the plan's state (trusted: a job output) and the optimize job's
    artifact (untrusted: validated first). Raises a one-line UserError when the artifact fails validation.

    The PR body is rendered by the publish phase from the validated result and the originals in this fresh checkout;
    nothing else the optimize job wrote is used.
    """
    state = dataclasses.replace(state, result_file=None, evaluation=None, base_sha=None)
    if state.stage in (Stage.DONE, Stage.APPLY):  # `/gepa apply` needs nothing of the optimize job (it ran no eval)
        return state, None
    if state.stage is not Stage.OPTIMIZE:
        raise UserError(f"phase publish: the plan's stage is {state.stage.value!r}; only an optimization is published "
                        "from an artifact", fix="`/gepa evaluate` is not supported in the three-job layout yet; use "
                        "`job: all` for it")
    if not base_sha:
        raise UserError("phase publish: GEPA_BOT_BASE_SHA is not set", fix="pass the plan job's base-sha output as "
                        "the action's base-sha input")
    proposal = artifact.read_validated(artifact_dir, load_config(ctx.config_path), ctx.workspace, base_sha,
                                       ctx.config_path.relative_to(ctx.workspace))
    if proposal.stopped is not None:
        return dataclasses.replace(state, stage=Stage.STOPPED, summary=proposal.stopped), None
    assert proposal.result is not None
    return dataclasses.replace(state, stage=Stage.PUBLISH, result_file=str(proposal.result_path),
                               base_sha=proposal.base_sha), proposal.result


def publish_target(ctx: Context, state: State) -> PublishTarget:
    """Where the Action publishes: this repository (GITHUB_REPOSITORY, GITHUB_SERVER_URL, GITHUB_API_URL), the
    plan's base and bot branch, the base SHA of the three-job layout, the pull request settings of the config and
    inputs, and the `/gepa optimize` comment to answer."""
    plan = state.plan
    assert plan.base
    server = ctx.env.get("GITHUB_SERVER_URL", "https://github.com")
    return PublishTarget(workspace=ctx.workspace, repo_name=ctx.repo_name, server_url=server,
                         api_url=ctx.env.get("GITHUB_API_URL") or api_url_for(server), token=ctx.token,
                         base=plan.base, head=plan.head or branch_for(plan.base), base_sha=state.base_sha,
                         pull_request=PullRequestSettings.of(ctx.config.output), reason=plan.reason,
                         reply_to=plan.pr_number, asked_again=plan.comment_id is not None and plan.verb == "optimize",
                         emit=ctx.emit, github_kwargs=ctx.github_kwargs)


def publish_phase(ctx: Context, state: State, result: RunResult | None = None) -> Outputs:
    """Push the best variant and open/update/close the PR, or answer the comment; write the outputs.

    ``result``: the run's result when the caller already holds it validated (the artifact); otherwise it is read
    from ``state.result_file``.
    """
    outputs = Outputs()
    summary = state.summary
    if state.stage is Stage.PUBLISH and state.evaluation is not None:
        summary = _comment_evaluation(ctx, state, outputs)
    elif state.stage is Stage.PUBLISH:
        assert state.result_file
        result = result or RunResult.read(Path(state.result_file))
        target = publish_target(ctx, state)
        report = proposal_report(result, ctx.workspace, target.base, state.base_sha,
                                 full_report_where=full_report_where(ctx.env),
                                 footer=run_footer(ctx, state.plan, result.budget.rollouts_limit, result.seed))
        outcome = publish(result, report, target, repository=repository(ctx))
        outputs.values.update({**score_outputs(result), **outcome.outputs()})
        summary = outcome.summary
    elif state.stage is Stage.APPLY:
        summary = apply_command(ctx, state.plan)
    elif state.stage is Stage.STOPPED:
        _report_stop(ctx, state)
        summary = stopped_summary(state.summary, ctx.workspace / ctx.config.output.run_dir)
    write_outputs(ctx.env, outputs, summary)
    return outputs


def _report_stop(ctx: Context, state: State) -> None:
    """A run stopped by errors: the PR and the bot's branch stay as they are; a comment command gets the cause."""
    ctx.emit("gepa-bot: the run stopped because of errors; the pull request and its branch were left as they are")
    if state.plan.pr_number is not None and state.plan.comment_id is not None:
        rest.post_comment(repository(ctx), state.plan.pr_number,
                        f"{untrusted(state.summary, 1500)}\n\nNothing was changed. The finished work is in the eval "
                        "cache: once the cause is fixed, the same command resumes without paying for it again.")


def _comment_evaluation(ctx: Context, state: State, outputs: Outputs) -> str:
    plan, current = state.plan, state.evaluation
    assert plan.pr_number is not None and plan.base is not None and current is not None
    failing = [(i, r) for i, r in current.val.items() if r.score < 1.0][:20]
    lines = [f"gepa-bot: current prompts on `{untrusted(plan.base, 100)}` score **{current.val_mean:.3f}** on "
             f"{len(current.val)} validation instances ({current.budget.rollouts_executed} evaluated, "
             f"{current.budget.cache_hits} cached)."]
    if failing:
        lines += ["", "| instance | score | feedback |", "|---|---|---|"]
        lines += [f"| {untrusted(i, 60)} | {r.score:.2f} | {untrusted(r.feedback, 200)} |" for i, r in failing]
    body = "\n".join(lines)
    rest.post_comment(repository(ctx), plan.pr_number, body)
    outputs.values.update({"baseline-score": f"{current.val_mean:.4f}", "best-score": f"{current.val_mean:.4f}",
                           "rollouts-used": str(current.budget.rollouts_used)})
    return body


def artifact_env(env: Mapping[str, str]) -> tuple[Path, str] | None:
    """(artifact directory, planned base SHA) when the publish phase runs as the three-job layout's publish job."""
    where = env.get("GEPA_BOT_ARTIFACT")
    return (Path(where), env.get("GEPA_BOT_BASE_SHA", "")) if where else None
