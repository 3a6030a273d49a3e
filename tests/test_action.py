"""`gepa-bot action` end to end: real webhook payloads, the OpenAPI-validating fake GitHub, real git pushes.

Nothing of gepa-bot is mocked. The only stand-in is litellm's own `mock_response` (no sockets), which
answers the reflection model; the toy repo's eval command runs for real. Each run gets a fresh clone of
the fake remote as its workspace, like `actions/checkout` with `persist-credentials: false`.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
import textwrap
from pathlib import Path

import litellm
import pytest
from toyrepo import EVAL_PRELUDE, SNOOP, make_toy_repo, snoop_reports

from gepa_bot.github import action, workflow
from gepa_bot.github.git import ForeignCommits
from gepa_bot.redact import GITHUB_TOKEN_NAMES
from gepa_bot.result import RunResult

pytest_plugins = ["tests.fakegithub.fixtures"]

EVENTS = Path(__file__).parent / "fixtures" / "events"
OWNER, NAME = "octo", "toy"
FULL = f"{OWNER}/{NAME}"
TOKEN = "ghs_fakeWorkflowToken0123456789abcdef"
NO_KWARGS = dict(seconds_between_requests=0, seconds_between_writes=0, retry=None)
# Names 3 of the 6 validation keywords (billing, refund, login): 0/6 -> 3/6 on the toy eval.
IMPROVING = "Rationale: name the topics.\n\n````prompt\nClassify the ticket {ticket}.\nTopics: billing refund login\n````"
# Names none of them: no candidate can beat the baseline.
USELESS = "Rationale: be brief.\n\n````prompt\nClassify the ticket {ticket}. Be brief.\n````"
_REAL_COMPLETION = litellm.completion


def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _commit_all(path: Path, message: str) -> None:
    _git("add", ".", cwd=path)
    _git("-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-qm", message, cwd=path)


class Harness:
    """The fake GitHub with octo/toy on it, and everything needed to play one workflow run."""

    def __init__(self, fake, tmp_path: Path, monkeypatch):
        self.fake, self.tmp, self.monkeypatch = fake, tmp_path, monkeypatch
        self.src = make_toy_repo(tmp_path / "src")
        _git("init", "-q", "-b", "main", cwd=self.src)
        (self.src / "README.md").write_text("toy\n")
        (self.src / ".gitignore").write_text(".gepa-bot/\n")
        _commit_all(self.src, "initial")
        fake.create_repo(OWNER, NAME, self.src)
        fake.add_actions_token(TOKEN, OWNER, NAME)
        self.counter = tmp_path / "eval-counter"
        self.counter.mkdir()
        monkeypatch.setenv("TOY_COUNTER_DIR", str(self.counter))
        self.runs = 0
        self.lines: list[str] = []
        self.reply(IMPROVING)

    # ---- the reflection model --------------------------------------------------------------------
    def reply(self, text: str) -> None:
        self.monkeypatch.setattr(litellm, "completion", functools.partial(_REAL_COMPLETION, mock_response=text))

    # ---- one workflow run ------------------------------------------------------------------------
    def workspace(self, branch: str = "main") -> Path:
        """A fresh checkout of the fake remote, like actions/checkout (no credentials left behind)."""
        self.runs += 1
        work = self.tmp / f"run{self.runs}" / "workspace"
        remote = self.fake.git_url(OWNER, NAME)
        _git("clone", "-q", "-b", branch, remote.replace("http://", f"http://x-access-token:{TOKEN}@"), str(work))
        _git("remote", "set-url", "origin", remote, cwd=work)
        return work

    def env(self, event_name: str, payload: dict, *, token: str = TOKEN, work: Path | None = None,
            **extra: str) -> dict[str, str]:
        work = work or self.workspace()
        run_dir = work.parent
        (run_dir / "event.json").write_text(json.dumps(payload))
        env = {
            "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": event_name,
            "GITHUB_EVENT_PATH": str(run_dir / "event.json"), "GITHUB_REPOSITORY": FULL,
            "GITHUB_API_URL": self.fake.api_url, "GITHUB_SERVER_URL": self.fake.base_url,
            "GITHUB_WORKSPACE": str(work), "GITHUB_OUTPUT": str(run_dir / "output"),
            "GITHUB_STEP_SUMMARY": str(run_dir / "summary.md"), "GITHUB_REF_NAME": "main",
            "GITHUB_TOKEN": token, "GEPA_BOT_TOKEN": token,
        }
        env.update(extra)
        return env

    def run(self, env: dict[str, str]) -> dict[str, str]:
        self.lines = []
        outputs = action.run(env, emit=self.lines.append, **NO_KWARGS)
        assert outputs.values == read_outputs(env)
        return outputs.values

    def eval_ran(self) -> bool:
        return any(self.counter.iterdir())

    # ---- GitHub state ----------------------------------------------------------------------------
    def open_pulls(self, head: str) -> list:
        return [p for p in self.fake.pulls(OWNER, NAME) if p.state == "open" and p.head_ref == head]

    def comments_on(self, number: int) -> list:
        return [c for c in self.fake.comments.values() if c.repo == FULL and c.issue_number == number]

    def push_branch(self, branch: str, prompt: str) -> None:
        """A contributor's same-repo branch changing the prompt."""
        _git("checkout", "-q", "-b", branch, cwd=self.src)
        (self.src / "prompts" / "main.txt").write_text(prompt)
        _commit_all(self.src, f"{branch}: edit the prompt")
        _git("push", "-q", str(self.fake.repos[FULL].git_dir), f"{branch}:refs/heads/{branch}", cwd=self.src)
        _git("checkout", "-q", "main", cwd=self.src)


@pytest.fixture
def h(fake_github, tmp_path, monkeypatch) -> Harness:
    return Harness(fake_github, tmp_path, monkeypatch)


def read_outputs(env: dict[str, str]) -> dict[str, str]:
    path = Path(env["GITHUB_OUTPUT"])
    return dict(line.split("=", 1) for line in path.read_text().splitlines()) if path.exists() else {}


def event(name: str, **edits) -> dict:
    """A real webhook payload with the repository pointed at octo/toy."""
    payload = copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))
    if "repository" in payload:
        payload["repository"].update(full_name=FULL, name=NAME)
        payload["repository"]["owner"]["login"] = OWNER
    payload.update(edits)
    return payload


def push_event(*modified: str) -> dict:
    payload = event("push", ref="refs/heads/main")
    payload["commits"][0].update(added=[], removed=[], modified=list(modified))
    payload["head_commit"].update(added=[], removed=[], modified=list(modified))
    return payload


def comment_event(h: Harness, pr_number: int, body: str, user: str) -> dict:
    """issue_comment.created on pull request ``pr_number``; the comment also exists on the fake."""
    comment = h.fake.add_comment(OWNER, NAME, pr_number, body, user)
    payload = event("issue_comment.created.pull_request")
    payload["issue"]["number"] = pr_number
    payload["comment"].update(id=comment.id, body=body)
    payload["comment"]["user"].update(login=user, type="User")
    return payload


