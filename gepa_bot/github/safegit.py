"""git for everything that publishes: no hook, no configuration but ours, the token through a pipe.

An eval can write into the checkout it runs in: hooks (``.git/hooks``, ``core.hooksPath``), configuration that runs
commands (``core.fsmonitor``, ``core.sshCommand``) or redirects a push with the token (``url.*.insteadOf``,
``http.proxy``). So every git command gepa-bot runs to publish goes through :func:`run`: hooks off
(``core.hooksPath=/dev/null``), no system or global configuration (``GIT_CONFIG_NOSYSTEM``,
``GIT_CONFIG_GLOBAL=/dev/null``), none of the caller's ``GIT_*`` variables that pick another repository,
configuration or program, and no secret-looking variable in git's environment. The bot's branch is built and pushed
in a new bare repository (:func:`scratch_repository`), never in the checkout: the base commit gets there by
``git upload-pack`` from the checkout (:func:`fetch_commit`), the command git keeps safe to run in a repository
someone else controls, and its objects are checked on arrival.

The token reaches git only through a credential helper that reads it from a pipe inherited by that one git
command (:func:`run_with_token`): never in an environment variable, a ``-c`` value or a command line, where
``/proc/<pid>/environ`` or ``cmdline`` would show it, nor in a file.

Before any eval runs, :func:`refuse_stored_credentials` stops a run whose ``.git/config`` holds credentials (an
``http.*.extraheader`` with an Authorization header, as actions/checkout leaves with ``persist-credentials: true``,
or a URL with ``user:password@``): the evals could read them.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from git.exc import GitCommandError

from gepa_bot.errors import UserError
from gepa_bot.redact import SECRET_NAME

Config = Sequence[tuple[str, str]]
HARDENING: Config = (("core.hooksPath", "/dev/null"), ("core.fsmonitor", "false"))
EXTRAHEADER = re.compile(r"^http\.(?:.+\.)?extraheader$", re.IGNORECASE)
URL_KEY = re.compile(r"^(?:remote\..+\.(?:push)?url|url\..+\.(?:push)?insteadof)$", re.IGNORECASE)
TOKEN_USER = re.compile(r"^(?:gh[pousr]_|github_pat_|x-access-token)", re.IGNORECASE)
# Variables (prefixes) that would make git use another repository, configuration, identity or helper program. The
# rest (GIT_SSL_CAINFO, GIT_EXEC_PATH, GIT_TRACE...) is the machine's setup and kept.
DROPPED_GIT_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_", "GIT_COMMON_DIR",
                   "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES", "GIT_CONFIG", "GIT_ASKPASS", "SSH_ASKPASS", "GIT_SSH",
                   "GIT_PROXY_COMMAND", "GIT_EXTERNAL_DIFF", "GIT_EDITOR", "GIT_SEQUENCE_EDITOR", "GIT_PAGER",
                   "GIT_TEMPLATE_DIR", "GIT_AUTHOR_", "GIT_COMMITTER_", "GIT_REPLACE_REF_BASE", "GIT_NO_REPLACE",
                   "GIT_SHALLOW_FILE", "GIT_QUARANTINE_PATH", "GIT_PROTOCOL_FROM_USER", "GIT_ALLOW_PROTOCOL",
                   "GIT_TERMINAL_PROMPT")
# git runs a helper starting with "!" through the shell, with "get", "store" or "erase" appended: only "get" reads.
# (/dev/fd/N, not <&N: a POSIX shell's redirections only reach descriptors 0-9.)
CREDENTIAL_HELPER = '!f() {{ test "$1" = get && cat /dev/fd/{fd}; }}; f'
CREDENTIALS_FIX = ("check out with `persist-credentials: false` (actions/checkout), or remove them from .git/config "
                   "(`git config --unset-all <key>`; `git remote set-url origin <url without user:password@>`)")


def git_env(config: Config = ()) -> dict[str, str]:
    """git's environment: ours without secret-looking variables and without the GIT_* variables that pick another
    repository, configuration or program (:data:`DROPPED_GIT_ENV`); hooks off, and only ``config`` added to the
    repository's own configuration (through GIT_CONFIG_COUNT: never on a command line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_GIT_ENV) and not SECRET_NAME.search(k)}
    pairs = [*HARDENING, *config]
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", GIT_TERMINAL_PROMPT="0",
               GIT_CONFIG_COUNT=str(len(pairs)))
    for number, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{number}"], env[f"GIT_CONFIG_VALUE_{number}"] = key, value
    return env


def run(args: Sequence[str], cwd: Path, *, config: Config = (), stdin: bytes | None = None,
        env: Mapping[str, str] | None = None, pass_fds: Sequence[int] = ()) -> str:
    """``git args`` in ``cwd`` (hooks off, only our configuration; ``env`` added, e.g. GIT_INDEX_FILE); its stdout
    without the trailing newline. Raises GitCommandError (with git's stderr) when git fails.
    """
    done = subprocess.run(["git", *args], cwd=cwd, env={**git_env(config), **(env or {})}, input=stdin,
                          capture_output=True, pass_fds=tuple(pass_fds), timeout=600)
    if done.returncode != 0:
        raise GitCommandError(["git", *args], done.returncode, done.stderr.decode("utf-8", "replace"),
                              done.stdout.decode("utf-8", "replace"))
    return done.stdout.decode("utf-8", "replace").rstrip("\n")


def run_with_token(args: Sequence[str], cwd: Path, remote_url: str, token: str, *, config: Config = ()) -> str:
    """:func:`run`, authenticated to ``remote_url`` as ``x-access-token:<token>`` by a credential helper that reads a
    pipe only this git command inherits. A header actions/checkout left for the host (``http.<url>.extraheader``) is
    reset, so it is not sent as a second Authorization."""
    if any(c in token for c in "\n\r\0"):
        raise UserError("the GitHub token contains a line break or NUL", fix="pass the token itself")
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "wb") as pipe:  # far below a pipe's buffer: never blocks
            pipe.write(f"username=x-access-token\npassword={token}\n".encode())
        helper = (("credential.helper", ""), ("credential.helper", CREDENTIAL_HELPER.format(fd=read_end)))
        return run(args, cwd, config=[*config, (_extraheader_key(remote_url), ""), *helper], pass_fds=[read_end])
    finally:
        os.close(read_end)


def _extraheader_key(remote_url: str) -> str:
    parts = urllib.parse.urlsplit(remote_url)
    return f"http.{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/.extraheader"


@contextlib.contextmanager
def scratch_repository() -> Iterator[Path]:
    """A new, empty bare repository in a temporary directory (removed afterwards): where the bot's branch is built and
    pushed from, with no hook and no configuration of the checkout's."""
    with tempfile.TemporaryDirectory(prefix="gepa-bot-git-") as tmp:
        clone = Path(tmp) / "clone.git"
        run(["init", "--quiet", "--bare", str(clone)], Path(tmp))
        yield clone


def fetch_commit(clone: Path, source: Path, sha: str) -> None:
    """``sha`` and its history, as far as ``source`` has it (a shallow checkout's stays shallow), into ``clone``: by
    ``git upload-pack`` in ``source``, which runs no hook and no command of its configuration."""
    run(["fetch", "--quiet", "--no-tags", "--update-shallow", str(source.resolve()), sha], clone,
        config=trusting(source))


def head_sha(repo: Path) -> str:
    """The commit checked out in ``repo``."""
    return run(["rev-parse", "--verify", "HEAD^{commit}"], repo, config=trusting(repo))


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
