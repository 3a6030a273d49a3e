"""Content-addressed on-disk eval cache: never pay twice for the same prompt x instance.

Key = sha256(candidate texts, eval-suite fingerprint, split, instance id). The split is part of the key
so train and val results can never be confused, whatever the ids look like (gepa 0.1.4 issue #424).
The store is one SQLite database in WAL mode (``cache.sqlite3``): one row per rollout, each ``put`` its own
transaction, so parallel workers, other processes on the same cache and crashes are safe. (Until 0.1 it was
one JSON file per rollout, 4 KiB on disk for ~120 bytes; such files are still read.)
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path

from gepa_bot.evalsuite import InstanceResult


def candidate_hash(texts: Mapping[str, str]) -> str:
    """Stable hash of a candidate's component texts."""
    return hashlib.sha256(json.dumps(dict(sorted(texts.items())), ensure_ascii=False).encode()).hexdigest()


class EvalCache:
    """Maps (candidate, suite fingerprint, split, instance id) to a stored InstanceResult."""

    DB_NAME = "cache.sqlite3"

    def __init__(self, root: Path, fingerprint: str, enabled: bool = True):
        self.root = root
        self.fingerprint = fingerprint
        self.enabled = enabled  # disabled: every lookup misses (benchmarks measure what the cache saves)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def key(self, cand_hash: str, split: str, instance_id: str) -> str:
        raw = json.dumps([cand_hash, self.fingerprint, split, instance_id])
        return hashlib.sha256(raw.encode()).hexdigest()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.root.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.root / self.DB_NAME, timeout=30, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a killed process
            db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db = db
        return self._db

    def _read(self, key: str) -> str | None:
        with self._lock:
            row = self._connection().execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return str(row[0])
        legacy = self.root / key[:2] / f"{key}.json"  # the one-file-per-rollout layout of earlier versions
        try:
            return legacy.read_text(encoding="utf-8")
        except OSError:
            return None

    def get(self, cand_hash: str, split: str, instance_id: str) -> InstanceResult | None:
        if not self.enabled:
            self.misses += 1
            return None
        raw = self._read(self.key(cand_hash, split, instance_id))
        try:
            result = InstanceResult.from_json(json.loads(raw)) if raw is not None else None
        except (ValueError, KeyError, TypeError):
            result = None
        if result is None:
            self.misses += 1
            return None
        self.hits += 1
        return result

    def contains(self, cand_hash: str, split: str, instance_id: str) -> bool:
        return self._read(self.key(cand_hash, split, instance_id)) is not None

    def put(self, cand_hash: str, split: str, result: InstanceResult) -> None:
        """Store a result (one transaction: a reader sees all of it or nothing)."""
        value = json.dumps(result.to_json(), ensure_ascii=False)
        with self._lock:
            self._connection().execute("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)",
                                       (self.key(cand_hash, split, result.id), value))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
