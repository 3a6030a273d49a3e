"""`gepa-bot optimize` without --dry-run and `gepa-bot publish`: the CLI's real pull-request path, against the
fake GitHub, as real processes; the token never reaches the process that runs the evals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from chatstub import ChatStub
from toyrepo import EVAL_SCRIPT, SNOOP, host_on_fake_github, make_toy_repo, snoop_reports

from gepa_bot.github.apply import decode
from gepa_bot.github.publish import github_remote

pytest_plugins = ["tests.fakegithub.fixtures"]

OWNER, NAME = "octo", "toy"
TOKEN = "ghp_cliPublishToken0123456789abcdefABCD"
IMPROVING = "Rationale: name the topics.\n\n````prompt\nClassify the ticket {ticket}.\nTopics: billing refund login\n````"


@pytest.fixture
def setup(fake_github, tmp_path):
    src = make_toy_repo(tmp_path / "src")
    (src / "evals" / "eval.py").write_text(SNOOP + EVAL_SCRIPT)
    work = host_on_fake_github(fake_github, src, OWNER, NAME, TOKEN, tmp_path / "work")
    needle = tmp_path / "needle"
    needle.write_text(TOKEN)
    openai = ChatStub(lambda messages: IMPROVING)
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "GH_TOKEN", "GEPA_BOT_TOKEN")}
    env.update(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=fake_github.api_url, OPENAI_API_BASE=openai.url,
               OPENAI_API_KEY="sk-offline-unused-0000", NEEDLE_FILE=str(needle),
               SNOOP_REPORT=str(tmp_path / "snoop.jsonl"), PYTHONPATH=os.pathsep.join(sys.path))
    yield fake_github, work, env, tmp_path
    openai.close()


def gepa_bot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gepa_bot.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_optimize_opens_the_pr_and_no_eval_can_find_the_token(setup):
    fake, work, env, tmp = setup
    done = gepa_bot(env, "optimize", "--repo", str(work), "--budget", "30")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (pr,) = fake.pulls(OWNER, NAME)
    assert (pr.head_ref, pr.base_ref, pr.state) == ("gepa-bot/main", "main", "open")
    assert "billing" in fake.read_file(OWNER, NAME, "gepa-bot/main", "prompts/main.txt")
    choices = decode(pr.body)  # what `/gepa apply N` reads on this PR
    assert choices is not None and choices.base_sha == fake.branch_sha(f"{OWNER}/{NAME}", "main")

    assert any(line.startswith("gepa-bot: pull request created: http") for line in done.stdout.splitlines())
    reports = snoop_reports(tmp / "snoop.jsonl")
    assert reports and all(found == [] for found in reports), reports
    assert TOKEN not in done.stdout + done.stderr

    # `gepa-bot publish` on the same run: the same proposal, nothing pushed, the same PR updated
    sha = fake.branch_sha(f"{OWNER}/{NAME}", "gepa-bot/main")
    again = gepa_bot(env, "publish", "--repo", str(work))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "gepa-bot: pull request updated" in again.stdout and len(fake.pulls(OWNER, NAME)) == 1
    assert fake.branch_sha(f"{OWNER}/{NAME}", "gepa-bot/main") == sha


def test_without_a_token_optimize_stops_before_any_rollout_and_says_what_to_do(setup):
    _fake, work, env, tmp = setup
    env = {k: v for k, v in env.items() if k != "GITHUB_TOKEN"}
    done = gepa_bot(env, "optimize", "--repo", str(work), "--budget", "30")
    assert done.returncode == 2
    assert "no GitHub token" in done.stderr and "--dry-run" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp / "snoop.jsonl").exists()  # no eval ran


def test_publish_without_a_run_names_the_run_dir(setup):
    _fake, work, env, _tmp = setup
    done = gepa_bot(env, "publish", "--repo", str(work))
    assert done.returncode == 2 and "no result.json" in done.stderr and "gepa-bot optimize" in done.stderr


@pytest.mark.parametrize(("url", "expected"), [
    ("https://github.com/octo/toy.git", ("https://github.com", "octo/toy")),
    ("https://x-access-token:abc@github.com/octo/toy", ("https://github.com", "octo/toy")),
    ("git@github.com:octo/my.repo.git", ("https://github.com", "octo/my.repo")),
    ("http://127.0.0.1:8080/octo/toy.git", ("http://127.0.0.1:8080", "octo/toy")),
])
def test_the_github_repository_comes_from_origin(tmp_path, url, expected):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "remote", "add", "origin", url], cwd=tmp_path, check=True)
    assert github_remote(Path(tmp_path)) == expected


@pytest.mark.slow
def test_control_the_snoop_does_find_a_token_left_in_the_environment(setup):
    """--dry-run does not touch the environment: a token exported anyway is visible to the evals in the environment
    of an ancestor that holds it (so the test above would see a leak), which is why the Action keeps it out of the
    optimize step altogether. The ancestor is a shell around gepa-bot: gepa-bot's own /proc/<pid>/environ is closed
    to an eval without CAP_SYS_PTRACE (it is non-dumpable), one of root's is not."""
    _fake, work, env, tmp = setup
    done = subprocess.run(["sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-m", "gepa_bot.cli", "optimize",
                           "--repo", str(work), "--budget", "12", "--dry-run"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = snoop_reports(tmp / "snoop.jsonl")
    assert any(any(where.startswith("/proc/") for where in found) for found in reports), reports
