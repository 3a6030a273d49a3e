"""The "command" eval protocol with real scripts: results, crashes, hangs, garbage, listing, parallelism."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from processes import all_gone

from gepa_bot import evalkit
from gepa_bot.evals.command_suite import CommandSuite
from gepa_bot.evals.suite import (
    MAX_CAPTURE_BYTES,
    EvalSuite,
    Instance,
    InstanceResult,
    SuiteContext,
    SuiteError,
    Workdir,
    evaluate_parallel,
    hash_files,
    materialize,
    remove_workdir,
    run_process,
)
from gepa_bot.text import FEEDBACK_LIMIT

PY = shlex.quote(sys.executable)
IDS = ["a", "b", "c", "d", "e", "f", "g"]

GOOD = """
    import json, os, sys
    from pathlib import Path
    ids = Path(os.environ["GEPA_BOT_IDS_FILE"]).read_text().split()
    assert sys.stdin.read().split() == ids, "stdin carries the same ids"
    prompt = Path("prompts/main.txt").read_text()
    if os.environ.get("COUNT_DIR"):
        with open(Path(os.environ["COUNT_DIR"]) / f"{os.getpid()}.txt", "a") as log:
            log.write("".join(i + "\\n" for i in ids))
    print("log noise before the results")
    for i in ids:
        score = 1.0 if i in prompt else 0.25
        print(json.dumps({"id": i, "score": score, "feedback": f"feedback for {i}", "trace": {"n": len(i)},
                          "output": i.upper()}))
"""


def make_repo(tmp_path: Path, scripts: dict[str, str], prompt: str = "mentions a and c\n") -> Path:
    repo = tmp_path / "repo"
    (repo / "evals").mkdir(parents=True)
    (repo / "prompts").mkdir()
    (repo / "prompts" / "main.txt").write_text(prompt)
    for name, body in scripts.items():
        (repo / "evals" / name).write_text(textwrap.dedent(body))
    return repo


def suite_for(repo: Path, script: str, timeout: float = 30, instances: str | None = None, **env: str) -> CommandSuite:
    context = SuiteContext(repo=repo, model="openai/test-model", env=dict(env))
    return CommandSuite(context, f"{PY} evals/{script}", watch=["evals/**"], instances_file=instances, timeout=timeout)


def workdir_for(repo: Path, tmp_path: Path, files: dict[str, str] | None = None) -> Workdir:
    files = files or {}
    return materialize(repo, files, {name: text for name, text in files.items()}, tmp_path / "work")


def run(tmp_path: Path, body: str, ids: list[str] = IDS, timeout: float = 30, **env: str) -> dict[str, InstanceResult]:
    repo = make_repo(tmp_path, {"s.py": body})
    suite = suite_for(repo, "s.py", timeout=timeout, **env)
    results = suite.evaluate(workdir_for(repo, tmp_path), ids)
    assert set(results) == set(ids)
    return results


# --- results -----------------------------------------------------------------------------------------

def test_good_jsonl(tmp_path):
    results = run(tmp_path, GOOD)
    assert results["a"] == InstanceResult(id="a", score=1.0, feedback="feedback for a", trace={"n": 1}, output="A")
    assert results["b"].score == 0.25 and not results["b"].failed
    assert all(not r.failed for r in results.values())
    assert InstanceResult.from_json(results["c"].to_json()) == results["c"]


def test_eval_sees_candidate_files_and_env(tmp_path):
    repo = make_repo(tmp_path, {"s.py": """
        import json, os
        from pathlib import Path
        candidate = json.loads(Path(os.environ["GEPA_BOT_CANDIDATE_FILE"]).read_text())
        for i in Path(os.environ["GEPA_BOT_IDS_FILE"]).read_text().split():
            ok = (Path("prompts/main.txt").read_text() == "candidate {x}\\n"
                  and candidate["components"] == {"prompts/main.txt": "candidate {x}\\n"}
                  and os.environ["GEPA_BOT_MODE"] == "evaluate"
                  and os.environ["GEPA_BOT_MODEL"] == "openai/test-model")
            print(json.dumps({"id": i, "score": 1 if ok else 0, "feedback": os.getcwd()}))
    """})
    workdir = workdir_for(repo, tmp_path, {"prompts/main.txt": "candidate {x}\n"})
    results = suite_for(repo, "s.py").evaluate(workdir, ["x", "y"])
    assert [results[i].score for i in ("x", "y")] == [1.0, 1.0]
    assert Path(results["x"].feedback).resolve() == workdir.path.resolve()  # runs inside the copy


def test_crash_fails_every_id_with_stderr(tmp_path):
    results = run(tmp_path, """
        import sys
        print("starting")
        raise RuntimeError("boom in the scorer")
    """)
    for i in IDS:
        assert results[i].failed and results[i].score == 0.0
        assert "exited with code 1" in results[i].feedback
        assert "Traceback" in results[i].feedback and "RuntimeError: boom in the scorer" in results[i].feedback
        assert "no result line for this id" in results[i].feedback


def test_crash_after_some_results_keeps_them(tmp_path):
    results = run(tmp_path, """
        import json, sys
        print(json.dumps({"id": "a", "score": 0.5, "feedback": "fine"}))
        sys.stderr.write("died on b\\n")
        sys.exit(3)
    """)
    assert results["a"].score == 0.5 and not results["a"].failed
    assert all(results[i].failed and "died on b" in results[i].feedback and "code 3" in results[i].feedback
               for i in IDS[1:])


def test_nonzero_exit_with_every_result_keeps_the_results(tmp_path):
    results = run(tmp_path, textwrap.dedent(GOOD) + "\nsys.exit(1)\n", ids=["a", "b"])
    assert results["a"].score == 1.0 and not results["a"].failed and not results["b"].failed


def test_hang_times_out_and_kills_the_process_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    results = run(tmp_path, """
        import os, subprocess, time
        from pathlib import Path
        child = subprocess.Popen(["sleep", "60"])
        Path(os.environ["PID_FILE"]).write_text(str(child.pid))
        print("working...", flush=True)
        time.sleep(60)
    """, timeout=1, PID_FILE=str(pid_file))
    assert time.monotonic() - started < 20
    for i in IDS:
        assert results[i].failed and results[i].score == 0.0
        assert "timed out" in results[i].feedback and "process group killed" in results[i].feedback
        assert "working..." in results[i].feedback
    assert all_gone([int(pid_file.read_text())]), "the eval's child process survived the timeout"


SLEEPER = """
    import os, subprocess, time
    from pathlib import Path
    child = subprocess.Popen(["sleep", "60"])
    Path(os.environ["PID_DIR"], f"{os.getpid()}-{child.pid}").write_text("")
    time.sleep(60)
