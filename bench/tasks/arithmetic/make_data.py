"""Generate data.jsonl: one- and two-step arithmetic word problems (GSM8K-style, but small).

    python bench/tasks/arithmetic/make_data.py > bench/tasks/arithmetic/data.jsonl

Written for gepa-bot's bench and dedicated to the public domain (CC0-1.0); no third-party text.
Deterministic (fixed seed): 5 kinds x 12 problems, per kind 5 train / 4 val / 3 test.
"""

from __future__ import annotations

import json
import random
import sys

NAMES = [("Tom", "he"), ("Maria", "she"), ("Ali", "he"), ("Priya", "she"), ("Ken", "he"), ("Lena", "she"),
         ("Sam", "he"), ("Nora", "she"), ("Omar", "he"), ("Zoe", "she"), ("Ivan", "he"), ("Mei", "she")]
OBJECTS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "stamps", "shells", "cards", "eggs"]
SPLITS = ["train"] * 5 + ["val"] * 4 + ["test"] * 3


def make(kind: str, rng: random.Random) -> tuple[str, int, dict]:
    name, pron = rng.choice(NAMES)
    obj = rng.choice(OBJECTS)
    Pron = pron.capitalize()
    if kind == "add":
        a, b = rng.randint(3, 20), rng.randint(2, 15)
        return (f"{name} has {a} {obj}. {Pron} gets {b} more {obj}. How many {obj} does {name} have now?",
                a + b, {"numbers": [a, b], "op": f"{a} + {b}"})
    if kind == "sub":
        a = rng.randint(10, 30)
        b = rng.randint(2, a - 2)
        return (f"{name} had {a} {obj} and gave {b} of them to a friend. How many {obj} does {name} have left?",
                a - b, {"numbers": [a, b], "op": f"{a} - {b}"})
    if kind == "mul":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return (f"{name} buys {a} bags of {obj}. Each bag has {b} {obj}. How many {obj} does {name} buy in total?",
                a * b, {"numbers": [a, b], "op": f"{a} x {b}"})
    if kind == "div":
        b, q = rng.randint(2, 6), rng.randint(2, 9)
        return (f"{name} shares {b * q} {obj} equally among {b} friends. How many {obj} does each friend get?",
                q, {"numbers": [b * q, b], "op": f"{b * q} / {b}"})
    if kind == "two_step":
        a, b = rng.randint(5, 20), rng.randint(2, 10)
        c = rng.randint(2, a + b - 2)
        return (f"{name} has {a} {obj}. {Pron} buys {b} more, then gives away {c}. "
                f"How many {obj} does {name} have now?",
                a + b - c, {"numbers": [a, b, c], "op": f"{a} + {b} - {c}"})
    raise ValueError(kind)


def main() -> None:
    rng = random.Random(8)
    rows = []
    for kind in ("add", "sub", "mul", "div", "two_step"):
        splits = SPLITS[:]
        rng.shuffle(splits)
        for i, split in enumerate(splits, 1):
            question, answer, meta = make(kind, rng)
            rows.append({"id": f"{kind}-{i:02d}", "input": question, "label": str(answer), "split": split,
                         "kind": kind, **meta})
    rng.shuffle(rows)
    for row in rows:
        sys.stdout.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
