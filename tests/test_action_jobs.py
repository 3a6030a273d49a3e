"""The three-job layout (action.yml `job: plan | optimize | publish`) against the fake GitHub, job by job.

Each job gets its own runner: its own RUNNER_TEMP and its own checkout. The plan job holds the token and hands
over only its job outputs (`python -m gepa_bot.github.artifact plan-outputs`); the optimize job checks out the base SHA,
holds no token, runs the evals and writes the result artifact (`python -m gepa_bot.github.artifact from-state`); the
publish job is a fresh, shallow, detached checkout of the base SHA without credentials, gets the plan state and
the downloaded artifact, and runs `gepa-bot action --phase publish` as its own process. A tampered artifact
publishes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_action import (
    FULL,
    NO_KWARGS,
    OWNER,
    TOKEN,
    Harness,
    _break_the_eval,
    _commit_all,
    _fast_retries,
    _git,
    _github,
    _writes_since,
    comment_event,
    event,
    push_event,
    reactions,
    read_outputs,
)

from gepa_bot.github import action
from gepa_bot.redact import GITHUB_TOKEN_NAMES

# every test plays the three jobs as processes on fresh clones
pytestmark = pytest.mark.slow

pytest_plugins = ["tests.fakegithub.fixtures"]

NAME = "toy"


@pytest.fixture
def h(fake_github, tmp_path, monkeypatch) -> Harness:
    return Harness(fake_github, tmp_path, monkeypatch)


@dataclass
class Runner:
    """One job's machine: a checkout and a RUNNER_TEMP of its own."""

    work: Path
    temp: Path


def _checkout(h: Harness, sha: str, name: str) -> Runner:
    """actions/checkout with `ref: <sha>` and persist-credentials: false: shallow, detached, no credentials kept."""
    root = h.tmp / name
    work, temp = root / "workspace", root / "runner-temp"
    temp.mkdir(parents=True)
    remote = h.fake.git_url(OWNER, NAME)
    _git("init", "-q", str(work))
    _git("-c", "protocol.version=2", "fetch", "-q", "--no-tags", "--depth=1",
         remote.replace("http://", f"http://x-access-token:{TOKEN}@"), sha, cwd=work)
    _git("checkout", "-q", "--detach", sha, cwd=work)
    _git("remote", "add", "origin", remote, cwd=work)
    return Runner(work, temp)


def _subprocess_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in GITHUB_TOKEN_NAMES}
    base.update(env)
    base.update(extra)
    return base


