"""Why reflection replies were rejected, grouped: the PR body's and the CLI's rejection summary.

Replies are rejected for the same reason with different details (the excerpt the reply quoted, its length, a
request id). :func:`reason_group` is the key that groups them: it masks only what varies from reply to reply and
keeps what a reader needs, so that a group is still shown by one of its reasons exactly as it was written:

- masked: quoted excerpts of a reply (``'…'``), long numbers in free text (``5234``), sizes and durations
  (``412 chars``, ``30.5s``), and long hexadecimal ids (request ids, hashes);
- kept: model names and other tokens that mix letters and digits (``openai/qwen2.5-coder-1.5b``), URLs with their
  hosts and ports, quoted names and URLs (``'openai/gpt-4o'``), and small counts (``after 4 attempts``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from gepa_bot.result import RejectedProposal

MASK = "…"

REASON_HINTS = {
    "no fenced prompt block": "the reflection model does not follow the rewrite format; try "
                              "optimizer.reflection_style: edit or a stronger model",
    "no JSON object": "the reflection model does not follow the edit format; use a server with constrained output "
                      "or a stronger model",
    "contains a placeholder": "the model keeps copying the input placeholder into its edits",
    "is already in the prompt": "the model repeats what the prompt already says",
    "identical to the current one": "the model returns the prompt unchanged; try optimizer.reflection_style: edit",
    "LLM call failed": "the reflection model could not be reached or refused the request: check the model name, "
                       "the API key and the provider's status",
}

# A quoted excerpt: '...' (not an apostrophe inside a word: "the reply's") or "...", on one line.
_QUOTED = re.compile(r"(?<![\w'])'([^'\n]*)'(?!\w)|\"([^\"\n]*)\"")
_NAME_OR_URL = re.compile(r"\S*/\S*")  # a quoted model name (provider/model) or URL: kept
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_UNITS = {"char", "chars", "character", "characters", "byte", "bytes", "token", "tokens", "line", "lines",
          "ms", "s", "sec", "secs", "second", "seconds", "kb", "mb", "gb", "kib", "mib", "gib"}
_SIZE_OR_DURATION = re.compile(r"\d+(?:\.\d+)?(?:ms|s|kb|mb|gb|kib|mib|gib)", re.IGNORECASE)
_HEX_ID = re.compile(r"(?<![0-9A-Za-z])(?=[0-9a-fA-F-]*\d[0-9a-fA-F-]*\d[0-9a-fA-F-]*\d[0-9a-fA-F-]*\d)"
                     r"[0-9a-fA-F]{8,}(?:-[0-9a-fA-F]{4,})*(?![0-9A-Za-z])")
_LONG = 4  # digits from which a number in free text is a measurement or an id, not a count
_PUNCTUATION = "([{<#'\")]}>,;:.!?"  # what may surround a number in prose


@dataclass(frozen=True)
class RejectionGroup:
    """Rejected replies that share a reason (up to what varies from reply to reply)."""

    reason: str  # the group's most frequent reason, exactly as it was written (the first seen of equals)
    count: int
    hint: str  # what to do about it; "" when there is no advice


def reason_group(reason: str) -> str:
    """The grouping key of a rejection reason: its quoted excerpts, long numbers, sizes, durations and ids masked
    (see the module doc); model names, URLs and small counts stay as they are."""
    masked = _QUOTED.sub(_quoted, reason)
    masked = _HEX_ID.sub(MASK, masked)
    words = masked.split()
    return " ".join(_word(word, words[i + 1] if i + 1 < len(words) else "") for i, word in enumerate(words))


def _quoted(match: re.Match[str]) -> str:
    inner = match.group(1) if match.group(1) is not None else match.group(2)
    if _NAME_OR_URL.fullmatch(inner):
        return match.group(0)
    quote = match.group(0)[0]
    return f"{quote}{MASK}{quote}"


def _word(word: str, following: str) -> str:
    """One whitespace-separated word of a reason: a number in prose is masked when it is long or a measurement."""
    core = word.strip(_PUNCTUATION)
    if not core or "/" in word:
        return word  # a URL, a path, a model name with its provider
    start = word.index(core)
    if _SIZE_OR_DURATION.fullmatch(core):
        return word[:start] + MASK + word[start + len(core):]
    if not _NUMBER.fullmatch(core):
        return word  # letters and digits mixed (a model name, a version), or no number at all
    unit = following.strip(_PUNCTUATION).lower()
    if sum(c.isdigit() for c in core) >= _LONG or unit in _UNITS:
        return word[:start] + MASK + word[start + len(core):]
    return word


def rejection_reasons(rejected: list[RejectedProposal]) -> list[RejectionGroup]:
    """Rejected replies grouped by :func:`reason_group`, most frequent first (ties: first seen first), each shown by
    its most frequent reason, with a hint."""
    groups: dict[str, Counter[str]] = {}
    for entry in rejected:
        groups.setdefault(reason_group(entry.reason), Counter())[entry.reason] += 1
    ordered = sorted(groups.items(), key=lambda item: -item[1].total())
    return [RejectionGroup(reason=reasons.most_common(1)[0][0], count=reasons.total(),
                           hint=next((hint for key, hint in REASON_HINTS.items() if key in group), ""))
            for group, reasons in ordered]
