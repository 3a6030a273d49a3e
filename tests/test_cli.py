"""The `gepa-bot optimize` command: a dry run writes the PR body; bad input exits 2 with one clear line."""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import litellm
import pytest
from click.testing import CliRunner
from toyrepo import EVAL_PRELUDE, make_toy_repo

from gepa_bot.cli import main
from gepa_bot.result import RunResult

REPLY = "Rationale: name the topics.\n\n````prompt\nClassify the ticket {ticket}.\nTopics: billing refund login\n````"


@pytest.fixture
def mocked_litellm(monkeypatch):
    """litellm answers from its own mock_response: the real transport, no sockets."""
    monkeypatch.setattr(litellm, "completion", functools.partial(litellm.completion, mock_response=REPLY))


def test_dry_run_writes_pr_body_and_result(tmp_path, mocked_litellm):
    repo = make_toy_repo(tmp_path)
    out = tmp_path / "body.md"
    result = CliRunner().invoke(main, ["optimize", "--repo", str(repo), "--budget", "30", "--workers", "3",
                                       "--seed", "1", "--run-dir", str(tmp_path / "run"), "--dry-run", "--out", str(out)])
    assert result.exit_code == 0, result.output
    body = out.read_text()
    assert body.startswith("## gepa-bot: improved prompts")
    assert "+Topics: billing refund login" in body
    assert (tmp_path / "run" / "result.json").is_file() and (tmp_path / "run" / "report-full.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["body.md"]  # nothing else outside the run dir
    budget = RunResult.read(tmp_path / "run" / "result.json").budget
    assert 0 < budget.rollouts_used <= 30
    assert (f"rollouts {budget.rollouts_used}/30 ({budget.rollouts_executed} executed, "
            f"{budget.cache_hits} cached)") in result.output
    assert "resuming" not in result.output
    # not a terminal: plain progress lines with the search's state, not 30 rollouts of silence
    progress = [line for line in result.output.splitlines() if line.startswith("progress: rollouts ")]
    assert len(progress) >= 3
    assert re.search(r"; val best \d\.\d{3} \(baseline \d\.\d{3}\); \d+ proposals, \d+ reached val, \d+ replies "
                     r"rejected; \d+s", progress[-1]), progress[-1]

    again = CliRunner().invoke(main, ["optimize", "--repo", str(repo), "--budget", "40", "--seed", "1",
                                      "--run-dir", str(tmp_path / "run"), "--dry-run", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert "resuming the run in" in again.output and "--fresh" in again.output
    assert "rollout budget changed from 30 to 40" in again.output


@pytest.mark.parametrize(("config", "expected"), [
    ("prompts: [", "invalid YAML at line"),
    ("prompts: []\neval: {command: x}\n", "field 'prompts'"),
    ("prompts: [{path: p.txt}]\neval: {command: x}\nbudgett: 3\n", "field 'budgett': unknown field"),
    ("prompts: [{path: ../p.txt}]\neval: {command: x}\n", "escapes the repository"),
    ("prompts: [{path: nothing/*.md}]\neval: {command: 'python -c 0'}\n", "no file matches 'nothing/*.md'"),
])
def test_bad_config_is_one_clear_line_and_exit_2(tmp_path, config, expected):
    (tmp_path / ".gepa-bot.yml").write_text(config)
    result = CliRunner().invoke(main, ["optimize", "--repo", str(tmp_path), "--dry-run"])
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output and "Fix:" in result.output


def test_missing_eval_command_is_reported_clearly(tmp_path):
    repo = make_toy_repo(tmp_path)
    (repo / ".gepa-bot.yml").write_text((repo / ".gepa-bot.yml").read_text().replace("python evals/eval.py",
                                                                                       "no-such-eval-tool"))
    result = CliRunner().invoke(main, ["optimize", "--repo", str(repo), "--dry-run"])
    assert result.exit_code == 2
    assert "field 'eval'" in result.output and "no-such-eval-tool: not found" in result.output


def test_console_script_entry_point_runs():
    completed = subprocess.run([sys.executable, "-m", "gepa_bot", "optimize", "--help"], capture_output=True, text=True)
    assert completed.returncode == 0 and "--reflection-model" in completed.stdout


@pytest.mark.slow
def test_sigterm_mid_run_flushes_the_log_and_resume_finishes(tmp_path):
    """CI cancellation: SIGTERM during evaluation; the rerun with the same --run-dir completes the job."""
    import os
    import signal
    import time

    from gepa_bot.runlog import read_records

    repo = make_toy_repo(tmp_path)
    env = {**os.environ, "TOY_EVAL_SLEEP": "0.05", "PYTHONPATH": os.pathsep.join(sys.path)}
    script = ("import functools, litellm, sys; from gepa_bot.cli import main; "
              f"litellm.completion = functools.partial(litellm.completion, mock_response={REPLY!r}); "
              "sys.exit(main())")
    args = [sys.executable, "-c", script, "optimize", "--repo", str(repo), "--budget", "40",
            "--run-dir", str(tmp_path / "run"), "--dry-run", "--out", str(tmp_path / "body.md")]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(read_records(tmp_path / "run", "rollout")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "resume" in err and "Traceback" not in err
    done_before = len(list(read_records(tmp_path / "run", "rollout")))
    assert done_before > 0 and not (tmp_path / "body.md").exists()

    finished = subprocess.run(args, env={**env, "TOY_EVAL_SLEEP": "0"}, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert (tmp_path / "body.md").read_text().startswith("## gepa-bot")
    result = RunResult.read(tmp_path / "run" / "result.json")
    logged = list(read_records(tmp_path / "run", "rollout"))
    assert len(logged) == len({(r["candidate"], r["id"]) for r in logged})  # nothing evaluated twice
    assert result.budget.rollouts_used <= 40


def test_init_scaffolds_a_config_and_a_starter_eval_that_speaks_the_protocol(tmp_path):
    import os
    import subprocess
    import sys

    from gepa_bot.config import load_config

    repo = tmp_path / "mine"
    (repo / "prompts").mkdir(parents=True)
    (repo / "prompts" / "summarize.md").write_text("Summarize in one line:\n{text}\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "example.md").write_text("not a prompt: {text}\n")  # docs/ is never taken for a prompt
    (repo / ".gitignore").write_text("*.pyc\n")
    result = CliRunner().invoke(main, ["init", "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    assert [p.path for p in load_config(repo / ".gepa-bot.yml").prompts] == ["prompts/summarize.md"]
    assert (repo / ".gitignore").read_text() == "*.pyc\n.gepa-bot/\n"
    listed = subprocess.run([sys.executable, "evals/gepa_eval.py"], cwd=repo, capture_output=True, text=True,
                            env={**os.environ, "GEPA_BOT_MODE": "list", "PYTHONPATH": str(Path(__file__).parents[1])})
    assert [json.loads(line)["split"] for line in listed.stdout.splitlines()] == ["train", "val"], listed.stderr
    assert "'{text}'" in (repo / "evals" / "gepa_eval.py").read_text()
    again = CliRunner().invoke(main, ["init", "--repo", str(repo)])
    assert again.exit_code == 0 and "wrote" not in again.output  # nothing is ever overwritten

    empty = tmp_path / "empty"
    empty.mkdir()
    refused = CliRunner().invoke(main, ["init", "--repo", str(empty)])
    assert refused.exit_code == 2 and "found no prompt file" in refused.output and "--prompt" in refused.output


def test_status_line_reads_like_a_sentence_and_estimates_the_rest():
    from gepa_bot.cli import status_line
    from gepa_bot.search.adapter import SearchStatus
    from gepa_bot.search.budget import Budget

    budget = Budget(max_rollouts=100)
    budget.reserve_rollouts(40)
    budget.record_eval(30, 10, 1.0)
    status = SearchStatus(baseline_val=0.391, best_val=0.435, val_passes=3, proposals=5, rejected_replies=2)
    assert status_line(budget, status, 100, 80.0) == (
        "rollouts 40/100 (30 executed, 10 cached); val best 0.435 (baseline 0.391); 5 proposals, 2 reached val, "
        "2 replies rejected; 80s, ~120s left at this pace")
    assert "val best" not in status_line(Budget(max_rollouts=100), SearchStatus(), 100, 0.0)


def test_check_reports_a_ready_repo_line_by_line_and_the_run_reuses_its_evals(tmp_path, mocked_litellm):
    repo = make_toy_repo(tmp_path)
    result = CliRunner().invoke(main, ["check", "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("ok       prompt prompts/main.txt: ") and "{ticket}" in lines[0]
    assert "ok       eval suite: 6 train and 6 val instances" in result.output
    assert sum("eval of val instance" in line for line in lines) == 3
    assert "should mention" in result.output  # the toy eval's real feedback, shown as a newcomer needs it
    assert re.search(r"ok +reflection model openai/\S+ answers", result.output)
    assert lines[-1].startswith("ready: `gepa-bot optimize --dry-run` can run")
    # the sampled evals went through the cache: the run does not pay for them again
    with sqlite3.connect(repo / ".gepa-bot" / "cache" / "cache.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM results").fetchone() == (3,)


def test_check_flags_an_eval_that_prints_no_result_lines(tmp_path, mocked_litellm):
    repo = make_toy_repo(tmp_path)
    # lists its ids correctly, then prints plain text instead of result lines (a common first mistake)
    (repo / "evals" / "eval.py").write_text(EVAL_PRELUDE + "for i in Path(os.environ['GEPA_BOT_IDS_FILE']).read_text()"
                                            ".split():\n    print('scored', i, 'ok')\n")
    result = CliRunner().invoke(main, ["check", "--repo", str(repo)])
    assert result.exit_code == 1, result.output
    problems = [line for line in result.output.splitlines() if line.startswith("problem")]
    assert sum("ERROR (not a score): no result line for this id" in line for line in problems) == 3, result.output
    assert any("the eval could not score 3 sampled instance(s)" in line for line in problems)
    assert "no result line for this id" in result.output
    assert result.output.splitlines()[-1] == "4 problem(s) found"  # three errors and what to do


def test_check_with_a_broken_config_is_one_line_exit_2(tmp_path):
    (tmp_path / ".gepa-bot.yml").write_text("prompts: [\n")
    result = CliRunner().invoke(main, ["check", "--repo", str(tmp_path)])
    assert result.exit_code == 2 and "invalid YAML at line" in result.output
