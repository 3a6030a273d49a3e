"""git against the GitHub remote: the bot's branch (commit, push, delete) and the workspace's checkout.

GitPython drives git; the token travels as an HTTP header in the environment (:func:`auth_env`), never on a
command line or in a URL. Every failure a user can fix is raised as :class:`GitHubError` with what to change.
"""

from __future__ import annotations

import base64
import os
import posixpath
import tempfile
import urllib.parse
from io import BytesIO
from pathlib import Path

import git
from git.exc import GitCommandError
from gitdb.base import IStream

from gepa_bot.errors import UserError

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


def checkout_branch(workspace: str | Path, remote_url: str, token: str, ref: str) -> str:
    """Fetch branch ``ref`` of the remote and check it out in ``workspace`` (unless it is already); its commit."""
    repo = git.Repo(workspace)
    if repo.head.is_detached or repo.active_branch.name != ref:
        repo.git.fetch("--quiet", remote_url, f"+refs/heads/{ref}:refs/heads/{ref}", env=auth_env(remote_url, token))
        repo.git.checkout("--quiet", ref)
    return repo.head.commit.hexsha


def auth_env(remote_url: str, token: str) -> dict[str, str]:
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
    env = auth_env(remote_url, token)
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
    repo, env = git.Repo(repo_dir), auth_env(remote_url, token)
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