def reactions(h: Harness, payload: dict) -> list[str]:
    return [r["content"] for r in h.fake.comments[payload["comment"]["id"]].reactions]


# ---- push / schedule / dispatch: the bot's PR into the base branch -------------------------------

@pytest.mark.slow
def test_push_creates_pr_then_rerun_updates_it_then_close_when_nothing_beats_baseline(h):
    env = h.env("push", push_event("prompts/main.txt"))
    out = h.run(env)

    assert out["pull-request-operation"] == "created"
    number = int(out["pull-request-number"])
    assert out["pull-request-url"].endswith(f"/{FULL}/pull/{number}")
    assert out["pull-request-branch"] == "gepa-bot/main"
    assert out["pull-request-head-sha"] == h.fake.branch_sha(FULL, "gepa-bot/main")
    assert float(out["best-score"]) > float(out["baseline-score"])
    assert 0 < int(out["rollouts-used"]) <= 60
    # the improved prompt is on gepa-bot/main in the remote's bare repository; main is untouched
    improved = h.fake.read_file(OWNER, NAME, "gepa-bot/main", "prompts/main.txt")
    assert "{ticket}" in improved and "billing" in improved
    assert h.fake.read_file(OWNER, NAME, "main", "prompts/main.txt") == "Classify the ticket {ticket} into a queue.\n"
    pr = h.fake.issues[(FULL, number)]
    assert (pr.head_ref, pr.base_ref, pr.state, pr.labels) == ("gepa-bot/main", "main", "open", ["gepa-bot"])
    for section in ("### Changes", "### Per-instance results", "### Budget"):
        assert section in pr.body
    # the last line says what triggered the run, on which commit, and how to reproduce it locally
    main_sha = h.fake.branch_sha(FULL, "main")
    footer = pr.body.rstrip().splitlines()[-1]
    assert footer.startswith("<sub>Trigger: push changed prompts/main.txt · base `main` at `" + main_sha[:12] + "`")
    assert "reproduce locally: `gepa-bot optimize --repo . --budget 60 --seed 0`" in footer
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert summary.startswith("## gepa-bot: improved prompts (")
    assert f"Pull request created: {out['pull-request-url']}" in summary and "xychart-beta" in summary
    assert "xychart-beta" in pr.body
    assert any(line == f"gepa-bot: pull request created: {out['pull-request-url']}" for line in h.lines)
    # the search's log is one collapsible group with a status line per 10% of the budget
    group = h.lines[h.lines.index(next(x for x in h.lines if x.startswith("::group::gepa-bot: optimizing"))):]
    group = group[:group.index("::endgroup::") + 1]
    progress = [x for x in group if x.startswith("progress: rollouts ")]
    assert 3 <= len(progress) <= 10 and "val best" in progress[-1], group
    first_sha = h.fake.branch_sha(FULL, "gepa-bot/main")

    # nightly rerun on a fresh runner: same PR updated, never a second one
    out2 = h.run(h.env("schedule", event("schedule")))
    assert (out2["pull-request-operation"], out2["pull-request-number"]) == ("updated", str(number))
    assert [p.number for p in h.open_pulls("gepa-bot/main")] == [number]
    assert len(h.fake.pulls(OWNER, NAME)) == 1
    assert "billing" in h.fake.read_file(OWNER, NAME, "gepa-bot/main", "prompts/main.txt")
    # the same proposal on the same base: nothing pushed, so approvals and notifications are left alone
    assert h.fake.branch_sha(FULL, "gepa-bot/main") == first_sha is not None

    # the reflection model stops helping: nothing beats main's prompts, so the stale PR is closed
    h.reply(USELESS)
    out3 = h.run(h.env("schedule", event("schedule")))
    assert (out3["pull-request-operation"], out3["pull-request-number"]) == ("closed", str(number))
    assert float(out3["best-score"]) <= float(out3["baseline-score"])
    assert h.fake.issues[(FULL, number)].state == "closed"
    assert h.open_pulls("gepa-bot/main") == []
    closing = h.comments_on(number)
    assert len(closing) == 1 and "no candidate beats" in closing[0].body
    # no open PR of it any more: the bot's branch goes too (input delete-branch, on by default)
    assert h.fake.branch_sha(FULL, "gepa-bot/main") is None
    assert "gepa-bot: deleted the branch gepa-bot/main (no open pull request of it)" in h.lines

    # and once closed, another useless run has nothing to close
    out4 = h.run(h.env("schedule", event("schedule")))
    assert (out4["pull-request-operation"], out4["pull-request-number"]) == ("none", "")

    # the bot closed that PR itself (not a human's decision): a helpful run proposes again, in a new PR
    h.reply(IMPROVING)
    out5 = h.run(h.env("schedule", event("schedule")))
    assert out5["pull-request-operation"] == "created" and out5["pull-request-number"] != str(number)


def test_a_proposal_a_human_closed_is_not_reopened(h):
    out = h.run(h.env("push", push_event("prompts/main.txt")))
    number = int(out["pull-request-number"])
    pr = h.fake.issues[(FULL, number)]
    assert pr.body.startswith("<!-- gepa-bot:proposal=")
    sha = h.fake.branch_sha(FULL, "gepa-bot/main")
    pr.state = "closed"  # a maintainer closes it without merging

    out2 = h.run(h.env("schedule", event("schedule")))  # the nightly run finds the very same proposal
    assert (out2["pull-request-operation"], out2["pull-request-number"]) == ("none", "")
    assert h.open_pulls("gepa-bot/main") == [] and len(h.fake.pulls(OWNER, NAME)) == 1
    assert any(f"#{number} with this same proposal was closed without merging" in line for line in h.lines)
    assert h.comments_on(number) == []  # and no noise on the closed PR
    assert sha and h.fake.branch_sha(FULL, "gepa-bot/main") is None  # nothing pushed; the stale branch is gone

    out3 = h.run(h.env("schedule", event("schedule")))  # and the decision still holds without the branch
    assert out3["pull-request-operation"] == "none" and len(h.fake.pulls(OWNER, NAME)) == 1


def test_a_humans_commit_on_the_bot_branch_is_never_overwritten(h):
    out = h.run(h.env("push", push_event("prompts/main.txt")))
    number = int(out["pull-request-number"])
    # a reviewer pushes a fix-up onto the bot's branch
    work = h.workspace("gepa-bot/main")
    (work / "prompts" / "main.txt").write_text("Classify the ticket {ticket}. Topics: billing, refund, login, crash\n")
    _commit_all(work, "reviewer: add crash")
    _git("push", "-q", str(h.fake.repos[FULL].git_dir), "gepa-bot/main:refs/heads/gepa-bot/main", cwd=work)
    human_sha = h.fake.branch_sha(FULL, "gepa-bot/main")

    with pytest.raises(ForeignCommits, match="1 commit\\(s\\) the bot did not make \\(by Dev\\)"):
        h.run(h.env("schedule", event("schedule")))
    assert h.fake.branch_sha(FULL, "gepa-bot/main") == human_sha
    (comment,) = h.comments_on(number)
    assert "refusing to overwrite" in comment.body and "delete the branch" in comment.body


