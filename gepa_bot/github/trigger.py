"""Deciding what a GitHub event asks for: pure functions of the event, the config and the comment text.

``plan_for`` turns push / schedule / workflow_dispatch / issue_comment events into a ``Plan`` (optimize,
evaluate, stop, skip or invalid, with the reason); ``parse_command`` reads `/gepa ...` comments. Nothing
here touches the network, the workspace or the environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

from gepa_bot.config import Config
from gepa_bot.discovery import glob_matches
from gepa_bot.escaping import untrusted
from gepa_bot.github.git import BRANCH_PREFIX

COMMAND = re.compile(r"^\s*/gepa\s+(?P<verb>optimize|evaluate|stop|apply)\b(?P<args>[^\n]*)", re.IGNORECASE)
MAX_COMMENT_BUDGET = 5000


Verb = Literal["optimize", "evaluate", "stop", "apply", "skip", "invalid"]


@dataclass(frozen=True)
class Plan:
    """What this run will do, and why. Frozen: a phase that learns more (the base, the bot's branch) makes a new
    plan with :func:`dataclasses.replace`."""

    verb: Verb
    reason: str
    budget: int | None = None
    files: str | None = None
    pr_number: int | None = None
    comment_id: int | None = None
    commenter: str | None = None
    base: str | None = None  # the branch optimized and proposed to
    head: str | None = None  # the bot's branch for it
    candidate: str | None = None  # `/gepa apply N`: N, or "best"


def parse_command(body: str) -> Plan | None:
    """`/gepa optimize [budget=N] [files=glob]`, `/gepa evaluate`, `/gepa stop`, `/gepa apply N|best`; None if not
    a command."""
    match = COMMAND.match(body or "")
    if not match:
        return None
    verb = cast(Verb, match["verb"].lower())  # one of COMMAND's verbs
    if verb == "apply":
        args = match["args"].split()
        if len(args) != 1 or not (args[0].lower() == "best" or (args[0].isdigit() and len(args[0]) <= 6)):
            return Plan(verb="invalid", reason="use `/gepa apply N` (a candidate number shown in the pull request) "
                                               "or `/gepa apply best`")
        return Plan(verb=verb, reason="comment command", candidate=args[0].lower())
    budget, files = None, None
    for token in match["args"].split():
        name, _, value = token.partition("=")
        if name == "budget" and value.isdigit() and 0 < int(value) <= MAX_COMMENT_BUDGET:
            budget = int(value)
        elif name == "files" and value and ".." not in value and not value.startswith("/"):
            files = value
        else:
            return Plan(verb="invalid", reason=f"cannot understand `{untrusted(token, 60)}`: use budget=N "
                                               f"(1-{MAX_COMMENT_BUDGET}) or files=<glob inside the repo>")
    return Plan(verb=verb, reason="comment command", budget=budget, files=files)


def changed_paths(push_event: Mapping[str, Any]) -> set[str]:
    """Files added, modified or removed by the commits of a push event."""
    paths: set[str] = set()
    for commit in push_event.get("commits") or []:
        for key in ("added", "modified", "removed"):
            paths.update(commit.get(key) or [])
    return paths


def relevant_patterns(config: Config, config_rel: str) -> list[str]:
    """Globs whose change should trigger an optimization: prompts, eval files, the config itself."""
    patterns = [spec.path for spec in config.prompts] + [config_rel]
    patterns += list(getattr(config.eval, "watch", []) or [])
    return patterns


def plan_for(event_name: str, event: Mapping[str, Any], config: Config, config_rel: str) -> Plan:
    """Decide what to do for a GitHub event."""
    if event_name == "schedule":
        return Plan(verb="optimize", reason="nightly schedule")
    if event_name == "workflow_dispatch":
        inputs = event.get("inputs") or {}
        budget = str(inputs.get("budget") or "").strip()
        return Plan(verb="optimize", reason="manual dispatch", budget=int(budget) if budget.isdigit() else None,
                    files=inputs.get("files") or None)
    if event_name == "push":
        ref = str(event.get("ref", ""))
        if ref.startswith(f"refs/heads/{BRANCH_PREFIX}") or (
                config.output.branch and ref == f"refs/heads/{config.output.branch}"):
            return Plan(verb="skip", reason="push to gepa-bot's own branch")
        changed = changed_paths(event)
        hits = sorted(p for p in changed if any(glob_matches(p, g) for g in relevant_patterns(config, config_rel)))
        if not hits:
            return Plan(verb="skip", reason="the push changed no prompt, eval or config file")
        return Plan(verb="optimize", reason=f"push changed {', '.join(hits[:5])}")
    if event_name == "issue_comment":
        return _plan_for_comment(event)
    return Plan(verb="skip", reason=f"event {event_name!r} is not handled (use push, schedule, workflow_dispatch "
                                    "or issue_comment)")


def _plan_for_comment(event: Mapping[str, Any]) -> Plan:
    if event.get("action") != "created":
        return Plan(verb="skip", reason="only new comments are commands")
    issue, comment = event.get("issue") or {}, event.get("comment") or {}
    plan = parse_command(comment.get("body", ""))
    if plan is None:
        return Plan(verb="skip", reason="the comment is not a /gepa command")
    if not issue.get("pull_request"):
        return Plan(verb="skip", reason="/gepa commands work on pull requests only")
    if (comment.get("user") or {}).get("type") == "Bot":
        return Plan(verb="skip", reason="comments from bots are ignored")
    return replace(plan, pr_number=issue.get("number"), comment_id=comment.get("id"),
                   commenter=(comment.get("user") or {}).get("login"))
