"""`gepa-bot action`: the GitHub Actions entry point.

Reads the event GitHub sends (GITHUB_EVENT_NAME / GITHUB_EVENT_PATH), decides what to do, runs the
optimization, pushes the best variant to `gepa-bot/<base>` and opens, updates or closes ONE pull
request, then writes GITHUB_OUTPUT and GITHUB_STEP_SUMMARY. Security rules: secrets are masked,
untrusted text is printed between `::stop-commands::` markers, comments are obeyed only from users
with write access, fork PR heads are never checked out or run, nothing is pushed to the default branch.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import git

from gepa_bot.config import load_config, with_overrides
from gepa_bot.errors import RunStopped, UserError
from gepa_bot.escaping import log_line, untrusted
from gepa_bot.github import rest
from gepa_bot.github.action_context import (
    RUN_ARTIFACT,
    Context,
    Stage,
    State,
    context,
    full_report_where,
    relative,
    repository,
    run_footer,
    state_file,
    stopped,
)
from gepa_bot.github.action_publish import artifact_env, from_artifact, publish_phase
from gepa_bot.github.git import BRANCH_PREFIX, branch_for, checkout_branch, current_branch
from gepa_bot.github.publish import proposal_report
from gepa_bot.github.safegit import refuse_stored_credentials
from gepa_bot.github.trigger import Plan, plan_for
from gepa_bot.github.workflow import Outputs, command_data, mask_secrets, print_untrusted
from gepa_bot.redact import GITHUB_TOKEN_NAMES
from gepa_bot.result import RESULT_NAME
from gepa_bot.search.engine import evaluate_current, optimize
from gepa_bot.search.progress import progress_lines
from gepa_bot.search.session import RunSettings

__all__ = ["RUN_ARTIFACT", "Context", "RunStopped", "Stage", "State", "full_report_where", "main",
           "optimize_phase", "plan_phase", "publish_phase", "run", "run_footer", "run_phase", "stopped"]

# --- running ----------------------------------------------------------------------------------------
#
# Three phases, so that no process that runs an eval ever holds the GitHub token (an eval can read its
# ancestors' /proc/<pid>/environ): `plan` (token, runs no eval: reads the event, checks the commenter,
# checks out a PR branch), `optimize` (NO token: runs the evals and the search), `publish` (token, runs
# no eval: pushes the branch, opens/updates/closes the PR, comments; gepa_bot/github/action_publish.py).
# action.yml runs them as steps of one job (`job: all`; they hand over a JSON state file in RUNNER_TEMP) or
# as three jobs, where publish reads the optimize job's artifact (GEPA_BOT_ARTIFACT) and validates it.
# `run()` chains the same three functions in one process (docker entrypoint, other CI, tests).


def run(env: Mapping[str, str], emit: Callable[[str], None] = print, **github_kwargs: Any) -> Outputs:
    """Handle the current GitHub event in one process; returns the outputs (also written to GITHUB_OUTPUT)."""
    mask_secrets(env, emit)
    ctx = context(env, emit, github_kwargs)
    state = plan_phase(ctx)
    try:
        state = optimize_phase(ctx, state)
    except RunStopped as exc:
        publish_phase(ctx, stopped(state, exc))  # answers a comment with the cause; the PR is left alone
        raise
    return publish_phase(ctx, state)


def run_phase(phase: str, env: Mapping[str, str], emit: Callable[[str], None] = print, **github_kwargs: Any) -> None:
    """One phase in its own process (action.yml's steps); the state file carries what the next one needs.

    With GEPA_BOT_ARTIFACT set (the three-job layout's publish job), publish takes the result only from that
    artifact, validated against this checkout and GEPA_BOT_BASE_SHA; the state file is then the plan's.
    """
    mask_secrets(env, emit)
    state_path = state_file(env)
    if phase == "optimize":
        present = [n for n in GITHUB_TOKEN_NAMES if env.get(n)]
        if present:
            raise UserError(f"phase optimize: {', '.join(present)} is set, but the phase that runs evals must never "
                            "hold the GitHub token", fix="pass the token only to the plan and publish steps "
                            "(see action.yml)")
    ctx = context(env, emit, github_kwargs, token_required=phase != "optimize")
    if phase == "plan":
        state = plan_phase(ctx)
        write_plan_outputs(env, ctx, state)
    else:
        if not state_path.is_file():
            raise UserError(f"phase {phase}: no state file {state_path}", fix="run the plan phase first (action.yml)")
        state = State.from_json(json.loads(state_path.read_text(encoding="utf-8")))
        if phase == "optimize":
            try:
                state = optimize_phase(ctx, state)
            except RunStopped as exc:  # the publish step (if: always()) reads it and reports the cause
                state_path.write_text(json.dumps(stopped(state, exc).to_json()), encoding="utf-8")
                raise
        else:
            handover = artifact_env(env)
            result = None
            if handover is not None:
                state, result = from_artifact(ctx, state, *handover)
            publish_phase(ctx, state, result)
            return
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps(state.to_json()), encoding="utf-8")


def write_plan_outputs(env: Mapping[str, str], ctx: Context, state: State) -> None:
    """What action.yml's cache and artifact steps need: whether anything runs, where, and the cache scope.

    The cache is restored only from runs on the same branch (``scope``): an optimization of a PR branch
    never feeds scores into the default branch's runs.
    """
    if not env.get("GITHUB_OUTPUT"):
        return
    config = load_config(ctx.config_path) if state.plan.pr_number is not None else ctx.config  # the PR's own
    values = {"work": "true" if state.stage is not Stage.DONE else "false", "scope": state.plan.base or "none",
              "cache-dir": config.output.cache_dir, "run-dir": config.output.run_dir}
    broken = [name for name, value in values.items() if "\n" in value or "\r" in value]
    if broken:  # a line break would let the value write other step outputs
        raise UserError(f"{ctx.config_path}: {', '.join(broken)} contains a line break", fix="use a plain path")
    with open(env["GITHUB_OUTPUT"], "a", encoding="utf-8") as handle:
        handle.writelines(f"{name}={value}\n" for name, value in values.items())


def _settings(ctx: Context, plan: Plan) -> RunSettings:
    config = with_overrides(ctx.config, source="action inputs", budget=plan.budget or ctx.inputs.budget,
                            model=ctx.inputs.model, reflection_model=ctx.inputs.reflection_model)
    return RunSettings(repo=ctx.workspace, config=config, config_path=ctx.config_path,
                       run_dir=ctx.workspace / config.output.run_dir, cache_dir=ctx.workspace / config.output.cache_dir,
                       only_files=plan.files)


# --- phase 1: plan (token, no eval) -------------------------------------------------------------------

def plan_phase(ctx: Context) -> State:
    """Decide what to do; for a comment, check the commenter and check out the PR's branch."""
    event = json.loads(Path(ctx.env["GITHUB_EVENT_PATH"]).read_text(encoding="utf-8"))
    plan = plan_for(ctx.env.get("GITHUB_EVENT_NAME", ""), event, ctx.config, relative(ctx.config_path, ctx.workspace))
    ctx.emit(f"gepa-bot: {plan.verb} ({log_line(plan.reason, 500)})")  # the reason may quote pushed file names
    if plan.verb == "skip":
        return State(plan, stage=Stage.DONE, summary=f"gepa-bot skipped: {plan.reason}")
    if plan.pr_number is None:
        base = (ctx.config.output.base or ctx.env.get("GITHUB_REF_NAME")
                or current_branch(ctx.workspace, fix="check out a branch (actions/checkout does for push and "
                                                     "schedule events) or set GITHUB_REF_NAME"))
        if ctx.config.output.base:
            _check_base_checked_out(ctx.workspace, base)
        repository(ctx)  # reach GitHub before spending rollouts: a bad token fails in seconds, not after the run
        return State(replace(plan, base=base, head=ctx.config.output.branch or branch_for(base)))
    return _plan_comment(ctx, plan)


def _plan_comment(ctx: Context, plan: Plan) -> State:
    """A `/gepa ...` comment on a PR: check the commenter, react, check out the PR branch."""
    repo = repository(ctx)
    assert plan.pr_number is not None and plan.comment_id is not None and plan.commenter
    if not rest.commenter_can_write(repo, plan.commenter):
        rest.react(repo, plan.comment_id, "confused")
        rest.post_comment(repo, plan.pr_number, f"Sorry @{plan.commenter}, only people with write access to this "
                                              "repository can run `/gepa` commands.")
        return State(plan, stage=Stage.DONE, summary=f"gepa-bot refused a command from {plan.commenter} (no write access)")
    if plan.verb == "invalid":
        rest.react(repo, plan.comment_id, "confused")
        rest.post_comment(repo, plan.pr_number, f"gepa-bot: {plan.reason}")
        return State(plan, stage=Stage.DONE, summary=plan.reason)
    rest.react(repo, plan.comment_id, "eyes")
    if plan.verb == "stop":
        # This job cannot see whether another run was in progress: say what is true either way.
        rest.post_comment(repo, plan.pr_number, "gepa-bot: `/gepa stop` received. If an optimization for this pull "
                                              "request was running, the workflow's concurrency group "
                                              "(`cancel-in-progress`) has cancelled it; nothing of gepa-bot's runs "
                                              "for it now.")
        return State(plan, stage=Stage.DONE, summary="stop requested")
    pr = rest.get_pull(repo, plan.pr_number)
    if rest.is_fork_pull(pr):
        rest.post_comment(repo, plan.pr_number, "gepa-bot: this pull request comes from a fork. Its code is never run "
                                              "with this repository's secrets; push the branch here to optimize it.")
        return State(plan, stage=Stage.DONE, summary="refused: fork pull request")
    if plan.verb == "apply":  # runs no eval: the publish phase (write permissions) switches the branch
        return State(plan, stage=Stage.APPLY)
    target, head = pr.head.ref, branch_for(pr.head.ref)
    if target.startswith(BRANCH_PREFIX) or target == ctx.config.output.branch:
        # the bot's own proposal: work on its base, update it in place
        target, head = pr.base.ref, pr.head.ref
        rest.post_comment(repo, plan.pr_number, f"gepa-bot: this is gepa-bot's own proposal; working on its base "
                                              f"`{untrusted(target, 100)}` and updating this pull request in place.")
    checkout_branch(ctx.workspace, ctx.remote_url, ctx.token, target)  # same repository only: forks were refused
    plan = replace(plan, base=target, head=head)
    if plan.verb == "evaluate":
        return State(plan, stage=Stage.EVALUATE)
    rest.post_comment(repo, pr.number, f"gepa-bot: optimizing `{untrusted(target, 100)}`"
                                     + (f" with a budget of {plan.budget} rollouts" if plan.budget else "") + "…")
    return State(plan)


def _check_base_checked_out(workspace: Path, base: str) -> None:
    """An explicit base must be what the workspace holds: the evals run on the checked-out files."""
    repo = git.Repo(workspace)
    for ref in (f"refs/heads/{base}", f"refs/remotes/origin/{base}"):
        try:
            if repo.commit(ref) == repo.head.commit:
                return
        except (git.BadName, ValueError):
            continue
    raise UserError(f"input 'base' (output.base): the workspace has {repo.head.commit.hexsha[:12]} checked out, not "
                    f"the tip of {base!r}", fix=f"check out {base!r} (actions/checkout with `ref: {base}`) or drop "
                    "the base setting to use the branch the workflow runs on")


# --- phase 2: optimize (NO token: the only phase that runs evals) -------------------------------------

def optimize_phase(ctx: Context, state: State) -> State:
    """Run the search (or score the current prompts) and render the report; touches no GitHub API."""
    if state.stage not in (Stage.OPTIMIZE, Stage.EVALUATE):
        return state
    refuse_stored_credentials(ctx.workspace)  # before any eval: it could read them
    if state.plan.pr_number is not None:  # the PR may change the config (new or renamed prompt files)
        ctx.config = with_overrides(load_config(ctx.config_path), source="action inputs", **ctx.inputs.pull_request)
    settings = _settings(ctx, state.plan)
    if state.stage is Stage.EVALUATE:
        return replace(state, stage=Stage.PUBLISH, evaluation=evaluate_current(settings))
    ctx.emit("::group::gepa-bot: optimizing (one status line per 10% of the rollout budget)")
    settings.on_progress = progress_lines(settings.config.budget.rollouts, lambda line: ctx.emit(log_line(line, 600)))
    try:
        result = optimize(settings)
    finally:
        ctx.emit("::endgroup::")
    report = proposal_report(result, ctx.workspace, state.plan.base or "", full_report_where=full_report_where(ctx.env),
                             footer=run_footer(ctx, state.plan, result.budget.rollouts_limit, result.seed))
    report.write(settings.run_dir)
    print_untrusted(report.body, ctx.emit)  # the publish phase renders the same body from the result
    for error in result.search_errors:
        where = f"{error.where}: {error.type}: {error.message}"
        ctx.emit(f"::error::{command_data(where, 600)}")
    return replace(state, stage=Stage.PUBLISH, result_file=str(settings.run_dir / RESULT_NAME))


def main(env: Mapping[str, str] | None = None, phase: str | None = None) -> int:
    """Console entry: returns the process exit code. ``phase``: plan | optimize | publish (None: all three)."""
    env = env if env is not None else dict(os.environ)
    try:
        if phase:
            run_phase(phase, env)
        else:
            run(env)
    except UserError as exc:
        print(f"::error::{command_data(str(exc), 2000)}")
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