def _plan_job(h: Harness, event_name: str, payload: dict) -> tuple[dict[str, str], dict[str, str]]:
    """The plan job (token): plan phase, then the handover step; returns (its env, its job outputs)."""
    work = h.workspace()
    temp = work.parent / "runner-temp"
    temp.mkdir()
    env = h.env(event_name, payload, work=work, RUNNER_TEMP=str(temp))
    action.run_phase("plan", env, emit=h.lines.append, **NO_KWARGS)
    done = subprocess.run([sys.executable, "-m", "gepa_bot.github.artifact", "plan-outputs", "--state",
                           str(temp / "gepa-bot-state" / "state.json"), "--workspace", str(work)],
                          env=_subprocess_env({}, GITHUB_OUTPUT=str(work.parent / "handover")), cwd=work,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = dict(line.split("=", 1) for line in (work.parent / "handover").read_text().splitlines())
    assert TOKEN not in outputs["plan-state"]
    return env, outputs


def _job_env(h: Harness, plan_env: dict[str, str], runner: Runner, plan: dict[str, str], *,
             token: bool) -> dict[str, str]:
    """A later job's environment: its own workspace and RUNNER_TEMP holding the plan state (action.yml's check step)."""
    state = runner.temp / "gepa-bot-state" / "state.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(plan["plan-state"])
    env = {k: v for k, v in plan_env.items() if k not in GITHUB_TOKEN_NAMES}
    env.update(GITHUB_WORKSPACE=str(runner.work), RUNNER_TEMP=str(runner.temp),
               GITHUB_OUTPUT=str(runner.temp / "output"), GITHUB_STEP_SUMMARY=str(runner.temp / "summary.md"))
    if token:
        env["GEPA_BOT_TOKEN"] = TOKEN
    return env


def _optimize_job(h: Harness, plan_env: dict[str, str], plan: dict[str, str]) -> Path:
    """The optimize job (no token): the evals, then the result artifact; returns the artifact directory."""
    h.runs += 1
    runner = _checkout(h, plan["base-sha"], f"optimize-job-{h.runs}")
    env = _job_env(h, plan_env, runner, plan, token=False)
    assert not any(env.get(n) for n in GITHUB_TOKEN_NAMES)
    code = action.main(env, phase="optimize")
    assert code in (0, 3)  # 3: the run stopped; the artifact step runs anyway (if: always())
    out = runner.temp / "gepa-bot-result"
    done = subprocess.run([sys.executable, "-m", "gepa_bot.github.artifact", "from-state", "--state",
                           str(runner.temp / "gepa-bot-state" / "state.json"), "--run-dir",
                           str(runner.work / plan["run-dir"]), "--out", str(out), "--base-sha", plan["base-sha"]],
                          env=_subprocess_env({}), cwd=runner.work, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _publish_job(h: Harness, plan_env: dict[str, str], plan: dict[str, str], artifact: Path, *,
                 checkout_sha: str | None = None) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """The publish job (token, fresh runner): downloads the artifact, runs `gepa-bot action --phase publish`."""
    h.runs += 1
    runner = _checkout(h, checkout_sha or plan["base-sha"], f"publish-job-{h.runs}")
    downloaded = runner.temp / "gepa-bot-result"
    shutil.copytree(artifact, downloaded, symlinks=True)
    env = _job_env(h, plan_env, runner, plan, token=True)
    env.update(GEPA_BOT_ARTIFACT=str(downloaded), GEPA_BOT_BASE_SHA=plan["base-sha"])
    done = subprocess.run([sys.executable, "-m", "gepa_bot.cli", "action", "--phase", "publish"],
                          env=_subprocess_env(env), cwd=runner.work, capture_output=True, text=True, timeout=300)
    return done, env


def _three_jobs(h: Harness, event_name: str, payload: dict) -> tuple[subprocess.CompletedProcess, dict[str, str],
                                                                     dict[str, str]]:
    plan_env, plan = _plan_job(h, event_name, payload)
    assert plan["work"] == "true"
    artifact = _optimize_job(h, plan_env, plan)
    done, env = _publish_job(h, plan_env, plan, artifact)
    return done, env, plan


def test_three_jobs_open_the_pr_from_the_validated_artifact_on_a_fresh_shallow_checkout(h):
    done, env, plan = _three_jobs(h, "push", push_event("prompts/main.txt"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = read_outputs(env)
    assert out["pull-request-operation"] == "created"
    assert float(out["best-score"]) > float(out["baseline-score"]) and 0 < int(out["rollouts-used"]) <= 60
    base = plan["base-sha"]
    assert base == h.fake.branch_sha(FULL, "main")
    improved = h.fake.read_file(OWNER, NAME, "gepa-bot/main", "prompts/main.txt")
    assert "{ticket}" in improved and "billing" in improved
    parent = _git("--git-dir", str(h.fake.repos[FULL].git_dir), "rev-parse", "gepa-bot/main^").strip()
    assert parent == base  # built on the planned base, from a checkout with no refs/heads/main
    pr = h.fake.issues[(FULL, int(out["pull-request-number"]))]
    assert (pr.head_ref, pr.base_ref, pr.state) == ("gepa-bot/main", "main", "open")
    assert "### Changes" in pr.body and f"base `main` at `{base[:12]}`" in pr.body  # rendered by the publish job
    assert "reproduce locally: `gepa-bot optimize --repo . --budget 60 --seed 0`" in pr.body

    # main moves on (a README commit): the bot's branch now sits on an older base. The next three jobs update the
    # same PR; the publish job's shallow clone does not take main's history for commits the bot did not make.
    (h.src / "README.md").write_text("toy, later\n")
    _commit_all(h.src, "later")
    _git("push", "-q", str(h.fake.repos[FULL].git_dir), "main:refs/heads/main", cwd=h.src)
    done2, env2, plan2 = _three_jobs(h, "schedule", event("schedule"))
    assert done2.returncode == 0, done2.stdout[-3000:] + done2.stderr[-3000:]
    out2 = read_outputs(env2)
    assert (out2["pull-request-operation"], out2["pull-request-number"]) == ("updated", out["pull-request-number"])
    parent2 = _git("--git-dir", str(h.fake.repos[FULL].git_dir), "rev-parse", "gepa-bot/main^").strip()
    assert parent2 == plan2["base-sha"] == h.fake.branch_sha(FULL, "main") != base


def _tamper_result(artifact: Path, edit) -> None:
    data = json.loads((artifact / "result.json").read_text())
    edit(data["best_files"])
    (artifact / "result.json").write_text(json.dumps(data))
    for path, content in data["best_files"].items():
        target = artifact / "files" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)


def _outside_prompts(artifact: Path, plan: dict[str, str]) -> None:
    _tamper_result(artifact, lambda files: files.update({"evals/eval.py": "print('pwned')\n"}))


def _symlink(artifact: Path, plan: dict[str, str]) -> None:
    target = artifact / "files" / "prompts" / "main.txt"
    target.unlink()
    target.symlink_to("../../../../workspace/.git/config")


def _dropped_placeholder(artifact: Path, plan: dict[str, str]) -> None:
    _tamper_result(artifact, lambda files: files.update({"prompts/main.txt": "Classify the ticket. billing refund\n"}))


def _manifest_base_moved(artifact: Path, plan: dict[str, str]) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["base_sha"] = "0" * 40
    (artifact / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(("tamper", "reason"), [
    (_outside_prompts, "artifact: evals/eval.py is not a configured prompt path"),
    (_symlink, "artifact: files/prompts/main.txt is a symlink"),
    (_dropped_placeholder, "the proposed text drops placeholder(s) {ticket}"),
    (_manifest_base_moved, f"artifact: base SHA {'0' * 40} is not the planned base"),
])
def test_a_tampered_artifact_publishes_nothing_and_fails_with_the_reason(h, tamper, reason):
    plan_env, plan = _plan_job(h, "push", push_event("prompts/main.txt"))
    artifact = _optimize_job(h, plan_env, plan)
    tamper(artifact, plan)
    before, start = _github(h), len(h.fake.requests)

    done, env = _publish_job(h, plan_env, plan, artifact)

    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith("::error::")]
    assert len(errors) == 1 and reason in errors[0], done.stdout
    assert _github(h) == before and _writes_since(h, start) == []  # nothing pushed, opened or commented
    assert h.fake.branch_sha(FULL, "gepa-bot/main") is None
    assert "pull-request-operation" not in read_outputs(env)


def test_a_publish_checkout_of_a_base_that_moved_publishes_nothing(h):
    plan_env, plan = _plan_job(h, "push", push_event("prompts/main.txt"))
    artifact = _optimize_job(h, plan_env, plan)
    (h.src / "README.md").write_text("toy, later\n")
    _commit_all(h.src, "later")
    _git("push", "-q", str(h.fake.repos[FULL].git_dir), "main:refs/heads/main", cwd=h.src)
    moved = h.fake.branch_sha(FULL, "main")
    before, start = _github(h), len(h.fake.requests)

    done, _env = _publish_job(h, plan_env, plan, artifact, checkout_sha=moved)

    assert done.returncode == 2
    (error,) = [line for line in done.stdout.splitlines() if line.startswith("::error::")]
    assert f"HEAD is {moved}, not the planned base {plan['base-sha']}" in error
    assert _github(h) == before and _writes_since(h, start) == []


def test_a_stopped_optimize_job_leaves_the_pr_alone_and_answers_the_comment(h, monkeypatch):
    _fast_retries(monkeypatch)
    h.fake.set_permission(OWNER, NAME, "octocat", "write")
    h.push_branch("feature", "Route the support ticket {ticket} to a queue.\n")
    feature = h.fake.add_pull(OWNER, NAME, head="feature", base="main", title="Reword the prompt", user="octocat")
    _break_the_eval(h, "feature")
    payload = comment_event(h, feature.number, "/gepa optimize budget=40", "octocat")
    issues, comments, refs = _github(h)

    plan_env, plan = _plan_job(h, "issue_comment", payload)
    assert plan["base-sha"] == h.fake.branch_sha(FULL, "feature")  # the gate pinned the PR head
    artifact = _optimize_job(h, plan_env, plan)
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["stopped"].startswith("gepa-bot: run stopped: ") and not (artifact / "result.json").exists()
    done, env = _publish_job(h, plan_env, plan, artifact)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "the pull request and its branch were left as they are" in done.stdout
    issues_after, comments_after, refs_after = _github(h)
    assert (issues_after, refs_after) == (issues, refs)  # no PR opened, updated or closed; no branch pushed
    assert reactions(h, payload) == ["eyes"]
    new = [c for i, c in comments_after.items() if i not in comments]
    assert [c.user for c in new] == ["github-actions[bot]"] * 2
    assert new[0].body.startswith("gepa-bot: optimizing `feature`")
    assert "run stopped: " in new[1].body and "the eval's own bug" in new[1].body and "Nothing was changed" in new[1].body
    assert read_outputs(env)["pull-request-operation"] == "none"


def test_apply_in_the_three_job_layout_switches_the_branch_from_the_pr_body_alone(h):
    """`/gepa apply` in the comment workflow's three jobs: the optimize job runs no eval, the publish job (fresh,
    shallow, detached checkout) takes the candidate's texts from the PR body and ignores the artifact."""
    from test_action import _add_choice

    from gepa_bot.github.apply import decode

    done, _, _ = _three_jobs(h, "push", push_event("prompts/main.txt"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [pr] = h.open_pulls("gepa-bot/main")
    choices = decode(h.fake.issues[(FULL, pr.number)].body)  # embedded by the publish job from the artifact
    assert choices is not None and choices.base_sha == h.fake.branch_sha(FULL, "main")
    variant = "Classify the ticket {ticket}. Topics: password crash export\n"
    _add_choice(h, pr.number, 2, variant)
    h.fake.set_permission(OWNER, NAME, "octocat", "write")
    counter = len(list(h.counter.iterdir()))

    done, env, plan = _three_jobs(h, "issue_comment", comment_event(h, pr.number, "/gepa apply 2", "octocat"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert h.fake.read_file(OWNER, NAME, "gepa-bot/main", "prompts/main.txt") == variant
    assert "Applied with `/gepa apply 2`" in h.fake.issues[(FULL, pr.number)].body
    assert len(list(h.counter.iterdir())) == counter  # the optimize job ran no eval
    assert "the pull request holds candidate #2" in Path(env["GITHUB_STEP_SUMMARY"]).read_text()