"""


def _interrupted_when(pid_dir: Path, count: int, action) -> tuple[list[int], float]:
    """Run ``action`` in this (main) thread and interrupt it like Ctrl-C once ``count`` evals have started;
    return the pids of those evals and their children, and how long ``action`` took to give up."""
    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    def interrupt_once_started() -> None:
        deadline = time.monotonic() + 20
        while len(list(pid_dir.iterdir())) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, interrupt)
    interrupter = threading.Thread(target=interrupt_once_started)
    started = time.monotonic()
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            action()
    finally:
        interrupter.join()
        signal.signal(signal.SIGUSR1, previous)
    pids = [int(pid) for entry in pid_dir.iterdir() for pid in entry.name.split("-")]
    return pids, time.monotonic() - started


def test_an_interrupted_eval_is_killed_with_its_children(tmp_path):
    """A cancelled Ray task gets KeyboardInterrupt while it waits for its eval: the eval must not outlive it."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    repo = make_repo(tmp_path, {"s.py": SLEEPER})
    suite = suite_for(repo, "s.py", PID_DIR=str(pid_dir))
    workdir = workdir_for(repo, tmp_path)
    pids, took = _interrupted_when(pid_dir, 1, lambda: suite.evaluate(workdir, ["a"]))
    assert len(pids) == 2 and took < 20
    assert all_gone(pids), "the interrupted eval (or its child) is still running"


