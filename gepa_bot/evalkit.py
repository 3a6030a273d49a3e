"""Helpers for eval scripts that speak gepa-bot's "command" protocol.

An eval command is run by gepa-bot with its working directory set to a temporary copy of the
repository in which the candidate prompt files are already written. It reads:

- ``GEPA_BOT_MODE``: ``evaluate`` (score instances) or ``list`` (print the instance ids).
- ``GEPA_BOT_IDS_FILE``: a file with the instance ids to score, one per line (also sent on stdin).
- ``GEPA_BOT_CANDIDATE_FILE``: JSON ``{"components": {name: text}, "files": {path: content}}``.
- ``GEPA_BOT_MODEL`` / ``GEPA_BOT_API_BASE`` / ``GEPA_BOT_API_KEY``: the task model (a litellm string).

and prints one JSON line per instance on stdout::

    {"id": "t01", "score": 1.0, "feedback": "expected billing, got billing", "trace": {...}}

When an instance cannot be scored (its model is unreachable, a grader crashed, its data is missing), it prints
``{"id": "t01", "error": "model call failed: ..."}`` (:func:`emit_error`) instead: an error is retried, never
cached and never a score. In ``list`` mode it prints ``{"id": "t01", "split": "train"}`` lines (``split``
optional) or bare ids. Anything else on stdout is treated as log noise; ids that never get a valid line are
errors, with the command's output as their message.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_MODE = "GEPA_BOT_MODE"
ENV_IDS_FILE = "GEPA_BOT_IDS_FILE"
ENV_CANDIDATE_FILE = "GEPA_BOT_CANDIDATE_FILE"
ENV_MODEL = "GEPA_BOT_MODEL"
ENV_API_BASE = "GEPA_BOT_API_BASE"
ENV_API_KEY = "GEPA_BOT_API_KEY"


@dataclass
class Request:
    """What gepa-bot asks of an eval command in one invocation."""

    mode: str
    ids: list[str]
    components: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    model: str | None = None
    api_base: str | None = None
    api_key: str | None = None


def request() -> Request:
    """Read the current invocation's request from the environment."""
    ids_file = os.environ.get(ENV_IDS_FILE)
    ids = Path(ids_file).read_text(encoding="utf-8").split() if ids_file else []
    candidate_file = os.environ.get(ENV_CANDIDATE_FILE)
    candidate = json.loads(Path(candidate_file).read_text(encoding="utf-8")) if candidate_file else {}
    return Request(
        mode=os.environ.get(ENV_MODE, "evaluate"),
        ids=ids,
        components=candidate.get("components", {}),
        files=candidate.get("files", {}),
        model=os.environ.get(ENV_MODEL) or None,
        api_base=os.environ.get(ENV_API_BASE) or None,
        api_key=os.environ.get(ENV_API_KEY) or None,
    )


def complete(prompt: str, req: Request | None = None, *, system: str | None = None, max_tokens: int = 64,
             **kwargs: Any) -> str:
    """Ask the task model (from the request's env) to answer ``prompt``; deterministic by default.

    Goes through gepa_bot.models.completion.chat: ``openai/<name>`` on a loopback API base (the embedded local
    server) is called directly over HTTP, so an eval process starts in a fraction of a second instead of
    paying litellm's multi-second import on every batch; every other model string goes through litellm.
    """
    req = req or request()
    if not req.model:
        raise RuntimeError(f"{ENV_MODEL} is not set: run this script through gepa-bot or set it by hand")
    if req.model.startswith("local/"):
        raise RuntimeError(f"{ENV_MODEL}={req.model}: an embedded model needs its server; run `gepa-bot model serve "
                           f"--model {req.model}` in another shell and paste the lines it prints")
    params: dict[str, Any] = {"temperature": 0.0, "max_tokens": max_tokens, **kwargs}
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    from gepa_bot.models.completion import chat

    return chat(req.model, messages, api_base=req.api_base, api_key=req.api_key, **params).text


