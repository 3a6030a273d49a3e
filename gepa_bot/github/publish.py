"""Publishing a finished run: the one path from a result to GitHub, for the command line, the Action and the bench.

:func:`publish` takes a :class:`~gepa_bot.result.RunResult`, its :class:`~gepa_bot.report.render.Report` and a
:class:`PublishTarget` (where and how to publish), pushes the best prompts to the bot's branch and opens, updates
or closes ONE pull request; it returns a :class:`PublishOutcome` whose ``operation`` says which. No eval runs here.
Callers only build the target: `gepa-bot publish` and `gepa-bot optimize` without --dry-run from the flags and the
checkout (:func:`target_from_checkout`; the token comes from GITHUB_TOKEN / GH_TOKEN / GEPA_BOT_TOKEN), the
Action's publish phase from its environment (gepa_bot/github/action_publish.py).

The process that runs evals must not hold the token where an eval can read it: a command that will publish first
takes it out of its environment (gepa_bot/github/tokenpipe.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import git
from github.PullRequest import PullRequest
from github.Repository import Repository

from gepa_bot.config import Config, OutputConfig
from gepa_bot.errors import UserError
from gepa_bot.escaping import untrusted
from gepa_bot.github import rest
from gepa_bot.github.apply import embed
from gepa_bot.github.git import ForeignCommits, branch_for, current_branch, delete_bot_branch, publish_branch
from gepa_bot.github.safegit import head_sha
from gepa_bot.github.workflow import command_data
from gepa_bot.report.jobsummary import no_pull_request, run_summary
from gepa_bot.report.render import FULL_REPORT_HERE, Report, original_files, render
from gepa_bot.result import RunResult
from gepa_bot.verdict import verdict

REMOTE = re.compile(r"^(?:(?P<scheme>https?)://(?:[^@/]+@)?(?P<host>[^/]+)/|git@(?P<ssh_host>[^:]+):)"
                    r"(?P<name>[\w.-]+/[\w.-]+?)(?:\.git)?/?$")


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


class Operation(StrEnum):
    """What publishing did to the bot's pull request."""

    OPENED = "opened"  # a new pull request with the proposal
    UPDATED = "updated"  # the open pull request now holds the proposal (maybe unchanged: nothing pushed)
    CLOSED = "closed"  # nothing beats the current prompts: the open pull request was closed
    UNCHANGED = "unchanged"  # nothing beats the current prompts and no pull request was open: nothing to do
    LEFT_ALONE = "left_alone"  # a human closed this same proposal unmerged (it is not reopened), or the run stopped

    @property
    def output(self) -> str:
        """The Action's ``pull-request-operation`` output (action.yml): created, updated, closed or none."""
        return {Operation.OPENED: "created", Operation.UPDATED: "updated", Operation.CLOSED: "closed"}.get(self, "none")


@dataclass(frozen=True)
class PullRequestSettings:
    """What the pull request looks like: ``output:`` in .gepa-bot.yml (the Action's inputs of the same names
    override it)."""

    title: str = OutputConfig.model_fields["pr_title"].default
    labels: tuple[str, ...] = ()
    draft: bool = False
    reviewers: tuple[str, ...] = ()
    team_reviewers: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()
    delete_branch: bool = True  # delete the bot's branch when no pull request of it is open any more

    @classmethod
    def of(cls, output: OutputConfig) -> PullRequestSettings:
        return cls(title=output.pr_title, labels=tuple(output.labels), draft=output.draft,
                   reviewers=tuple(output.reviewers), team_reviewers=tuple(output.team_reviewers),
                   assignees=tuple(output.assignees), delete_branch=output.delete_branch)


@dataclass(frozen=True)
class PublishTarget:
    """Where and how a run is published (built from the command line's flags or the Action's environment)."""

    workspace: Path  # the checkout the bot's commit is made in (its files are never touched)
    repo_name: str  # owner/name on GitHub
    server_url: str  # https://github.com, or a GitHub Enterprise Server
    api_url: str  # GitHub's REST API for it
    token: str = field(repr=False)
    base: str  # the branch proposed to
    head: str  # the bot's branch
    base_sha: str | None = None  # the commit the bot's branch is built on (default: the tip of ``base``)
    pull_request: PullRequestSettings = PullRequestSettings()
    reason: str = "gepa-bot publish (command line)"  # what asked for the run: the commit message says it
    reply_to: int | None = None  # the pull request a `/gepa optimize` comment came from: it gets a one-line reply
    asked_again: bool = False  # a writer's `/gepa optimize`: a proposal a human declined is proposed again
    emit: Callable[[str], None] = print
    github_kwargs: Mapping[str, Any] = field(default_factory=dict)  # for github.Github (retries, timeouts)

    @property
    def remote_url(self) -> str:
        return f"{self.server_url.rstrip('/')}/{self.repo_name}.git"

    def repository(self) -> Repository:
        """The repository through GitHub's REST API (one request: raises GitHubError on a bad token)."""
        return rest.get_repository(rest.connect(self.token, self.api_url, **self.github_kwargs), self.repo_name)


@dataclass(frozen=True)
class PullRequestRef:
    """The pull request publishing opened, updated or closed."""

    number: int
    url: str
    branch: str
    head_sha: str


@dataclass(frozen=True)
class PublishOutcome:
    """What :func:`publish` did: the operation, the pull request, and the job summary of it."""

    operation: Operation
    pull_request: PullRequestRef | None = None
    declined: int | None = None  # LEFT_ALONE: the number of the closed pull request with this same proposal
    summary: str = ""  # Markdown for the Actions job summary

    def outputs(self) -> dict[str, str]:
        """The Action's ``pull-request-*`` outputs (action.yml)."""
        values = {"pull-request-operation": self.operation.output}
        if self.pull_request is not None:
            pr = self.pull_request
            values.update({"pull-request-number": str(pr.number), "pull-request-url": pr.url,
                           "pull-request-branch": pr.branch, "pull-request-head-sha": pr.head_sha})
        return values


