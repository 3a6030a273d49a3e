"""Where eval batches run: here, in a thread pool (``local``), or as tasks on a Ray cluster (``ray``).

Either way the driver keeps what the run's guarantees rest on: the budget is reserved before a batch goes out,
results are redacted, logged and cached here, and a chunk that cannot be scored (a crashed eval, a dead Ray
node, a task that never returns) comes back as failed results with the reason as feedback, never as an
exception that loses the batch.

On Ray, the repository travels once per run as a content-addressed archive in the object store; each task
unpacks it once per node, materializes the candidate's prompt files into a hard-linked copy, and runs the suite's
``evaluate`` there: the same command, environment rules (no GitHub credentials), timeouts and output caps as
locally. The GitHub token is never in the driver's environment during the search, so it never reaches a task.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import signal
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gepa_bot.errors import UserError
from gepa_bot.evals.suite import (
    IGNORED_DIRS,
    EvalSuite,
    InstanceResult,
    chunks_of,
    evaluate_parallel,
    failure,
    finish_chunk,
    materialize,
    remove_workdir,
    run_chunk,
)
from gepa_bot.redact import withheld

if TYPE_CHECKING:
    from gepa_bot.config import RayConfig

RAY_GRACE_SECONDS = 60.0  # beyond the eval timeout, for scheduling and shipping results
NODE_COPY_IDLE_SECONDS = 24 * 3600.0  # a node's repo copy no task used for this long goes when another is unpacked


class Executor(Protocol):
    """Scores ``ids`` of one candidate (its rendered prompt ``files``) with ``suite``, split over workers."""

    def evaluate(self, suite: EvalSuite, files: dict[str, str], components: dict[str, str],
                 ids: list[str]) -> dict[str, InstanceResult]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Today's way: one materialized copy of the repo per batch, one eval process per chunk, in threads."""

    def __init__(self, repo: Path, scratch: Path, workers: int):
        self.repo, self.scratch, self.workers = repo, scratch, workers

    def evaluate(self, suite: EvalSuite, files: dict[str, str], components: dict[str, str],
                 ids: list[str]) -> dict[str, InstanceResult]:
        workdir = materialize(self.repo, files, components, self.scratch)
        try:
            return evaluate_parallel(suite, workdir, ids, self.workers)
        finally:
            remove_workdir(workdir)

    def close(self) -> None:
        pass


class RayExecutor:
    """Each chunk of a batch is one Ray task on the cluster at ``address``."""

    def __init__(self, repo: Path, workers: int, address: str, timeout: float, num_cpus: float = 1.0,
                 resources: Mapping[str, float] | None = None, max_retries: int = 1,
                 forward_env: Sequence[str] = ()):
        import ray

        self.ray, self.workers, self.timeout = ray, workers, timeout
        self.forward_env = [name for name in forward_env if not withheld(name)]
        self.grace = RAY_GRACE_SECONDS
        check_reachable(address)
        on_sigterm = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False,
                     ignore_reinit_error=True)
        except Exception as exc:  # something answers there, but not a Ray cluster this Ray can join
            detail = " ".join(str(exc).split())[:300]
            raise UserError(f"ray.address {address}: cannot join the Ray cluster there ({type(exc).__name__}: "
                            f"{detail})", fix="check the address, and that the cluster runs Ray "
                            f"{ray.__version__} on the same Python version") from None
        if threading.current_thread() is threading.main_thread():  # Ray's C++ core replaces it with a hard exit;
            signal.signal(signal.SIGTERM, on_sigterm)  # a stopped run must still say how to resume
        self.task = ray.remote(_evaluate_on_node).options(num_cpus=num_cpus, resources=dict(resources or {}),
                                                          max_retries=max_retries, retry_exceptions=False)
        archive = repo_archive(repo)
        self.archive_key = hashlib.sha256(archive).hexdigest()[:20]
        self.archive_ref = ray.put(archive)

    def evaluate(self, suite: EvalSuite, files: dict[str, str], components: dict[str, str],
                 ids: list[str]) -> dict[str, InstanceResult]:
        chunks = chunks_of(ids, self.workers)
        remaining = None if suite.context.deadline is None else suite.context.deadline - time.monotonic()
        env = {name: os.environ[name] for name in self.forward_env if name in os.environ}
        refs = [self.task.remote(suite, self.archive_ref, self.archive_key, files, components, chunk, remaining, env)
                for chunk in chunks]
        limit = suite.context.clamp(self.timeout) + self.grace
        ready, _pending = self.ray.wait(refs, num_returns=len(refs), timeout=limit)
        results: dict[str, InstanceResult] = {}
        for ref, chunk in zip(refs, chunks, strict=True):
            results.update(finish_chunk(self._collect(ref, chunk, ref in ready, limit), chunk))
        return results

    def _collect(self, ref: Any, chunk: list[str], ready: bool, limit: float) -> dict[str, InstanceResult]:
        if not ready:  # not force: the task gets KeyboardInterrupt (Ray may deliver it late; the task's own eval
            # timeout bounds that), kills its eval's process group and removes its work copy
            self.ray.cancel(ref, force=False)
            return {i: failure(i, f"the Ray task scoring this instance did not finish within {limit:.0f}s "
                                  "(cluster busy, or its node is gone)") for i in chunk}
        try:
            return {data["id"]: InstanceResult.from_json(data) for data in self.ray.get(ref)}
        except Exception as exc:  # a dead worker or node, after Ray's retries: the chunk is scored as failed
            reason = " ".join(str(exc).split())[:600]
            return {i: failure(i, f"the Ray task scoring this instance failed: {type(exc).__name__}: {reason}")
                    for i in chunk}

    def close(self) -> None:
        self.ray.shutdown()


