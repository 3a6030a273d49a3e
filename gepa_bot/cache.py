"""Content-addressed on-disk eval cache: never pay twice for the same prompt x instance.

Key = sha256(candidate texts, eval-suite fingerprint, split, instance id). The split is part of the key
so train and val results can never be confused, whatever the ids look like (gepa 0.1.4 issue #424).
Each entry is one small JSON file written atomically, so parallel workers and crashes are safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from gepa_bot.evalsuite import InstanceResult


def candidate_hash(texts: Mapping[str, str]) -> str:
    """Stable hash of a candidate's component texts."""
    return hashlib.sha256(json.dumps(dict(sorted(texts.items())), ensure_ascii=False).encode()).hexdigest()


class EvalCache:
    """Maps (candidate, suite fingerprint, split, instance id) to a stored InstanceResult."""

    def __init__(self, root: Path, fingerprint: str, enabled: bool = True):
        self.root = root
        self.fingerprint = fingerprint
        self.enabled = enabled  # disabled: every lookup misses (benchmarks measure what the cache saves)
        self.hits = 0
        self.misses = 0

    def key(self, cand_hash: str, split: str, instance_id: str) -> str:
        raw = json.dumps([cand_hash, self.fingerprint, split, instance_id])
        return hashlib.sha256(raw.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, cand_hash: str, split: str, instance_id: str) -> InstanceResult | None:
        path = self._path(self.key(cand_hash, split, instance_id))
        if not self.enabled:
            self.misses += 1
            return None
        try:
            result = InstanceResult.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError):
            self.misses += 1
            return None
        self.hits += 1
        return result

    def contains(self, cand_hash: str, split: str, instance_id: str) -> bool:
        return self._path(self.key(cand_hash, split, instance_id)).is_file()

    def put(self, cand_hash: str, split: str, result: InstanceResult) -> None:
        """Store a result atomically (write to a temp file, then rename)."""
        path = self._path(self.key(cand_hash, split, result.id))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(result.to_json(), handle, ensure_ascii=False)
        os.replace(tmp, path)