def test_a_branch_with_a_humans_commit_is_kept_when_its_pr_is_closed(h):
    out = h.run(h.env("push", push_event("prompts/main.txt")))
    work = h.workspace("gepa-bot/main")
    (work / "notes.md").write_text("a reviewer's notes\n")
    _commit_all(work, "reviewer: notes")
    _git("push", "-q", str(h.fake.repos[FULL].git_dir), "gepa-bot/main:refs/heads/gepa-bot/main", cwd=work)
    human_sha = h.fake.branch_sha(FULL, "gepa-bot/main")

    h.reply(USELESS)
    out2 = h.run(h.env("schedule", event("schedule")))
    assert (out2["pull-request-operation"], out2["pull-request-number"]) == ("closed", out["pull-request-number"])
    assert h.fake.branch_sha(FULL, "gepa-bot/main") == human_sha  # closed, but the human's commit is not deleted


def test_pull_request_inputs_draft_reviewers_team_assignees_labels(h):
    for login in ("alice", "bob"):
        h.fake.set_permission(OWNER, NAME, login, "write")
    inputs = {"GEPA_BOT_DRAFT": "true", "GEPA_BOT_REVIEWERS": "alice", "INPUT_TEAM-REVIEWERS": "prompt-owners",
              "GEPA_BOT_ASSIGNEES": "bob", "GEPA_BOT_LABELS": "prompts,\nai"}
    out = h.run(h.env("push", push_event("prompts/main.txt"), **inputs))
    pr = h.fake.issues[(FULL, int(out["pull-request-number"]))]
    assert (pr.draft, pr.requested_reviewers, pr.requested_teams, pr.assignees, pr.labels) == (
        True, ["alice"], ["prompt-owners"], ["bob"], ["prompts", "ai"])

    # an update never asks the same people again (no second notification)
    asked = [r for r in h.fake.requests if r[0] == "POST" and r[1].endswith(("/requested_reviewers", "/assignees"))]
    assert len(asked) == 2
    h.run(h.env("schedule", event("schedule"), **inputs))
    assert [r for r in h.fake.requests if r[0] == "POST" and r[1].endswith(("/requested_reviewers", "/assignees"))
            ] == asked


def test_a_reviewer_github_refuses_is_a_warning_not_a_failed_run(h):
    out = h.run(h.env("push", push_event("prompts/main.txt"), GEPA_BOT_REVIEWERS="stranger"))
    assert out["pull-request-operation"] == "created"
    (warning,) = [line for line in h.lines if line.startswith("::warning::")]
    assert "requesting reviews from stranger" in warning and "collaborators" in warning


def test_branch_and_base_inputs(h):
    _git("push", "-q", str(h.fake.repos[FULL].git_dir), "main:refs/heads/release", cwd=h.src)
    work = h.workspace("release")
    out = h.run(h.env("push", push_event("prompts/main.txt"), work=work, GEPA_BOT_BASE="release",
                      GEPA_BOT_BRANCH="bots/prompts"))
    pr = h.fake.issues[(FULL, int(out["pull-request-number"]))]
    assert (pr.head_ref, pr.base_ref, out["pull-request-branch"]) == ("bots/prompts", "release", "bots/prompts")
    assert h.fake.branch_sha(FULL, "gepa-bot/release") is None

    # a push to that branch is the bot's own: skipped
    payload = push_event("prompts/main.txt")
    payload["ref"] = "refs/heads/bots/prompts"
    h.counter_before = sorted(h.counter.iterdir())
    out2 = h.run(h.env("push", payload, GEPA_BOT_BRANCH="bots/prompts"))
    assert out2["pull-request-operation"] == "none" and sorted(h.counter.iterdir()) == h.counter_before


def test_a_base_that_is_not_checked_out_is_a_clear_error(h, capsys):
    work = h.workspace("main")
    (h.src / "README.md").write_text("toy, later\n")
    _commit_all(h.src, "later")
    _git("push", "-q", str(h.fake.repos[FULL].git_dir), "main:refs/heads/dev", cwd=h.src)
    code = action.main(h.env("schedule", event("schedule"), work=work, GEPA_BOT_BASE="dev"))
    assert code == 2
    (error,) = _error_lines(capsys)
    assert "input 'base'" in error and "not the tip of 'dev'" in error and "ref: dev" in error
    assert not h.eval_ran()


def test_a_bad_branch_input_names_the_input(h, capsys):
    code = action.main(h.env("schedule", event("schedule"), GEPA_BOT_BRANCH="bad..name"))
    assert code == 2
    (error,) = _error_lines(capsys)
    assert "action inputs: branch" in error and "not a valid git branch name" in error


def test_push_touching_only_the_readme_is_skipped(h):
    env = h.env("push", push_event("README.md"))
    out = h.run(env)
    assert out["pull-request-operation"] == "none" and out["pull-request-number"] == ""
    assert h.fake.pulls(OWNER, NAME) == [] and h.fake.branch_sha(FULL, "gepa-bot/main") is None
    assert not h.eval_ran()
    assert "skipped" in Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert not any(method != "GET" and path.startswith("/api/") for method, path, _status in h.fake.requests)


def test_push_to_the_bots_own_branch_is_skipped(h):
    payload = push_event("prompts/main.txt")
    payload["ref"] = "refs/heads/gepa-bot/main"
    out = h.run(h.env("push", payload, GITHUB_REF_NAME="gepa-bot/main"))
    assert out["pull-request-operation"] == "none" and not h.eval_ran()


def test_workflow_dispatch_budget_input_is_respected(h):
    payload = event("workflow_dispatch", inputs={"budget": "30"})
    env = h.env("workflow_dispatch", payload)
    out = h.run(env)
    assert out["pull-request-operation"] == "created"
    assert 0 < int(out["rollouts-used"]) <= 30
    result = RunResult.read(Path(env["GITHUB_WORKSPACE"]) / ".gepa-bot" / "run" / "result.json")
    assert result.budget.rollouts_used <= 30


# ---- comment commands ----------------------------------------------------------------------------

@pytest.fixture
def feature_pr(h):
    """octocat (write access) opened same-repo PR `feature` -> main that edits the prompt."""
    h.fake.set_permission(OWNER, NAME, "octocat", "write")
    h.push_branch("feature", "Route the support ticket {ticket} to a queue.\n")
    return h.fake.add_pull(OWNER, NAME, head="feature", base="main", title="Reword the prompt", user="octocat")


