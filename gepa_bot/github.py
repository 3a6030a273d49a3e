"""Talking to GitHub: push the optimized prompts to a branch and open/update/close the PR.

REST calls go through PyGithub, git through GitPython. Every GitHub failure a user
can fix is raised as :class:`GitHubError` with a message saying what to change.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import posixpath
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import git
from git.exc import GitCommandError
from gitdb.base import IStream
from github import Auth, Github, GithubException
from github.PullRequest import PullRequest
from github.Repository import Repository

from gepa_bot.errors import UserError
from gepa_bot.escaping import BODY_LIMIT

DEFAULT_API_URL = "https://api.github.com"
BRANCH_PREFIX = "gepa-bot/"
BOT_NAME = "github-actions[bot]"
BOT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"
BOT_CLOSED_MARKER = "\n<!-- gepa-bot:closed-by-bot -->"
TRUNCATION_NOTE = "\n\n… (truncated: GitHub allows 65,536 characters)"
WRITE_PERMISSIONS = ("admin", "maintain", "write")
REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
ACTIONS_PR_FORBIDDEN = "not permitted to create or approve pull requests"
PERMISSIONS_FIX = (
    "give the workflow's token the permissions gepa-bot needs, e.g. in the workflow file\n"
    "  permissions:\n    contents: write\n    pull-requests: write\n    issues: write\n"
    "(with a personal access token: it needs write access to this repository)"
)


class GitHubError(UserError):
    """A GitHub or git-remote failure, with a message a user can act on."""


class ForeignCommits(GitHubError):
    """The bot's branch holds commits someone else made: gepa-bot will not overwrite them."""


def connect(token: str, api_url: str | None = None, **github_kwargs) -> Github:
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


def truncate(text: str, limit: int = BODY_LIMIT) -> str:
    """``text`` cut to GitHub's body limit, with a note saying so."""
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATION_NOTE)] + TRUNCATION_NOTE


def branch_for(base_branch: str) -> str:
    """The bot's branch for ``base_branch``."""
    return BRANCH_PREFIX + base_branch


# ---- git -------------------------------------------------------------------

def _auth_env(remote_url: str, token: str) -> dict[str, str]:
    """Git config (through the environment, never the command line) sending ``token``.

    The URL-specific ``http.<url>.extraheader`` is first reset so a header left by
    actions/checkout (persist-credentials) is not sent as a second Authorization.
    """
    parts = urllib.parse.urlsplit(remote_url)
    key = f"http.{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/.extraheader"
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": key, "GIT_CONFIG_VALUE_0": "",
        "GIT_CONFIG_KEY_1": key, "GIT_CONFIG_VALUE_1": f"AUTHORIZATION: basic {basic}",
        "GIT_TERMINAL_PROMPT": "0",
    }


def _scrub(text: str, token: str) -> str:
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return text.replace(token, "***").replace(basic, "***")


def _explain_git(exc: GitCommandError, branch: str, token: str) -> GitHubError:
    stderr = _scrub(str(exc.stderr or "").strip(), token)
    said = f"git could not push the branch {branch!r}: {stderr}"
    if any(s in stderr for s in ("could not read Username", "Authentication failed", " 401")):
        return GitHubError(said, "check the token input / GITHUB_TOKEN: the remote rejected it")
    if any(s in stderr for s in ("403", "denied", "not accessible")):
        return GitHubError(said, PERMISSIONS_FIX)
    return GitHubError(said, "check the remote URL and that the runner can reach it")


def _remote_default_branch(repo: git.Repo, remote_url: str, env: dict[str, str]) -> str | None:
    out = str(repo.git.ls_remote("--symref", remote_url, "HEAD", env=env))
    for line in out.splitlines():
        if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
            return line[len("ref: refs/heads/"):-len("\tHEAD")]
    return None


def _safe_path(path: str) -> str:
    norm = posixpath.normpath(path.replace(os.sep, "/"))
    if norm.startswith(("/", "../")) or norm in ("..", ".", "") or "/.git/" in f"/{norm}/":
        raise ValueError(f"refusing to write {path!r}: not a path inside the repository")
    return norm


