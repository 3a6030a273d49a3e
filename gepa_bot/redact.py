"""Keeping secrets out of everything gepa-bot writes: run log, cache, result.json, report, PR, comments.

Eval commands inherit the environment (they may need an API key), so their output can echo a key.
Every piece of text that leaves an eval process or an LLM reply passes through :func:`redact`.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

# Where a GitHub token may be: the one list every part of gepa-bot uses (take it, mask it, keep it from evals).
GITHUB_TOKEN_NAMES = ("GEPA_BOT_TOKEN", "INPUT_TOKEN", "GITHUB_TOKEN", "GH_TOKEN")
# The runner's own credentials: an eval never needs them either.
RUNNER_TOKEN_NAMES = ("ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL")
# The runner's command files and its temp directory: an eval that appends to $GITHUB_ENV (BASH_ENV=...),
# $GITHUB_PATH or $GITHUB_OUTPUT would run code in, or feed values to, the job's later steps.
RUNNER_FILE_NAMES = ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY", "RUNNER_TEMP")
# Every variable of these prefixes is the runner's (cache and artifact service URLs and tokens, OIDC).
RUNNER_PREFIXES = ("ACTIONS_",)
# What an eval process never gets, and no config list (ray.forward_env) may forward: see withheld().
WITHHELD_ENV = (*GITHUB_TOKEN_NAMES, *RUNNER_TOKEN_NAMES, *RUNNER_FILE_NAMES)


def withheld(name: str) -> bool:
    """Whether the environment variable ``name`` is kept from eval processes (a token, a runner file, ACTIONS_*)."""
    return name in WITHHELD_ENV or name.startswith(RUNNER_PREFIXES)

SECRET_NAME = re.compile(r"(TOKEN|API_KEY|APIKEY|SECRET|PASSWORD|PRIVATE_KEY|ACCESS_KEY)", re.IGNORECASE)
MIN_SECRET_LENGTH = 6
MASK = "***"


def secret_values(env: Mapping[str, str] | None = None, min_length: int = MIN_SECRET_LENGTH) -> tuple[str, ...]:
    """Values of secret-looking environment variables, longest first (so overlaps redact fully)."""
    env = os.environ if env is None else env
    values = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= min_length}
    return tuple(sorted(values, key=len, reverse=True))


@lru_cache(maxsize=8)
def _pattern(values: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(re.escape(v) for v in values)) if values else None


_run_secrets: list[tuple[str, ...]] = []  # the innermost run's snapshot (see secrets_of_this_run)


@contextlib.contextmanager
def secrets_of_this_run() -> Iterator[tuple[str, ...]]:
    """Scan the environment once for a whole run: inside, ``redact()`` uses that snapshot instead of
    rescanning os.environ on every call (that scan was most of a large run's overhead). A run's environment
    does not change while it runs; eval processes get it as it was at their start."""
    _run_secrets.append(secret_values())
    try:
        yield _run_secrets[-1]
    finally:
        _run_secrets.pop()


def redact(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """``value`` with every secret replaced by ``***`` (strings, and strings inside lists/dicts)."""
    pattern = _pattern(_run_secrets[-1] if env is None and _run_secrets else secret_values(env))
    if pattern is None:
        return value
    return _walk(value, pattern)


def _walk(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(MASK, value)
    if isinstance(value, list):
        return [_walk(v, pattern) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, pattern) for k, v in value.items()}
    return value
