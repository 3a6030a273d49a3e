"""Running the repository's own eval suite on a candidate: protocol, materialization, parallelism.

A *suite* knows how to list instances and score a set of instance ids in a *workdir* (a temporary copy
of the repository with the candidate's prompt files written in place). This module owns everything
around that: materializing workdirs, splitting ids over workers, and turning crashes, hangs and garbage
into *errors* (an instance that could not be scored: never a score, never cached; see search/adapter.py) whose
message is the offending text.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gepa_bot import evalkit
from gepa_bot.owned import is_owned
from gepa_bot.redact import redact, withheld
from gepa_bot.text import FEEDBACK_LIMIT, truncate_middle

MAX_CAPTURE_BYTES = 2_000_000
IGNORED_DIRS = (".git", ".gepa-bot")


@dataclass(frozen=True)
class Instance:
    """One evaluable example; ``split`` is the suite's own train/val/test label when it has one."""

    id: str
    split: str | None = None


@dataclass(frozen=True)
class InstanceResult:
    """Score and textual feedback for one instance.

    ``failed`` marks an ERROR, not a score: the eval reported one (``{"id", "error"}``) or gepa-bot synthesized
    one (crash, timeout, garbage, a lost result line). ``feedback`` then holds the error message and ``score`` is
    meaningless (0). Errors are retried, never cached and never shown to the reflection model.
    """

    id: str
    score: float
    feedback: str
    trace: Any = None
    output: str | None = None
    failed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "score": self.score, "feedback": self.feedback, "trace": self.trace,
                "output": self.output, "failed": self.failed}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InstanceResult:
        return cls(id=data["id"], score=float(data["score"]), feedback=data.get("feedback", ""),
                   trace=data.get("trace"), output=data.get("output"), failed=bool(data.get("failed", False)))


@dataclass
class Workdir:
    """A materialized candidate: repo copy with prompt files rewritten, plus the candidate JSON file."""

    path: Path
    components: dict[str, str]
    files: dict[str, str]
    candidate_file: Path


@dataclass
class SuiteContext:
    """What every suite gets: the repo, the task model settings and extra env for the eval process."""

    repo: Path
    model: str | None = None
    api_base: str | None = None
    api_key: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    deadline: float | None = None  # time.monotonic() value when the run's wall-time cap is reached

    def clamp(self, timeout: float) -> float:
        """``timeout`` shortened so no eval outlives the run's wall-time cap."""
        if self.deadline is None:
            return timeout
        return max(0.1, min(timeout, self.deadline - time.monotonic()))

    def evaluate_env(self, ids_file: Path, candidate_file: Path) -> dict[str, str]:
        """The protocol's environment for scoring the ids in ``ids_file`` of the candidate in ``candidate_file``."""
        return {**self.task_env(), evalkit.ENV_MODE: "evaluate", evalkit.ENV_IDS_FILE: str(ids_file),
                evalkit.ENV_CANDIDATE_FILE: str(candidate_file)}

    def task_env(self) -> dict[str, str]:
        """Environment variables that tell an eval process which task model to use."""
        env = dict(self.env)
        for name, value in ((evalkit.ENV_MODEL, self.model), (evalkit.ENV_API_BASE, self.api_base),
                            (evalkit.ENV_API_KEY, self.api_key)):
            if value:
                env[name] = value
        return env


class EvalSuite(ABC):
    """The contract every eval-suite adapter fulfils. ``evaluate`` must be safe to call from threads."""

    def __init__(self, context: SuiteContext):
        self.context = context

    @abstractmethod
    def list_instances(self) -> list[Instance]:
        """All instances this suite can score, in a stable order."""

    @abstractmethod
    def fingerprint_parts(self) -> list[str]:
        """Strings that identify the suite's behaviour (command, data, scorer files); hashed for the cache."""

    @abstractmethod
    def evaluate(self, workdir: Workdir, ids: list[str]) -> dict[str, InstanceResult]:
        """Score ``ids`` in ``workdir``; never raise for per-instance failures."""

    def fingerprint(self) -> str:
        """Stable hash of the suite definition plus the task model: part of every cache key."""
        digest = hashlib.sha256()
        for part in [type(self).__name__, self.context.model or "", *self.fingerprint_parts()]:
            digest.update(part.encode("utf-8", "replace"))
            digest.update(b"\0")
        return digest.hexdigest()