def _commit_files(repo: git.Repo, base_sha: str, files: dict[str, str], message: str) -> str:
    """A commit on ``base_sha`` with ``files`` replaced, made without touching the work tree."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        repo.git.read_tree(base_sha, env=env)
        for path, content in files.items():
            path = _safe_path(path)
            data = content.encode("utf-8")
            blob = repo.odb.store(IStream("blob", len(data), BytesIO(data))).hexsha.decode()
            existing = repo.git.ls_tree(base_sha, "--", path).split(" ", 1)[0]
            mode = existing if existing in ("100644", "100755") else "100644"
            repo.git.update_index("--add", "--cacheinfo", f"{mode},{blob},{path}", env=env)
        tree = repo.git.write_tree(env=env)
    if tree == repo.commit(base_sha).tree.hexsha:
        raise ValueError("nothing to publish: the files are identical to the base commit")
    who = {"GIT_AUTHOR_NAME": BOT_NAME, "GIT_AUTHOR_EMAIL": BOT_EMAIL,
           "GIT_COMMITTER_NAME": BOT_NAME, "GIT_COMMITTER_EMAIL": BOT_EMAIL}
    return repo.git.commit_tree(tree, "-p", base_sha, "-m", message, env=who)


def _resolve_base(repo: git.Repo, base_branch: str, base_sha: str | None = None) -> str:
    """``base_sha`` when given (must be in the clone), else the tip of ``base_branch`` (local or origin's)."""
    for ref in [base_sha] if base_sha else [f"refs/heads/{base_branch}", f"refs/remotes/origin/{base_branch}"]:
        try:
            return repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
        except GitCommandError:
            continue
    raise GitHubError(f"base {base_sha or repr(base_branch)} is not in {repo.working_dir}",
                      "check out the repository with that branch (actions/checkout with fetch-depth: 0 "
                      "or ref: the base branch, or the base SHA the plan recorded)")


def publish_branch(repo_dir: str | Path, base_branch: str, files: dict[str, str], message: str,
                   remote_url: str, token: str, *, branch: str | None = None, base_sha: str | None = None) -> str:
    """Commit ``files`` on top of ``base_branch`` as the bot's branch and force-push it.

    ``files`` maps repo-relative paths to their new full content. The branch
    (default ``gepa-bot/<base>``) is reset to the base commit each time, so reruns
    replace the previous proposal. The token is sent as an HTTP header passed
    through the environment, never on a command line or in the remote URL.
    Returns the branch name. Refuses to push to the base or the default branch. ``base_sha``: the commit to
    build on (a detached, shallow checkout has no ``refs/heads/<base>``); default: ``base_branch``'s tip here.
    """
    branch = branch or branch_for(base_branch)
    repo = git.Repo(repo_dir)
    env = _auth_env(remote_url, token)
    try:
        default = _remote_default_branch(repo, remote_url, env)
        for protected, what in ((base_branch, "the base branch"), (default, "the default branch")):
            if branch == protected:
                raise GitHubError(f"refusing to push to {branch!r}: it is {what} of the repository",
                                  "use a separate branch for the bot's proposals")
        if not repo.head.is_detached and repo.active_branch.name == branch:
            raise GitHubError(f"refusing to reset {branch!r}: it is checked out in {repo_dir}",
                              "run gepa-bot from the base branch")
        base_sha = _resolve_base(repo, base_branch, base_sha)
        commit = _commit_files(repo, base_sha, files, message)
        remote_sha = _remote_branch_sha(repo, remote_url, branch, env)
        if remote_sha is not None and _keeps_remote(repo, remote_url, branch, env, remote_sha, base_sha, commit):
            repo.git.update_ref(f"refs/heads/{branch}", remote_sha)
            return branch  # same proposal on the same base: no push, the PR's head SHA stays as it is
        repo.git.update_ref(f"refs/heads/{branch}", commit)
        repo.git.push("--force", "--quiet", remote_url, f"{commit}:refs/heads/{branch}", env=env)
    except GitCommandError as exc:
        raise _explain_git(exc, branch, token) from None
    return branch


def _remote_branch_sha(repo: git.Repo, remote_url: str, branch: str, env: dict[str, str]) -> str | None:
    out = str(repo.git.ls_remote(remote_url, f"refs/heads/{branch}", env=env))
    return out.split()[0] if out.strip() else None


def _keeps_remote(repo: git.Repo, remote_url: str, branch: str, env: dict[str, str], remote_sha: str,
                  base_sha: str, commit: str) -> bool:
    """True when the bot's branch already holds this proposal on this base (nothing to push).

    Raises when the branch holds commits the bot did not make: a human's work is never overwritten.
    """
    _deepen(repo, remote_url, base_sha, env)
    repo.git.fetch("--quiet", remote_url, f"refs/heads/{branch}", env=env)
    foreign = _foreign_commits(repo, base_sha, remote_sha)
    if foreign:
        who = ", ".join(sorted({c.author.name or "?" for c in foreign}))
        raise ForeignCommits(f"refusing to overwrite {branch!r}: it has {len(foreign)} commit(s) the bot did not make "
                          f"(by {who})", f"merge or move those commits, or delete the branch {branch!r}; gepa-bot "
                          "then proposes again")
    remote = repo.commit(remote_sha)
    return [p.hexsha for p in remote.parents] == [base_sha] and remote.tree.hexsha == repo.commit(commit).tree.hexsha


def _deepen(repo: git.Repo, remote_url: str, base_sha: str, env: dict[str, str]) -> None:
    """The base's history in a shallow clone: else all commits below an older base look like foreign ones."""
    if repo.git.rev_parse("--is-shallow-repository").strip() == "true":
        repo.git.fetch("--quiet", "--unshallow", "--no-tags", remote_url, base_sha, env=env)


def _foreign_commits(repo: git.Repo, base_sha: str, tip_sha: str) -> list[git.Commit]:
    return [c for c in repo.iter_commits(f"{base_sha}..{tip_sha}") if c.author.email != BOT_EMAIL]


def delete_bot_branch(repo_dir: str | Path, base_branch: str, branch: str, remote_url: str, token: str, *,
                      base_sha: str | None = None) -> bool:
    """Delete the bot's branch on the remote (its PR is closed, nothing is proposed); True if it was deleted.

    Kept when it holds commits the bot did not make, and never the base or default branch. The push is
    leased on the SHA just checked, so a commit pushed in between is not lost either.
    """
    repo, env = git.Repo(repo_dir), _auth_env(remote_url, token)
    try:
        remote_sha = _remote_branch_sha(repo, remote_url, branch, env)
        if remote_sha is None or branch in (base_branch, _remote_default_branch(repo, remote_url, env)):
            return False
        try:
            base_sha = _resolve_base(repo, base_branch, base_sha)
        except GitHubError:  # cannot tell whose commits the branch holds: keep it
            return False
        _deepen(repo, remote_url, base_sha, env)
        repo.git.fetch("--quiet", remote_url, f"refs/heads/{branch}", env=env)
        if _foreign_commits(repo, base_sha, remote_sha):
            return False
        repo.git.push("--quiet", f"--force-with-lease=refs/heads/{branch}:{remote_sha}", remote_url,
                      f":refs/heads/{branch}", env=env)
    except GitCommandError as exc:
        raise _explain_git(exc, branch, token) from None
    return True


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
    body = truncate(body)
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
        pr.edit(state="closed", body=truncate(pr.body or "", BODY_LIMIT - len(BOT_CLOSED_MARKER)) + BOT_CLOSED_MARKER)
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


def post_comment(gh_repo: Repository, number: int, body: str):
    """Comment on issue or pull request ``number``; returns the IssueComment."""
    with _github(f"commenting on #{number}"):
        return gh_repo.get_issue(number).create_comment(truncate(body))


def react(gh_repo: Repository, comment_id: int, content: str) -> None:
    """Add reaction ``content`` (e.g. "eyes", "+1", "rocket") to an issue/PR comment."""
    if content not in REACTIONS:
        raise ValueError(f"unknown reaction {content!r}; use one of {', '.join(REACTIONS)}")
    with _github(f"reacting to comment {comment_id}"):
        gh_repo.requester.requestJsonAndCheck(
            "POST", f"{gh_repo.url}/issues/comments/{int(comment_id)}/reactions",
            input={"content": content})


def get_pull(gh_repo: Repository, number: int) -> PullRequest:
    """Pull request ``number`` (GitHub errors explained)."""
    with _github(f"reading pull request #{number}"):
        return gh_repo.get_pull(number)
    raise AssertionError("unreachable")


def is_fork_pull(pr: PullRequest) -> bool:
    """Whether ``pr`` comes from another repository (a fork, or a deleted one)."""
    head_repo = pr.head.repo
    return head_repo is None or head_repo.full_name != pr.base.repo.full_name
