"""Generate data.jsonl: incident reports to be given a priority P1-P4 under a written policy.

    python bench/tasks/incidents/make_data.py > bench/tasks/incidents/data.jsonl

Written for gepa-bot's bench and dedicated to the public domain (CC0-1.0); no third-party text.
The policy (eval.py's POLICY, never in the seed prompt) decides the label, and the reports' tone often
points the other way: a calm note about lost data is P1, a shouting complaint about a misaligned logo is P4.
Deterministic (fixed seed): 40 reports per priority, per priority 8 train / 6 val / 26 test.
"""

from __future__ import annotations

import json
import random
import sys

SERVICES = ["checkout", "the login page", "the mobile app", "the billing portal", "search", "the public API",
            "file uploads", "the dashboard", "email notifications", "the reporting module", "password reset",
            "the admin console"]
CUSTOMERS = ["Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Hooli", "Stark Freight", "Wayne Foods", "Tyrell Labs"]
CALM = ["FYI: ", "Small note: ", "Not sure this matters, but ", "When you have a moment: ", ""]
LOUD = ["URGENT!!! ", "CRITICAL: ", "Please fix ASAP!! ", "This is unacceptable! ", "HIGH PRIORITY: "]

TEMPLATES: dict[str, list[str]] = {
    "P1": [
        "{calm}{service} has been returning errors for every customer since {time}; nobody can use it.",
        "{calm}since the deploy at {time}, {service} is down for all users in every region.",
        "{calm}a database migration last night deleted {n} days of customer orders and we have no copy of them.",
        "{calm}customer records from {customer} were found on a public file share; anyone with the link can read them.",
        "{calm}an attacker logged in to the admin console with a leaked password and changed {n} accounts.",
        "{calm}uploads made between {time} and now were lost; customers' files are gone from storage.",
        "{calm}the whole site shows a blank page for customers; {service} and everything else is unreachable.",
        "{calm}a bug in the sync job overwrote customer invoices with empty ones; the originals are not recoverable.",
    ],
    "P2": [
        "{loud}{service} is very slow for many customers (pages take {n} seconds) and there is no way around it.",
        "{loud}{service} fails for most customers on the mobile app; the web version has the same problem.",
        "{loud}exports from {service} are broken for all customers since {time}; there is no other way to get the data.",
        "{loud}about half of our customers cannot complete checkout with a card; no other payment method works either.",
        "{loud}search returns no results for many customers since {time}; they cannot find their documents otherwise.",
        "{loud}email notifications stopped for all customers; they miss every alert and there is no workaround.",
        "{loud}{service} crashes for many users whenever they open a report; nothing else shows that data.",
        "{loud}login via single sign-on fails for many customer companies and they have no other way to log in.",
    ],
    "P3": [
        "{loud}{service} fails for one customer ({customer}), but it works when they use another browser.",
        "{loud}{customer} says the CSV export misses a column; the same data can be downloaded as Excel instead.",
        "{loud}the internal admin console is slow for our support team; customers are not affected.",
        "{loud}a date filter in {service} is wrong for one account ({customer}); typing the dates by hand works.",
        "{loud}{service} logs one customer out every {n} minutes; logging in again works fine.",
        "{loud}our internal reporting job failed last night; re-running it by hand works.",
        "{loud}uploads over {n} MB fail for {customer}; splitting the file into parts works.",
        "{loud}the 'remember me' box on {service} is ignored for one customer; they can still log in normally.",
    ],
    "P4": [
        "{loud}the logo on {service} is {n} pixels off to the left.",
        "{loud}there is a typo in the footer of {service}: 'recieve' instead of 'receive'.",
        "{loud}{customer} asks whether we plan to add a dark mode to {service}.",
        "{loud}can you add an option to sort the dashboard by due date? {customer} would love it.",
        "{loud}the button colour on {service} does not match our brand guide.",
        "{loud}{customer} wants to know how to change the language of their invoices.",
        "{loud}please add keyboard shortcuts to {service}; it would make it faster for power users.",
        "{loud}the help page for {service} still shows an old screenshot.",
    ],
}
TONES = {"P1": CALM, "P2": ["", "Heads up: ", "Update: "] + LOUD[:2], "P3": LOUD + [""], "P4": LOUD + [""]}
"""P1 reports are written calmly, P3/P4 ones mostly loudly: the tone must not decide the priority."""
SPLITS = ["train"] * 8 + ["val"] * 6 + ["test"] * 26


def fill(template: str, rng: random.Random, tone: str) -> str:
    text = template.format(calm=tone, loud=tone, service=rng.choice(SERVICES), customer=rng.choice(CUSTOMERS),
                           time=f"{rng.randint(6, 22)}:{rng.choice(['00', '15', '30', '45'])}", n=rng.randint(2, 40))
    return text[0].upper() + text[1:]


def unique_reports(templates: list[str], tones: list[str], rng: random.Random, count: int) -> list[str]:
    """``count`` distinct reports, the templates used in turn (each template and tone pair has many fillings or,
    for a template without slots, one per tone: a few draws are enough, and the loop is bounded)."""
    texts: list[str] = []
    for attempt in range(count * 50):
        text = fill(templates[len(texts) % len(templates)] if attempt % 7 else rng.choice(templates), rng,
                    rng.choice(tones))
        if text not in texts:
            texts.append(text)
        if len(texts) == count:
            return texts
    raise RuntimeError("not enough distinct reports")


def main() -> None:
    rng = random.Random(41)
    rows = []
    for label, templates in TEMPLATES.items():
        splits = SPLITS[:]
        rng.shuffle(splits)
        tones = TONES[label]
        texts = unique_reports(templates, tones, rng, len(splits))
        rows += [{"id": f"{label.lower()}-{i:02d}", "input": text, "label": label, "split": split}
                 for i, (text, split) in enumerate(zip(texts, splits, strict=True), 1)]
    rng.shuffle(rows)
    for row in rows:
        sys.stdout.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
