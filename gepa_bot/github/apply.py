"""`/gepa apply N`: switch the bot's pull request to another candidate of the last run, with no eval re-run.

The run's choices travel in the PR body itself: an HTML comment ``<!-- gepa-bot:choices=<base64> -->`` holding the
zlib-compressed JSON of the best candidate's and the shown variants' prompt texts, their val scores, the base
branch and the base commit they were scored on (:func:`embed`, size-capped so the body still fits GitHub's limit).
A fresh job with no local state reads it back (:func:`decode`), so nothing depends on artifact retention.

The body is data to validate, never to trust: a writer can edit it. :func:`apply_command` checks that the base
branch still points at the recorded commit (else: a reply, nothing changes), renders the candidate's files the
way discovery reads the base commit, and validates them as publish validates an artifact (configured prompt
paths only, placeholders kept, nothing outside the prompts changed). The branch is then rebuilt on that commit
(an unchanged proposal pushes nothing: idempotent), and the body marks the applied candidate.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gepa_bot.config import load_config
from gepa_bot.discovery import discover, render_files
from gepa_bot.errors import UserError
from gepa_bot.escaping import untrusted
from gepa_bot.github import rest
from gepa_bot.github.action_context import Context, repository
from gepa_bot.github.artifact import check_files
from gepa_bot.github.git import BRANCH_PREFIX, ForeignCommits, checkout_branch, publish_branch
from gepa_bot.github.trigger import Plan
from gepa_bot.report.variants import pick
from gepa_bot.result import RunResult
from gepa_bot.text import fit_body

MAX_EMBED = 24_000  # characters of the body the choices may take (the report gets the rest)
MAX_DECODED = 4 * 1024 * 1024
CHOICES = re.compile(r"<!-- gepa-bot:choices=([A-Za-z0-9+/=]+) -->")
APPLIED = re.compile(r"<!-- gepa-bot:applied -->.*?<!-- /gepa-bot:applied -->\n", re.DOTALL)


class Choice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    val_mean: float
    texts: dict[str, str]  # component name -> prompt text


class Choices(BaseModel):
    """What `/gepa apply` needs of a run: the candidates' texts, and the base they were scored on."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    base: str
    base_sha: str = Field(pattern=r"^[0-9a-f]{40}$")
    best: int
    candidates: dict[int, Choice]


def _encode(choices: Choices) -> str:
    data = zlib.compress(choices.model_dump_json().encode("utf-8"), 9)
    return f"\n<!-- gepa-bot:choices={base64.b64encode(data).decode('ascii')} -->\n"


def embed(result: RunResult, base: str, base_sha: str, limit: int = MAX_EMBED) -> str:
    """The hidden comment with the best candidate and the variants the body shows, as many as fit ``limit``
    (best first, then the variants in the body's order); "" when not even the best fits."""
    choices = Choices(base=base, base_sha=base_sha, best=result.best_candidate, candidates={})
    text = ""
    for candidate in [result.best, *pick(result, result.variants)]:
        choices.candidates[candidate.index] = Choice(val_mean=candidate.val_mean, texts=candidate.components)
        encoded = _encode(choices)
        if len(encoded) > limit:
            break
        text = encoded
    return text


def decode(body: str) -> Choices | None:
    """The choices embedded in a PR body (the last such comment), or None when there are none or they are bad."""
    found = CHOICES.findall(body or "")
    if not found:
        return None
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(base64.b64decode(found[-1], validate=True), MAX_DECODED)
        if inflater.unconsumed_tail or not inflater.eof:
            return None
        return Choices.model_validate(json.loads(data))
    except (binascii.Error, zlib.error, ValueError, ValidationError):
        return None


def applied_body(body: str, marker: str, index: int, choices: Choices) -> str:
    """The PR body with its proposal marker (first line) for the applied files and a note naming the candidate
    (none when it is the best, which the report describes)."""
    lines = APPLIED.sub("", body).split("\n", 1)
    rest = lines[1] if len(lines) > 1 and lines[0].startswith("<!-- gepa-bot:proposal=") else APPLIED.sub("", body)
    note = ""
    if index != choices.best:
        note = (f"<!-- gepa-bot:applied -->\n> [!NOTE]\n> Applied with `/gepa apply {index}`: this branch holds variant "
                f"#{index} (validation {choices.candidates[index].val_mean:.3f}), not the best candidate "
                f"#{choices.best} ({choices.candidates[choices.best].val_mean:.3f}) that the report below describes. "
                "`/gepa apply best` goes back to it.\n\n<!-- /gepa-bot:applied -->\n")
    return f"{marker}\n{note}{rest}"


