"""Build data.jsonl for the bench task 'tickets' from prompts.example's 46 support tickets (deterministic).

The example's own split is train/val only; the bench needs a held-out test split, so the tickets are
re-split per label with a fixed seed: about 1/3 each to train, val and test. The 14 test tickets could not tell
5 points apart (one ticket is 7), so extra_test.jsonl adds 120 more (24 per queue, written blind to every
candidate prompt, labelled by prompts.example's triage guide) to test only: train and val are unchanged.
Run from the repo root: python bench/tasks/tickets/make_data.py
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent.parent.parent / "prompts.example" / "data" / "tickets.jsonl"
EXTRA_TEST = HERE / "extra_test.jsonl"


def main() -> None:
    rows = [json.loads(line) for line in SOURCE.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_label: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_label[row["label"]].append(row)
    rng = random.Random(7)
    out = []
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        for index, row in enumerate(group):
            split = ("train", "val", "test")[index % 3]
            out.append({"id": row["id"], "input": row["text"], "label": label, "split": split})
    extra = [json.loads(line) for line in EXTRA_TEST.read_text(encoding="utf-8").splitlines() if line.strip()]
    out += [{"id": row["id"], "input": row["text"], "label": row["label"], "split": "test"} for row in extra]
    out.sort(key=lambda r: r["id"])
    (HERE / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")


if __name__ == "__main__":
    main()
