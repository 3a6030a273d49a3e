"""Labels a proposal defines, held to the definitions the eval's feedback states.

The quick start's plain rewrite listed "1. Bug - If the issue is a problem with the software or hardware" after
"Queue:", where the triage guide the feedback quotes says 'bug' means "something that should work is broken ...".
:func:`stated_meanings` reads the feedback's definitions (label -> meaning), :func:`defined_labels` finds the labels a
text defines, and :func:`agrees_with` says whether a definition takes its words from the feedback's. The guard that
refuses a proposal on them is ``reflection_proposals.guard_stated_meanings``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gepa_bot.search.feedback_rules import (
    MAX_STATEMENTS,
    SENTENCE_OR_LINE,
    STOPWORDS,
    bare_label,
    definition,
    extract_statements,
)


def stated_meanings(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Label key (:func:`label_key`) -> meaning, for every label the failures' feedback defines ("under our triage
    guide 'bug' means ...", "under our policy P1 means ...")."""
    meanings: dict[str, str] = {}
    for statement in extract_statements(records, limit=len(records) + MAX_STATEMENTS):
        parsed = definition(statement.text)
        pairs = statement.definitions or ([(parsed[1], parsed[2])] if parsed else [])
        for label, meaning in pairs:
            meanings.setdefault(label_key(label), meaning)
    return meanings


def label_key(label: str) -> str:
    """"'Feature Request'", "feature-request" and "feature_request" are one label."""
    return re.sub(r"[\s-]+", "_", bare_label(label).strip(" *_`"))


LISTED_DEFINITION = re.compile(
    r"^\s*(?:\d+[.)]|[-*\u2022])?\s*[*_'\"`]*(?P<label>[A-Za-z][\w -]{0,23}?)[*_'\"`]*"
    r"(?:\s+[-\u2013\u2014]\s+|\s*[:=]\s*|\s+(?:means|is defined as|stands for|covers|refers to)\s+"
    r"|\s+is\s+(?=(?:when|any|for|an?)\b))(?P<meaning>\S.*)$",
    re.IGNORECASE)
"""A line or sentence that defines one label: "2. Feature Request - If there's an idea ...", "bug: an error
page ...", "'other' means ...", "**P1** is when customers cannot work", "P2 is a ...". A dash between label and
meaning has spaces around it ("feature-request: ..." is one label). A rule that only mentions the label ("Bug is not
the queue for invoices") is not a definition."""
CLAUSE = re.compile(SENTENCE_OR_LINE.pattern + r"|;\s*")  # "P1 means ...; P2 means ...": one definition each
AGREEING_SHARE = 0.5  # of a proposal's definition's content words that must come from the feedback's definition


def defined_labels(text: str, labels: Iterable[str]) -> list[tuple[str, str, str]]:
    """(label key, label as written, meaning) for each piece of ``text`` (sentence, line or ';'-clause) that defines
    one of ``labels``."""
    wanted, found = set(labels), []
    for piece in CLAUSE.split(text):
        match = LISTED_DEFINITION.match(piece.strip())
        key = label_key(match.group("label")) if match else ""
        key = key if key in wanted else key[:-1] if key.endswith("s") else key  # "Feature requests: ..."
        if match and key in wanted:
            found.append((key, match.group("label").strip(), match.group("meaning").strip().rstrip(".")))
    return found


def _stems(text: str) -> set[str]:
    words = (w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS)
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words}


def agrees_with(meaning: str, stated: str) -> bool:
    """True when most of what ``meaning`` says comes from the feedback's definition ``stated`` (a condensed or
    partial quote agrees; "a problem with the software or hardware" for the guide's 'bug' does not)."""
    words = _stems(meaning)
    return not words or len(words & _stems(stated)) / len(words) >= AGREEING_SHARE
