"""Hardening from issue 26 that does not need the two-job split: closing keywords in untrusted PR-body text,
and the Action's cache keys and job layout (scopes that are no prefix of each other, no cache saved after evals,
the comment gate before the concurrency group, the optimize and publish jobs)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gepa_bot.escaping import ZWJ, neutralize_closing_keywords

# A model of GitHub's matcher (docs: "Linking a pull request to an issue using a keyword"), written independently
# of gepa_bot.escaping: a keyword, an optional colon, whitespace, then #N, owner/repo#N or an issue URL.
GITHUB_CLOSING = re.compile(r"(?i)(?<![\w])(close[sd]?|fix(?:e[sd])?|resolve[sd]?)(?!\w):?\s*"
                            r"(#\d+|[\w.-]+/[\w.-]+#\d+|https?://github\.com/[\w.-]+/[\w.-]+/(?:issues|pull)/\d+)")


@pytest.mark.parametrize("text", [
    "Fixes #1", "fixes #1", "FIXES #1", "closes o/r#2", "Resolves: #3", "resolved:#4", "close #5", "closed #6",
    "fix #7", "fixed #8", "resolve #9", "Closes octo-org/octo.repo#10",
    "Fix https://github.com/o/r/issues/11", "Fixes: https://github.com/o/r/pull/12",
    "the answer was wrong. Fixes #1, fixes #2 and closes o/r#3",
])
def test_closing_keywords_are_neutralized(text):
    assert GITHUB_CLOSING.search(text), "the fixture itself must be a closing reference"
    out = neutralize_closing_keywords(text)
    assert not GITHUB_CLOSING.search(out), out
    assert out.replace(ZWJ, "") == text  # renders the same: only zero-width joiners were added
    assert neutralize_closing_keywords(out) == out  # idempotent


@pytest.mark.parametrize("text", [
    "fixed a bug in the parser", "see #12", "prefix #1", "suffixes #3", "the fix: use #hashtags", "closest #4",
    "resolver o/r#5", "disclosed #6", "",
])
def test_text_without_a_closing_reference_is_unchanged(text):
    assert neutralize_closing_keywords(text) == text


def test_unicode_spaces_and_line_breaks_between_keyword_and_reference_are_covered():
    for gap in ("\u00a0", "\n", "\t", " : ", ":\n  "):
        out = neutralize_closing_keywords(f"Fixes{gap}#1")
        assert out.startswith("F" + ZWJ), repr(out)


def test_a_url_whose_scheme_was_already_escaped_is_still_covered():
    # report.untrusted() breaks `://` with a zero-width space before this may run
    assert neutralize_closing_keywords("Closes https:\u200b//github.com/o/r/issues/3").startswith("C" + ZWJ)


@given(st.text(alphabet=st.sampled_from(list("Fixes closed Resolve:#/o1r2 -\n\u00a0")), max_size=60))
def test_no_closing_reference_survives_any_text(text):
    out = neutralize_closing_keywords(text)
    assert not GITHUB_CLOSING.search(out), repr(out)
    assert out.replace(ZWJ, "") == text


@pytest.mark.xfail(strict=True, reason="report.py (not this change's file) must call neutralize_closing_keywords in "
                                       "untrusted(); remove this marker when it does")
def test_report_untrusted_neutralizes_closing_keywords():
    from gepa_bot.report import untrusted
    assert not GITHUB_CLOSING.search(untrusted("wrong answer. Fixes #1, closes o/r#2", 300))
