"""Errors are not scores: the fault matrix, end to end, as real processes.

Each case runs `gepa-bot optimize` (no --dry-run) as a process against the OpenAPI-validating fake GitHub, after a
good run opened the bot's pull request. The task model is a loopback HTTP stub the eval calls (as a user's eval
calls its model); the reflection model is another stub. Every fault must end the same way: exit code 3, a one-line
cause, no error in the cache, the pull request and its branch untouched; and once the fault is gone, the same
command resumes without paying for a rollout twice.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from chatstub import ChatStub
from toyrepo import EVAL_PRELUDE, host_on_fake_github, make_toy_repo

from gepa_bot.result import RunResult
from gepa_bot.runlog import read_records

# every case runs `gepa-bot optimize` as processes against the fake GitHub: minutes, not seconds
pytestmark = pytest.mark.slow

pytest_plugins = ["tests.fakegithub.fixtures"]

OWNER, NAME = "octo", "toy"
FULL = f"{OWNER}/{NAME}"
TOKEN = "ghp_faultMatrixToken0123456789abcdefABCD"
IMPROVING = "Rationale: name the topics.\n\n````prompt\nClassify the ticket {ticket}.\nTopics: billing refund login\n````"

# The toy eval, with one call to its task model per instance (an honest eval: a failed call is an error line).
# TOY_CRASH=1 makes the whole process crash; TOY_FLAKY_DIR makes each id's first attempt an error.
MODEL_EVAL = EVAL_PRELUDE + textwrap.dedent('''
    from gepa_bot import evalkit
    from gepa_bot.models.completion import chat
    if os.environ.get("TOY_CRASH") == "1":
        raise SystemExit("ImportError: the eval's own bug")
    prompt = Path("prompts/main.txt").read_text()
    for i in Path(os.environ["GEPA_BOT_IDS_FILE"]).read_text().split():
        flaky = os.environ.get("TOY_FLAKY_DIR")
        if flaky and not (Path(flaky) / i).exists():
            (Path(flaky) / i).write_text("seen")
            evalkit.emit_error(i, "transient: the grader was busy")
            continue
        try:
            chat("openai/toy-task", [{"role": "user", "content": prompt}], api_base=os.environ["TOY_TASK_API"],
                 api_key="unused", max_tokens=4, timeout=5)
        except Exception as exc:
            evalkit.emit_error(i, f"model call failed: {type(exc).__name__}: {exc}")
            continue
        word = data[i]["keyword"]
        hit = word in prompt.lower()
        print(json.dumps({"id": i, "score": 1.0 if hit else 0.0,
                          "feedback": "correct" if hit else f"the prompt should mention '{word}'"}))
''')


class TaskAPI:
    """The task model on 127.0.0.1: ``mode`` "ok" answers, "429"/"500" answer with that status, "down" is closed."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                api.calls += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 200 if api.mode == "ok" else int(api.mode)
                data = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "toy-task",
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": "billing"}}],
                                   "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                                  if status == 200 else {"error": {"message": f"status {status}"}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def world(fake_github, tmp_path):
    """octo/toy on the fake GitHub, a clone to run in, the two model stubs; an open bot PR from a good run."""
    src = make_toy_repo(tmp_path / "src")
    (src / "evals" / "eval.py").write_text(MODEL_EVAL)
    config = (src / ".gepa-bot.yml").read_text().replace("  watch: ['evals/**']\n", "")  # the default: watch nothing
    (src / ".gepa-bot.yml").write_text(config.replace("budget:\n  rollouts: 60", "budget:\n  rollouts: 40"))
    work = host_on_fake_github(fake_github, src, OWNER, NAME, TOKEN, tmp_path / "work")
    task, reflection = TaskAPI(), ChatStub(lambda messages: IMPROVING)
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "GH_TOKEN", "GEPA_BOT_TOKEN")}
    env.update(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=fake_github.api_url, OPENAI_API_BASE=reflection.url,
               OPENAI_API_KEY="sk-offline-unused-0000", TOY_TASK_API=task.url, PYTHONPATH=os.pathsep.join(sys.path))
    first = gepa_bot(env, "optimize", "--repo", str(work), "--run-dir", str(tmp_path / "first-run"))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    (pr,) = fake_github.pulls(OWNER, NAME)
    yield World(fake_github, work, env, tmp_path, task, pr.number)
    task.close()
    reflection.close()


