"""Rebuild data.jsonl from the country list shipped in npm `countries-list@3.4.1` (MIT, Annexare Studio).

    cd "$(mktemp -d)" && npm pack countries-list@3.4.1 && tar xzf countries-list-3.4.1.tgz
    python bench/tasks/continents/make_data.py "$PWD/package/countries.min.json" > bench/tasks/continents/data.jsonl

(tarball sha256 572934a82137ec58a84a3e32635ec589cb9788e8df408f15677c71009d2adff2.) Every one of the list's 252
countries and territories, labelled with the list's own continent code (AF, AN, AS, EU, NA, OC, SA; the list
puts Russia and Türkiye in AS, Cyprus and Kosovo in EU, Central America and the Caribbean in NA). Deterministic:
shuffled with a fixed seed, then 24 train, 20 val and the other 208 test.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

SIZES = {"train": 24, "val": 20}


def main(countries_file: Path) -> None:
    countries = json.loads(countries_file.read_text(encoding="utf-8"))
    codes = sorted(countries)
    random.Random(3166).shuffle(codes)
    splits = ["train"] * SIZES["train"] + ["val"] * SIZES["val"]
    splits += ["test"] * (len(codes) - len(splits))
    for code, split in zip(codes, splits, strict=True):
        row = {"id": code.lower(), "input": countries[code]["name"], "label": countries[code]["continent"],
               "split": split}
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
