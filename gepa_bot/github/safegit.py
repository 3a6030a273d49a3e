"""git for everything that publishes: no hook, no configuration but the repository's own and ours.

An eval can write into the checkout it runs in: hooks (``.git/hooks``, ``core.hooksPath``), configuration that runs
commands or redirects a push. So every git command gepa-bot runs to publish goes through :func:`run`: hooks off
(``core.hooksPath=/dev/null``), no system or global configuration (``GIT_CONFIG_NOSYSTEM``,
``GIT_CONFIG_GLOBAL=/dev/null``), none of the caller's ``GIT_*`` variables and no secret-looking variable in git's
environment.

Before any eval runs, :func:`refuse_stored_credentials` stops a run whose ``.git/config`` holds credentials (an
``http.*.extraheader`` with an Authorization header, as actions/checkout leaves with ``persist-credentials: true``,
or a URL with ``user:password@``): the evals could read them.
"""

from __future__ import annotations

import os
import re
import subprocess
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from git.exc import GitCommandError

from gepa_bot.errors import UserError
from gepa_bot.redact import SECRET_NAME

Config = Sequence[tuple[str, str]]
HARDENING: Config = (("core.hooksPath", "/dev/null"), ("core.fsmonitor", "false"))
EXTRAHEADER = re.compile(r"^http\.(?:.+\.)?extraheader$", re.IGNORECASE)
URL_KEY = re.compile(r"^(?:remote\..+\.(?:push)?url|url\..+\.(?:push)?insteadof)$", re.IGNORECASE)
TOKEN_USER = re.compile(r"^(?:gh[pousr]_|github_pat_|x-access-token)", re.IGNORECASE)
CREDENTIALS_FIX = ("check out with `persist-credentials: false` (actions/checkout), or remove them from .git/config "
                   "(`git config --unset-all <key>`; `git remote set-url origin <url without user:password@>`)")


def git_env(config: Config = ()) -> dict[str, str]:
    """git's environment: ours without GIT_* and secret-looking variables, hooks off, only ``config`` added to the
    repository's own configuration (through GIT_CONFIG_COUNT: never on a command line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and not SECRET_NAME.search(k)}
    pairs = [*HARDENING, *config]
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", GIT_TERMINAL_PROMPT="0",
               GIT_CONFIG_COUNT=str(len(pairs)))
    for number, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{number}"], env[f"GIT_CONFIG_VALUE_{number}"] = key, value
    return env


def run(args: Sequence[str], cwd: Path, *, config: Config = (), stdin: bytes | None = None,
        pass_fds: Sequence[int] = ()) -> str:
    """``git args`` in ``cwd`` (hooks off, only our configuration); its stdout without the trailing newline.

    Raises GitCommandError (with git's stderr) when git fails.
    """
    done = subprocess.run(["git", *args], cwd=cwd, env=git_env(config), input=stdin, capture_output=True,
                          pass_fds=tuple(pass_fds), timeout=600)
    if done.returncode != 0:
        raise GitCommandError(["git", *args], done.returncode, done.stderr, done.stdout)
    return done.stdout.decode("utf-8", "replace").rstrip("\n")


def trusting(repo: Path) -> Config:
    """Configuration to read ``repo`` even when another user owns it (a container's checkout): ``safe.directory``."""
    return (("safe.directory", str(repo.resolve())),)


def stored_credentials(repo: Path) -> list[str]:
    """The keys of ``repo``'s own configuration (.git/config and its includes) that hold credentials."""
    try:
        listing = run(["config", "--local", "--includes", "--null", "--list"], repo, config=trusting(repo))
    except (GitCommandError, OSError):  # not a git repository: nothing stored
        return []
    found = []
    for entry in listing.split("\0"):
        key, _, value = entry.partition("\n")
        if EXTRAHEADER.match(key) and "authorization" in value.lower():
            found.append(key)
        elif URL_KEY.match(key) and _has_credentials(key.split(".", 1)[1] if key.lower().startswith("url.") else value):
            found.append(key)
    return sorted(set(found))


def _has_credentials(text: str) -> bool:
    """Whether a URL (or the URL inside an ``url.<url>.insteadOf`` key) carries a password or a token as its user."""
    match = re.search(r"[a-z][a-z0-9+.-]*://[^\s]*", text, re.IGNORECASE)
    if match is None:
        return False
    parts = urllib.parse.urlsplit(match.group(0))
    return parts.password is not None or bool(parts.username and TOKEN_USER.match(parts.username))


def refuse_stored_credentials(repo: Path) -> None:
    """Raise a one-line UserError when ``repo``'s .git/config holds credentials (before any eval can read them)."""
    keys = stored_credentials(repo)
    if keys:
        raise UserError(f"{repo / '.git' / 'config'} holds credentials ({', '.join(keys)}): the evals gepa-bot runs "
                        "could read them, so it runs none", fix=CREDENTIALS_FIX)
