"""`gepa-bot action`: the GitHub Actions entry point.

Reads the event GitHub sends (GITHUB_EVENT_NAME / GITHUB_EVENT_PATH), decides what to do, runs the
optimization, pushes the best variant to `gepa-bot/<base>` and opens, updates or closes ONE pull
request, then writes GITHUB_OUTPUT and GITHUB_STEP_SUMMARY. Security rules: secrets are masked,
untrusted text is printed between `::stop-commands::` markers, comments are obeyed only from users
with write access, fork PR heads are never checked out or run, nothing is pushed to the default branch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git

from gepa_bot import github as gh
from gepa_bot.config import DEFAULT_CONFIG_NAME, Config, load_config, with_overrides
from gepa_bot.engine import evaluate_current, optimize
from gepa_bot.errorpolicy import RunStopped
from gepa_bot.errors import UserError
from gepa_bot.report import progress_lines, render, untrusted, verdict
from gepa_bot.result import RESULT_NAME, Evaluation, RunResult
from gepa_bot.session import RunSettings
from gepa_bot.trigger import Plan, plan_for
from gepa_bot.workflow import Inputs, Outputs, command_data, log_line, mask_secrets, print_untrusted, write_outputs

# --- running ----------------------------------------------------------------------------------------
#
# Three phases, so that no process that runs an eval ever holds the GitHub token (an eval can read its
# ancestors' /proc/<pid>/environ): `plan` (token, runs no eval: reads the event, checks the commenter,
# checks out a PR branch), `optimize` (NO token: runs the evals and the search), `publish` (token, runs
# no eval: pushes the branch, opens/updates/closes the PR, comments). action.yml runs them as three
# steps and only the first and last get the token; they hand over a JSON state file in RUNNER_TEMP.
# `run()` chains the same three functions in one process (docker entrypoint, other CI, tests).

TOKEN_NAMES = ("GEPA_BOT_TOKEN", "INPUT_TOKEN", "GITHUB_TOKEN", "GH_TOKEN")


@dataclass
class Context:
    """Everything an action run needs from its environment (``token`` is empty in the optimize phase)."""

    env: Mapping[str, str]
    inputs: Inputs
    workspace: Path
    config_path: Path
    config: Config
    repo_name: str
    token: str
    emit: Callable[[str], None]
    github_kwargs: dict[str, Any] = field(default_factory=dict)
    repository: Any = None  # the PyGithub Repository, connected once per process (see _repository)

    @property
    def remote_url(self) -> str:
        server = self.env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        return f"{server}/{self.repo_name}.git"


@dataclass
class State:
    """What one phase hands to the next (JSON in RUNNER_TEMP; never holds a secret)."""

    plan: Plan
    stage: str = "optimize"  # "optimize" | "evaluate" | "publish" | "stopped" (by errors) | "done"
    summary: str = ""
    outputs: dict[str, str] = field(default_factory=lambda: dict(Outputs().values))
    result_file: str | None = None
    body: str = ""
    evaluation: Evaluation | None = None

    def to_json(self) -> dict[str, Any]:
        evaluation = self.evaluation.model_dump(mode="json") if self.evaluation is not None else None
        return {**dataclasses.asdict(dataclasses.replace(self, evaluation=None)), "evaluation": evaluation}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> State:
        evaluation = Evaluation.model_validate(data["evaluation"]) if data.get("evaluation") is not None else None
        return cls(plan=Plan(**data["plan"]), evaluation=evaluation,
                   **{k: v for k, v in data.items() if k not in ("plan", "evaluation")})


def run(env: Mapping[str, str], emit: Callable[[str], None] = print, **github_kwargs: Any) -> Outputs:
    """Handle the current GitHub event in one process; returns the outputs (also written to GITHUB_OUTPUT)."""
    mask_secrets(env, emit)
    ctx = _context(env, emit, github_kwargs)
    state = plan_phase(ctx)
    try:
        state = optimize_phase(ctx, state)
    except RunStopped as exc:
        publish_phase(ctx, stopped(state, exc))  # answers a comment with the cause; the PR is left alone
        raise
    return publish_phase(ctx, state)


def stopped(state: State, exc: RunStopped) -> State:
    """The state of a run that errors stopped: publish leaves the PR and its branch alone and only reports why."""
    state.stage, state.summary = "stopped", f"gepa-bot: {exc}"
    return state


def run_phase(phase: str, env: Mapping[str, str], emit: Callable[[str], None] = print, **github_kwargs: Any) -> None:
    """One phase in its own process (action.yml's steps); the state file carries what the next one needs."""
    mask_secrets(env, emit)
    state_file = _state_file(env)
    if phase == "optimize":
        present = [n for n in TOKEN_NAMES if env.get(n)]
        if present:
            raise UserError(f"phase optimize: {', '.join(present)} is set, but the phase that runs evals must never "
                            "hold the GitHub token", fix="pass the token only to the plan and publish steps "
                            "(see action.yml)")
    ctx = _context(env, emit, github_kwargs, token_required=phase != "optimize")
    if phase == "plan":
        state = plan_phase(ctx)
        write_plan_outputs(env, ctx, state)
    else:
        if not state_file.is_file():
            raise UserError(f"phase {phase}: no state file {state_file}", fix="run the plan phase first (action.yml)")
        state = State.from_json(json.loads(state_file.read_text(encoding="utf-8")))
        if phase == "optimize":
            try:
                state = optimize_phase(ctx, state)
            except RunStopped as exc:  # the publish step (if: always()) reads it and reports the cause
                state_file.write_text(json.dumps(stopped(state, exc).to_json()), encoding="utf-8")
                raise
        else:
            publish_phase(ctx, state)
            return
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(state.to_json()), encoding="utf-8")


