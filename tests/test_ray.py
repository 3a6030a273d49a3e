"""``eval.executor: ray`` against a real local Ray cluster on 127.0.0.1: a head node and a second node started
with `ray start` by this module (and stopped at its end). Same results and rollout counts as ``local``; a node
killed mid-batch; a SIGTERMed driver resumed; an unreachable cluster."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from processes import all_gone
from test_engine import settings_for
from toyrepo import ScriptedReflection, make_toy_repo

from gepa_bot.config import load_config
from gepa_bot.discovery import discover
from gepa_bot.errors import UserError
from gepa_bot.evals.cache import EvalCache
from gepa_bot.evals.command_suite import CommandSuite
from gepa_bot.evals.executor import RayExecutor, make_executor
from gepa_bot.evals.suite import SuiteContext
from gepa_bot.result import RunResult
from gepa_bot.runlog import RunLog, read_records
from gepa_bot.search.adapter import RepoAdapter, Split
from gepa_bot.search.budget import Budget
from gepa_bot.search.engine import optimize
from gepa_bot.search.errorpolicy import EvalErrors

# a local Ray cluster per module, and runs that kill its nodes and drivers
pytestmark = pytest.mark.slow

if importlib.util.find_spec("ray") is None or not shutil.which("ray"):
    if os.environ.get("CI"):
        pytest.fail("ray is not installed: pip install -e '.[test]' installs it", pytrace=False)
    pytest.skip("ray not installed (pip install 'gepa-bot[ray]')", allow_module_level=True)

RAY_ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["ray", *args], env=RAY_ENV, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


class LocalCluster:
    """`ray start --head` on 127.0.0.1 (one CPU) plus nodes started (`ray start --address`) and killed on demand."""

    def __init__(self, temp_dir: Path):
        self.port, self.temp_dir = free_port(), temp_dir
        self.address = f"127.0.0.1:{self.port}"
        ray_cli("start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}", "--num-cpus=1",
                "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}")

    def add_node(self, cpus: int = 2, resources: dict[str, float] | None = None) -> int:
        """A second node (``ray start --address``); returns its node-manager port, which names its raylet."""
        port = free_port()
        ray_cli("start", f"--address={self.address}", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
                f"--node-manager-port={port}", f"--resources={json.dumps(resources or {})}", "--disable-usage-stats")
        return port

    @staticmethod
    def kill_node(node_manager_port: int) -> int:
        """SIGKILL the node's raylet (its workers die with it), as when a machine disappears."""
        killed = 0
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if "raylet" in cmdline and f"--node_manager_port={node_manager_port}" in cmdline:
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
        return killed

    def stop(self) -> None:
        subprocess.run(["ray", "stop", "--force"], env=RAY_ENV, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def cluster():
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay short
    started = LocalCluster(temp_dir)
    started.worker = started.add_node()
    yield started
    started.stop()
    shutil.rmtree(temp_dir, ignore_errors=True)


def ray_repo(tmp_path: Path, address: str, workers: int = 2, **eval_fields: object) -> Path:
    repo = make_toy_repo(tmp_path, yaml_prompt=True)
    config = repo / ".gepa-bot.yml"
    extra = "".join(f"  {key}: {value}\n" for key, value in eval_fields.items())
    config.write_text(config.read_text().replace("  timeout: 30\n", "  timeout: 30\n  executor: ray\n" + extra)
                      .replace("workers: 2", f"workers: {workers}")
                      + f"ray:\n  address: '{address}'\n  forward_env: [TOY_COUNTER_DIR, TOY_EVAL_SLEEP]\n")
    return repo


def test_ray_gives_the_same_search_results_and_rollout_counts_as_local(cluster, tmp_path, monkeypatch):
    runs = {}
    for executor in ("local", "ray"):
        counter = tmp_path / executor / "counter"
        counter.mkdir(parents=True)
        monkeypatch.setenv("TOY_COUNTER_DIR", str(counter))
        repo = ray_repo(tmp_path / executor, cluster.address)
        settings = settings_for(repo, tmp_path / executor, ScriptedReflection(), eval__executor=executor)
        result = optimize(settings)
        runs[executor] = (result, len(list(counter.iterdir())), list(read_records(tmp_path / executor / "run", "rollout")))
    (local, local_executed, local_log), (ray, ray_executed, ray_log) = runs["local"], runs["ray"]
    assert [c.components for c in ray.candidates] == [c.components for c in local.candidates]
    assert [c.val for c in ray.candidates] == [c.val for c in local.candidates]
    assert ray.candidates[ray.best_candidate].val_mean > ray.candidates[0].val_mean
    for key in ("rollouts_used", "rollouts_executed", "cache_hits"):
        assert getattr(ray.budget, key) == getattr(local.budget, key), key
    # every executed rollout ran once, on the cluster (the eval's counter files), and is logged once
    assert ray_executed == local_executed == ray.budget.rollouts_executed == len(ray_log) == len(local_log)


def _adapter_on(repo: Path, tmp_path: Path, executor: RayExecutor,
                suite_timeout: float = 60) -> tuple[RepoAdapter, Budget, Path]:
    config = load_config(repo / ".gepa-bot.yml")
    components = discover(repo, config, repo / ".gepa-bot.yml")
    suite = CommandSuite(SuiteContext(repo=repo), "python evals/eval.py", ["evals/**"], timeout=suite_timeout)
    budget = Budget(max_rollouts=100)
    ids = [f"i{k:02d}" for k in range(12)]
    adapter = RepoAdapter(suite, components, Split(train=ids[:4], val=ids[4:]),
                          EvalCache(tmp_path / "cache", suite.fingerprint()), budget, RunLog(tmp_path / "run"), executor)
    return adapter, budget, tmp_path / "run"


@pytest.mark.parametrize("retries", [1, 0])
def test_a_node_killed_mid_batch_is_retried_or_scored_failed_and_budget_and_log_stay_exact(
        cluster, tmp_path, monkeypatch, retries):
    """The eval tasks need a resource only one node has; that node is killed while they run. With a retry and a
    replacement node the batch completes with real scores; without, the lost chunks are failures saying why."""
    resource = f"doomed{retries}"
    node = cluster.add_node(cpus=4, resources={resource: 4})  # all four chunks at once, on this node only
    marks = tmp_path / "started"
    marks.mkdir()
    monkeypatch.setenv("TOY_COUNTER_DIR", str(marks))
    monkeypatch.setenv("TOY_EVAL_SLEEP", "2")
    repo = make_toy_repo(tmp_path)
    executor = RayExecutor(repo, workers=4, address=cluster.address, timeout=30, max_retries=retries,
                           resources={resource: 1}, forward_env=["TOY_COUNTER_DIR", "TOY_EVAL_SLEEP"])
    executor.grace = 30.0  # a chunk that can never be scheduled again waits timeout + grace, then fails
    adapter, budget, run_dir = _adapter_on(repo, tmp_path, executor)
    adapter.retries = 0  # Ray's own retry is under test here, not gepa-bot's
    replacement: list[int] = []

    def kill_once_evals_run() -> None:
        deadline = time.monotonic() + 60
        while not list(marks.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cluster.kill_node(node) >= 1
        if retries:
            replacement.append(cluster.add_node(cpus=4, resources={resource: 4}))

    killer = threading.Thread(target=kill_once_evals_run)
    killer.start()
    failed: list = []
    try:
        batch = adapter.evaluate(adapter.split.val, {c.name: c.text for c in adapter.components}, capture_traces=True)
    except EvalErrors as exc:  # the lost chunks could not be scored: errors, never scores
        failed, batch = list(exc.errors.values()), None
    finally:
        killer.join()
        executor.close()
        adapter.runlog.close()
        for port in replacement:
            cluster.kill_node(port)
    if retries:  # Ray re-ran the lost chunks on the replacement node: every instance has its real score
        assert failed == [] and batch is not None and len(batch.trajectories or []) == len(adapter.split.val)
    else:
        assert failed and all("the Ray task scoring this instance" in r.feedback for r in failed), failed
        assert any("NodeDiedError" in r.feedback or "WorkerCrashedError" in r.feedback for r in failed), failed
    logged = list(read_records(run_dir, "rollout"))
    errors = list(read_records(run_dir, "eval_error"))
    assert budget.rollouts == len(adapter.split.val) == budget.executed == len(logged) + len(errors)
    assert sorted(r["id"] for r in logged + errors) == sorted(adapter.split.val)
    assert sorted(r["id"] for r in errors) == sorted(r.id for r in failed)


def test_a_chunk_the_driver_gives_up_on_stops_its_eval_on_the_node(cluster, tmp_path, monkeypatch):
    """The driver waits the eval timeout plus a grace for a chunk, then cancels its task: the chunk is scored as
    failed saying why, and the eval on the node is stopped, by the cancellation (KeyboardInterrupt in the task)
    or at the latest by the task's own eval timeout. A force-cancelled task died with the thread that would
    have stopped its eval, which then ran on unowned to its end."""
    marks = tmp_path / "started"
    marks.mkdir()
    monkeypatch.setenv("TOY_COUNTER_DIR", str(marks))
    monkeypatch.setenv("TOY_EVAL_SLEEP", "4")  # 8 val instances in one chunk: 32 s of eval
    repo = make_toy_repo(tmp_path)
    executor = RayExecutor(repo, workers=1, address=cluster.address, timeout=16,
                           forward_env=["TOY_COUNTER_DIR", "TOY_EVAL_SLEEP"])
    executor.grace = -8.0  # the driver gives up after 8 s; the task's eval timeout is 16 s
    adapter, budget, _ = _adapter_on(repo, tmp_path, executor, suite_timeout=16)
    adapter.retries = 0  # the cancellation is under test, not gepa-bot's retry
    try:
        with pytest.raises(EvalErrors) as lost:  # the given-up chunk could not be scored: errors, never scores
            adapter.evaluate(adapter.split.val, {c.name: c.text for c in adapter.components}, capture_traces=True)
        deadline = time.monotonic() + 6  # a late-started eval may not have scored its first instance yet
        while not list(marks.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        evals = {int(mark.name.split("-")[0]) for mark in marks.iterdir()}
        assert evals, "the eval never started on the node: nothing to check"
        assert all_gone(evals, timeout=20), "the cancelled task's eval is still running on the node"
        scored = len(list(marks.iterdir()))
        time.sleep(5)  # longer than one instance: an eval still running would score another
        assert len(list(marks.iterdir())) == scored < len(adapter.split.val)
    finally:
        executor.close()
        adapter.runlog.close()
    assert sorted(lost.value.errors) == sorted(adapter.split.val)
    assert all("did not finish within 8s" in r.feedback for r in lost.value.errors.values())
    assert budget.rollouts == len(adapter.split.val)


def test_a_sigtermed_driver_resumes_without_spending_again(cluster, tmp_path):
    counter = tmp_path / "counter"
    counter.mkdir()
    repo = ray_repo(tmp_path, cluster.address)
    env = {**os.environ, "TOY_EVAL_SLEEP": "0.2", "TOY_COUNTER_DIR": str(counter),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    reply = "Rationale: add topics.\\n\\n````prompt\\nClassify {ticket}: billing refund login password\\n````"
    script = ("import functools, litellm, sys; from gepa_bot.cli import main; "
              f"litellm.completion = functools.partial(litellm.completion, mock_response='{reply}'); "
              "sys.exit(main())")
    args = [sys.executable, "-c", script, "optimize", "--repo", str(repo), "--budget", "40", "--run-dir",
            str(tmp_path / "run"), "--dry-run", "--out", str(tmp_path / "body.md")]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(read_records(tmp_path / "run", "rollout"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    logged_before = {(r["candidate"], r["id"]) for r in read_records(tmp_path / "run", "rollout")}
    assert logged_before

    finished = subprocess.run(args, env={**env, "TOY_EVAL_SLEEP": "0"}, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    logged = list(read_records(tmp_path / "run", "rollout"))
    assert len(logged) == len({(r["candidate"], r["id"]) for r in logged})  # nothing logged (paid) twice
    result = RunResult.read(tmp_path / "run" / "result.json")
    assert result.budget.rollouts_used <= 40 and logged_before <= {(r["candidate"], r["id"]) for r in logged}


def test_an_unreachable_cluster_is_one_clear_error_before_any_rollout(tmp_path):
    from gepa_bot.config import RayConfig

    with pytest.raises(UserError) as caught:
        make_executor("ray", tmp_path, tmp_path, 2, 30, RayConfig(address=f"127.0.0.1:{free_port()}"))
    assert "no Ray cluster answers there" in str(caught.value) and "ray start --head" in caught.value.fix
    with pytest.raises(UserError) as caught:
        make_executor("ray", tmp_path, tmp_path, 2, 30, RayConfig())
    assert "no cluster address" in str(caught.value) and "RAY_ADDRESS" in caught.value.fix


def test_github_tokens_are_refused_in_forward_env(cluster, tmp_path, monkeypatch):
    from pydantic import ValidationError

    from gepa_bot.config import RayConfig

    with pytest.raises(ValidationError, match="never goes to eval code"):
        RayConfig(forward_env=["GITHUB_TOKEN"])
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_mustNotTravel0123456789abcdefghijkl")
    executor = RayExecutor(tmp_path, workers=1, address=cluster.address, timeout=30, forward_env=["GITHUB_TOKEN"])
    try:
        assert executor.forward_env == []
    finally:
        executor.close()


def test_a_node_removes_repo_copies_no_task_used_for_a_day_when_it_unpacks_another(tmp_path, monkeypatch):
    from gepa_bot.evals.executor import NODE_COPY_IDLE_SECONDS, _unpacked, repo_archive

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    root = tmp_path / "gepa-bot-ray"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "eval.py").write_text("print('hi')\n")
    archive = repo_archive(tmp_path / "src")
    stale_age = time.time() - NODE_COPY_IDLE_SECONDS - 60
    for name in ("old-run", "unpack-torn", "recent-run"):
        (root / name / "repo").mkdir(parents=True)
    for name in ("old-run", "unpack-torn"):
        os.utime(root / name, (stale_age, stale_age))
    os.utime(root / "recent-run", (stale_age, stale_age))
    assert _unpacked(archive, "recent-run") == root / "recent-run" / "repo"  # a task uses it: no longer idle

    copy = _unpacked(archive, "this-run")
    assert (copy / "eval.py").read_text() == "print('hi')\n"
    assert sorted(p.name for p in root.iterdir()) == ["recent-run", "this-run"]
