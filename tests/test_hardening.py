"""Hardening from issue 26 that does not need the two-job split: closing keywords in untrusted PR-body text,
and the Action's cache keys and job layout (scopes that are no prefix of each other, no cache saved after evals,
the comment gate before the concurrency group, the optimize and publish jobs)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gepa_bot.escaping import ZWJ, neutralize_closing_keywords
from gepa_bot.github.artifact import cache_scope, plan_outputs

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
    # escaping.untrusted() breaks `://` with a zero-width space before this may run
    assert neutralize_closing_keywords("Closes https:\u200b//github.com/o/r/issues/3").startswith("C" + ZWJ)


@given(st.text(alphabet=st.sampled_from(list("Fixes closed Resolve:#/o1r2 -\n\u00a0")), max_size=60))
def test_no_closing_reference_survives_any_text(text):
    out = neutralize_closing_keywords(text)
    assert not GITHUB_CLOSING.search(out), repr(out)
    assert out.replace(ZWJ, "") == text


def test_report_untrusted_neutralizes_closing_keywords():
    from gepa_bot.escaping import untrusted
    assert not GITHUB_CLOSING.search(untrusted("wrong answer. Fixes #1, closes o/r#2", 300))


# ---- the Action and the workflows (issue 26 "Also found" and the job split) --------------------------------------

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
WORKFLOWS = {name: ROOT / ".github" / "workflows" / f"gepa-bot-{name}.yml" for name in ("push", "nightly", "comment")}


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


def _action_steps() -> list[dict]:
    return _load(ACTION)["runs"]["steps"]


def _index(steps: list[dict], predicate) -> int:
    return next(i for i, s in enumerate(steps) if predicate(s))


def _eval_cache_key(scope: str, run_id: str = "1", attempt: str = "1") -> tuple[str, str]:
    """The eval cache's (key, restore prefix) for a branch, as action.yml builds them."""
    step = next(s for s in _action_steps() if s.get("name") == "Restore the eval cache")
    values = {"steps.handover.outputs.cache-scope": cache_scope(scope), "github.run_id": run_id,
              "github.run_attempt": attempt}

    def expand(text: str) -> str:
        return re.sub(r"\$\{\{\s*([^}]+?)\s*\}\}", lambda m: values[m.group(1)], text).strip()

    return expand(step["with"]["key"]), expand(step["with"]["restore-keys"])


@pytest.mark.slow
def test_no_branch_restores_another_branchs_eval_cache():
    branches = ["main", "main-x", "main-", "release/1", "release/1-2", "a", "ab"]
    for branch in branches:
        _, prefix = _eval_cache_key(branch)
        for other in branches:
            if other != branch:
                key, _ = _eval_cache_key(other)
                assert not key.startswith(prefix), f"{branch}'s restore key {prefix!r} matches {other}'s key {key!r}"
        assert _eval_cache_key(branch)[0].startswith(prefix)  # its own earlier runs still restore


def test_pip_cache_is_never_saved_after_evals_and_holds_no_built_wheels():
    steps = _action_steps()
    pip = [s for s in steps if "pip" in str(s.get("with", {}).get("path", ""))]
    assert pip and not any(s["uses"].startswith("actions/cache@") for s in pip)  # no post-job save
    save = _index(steps, lambda s: s.get("uses", "").startswith("actions/cache/save@") and "pip" in s["with"]["path"])
    optimize = _index(steps, lambda s: s.get("run", "").strip().endswith("action --phase optimize"))
    plan = _index(steps, lambda s: s.get("run", "").strip().endswith("action --phase plan"))
    local_model = _index(steps, lambda s: "install-local-model" in s.get("run", ""))
    assert local_model < save < plan < optimize  # saved right after the installs, before anything runs
    for step in pip:
        paths = step["with"]["path"].split()
        assert paths and all(p.startswith("~/.cache/pip/http") for p in paths), paths  # not ~/.cache/pip (wheels/)
        assert "job == 'all' || inputs.job == 'optimize'" in step["if"]  # the plan and publish jobs use no cache


