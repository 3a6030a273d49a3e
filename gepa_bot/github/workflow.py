"""The GitHub Actions runner's I/O: inputs, masks, workflow commands, step outputs and the job summary.

Everything that crosses into the runner's log goes through here: secrets are masked first (every line
of a multi-line secret), untrusted text is printed between `::stop-commands::` markers, and one-line
messages cannot start a workflow command (gepa_bot/escaping.py's :func:`~gepa_bot.escaping.log_line`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gepa_bot.config import DEFAULT_CONFIG_NAME
from gepa_bot.escaping import log_line  # (artifact.py imports it from here too)
from gepa_bot.redact import secret_values
from gepa_bot.text import STEP_SUMMARY_CUT_NOTE, STEP_SUMMARY_LIMIT, truncate_bytes


@dataclass
class Outputs:
    """The action's outputs (see action.yml)."""

    values: dict[str, str] = field(default_factory=lambda: {
        "pull-request-number": "", "pull-request-url": "", "pull-request-operation": "none",
        "pull-request-branch": "", "pull-request-head-sha": "",
        "best-score": "", "baseline-score": "", "rollouts-used": "0"})


def env_input(env: Mapping[str, str], name: str, default: str = "") -> str:
    """An action input: GEPA_BOT_<NAME> (composite mapping) or INPUT_<NAME> (docker actions, where GitHub keeps
    the hyphen: INPUT_REFLECTION-MODEL)."""
    key = name.upper()
    for variable in (f"GEPA_BOT_{key.replace('-', '_')}", f"INPUT_{key}", f"INPUT_{key.replace('-', '_')}"):
        if env.get(variable):
            return env[variable]
    return default


@dataclass(frozen=True)
class Inputs:
    """The action's inputs (action.yml), read once from the environment."""

    token: str = ""
    config: str = DEFAULT_CONFIG_NAME
    budget: str = ""
    model: str = ""
    reflection_model: str = ""
    pull_request: dict[str, str] = field(default_factory=dict)  # PULL_REQUEST_INPUTS given (config overrides)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Inputs:
        given = {name.replace("-", "_"): value for name in PULL_REQUEST_INPUTS if (value := env_input(env, name))}
        return cls(token=env_input(env, "token") or env.get("GITHUB_TOKEN", ""),
                   config=env_input(env, "config", DEFAULT_CONFIG_NAME), budget=env_input(env, "budget"),
                   model=env_input(env, "model"), reflection_model=env_input(env, "reflection-model"),
                   pull_request=given)


# inputs that override `output:` fields of .gepa-bot.yml (lists: comma- or newline-separated)
PULL_REQUEST_INPUTS = ("draft", "reviewers", "team-reviewers", "assignees", "labels", "branch", "base", "delete-branch")


def mask_secrets(env: Mapping[str, str], emit: Callable[[str], None]) -> None:
    """Ask the runner to mask every secret-looking value we can see (shorter ones too: masking is cheap)."""
    for value in secret_values(env, min_length=4):
        for line in value.splitlines():  # a workflow command is one line: mask each line of a PEM key on its own
            if len(line.strip()) >= 4:
                emit(f"::add-mask::{line}")


def print_untrusted(text: str, emit: Callable[[str], None]) -> None:
    """Print text we do not control so the runner ignores any workflow commands inside it."""
    marker = secrets.token_hex(16)
    emit(f"::stop-commands::{marker}")
    emit(text)
    emit(f"::{marker}::")


def command_data(text: str, limit: int) -> str:
    """Text as the data of a one-line workflow command (`::error::<data>`), with the runner's `%` escape."""
    return log_line(text, limit).replace("%", "%25")


def write_outputs(env: Mapping[str, str], outputs: Outputs, summary: str) -> None:
    if env.get("GITHUB_OUTPUT"):
        with open(env["GITHUB_OUTPUT"], "a", encoding="utf-8") as handle:
            for name, value in outputs.values.items():
                handle.write(f"{name}={value}\n")
    if env.get("GITHUB_STEP_SUMMARY") and summary:
        with open(env["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as handle:
            handle.write(fit_summary(summary))


def fit_summary(summary: str, limit: int = STEP_SUMMARY_LIMIT) -> str:
    """``summary`` and a final newline in at most ``limit`` UTF-8 bytes (cut on a character, with a note)."""
    return truncate_bytes(summary + "\n", limit, STEP_SUMMARY_CUT_NOTE)
