"""The run result (result.json) as a typed model: what the engine writes and the report, CLI, Action and bench read.

result.json is :class:`RunResult` serialized; it is only written by :meth:`RunResult.write` and read by
:meth:`RunResult.read`. A result.json of an earlier gepa-bot release (``version: 1``) is migrated on reading;
anything else that is not a result of this version is a one-line :class:`~gepa_bot.errors.UserError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gepa_bot.config import OutputConfig
from gepa_bot.errors import UserError

RESULT_NAME = "result.json"
RESULT_VERSION: Final = 2  # 1: gepa-bot before the typed result (same keys; some added along the way)
DEFAULT_MIN_CONFIDENCE: float = OutputConfig.model_fields["min_confidence"].default  # a version-1 file without it
DEFAULT_VARIANTS: int = OutputConfig.model_fields["variants"].default
# budget.stop_reason when the search stopped early for want of failures (the report explains it)
NOTHING_TO_REFLECT_ON = "every candidate scores 1 on every train instance: no failure left to reflect on"
STALLED_AFTER = 12
"""Reflections in a row that proposed nothing new (every reply refused, or an earlier candidate again) that end the
search: the afinn bench's reflector (1.5B) spent 23 minutes and 110 refused replies on one unchanged seed."""
REFLECTION_STALLED = (f"the last {STALLED_AFTER} reflections in a row proposed nothing new: every reply was refused "
                      "or repeated an earlier candidate")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ComponentInfo(_Model):
    """One optimized prompt: its name, the file it lives in, and (for a key in a structured file) the key."""

    name: str
    path: str
    kind: str
    key: str | None = None


class Split(_Model):
    train: list[str]
    val: list[str]


class InstanceScore(_Model):
    """One val instance's result for a candidate; ``stdev``: spread over eval repeats (0: one repeat)."""

    score: float
    feedback: str
    failed: bool = False
    stdev: float = 0.0


class Candidate(_Model):
    """One candidate of the search (index 0 is the seed: the prompts as they are)."""

    index: int
    hash: str
    components: dict[str, str]
    parents: list[int]
    origin: Literal["seed", "reflection", "merge", "trim"]
    rationale: dict[str, str] = Field(default_factory=dict)  # component -> why it changed
    motivated_by: dict[str, list[str]] = Field(default_factory=dict)  # component -> failure ids behind the change
    move: dict[str, str] = Field(default_factory=dict)  # component -> kind of reflection step
    val_mean: float
    val: dict[str, InstanceScore | None]  # None: not scored on that instance
    discovered_at_rollout: int
    # trim candidates: how many val instances they were scored on (the others are not written)
    val_scored: int | None = Field(default=None, exclude_if=lambda v: v is None)


class RejectedProposal(_Model):
    """A reflection reply turned down before any rollout was spent on it."""

    component: str
    attempt: str
    reason: str
    reply_excerpt: str


class BudgetCounts(Protocol):
    """What :meth:`BudgetSummary.of` reads of the search's budget (gepa_bot/search/budget.py: Budget)."""

    rollouts: int
    cache_hits: int

    def to_json(self) -> dict[str, object]: ...


class BudgetSummary(_Model):
    """gepa_bot.search.budget.Budget.to_json() and the cache hit rate."""

    rollouts_limit: int
    rollouts_used: int
    rollouts_executed: int
    cache_hits: int
    repeats_in_batch: int = 0
    llm_calls: int
    llm_calls_replayed: int
    prompt_tokens: int
    completion_tokens: int
    llm_cost_usd: float
    max_llm_cost_usd: float | None
    wall_time_s: float
    eval_time_s: float
    llm_time_s: float
    overhead_share: float
    stop_reason: str | None
    cache_hit_rate: float

    @classmethod
    def of(cls, budget: BudgetCounts) -> BudgetSummary:
        rate = round(budget.cache_hits / budget.rollouts, 4) if budget.rollouts else 0.0
        return cls.model_validate({**budget.to_json(), "cache_hit_rate": rate})


