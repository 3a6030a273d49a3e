"""Content-addressed on-disk eval cache: never pay twice for the same prompt x instance.

Key = sha256(candidate texts, eval-suite fingerprint, split, instance id). The split is part of the key
so train and val results can never be confused, whatever the ids look like (gepa 0.1.4 issue #424).
The store is one SQLite database in WAL mode (``cache.sqlite3``): one row per rollout, one transaction per batch
of puts and one query per 500 lookups, so parallel workers, other processes on the same cache and crashes are
safe. (Until 0.1 it was one JSON file per rollout, 4 KiB on disk for ~120 bytes; such files are still read.)
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii as _json_string
from pathlib import Path

from gepa_bot.evals.suite import InstanceResult
from gepa_bot.owned import mark_owned


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
        self._legacy = False  # files of the pre-SQLite layout exist: misses also look there

    def key(self, cand_hash: str, split: str, instance_id: str) -> str:
        # == sha256(json.dumps([cand_hash, fingerprint, split, instance_id])), without json.dumps' overhead
        raw = "[" + ", ".join(map(_json_string, (cand_hash, self.fingerprint, split, instance_id))) + "]"
        return hashlib.sha256(raw.encode()).hexdigest()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            mark_owned(self.root)
            db = sqlite3.connect(self.root / self.DB_NAME, timeout=30, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a killed process
            db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db = db
            self._legacy = any(len(p.name) == 2 and p.is_dir() for p in self.root.iterdir())
        return self._db

    def _read_many(self, keys: Sequence[str]) -> dict[str, str]:
        """Stored values by key (misses left out): one query per 500 keys, then the legacy files if any."""
        found: dict[str, str] = {}
        with self._lock:
            db = self._connection()
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(db.execute(f"SELECT key, value FROM results WHERE key IN ({marks})", chunk).fetchall())
        for key in (k for k in keys if k not in found) if self._legacy else ():
            try:  # the one-file-per-rollout layout of earlier versions
                found[key] = (self.root / key[:2] / f"{key}.json").read_text(encoding="utf-8")
            except OSError:
                pass
        return found

    def get_many(self, cand_hash: str, wanted: Mapping[str, str]) -> dict[str, InstanceResult]:
        """Stored results of ``cand_hash`` for ``wanted`` (instance id -> split), by id; misses are left out."""
        if not self.enabled:
            self.misses += len(wanted)
            return {}
        keys = {self.key(cand_hash, split, instance_id): instance_id for instance_id, split in wanted.items()}
        results = {}
        for key, raw in self._read_many(list(keys)).items():
            try:
                result = InstanceResult.from_json(json.loads(raw))
            except (ValueError, KeyError, TypeError):
                continue  # unreadable: a miss
            if not result.failed:  # an error stored by an older gepa-bot is not a result: a miss
                results[keys[key]] = result
        self.hits += len(results)
        self.misses += len(wanted) - len(results)
        return results

    def get(self, cand_hash: str, split: str, instance_id: str) -> InstanceResult | None:
        return self.get_many(cand_hash, {instance_id: split}).get(instance_id)

    def contains(self, cand_hash: str, split: str, instance_id: str) -> bool:
        return bool(self.present([(cand_hash, split, instance_id)]))

    def present(self, entries: Sequence[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        """Which (candidate hash, split, instance id) entries are stored."""
        keys = {self.key(*entry): entry for entry in entries}
        return {keys[key] for key in self._read_many(list(keys))}

    def put(self, cand_hash: str, split: str, result: InstanceResult) -> None:
        self.put_many([(cand_hash, split, result)])

    def put_many(self, entries: Sequence[tuple[str, str, InstanceResult]]) -> None:
        """Store results, all in one transaction (a reader sees all of them or none). Errors are never stored."""
        rows = [(self.key(cand_hash, split, result.id), json.dumps(result.to_json(), ensure_ascii=False))
                for cand_hash, split, result in entries if not result.failed]
        if not rows:
            return
        with self._lock:
            db = self._connection()
            db.execute("BEGIN")
            try:
                db.executemany("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)", rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
