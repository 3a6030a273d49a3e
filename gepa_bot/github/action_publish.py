"""`gepa-bot action`, phase 3: publish (token, no eval).

Pushes the best variant to the bot's branch and opens, updates or closes ONE pull request, or answers the
comment that asked; writes GITHUB_OUTPUT and GITHUB_STEP_SUMMARY. In the three-job layout (action.yml
``job: publish``) the result comes only from the optimize job's artifact, validated against a fresh checkout of
the planned base commit (:func:`from_artifact`); nothing the optimize job wrote is trusted before that.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from github.PullRequest import PullRequest

from gepa_bot.config import load_config
from gepa_bot.errors import UserError
from gepa_bot.escaping import untrusted
from gepa_bot.github import artifact, rest
from gepa_bot.github.action_context import Context, State, full_report_where, repository, run_footer, score_outputs
from gepa_bot.github.apply import apply_command, embed
from gepa_bot.github.git import ForeignCommits, branch_for, delete_bot_branch, publish_branch
from gepa_bot.github.workflow import Outputs, command_data, write_outputs
from gepa_bot.report.jobsummary import no_pull_request, run_summary, stopped_summary
from gepa_bot.report.render import render
from gepa_bot.report.verdict import verdict
from gepa_bot.result import RunResult


def from_artifact(ctx: Context, state: State, artifact_dir: Path, base_sha: str) -> tuple[State, RunResult | None]:
    """The publish job's state and result, from the plan's state (trusted: a job output) and the optimize job's
    artifact (untrusted: validated first). Raises a one-line UserError when the artifact fails validation.

    The PR body is rendered here from the validated result and the originals in this fresh checkout; a body or
    result file the optimize job wrote is never used.
    """
    state.result_file, state.body, state.evaluation, state.base_sha = None, "", None, None
    if state.stage in ("done", "apply"):  # `/gepa apply` needs nothing of the optimize job (it ran no eval)
        return state, None
    if state.stage != "optimize":
        raise UserError(f"phase publish: the plan's stage is {state.stage!r}; only an optimization is published "
                        "from an artifact", fix="`/gepa evaluate` is not supported in the three-job layout yet; use "
                        "`job: all` for it")
    if not base_sha:
        raise UserError("phase publish: GEPA_BOT_BASE_SHA is not set", fix="pass the plan job's base-sha output as "
                        "the action's base-sha input")
    proposal = artifact.read_validated(artifact_dir, load_config(ctx.config_path), ctx.workspace, base_sha,
                                       ctx.config_path.relative_to(ctx.workspace))
    if proposal.stopped is not None:
        state.stage, state.summary = "stopped", proposal.stopped
        return state, None
    result = proposal.result
    assert result is not None
    originals = {p: (ctx.workspace / p).read_text(encoding="utf-8") for p in result.best_files}
    choices = embed(result, state.plan.base or "", proposal.base_sha)
    body, _full = render(result, originals, full_report_where(ctx.env), reserve=len(choices))
    body += choices + run_footer(ctx, state.plan, result.budget.rollouts_limit, result.seed)
    state.outputs.update(score_outputs(result))
    state.result_file = str(proposal.result_path)
    state.body, state.stage, state.base_sha = body, "publish", proposal.base_sha
    return state, result


def publish_phase(ctx: Context, state: State, result: RunResult | None = None) -> Outputs:
    """Push the best variant and open/update/close the PR, or answer the comment; write the outputs.

    ``result``: the run's result when the caller already holds it validated (the artifact); otherwise it is read
    from ``state.result_file``.
    """
    outputs = Outputs()
    outputs.values.update(state.outputs)
    summary = state.summary
    if state.stage == "publish" and state.evaluation is not None:
        summary = _comment_evaluation(ctx, state, outputs)
    elif state.stage == "publish":
        assert state.result_file
        summary = _publish_result(ctx, state, outputs, result or RunResult.read(Path(state.result_file)))
    elif state.stage == "apply":
        summary = apply_command(ctx, state.plan)
    elif state.stage == "stopped":
        _report_stop(ctx, state)
        summary = stopped_summary(state.summary, ctx.workspace / ctx.config.output.run_dir)
    write_outputs(ctx.env, outputs, summary)
    return outputs


def _publish_result(ctx: Context, state: State, outputs: Outputs, result: RunResult) -> str:
    plan = state.plan
    assert plan.base
    repo = repository(ctx)
    head, out = plan.head or branch_for(plan.base), ctx.config.output
    marker = rest.proposal_marker(result.best_files)
    # a human closed this very proposal: respected, unless a writer asks again with `/gepa optimize`
    asked_again = plan.comment_id is not None and plan.verb == "optimize"
    improved = verdict(result).improved
    declined = rest.declined_proposal(repo, head, marker) if improved and not asked_again else None
    pr: PullRequest | None
    if declined is not None and rest.find_open_pull(repo, head) is None:
        ctx.emit(f"gepa-bot: #{declined.number} with this same proposal was closed without merging; not reopening "
                 "it (a different proposal, after the prompts or evals change, opens a new pull request)")
        operation, pr = "declined", None
    elif improved:
        try:
            publish_branch(ctx.workspace, plan.base, result.best_files, f"gepa-bot: optimize prompts ({plan.reason})",
                              ctx.remote_url, ctx.token, branch=head, base_sha=state.base_sha)
        except ForeignCommits as exc:
            if (open_pr := rest.find_open_pull(repo, head)) is not None:
                rest.post_comment(repo, open_pr.number, f"gepa-bot: {untrusted(str(exc), 500)}. {exc.fix}.")
            raise
        operation, pr = rest.upsert_pull_request(
            repo, plan.base, head, out.pr_title, f"{marker}\n{state.body}", out.labels, draft=out.draft,
            reviewers=out.reviewers, team_reviewers=out.team_reviewers, assignees=out.assignees,
            warn=lambda message: ctx.emit(f"::warning::{command_data(message, 2000)}"))
    else:
        pr = rest.close_pull_request(repo, head, "Closing: after the latest run no candidate beats the prompts on "
                                               f"`{plan.base}` on the validation set.")
        operation = "closed" if pr else "none"
    if operation != "created" and operation != "updated" and out.delete_branch and \
            delete_bot_branch(ctx.workspace, plan.base, head, ctx.remote_url, ctx.token, base_sha=state.base_sha):
        ctx.emit(f"gepa-bot: deleted the branch {head} (no open pull request of it)")
    if pr is not None:
        outputs.values.update({"pull-request-number": str(pr.number), "pull-request-url": pr.html_url,
                               "pull-request-operation": operation, "pull-request-branch": pr.head.ref,
                               "pull-request-head-sha": pr.head.sha})
    if operation != "declined":
        ctx.emit(f"gepa-bot: pull request {operation}" + (f": {pr.html_url}" if pr else ""))
    else:
        outputs.values["pull-request-operation"] = "none"
    if pr is not None and operation in ("created", "updated"):
        what = f"Pull request {operation}: {pr.html_url}"
    elif declined is not None:
        what = (f"No pull request: the same proposal was closed without merging in #{declined.number}, and the bot "
                "does not reopen it (a writer's `/gepa optimize` comment asks again).")
    else:
        what = no_pull_request(result) + (f" The open pull request #{pr.number} was closed." if pr else "")
    if plan.pr_number is not None:
        v = outputs.values
        done = ("proposed improvements in " + v["pull-request-url"] if operation in ("created", "updated")
                else f"the same proposal was declined in #{declined.number}" if declined is not None
                else "no candidate beats the current prompts")
        rest.post_comment(repo, plan.pr_number, f"gepa-bot: {done} (validation {v['baseline-score']} → "
                                              f"{v['best-score']}, {v['rollouts-used']} rollouts).")
    return run_summary(result, what)


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