def target_from_checkout(workspace: Path, config: Config, token: str, *, github_repo: str | None = None,
                         base: str | None = None, emit: Callable[[str], None] = print,
                         **github_kwargs: Any) -> PublishTarget:
    """The command line's target: the GitHub repository of ``origin`` (or ``github_repo``), proposed to ``base``
    (default: output.base, else the checked-out branch)."""
    server, remote_name = github_remote(workspace)
    branch = base or config.output.base or current_branch(workspace, fix="check out the branch to propose to, or pass --base")
    return PublishTarget(workspace=workspace, repo_name=github_repo or remote_name, server_url=server,
                         api_url=api_url_for(server), token=token, base=branch,
                         head=config.output.branch or branch_for(branch),
                         pull_request=PullRequestSettings.of(config.output), emit=emit, github_kwargs=github_kwargs)


def proposal_report(result: RunResult, workspace: Path, base: str, base_sha: str | None = None, *,
                    full_report_where: str = FULL_REPORT_HERE, footer: str = "") -> Report:
    """The report of a run to publish: its PR body ends with the choices `/gepa apply N` reads
    (gepa_bot/github/apply.py), scored on ``base`` at ``base_sha`` (default: the checkout's HEAD), and ``footer``."""
    base_sha = base_sha or head_sha(workspace)
    return render(result, original_files(result, workspace), full_report_where,
                  trailer=embed(result, base, base_sha) + footer)


def publish(result: RunResult, report: Report, target: PublishTarget, *,
            repository: Repository | None = None) -> PublishOutcome:
    """Push the best prompts to the bot's branch and open or update ONE pull request with ``report.body``, or close
    the open one when nothing beats the current prompts. A proposal a human closed unmerged is not reopened
    (unless ``target.asked_again``); a branch with someone else's commits is never overwritten (ForeignCommits).

    ``repository``: the REST repository when the caller is already connected (else :meth:`PublishTarget.repository`).
    """
    repo = repository if repository is not None else target.repository()
    head, settings, v = target.head, target.pull_request, verdict(result)
    marker = rest.proposal_marker(result.best_files)
    declined = rest.declined_proposal(repo, head, marker) if v.improved and not target.asked_again else None
    pr: PullRequest | None = None
    if declined is not None and rest.find_open_pull(repo, head) is None:
        target.emit(f"gepa-bot: #{declined.number} with this same proposal was closed without merging; not reopening "
                    "it (a different proposal, after the prompts or evals change, opens a new pull request)")
        operation = Operation.LEFT_ALONE
    elif v.improved:
        declined = None
        try:
            publish_branch(target.workspace, target.base, result.best_files,
                           f"gepa-bot: optimize prompts ({target.reason})", target.remote_url, target.token,
                           branch=head, base_sha=target.base_sha)
        except ForeignCommits as exc:
            if (open_pr := rest.find_open_pull(repo, head)) is not None:
                rest.post_comment(repo, open_pr.number, f"gepa-bot: {untrusted(str(exc), 500)}. {exc.fix}.")
            raise
        done, pr = rest.upsert_pull_request(
            repo, target.base, head, settings.title, f"{marker}\n{report.body}", settings.labels,
            draft=settings.draft, reviewers=settings.reviewers, team_reviewers=settings.team_reviewers,
            assignees=settings.assignees, warn=lambda message: target.emit(f"::warning::{command_data(message, 2000)}"))
        operation = Operation.OPENED if done == "created" else Operation.UPDATED
    else:
        pr = rest.close_pull_request(repo, head, "Closing: after the latest run no candidate beats the prompts on "
                                                 f"`{target.base}` on the validation set.")
        operation = Operation.CLOSED if pr is not None else Operation.UNCHANGED
    proposed = operation in (Operation.OPENED, Operation.UPDATED)
    if not proposed and settings.delete_branch and delete_bot_branch(
            target.workspace, target.base, head, target.remote_url, target.token, base_sha=target.base_sha):
        target.emit(f"gepa-bot: deleted the branch {head} (no open pull request of it)")
    ref = PullRequestRef(pr.number, pr.html_url, pr.head.ref, pr.head.sha) if pr is not None else None
    if operation is not Operation.LEFT_ALONE:
        target.emit(f"gepa-bot: pull request {operation.output}" + (f": {ref.url}" if ref else ""))
    if ref is not None and proposed:
        what = f"Pull request {operation.output}: {ref.url}"
    elif declined is not None:
        what = (f"No pull request: the same proposal was closed without merging in #{declined.number}, and the bot "
                "does not reopen it (a writer's `/gepa optimize` comment asks again).")
    else:
        what = no_pull_request(result) + (f" The open pull request #{ref.number} was closed." if ref else "")
    if target.reply_to is not None:
        done_text = (f"proposed improvements in {ref.url}" if ref is not None and proposed
                     else f"the same proposal was declined in #{declined.number}" if declined is not None
                     else "no candidate beats the current prompts")
        rest.post_comment(repo, target.reply_to, f"gepa-bot: {done_text} (validation {v.baseline:.4f} → "
                                                 f"{v.best:.4f}, {result.budget.rollouts_used} rollouts).")
    return PublishOutcome(operation, ref, declined.number if declined is not None else None,
                          run_summary(result, what))