class World:
    def __init__(self, fake, work: Path, env: dict[str, str], tmp: Path, task: TaskAPI, pr_number: int):
        self.fake, self.work, self.env, self.tmp, self.task, self.pr_number = fake, work, env, tmp, task, pr_number
        self.run_dir = tmp / "faulty-run"

    def github_state(self) -> tuple[Any, ...]:
        """Everything a run could change on GitHub: the PR's state, title and body, the bot's branch, comments."""
        pr = self.fake.issues[(FULL, self.pr_number)]
        comments = sorted(c.id for c in self.fake.comments.values() if c.repo == FULL)
        return pr.state, pr.title, pr.body, self.fake.branch_sha(FULL, "gepa-bot/main"), comments, \
            len(self.fake.pulls(OWNER, NAME))

    def change_prompt(self) -> None:
        """A new prompt on main (as a push brings): nothing is cached for it, so the run has to execute."""
        (self.work / "prompts" / "main.txt").write_text("Classify the support ticket {ticket} into one queue.\n")

    def optimize(self, **extra_env: str) -> subprocess.CompletedProcess:
        return gepa_bot({**self.env, **extra_env}, "optimize", "--repo", str(self.work), "--run-dir", str(self.run_dir))

    def cached_results(self) -> list[dict[str, Any]]:
        with sqlite3.connect(self.work / ".gepa-bot" / "cache" / "cache.sqlite3") as db:
            return [json.loads(value) for (value,) in db.execute("SELECT value FROM results")]

    def records(self, kind: str) -> list[dict[str, Any]]:
        return list(read_records(self.run_dir, kind))


def gepa_bot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gepa_bot.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def assert_stopped_and_untouched(world: World, done: subprocess.CompletedProcess, before: tuple[Any, ...],
                                 *cause: str) -> None:
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    [line] = [x for x in done.stderr.splitlines() if x.startswith("error: ")]
    assert line.startswith("error: run stopped: ") and " Fix: " in line, line
    for text in cause:
        assert text in line, line
    assert "Traceback" not in done.stderr and "pull request" not in done.stdout
    assert world.github_state() == before  # not opened, updated, closed or deleted: left alone
    assert not any(r.get("failed") for r in world.cached_results())  # errors are never cached
    assert not (world.run_dir / "result.json").exists()


def assert_resumed_paying_nothing_twice(world: World) -> None:
    done = world.optimize()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rollouts = [(r["eval_key"], r["split"], r["id"]) for r in world.records("rollout")]
    assert rollouts and len(rollouts) == len(set(rollouts))  # across the stopped run and its resume: each paid once
    assert not any(r.get("failed") for r in world.cached_results())


@pytest.mark.parametrize(("mode", "said"), [("down", "Connection refused"), ("429", "429"), ("500", "500")])
def test_an_unreachable_or_refusing_task_model_stops_the_run_and_leaves_the_pr_alone(world, mode, said):
    before = world.github_state()
    if mode == "down":
        world.task.close()
        env = {"TOY_TASK_API": "http://127.0.0.1:9/v1"}  # the discard port: nothing listens
    else:
        world.task.mode, env = mode, {}
    world.change_prompt()
    done = world.optimize(**env)
    assert_stopped_and_untouched(world, done, before, "could not be scored, so there is no baseline", said)
    errors = world.records("eval_error")
    assert {r["attempt"] for r in errors} == {1, 2, 3}  # retried twice (eval.retries) before it counted
    if mode != "down":
        world.task.mode = "ok"
        assert_resumed_paying_nothing_twice(world)


def test_a_crashing_eval_stops_the_run(world):
    before = world.github_state()
    world.change_prompt()
    done = world.optimize(TOY_CRASH="1")
    assert_stopped_and_untouched(world, done, before, "the eval's own bug")
    assert_resumed_paying_nothing_twice(world)


