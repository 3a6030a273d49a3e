"""git against the GitHub remote: the bot's branch (commit, push, delete) and the workspace's checkout.

Every git command here goes through gepa_bot.github.safegit: hooks off, no configuration but ours, the token
through a credential helper reading a pipe (never an environment variable, a command line or a URL). The bot's
branch is built and pushed in a new bare repository that holds only the base commit's history, fetched from the
workspace (the evals may have written hooks or configuration into the workspace's .git). Every failure a user can
fix is raised as :class:`GitHubError` with what to change.
"""

from __future__ import annotations

import base64
import os
import posixpath
import tempfile
from dataclasses import dataclass
from pathlib import Path

import git
from git.exc import GitCommandError

from gepa_bot.errors import UserError
from gepa_bot.github import safegit

BRANCH_PREFIX = "gepa-bot/"
BOT_NAME = "github-actions[bot]"
BOT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"
PERMISSIONS_FIX = (
    "give the workflow's token the permissions gepa-bot needs, e.g. in the workflow file\n"
    "  permissions:\n    contents: write\n    pull-requests: write\n    issues: write\n"
    "(with a personal access token: it needs write access to this repository)"
)


class GitHubError(UserError):
    """A GitHub or git-remote failure, with a message a user can act on."""


class ForeignCommits(GitHubError):
    """The bot's branch holds commits someone else made: gepa-bot will not overwrite them."""


def branch_for(base_branch: str) -> str:
    """The bot's branch for ``base_branch``."""
    return BRANCH_PREFIX + base_branch


def current_branch(workspace: str | Path, fix: str) -> str:
    """The branch checked out in ``workspace``; a UserError (with ``fix``) on a detached HEAD."""
    repo = git.Repo(workspace)
    if repo.head.is_detached:
        raise UserError(f"{workspace} is on a detached HEAD", fix=fix)
    return repo.active_branch.name


@dataclass(frozen=True)
class Remote:
    """The GitHub remote's URL and the token git authenticates to it with."""

    url: str
    token: str

    def git(self, repo: Path, *args: str) -> str:
        """``git args`` in ``repo``, authenticated to this remote (safegit.run_with_token)."""
        return safegit.run_with_token(args, repo, self.url, self.token, config=safegit.trusting(repo))


def checkout_branch(workspace: str | Path, remote_url: str, token: str, ref: str) -> str:
    """Fetch branch ``ref`` of the remote and check it out in ``workspace`` (unless it is already); its commit."""
    workspace, remote = Path(workspace), Remote(remote_url, token)
    repo = git.Repo(workspace)
    if repo.head.is_detached or repo.active_branch.name != ref:
        remote.git(workspace, "fetch", "--quiet", remote_url, f"+refs/heads/{ref}:refs/heads/{ref}")
        safegit.run(["checkout", "--quiet", ref], workspace, config=safegit.trusting(workspace))
    return safegit.head_sha(workspace)


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


def _remote_default_branch(clone: Path, remote: Remote) -> str | None:
    out = remote.git(clone, "ls-remote", "--symref", remote.url, "HEAD")
    for line in out.splitlines():
        if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
            return line[len("ref: refs/heads/"):-len("\tHEAD")]
    return None


def _safe_path(path: str) -> str:
    norm = posixpath.normpath(path.replace(os.sep, "/"))
    if norm.startswith(("/", "../")) or norm in ("..", ".", "") or "/.git/" in f"/{norm}/":
        raise ValueError(f"refusing to write {path!r}: not a path inside the repository")
    return norm


def _tree(clone: Path, commit: str) -> str:
    return safegit.run(["rev-parse", "--verify", f"{commit}^{{tree}}"], clone)


def _commit_files(clone: Path, base_sha: str, files: dict[str, str], message: str) -> str:
    """A commit on ``base_sha`` with ``files`` replaced (built in a temporary index: there is no work tree)."""
    with tempfile.TemporaryDirectory() as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        safegit.run(["read-tree", base_sha], clone, env=index)
        for path, content in files.items():
            path = _safe_path(path)
            blob = safegit.run(["hash-object", "-w", "--stdin"], clone, stdin=content.encode("utf-8"))
            existing = safegit.run(["ls-tree", base_sha, "--", path], clone).split(" ", 1)[0]
            mode = existing if existing in ("100644", "100755") else "100644"
            safegit.run(["update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}"], clone, env=index)
        tree = safegit.run(["write-tree"], clone, env=index)
    if tree == _tree(clone, base_sha):
        raise ValueError("nothing to publish: the files are identical to the base commit")
    who = {"GIT_AUTHOR_NAME": BOT_NAME, "GIT_AUTHOR_EMAIL": BOT_EMAIL,
           "GIT_COMMITTER_NAME": BOT_NAME, "GIT_COMMITTER_EMAIL": BOT_EMAIL}
    return safegit.run(["commit-tree", tree, "-p", base_sha, "-m", message], clone, env=who)


def _resolve_base(workspace: Path, base_branch: str, base_sha: str | None = None) -> str:
    """``base_sha`` when given (must be in the checkout), else the tip of ``base_branch`` (local or origin's)."""
    for ref in [base_sha] if base_sha else [f"refs/heads/{base_branch}", f"refs/remotes/origin/{base_branch}"]:
        try:
            return safegit.run(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], workspace,
                               config=safegit.trusting(workspace))
        except GitCommandError:
            continue
    raise GitHubError(f"base {base_sha or repr(base_branch)} is not in {workspace}",
                      "check out the repository with that branch (actions/checkout with fetch-depth: 0 "
                      "or ref: the base branch, or the base SHA the plan recorded)")


