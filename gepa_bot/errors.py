"""Errors a user can act on: shown as one clear message (no traceback), exit code 2 (3: errors stopped the run)."""

from __future__ import annotations

from gepa_bot.redact import redact

RUN_STOPPED_EXIT_CODE = 3


class UserError(Exception):
    """Bad input or environment: `message` names the file/field, `fix` says what to do."""

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        text = f"{self.message}. Fix: {self.fix}" if self.fix else self.message
        return " ".join(text.split("\n"))  # one line: CI logs and `::error::` annotations stay readable


class RunStopped(UserError):
    """The run stopped because of errors (eval or model), not because of bad input: exit code 3.

    Raised by the search (search/errorpolicy.py decides when); the CLI and the Action report it.
    """

    exit_code = RUN_STOPPED_EXIT_CODE


def describe_error(where: str, exc: BaseException) -> dict[str, str]:
    """An internal error (a bug, not bad input) as result.json and the run log record it, secrets masked."""
    return {"where": where, "type": type(exc).__name__, "message": redact(str(exc))[:500]}
