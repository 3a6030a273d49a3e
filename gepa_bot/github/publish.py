"""Opening the pull request from the command line: `gepa-bot publish`, and `gepa-bot optimize` without --dry-run.

The same code path as the Action's publish phase (gepa_bot/github/action_publish.py): the bot's branch is pushed and ONE
pull request opened, updated or closed, from a finished run directory; no eval runs here. The token comes
from GITHUB_TOKEN / GH_TOKEN / GEPA_BOT_TOKEN.

The process that runs evals must not hold the token where an eval can read it (an eval can read its
ancestors' /proc/<pid>/environ and open file descriptors). So a command that will publish first takes the
token out of its environment: it re-executes itself with the token removed and handed over in a pipe,
which the new process image reads into memory at once and closes (`take_token`). Memory is not readable
by child processes (ptrace rules), the environment block and the descriptors are.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import git

from gepa_bot.config import Config
from gepa_bot.errors import UserError
from gepa_bot.github.action_context import TOKEN_NAMES, Context, State, score_outputs
from gepa_bot.github.action_publish import publish_phase
from gepa_bot.github.apply import embed
from gepa_bot.github.git import branch_for, current_branch
from gepa_bot.github.trigger import Plan
from gepa_bot.github.workflow import Inputs, Outputs
from gepa_bot.report.render import render
from gepa_bot.result import RESULT_NAME, RunResult

TOKEN_FD = "GEPA_BOT_TOKEN_FD"  # internal: the pipe a re-executed gepa-bot reads its token from
REMOTE = re.compile(r"^(?:(?P<scheme>https?)://(?:[^@/]+@)?(?P<host>[^/]+)/|git@(?P<ssh_host>[^:]+):)"
                    r"(?P<name>[\w.-]+/[\w.-]+?)(?:\.git)?/?$")


def take_token(argv: Sequence[str] | None = None) -> str:
    """The GitHub token, with this process's environment holding none: re-executes once if it did."""
    if (fd := os.environ.pop(TOKEN_FD, None)) is not None:
        with os.fdopen(int(fd), "rb") as pipe:
            return pipe.read().decode()
    token = next((os.environ[n] for n in TOKEN_NAMES if os.environ.get(n)), "")
    if not token:
        raise UserError("no GitHub token to open the pull request with", fix="set GITHUB_TOKEN (a token with "
                        "contents and pull-requests write access), or pass --dry-run to write the PR body only")
    read_end, write_end = os.pipe()
    os.write(write_end, token.encode())  # a token is far below the pipe's buffer: never blocks
    os.close(write_end)
    os.set_inheritable(read_end, True)
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_NAMES}
    env[TOKEN_FD] = str(read_end)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "gepa_bot.cli", *(argv if argv is not None else sys.argv[1:])],
              env)
    raise AssertionError("unreachable")


def github_remote(workspace: Path) -> tuple[str, str]:
    """(server URL, owner/name) of the repository's `origin` remote."""
    try:
        url = git.Repo(workspace).remotes.origin.url
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, AttributeError, ValueError):
        raise UserError(f"{workspace}: not a git checkout with an `origin` remote",
                        fix="run in a clone of the GitHub repository, or pass --github-repo OWNER/NAME") from None
    match = REMOTE.match(url)
    if match is None:
        raise UserError(f"{workspace}: cannot tell the GitHub repository from origin {url!r}",
                        fix="pass --github-repo OWNER/NAME")
    host = match["host"] or match["ssh_host"]
    return f"{match['scheme'] or 'https'}://{host}", match["name"]


def api_url_for(server_url: str) -> str:
    """GitHub's REST URL for a server: api.github.com, or GitHub Enterprise Server's /api/v3."""
    if env_url := os.environ.get("GITHUB_API_URL"):
        return env_url
    return "https://api.github.com" if server_url.rstrip("/") == "https://github.com" else \
        server_url.rstrip("/") + "/api/v3"


def publish_run(workspace: Path, config_path: Path, config: Config, run_dir: Path, token: str, *,
                github_repo: str | None = None, base: str | None = None, emit: Callable[[str], None] = print,
                **github_kwargs: Any) -> Outputs:
    """Push the run's best prompts and open/update/close the PR, exactly as the Action's publish phase."""
    result_file = run_dir / RESULT_NAME
    if not result_file.is_file():
        raise UserError(f"{run_dir}: no result.json", fix="run `gepa-bot optimize` first (same --run-dir)")
    result = RunResult.read(result_file)
    server, remote_name = github_remote(workspace)
    repo_name = github_repo or remote_name
    branch = base or config.output.base or current_branch(workspace, fix="check out the branch to propose to, or pass --base")
    plan = Plan(verb="optimize", reason="gepa-bot publish (command line)", base=branch,
                head=config.output.branch or branch_for(branch))
    originals = {p: (workspace / p).read_text(encoding="utf-8") for p in result.best_files}
    choices = embed(result, branch, git.Repo(workspace).head.commit.hexsha)  # for `/gepa apply N` on the PR
    body, _full = render(result, originals, reserve=len(choices))
    body += choices
    ctx = Context(env={"GITHUB_SERVER_URL": server, "GITHUB_API_URL": api_url_for(server)},
                  inputs=Inputs(token=token), workspace=workspace, config_path=config_path, config=config,
                  repo_name=repo_name, token=token, emit=emit, github_kwargs=github_kwargs)
    state = State(plan, stage="publish", result_file=str(result_file), body=body)
    state.outputs.update(score_outputs(result))
    return publish_phase(ctx, state, result)
