"""Untrusted text (eval feedback, LLM rationales, file names, event fields): the one place that makes it safe.

Two destinations, one function each:

- **a Markdown body** (PR body, comment, job summary): :func:`untrusted` for a table cell or an HTML block, and
  :func:`untrusted_block` for a fenced block. No tags, pipes, links or @-mentions, and no closing keywords (below).
- **a workflow log line** (the Actions log): :func:`log_line`. Plain text on one line, no HTML escaping.

Every one of them keeps text from starting a workflow command (``::``) when it is echoed into the Actions log.
Lengths are cut with gepa_bot/text.py. The Markdown functions neutralize GitHub's closing keywords:
A pull request whose body says ``Fixes #1`` closes issue 1 when it is merged, and ``closes owner/repo#2`` or
``Resolves: https://github.com/o/r/issues/3`` close issues in other repositories the merger can write to. Text
from evals or the LLM reaches gepa-bot's PR body, so merging the bot's proposal must not close anything: every
keyword that is followed by an issue reference gets a zero-width joiner after its first letter (``F\u200dixes``)
and the reference's ``#`` gets one after it (``#\u200d1``). Both render as before; GitHub matches neither.
"""

from __future__ import annotations

import html
import re
from typing import Any

from gepa_bot.text import one_line, truncate

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


def no_workflow_commands(text: str) -> str:
    """``text`` with every ``::`` broken by a zero-width space: echoed into the Actions log, no line of it can be
    read as a workflow command (``::set-output``, ``::add-mask::``, ``::stop-commands::``)."""
    return text.replace("::", ":\u200b:")


def log_line(text: Any, limit: int) -> str:
    """Untrusted text for one plain line of the workflow log: on one line, cut to ``limit``, no workflow command.

    No HTML escaping: the log is plain text ("Settings > Actions" must read as such).
    """
    return no_workflow_commands(one_line(text, limit))


def untrusted(text: Any, limit: int) -> str:
    """Untrusted text for a Markdown table cell or HTML block: on one line, cut to ``limit``, no tags, no pipes,
    no `::` commands, no @-mentions (a zero-width space after `@`, as Dependabot does), no links, images or
    autolinks, no closing keywords."""
    # merging the bot's PR must not close "Fixes #1" of an eval's text
    value = neutralize_closing_keywords(one_line(text, limit))
    value = html.escape(value, quote=False).replace("|", "\\|").replace("`", "'")
    value = value.replace("[", "&#91;").replace("]", "&#93;").replace("@", "@\u200b")
    value = re.sub(r"(?i)(://|www\.)", lambda m: m.group(0)[0] + "\u200b" + m.group(0)[1:], value)
    return no_workflow_commands(value)


def fence_for(text: str, char: str = "`") -> str:
    """A code fence longer than any run of ``char`` in ``text``: the block shows ``text`` byte for byte."""
    longest = max((len(run) for run in re.findall(re.escape(char) + "+", text)), default=0)
    return char * max(3, longest + 1)


def untrusted_block(text: str, limit: int) -> str:
    """Multi-line untrusted text for a fenced block inside <details> (shown verbatim otherwise): cut to ``limit``, no
    fence or <details>/<summary> tag that could end the block early, no `::` commands, no closing keywords."""
    value = neutralize_closing_keywords(truncate(text, limit, note="\n… (cut)"))
    value = re.sub(r"`{3,}|~{3,}", lambda m: m.group(0)[0] * 2 + "\u200b" + m.group(0)[2:], value)
    value = re.sub(r"<(/?)(details|summary)", "<\\1\u200b\\2", value, flags=re.IGNORECASE)
    return no_workflow_commands(value)