def test_optimize_comment_from_a_writer_opens_a_pr_into_the_pr_branch(h, feature_pr):
    payload = comment_event(h, feature_pr.number, "/gepa optimize budget=40", "octocat")
    out = h.run(h.env("issue_comment", payload))

    assert reactions(h, payload) == ["eyes"]
    assert out["pull-request-operation"] == "created" and 0 < int(out["rollouts-used"]) <= 40
    bot_pr = h.fake.issues[(FULL, int(out["pull-request-number"]))]
    assert (bot_pr.head_ref, bot_pr.base_ref) == ("gepa-bot/feature", "feature")
    improved = h.fake.read_file(OWNER, NAME, "gepa-bot/feature", "prompts/main.txt")
    assert improved.startswith("Classify") or "Route" in improved
    assert "billing" in improved and "{ticket}" in improved
    # built on the PR's head, not on main
    parent = _git("--git-dir", str(h.fake.repos[FULL].git_dir), "rev-parse", "gepa-bot/feature^").strip()
    assert parent == h.fake.branch_sha(FULL, "feature")
    bodies = [c.body for c in h.comments_on(feature_pr.number) if c.user == "github-actions[bot]"]
    assert len(bodies) == 2
    assert bodies[0].startswith("gepa-bot: optimizing `feature` with a budget of 40 rollouts")
    assert "proposed improvements in " + out["pull-request-url"] in bodies[1]
    assert h.fake.read_file(OWNER, NAME, "feature", "prompts/main.txt") == "Route the support ticket {ticket} to a queue.\n"

    # a maintainer closes the bot's PR; a writer's explicit `/gepa optimize` asks for it again
    bot_pr.state = "closed"
    again = comment_event(h, feature_pr.number, "/gepa optimize budget=40", "octocat")
    out2 = h.run(h.env("issue_comment", again))
    assert out2["pull-request-operation"] == "created" and out2["pull-request-number"] != out["pull-request-number"]


def test_optimize_comment_on_the_bots_own_pr_updates_it_and_never_nests_branches(h):
    out = h.run(h.env("push", push_event("prompts/main.txt")))
    number = int(out["pull-request-number"])
    h.fake.set_permission(OWNER, NAME, "octocat", "write")
    payload = comment_event(h, number, "/gepa optimize budget=40", "octocat")
    again = h.run(h.env("issue_comment", payload))
    assert (again["pull-request-operation"], again["pull-request-number"]) == ("updated", str(number))
    assert h.fake.branch_sha(FULL, "gepa-bot/gepa-bot/main") is None
    assert [p.number for p in h.fake.pulls(OWNER, NAME)] == [number]
    assert any("gepa-bot's own proposal" in c.body for c in h.comments_on(number))


def test_comment_from_a_read_only_outsider_is_refused(h, feature_pr):
    h.fake.set_permission(OWNER, NAME, "outsider", "read")
    payload = comment_event(h, feature_pr.number, "/gepa optimize budget=40", "outsider")
    out = h.run(h.env("issue_comment", payload))

    assert out["pull-request-operation"] == "none"
    assert reactions(h, payload) == ["confused"]
    replies = [c.body for c in h.comments_on(feature_pr.number) if c.user == "github-actions[bot]"]
    assert len(replies) == 1 and "@outsider" in replies[0] and "write access" in replies[0]
    assert h.fake.branch_sha(FULL, "gepa-bot/feature") is None
    assert not h.eval_ran()


def test_evaluate_comment_reports_the_score(h, feature_pr):
    payload = comment_event(h, feature_pr.number, "/gepa evaluate", "octocat")
    out = h.run(h.env("issue_comment", payload))

    assert reactions(h, payload) == ["eyes"]
    replies = [c.body for c in h.comments_on(feature_pr.number) if c.user == "github-actions[bot]"]
    assert len(replies) == 1
    assert re.search(r"current prompts on `feature` score \*\*0\.000\*\* on 6 validation instances", replies[0])
    assert "should mention" in replies[0]  # the failing instances' feedback
    assert out["baseline-score"] == "0.0000" and out["pull-request-operation"] == "none"
    assert h.eval_ran() and h.fake.branch_sha(FULL, "gepa-bot/feature") is None


def test_stop_comment_answers(h, feature_pr):
    payload = comment_event(h, feature_pr.number, "/gepa stop", "octocat")
    out = h.run(h.env("issue_comment", payload))
    assert reactions(h, payload) == ["eyes"]
    replies = [c.body for c in h.comments_on(feature_pr.number) if c.user == "github-actions[bot]"]
    assert len(replies) == 1 and "cancel-in-progress" in replies[0]
    # this job cannot know whether something was running: the reply must not claim it stopped anything
    assert "If an optimization for this pull request was running" in replies[0]
    assert "stopped" not in replies[0]
    assert out["pull-request-operation"] == "none" and not h.eval_ran()


def test_invalid_command_argument_is_explained(h, feature_pr):
    payload = comment_event(h, feature_pr.number, "/gepa optimize budget=lots", "octocat")
    h.run(h.env("issue_comment", payload))
    assert reactions(h, payload) == ["confused"]
    replies = [c.body for c in h.comments_on(feature_pr.number) if c.user == "github-actions[bot]"]
    assert len(replies) == 1 and "budget=N" in replies[0]
    assert not h.eval_ran()


def test_fork_pull_request_is_refused_and_nothing_runs(h, tmp_path):
    h.fake.set_permission(OWNER, NAME, "octocat", "write")
    fork_src = tmp_path / "fork"
    _git("clone", "-q", str(h.src), str(fork_src))
    # a hostile fork: its "eval" would leak the environment if it were ever run
    (fork_src / "evals" / "eval.py").write_text("import os; print(os.environ)\n")
    _commit_all(fork_src, "evil")
    h.fake.create_repo("mallory", NAME, fork_src, fork_of=FULL)
    pr = h.fake.add_pull(OWNER, NAME, head="main", base="main", title="improve", user="mallory",
                         head_repo=f"mallory/{NAME}")
    payload = comment_event(h, pr.number, "/gepa optimize", "octocat")
    out = h.run(h.env("issue_comment", payload))

    assert out["pull-request-operation"] == "none"
    replies = [c.body for c in h.comments_on(pr.number) if c.user == "github-actions[bot]"]
    assert len(replies) == 1 and "comes from a fork" in replies[0]
    assert not h.eval_ran()
    assert h.fake.branch_sha(FULL, "gepa-bot/main") is None
    assert all(not ref.startswith("gepa-bot/") for ref in _git(
        "--git-dir", str(h.fake.repos[FULL].git_dir), "for-each-ref", "--format=%(refname:short)").split())