def hash_files(repo: Path, patterns: Iterable[str]) -> list[str]:
    """``path:sha256`` for every file under ``repo`` matching the glob patterns, sorted."""
    seen: dict[str, str] = {}
    for pattern in patterns:
        for match in sorted(repo.glob(pattern)):
            # before Python 3.13 a trailing "**" (as in "evals/**") matches only directories: take their files
            for path in sorted(match.rglob("*")) if match.is_dir() else [match]:
                if path.is_file() and not _is_ignored(path.relative_to(repo)):
                    seen[path.relative_to(repo).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return [f"{name}:{digest}" for name, digest in sorted(seen.items())]


def _is_ignored(relative: Path) -> bool:
    return bool(relative.parts) and relative.parts[0] in IGNORED_DIRS


def failure(instance_id: str, feedback: str) -> InstanceResult:
    """An error (the instance could not be scored), with the offending text (truncated) as its message."""
    return InstanceResult(id=instance_id, score=0.0, feedback=excerpt(feedback), failed=True)


def excerpt(text: str, limit: int = FEEDBACK_LIMIT) -> str:
    """Eval output as gepa-bot keeps it: secrets masked, then the head and the tail of long text, where errors
    usually are (gepa_bot/text.py).

    Secrets are masked first: a cut through the middle of a key would leave a piece of it that
    redaction can no longer recognize.
    """
    return truncate_middle(redact(text), limit)


# --- materialization -------------------------------------------------------------------------------

def materialize(repo: Path, files: Mapping[str, str], components: Mapping[str, str], parent: Path) -> Workdir:
    """Copy ``repo`` (hard links where possible) into a new dir under ``parent`` and write ``files``."""
    parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="cand-", dir=parent))
    workdir = root / "repo"
    shutil.copytree(repo, workdir, symlinks=True, ignore=_not_copied, copy_function=_link_or_copy)
    for relative, content in files.items():
        target = workdir / relative
        target.unlink(missing_ok=True)  # break the hard link before writing: never touch the real repo
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    candidate_file = root / "candidate.json"
    candidate_file.write_text(json.dumps({"components": dict(components), "files": dict(files)},
                                         ensure_ascii=False), encoding="utf-8")
    return Workdir(path=workdir, components=dict(components), files=dict(files), candidate_file=candidate_file)


def _not_copied(directory: str, names: list[str]) -> set[str]:
    """copytree's ignore: .git, .gepa-bot, and every directory gepa-bot owns (a run dir or cache configured
    elsewhere in the repo: copying it would copy the candidate copies inside it, without end)."""
    return {name for name in names if name in IGNORED_DIRS or is_owned(Path(directory) / name)}


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def remove_workdir(workdir: Workdir) -> None:
    shutil.rmtree(workdir.path.parent, ignore_errors=True)


def evaluate_parallel(suite: EvalSuite, workdir: Workdir, ids: list[str], workers: int) -> dict[str, InstanceResult]:
    """Split ``ids`` into ``workers`` chunks, score them concurrently (threads), and fill in anything missing."""
    chunks = chunks_of(ids, workers)
    with ThreadPoolExecutor(max_workers=max(1, len(chunks))) as pool:
        done = pool.map(lambda chunk: finish_chunk(run_chunk(suite, workdir, chunk), chunk), chunks)
        try:
            return {i: r for chunk_results in done for i, r in chunk_results.items()}
        except BaseException:  # interrupted: the pool would otherwise wait for every eval to finish on its own
            stop_running_evals()
            raise


def chunks_of(ids: list[str], workers: int) -> list[list[str]]:
    """``ids`` dealt round-robin into at most ``workers`` non-empty chunks."""
    return [ids[i::workers] for i in range(max(1, min(workers, len(ids))))] if ids else []


def run_chunk(suite: EvalSuite, workdir: Workdir, ids: list[str]) -> dict[str, InstanceResult]:
    """``suite.evaluate`` on one chunk; a broken adapter must not lose the run: the chunk is scored as failed."""
    try:
        return suite.evaluate(workdir, ids)
    except Exception as exc:
        return {i: failure(i, f"eval suite error: {type(exc).__name__}: {exc}") for i in ids}


def finish_chunk(results: Mapping[str, InstanceResult], ids: list[str]) -> dict[str, InstanceResult]:
    """Exactly ``ids``, each redacted; an id the suite left out is a failure."""
    return {i: _redacted(results.get(i) or failure(i, "the eval suite returned no result for this instance"))
            for i in ids}


def _redacted(result: InstanceResult) -> InstanceResult:
    """Eval processes inherit API keys: never let one echoed in output reach logs, cache or report."""
    return InstanceResult(id=result.id, score=result.score, feedback=redact(result.feedback),
                          trace=redact(result.trace), output=redact(result.output), failed=result.failed)


# --- the "command" protocol ------------------------------------------------------------------------