RUN_ARTIFACT = "gepa-bot-run"  # action.yml uploads the run directory under this name


def full_report_where(env: Mapping[str, str]) -> str:
    """Where a reviewer finds report-full.md: the run artifact action.yml uploads (the runner's disk is gone)."""
    if not env.get("GITHUB_RUN_ID") or not env.get("GITHUB_REPOSITORY"):
        return "in `report-full.md` in the run directory"
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    return f"in `report-full.md` of the `{RUN_ARTIFACT}` artifact of [this workflow run]({url})"


def write_plan_outputs(env: Mapping[str, str], ctx: Context, state: State) -> None:
    """What action.yml's cache and artifact steps need: whether anything runs, where, and the cache scope.

    The cache is restored only from runs on the same branch (``scope``): an optimization of a PR branch
    never feeds scores into the default branch's runs.
    """
    if not env.get("GITHUB_OUTPUT"):
        return
    config = load_config(ctx.config_path) if state.plan.pr_number is not None else ctx.config  # the PR's own
    values = {"work": "true" if state.stage != "done" else "false", "scope": state.plan.base or "none",
              "cache-dir": config.output.cache_dir, "run-dir": config.output.run_dir}
    broken = [name for name, value in values.items() if "\n" in value or "\r" in value]
    if broken:  # a line break would let the value write other step outputs
        raise UserError(f"{ctx.config_path}: {', '.join(broken)} contains a line break", fix="use a plain path")
    with open(env["GITHUB_OUTPUT"], "a", encoding="utf-8") as handle:
        handle.writelines(f"{name}={value}\n" for name, value in values.items())


def run_footer(ctx: Context, plan: Plan, settings: RunSettings) -> str:
    """The last line of the PR body: what triggered the run, on which commit, where its log is, how to rerun it."""
    sha = git.Repo(ctx.workspace).head.commit.hexsha
    config = settings.config
    command = f"gepa-bot optimize --repo . --budget {config.budget.rollouts} --seed {config.optimizer.seed}"
    if ctx.config_path.name != DEFAULT_CONFIG_NAME or ctx.config_path.parent != ctx.workspace:
        command += f" --config {_relative(ctx.config_path, ctx.workspace)}"
    parts = [f"Trigger: {untrusted(plan.reason, 200)}", f"base `{untrusted(plan.base or '', 100)}` at `{sha[:12]}`"]
    if ctx.env.get("GITHUB_RUN_ID"):
        server = ctx.env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        parts.append(f"[workflow run]({server}/{ctx.repo_name}/actions/runs/{ctx.env['GITHUB_RUN_ID']})")
    parts.append(f"reproduce locally: `{untrusted(command, 300)}`")
    return "\n\n---\n<sub>" + " · ".join(parts) + "</sub>\n"


def _state_file(env: Mapping[str, str]) -> Path:
    return Path(env.get("RUNNER_TEMP") or env.get("GITHUB_WORKSPACE") or ".") / "gepa-bot-state" / "state.json"