def test_an_interrupted_parallel_batch_stops_every_eval_instead_of_waiting_for_them(tmp_path):
    """Ctrl-C or the runner's SIGTERM during a batch: the evals run in their own sessions in worker threads, so
    nothing but gepa-bot can stop them; the batch gives up at once and leaves no eval process behind."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    repo = make_repo(tmp_path, {"s.py": SLEEPER})
    suite = suite_for(repo, "s.py", PID_DIR=str(pid_dir))
    workdir = workdir_for(repo, tmp_path)
    pids, took = _interrupted_when(pid_dir, 2, lambda: evaluate_parallel(suite, workdir, IDS, 2))
    assert len(pids) == 4 and took < 20  # two evals and their children; the eval timeout (30 s) never came
    assert all_gone(pids), "an eval of the interrupted batch is still running"


def test_results_before_a_hang_are_kept(tmp_path):
    results = run(tmp_path, """
        import json, time
        print(json.dumps({"id": "a", "score": 1, "feedback": "quick"}), flush=True)
        time.sleep(60)
    """, ids=["a", "b"], timeout=1)
    assert results["a"].score == 1.0 and not results["a"].failed
    assert results["b"].failed and "timed out" in results["b"].feedback


def test_huge_output_is_capped(tmp_path):
    repo = make_repo(tmp_path, {"s.py": """
        import json, sys
        print(json.dumps({"id": "a", "score": 0.75, "feedback": "first"}))
        chunk = ("x" * 999 + "\\n") * 1000
        for _ in range(30):  # 30 MB of noise on stdout and 3 MB on stderr
            sys.stdout.write(chunk)
        sys.stderr.write(chunk * 3)
    """})
    suite = suite_for(repo, "s.py")
    workdir = workdir_for(repo, tmp_path)
    tracemalloc.start()
    try:
        results = suite.evaluate(workdir, ["a", "b"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 25_000_000, f"peak {peak} bytes while capturing 30 MB of output"
    assert results["a"].score == 0.75 and not results["a"].failed
    assert results["b"].failed  # an error that says what was cut, never a score
    assert "stdout was cut after 2,000,000 bytes" in results["b"].feedback
    assert len(results["b"].feedback) <= FEEDBACK_LIMIT + 100
    output = run_process(f"{PY} evals/s.py", repo, {}, "", 30)
    assert output.returncode == 0 and not output.timed_out
    assert MAX_CAPTURE_BYTES - 1000 <= len(output.stdout) <= MAX_CAPTURE_BYTES + 200  # cut at a line end
    kept = output.stdout.split("\n... [")[0]
    assert output.stdout_cut == 30_000_048 - len(kept) and f"[{output.stdout_cut} bytes of output cut]" in output.stdout
    assert output.stdout.endswith("bytes of output cut]")
    assert len(output.stderr) <= MAX_CAPTURE_BYTES + 200


def test_malformed_lines_and_garbage(tmp_path):
    results = run(tmp_path, """
        import json
        print("GARBAGE-LINE-1 not json at all")
        print("{this is not json}")
        print(json.dumps({"id": "a"}))
        print(json.dumps({"id": "b", "score": "high"}))
        print(json.dumps({"score": 1}))
        print(json.dumps({"id": "c", "score": None}))
        print(json.dumps({"id": "d", "score": 1.0, "feedback": {"structured": True}}))
        print("[1, 2, 3]")
    """, ids=["a", "b", "c", "d"])
    assert results["d"].score == 1.0 and json.loads(results["d"].feedback) == {"structured": True}
    for i in "abc":  # each id's own line is the error, named with what is wrong with it (never a score)
        assert results[i].failed and results[i].score == 0.0
        assert "protocol error: score must be a JSON number in [0, 1]" in results[i].feedback
    assert "got missing" in results["a"].feedback
    assert 'got "high" (str)' in results["b"].feedback and "got null (NoneType)" in results["c"].feedback


def test_strict_protocol_errors_name_the_instance(tmp_path):
    """true and "0.9" are not scores, a second line for one id is not a correction, an error line is an error."""
    results = run(tmp_path, """
        import json
        print(json.dumps({"id": "bool", "score": True, "feedback": "yes"}))
        print(json.dumps({"id": "text", "score": "0.9", "feedback": "nearly"}))
        print(json.dumps({"id": "twice", "score": 0.0, "feedback": "first"}))
        print(json.dumps({"id": "twice", "score": 1.0, "feedback": "second"}))
        print(json.dumps({"id": "err", "error": "grader unreachable: Connection refused"}))
        print(json.dumps({"id": "ok", "score": 0.5, "feedback": "half"}))
    """, ids=["bool", "text", "twice", "err", "ok"])
    assert all(results[i].failed for i in ("bool", "text", "twice", "err"))
    assert "got true (bool)" in results["bool"].feedback
    assert 'got "0.9" (str)' in results["text"].feedback
    assert "printed 2 result lines for this id" in results["twice"].feedback
    assert results["err"].feedback == "the eval reported an error: grader unreachable: Connection refused"
    assert results["ok"].score == 0.5 and not results["ok"].failed


def test_score_out_of_range(tmp_path):
    results = run(tmp_path, """
        import json
        print(json.dumps({"id": "hi", "score": 1.5, "feedback": "too good"}))
        print(json.dumps({"id": "lo", "score": -1, "feedback": "too bad"}))
        print('{"id": "nan", "score": NaN}')
        print(json.dumps({"id": "ok0", "score": 0}))
        print(json.dumps({"id": "ok1", "score": 1}))
    """, ids=["hi", "lo", "nan", "ok0", "ok1"])
    assert results["hi"].failed and results["hi"].score == 0.0 and "score 1.5 is outside [0, 1]" in results["hi"].feedback
    assert results["lo"].failed and "score -1.0 is outside [0, 1]" in results["lo"].feedback
    assert results["nan"].failed and "score nan" in results["nan"].feedback
    assert (results["ok0"].score, results["ok1"].score) == (0.0, 1.0)
    assert not results["ok0"].failed and not results["ok1"].failed


def test_missing_and_unexpected_ids(tmp_path):
    results = run(tmp_path, """
        import json
        for i in ["a", "zzz-unexpected", "c"]:
            print(json.dumps({"id": i, "score": 1, "feedback": "ok"}))
    """, ids=["a", "b", "c"])
    assert set(results) == {"a", "b", "c"}
    assert not results["a"].failed and not results["c"].failed
    assert results["b"].failed and "no result line for this id" in results["b"].feedback
    assert "unexpected id 'zzz-unexpected'" in results["b"].feedback


def test_a_missing_ids_feedback_never_carries_other_ids_results(tmp_path):
    results = run(tmp_path, """
        import json
        print("loading the model")
        print(json.dumps({"id": "a", "score": 1, "feedback": "SECRET-OF-A: correct"}))
    """, ids=["a", "b"])
    assert results["b"].failed and "loading the model" in results["b"].feedback
    assert "SECRET-OF-A" not in results["b"].feedback


def test_numeric_ids_are_matched_as_strings(tmp_path):
    results = run(tmp_path, """
        import json
        print(json.dumps({"id": 7, "score": 1}))
    """, ids=["7"])
    assert results["7"].score == 1.0 and not results["7"].failed


def test_long_feedback_is_truncated(tmp_path):
    results = run(tmp_path, """
        import json
        print(json.dumps({"id": "a", "score": 1, "feedback": "HEAD" + "x" * 20000 + "TAIL"}))
    """, ids=["a"])
    feedback = results["a"].feedback
    assert len(feedback) < FEEDBACK_LIMIT + 100
    assert feedback.startswith("HEAD") and feedback.endswith("TAIL") and "chars cut" in feedback


# --- listing instances -------------------------------------------------------------------------------

def test_list_mode_via_command(tmp_path):
    repo = make_repo(tmp_path, {"list.py": """
        import json, os, sys
        assert os.environ["GEPA_BOT_MODE"] == "list"
        assert os.environ["GEPA_BOT_MODEL"] == "openai/test-model"
        print(json.dumps({"id": "t1", "split": "train"}))
        print(json.dumps({"id": 2, "split": "val"}))
        print("")
        print("  plain-id  ")
        print(json.dumps({"id": "t3"}))
    """})
    assert suite_for(repo, "list.py").list_instances() == [
        Instance("t1", "train"), Instance("2", "val"), Instance("plain-id"), Instance("t3")]


def test_log_lines_in_list_mode_are_refused_not_taken_as_ids(tmp_path):
    repo = make_repo(tmp_path, {"list.py": """
        import json
        print("Loading model...")
        print(json.dumps({"id": "t1", "split": "train"}))
        print("WARNING: something odd")
        print(json.dumps({"id": "t2"}))
    """})
    with pytest.raises(SuiteError) as err:
        suite_for(repo, "list.py").list_instances()
    message = str(err.value)
    assert "2 listed line(s) look like log output" in message
    assert "'Loading model...'" in message and "'WARNING: something odd'" in message and "stderr" in message


def test_list_mode_failure_is_suite_error(tmp_path):
    repo = make_repo(tmp_path, {"list.py": "import sys\nsys.stderr.write('no dataset here')\nsys.exit(2)\n"})
    with pytest.raises(SuiteError, match="(?s)listing instances failed.*exited with code 2.*no dataset here"):
        suite_for(repo, "list.py").list_instances()


def test_list_mode_timeout_is_suite_error(tmp_path):
    repo = make_repo(tmp_path, {"list.py": "import time\ntime.sleep(60)\n"})
    with pytest.raises(SuiteError, match="timed out"):
        suite_for(repo, "list.py", timeout=0.5).list_instances()


def test_list_mode_duplicates_are_suite_error(tmp_path):
    repo = make_repo(tmp_path, {"list.py": "print('a')\nprint('{\"id\": \"a\"}')\nprint('b')\n"})
    with pytest.raises(SuiteError, match="duplicated: a"):
        suite_for(repo, "list.py").list_instances()


def test_instances_file(tmp_path):
    repo = make_repo(tmp_path, {"never.py": "raise SystemExit('list mode must not run the command')\n"})
    (repo / "data").mkdir()
    (repo / "data" / "ids.jsonl").write_text(
        '{"id": "q1", "split": "train"}\n\n{"id": "q2", "split": "test", "extra": 1}\nplain3\n  {"id": 4}\n')
    suite = suite_for(repo, "never.py", instances="data/ids.jsonl")
    assert suite.list_instances() == [Instance("q1", "train"), Instance("q2", "test"), Instance("plain3"),
                                      Instance("4")]


def test_instances_file_plain_ids(tmp_path):
    repo = make_repo(tmp_path, {})
    (repo / "ids.txt").write_text("one\ntwo\nthree")
    assert [i.id for i in suite_for(repo, "none.py", instances="ids.txt").list_instances()] == ["one", "two", "three"]


@pytest.mark.parametrize("content,match", [
    ("a\nb\na\n", "duplicated: a"),
    ('{"id": "x"}\nx\n', "duplicated: x"),
    ('{"id": "x"\n', "not JSON with an 'id'"),
    ('{"split": "train"}\n', "not JSON with an 'id'"),
])
def test_bad_instances_file(tmp_path, content, match):
    repo = make_repo(tmp_path, {})
    (repo / "ids.jsonl").write_text(content)
    with pytest.raises(SuiteError, match=match):
        suite_for(repo, "none.py", instances="ids.jsonl").list_instances()


def test_missing_instances_file(tmp_path):
    repo = make_repo(tmp_path, {})
    with pytest.raises(SuiteError, match="does not exist"):
        suite_for(repo, "none.py", instances="nope.jsonl").list_instances()


# --- materialization ---------------------------------------------------------------------------------

def test_materialize(tmp_path):
    repo = make_repo(tmp_path, {"s.py": GOOD})
    (repo / "data").mkdir()
    (repo / "data" / "big.bin").write_bytes(os.urandom(4096))
    (repo / ".git").mkdir()
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".gepa-bot" / "cache").mkdir(parents=True)
    (repo / ".gepa-bot" / "cache" / "x.json").write_text("{}")
    files = {"prompts/main.txt": "NEW prompt {x}\n", "prompts/new/extra.md": "brand new\n"}
    components = {"prompts/main.txt": "NEW prompt {x}\n", "prompts/new/extra.md": "brand new\n"}

    workdir = materialize(repo, files, components, tmp_path / "work")

    assert workdir.path.is_dir() and not workdir.path.resolve().is_relative_to(repo.resolve())
    assert (workdir.path / "prompts" / "main.txt").read_text() == "NEW prompt {x}\n"
    assert (workdir.path / "prompts" / "new" / "extra.md").read_text() == "brand new\n"
    assert (repo / "prompts" / "main.txt").read_text() == "mentions a and c\n"  # the real repo is untouched
    assert not (repo / "prompts" / "new").exists()
    original, copy = repo / "data" / "big.bin", workdir.path / "data" / "big.bin"
    assert copy.read_bytes() == original.read_bytes()
    assert os.stat(copy).st_ino == os.stat(original).st_ino, "untouched files are hard links"
    assert os.stat(workdir.path / "prompts" / "main.txt").st_ino != os.stat(repo / "prompts" / "main.txt").st_ino
    assert (workdir.path / "evals" / "s.py").read_text() == (repo / "evals" / "s.py").read_text()
    assert not (workdir.path / ".git").exists() and not (workdir.path / ".gepa-bot").exists()
    assert json.loads(workdir.candidate_file.read_text(encoding="utf-8")) == {"components": components, "files": files}
    assert workdir.candidate_file.parent == workdir.path.parent  # outside the copy the eval sees
    assert workdir.files == files and workdir.components == components

    second = materialize(repo, {"prompts/main.txt": "other"}, {}, tmp_path / "work")
    assert second.path != workdir.path
    assert (workdir.path / "prompts" / "main.txt").read_text() == "NEW prompt {x}\n"

    remove_workdir(workdir)
    assert not workdir.path.parent.exists()
    assert (repo / "prompts" / "main.txt").read_text() == "mentions a and c\n"
    assert original.exists() and (second.path / "data" / "big.bin").exists()


def test_materialize_non_ascii_candidate(tmp_path):
    repo = make_repo(tmp_path, {})
    workdir = materialize(repo, {"prompts/main.txt": "héllo ✓\n"}, {"prompts/main.txt": "héllo ✓\n"}, tmp_path / "w")
    assert (workdir.path / "prompts" / "main.txt").read_bytes() == "héllo ✓\n".encode()
    assert json.loads(workdir.candidate_file.read_bytes().decode("utf-8"))["files"] == {"prompts/main.txt": "héllo ✓\n"}


# --- parallel evaluation -----------------------------------------------------------------------------

def _count_lines(count_dir: Path) -> list[str]:
    return [line for f in sorted(count_dir.iterdir()) for line in f.read_text().splitlines()]


@pytest.mark.parametrize("workers", [1, 3, 20])
def test_evaluate_parallel_matches_single_call(tmp_path, workers):
    single_dir, parallel_dir = tmp_path / "single", tmp_path / "parallel"
    single_dir.mkdir()
    parallel_dir.mkdir()
    repo = make_repo(tmp_path, {"s.py": GOOD})
    workdir = workdir_for(repo, tmp_path)

    single = suite_for(repo, "s.py", COUNT_DIR=str(single_dir)).evaluate(workdir, IDS)
    parallel = evaluate_parallel(suite_for(repo, "s.py", COUNT_DIR=str(parallel_dir)), workdir, IDS, workers)

    assert {i: r.to_json() for i, r in parallel.items()} == {i: r.to_json() for i, r in single.items()}
    assert list(parallel) != [] and set(parallel) == set(IDS)
    evaluated = _count_lines(parallel_dir)
    assert sorted(evaluated) == sorted(IDS), "every id evaluated exactly once"
    assert len(list(parallel_dir.iterdir())) == min(workers, len(IDS))  # one process per chunk


def test_evaluate_parallel_no_ids(tmp_path):
    repo = make_repo(tmp_path, {"s.py": GOOD})
    assert evaluate_parallel(suite_for(repo, "s.py"), workdir_for(repo, tmp_path), [], 3) == {}


class ExplodingSuite(EvalSuite):
    """A broken adapter: raises for any chunk that contains 'boom', returns nothing for 'lost'."""

    def list_instances(self) -> list[Instance]:
        return [Instance(i) for i in IDS]

    def fingerprint_parts(self) -> list[str]:
        return ["exploding"]

    def evaluate(self, workdir: Workdir, ids: list[str]) -> dict[str, InstanceResult]:
        if "boom" in ids:
            raise ValueError("adapter exploded on purpose")
        return {i: InstanceResult(id=i, score=1.0, feedback="fine") for i in ids if i != "lost"}


def test_exception_in_evaluate_fails_that_chunk(tmp_path):
    repo = make_repo(tmp_path, {})
    suite = ExplodingSuite(SuiteContext(repo=repo))
    ids = ["boom", "x", "y", "lost", "z", "w"]  # chunks for 3 workers: [boom, lost], [x, z], [y, w]
    results = evaluate_parallel(suite, workdir_for(repo, tmp_path), ids, 3)
    assert set(results) == set(ids)
    for i in ("boom", "lost"):
        assert results[i].failed and results[i].score == 0.0
        assert results[i].feedback == "eval suite error: ValueError: adapter exploded on purpose"
    for i in ("x", "y", "z", "w"):
        assert results[i].score == 1.0 and not results[i].failed


def test_missing_result_from_adapter_is_failure(tmp_path):
    repo = make_repo(tmp_path, {})
    results = evaluate_parallel(ExplodingSuite(SuiteContext(repo=repo)), workdir_for(repo, tmp_path), ["x", "lost"], 1)
    assert results["x"].score == 1.0
    assert results["lost"].failed and "returned no result" in results["lost"].feedback


def test_exception_with_single_worker_fails_everything(tmp_path):
    repo = make_repo(tmp_path, {})
    results = evaluate_parallel(ExplodingSuite(SuiteContext(repo=repo)), workdir_for(repo, tmp_path),
                                ["x", "boom", "y"], 1)
    assert all(r.failed and "adapter exploded on purpose" in r.feedback for r in results.values())


# --- fingerprint and env -----------------------------------------------------------------------------

def test_fingerprint_tracks_command_watch_files_and_model(tmp_path):
    repo = make_repo(tmp_path, {"s.py": GOOD})
    first = suite_for(repo, "s.py").fingerprint()
    assert suite_for(repo, "s.py").fingerprint() == first
    (repo / "prompts" / "main.txt").write_text("not watched")
    assert suite_for(repo, "s.py").fingerprint() == first
    (repo / "evals" / "s.py").write_text(GOOD + "\n# changed\n")
    changed = suite_for(repo, "s.py").fingerprint()
    assert changed != first
    other_model = CommandSuite(SuiteContext(repo=repo, model="openai/other"), f"{PY} evals/s.py", ["evals/**"])
    assert other_model.fingerprint() != changed
    (repo / "evals" / "deep" / "er").mkdir(parents=True)
    (repo / "evals" / "deep" / "er" / "data.jsonl").write_text("{}")
    assert suite_for(repo, "s.py").fingerprint() != changed  # "evals/**" covers nested files too


def test_hash_files_with_trailing_double_star(tmp_path):
    repo = make_repo(tmp_path, {"s.py": "print()", "t.py": "pass"})
    (repo / ".git").mkdir()
    (repo / ".git" / "x.py").write_text("ignored")
    hashed = hash_files(repo, ["evals/**", "evals/*.py", ".git/**"])
    assert [h.split(":")[0] for h in hashed] == ["evals/s.py", "evals/t.py"]


def test_task_env():
    context = SuiteContext(repo=Path("."), model="m", api_base="http://x", api_key=None, env={"A": "1"})
    assert context.task_env() == {"A": "1", evalkit.ENV_MODEL: "m", evalkit.ENV_API_BASE: "http://x"}


def test_eval_process_never_gets_github_or_runner_tokens(tmp_path, monkeypatch):
    """The repo's eval is repo code: it may need an LLM key, never the token that can push."""
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_pushcapable")
    monkeypatch.setenv("ACTIONS_RUNTIME_TOKEN", "runtime-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-llm-key-needed")
    body = textwrap.dedent('''
        import json, os
        for i in open(os.environ["GEPA_BOT_IDS_FILE"]).read().split():
            seen = {k: k in os.environ for k in ("GITHUB_TOKEN", "ACTIONS_RUNTIME_TOKEN", "OPENAI_API_KEY")}
            print(json.dumps({"id": i, "score": 1.0, "feedback": json.dumps(seen)}))
    ''')
    results = run(tmp_path, body)
    seen = json.loads(results["a"].feedback)
    assert seen == {"GITHUB_TOKEN": False, "ACTIONS_RUNTIME_TOKEN": False, "OPENAI_API_KEY": True}


def test_eval_process_is_told_gepa_bots_interpreter(tmp_path, monkeypatch):
    """The Action keeps gepa-bot in its own venv: $GEPA_BOT_PYTHON lets an eval use gepa_bot.evalkit."""
    monkeypatch.delenv("GEPA_BOT_PYTHON", raising=False)
    body = textwrap.dedent('''
        import json, os, subprocess
        code = "import gepa_bot.evalkit, sys; print(sys.executable)"
        out = subprocess.run([os.environ["GEPA_BOT_PYTHON"], "-c", code], capture_output=True, text=True).stdout.strip()
        for i in open(os.environ["GEPA_BOT_IDS_FILE"]).read().split():
            print(json.dumps({"id": i, "score": 1.0, "feedback": out}))
    ''')
    results = run(tmp_path, body)
    assert results["a"].feedback == sys.executable