def test_plain_comments_and_bot_comments_are_ignored(h, feature_pr):
    payload = comment_event(h, feature_pr.number, "LGTM, thanks", "octocat")
    assert h.run(h.env("issue_comment", payload))["pull-request-operation"] == "none"
    bot = comment_event(h, feature_pr.number, "/gepa optimize", "octocat")
    bot["comment"]["user"]["type"] = "Bot"
    assert h.run(h.env("issue_comment", bot))["pull-request-operation"] == "none"
    assert reactions(h, payload) == [] and reactions(h, bot) == []
    assert not h.eval_ran()


# ---- failures a user must fix: exit 2, one ::error:: line ----------------------------------------

def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("::error::")]


def test_actions_not_permitted_to_create_prs(h, capsys):
    h.fake.actions_can_create_prs = False
    code = action.main(h.env("push", push_event("prompts/main.txt")))
    assert code == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1
    assert "not permitted to create or approve pull requests" in errors[0]
    assert "Settings > Actions > General" in errors[0]
    assert TOKEN not in errors[0]
    assert h.fake.pulls(OWNER, NAME) == []


def test_bad_token_fails_fast_with_a_token_hint(h, capsys):
    bad = "ghp_revokedTokenValue000000000000000"
    code = action.main(h.env("push", push_event("prompts/main.txt"), token=bad))
    assert code == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and "401" in errors[0] and "check the token input" in errors[0]
    assert bad not in errors[0]
    assert not h.eval_ran()  # checked before any rollout is spent
    assert h.fake.branch_sha(FULL, "gepa-bot/main") is None


def test_missing_config_names_the_file(h, capsys):
    work = h.workspace()
    (work / ".gepa-bot.yml").unlink()
    code = action.main(h.env("schedule", event("schedule"), work=work))
    assert code == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and ".gepa-bot.yml: config file not found" in errors[0]
    assert not h.eval_ran()


def test_inputs_are_read_once_from_composite_and_docker_style_names():
    composite = workflow.Inputs.from_env({"GEPA_BOT_REFLECTION_MODEL": "openai/gpt-4o", "GEPA_BOT_BUDGET": "80",
                                        "GITHUB_TOKEN": "ghs_x"})
    assert (composite.reflection_model, composite.budget, composite.token) == ("openai/gpt-4o", "80", "ghs_x")
    # docker actions get INPUT_<NAME> with the hyphen kept, as GitHub sets it
    docker = workflow.Inputs.from_env({"INPUT_REFLECTION-MODEL": "openai/gpt-4o-mini", "INPUT_CONFIG": "ci/gepa.yml",
                                     "INPUT_TOKEN": "ghs_y"})
    assert (docker.reflection_model, docker.config, docker.token) == ("openai/gpt-4o-mini", "ci/gepa.yml", "ghs_y")
    assert workflow.Inputs.from_env({}).config == ".gepa-bot.yml"


def test_the_pr_body_links_the_run_artifact_for_the_full_report():
    where = action.full_report_where({"GITHUB_RUN_ID": "42", "GITHUB_REPOSITORY": "octo/toy",
                                      "GITHUB_SERVER_URL": "https://github.example"})
    assert where == ("in `report-full.md` of the `gepa-bot-run` artifact of "
                     "[this workflow run](https://github.example/octo/toy/actions/runs/42)")
    # action.yml uploads the run directory under that very name
    text = (Path(__file__).resolve().parent.parent / "action.yml").read_text()
    assert f"name: {action.RUN_ARTIFACT}\n" in text and "path: ${{ steps.plan.outputs.run-dir }}" in text


def test_every_line_of_a_multi_line_secret_is_masked_on_its_own():
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"
    emitted: list[str] = []
    workflow.mask_secrets({"APP_PRIVATE_KEY": pem, "PATH": "/usr/bin"}, emitted.append)
    assert emitted == [f"::add-mask::{line}" for line in pem.splitlines()]
    assert all("\n" not in line for line in emitted)


# ---- secrets and untrusted text ------------------------------------------------------------------

