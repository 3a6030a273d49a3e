"""GitHub's REST API through PyGithub: open/update/close the bot's pull request, comments, reactions, permissions.

Every GitHub failure a user can fix is raised as :class:`~gepa_bot.github.git.GitHubError` with a message saying
what to change (:func:`explain`). git itself (the bot's branch) is github/git.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

from github import Auth, Github, GithubException
from github.IssueComment import IssueComment
from github.PullRequest import PullRequest
from github.Repository import Repository

from gepa_bot.github.git import PERMISSIONS_FIX, GitHubError
from gepa_bot.text import BODY_LIMIT, fit_body

DEFAULT_API_URL = "https://api.github.com"
BOT_CLOSED_MARKER = "\n<!-- gepa-bot:closed-by-bot -->"
WRITE_PERMISSIONS = ("admin", "maintain", "write")
REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
ACTIONS_PR_FORBIDDEN = "not permitted to create or approve pull requests"


def connect(token: str, api_url: str | None = None, **github_kwargs: Any) -> Github:
    """A PyGithub client for ``api_url`` (default: $GITHUB_API_URL, then api.github.com).

    ``github_kwargs`` go to :class:`github.Github` (throttling, retry, timeout).
    """
    base_url = api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL
    return Github(auth=Auth.Token(token), base_url=base_url.rstrip("/"), **github_kwargs)


def get_repository(gh: Github, full_name: str) -> Repository:
    """The repository ``owner/name`` (raises GitHubError on a bad token or no access)."""
    with _github(f"reading the repository {full_name}"):
        return gh.get_repo(full_name)


def explain(exc: GithubException, action: str) -> GitHubError:
    """Translate a PyGithub exception raised while doing ``action`` into a GitHubError."""
    data = exc.data if isinstance(exc.data, dict) else {}
    message = str(data.get("message") or exc)
    details = "; ".join(str(e.get("message") or e.get("code")) for e in data.get("errors") or []
                        if isinstance(e, dict))
    said = f"{message} ({details})" if details else message
    if exc.status == 401:
        return GitHubError(f"GitHub rejected the token while {action} (401 {said})",
                           "check the token input / GITHUB_TOKEN: it is missing, expired or revoked")
    if exc.status == 403 and ACTIONS_PR_FORBIDDEN in message:
        return GitHubError(
            f"GitHub refused while {action}: {message}",
            "in the repository (or organization) go to Settings > Actions > General > "
            "Workflow permissions and tick \"Allow GitHub Actions to create and approve pull "
            "requests\", or pass a personal access token / GitHub App token instead of GITHUB_TOKEN")
    if exc.status in (403, 429) and "rate limit" in message.lower():
        return GitHubError(f"GitHub rate-limited the token while {action} ({said})",
                           "wait for the limit to reset (see the X-RateLimit-Reset header) and rerun")
    if exc.status in (403, 404):
        return GitHubError(f"GitHub refused while {action} ({exc.status} {said}): the token "
                           "lacks a permission or cannot see the repository", PERMISSIONS_FIX)
    return GitHubError(f"GitHub failed while {action} ({exc.status} {said})")


@contextlib.contextmanager
def _github(action: str) -> Iterator[None]:
    try:
        yield
    except GithubException as exc:
        raise explain(exc, action) from exc


# ---- pull requests and comments ---------------------------------------------

def find_open_pull(gh_repo: Repository, head_branch: str) -> PullRequest | None:
    """The open PR whose head is ``<repo owner>:<head_branch>``, if any."""
    with _github(f"listing pull requests of {gh_repo.full_name}"):
        for pr in gh_repo.get_pulls(state="open", head=f"{gh_repo.owner.login}:{head_branch}"):
            return pr
    return None


def add_labels(pr: PullRequest, labels: list[str]) -> None:
    """Add ``labels`` to ``pr`` (created on the fly by GitHub when missing)."""
    if not labels:
        return
    with _github(f"labelling pull request #{pr.number}"):
        # The documented body is {"labels": [...]} (PyGithub's add_to_labels posts a bare list).
        pr.requester.requestJsonAndCheck("POST", f"{pr.issue_url}/labels", input={"labels": list(labels)})


def _update(pr: PullRequest, base: str, title: str, body: str) -> None:
    with _github(f"updating pull request #{pr.number}"):
        if pr.base.ref != base:
            pr.edit(title=title, body=body, base=base)
        else:
            pr.edit(title=title, body=body)


def upsert_pull_request(gh_repo: Repository, base: str, head_branch: str, title: str, body: str,
                        labels: list[str] | tuple[str, ...] = (), *, draft: bool = False,
                        reviewers: list[str] | tuple[str, ...] = (), team_reviewers: list[str] | tuple[str, ...] = (),
                        assignees: list[str] | tuple[str, ...] = (), warn: Callable[[str], None] = print
                        ) -> tuple[str, PullRequest]:
    """Update the bot's open PR for ``head_branch`` or create it; never duplicates.

    Labels are added on every run (idempotent). Reviewers and assignees are asked only when the PR is created,
    like Dependabot and Renovate: an update never notifies them again. A reviewer or assignee GitHub refuses
    (not a collaborator, a typo) is a warning, not a failed run. Returns ``("updated" | "created", pr)``.
    """
    body = fit_body(body)
    pr = find_open_pull(gh_repo, head_branch)
    operation = "updated"
    if pr is not None:
        _update(pr, base, title, body)
    else:
        try:
            pr = gh_repo.create_pull(base=base, head=head_branch, title=title, body=body, draft=draft)
            operation = "created"
        except GithubException as exc:
            pr = find_open_pull(gh_repo, head_branch) if _already_exists(exc) else None
            if pr is None:
                raise explain(exc, f"opening a pull request from {head_branch} into {base}") from exc
            _update(pr, base, title, body)
    add_labels(pr, list(labels))
    if operation == "created":
        _ask_people(pr, list(reviewers), list(team_reviewers), list(assignees), warn)
    return operation, pr


def _ask_people(pr: PullRequest, reviewers: list[str], teams: list[str], assignees: list[str],
                warn: Callable[[str], None]) -> None:
    if reviewers or teams:
        try:
            pr.create_review_request(reviewers=reviewers, team_reviewers=teams)
        except GithubException as exc:
            who = ", ".join(reviewers + [f"team {t}" for t in teams])
            warn(str(explain(exc, f"requesting reviews from {who} on #{pr.number}")))
    if assignees:
        try:
            pr.requester.requestJsonAndCheck("POST", f"{pr.issue_url}/assignees", input={"assignees": assignees})
        except GithubException as exc:
            warn(str(explain(exc, f"assigning #{pr.number} to {', '.join(assignees)}")))


def _already_exists(exc: GithubException) -> bool:
    errors = exc.data.get("errors") if exc.status == 422 and isinstance(exc.data, dict) else None
    return any("already exists" in str(e.get("message", "")) for e in errors or [] if isinstance(e, dict))


def close_pull_request(gh_repo: Repository, head_branch: str, comment: str | None = None
                       ) -> PullRequest | None:
    """Close the bot's open PR for ``head_branch`` (commenting why first); None if none is open.

    The body gets BOT_CLOSED_MARKER in the same request, so a later run can tell the bot's own closing
    from a human's decision (see declined_proposal).
    """
    pr = find_open_pull(gh_repo, head_branch)
    if pr is None:
        return None
    if comment:
        post_comment(gh_repo, pr.number, comment)
    with _github(f"closing pull request #{pr.number}"):
        pr.edit(state="closed", body=fit_body(pr.body or "", BODY_LIMIT - len(BOT_CLOSED_MARKER)) + BOT_CLOSED_MARKER)
    return pr


def proposal_marker(files: dict[str, str]) -> str:
    """A hidden line that names a proposal by the content of its files (first line of the PR body)."""
    digest = hashlib.sha256(json.dumps(files, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
    return f"<!-- gepa-bot:proposal={digest} -->"


def declined_proposal(gh_repo: Repository, head_branch: str, marker: str) -> PullRequest | None:
    """A PR for ``head_branch`` with this very proposal that a human closed without merging, if any.

    Like Renovate and Dependabot, the bot respects that decision: the same proposal is not opened again
    (a different one, after the prompts or evals change, is).
    """
    with _github(f"listing closed pull requests of {gh_repo.full_name}"):
        for pr in gh_repo.get_pulls(state="closed", head=f"{gh_repo.owner.login}:{head_branch}"):
            body = pr.body or ""
            if pr.merged_at is None and body.startswith(marker) and BOT_CLOSED_MARKER not in body:
                return pr
    return None


def commenter_can_write(gh_repo: Repository, login: str) -> bool:
    """Whether ``login`` has admin, maintain or write access to the repository."""
    try:
        permission = gh_repo.get_collaborator_permission(login)
    except GithubException as exc:
        if exc.status == 404:  # unknown user or not visible: not a writer
            return False
        raise explain(exc, f"checking {login}'s permission on {gh_repo.full_name}") from exc
    return permission in WRITE_PERMISSIONS


def post_comment(gh_repo: Repository, number: int, body: str) -> IssueComment:
    """Comment on issue or pull request ``number``; returns the IssueComment."""
    with _github(f"commenting on #{number}"):
        return gh_repo.get_issue(number).create_comment(fit_body(body))


def react(gh_repo: Repository, comment_id: int, content: str) -> None:
    """Add reaction ``content`` (e.g. "eyes", "+1", "rocket") to an issue/PR comment."""
    if content not in REACTIONS:
        raise ValueError(f"unknown reaction {content!r}; use one of {', '.join(REACTIONS)}")
    with _github(f"reacting to comment {comment_id}"):
        gh_repo.requester.requestJsonAndCheck(
            "POST", f"{gh_repo.url}/issues/comments/{int(comment_id)}/reactions",
            input={"content": content})


def set_body(pr: PullRequest, body: str) -> None:
    """Give ``pr`` this body (when it differs) and reload it: its head SHA may have moved since it was read."""
    with _github(f"updating pull request #{pr.number}"):
        if body != (pr.body or ""):
            pr.edit(body=body)
        pr.update()


def get_pull(gh_repo: Repository, number: int) -> PullRequest:
    """Pull request ``number`` (GitHub errors explained)."""
    with _github(f"reading pull request #{number}"):
        return gh_repo.get_pull(number)
    raise AssertionError("unreachable")


def is_fork_pull(pr: PullRequest) -> bool:
    """Whether ``pr`` comes from another repository (a fork, or a deleted one)."""
    head_repo = pr.head.repo
    return head_repo is None or head_repo.full_name != pr.base.repo.full_name