def test_a_model_that_dies_mid_run_stops_it_and_the_fixed_rerun_resumes(world):
    """The task model answers the baseline, then goes away: above the error rate the run stops; the rollouts
    scored before stay paid for."""
    before = world.github_state()
    world.task.mode = "ok"

    def break_after_baseline() -> None:
        while world.task.calls < 6:  # this run's baseline: the 6 val instances
            threading.Event().wait(0.05)
        world.task.mode = "500"

    watcher = threading.Thread(target=break_after_baseline, daemon=True)
    world.task.calls = 0
    world.change_prompt()
    watcher.start()
    done = world.optimize()
    assert_stopped_and_untouched(world, done, before, "eval errors in")
    scored_before_stop = len(world.records("rollout"))
    assert scored_before_stop >= 6  # the baseline's results were logged and cached
    world.task.mode = "ok"
    assert_resumed_paying_nothing_twice(world)


def test_an_eval_reporting_transient_errors_is_retried_and_the_run_completes(world, tmp_path):
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    (world.work / "prompts" / "main.txt").write_text("Sort the ticket {ticket}.\n")  # nothing cached for it
    done = world.optimize(TOY_FLAKY_DIR=str(flaky))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    errors = world.records("eval_error")
    assert errors and {r["attempt"] for r in errors} == {1}  # each id erred once, then scored on its retry
    assert not any(r.get("failed") for r in world.cached_results())
    result = RunResult.read(world.run_dir / "result.json")
    assert all(v is None or not v.failed for c in result.candidates for v in c.val.values())


def test_a_fixed_eval_never_gets_the_results_of_the_broken_one(world):
    """The eval's own file counts for the cache even with no `watch`: after a fix, nothing stale is served."""
    eval_file = world.work / "evals" / "eval.py"
    broken = eval_file.read_text().replace('hit = word in prompt.lower()', 'hit = False  # a bug')
    eval_file.write_text(broken)
    check = gepa_bot(world.env, "check", "--repo", str(world.work))
    assert "score 0; feedback: the prompt should mention" in check.stdout
    eval_file.write_text(MODEL_EVAL)
    (world.work / "prompts" / "main.txt").write_text("Classify the ticket {ticket}. Topics: billing refund login\n")
    fixed = gepa_bot(world.env, "check", "--repo", str(world.work))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "score 1; feedback: correct" in fixed.stdout


def test_check_reports_eval_errors_as_problems(world):
    world.task.mode = "500"
    world.change_prompt()
    done = gepa_bot(world.env, "check", "--repo", str(world.work))
    assert done.returncode == 1
    problems = [line for line in done.stdout.splitlines() if line.startswith("problem")]
    assert any("ERROR (not a score)" in line and "500" in line for line in problems), done.stdout
    assert "ready" not in done.stdout


def test_run_dir_at_the_repo_root_is_refused_and_fresh_deletes_only_gepa_bots_own_dirs(world):
    config = world.work / ".gepa-bot.yml"
    original = config.read_text()
    config.write_text(original.replace("output:\n", "output:\n  run_dir: .\n"))
    done = gepa_bot(world.env, "optimize", "--repo", str(world.work), "--fresh", "--dry-run")
    assert done.returncode == 2 and "output.run_dir" in done.stderr and "repository root" in done.stderr
    assert (world.work / ".git").is_dir() and (world.work / "prompts" / "main.txt").is_file()
    config.write_text(original)
    done = gepa_bot(world.env, "optimize", "--repo", str(world.work), "--run-dir", str(world.work), "--fresh",
                    "--dry-run")
    assert done.returncode == 2 and "is the repository" in done.stderr
    assert (world.work / ".git").is_dir()
    precious = world.tmp / "precious"
    (precious / "notes").mkdir(parents=True)
    (precious / "notes" / "keep.txt").write_text("mine")
    done = gepa_bot(world.env, "optimize", "--repo", str(world.work), "--run-dir", str(precious), "--fresh",
                    "--dry-run")
    assert done.returncode == 2 and ".gepa-bot-owned" in done.stderr
    assert (precious / "notes" / "keep.txt").read_text() == "mine"


def test_a_run_dir_inside_the_repo_is_never_copied_into_candidates(world):
    config = world.work / ".gepa-bot.yml"
    config.write_text(config.read_text().replace("output:\n", "output:\n  run_dir: out\n"))
    done = gepa_bot(world.env, "check", "--repo", str(world.work))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (world.work / "out" / ".gepa-bot-owned").is_file()
    assert "RecursionError" not in done.stderr