def emit(instance_id: str, score: float, feedback: str, trace: Any = None, output: str | None = None) -> None:
    """Print one result line in the protocol's format."""
    line: dict[str, Any] = {"id": instance_id, "score": score, "feedback": feedback}
    if trace is not None:
        line["trace"] = trace
    if output is not None:
        line["output"] = output
    sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def emit_error(instance_id: str, message: str) -> None:
    """Print an error line: this instance could not be scored (e.g. the model call failed). Never print a score of
    0 for that: gepa-bot retries errors, never caches them, and stops the run when they pile up."""
    sys.stdout.write(json.dumps({"id": instance_id, "error": message}, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def emit_ids(ids_with_splits: list[tuple[str, str | None]]) -> None:
    """Print the instance list in ``list`` mode."""
    for instance_id, split in ids_with_splits:
        line = {"id": instance_id} if split is None else {"id": instance_id, "split": split}
        sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


# --- a ready-made main() for "dataset + prompt template" evals ------------------------------------------

Scorer = Callable[[dict[str, Any], str], tuple[float, str, dict[str, Any]]]


def load_jsonl(path: Path) -> dict[str, dict[str, Any]]:
    """Rows of a JSONL file keyed by their ``id``."""
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return {str(row["id"]): row for row in rows}


def run_template_eval(data_file: Path, prompt_file: Path, placeholder: str, scorer: Scorer, *, noun: str = "input",
                      max_tokens: int = 64, held_out: tuple[str, ...] = ("test",)) -> int:
    """The whole protocol for the common case: JSONL rows ``{id, input, label, split}`` and one prompt file.

    In list mode the ids are printed with their split, except held-out splits (scored only when asked for
    by id). For each id: ``placeholder`` in the prompt (read from the current directory, i.e. the candidate)
    is replaced by the row's ``input``, the task model answers, and ``scorer(row, reply)`` gives
    ``(score, feedback, trace)``. A missing prompt file or a dropped placeholder is scored 0 with feedback saying so
    (the candidate's fault); an unknown id or a failing model call is an error (:func:`emit_error`), never a
    score. One bad instance never stops the batch.
    """
    req = request()
    data = load_jsonl(data_file)
    visible = [(i, row.get("split")) for i, row in data.items() if row.get("split") not in held_out]
    if req.mode == "list":
        emit_ids(visible)
        return 0
    ids = req.ids or [i for i, _ in visible]
    try:
        template = prompt_file.read_text(encoding="utf-8")
    except OSError as exc:
        for instance_id in ids:
            emit(instance_id, 0.0, f"cannot read the prompt file {prompt_file} in {Path.cwd()}: {exc}")
        return 0
    for instance_id in ids:
        _score_row(req, data.get(instance_id), instance_id, template, placeholder, scorer, noun, max_tokens)
    return 0


def _score_row(req: Request, row: dict[str, Any] | None, instance_id: str, template: str, placeholder: str,
               scorer: Scorer, noun: str, max_tokens: int) -> None:
    if row is None:
        emit_error(instance_id, f"unknown instance id {instance_id!r}")
        return
    if placeholder not in template:
        emit(instance_id, 0.0, f"the prompt has no {placeholder} placeholder, so the model never saw the {noun}; "
             f"expected {row['label']}; {noun}: {row['input']!r}", trace={"raw": None})
        return
    started = time.monotonic()
    try:
        reply = complete(template.replace(placeholder, row["input"]), req, max_tokens=max_tokens)
    except Exception as exc:  # an error, not a score; one failing call must not sink the batch
        emit_error(instance_id, f"model call failed: {type(exc).__name__}: {exc}")
        return
    value, feedback, trace = scorer(row, reply)
    emit(instance_id, value, f"{feedback}; {noun}: {row['input']!r}",
         trace={"raw": reply, **trace, "seconds": round(time.monotonic() - started, 3)}, output=reply)