def _context(env: Mapping[str, str], emit: Callable[[str], None], github_kwargs: dict[str, Any],
             token_required: bool = True) -> Context:
    missing = [n for n in ("GITHUB_EVENT_PATH", "GITHUB_REPOSITORY") if not env.get(n)]
    if missing:
        raise UserError(f"environment: {', '.join(missing)} not set", fix="run `gepa-bot action` inside GitHub "
                        "Actions (or set the variables GitHub sets); use `gepa-bot optimize` locally")
    inputs = Inputs.from_env(env)
    token = inputs.token
    if token_required and not token:
        raise UserError("input 'token': no GitHub token", fix="pass `token: ${{ github.token }}` (the default) "
                        "or a PAT with contents/pull-requests write access")
    workspace = Path(env.get("GITHUB_WORKSPACE") or ".").resolve()
    config_path = (workspace / inputs.config).resolve()
    if not config_path.is_relative_to(workspace):
        raise UserError(f"input 'config': {config_path} is outside the workspace", fix="use a path inside the repo")
    config = with_overrides(load_config(config_path), source="action inputs", **inputs.pull_request)
    return Context(env=env, inputs=inputs, workspace=workspace, config_path=config_path, config=config,
                   repo_name=env["GITHUB_REPOSITORY"], token=token, emit=emit, github_kwargs=github_kwargs)


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _checked_out_branch(workspace: Path) -> str:
    repo = git.Repo(workspace)
    if repo.head.is_detached:
        raise UserError("the workspace is on a detached HEAD", fix="check out a branch (actions/checkout does for push "
                        "and schedule events) or set GITHUB_REF_NAME")
    return repo.active_branch.name


def _settings(ctx: Context, plan: Plan) -> RunSettings:
    config = with_overrides(ctx.config, source="action inputs", budget=plan.budget or ctx.inputs.budget,
                            model=ctx.inputs.model, reflection_model=ctx.inputs.reflection_model)
    return RunSettings(repo=ctx.workspace, config=config, config_path=ctx.config_path,
                       run_dir=ctx.workspace / config.output.run_dir, cache_dir=ctx.workspace / config.output.cache_dir,
                       only_files=plan.files)


def _repository(ctx: Context):
    if ctx.repository is None:
        ctx.repository = gh.get_repository(gh.connect(ctx.token, ctx.env.get("GITHUB_API_URL"), **ctx.github_kwargs),
                                           ctx.repo_name)
    return ctx.repository


# --- phase 1: plan (token, no eval) -------------------------------------------------------------------

def plan_phase(ctx: Context) -> State:
    """Decide what to do; for a comment, check the commenter and check out the PR's branch."""
    event = json.loads(Path(ctx.env["GITHUB_EVENT_PATH"]).read_text(encoding="utf-8"))
    plan = plan_for(ctx.env.get("GITHUB_EVENT_NAME", ""), event, ctx.config, _relative(ctx.config_path, ctx.workspace))
    ctx.emit(f"gepa-bot: {plan.verb} ({log_line(plan.reason, 500)})")  # the reason may quote pushed file names
    if plan.verb == "skip":
        return State(plan, stage="done", summary=f"gepa-bot skipped: {plan.reason}")
    if plan.pr_number is None:
        plan.base = ctx.config.output.base or ctx.env.get("GITHUB_REF_NAME") or _checked_out_branch(ctx.workspace)
        if ctx.config.output.base:
            _check_base_checked_out(ctx.workspace, plan.base)
        plan.head = ctx.config.output.branch or gh.branch_for(plan.base)
        _repository(ctx)  # reach GitHub before spending rollouts: a bad token fails in seconds, not after the run
        return State(plan)
    return _plan_comment(ctx, plan)


