"""Write-ahead JSONL run log: every rollout, LLM call and candidate is on disk before it is used.

The log is the run's memory: ``--run-dir`` resume replays LLM replies from it (so a resumed run
proposes the same candidates without paying again) and the eval cache supplies the rollouts.
A torn last line (the process was killed mid-write) is ignored on reading.

Every record is flushed to the operating system before ``write`` returns, so a killed process loses
nothing. ``fsync`` (which only matters when the machine itself goes down) is group-committed: at most
every ``FSYNC_INTERVAL_S`` seconds, and on close. That bounds the loss window of a machine crash to that
interval instead of paying ~0.2 ms on every record.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gepa_bot.owned import mark_owned
from gepa_bot.redact import redact

RUN_LOG_NAME = "run.jsonl"
FSYNC_INTERVAL_S = 0.5


class RunLog:
    """Append-only JSONL file, flushed per record and fsynced in groups (see the module docstring); thread-safe."""

    def __init__(self, run_dir: Path):
        mark_owned(run_dir)
        self.path = run_dir / RUN_LOG_NAME
        self._lock = threading.Lock()
        self._repair_torn_tail()
        self._handle = self.path.open("a", encoding="utf-8")
        self._opened = time.time()
        self._synced = time.monotonic()

    def _repair_torn_tail(self) -> None:
        """Drop a trailing partial line so new records start on a line of their own."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            self.path.write_bytes(data[: data.rfind(b"\n") + 1])

    def write(self, kind: str, **fields: Any) -> None:
        """Append one record; ``ts`` (UTC, ISO 8601) and ``since_start_s`` tell when, so slow steps can be found."""
        now = time.time()
        stamp = {"ts": datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat(timespec="milliseconds"),
                 "since_start_s": round(now - self._opened, 3)}
        line = json.dumps(redact({"kind": kind, **fields, **stamp}), ensure_ascii=False, default=str)
        with self._lock:
            self._handle.write(line + "\n")
            self._handle.flush()
            if time.monotonic() - self._synced >= FSYNC_INTERVAL_S:
                os.fsync(self._handle.fileno())
                self._synced = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if not self._handle.closed:
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()


def read_records(run_dir: Path, kind: str | None = None) -> Iterator[dict[str, Any]]:
    """Records of the log (optionally of one kind), skipping unreadable lines."""
    path = run_dir / RUN_LOG_NAME
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (kind is None or record.get("kind") == kind):
                yield record
