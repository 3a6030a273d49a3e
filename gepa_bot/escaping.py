"""Neutralizing GitHub's closing keywords in untrusted text (eval feedback, LLM rationales) bound for a PR body.

A pull request whose body says ``Fixes #1`` closes issue 1 when it is merged, and ``closes owner/repo#2`` or
``Resolves: https://github.com/o/r/issues/3`` close issues in other repositories the merger can write to. Text
from evals or the LLM reaches gepa-bot's PR body, so merging the bot's proposal must not close anything: every
keyword that is followed by an issue reference gets a zero-width joiner after its first letter (``F\u200dixes``)
and the reference's ``#`` gets one after it (``#\u200d1``). Both render as before; GitHub matches neither.
"""

from __future__ import annotations

import re

ZWJ = "\u200d"

# GitHub's keywords (docs: "Linking a pull request to an issue"), matched case-insensitively as whole words.
KEYWORDS = ("close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves", "resolved")

# What may sit between a keyword and its reference: spaces (any Unicode space, which is stricter than GitHub),
# an optional colon, and markup a renderer strips (emphasis, quotes, brackets).
_GAP = r"[\s:*_~'\"(\[<>]*"
# An issue reference: #N, GH-N, owner/repo#N, or a URL of an issue or pull request (scheme optional: the report's
# escaping breaks `://` with a zero-width space, which must not hide a URL from this check).
_REFERENCE = (r"(?:#\d|gh-\d|[\w.-]+/[\w.-]+#\d"
              r"|(?:[a-z][a-z0-9+.-]*:\S*?)?(?:www\.)?[\w.-]+\.[a-z]{2,}/\S*?/(?:issues|pulls?)/\d)")
CLOSING = re.compile(rf"(?<![\w\u200d])(?P<keyword>{'|'.join(sorted(KEYWORDS, key=len, reverse=True))})(?!\w)"
                     rf"(?P<gap>{_GAP})(?P<reference>{_REFERENCE})", re.IGNORECASE)


def neutralize_closing_keywords(text: str) -> str:
    """``text`` with every closing keyword that precedes an issue reference made inert (see the module doc).

    Pure and idempotent; text without such a keyword comes back unchanged (``fixed a bug``, ``#12`` alone,
    ``prefix #1``). Apply it after any truncation, so that a cut cannot turn ``#12`` into a fresh ``#1``.
    """
    return CLOSING.sub(_neutralized, text)


def _neutralized(match: re.Match[str]) -> str:
    keyword, reference = match.group("keyword"), match.group("reference")
    return keyword[0] + ZWJ + keyword[1:] + match.group("gap") + reference.replace("#", "#" + ZWJ)
