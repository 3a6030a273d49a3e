"""Eval for the ticket classifier, speaking gepa-bot's command protocol.

    GEPA_BOT_MODE=list      print every ticket id with its split
    GEPA_BOT_MODE=evaluate  score the ids in GEPA_BOT_IDS_FILE (all tickets when it is unset)

The prompt files are read from the current directory, so gepa-bot can run this script inside a
copy of the repo where the candidate prompts have been written.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import yaml

from gepa_bot import evalkit

DATA = Path(__file__).resolve().parent.parent / "data" / "tickets.jsonl"
PROMPT_FILE = Path("prompts/classify.md")
SYSTEM_FILE = Path("prompts/system.yaml")

LABELS = ("billing", "bug", "account", "feature_request", "other")
SYNONYMS = {
    "feature": "feature_request", "features": "feature_request", "feature_requests": "feature_request",
    "enhancement": "feature_request", "request": "feature_request",
    "bugs": "bug", "defect": "bug", "error": "bug",
    "payment": "billing", "payments": "billing", "invoice": "billing",
    "accounts": "account", "login": "account",
    "misc": "other", "general": "other",
}
PREFIXES = ("category", "label", "queue", "answer")
TRIAGE_GUIDE = {  # the support team's definitions; a failure's feedback quotes the expected queue's line
    "billing": "questions about prices, plans, charges, invoices and receipts, when nothing in the product is broken",
    "bug": "something that should work is broken (an error page, a crash, wrong data, a setting that is ignored), "
           "even when the ticket is about an invoice or asks for a refund",
    "account": "access to and ownership of an account (passwords, two-factor recovery, email changes, admins, merging, "
               "deleting), when nothing in the product is broken",
    "feature_request": "asking for something the product does not do yet, even when the ticket calls it a bug",
    "other": "anything that is not about using the product or paying for it, such as jobs, press, "
             "partnerships, thanks or opening hours",
}


def load_tickets() -> dict[str, dict]:
    with DATA.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return {row["id"]: row for row in rows}


def load_prompt() -> str:
    """prompts/classify.md without its YAML front-matter."""
    text = PROMPT_FILE.read_text(encoding="utf-8")
    match = re.match(r"\A---\s*\n.*?\n---\s*\n", text, flags=re.DOTALL)
    return text[match.end():] if match else text


def load_settings() -> tuple[str, int]:
    data = yaml.safe_load(SYSTEM_FILE.read_text(encoding="utf-8")) or {}
    return str(data.get("system", "")).strip(), int(data.get("max_words", 3))


def normalize(reply: str) -> str:
    """The first allowed label (or a synonym of one) the reply mentions, lowercased; else its first word."""
    words = [w.replace("-", "_").strip("_") for w in re.findall(r"[a-z][a-z_\-]*", reply.lower())]
    words = [w for w in words if w not in PREFIXES]  # "Category: billing"
    for index, word in enumerate(words):
        if word == "feature" and index + 1 < len(words) and words[index + 1].startswith("request"):
            return "feature_request"
        label = SYNONYMS.get(word, word)
        if label in LABELS:
            return label
    return words[0] if words else ""


def score_one(ticket: dict, system: str, prompt: str, max_words: int, req: evalkit.Request) -> None:
    user = prompt.replace("{ticket}", ticket["text"])
    full = system + "\n\n" + user
    expected = ticket["label"]
    if "{ticket}" not in prompt:
        evalkit.emit(ticket["id"], 0.0, "the prompt has no {ticket} placeholder, so the model never saw the "
                     f"ticket; expected '{expected}'; ticket: {ticket['text']!r}",
                     trace={"prompt_chars": len(full), "raw": None})
        return
    try:
        raw = evalkit.complete(user, req, system=system, max_tokens=12)
    except Exception as exc:  # an error, not a score (gepa-bot retries it); one failing call must not sink the batch
        evalkit.emit_error(ticket["id"], f"model call failed: {type(exc).__name__}: {exc}")
        return
    got = normalize(raw)
    trace = {"prompt_chars": len(full), "raw": raw}
    if got == expected:
        feedback = f"correct: expected '{expected}', got '{got}'"
    elif got in LABELS:
        feedback = (f"expected '{expected}', got '{got}' (raw reply: {raw.strip()!r}); under our triage guide "
                    f"'{expected}' means {TRIAGE_GUIDE[expected]}; ticket: {ticket['text']!r}")
    else:
        feedback = (f"expected '{expected}', but the reply {raw.strip()!r} is not one of the allowed labels "
                    f"({', '.join(LABELS)}); answer with exactly one label; under our triage guide '{expected}' means "
                    f"{TRIAGE_GUIDE[expected]}; ticket: {ticket['text']!r}")
    if len(raw.split()) > max_words:
        feedback += f" (the reply had {len(raw.split())} words; at most {max_words} are wanted)"
    evalkit.emit(ticket["id"], 1.0 if got == expected else 0.0, feedback, trace=trace, output=got)


def main() -> None:
    req = evalkit.request()
    tickets = load_tickets()
    if req.mode == "list":
        evalkit.emit_ids([(ticket_id, row["split"]) for ticket_id, row in tickets.items()])
        return
    ids = req.ids if os.environ.get(evalkit.ENV_IDS_FILE) else list(tickets)
    prompt = load_prompt()
    system, max_words = load_settings()
    for ticket_id in ids:
        if ticket_id not in tickets:
            evalkit.emit_error(ticket_id, f"unknown ticket id {ticket_id!r}")
            continue
        score_one(tickets[ticket_id], system, prompt, max_words, req)


if __name__ == "__main__":
    sys.exit(main())