def _refuse_protected(clone: Path, remote: Remote, base_branch: str, branch: str) -> None:
    for protected, what in ((base_branch, "the base branch"), (_remote_default_branch(clone, remote), "the default "
                                                                                                      "branch")):
        if branch == protected:
            raise GitHubError(f"refusing to push to {branch!r}: it is {what} of the repository",
                              "use a separate branch for the bot's proposals")


def publish_branch(repo_dir: str | Path, base_branch: str, files: dict[str, str], message: str,
                   remote_url: str, token: str, *, branch: str | None = None, base_sha: str | None = None) -> str:
    """Commit ``files`` on top of ``base_branch`` as the bot's branch and force-push it.

    ``files`` maps repo-relative paths to their new full content. The branch (default ``gepa-bot/<base>``) is reset
    to the base commit each time, so reruns replace the previous proposal. The commit is made and pushed from a new
    bare repository holding the base commit fetched from ``repo_dir``; nothing in ``repo_dir`` changes. Returns the
    branch name. Refuses to push to the base or the default branch. ``base_sha``: the commit to build on (a
    detached, shallow checkout has no ``refs/heads/<base>``); default: ``base_branch``'s tip in ``repo_dir``.
    """
    branch, workspace, remote = branch or branch_for(base_branch), Path(repo_dir), Remote(remote_url, token)
    try:
        with safegit.scratch_repository() as clone:
            _refuse_protected(clone, remote, base_branch, branch)
            base_sha = _resolve_base(workspace, base_branch, base_sha)
            safegit.fetch_commit(clone, workspace, base_sha)
            commit = _commit_files(clone, base_sha, files, message)
            remote_sha = _remote_branch_sha(clone, remote, branch)
            if remote_sha is not None and _keeps_remote(clone, remote, branch, remote_sha, base_sha, commit):
                return branch  # same proposal on the same base: no push, the PR's head SHA stays as it is
            remote.git(clone, "push", "--force", "--quiet", remote.url, f"{commit}:refs/heads/{branch}")
    except GitCommandError as exc:
        raise _explain_git(exc, branch, token) from None
    return branch


def _remote_branch_sha(clone: Path, remote: Remote, branch: str) -> str | None:
    out = remote.git(clone, "ls-remote", remote.url, f"refs/heads/{branch}")
    return out.split()[0] if out.strip() else None


def _keeps_remote(clone: Path, remote: Remote, branch: str, remote_sha: str, base_sha: str, commit: str) -> bool:
    """True when the bot's branch already holds this proposal on this base (nothing to push).

    Raises when the branch holds commits the bot did not make: a human's work is never overwritten.
    """
    _deepen(clone, remote, base_sha)
    remote.git(clone, "fetch", "--quiet", remote.url, f"refs/heads/{branch}")
    foreign = _foreign_authors(clone, base_sha, remote_sha)
    if foreign:
        raise ForeignCommits(f"refusing to overwrite {branch!r}: it has {len(foreign)} commit(s) the bot did not make "
                             f"(by {', '.join(sorted(set(foreign)))})", f"merge or move those commits, or delete the "
                             f"branch {branch!r}; gepa-bot then proposes again")
    parents = safegit.run(["rev-list", "--parents", "-n", "1", remote_sha], clone).split()[1:]
    return parents == [base_sha] and _tree(clone, remote_sha) == _tree(clone, commit)


def _deepen(clone: Path, remote: Remote, base_sha: str) -> None:
    """The base's history in a shallow clone: else all commits below an older base look like foreign ones."""
    if safegit.run(["rev-parse", "--is-shallow-repository"], clone) == "true":
        remote.git(clone, "fetch", "--quiet", "--unshallow", "--no-tags", remote.url, base_sha)


def _foreign_authors(clone: Path, base_sha: str, tip_sha: str) -> list[str]:
    """The author names of the commits in ``base_sha..tip_sha`` the bot did not make (one per commit)."""
    out = safegit.run(["log", "--format=%ae%x00%an", f"{base_sha}..{tip_sha}"], clone)
    authors = [line.split("\0", 1) for line in out.splitlines() if line]
    return [name or "?" for email, name in authors if email != BOT_EMAIL]


def delete_bot_branch(repo_dir: str | Path, base_branch: str, branch: str, remote_url: str, token: str, *,
                      base_sha: str | None = None) -> bool:
    """Delete the bot's branch on the remote (its PR is closed, nothing is proposed); True if it was deleted.

    Kept when it holds commits the bot did not make, and never the base or default branch. The push is
    leased on the SHA just checked, so a commit pushed in between is not lost either.
    """
    workspace, remote = Path(repo_dir), Remote(remote_url, token)
    try:
        with safegit.scratch_repository() as clone:
            remote_sha = _remote_branch_sha(clone, remote, branch)
            if remote_sha is None or branch in (base_branch, _remote_default_branch(clone, remote)):
                return False
            try:
                base_sha = _resolve_base(workspace, base_branch, base_sha)
            except GitHubError:  # cannot tell whose commits the branch holds: keep it
                return False
            safegit.fetch_commit(clone, workspace, base_sha)
            _deepen(clone, remote, base_sha)
            remote.git(clone, "fetch", "--quiet", remote.url, f"refs/heads/{branch}")
            if _foreign_authors(clone, base_sha, remote_sha):
                return False
            remote.git(clone, "push", "--quiet", f"--force-with-lease=refs/heads/{branch}:{remote_sha}", remote.url,
                       f":refs/heads/{branch}")
    except GitCommandError as exc:
        raise _explain_git(exc, branch, token) from None
    return True