def test_token_never_leaks_and_untrusted_report_is_fenced(h):
    env = h.env("push", push_event("prompts/main.txt"), OPENAI_API_KEY="sk-fakeProviderKey123456")
    h.run(env)
    lines = h.lines
    secrets = (TOKEN, "sk-fakeProviderKey123456")
    masks = [line for line in lines if line.startswith("::add-mask::")]
    assert set(masks) == {f"::add-mask::{s}" for s in secrets}
    # masks come first, before anything else is printed
    assert lines[: len(masks)] == masks
    for line in lines[len(masks):]:
        assert not any(s in line for s in secrets), line

    work = Path(env["GITHUB_WORKSPACE"])
    run_dir = work / ".gepa-bot" / "run"
    places = {"GITHUB_OUTPUT": Path(env["GITHUB_OUTPUT"]).read_text(),
              "step summary": Path(env["GITHUB_STEP_SUMMARY"]).read_text(),
              "run.jsonl": (run_dir / "run.jsonl").read_text(),
              "result.json": (run_dir / "result.json").read_text(),
              "report-full.md": (run_dir / "report-full.md").read_text()}
    places.update({f"PR #{p.number}": f"{p.title}\n{p.body}" for p in h.fake.pulls(OWNER, NAME)})
    places.update({f"comment {c.id}": c.body for c in h.fake.comments.values()})
    places["git config"] = (work / ".git" / "config").read_text()
    for where, text in places.items():
        assert not any(s in text for s in secrets), f"a secret leaked into {where}"
    assert len(h.fake.pulls(OWNER, NAME)) == 1

    # the report (text we do not control) is printed between ::stop-commands:: markers
    start = next(i for i, line in enumerate(lines) if line.startswith("::stop-commands::"))
    marker = lines[start].split("::stop-commands::", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{32}", marker) and marker not in TOKEN
    end = lines.index(f"::{marker}::")
    fenced = "\n".join(lines[start + 1:end])
    assert "### Changes" in fenced and "billing" in fenced
    assert not any("### Changes" in line for line in lines[:start] + lines[end + 1:])


def test_workflow_commands_in_the_proposal_cannot_escape(h):
    """A reflection reply that tries to end the fence and issue commands stays inert."""
    h.reply("Rationale: x\n\n````prompt\nClassify the ticket {ticket}. billing refund login\n"
            "::endgroup::\n::set-output name=pull-request-url::http://evil\n````")
    env = h.env("push", push_event("prompts/main.txt"))
    out = h.run(env)
    assert out["pull-request-url"].startswith(h.fake.base_url)
    start = next(i for i, line in enumerate(h.lines) if line.startswith("::stop-commands::"))
    marker = h.lines[start].split("::stop-commands::", 1)[1]
    end = h.lines.index(f"::{marker}::")
    for line in h.lines[:start] + h.lines[end + 1:]:
        assert "set-output" not in line and "evil" not in line
    assert "http://evil" not in Path(env["GITHUB_OUTPUT"]).read_text().replace(
        "pull-request-url=" + out["pull-request-url"], "")


def test_pushed_file_names_cannot_inject_workflow_commands(h):
    """Git allows newlines in file names; the push event's file list is echoed in the log."""
    payload = push_event("evals/x\n::error::injected\n::set-output name=pull-request-url::http://evil")
    out = h.run(h.env("push", payload))
    assert out["pull-request-operation"] == "created"
    assert not any(line.startswith("::") and "injected" in line for text in h.lines for line in text.splitlines())
    assert not any(line.startswith("::set-output") for text in h.lines for line in text.splitlines())


def test_comment_commands_use_the_config_on_the_pr_branch(h):
    """A PR that renames the prompt file (and its config entry) is evaluated with its own config."""
    h.fake.set_permission(OWNER, NAME, "octocat", "write")
    _git("checkout", "-q", "-b", "rename", cwd=h.src)
    _git("mv", "prompts/main.txt", "prompts/triage.txt", cwd=h.src)
    config = h.src / ".gepa-bot.yml"
    config.write_text(config.read_text().replace("prompts/main.txt", "prompts/triage.txt"))
    h.src.joinpath("evals", "eval.py").write_text(
        h.src.joinpath("evals", "eval.py").read_text().replace("prompts/main.txt", "prompts/triage.txt"))
    _commit_all(h.src, "rename the prompt")
    _git("push", "-q", str(h.fake.repos[FULL].git_dir), "rename:refs/heads/rename", cwd=h.src)
    _git("checkout", "-q", "main", cwd=h.src)
    pr = h.fake.add_pull(OWNER, NAME, head="rename", base="main", title="Rename the prompt", user="octocat")

    payload = comment_event(h, pr.number, "/gepa evaluate", "octocat")
    h.run(h.env("issue_comment", payload))
    replies = [c.body for c in h.comments_on(pr.number) if c.user == "github-actions[bot]"]
    assert len(replies) == 1 and "score **0.000** on 6 validation instances" in replies[0]


# ---- token isolation: the phase that runs evals never holds the GitHub token -------------------------

# The hostile eval: toyrepo's SNOOP, then a score of 0 per instance with what it found as the feedback.
HOSTILE_EVAL = SNOOP + EVAL_PRELUDE + textwrap.dedent('''
    for i in Path(os.environ["GEPA_BOT_IDS_FILE"]).read_text().split():
        print(json.dumps({"id": i, "score": 0.0, "feedback": "found: " + (", ".join(found) or "nothing")}))
''')


@pytest.mark.slow
def test_hostile_eval_cannot_find_the_token_in_the_three_phase_action(h, tmp_path):
    """action.yml's steps as real processes: plan and publish hold the token, optimize (the evals) does not."""
    import os
    import sys

    work = h.workspace()
    (work / "evals" / "eval.py").write_text(HOSTILE_EVAL)
    _commit_all(work, "a hostile eval")
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    report = tmp_path / "snoop.jsonl"
    needle = tmp_path / "needle"
    needle.write_text(TOKEN)
    env = h.env("workflow_dispatch", event("workflow_dispatch", inputs={"budget": "12"}), work=work)
    base = {k: v for k, v in os.environ.items() if k not in GITHUB_TOKEN_NAMES}
    base.update({k: v for k, v in env.items() if k not in GITHUB_TOKEN_NAMES},
                RUNNER_TEMP=str(runner_temp), NEEDLE_FILE=str(needle), SNOOP_REPORT=str(report),
                GEPA_BOT_REFLECTION_MODEL="openai/offline", OPENAI_API_KEY="sk-unused-offline-key0000",
                OPENAI_API_BASE="http://127.0.0.1:9/v1")

    def phase(name: str, with_token: bool) -> subprocess.CompletedProcess:
        phase_env = {**base, "GEPA_BOT_TOKEN": TOKEN} if with_token else dict(base)
        return subprocess.run([sys.executable, "-m", "gepa_bot.cli", "action", "--phase", name], env=phase_env,
                              cwd=work, capture_output=True, text=True, timeout=300)

    for name, with_token in (("plan", True), ("optimize", False), ("publish", True)):
        done = phase(name, with_token)
        assert done.returncode == 0, f"{name}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        assert TOKEN not in done.stdout.replace(f"::add-mask::{TOKEN}", "")
    assert report.exists(), "the hostile eval never ran"
    assert all(found == [] for found in snoop_reports(report)), "the eval found the token"
    state = (runner_temp / "gepa-bot-state" / "state.json").read_text()
    assert TOKEN not in state and json.loads(state)["stage"] == "publish"
    outputs = read_outputs(env)
    assert outputs["rollouts-used"] != "0"
    # the plan phase told action.yml's cache and artifact steps what runs, where, and for which branch
    assert (outputs["work"], outputs["scope"], outputs["cache-dir"], outputs["run-dir"]) == (
        "true", "main", ".gepa-bot/cache", ".gepa-bot/run")
    # the optimize phase refuses to start when a token is in its environment
    refused = phase("optimize", with_token=True)
    assert refused.returncode == 2 and "must never hold the GitHub token" in refused.stdout
    # control: the same eval under a single process that holds the token does find it (the test can see a leak), in
    # the environment of the shell around it (gepa-bot's own is closed to an eval without CAP_SYS_PTRACE: non-dumpable)
    report.unlink()
    single = subprocess.run(["sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-m", "gepa_bot.cli", "action"],
                            env={**base, "GEPA_BOT_TOKEN": TOKEN}, cwd=work, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-2000:]
    assert any(where.startswith("/proc/") for found in snoop_reports(report) for where in found)


# ---- errors are not scores: a run stopped by errors leaves the pull request and its branch alone ------

# The toy eval with a bug: it lists its instances, then crashes on every evaluation (an error, never a score of 0).
CRASHING_EVAL = EVAL_PRELUDE + "raise SystemExit(\"ImportError: the eval's own bug\")\n"


def _fast_retries(monkeypatch) -> None:
    """Errors are still retried (eval.retries: 2), without the 2 s and 8 s backoff in between."""
    import gepa_bot.search.adapter

    monkeypatch.setattr(gepa_bot.search.adapter, "RETRY_DELAYS_S", (0.0, 0.0, 0.0))


def _break_the_eval(h: Harness, branch: str = "main") -> None:
    """A commit on ``branch`` of the remote that makes its eval crash (as a push brings it)."""
    _git("checkout", "-q", branch, cwd=h.src)
    (h.src / "evals" / "eval.py").write_text(CRASHING_EVAL)
    _commit_all(h.src, "a broken eval")
    _git("push", "-q", str(h.fake.repos[FULL].git_dir), f"{branch}:refs/heads/{branch}", cwd=h.src)
    _git("checkout", "-q", "main", cwd=h.src)


def _github(h: Harness) -> tuple:
    import dataclasses

    """Everything a run could change on GitHub: every issue and PR (state, body, labels...), every comment with its
    reactions, every branch of the remote (a PR's head_sha is left out: the fake refreshes it when it is read)."""
    issues = [dataclasses.replace(p, head_sha=None) for p in copy.deepcopy(h.fake.pulls(OWNER, NAME))]
    comments = copy.deepcopy({c.id: c for c in h.fake.comments.values() if c.repo == FULL})
    refs = _git("--git-dir", str(h.fake.repos[FULL].git_dir), "for-each-ref", "--format=%(refname) %(objectname)")
    return issues, comments, refs


def _writes_since(h: Harness, start: int) -> list:
    """API writes and git pushes since request ``start`` (fetches are POSTs too, but read nothing back)."""
    return [r for r in h.fake.requests[start:] if r[0] != "GET" and "git-upload-pack" not in r[1]]


def _assert_stopped_by_the_crash(message: str) -> None:
    assert message.startswith("run stopped: ") and "could not be scored, so there is no baseline" in message
    assert "last error: " in message and "the eval's own bug" in message and " Fix: " in message
    assert "\n" not in message


def test_a_push_run_whose_eval_crashes_stops_with_exit_3_and_leaves_the_bots_pr_alone(h, monkeypatch, capsys):
    from gepa_bot.runlog import read_records

    _fast_retries(monkeypatch)
    out = h.run(h.env("push", push_event("prompts/main.txt")))
    assert out["pull-request-operation"] == "created"
    _break_the_eval(h)
    before, start = _github(h), len(h.fake.requests)

    env = h.env("push", push_event("evals/eval.py"))
    lines: list[str] = []
    with pytest.raises(action.RunStopped) as stopped:
        action.run(env, emit=lines.append, **NO_KWARGS)
    assert stopped.value.exit_code == 3
    _assert_stopped_by_the_crash(str(stopped.value))
    # the PR is not closed (a crashing eval scores nothing, it does not make the proposal worse), not updated, not
    # commented on; its branch is neither pushed nor deleted
    assert _github(h) == before and _writes_since(h, start) == []
    assert "gepa-bot: the run stopped because of errors; the pull request and its branch were left as they are" in lines
    assert not any("pull request closed" in line or "deleted the branch" in line for line in lines)
    assert read_outputs(env)["pull-request-operation"] == "none"
    assert "run stopped: " in Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    run_dir = Path(env["GITHUB_WORKSPACE"]) / ".gepa-bot" / "run"
    assert not (run_dir / "result.json").exists()
    [record] = read_records(run_dir, "stopped")
    assert "no baseline" in record["cause"]
    assert {r["attempt"] for r in read_records(run_dir, "eval_error")} == {1, 2, 3}  # retried twice first

    # the console entry (`gepa-bot action`): one ::error:: line with the cause, exit code 3
    capsys.readouterr()
    assert action.main(h.env("push", push_event("evals/eval.py"))) == 3
    (error,) = _error_lines(capsys)
    _assert_stopped_by_the_crash(error.removeprefix("::error::"))
    assert _github(h) == before and _writes_since(h, start) == []


def test_an_optimize_comment_whose_eval_crashes_gets_one_reply_with_the_cause_and_changes_nothing(h, monkeypatch):
    _fast_retries(monkeypatch)
    h.fake.set_permission(OWNER, NAME, "octocat", "write")
    h.push_branch("feature", "Route the support ticket {ticket} to a queue.\n")
    feature = h.fake.add_pull(OWNER, NAME, head="feature", base="main", title="Reword the prompt", user="octocat")
    first = h.run(h.env("issue_comment", comment_event(h, feature.number, "/gepa optimize budget=40", "octocat")))
    assert first["pull-request-operation"] == "created"  # the bot's PR gepa-bot/feature -> feature
    _break_the_eval(h, "feature")
    payload = comment_event(h, feature.number, "/gepa optimize budget=40", "octocat")
    (issues, comments, refs) = _github(h)

    lines: list[str] = []
    with pytest.raises(action.RunStopped):
        action.run(h.env("issue_comment", payload), emit=lines.append, **NO_KWARGS)

    issues_after, comments_after, refs_after = _github(h)
    assert (issues_after, refs_after) == (issues, refs)  # no PR opened, updated or closed; no branch pushed
    assert reactions(h, payload) == ["eyes"]
    assert {i: comments_after[i] for i in comments if i != payload["comment"]["id"]} == \
        {i: c for i, c in comments.items() if i != payload["comment"]["id"]}
    new = [c for i, c in comments_after.items() if i not in comments]
    assert all(c.user == "github-actions[bot]" and c.issue_number == feature.number for c in new)
    stops = [c.body for c in new if "run stopped" in c.body]
    assert len(stops) == 1 and len(new) == 2  # "optimizing `feature`…", then the cause
    assert new[0].body.startswith("gepa-bot: optimizing `feature`")
    _assert_stopped_by_the_crash(stops[0].split("gepa-bot: ", 1)[1].split("\n", 1)[0])
    assert "Nothing was changed" in stops[0]


def test_the_three_phase_action_does_not_publish_a_stopped_run(h, monkeypatch, tmp_path):
    _fast_retries(monkeypatch)
    assert h.run(h.env("push", push_event("prompts/main.txt")))["pull-request-operation"] == "created"
    _break_the_eval(h)
    before, start = _github(h), len(h.fake.requests)
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    env = h.env("push", push_event("evals/eval.py"), RUNNER_TEMP=str(runner_temp))
    without_token = {k: v for k, v in env.items() if k not in GITHUB_TOKEN_NAMES}
    lines: list[str] = []

    # as action.yml runs them: plan (token), optimize (no token; the step fails), publish (token, `if: always()`)
    action.run_phase("plan", env, emit=lines.append, **NO_KWARGS)
    assert read_outputs(env)["work"] == "true"
    assert action.main(without_token, phase="optimize") == 3
    state = json.loads((runner_temp / "gepa-bot-state" / "state.json").read_text())
    assert state["stage"] == "stopped" and state["summary"].startswith("gepa-bot: run stopped: ")
    _assert_stopped_by_the_crash(state["summary"].removeprefix("gepa-bot: "))
    assert state["result_file"] is None and TOKEN not in json.dumps(state)
    action.run_phase("publish", env, emit=lines.append, **NO_KWARGS)  # returns normally: nothing to publish

    assert _github(h) == before and _writes_since(h, start) == []
    assert "gepa-bot: the run stopped because of errors; the pull request and its branch were left as they are" in lines
    assert read_outputs(env)["pull-request-operation"] == "none"
    assert "run stopped: " in Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    # and action.yml does run the publish step after a failed optimize step
    steps = (Path(__file__).resolve().parent.parent / "action.yml").read_text().split("    - name: ")
    (publish,) = [s for s in steps if s.startswith("Publish")]
    assert "if: always() && steps.plan.outputs.work == 'true'" in publish and "--phase publish" in publish


# ---- the job summary: every run leaves something to read in the Actions UI -------------------------------

def test_a_run_that_opens_no_pull_request_says_why_in_the_job_summary(h):
    h.reply(USELESS)
    env = h.env("push", push_event("prompts/main.txt"))
    out = h.run(env)
    assert out["pull-request-operation"] == "none" and h.fake.pulls(OWNER, NAME) == []
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert summary.startswith("## gepa-bot: no candidate beats the current prompts\n")
    assert "No pull request: no candidate scores higher than the current prompts on validation." in summary
    chart = summary.split("```mermaid\n", 1)[1].split("\n```", 1)[0]
    assert chart.startswith("xychart-beta\n") and "x-axis \"rollouts\" [" in chart and "line [" in chart
    table = summary.split("### Per-instance results")[1].split("###")[0]
    assert len([line for line in table.splitlines() if re.match(r"\| i\d\d ", line)]) == 6  # the toy's 6 val instances
    assert "### Budget" in summary and f"| {out['rollouts-used']} / 60 |" in summary
    assert len(summary.encode()) < 64 * 1024  # the top of the table, not the whole report


def test_a_stopped_run_writes_the_job_summary_with_the_cause_and_the_budget_spent(h, monkeypatch):
    _fast_retries(monkeypatch)
    _break_the_eval(h)
    env = h.env("push", push_event("evals/eval.py"))
    with pytest.raises(action.RunStopped):
        action.run(env, emit=[].append, **NO_KWARGS)
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert summary.startswith("## gepa-bot: run stopped by errors\n")
    assert "No pull request was opened, updated or closed" in summary and "run stopped: " in summary
    assert "the eval's own bug" in summary
    assert "Spent before it stopped: " in summary and " of 60 rollouts (" in summary


def test_the_job_summary_is_cut_to_githubs_1_mib_in_bytes(tmp_path):
    path = tmp_path / "summary.md"
    workflow.write_outputs({"GITHUB_STEP_SUMMARY": str(path)}, workflow.Outputs(), "é" * 1024 * 1024)
    data = path.read_bytes()
    assert len(data) <= 1024 * 1024 and data.decode("utf-8").endswith("1 MiB step-summary limit._\n")


# ---- `/gepa apply N`: switch the bot's PR to another candidate of the last run, no eval re-run -------------

def _add_choice(h: Harness, number: int, index: int, text: str, val_mean: float = 0.4) -> None:
    """The PR's embedded choices gain candidate ``index`` (as a run with that Pareto variant would have written)."""
    from gepa_bot.github.apply import CHOICES, Choice, _encode, decode

    pr = h.fake.issues[(FULL, number)]
    choices = decode(pr.body)
    assert choices is not None
    name = next(iter(choices.candidates[choices.best].texts))
    choices.candidates[index] = Choice(val_mean=val_mean, texts={name: text})
    pr.body = CHOICES.sub(lambda _: _encode(choices).strip(), pr.body)


@pytest.mark.slow
def test_apply_switches_the_bots_pr_to_a_variant_idempotently_and_back_to_the_best(h):
    from gepa_bot.github.apply import decode

    out = h.run(h.env("push", push_event("prompts/main.txt")))
    number = int(out["pull-request-number"])
    pr = h.fake.issues[(FULL, number)]
    choices = decode(pr.body)
    assert choices is not None and choices.base == "main" and choices.base_sha == h.fake.branch_sha(FULL, "main")
    best_text = h.fake.read_file(OWNER, NAME, "gepa-bot/main", "prompts/main.txt")
    assert list(choices.candidates[choices.best].texts.values()) == [best_text]
    variant = "Classify the ticket {ticket}. Topics: password crash export\n"
    _add_choice(h, number, 2, variant)
    h.fake.set_permission(OWNER, NAME, "octocat", "write")
    h.fake.set_permission(OWNER, NAME, "outsider", "read")
    counter = len(list(h.counter.iterdir()))

    def apply(command: str, user: str = "octocat") -> tuple[str | None, str, list[str]]:
        before = {c.id for c in h.comments_on(number)}
        h.run(h.env("issue_comment", comment_event(h, number, command, user)))
        replies = [c.body for c in h.comments_on(number) if c.id not in before and c.user == "github-actions[bot]"]
        return h.fake.branch_sha(FULL, "gepa-bot/main"), h.fake.issues[(FULL, number)].body, replies

    sha, body, replies = apply("/gepa apply 2")
    assert h.fake.read_file(OWNER, NAME, "gepa-bot/main", "prompts/main.txt") == variant
    assert "Applied with `/gepa apply 2`: this branch holds variant #2 (validation 0.400)" in body
    assert body.startswith("<!-- gepa-bot:proposal=") and decode(body) == decode(pr.body)
    assert len(replies) == 1 and replies[0].startswith("gepa-bot: switched this pull request to candidate #2")
    # the same comment again: nothing pushed, the body as it was
    assert apply("/gepa apply 2")[:2] == (sha, body)
    # unknown N, an outsider, a bad argument: nothing changes
    sha2, body2, replies = apply("/gepa apply 9")
    assert (sha2, body2) == (sha, body) and "candidate 9 is not one of this pull request's choices" in replies[0]
    assert apply("/gepa apply best", user="outsider")[:2] == (sha, body)
    sha2, body2, replies = apply("/gepa apply two")
    assert (sha2, body2) == (sha, body) and "use `/gepa apply N`" in replies[0]
    # a variant that lost the placeholder is validated like a publish and refused
    _add_choice(h, number, 3, "Classify the ticket.\n")
    body = h.fake.issues[(FULL, number)].body
    sha2, body2, replies = apply("/gepa apply 3")
    assert (sha2, body2) == (sha, body) and "candidate 3 does not validate against the base" in replies[0]
    # back to the best
    sha2, body2, replies = apply("/gepa apply best")
    assert h.fake.read_file(OWNER, NAME, "gepa-bot/main", "prompts/main.txt") == best_text and sha2 != sha
    assert "Applied with" not in body2 and replies[0].startswith(f"gepa-bot: switched this pull request to candidate "
                                                                 f"#{choices.best}")
    assert len(list(h.counter.iterdir())) == counter  # no eval ran for any of it
    # the base moved on: the scores may not hold there, nothing changes
    (h.src / "README.md").write_text("toy, edited\n")
    _commit_all(h.src, "edit the readme")
    _git("push", "-q", str(h.fake.repos[FULL].git_dir), "main:refs/heads/main", cwd=h.src)
    sha3, body3, replies = apply("/gepa apply 2")
    assert (sha3, body3) == (sha2, body2) and "moved on since this run" in replies[0]
    # a closed pull request is not switched
    h.fake.issues[(FULL, number)].state = "closed"
    sha3, body3, replies = apply("/gepa apply best")
    assert (sha3, body3) == (sha2, body2) and "this pull request is closed" in replies[0]