def make_executor(kind: str, repo: Path, scratch: Path, workers: int, timeout: float,
                  ray_settings: RayConfig) -> Executor:
    """The configured executor; ``ray_settings`` is the config's ``ray`` section."""
    if kind == "local":
        return LocalExecutor(repo, scratch, workers)
    address = ray_settings.address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise UserError("eval.executor is 'ray' but no cluster address is set",
                        fix="set ray.address in .gepa-bot.yml or the RAY_ADDRESS environment variable "
                            "(host:port of the head node's GCS, e.g. 127.0.0.1:6379)")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError("eval.executor is 'ray' but Ray is not installed",
                        fix="pip install 'gepa-bot[ray]' (the same Ray version as the cluster)") from None
    return RayExecutor(repo, workers, address, timeout, num_cpus=ray_settings.num_cpus,
                       resources=ray_settings.resources, max_retries=ray_settings.max_retries,
                       forward_env=ray_settings.forward_env)


def check_reachable(address: str, wait: float = 5.0) -> None:
    """Fail fast, in one line, when nothing answers at a ``host:port`` cluster address (``ray://`` is left to
    Ray)."""
    if "://" in address or address == "auto":
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=wait).close()
    except (OSError, ValueError) as exc:
        raise UserError(f"ray.address {address}: no Ray cluster answers there ({exc})",
                        fix="start one (`ray start --head`) or fix ray.address / RAY_ADDRESS") from None


def repo_archive(repo: Path) -> bytes:
    """The repository as a gzipped tar (without the directories a workdir never gets: .git, caches, run dirs)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(repo, arcname=".", filter=lambda info: None if _ignored(info.name) else info)
    return buffer.getvalue()


def _ignored(name: str) -> bool:
    return any(part in IGNORED_DIRS for part in Path(name).parts)


def _evaluate_on_node(suite: EvalSuite, archive: bytes, archive_key: str, files: dict[str, str],
                      components: dict[str, str], ids: list[str], remaining: float | None,
                      env: dict[str, str]) -> list[dict[str, Any]]:
    """The Ray task: the repo unpacked once per node, the candidate materialized, the chunk scored."""
    suite.context.env.update(env)
    if remaining is not None:  # monotonic clocks differ between machines: carry the time left, not the deadline
        suite.context.deadline = time.monotonic() + remaining
    base = _unpacked(archive, archive_key)
    workdir = materialize(base, files, components, base.parent / "work")
    try:
        return [result.to_json() for result in run_chunk(suite, workdir, ids).values()]
    finally:
        remove_workdir(workdir)


def _unpacked(archive: bytes, key: str) -> Path:
    """This node's copy of the repo archive (unpacked by the first task that needs it; atomic rename)."""
    root = Path(tempfile.gettempdir()) / "gepa-bot-ray"
    target = root / key / "repo"
    if not target.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        _remove_idle_copies(root, keep=key)
        staging = Path(tempfile.mkdtemp(prefix="unpack-", dir=root))
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            tar.extractall(staging, filter="data")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(target)
        except OSError:  # another task on this node won the race: use its copy
            shutil.rmtree(staging, ignore_errors=True)
    os.utime(target.parent)  # in use: not idle
    return target


def _remove_idle_copies(root: Path, keep: str, idle: float = NODE_COPY_IDLE_SECONDS) -> None:
    """Delete the repo copies (and torn unpacks) on this node that no task has used for ``idle`` seconds:
    earlier runs' leftovers, which would otherwise fill the node's temp directory run after run."""
    cutoff = time.time() - idle
    for entry in root.iterdir():
        try:
            if entry.name != keep and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue  # another task removed it first