@dataclass
class ProcessOutput:
    """What a finished (or killed) eval process left behind."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    stdout_cut: int = 0  # bytes of stdout beyond MAX_CAPTURE_BYTES that were not read


_running_groups: set[int] = set()  # process groups of the eval processes running now (any thread)
_running_lock = threading.Lock()


def run_process(argv: str, cwd: Path, env: Mapping[str, str], stdin: str, timeout: float) -> ProcessOutput:
    """Run a shell command in its own process group; on timeout, or when this thread is interrupted
    (Ctrl-C, a cancelled Ray task), kill the whole group."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, shell=True, cwd=cwd, env=eval_environment(env), stdin=subprocess.PIPE,
                                stdout=out, stderr=err, start_new_session=True)
        with _running_lock:
            _running_groups.add(proc.pid)
        timed_out = False
        try:
            proc.communicate(stdin.encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            with _running_lock:
                _running_groups.discard(proc.pid)
        stdout, stdout_cut = _read_capped(out)
        return ProcessOutput(proc.returncode, stdout, _read_capped(err)[0], timed_out, stdout_cut)


def stop_running_evals() -> None:
    """Kill every eval process group still running: an interrupted run leaves none behind (they run in their
    own sessions, so the terminal's Ctrl-C or the runner's SIGTERM never reaches them)."""
    with _running_lock:
        groups = list(_running_groups)
    for group in groups:
        _kill_group_id(group)


def eval_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for eval processes: ours plus ``extra``, without GitHub/runner credentials, the runner's
    command files ($GITHUB_ENV & co.), RUNNER_TEMP or any ACTIONS_* variable (:func:`gepa_bot.redact.withheld`).

    ``GEPA_BOT_PYTHON`` is gepa-bot's own interpreter (the Action installs it in a separate venv, so the
    eval's ``python`` is the caller's): an eval command that uses gepa_bot.evalkit runs with it.
    """
    base = {"GEPA_BOT_PYTHON": sys.executable, **os.environ, **extra}
    return {k: v for k, v in base.items() if not withheld(k)}


def _kill_group(proc: subprocess.Popen) -> None:
    _kill_group_id(proc.pid)
    proc.wait()


def _kill_group_id(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read_capped(handle: Any) -> tuple[str, int]:
    """The first MAX_CAPTURE_BYTES of a captured stream, and how many bytes beyond them were not read."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(0)
    data = handle.read(MAX_CAPTURE_BYTES)
    if size > MAX_CAPTURE_BYTES:
        data = data[:data.rfind(b"\n") + 1]  # a half line is not a result line
    text = data.decode("utf-8", "replace")
    cut = size - len(data)
    if cut:
        text += f"\n... [{cut} bytes of output cut]"
    return text, cut


def parse_result_lines(stdout: str, wanted: Iterable[str]) -> tuple[dict[str, InstanceResult], list[str]]:
    """Results for wanted ids from JSONL ``stdout``, plus the problems met (bad lines, unexpected ids).

    Strict: an ``{"id", "error"}`` line is the eval's own error; a score that is not a JSON number (``true``,
    ``"0.9"``) or outside [0, 1], and an id printed twice, are protocol errors for that id. Never a score.
    """
    wanted_set = set(wanted)
    results: dict[str, InstanceResult] = {}
    problems: list[str] = []
    seen: Counter[str] = Counter()
    for number, line in enumerate(stdout.splitlines(), start=1):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
            instance_id = str(data["id"])
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"stdout line {number} is not a result line ({type(exc).__name__}): {line[:200]}")
            continue
        if instance_id not in wanted_set:
            problems.append(f"stdout line {number}: unexpected id {instance_id!r}")
            continue
        seen[instance_id] += 1
        results[instance_id] = _result_from_line(instance_id, data, line)
    for instance_id, count in seen.items():
        if count > 1:
            results[instance_id] = failure(instance_id, f"protocol error: the eval printed {count} result lines for "
                                                        "this id (one line per id)")
    return results, problems


def _result_from_line(instance_id: str, data: dict[str, Any], line: str) -> InstanceResult:
    """One parsed result line: the eval's error, a protocol error, or a score with its feedback."""
    if "error" in data:
        return failure(instance_id, f"the eval reported an error: {_as_text(data['error'])}")
    score = data.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float):
        shown = "missing" if "score" not in data else f"{json.dumps(score)[:40]} ({type(score).__name__})"
        return failure(instance_id, f"protocol error: score must be a JSON number in [0, 1], got {shown}; "
                                    f"line: {line[:300]}")
    if not 0.0 <= score <= 1.0:  # (NaN fails this too)
        return failure(instance_id, f"protocol error: score {float(score)} is outside [0, 1]; line: {line[:300]}")
    return InstanceResult(id=instance_id, score=float(score), feedback=excerpt(_as_text(data.get("feedback", ""))),
                          trace=data.get("trace"), output=None if data.get("output") is None else str(data["output"]))


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def describe_process(output: ProcessOutput, timeout: float) -> str:
    """A short human account of how the eval process ended, with the tail of its output.

    Result lines of other instances are left out of stdout: one id's feedback never carries another's.
    """
    if output.timed_out:
        head = f"eval command timed out after {timeout:g}s (process group killed)"
    else:
        head = f"eval command exited with code {output.returncode}"
    stdout = "\n".join(line for line in output.stdout.splitlines() if not _is_result_line(line))
    return f"{head}\n--- stderr ---\n{excerpt(output.stderr, 1500)}\n--- stdout ---\n{excerpt(stdout, 1500)}"


def _is_result_line(line: str) -> bool:
    if not line.lstrip().startswith("{"):
        return False
    try:
        data = json.loads(line)
    except ValueError:
        return False
    return isinstance(data, dict) and "id" in data and "score" in data


class SuiteError(Exception):
    """The suite cannot be used at all (listing failed, config unusable)."""
