"""Generate data.jsonl: extract the delivery city from a short customer message.

    python bench/tasks/shipping_city/make_data.py > bench/tasks/shipping_city/data.jsonl

Written for gepa-bot's bench and dedicated to the public domain (CC0-1.0); no third-party text.
Deterministic (fixed seed). Half of the messages also name a second city (where the customer
lives, where the order came from, a former address) so that "the first city in the message" is
not a winning strategy. 60 messages: 24 train / 18 val / 18 test.
"""

from __future__ import annotations

import json
import random
import sys

CITIES = ["Leeds", "Porto", "Osaka", "Denver", "Lyon", "Nairobi", "Krakow", "Austin", "Dublin", "Perth",
          "Bergen", "Quito", "Seville", "Hanoi", "Tampere", "Calgary", "Ghent", "Cusco", "Malmo", "Adelaide"]
ITEMS = ["two blue mugs", "a desk lamp", "three notebooks", "the walnut chair", "a pair of boots",
         "a coffee grinder", "six wine glasses", "the green backpack", "a wall clock", "two bath towels"]

PLAIN = [
    "Hi, please send {item} to our office in {city}.",
    "Could you ship {item} to {city}? Thanks!",
    "Order for {item}, delivery address is 12 Mill Road, {city}.",
    "I need {item} delivered to {city} by Friday.",
    "Please deliver {item} to my sister in {city}.",
    "Ship to: {city}. Items: {item}.",
]
DISTRACTOR = [
    "I live in {other}, but please ship {item} to my parents in {city}.",
    "We ordered {item} from the {other} store; deliver it to {city}, please.",
    "My old address was in {other}. Send {item} to my new flat in {city}.",
    "Ship {item} to {city}. The invoice should go to our head office in {other}.",
    "I'm flying from {other} next week, so please deliver {item} to the hotel in {city}.",
    "Deliver {item} to {city} instead of {other}, we moved last month.",
]
SPLITS = ["train"] * 24 + ["val"] * 18 + ["test"] * 18


def main() -> None:
    rng = random.Random(42)
    rows = []
    splits = SPLITS[:]
    rng.shuffle(splits)
    for i, split in enumerate(splits, 1):
        city, other = rng.sample(CITIES, 2)
        item = rng.choice(ITEMS)
        if i % 2:
            text, distractor = rng.choice(PLAIN).format(item=item, city=city), None
        else:
            text, distractor = rng.choice(DISTRACTOR).format(item=item, city=city, other=other), other
        rows.append({"id": f"msg-{i:02d}", "input": text, "label": city, "split": split, "distractor": distractor})
    for row in rows:
        sys.stdout.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