class Models(_Model):
    """The config's models section as the run used it."""

    task: str
    reflection: str
    reflection_max_tokens: int
    reflection_temperature: float


class SearchError(_Model):
    """An internal error inside the search (a bug, not bad input), secrets masked (errors.describe_error)."""

    where: str
    type: str
    message: str


class RunResult(_Model):
    """Everything the report and the PR need; result.json is its serialization."""

    version: Literal[2] = RESULT_VERSION
    components: list[ComponentInfo]
    split: Split
    candidates: list[Candidate]
    pareto_front: list[int]
    best_candidate: int
    baseline_candidate: int = 0
    best_files: dict[str, str]  # repo-relative path -> full text with the best candidate's prompts
    rejected_proposals: list[RejectedProposal] = Field(default_factory=list)
    reflection_style: str | None
    eval_repeats: int
    budget: BudgetSummary
    models: Models
    seed: int
    min_improvement: float
    min_confidence: float
    search_errors: list[SearchError] = Field(default_factory=list)
    variants: int = DEFAULT_VARIANTS  # output.variants: Pareto candidates the PR body shows besides the best

    @property
    def best(self) -> Candidate:
        return self.candidates[self.best_candidate]

    @property
    def baseline(self) -> Candidate:
        return self.candidates[self.baseline_candidate]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False)

    def write(self, run_dir: Path) -> Path:
        """Write ``run_dir/result.json``; returns its path."""
        path = run_dir / RESULT_NAME
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> RunResult:
        """A result.json (or the run dir that holds one): migrated from version 1, else a one-line UserError."""
        path = path / RESULT_NAME if path.is_dir() else path
        rerun = "run `gepa-bot optimize` again with this --run-dir to write it anew (add --fresh if the run dir is " \
                "not a gepa-bot run)"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path}: no result.json", fix="run `gepa-bot optimize` first (same --run-dir)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: not a readable gepa-bot result ({_first_line(exc)})", fix=rerun) from None
        if not isinstance(data, dict) or "version" not in data:
            raise UserError(f"{path}: not a gepa-bot result (no 'version' field)", fix=rerun)
        version = data["version"]
        if version == 1:
            data = migrate_v1(data)
        elif version != RESULT_VERSION:
            newer = isinstance(version, int) and version > RESULT_VERSION
            raise UserError(f"{path}: result version {version!r}; this gepa-bot reads versions 1 and {RESULT_VERSION}",
                            fix="upgrade gepa-bot to the release that wrote it" if newer else rerun)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise UserError(f"{path}: not a valid gepa-bot result (version {version}): {describe(exc)}",
                            fix=rerun) from None


def migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 result.json (earlier releases) as version 2: the keys added over time get the values the report
    used for a file without them."""
    out = {**data, "version": RESULT_VERSION}
    out.setdefault("reflection_style", None)
    out.setdefault("eval_repeats", 1)
    out.setdefault("seed", 0)
    out.setdefault("min_improvement", 0.0)
    out.setdefault("min_confidence", DEFAULT_MIN_CONFIDENCE)
    out.setdefault("search_errors", [])
    if isinstance(out.get("rejected_proposals"), list):
        out["rejected_proposals"] = [
            {"component": "", "reply_excerpt": "", **entry, "attempt": str(entry.get("attempt", "")), "reason":
             str(entry.get("reason", ""))} if isinstance(entry, dict) else entry for entry in out["rejected_proposals"]]
    return out


def describe(exc: ValidationError, shown: int = 3) -> str:
    """The first few problems of a ValidationError on one line: ``candidates.0.val_mean: Input should be ...``."""
    problems = [f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors()[:shown]]
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


class Evaluation(_Model):
    """The current prompts scored on the val set (``evaluate_current``: a `/gepa evaluate` comment)."""

    val_mean: float
    val: dict[str, InstanceScore]
    budget: BudgetSummary