def test_the_comment_gate_comes_before_the_concurrency_group():
    jobs = _load(WORKFLOWS["comment"])["jobs"]
    joining = [name for name, job in jobs.items() if job.get("concurrency", {}).get("cancel-in-progress") is True]
    assert joining == ["optimize"]
    assert jobs["optimize"]["needs"] == "plan" and "needs.plan.outputs.obeyed == 'true'" == jobs["optimize"]["if"]
    assert "author_association" in jobs["plan"]["if"] and "concurrency" not in jobs["plan"]


@pytest.mark.parametrize("name", WORKFLOWS)
def test_the_evals_run_in_a_read_only_job_and_a_fresh_job_publishes(name):
    data = _load(WORKFLOWS[name])
    assert data["permissions"] == {}
    jobs = data["jobs"]
    assert list(jobs) == ["plan", "optimize", "publish"]
    optimize, publish = jobs["optimize"], jobs["publish"]
    assert optimize["permissions"] == {"contents": "read"}
    for job in (optimize, publish):
        checkouts = [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")]
        assert checkouts and all(s["with"]["persist-credentials"] is False for s in checkouts)
    [action] = [s for s in optimize["steps"] if s.get("uses", "").startswith("./")]
    assert action["with"]["job"] == "optimize" and "token" not in action["with"]
    assert not any("token" in str(v).lower() for v in action.get("env", {}).values())
    assert set(publish["needs"]) == {"plan", "optimize"}
    [action] = [s for s in publish["steps"] if s.get("uses", "").startswith("./")]
    assert action["with"] == {"job": "publish", "base-sha": "${{ needs.plan.outputs.base-sha }}",
                              "plan-state": "${{ needs.plan.outputs.plan-state }}"}
    assert "env" not in action  # no model key where nothing is evaluated
    assert not any(s.get("run") for s in publish["steps"])  # no script of the repository's


def test_the_publish_job_runs_no_eval_and_restores_no_cache():
    steps = _action_steps()
    for step in steps:
        condition = step.get("if", "")
        runs_in_publish = "inputs.job == 'publish'" in condition or "job" not in condition
        if step.get("uses", "").startswith("actions/cache"):
            assert not runs_in_publish, step
        if step.get("run", "").strip().endswith("action --phase optimize"):
            assert "inputs.job == 'publish'" not in condition and "job" in condition
        if "install-local-model" in step.get("run", ""):
            assert "inputs.job == 'all' || inputs.job == 'optimize'" in condition
    check = next(s for s in steps if s.get("id") == "check")
    publish = next(s for s in steps if s.get("id") == "gepa")
    assert "-m gepa_bot.github.artifact check" in check["run"] and "steps.check.outcome == 'success'" in publish["if"]
    assert _index(steps, lambda s: s.get("id") == "check") < _index(steps, lambda s: s.get("id") == "gepa")


def _state(stage: str, verb: str, summary: str = "", base: str | None = "main") -> dict:
    return {"plan": {"verb": verb, "reason": "r", "budget": None, "files": None, "pr_number": 7, "comment_id": 9,
                     "commenter": "someone", "base": base, "head": None},
            "stage": stage, "summary": summary, "outputs": {}, "result_file": None, "body": "", "evaluation": None}


@pytest.mark.parametrize("state, work, obeyed", [
    (_state("optimize", "optimize"), "true", "true"),
    (_state("evaluate", "evaluate"), "true", "true"),
    (_state("done", "stop", "stop requested"), "false", "true"),  # a writer's stop joins the group (cancels)
    (_state("done", "stop", "gepa-bot refused a command from someone (no write access)"), "false", "false"),
    (_state("done", "optimize", "gepa-bot refused a command from someone (no write access)"), "false", "false"),
    (_state("done", "skip", "gepa-bot skipped: no prompt changed", base=None), "false", "false"),
])
def test_plan_outputs_for_the_later_jobs(tmp_path, state, work, obeyed):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".gepa-bot.yml").write_text("prompts:\n  - path: p.md\neval:\n  command: 'true'\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "state.json").write_text(json.dumps(state))
    values = plan_outputs(tmp_path / "state.json", repo, repo / ".gepa-bot.yml")
    assert (values["work"], values["obeyed"], values["base-sha"]) == (work, obeyed, sha)
    assert json.loads(values["plan-state"]) == state and "\n" not in values["plan-state"]
    assert values["cache-scope"] == cache_scope(state["plan"]["base"] or "") and len(values["cache-scope"]) == 32