def _plan_comment(ctx: Context, plan: Plan) -> State:
    """A `/gepa ...` comment on a PR: check the commenter, react, check out the PR branch."""
    repo = _repository(ctx)
    assert plan.pr_number is not None and plan.comment_id is not None and plan.commenter
    if not gh.commenter_can_write(repo, plan.commenter):
        gh.react(repo, plan.comment_id, "confused")
        gh.post_comment(repo, plan.pr_number, f"Sorry @{plan.commenter}, only people with write access to this "
                                              "repository can run `/gepa` commands.")
        return State(plan, stage="done", summary=f"gepa-bot refused a command from {plan.commenter} (no write access)")
    if plan.verb == "invalid":
        gh.react(repo, plan.comment_id, "confused")
        gh.post_comment(repo, plan.pr_number, f"gepa-bot: {plan.reason}")
        return State(plan, stage="done", summary=plan.reason)
    gh.react(repo, plan.comment_id, "eyes")
    if plan.verb == "stop":
        # This job cannot see whether another run was in progress: say what is true either way.
        gh.post_comment(repo, plan.pr_number, "gepa-bot: `/gepa stop` received. If an optimization for this pull "
                                              "request was running, the workflow's concurrency group "
                                              "(`cancel-in-progress`) has cancelled it; nothing of gepa-bot's runs "
                                              "for it now.")
        return State(plan, stage="done", summary="stop requested")
    pr = gh.get_pull(repo, plan.pr_number)
    if gh.is_fork_pull(pr):
        gh.post_comment(repo, plan.pr_number, "gepa-bot: this pull request comes from a fork. Its code is never run "
                                              "with this repository's secrets; push the branch here to optimize it.")
        return State(plan, stage="done", summary="refused: fork pull request")
    target, plan.head = pr.head.ref, gh.branch_for(pr.head.ref)
    if target.startswith(gh.BRANCH_PREFIX) or target == ctx.config.output.branch:
        # the bot's own proposal: work on its base, update it in place
        target, plan.head = pr.base.ref, pr.head.ref
        gh.post_comment(repo, plan.pr_number, f"gepa-bot: this is gepa-bot's own proposal; working on its base "
                                              f"`{untrusted(target, 100)}` and updating this pull request in place.")
    _checkout_pr_head(ctx, target)
    plan.base = target
    if plan.verb == "evaluate":
        return State(plan, stage="evaluate")
    gh.post_comment(repo, plan.pr_number, f"gepa-bot: optimizing `{untrusted(target, 100)}`"
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


def _checkout_pr_head(ctx: Context, ref: str) -> None:
    """Fetch and check out the PR's branch (same repository only: forks were refused before)."""
    repo = git.Repo(ctx.workspace)
    if not repo.head.is_detached and repo.active_branch.name == ref:
        return
    repo.git.fetch("--quiet", ctx.remote_url, f"+refs/heads/{ref}:refs/heads/{ref}",
                   env=gh._auth_env(ctx.remote_url, ctx.token))
    repo.git.checkout("--quiet", ref)


# --- phase 2: optimize (NO token: the only phase that runs evals) -------------------------------------

def optimize_phase(ctx: Context, state: State) -> State:
    """Run the search (or score the current prompts) and render the report; touches no GitHub API."""
    if state.stage not in ("optimize", "evaluate"):
        return state
    if state.plan.pr_number is not None:  # the PR may change the config (new or renamed prompt files)
        ctx.config = with_overrides(load_config(ctx.config_path), source="action inputs", **ctx.inputs.pull_request)
    settings = _settings(ctx, state.plan)
    if state.stage == "evaluate":
        state.evaluation = evaluate_current(settings)
        state.stage = "publish"
        return state
    ctx.emit("::group::gepa-bot: optimizing (one status line per 10% of the rollout budget)")
    settings.on_progress = progress_lines(settings.config.budget.rollouts, lambda line: ctx.emit(log_line(line, 600)))
    try:
        result = optimize(settings)
    finally:
        ctx.emit("::endgroup::")
    originals = {p: (ctx.workspace / p).read_text(encoding="utf-8") for p in result.best_files}
    body, full = render(result, originals, full_report_where(ctx.env))
    body += run_footer(ctx, state.plan, settings)
    (settings.run_dir / "report-full.md").write_text(full, encoding="utf-8")
    print_untrusted(body, ctx.emit)
    for error in result.search_errors:
        where = f"{error.where}: {error.type}: {error.message}"
        ctx.emit(f"::error::{command_data(where, 600)}")
    v = verdict(result)
    state.outputs.update({"best-score": f"{v.best:.4f}", "baseline-score": f"{v.baseline:.4f}",
                          "rollouts-used": str(result.budget.rollouts_used)})
    state.result_file, state.body, state.stage = str(settings.run_dir / RESULT_NAME), body, "publish"
    return state


# --- phase 3: publish (token, no eval) ----------------------------------------------------------------

def publish_phase(ctx: Context, state: State) -> Outputs:
    """Push the best variant and open/update/close the PR, or answer the comment; write the outputs."""
    outputs = Outputs()
    outputs.values.update(state.outputs)
    summary = state.summary
    if state.stage == "publish" and state.evaluation is not None:
        summary = _comment_evaluation(ctx, state, outputs)
    elif state.stage == "publish":
        summary = _publish_result(ctx, state, outputs)
    elif state.stage == "stopped":
        _report_stop(ctx, state)
    write_outputs(ctx.env, outputs, summary)
    return outputs


def _publish_result(ctx: Context, state: State, outputs: Outputs) -> str:
    plan = state.plan
    assert plan.base and state.result_file
    repo = _repository(ctx)
    result = RunResult.read(Path(state.result_file))
    head, out = plan.head or gh.branch_for(plan.base), ctx.config.output
    marker = gh.proposal_marker(result.best_files)
    # a human closed this very proposal: respected, unless a writer asks again with `/gepa optimize`
    asked_again = plan.comment_id is not None and plan.verb == "optimize"
    improved = verdict(result).improved
    declined = gh.declined_proposal(repo, head, marker) if improved and not asked_again else None
    pr: gh.PullRequest | None
    if declined is not None and gh.find_open_pull(repo, head) is None:
        ctx.emit(f"gepa-bot: #{declined.number} with this same proposal was closed without merging; not reopening "
                 "it (a different proposal, after the prompts or evals change, opens a new pull request)")
        operation, pr = "declined", None
    elif improved:
        try:
            gh.publish_branch(ctx.workspace, plan.base, result.best_files,
                              f"gepa-bot: optimize prompts ({plan.reason})", ctx.remote_url, ctx.token, branch=head)
        except gh.ForeignCommits as exc:
            if (open_pr := gh.find_open_pull(repo, head)) is not None:
                gh.post_comment(repo, open_pr.number, f"gepa-bot: {untrusted(str(exc), 500)}. {exc.fix}.")
            raise
        operation, pr = gh.upsert_pull_request(
            repo, plan.base, head, out.pr_title, f"{marker}\n{state.body}", out.labels, draft=out.draft,
            reviewers=out.reviewers, team_reviewers=out.team_reviewers, assignees=out.assignees,
            warn=lambda message: ctx.emit(f"::warning::{command_data(message, 2000)}"))
    else:
        pr = gh.close_pull_request(repo, head, "Closing: after the latest run no candidate beats the prompts on "
                                               f"`{plan.base}` on the validation set.")
        operation = "closed" if pr else "none"
    if operation != "created" and operation != "updated" and out.delete_branch and \
            gh.delete_bot_branch(ctx.workspace, plan.base, head, ctx.remote_url, ctx.token):
        ctx.emit(f"gepa-bot: deleted the branch {head} (no open pull request of it)")
    if pr is not None:
        outputs.values.update({"pull-request-number": str(pr.number), "pull-request-url": pr.html_url,
                               "pull-request-operation": operation, "pull-request-branch": pr.head.ref,
                               "pull-request-head-sha": pr.head.sha})
    if operation != "declined":
        ctx.emit(f"gepa-bot: pull request {operation}" + (f": {pr.html_url}" if pr else ""))
    else:
        outputs.values["pull-request-operation"] = "none"
    if plan.pr_number is not None:
        v = outputs.values
        done = ("proposed improvements in " + v["pull-request-url"] if operation in ("created", "updated")
                else f"the same proposal was declined in #{declined.number}" if declined is not None
                else "no candidate beats the current prompts")
        gh.post_comment(repo, plan.pr_number, f"gepa-bot: {done} (validation {v['baseline-score']} → "
                                              f"{v['best-score']}, {v['rollouts-used']} rollouts).")
    return state.body


def _report_stop(ctx: Context, state: State) -> None:
    """A run stopped by errors: the PR and the bot's branch stay as they are; a comment command gets the cause."""
    ctx.emit("gepa-bot: the run stopped because of errors; the pull request and its branch were left as they are")
    if state.plan.pr_number is not None and state.plan.comment_id is not None:
        gh.post_comment(_repository(ctx), state.plan.pr_number,
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
    gh.post_comment(_repository(ctx), plan.pr_number, body)
    outputs.values.update({"baseline-score": f"{current.val_mean:.4f}", "best-score": f"{current.val_mean:.4f}",
                           "rollouts-used": str(current.budget.rollouts_used)})
    return body


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