def apply_command(ctx: Context, plan: Plan) -> str:
    """Switch the bot's PR ``plan.pr_number`` to ``plan.candidate`` (a number or ``best``); returns the job summary.

    Runs in the publish phase (the token, write permissions, no eval). Every refusal is a reply and changes nothing.
    """
    assert plan.pr_number is not None and plan.candidate is not None
    repo, number, candidate = repository(ctx), plan.pr_number, plan.candidate
    pr = rest.get_pull(repo, number)

    def reply(text: str) -> None:
        rest.post_comment(repo, number, text)

    def refuse(why: str) -> str:
        reply(f"gepa-bot: {why}; nothing was changed.")
        return f"`/gepa apply {candidate}` refused: {why}"

    if not (pr.head.ref.startswith(BRANCH_PREFIX) or pr.head.ref == ctx.config.output.branch):
        return refuse("`/gepa apply` works on gepa-bot's own pull request, not on this one")
    if pr.state != "open":
        return refuse("this pull request is closed; `/gepa optimize` proposes anew")
    choices = decode(pr.body or "")
    if choices is None:
        return refuse("this pull request's body carries no candidates to choose from (it predates `/gepa apply`, "
                      "or its data was edited); `/gepa optimize` proposes anew")
    index = choices.best if candidate == "best" else int(candidate)
    if index not in choices.candidates:
        shown = ", ".join(f"{i}" for i in sorted(choices.candidates))
        return refuse(f"candidate {index} is not one of this pull request's choices (candidates {shown}, or `best`)")
    if choices.base != pr.base.ref:
        return refuse(f"the choices were made for the base `{untrusted(choices.base, 100)}`, not this pull request's "
                      f"base `{untrusted(pr.base.ref, 100)}`")
    sha = checkout_branch(ctx.workspace, ctx.remote_url, ctx.token, pr.base.ref)
    if sha != choices.base_sha:
        return refuse(f"the base `{untrusted(pr.base.ref, 100)}` moved on since this run ({choices.base_sha[:12]} → "
                      f"{sha[:12]}): its scores may not hold there. `/gepa optimize` runs again on the new base")
    try:
        config = load_config(ctx.config_path)
        config_rel = ctx.config_path.relative_to(ctx.workspace)
        components = discover(ctx.workspace, config, config_rel)
        texts = choices.candidates[index].texts
        unknown = sorted(set(texts) - {c.name for c in components})
        if unknown:
            raise UserError(f"the candidate has texts for prompts the base does not configure: {', '.join(unknown)}")
        files = render_files(components, {c.name: texts.get(c.name, c.text) for c in components})
        check_files(files, config, ctx.workspace, config_rel)
    except UserError as exc:
        return refuse(f"candidate {index} does not validate against the base: {untrusted(exc.message, 600)}")
    before, old_body = pr.head.sha, pr.body or ""
    try:
        publish_branch(ctx.workspace, pr.base.ref, files, f"gepa-bot: apply candidate #{index} (/gepa apply)",
                          ctx.remote_url, ctx.token, branch=pr.head.ref, base_sha=sha)
    except ForeignCommits as exc:  # a human's commits on the bot's branch are never overwritten
        return refuse(untrusted(str(exc), 700))
    body = fit_body(applied_body(old_body, rest.proposal_marker(files), index, choices))
    rest.set_body(pr, body)
    score = choices.candidates[index].val_mean
    if pr.head.sha == before and body == old_body:
        reply(f"gepa-bot: this pull request already holds candidate #{index} (validation {score:.3f}); nothing to do.")
    else:
        reply(f"gepa-bot: switched this pull request to candidate #{index} (validation {score:.3f}, scored on "
              f"`{sha[:12]}`); no eval was re-run.")
    return f"`/gepa apply {candidate}`: the pull request holds candidate #{index} (validation {score:.3f})"
