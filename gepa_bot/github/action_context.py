"""What every phase of `gepa-bot action` shares: the run's context, the state handed from phase to phase, and
the PR body's pieces that depend on the environment (the footer, where the full report is).

Split from gepa_bot/github/action.py (plan and optimize) and gepa_bot/github/action_publish.py (publish), which both import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from github.Repository import Repository

from gepa_bot.config import DEFAULT_CONFIG_NAME, Config, load_config, with_overrides
from gepa_bot.errors import RunStopped, UserError
from gepa_bot.escaping import untrusted
from gepa_bot.github import rest
from gepa_bot.github.safegit import head_sha
from gepa_bot.github.trigger import Plan
from gepa_bot.github.workflow import Inputs
from gepa_bot.result import Evaluation, RunResult
from gepa_bot.verdict import verdict

RUN_ARTIFACT = "gepa-bot-run"  # action.yml uploads the run directory under this name


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
    repository: Repository | None = None  # connected once per process (see repository())

    @property
    def remote_url(self) -> str:
        server = self.env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        return f"{server}/{self.repo_name}.git"


class Stage(StrEnum):
    """Where a run of the Action stands: what the next phase has to do."""

    OPTIMIZE = "optimize"  # planned: the optimize phase runs the search
    EVALUATE = "evaluate"  # planned (`/gepa evaluate`): the optimize phase scores the current prompts
    APPLY = "apply"  # planned (`/gepa apply N`): the publish phase switches the PR to another candidate, no eval
    PUBLISH = "publish"  # optimized or evaluated: the publish phase publishes the result or comments the scores
    STOPPED = "stopped"  # errors stopped the run: the publish phase leaves the PR alone and reports why
    DONE = "done"  # nothing (more) to do: skipped, refused, or answered in the plan phase


@dataclass(frozen=True)
class State:
    """What one phase hands to the next (JSON in RUNNER_TEMP, or the plan job's output; never holds a secret).

    ``result_file``: the optimization's result.json (stage PUBLISH without ``evaluation``). ``evaluation``: the
    scores of the current prompts (stage PUBLISH after `/gepa evaluate`). ``base_sha`` is set only by the publish job
    of the three-job layout: the commit the validated artifact was made on (the plan's base SHA), which the bot's
    branch is built on.
    """

    plan: Plan
    stage: Stage = Stage.OPTIMIZE
    summary: str = ""
    result_file: str | None = None
    evaluation: Evaluation | None = None
    base_sha: str | None = None

    def to_json(self) -> dict[str, Any]:
        evaluation = self.evaluation.model_dump(mode="json") if self.evaluation is not None else None
        return {"plan": dataclasses.asdict(self.plan), "stage": self.stage.value, "summary": self.summary,
                "result_file": self.result_file, "evaluation": evaluation, "base_sha": self.base_sha}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> State:
        """The state a phase wrote (keys of earlier releases that are no longer used, such as ``body``, ignored)."""
        evaluation = Evaluation.model_validate(data["evaluation"]) if data.get("evaluation") is not None else None
        return cls(plan=Plan(**data["plan"]), stage=Stage(data.get("stage", Stage.OPTIMIZE)),
                   summary=str(data.get("summary") or ""), result_file=data.get("result_file"),
                   evaluation=evaluation, base_sha=data.get("base_sha"))


def stopped(state: State, exc: RunStopped) -> State:
    """The state of a run that errors stopped: publish leaves the PR and its branch alone and only reports why."""
    return dataclasses.replace(state, stage=Stage.STOPPED, summary=f"gepa-bot: {exc}")


def score_outputs(result: RunResult) -> dict[str, str]:
    """The score outputs of a finished run (best-score, baseline-score, rollouts-used)."""
    v = verdict(result)
    return {"best-score": f"{v.best:.4f}", "baseline-score": f"{v.baseline:.4f}",
            "rollouts-used": str(result.budget.rollouts_used)}


def full_report_where(env: Mapping[str, str]) -> str:
    """Where a reviewer finds report-full.md: the run artifact action.yml uploads (the runner's disk is gone)."""
    if not env.get("GITHUB_RUN_ID") or not env.get("GITHUB_REPOSITORY"):
        return "in `report-full.md` in the run directory"
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    return f"in `report-full.md` of the `{RUN_ARTIFACT}` artifact of [this workflow run]({url})"


def run_footer(ctx: Context, plan: Plan, rollouts: int, seed: int) -> str:
    """The last line of the PR body: what triggered the run, on which commit, where its log is, how to rerun it."""
    sha = head_sha(ctx.workspace)
    command = f"gepa-bot optimize --repo . --budget {rollouts} --seed {seed}"
    if ctx.config_path.name != DEFAULT_CONFIG_NAME or ctx.config_path.parent != ctx.workspace:
        command += f" --config {relative(ctx.config_path, ctx.workspace)}"
    parts = [f"Trigger: {untrusted(plan.reason, 200)}", f"base `{untrusted(plan.base or '', 100)}` at `{sha[:12]}`"]
    if ctx.env.get("GITHUB_RUN_ID"):
        server = ctx.env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        parts.append(f"[workflow run]({server}/{ctx.repo_name}/actions/runs/{ctx.env['GITHUB_RUN_ID']})")
    parts.append(f"reproduce locally: `{untrusted(command, 300)}`")
    return "\n\n---\n<sub>" + " · ".join(parts) + "</sub>\n"


def state_file(env: Mapping[str, str]) -> Path:
    return Path(env.get("RUNNER_TEMP") or env.get("GITHUB_WORKSPACE") or ".") / "gepa-bot-state" / "state.json"


def context(env: Mapping[str, str], emit: Callable[[str], None], github_kwargs: dict[str, Any],
            token_required: bool = True) -> Context:
    """The run's context from GitHub's environment variables and the action's inputs."""
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


def relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def repository(ctx: Context) -> Repository:
    """The PyGithub Repository, connected on first use."""
    if ctx.repository is None:
        ctx.repository = rest.get_repository(rest.connect(ctx.token, ctx.env.get("GITHUB_API_URL"), **ctx.github_kwargs),
                                           ctx.repo_name)
    return ctx.repository
