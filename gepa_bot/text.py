"""Text limits and truncation: how long each piece of text gepa-bot writes may be, and the one way it is cut.

Every limit is a named constant here, and every cut goes through one of these functions:

- :func:`truncate` keeps the head and ends with a note (``…`` by default): ``limit`` characters in all.
- :func:`truncate_middle` keeps the head and the tail, where a failing command's errors usually are.
- :func:`truncate_bytes` is :func:`truncate` for a limit in UTF-8 bytes (it never splits a character).
- :func:`one_line` flattens whitespace to single spaces, then truncates.

Escaping untrusted text for Markdown or a log line is gepa_bot/escaping.py; it truncates with these.
"""

from __future__ import annotations

from typing import Any

BODY_LIMIT = 65_536  # GitHub's limit for pull-request bodies and comments, in characters
BODY_CUT_NOTE = "\n\n… (truncated: GitHub allows 65,536 characters)"  # the end of a body cut to BODY_LIMIT
STEP_SUMMARY_LIMIT = 1024 * 1024  # bytes GitHub accepts from one step's summary; a larger one is dropped with an error
STEP_SUMMARY_CUT_NOTE = "\n\n_Summary cut to GitHub's 1 MiB step-summary limit._\n"
FEEDBACK_LIMIT = 4000  # characters of an eval's feedback (or error output) kept for one instance
ELLIPSIS = "…"


def truncate(text: str, limit: int, note: str = ELLIPSIS) -> str:
    """``text`` when it has at most ``limit`` characters, else its head followed by ``note``, ``limit``
    characters in all (``limit`` should leave room for ``note``)."""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(note), 0)] + note


def fit_body(text: str, limit: int = BODY_LIMIT) -> str:
    """A pull-request body or comment cut to GitHub's limit (or ``limit``), ending with a note saying so."""
    return truncate(text, limit, BODY_CUT_NOTE)


def truncate_middle(text: str, limit: int) -> str:
    """``text`` when it fits ``limit``, else its head and its tail around a note saying how much was cut."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit} chars cut] ...\n{text[-half:]}"


def truncate_bytes(text: str, limit: int, note: str) -> str:
    """``text`` when its UTF-8 encoding has at most ``limit`` bytes, else its head (cut on a character) and
    ``note``, at most ``limit`` bytes in all."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: max(limit - len(note.encode("utf-8")), 0)].decode("utf-8", errors="ignore") + note


def one_line(text: Any, limit: int) -> str:
    """``text`` (anything: it is made a string) on one line, every run of whitespace one space, truncated."""
    return truncate(" ".join(str(text).split()), limit)
