"""The GitHub token out of the environment of a process that will run evals (`gepa-bot optimize` without --dry-run).

An eval can read its ancestors' /proc/<pid>/environ and open file descriptors. So a command that will publish first
takes the token out of its environment: it re-executes itself with the token removed and handed over in a pipe,
which the new process image reads into memory at once and closes (:func:`take_token`). Memory is not readable by
child processes (ptrace rules), the environment block and the descriptors are.

This module imports nothing that starts a process (GitPython runs `git version` when it is imported): the token is
out before any child could inherit it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from gepa_bot.errors import UserError
from gepa_bot.redact import GITHUB_TOKEN_NAMES

TOKEN_FD = "GEPA_BOT_TOKEN_FD"  # internal: the pipe a re-executed gepa-bot reads its token from


def take_token(argv: Sequence[str] | None = None) -> str:
    """The GitHub token, with this process's environment holding none: re-executes once if it did."""
    if (fd := os.environ.pop(TOKEN_FD, None)) is not None:
        with os.fdopen(int(fd), "rb") as pipe:
            return pipe.read().decode()
    token = next((os.environ[n] for n in GITHUB_TOKEN_NAMES if os.environ.get(n)), "")
    if not token:
        raise UserError("no GitHub token to open the pull request with", fix="set GITHUB_TOKEN (a token with "
                        "contents and pull-requests write access), or pass --dry-run to write the PR body only")
    read_end, write_end = os.pipe()
    os.write(write_end, token.encode())  # a token is far below the pipe's buffer: never blocks
    os.close(write_end)
    os.set_inheritable(read_end, True)
    env = {k: v for k, v in os.environ.items() if k not in GITHUB_TOKEN_NAMES}
    env[TOKEN_FD] = str(read_end)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "gepa_bot.cli", *(argv if argv is not None else sys.argv[1:])],
              env)
    raise AssertionError("unreachable")
