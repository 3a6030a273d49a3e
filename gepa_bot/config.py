"""`.gepa-bot.yml`: schema, loading, and precise errors (file, field, what to do)."""

from __future__ import annotations

import difflib
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gepa_bot.errors import UserError
from gepa_bot.redact import withheld

DEFAULT_CONFIG_NAME = ".gepa-bot.yml"
LOCAL_MODEL = "local/qwen2.5-coder-1.5b"  # embedded default (gepa_bot/models/localmodel.py)
PROMPTFOO_VERSION = "0.121.20"  # what `npx` runs when no promptfoo is installed (the version gepa-bot tests)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def repo_relative(value: str) -> str:
    """``value`` if it is a path or glob that stays inside the repository (config validators use this)."""
    path = PurePosixPath(value)
    if not value.strip():
        raise ValueError("must not be empty")
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{value!r} escapes the repository: use a path relative to the repo root, without '..'")
    return value


class PromptSpec(Strict):
    """Which files hold prompts and how to read them."""

    path: str = Field(description="glob relative to the repo root, e.g. prompts/**/*.md")
    format: Literal["auto", "text", "frontmatter", "yaml"] = "auto"
    keys: list[str] = Field(default_factory=list, description="dotted keys of prompt strings in YAML files")

    _check_path = field_validator("path")(classmethod(lambda cls, v: repo_relative(v)))

    @model_validator(mode="after")
    def _keys_only_for_yaml(self) -> PromptSpec:
        if self.keys and self.format in ("text", "frontmatter"):
            raise ValueError(f"'keys' only applies to YAML files, but format is {self.format!r}")
        return self


class SplitConfig(Strict):
    """Train/validation split of the suite's instances (the suite's own labels win when present)."""

    val_fraction: float = Field(default=0.5, gt=0, lt=1)
    max_train: int | None = Field(default=None, gt=0)
    max_val: int | None = Field(default=None, gt=0)
    seed: int = 0


class BudgetConfig(Strict):
    """Hard caps: the run stops before crossing any of them."""

    rollouts: int = Field(default=150, gt=0, description="eval-suite calls (one instance x one candidate)")
    max_llm_cost_usd: float | None = Field(default=None, gt=0)
    wall_time_minutes: float | None = Field(default=None, gt=0)


class ModelsConfig(Strict):
    """litellm model strings; `local/qwen2.5-coder-1.5b` (or `local/smollm2-135m`) starts an embedded model."""

    task: str = LOCAL_MODEL
    reflection: str = LOCAL_MODEL
    reflection_max_tokens: int = Field(default=1024, gt=0)
    reflection_temperature: float = Field(default=0.7, ge=0, le=2)


class OptimizerConfig(Strict):
    """GEPA settings."""

    minibatch_size: int = Field(default=3, gt=0)
    merge: bool | Literal["auto"] = "auto"
    max_merge_invocations: int = Field(default=5, ge=0)
    candidate_selection: Literal["pareto", "current_best", "epsilon_greedy", "top_k_pareto"] = "pareto"
    workers: int = Field(default=2, gt=0, le=64)
    seed: int = 0
    reflection_attempts: int = Field(default=2, gt=0, le=5)
    acceptance: Literal["auto", "strict_improvement", "improvement_or_equal"] = Field(
        default="auto", description="when a child scored on its parent's minibatch goes on to the val set: only when "
        "it scores higher, or also on a tie (one-sentence edits tie often on small minibatches); auto: "
        "improvement_or_equal for edit-style reflection, strict_improvement for rewrites")
    reflection_style: Literal["auto", "edit", "rewrite", "mixed"] = Field(
        default="auto", description="edit: one small JSON edit per step (small models); rewrite: the whole prompt "
        "(strong models); mixed: alternate a short rewrite and an edit; auto: mixed for embedded/loopback models, "
        "rewrite for hosted ones")
    warm_start_rewrites: Annotated[int, Field(ge=0, le=50)] | Literal["auto"] = Field(
        default="auto", description="mixed style: the first N proposals are plain rewrites scored on the whole val "
        "set, without the minibatch gate (what a best-of-N search does), before feedback-driven steps; auto: about "
        "40% of the rollout budget; 0 turns it off")
    prefer_shorter_within: int = Field(default=1, ge=0, le=5, description="val instances a longer prompt has to win "
                                       "by: the proposed prompt is the shortest candidate within that many val "
                                       "instances of the best val score, and at least 10% shorter than the best, "
                                       "that still passes the PR checks (0: the best "
                                       "val score, the shorter on a tie). 1 by the bench: one val instance bought by a "
                                       "longer prompt did not hold on test (bench/results)")
    eval_repeats: int = Field(default=1, gt=0, le=10, description="run each eval N times; score = mean, spread reported")
    trim: bool = Field(default=True, description="after the search, try the best prompt without each sentence the "
                       "search added and keep it shorter when the val score does not drop (up to 15% of the "
                       "rollout budget is held back for it, only while the best prompt is longer than the original)")


BRANCH_NAME = re.compile(r"^(?!-|/|.*(?:\.\.|//|@\{|\.lock$|/$|\.$))[^\x00-\x20~^:?*\[\\\x7f]+$")


def _names(value: Any) -> Any:
    """A list field given as one string (an action input): comma- or newline-separated names."""
    if isinstance(value, str):
        return [part.strip() for part in re.split(r"[,\n]", value) if part.strip()]
    return value


def _own_directory(value: str) -> str:
    """A run or cache directory: inside the repository, and never the repository itself (`--fresh` deletes the run
    directory; a directory holding the repo would be copied into every candidate copy, without end)."""
    value = repo_relative(value)
    if not PurePosixPath(value).parts or PurePosixPath(value) == PurePosixPath("."):
        raise ValueError(f"{value!r} is the repository root: use a directory of its own, e.g. .gepa-bot/run")
    return value


class OutputConfig(Strict):
    """Where results go and what the pull request looks like (the action's inputs of the same names override)."""

    run_dir: str = ".gepa-bot/run"
    cache_dir: str = ".gepa-bot/cache"
    pr_title: str = "gepa-bot: optimized prompts"
    labels: list[str] = Field(default_factory=lambda: ["gepa-bot"])
    min_improvement: float = Field(default=0.0, ge=0, description="val gain needed for a PR (+ 2x noise)")
    min_confidence: float = Field(default=0.9, ge=0, lt=1, description="confidence a PR needs from the exact sign test "
                                  "on per-instance val scores (one-sided p <= 1 - this: 0.9 means p <= 0.1); 0 disables")
    variants: int = Field(default=3, ge=0, le=20, description="Pareto candidates shown in the PR body besides "
                          "the best, each in a collapsed section (the full report has them all)")
    draft: bool = Field(default=False, description="open the pull request as a draft")
    reviewers: list[str] = Field(default_factory=list, description="logins asked to review a new pull request")
    team_reviewers: list[str] = Field(default_factory=list, description="team slugs asked to review it")
    assignees: list[str] = Field(default_factory=list, description="logins assigned to a new pull request")
    branch: str | None = Field(default=None, description="the bot's branch (default gepa-bot/<base>)")
    base: str | None = Field(default=None, description="the branch optimized and proposed to (default: the "
                                                       "branch the workflow runs on)")
    delete_branch: bool = Field(default=True, description="delete the bot's branch when no pull request of it "
                                                          "is open any more (never one with commits by others)")

    _check_dirs = field_validator("run_dir", "cache_dir")(classmethod(lambda cls, v: _own_directory(v)))
    _split_names = field_validator("labels", "reviewers", "team_reviewers", "assignees", mode="before")(
        classmethod(lambda cls, v: _names(v)))

    @field_validator("branch", "base")
    @classmethod
    def _branch_name(cls, value: str | None) -> str | None:
        if value is not None and not BRANCH_NAME.match(value.removeprefix("refs/heads/")):
            raise ValueError(f"{value!r} is not a valid git branch name")
        return value.removeprefix("refs/heads/") if value else None


class RayConfig(Strict):
    """The Ray cluster for ``eval.executor: ray`` (install with ``pip install 'gepa-bot[ray]'``)."""

    address: str | None = Field(default=None, description="the head node's GCS host:port (or ray://...); "
                                                          "default: the RAY_ADDRESS environment variable")
    num_cpus: float = Field(default=1.0, ge=0, description="CPUs each eval task reserves (0 for I/O-bound evals)")
    resources: dict[str, float] = Field(default_factory=dict, description="custom resources each task needs, "
                                                                          "e.g. {gpu_node: 1}")
    max_retries: int = Field(default=1, ge=0, le=10, description="Ray's retries of a task whose worker or node "
                                                                 "died; after them the chunk is scored as failed")
    forward_env: list[str] = Field(default_factory=list, description="names of environment variables passed "
                                   "from this run to the evals on the cluster (e.g. the task model's API key); "
                                   "GitHub and runner tokens, the runner's command files ($GITHUB_ENV & co.), "
                                   "RUNNER_TEMP and ACTIONS_* variables are never passed")

    @field_validator("forward_env")
    @classmethod
    def _nothing_withheld(cls, names: list[str]) -> list[str]:
        refused = [name for name in names if withheld(name)]
        if refused:
            raise ValueError(f"{', '.join(refused)} never goes to eval code (a GitHub or runner token, a runner "
                             "command file, RUNNER_TEMP or an ACTIONS_* variable): remove it from the list")
        return names


# ---- eval: one schema per suite type (gepa_bot/evals/registry.py builds the suite from it) ----------------

class SuiteConfigBase(Strict):
    """Fields every ``eval:`` section has, whatever its type."""

    retries: int = Field(default=2, ge=0, le=10, description="times an instance that could not be scored (an eval "
                         "error, crash, timeout, unreachable model) is run again, with backoff, before it counts as an error")
    max_error_rate: float = Field(default=0.05, ge=0.0, lt=1.0, description="share of the instances run that may "
                                  "still error after their retries; above it (or with any error in the baseline) the "
                                  "run stops with exit code 3 and leaves the pull request alone")
    executor: Literal["local", "ray"] = Field(
        default="local", description="where eval batches run: local (threads, optimizer.workers at once) or ray "
        "(each chunk a task on the cluster of ray.address; see docs/scaling.md)")


class CommandSuiteConfig(SuiteConfigBase):
    """The JSONL command protocol (see gepa_bot/evalkit.py)."""

    type: Literal["command"] = "command"
    command: str = Field(min_length=1)
    watch: list[str] = Field(default_factory=list, description="globs whose content changes invalidate the cache")
    instances: str | None = Field(default=None, description="file of ids (JSONL or one per line) instead of list mode")
    timeout: float = Field(default=300.0, gt=0)

    _check_watch = field_validator("watch")(classmethod(lambda cls, v: [repo_relative(p) for p in v]))


class PytestSuiteConfig(SuiteConfigBase):
    """``eval: {type: pytest, args: [tests/evals]}``: one instance per collected pytest test."""

    type: Literal["pytest"]
    args: list[str] = Field(default_factory=list, description="pytest selection and options, e.g. [tests/evals]")
    python: str = Field(default="python", min_length=1, description="interpreter command (a shell fragment)")
    watch: list[str] = Field(default_factory=lambda: ["**/*.py"], description="globs hashed into the cache key")
    timeout: float = Field(default=600, gt=0)

    @field_validator("watch")
    @classmethod
    def _inside_repo(cls, value: list[str]) -> list[str]:
        return [repo_relative(pattern) for pattern in value]


class PromptfooSuiteConfig(SuiteConfigBase):
    """``eval: {type: promptfoo, config: promptfooconfig.yaml}``: the promptfoo CLI scores each test case."""

    type: Literal["promptfoo"]
    config: str = Field(default="promptfooconfig.yaml", description="promptfoo config path relative to the repo")
    command: str | None = Field(default=None, description="how to run promptfoo; default: the repo's "
                                "node_modules/.bin/promptfoo, else `promptfoo` on PATH, else npx --yes "
                                f"promptfoo@{PROMPTFOO_VERSION}")
    providers: Literal["config", "task_model"] = Field(default="config", description="the config's providers, "
                                                       "or gepa-bot's task model (models.task)")
    grader: Literal["config", "task_model"] = Field(default="config", description="who grades llm-rubric and "
                                                    "other model-graded assertions")
    max_concurrency: int = Field(default=1, gt=0, le=64, description="promptfoo's -j, per promptfoo process")
    max_tokens: int = Field(default=256, gt=0, description="with task_model: the answer's (and grader's) token cap")
    timeout: float = Field(default=600, gt=0, description="seconds per promptfoo process (one batch)")
    watch: list[str] = Field(default_factory=list, description="more globs whose content is part of the cache key "
                             "(assertion scripts, data the tests read); the loaded tests always are")

    _inside_repo = field_validator("config")(classmethod(lambda cls, v: repo_relative(v)))
    _check_watch = field_validator("watch")(classmethod(lambda cls, v: [repo_relative(p) for p in v]))


# Every suite type's schema, by its ``type:`` value. Adding a suite type: its schema here, its suite in evals/.
SUITE_CONFIGS = (CommandSuiteConfig, PytestSuiteConfig, PromptfooSuiteConfig)
SuiteConfig = Annotated[Union[CommandSuiteConfig, PytestSuiteConfig, PromptfooSuiteConfig],  # noqa: UP007
                        Field(discriminator="type")]


class Config(Strict):
    """The whole `.gepa-bot.yml`."""

    prompts: list[PromptSpec] = Field(min_length=1)
    eval: SuiteConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_eval_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("eval"), dict) and "type" not in data["eval"]:
            data = {**data, "eval": {"type": "command", **data["eval"]}}
        return data


def load_config(path: Path) -> Config:
    """Read and validate a config file; every problem becomes a UserError naming file and field."""
    if not path.is_file():
        raise UserError(f"{path}: config file not found",
                        fix=f"create {DEFAULT_CONFIG_NAME} at the repo root (see docs/configuration.md) or pass --config")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text", fix="save the config as UTF-8") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the config: {exc.strerror}", fix="check the file's permissions") from None
    try:
        data = yaml.safe_load(text)
    except Exception as exc:  # besides YAMLError, PyYAML raises ValueError (2001-02-30), IndexError ('!!int'), ...
        detail = " ".join(str(getattr(exc, "problem", None) or exc).split()) or type(exc).__name__  # one line
        raise UserError(f"{path}: invalid YAML{_yaml_location(exc)}: {detail}",
                        fix="fix the YAML syntax at that line") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level, got {type(data).__name__}",
                        fix="start the file with keys like 'prompts:' and 'eval:'")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise UserError(_describe_validation_error(path, exc), fix=_fix_hint(exc)) from None


def _yaml_location(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _known_fields() -> set[str]:
    """Every field name of the config schema, all sections and suite types."""
    models: list[type[BaseModel]] = [Config, PromptSpec, *SUITE_CONFIGS, SplitConfig, BudgetConfig, ModelsConfig,
                                     OptimizerConfig, OutputConfig, RayConfig]
    return {name for model in models for name in model.model_fields}


def _ordered(errors: list[Any]) -> list[Any]:
    """Unknown fields first: a typo (`comand:`) also makes the real field look missing."""
    return sorted(errors, key=lambda e: e["type"] != "extra_forbidden")


def _describe_validation_error(path: Path, exc: ValidationError) -> str:
    problems = []
    for error in _ordered(exc.errors()):
        location = _field_path(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(error["loc"][-1]), sorted(_known_fields()), n=1, cutoff=0.75)
            message = f"unknown field (did you mean '{close[0]}'?)" if close else "unknown field (typo?)"
        elif error["type"] == "missing":
            message = "required field is missing"
        problems.append(f"field '{location}': {message}" + _got(error))
    return f"{path}: " + "; ".join(problems)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for position, item in enumerate(loc):
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item in ("command", "pytest", "promptfoo") and position == 1 and loc[0] == "eval":
            continue  # discriminated-union tag, not a field the user wrote
        else:
            text = str(item)
            parts.append(text if text.isprintable() else repr(text))  # keys can hold newlines: stay one line
    return ".".join(parts)


def _got(error: dict[str, Any]) -> str:
    if error["type"] in ("missing", "extra_forbidden") or "input" not in error:
        return ""
    shown = repr(error["input"])
    return f" (got {shown[:80]})"


def _fix_hint(exc: ValidationError) -> str:
    first = _ordered(exc.errors())[0]
    if first["type"] == "extra_forbidden":
        return "remove or rename that field; docs/configuration.md lists every field"
    if first["type"] == "missing":
        return "add the field; docs/configuration.md shows an example"
    if first["type"] == "union_tag_invalid":
        return "set eval.type to one of: command, pytest, promptfoo"
    return "change the value as described; docs/configuration.md documents each field"


OVERRIDABLE = {"budget": ("budget", "rollouts"), "model": ("models", "task"), "reflection_model": ("models", "reflection"),
               "workers": ("optimizer", "workers"), "seed": ("optimizer", "seed"),
               **{name: ("output", name) for name in ("draft", "reviewers", "team_reviewers", "assignees", "labels",
                                                     "branch", "base", "delete_branch")}}


def with_overrides(config: Config, source: str = "command line", **values: Any) -> Config:
    """The config with CLI flags / action inputs applied (None or "" means "not given"); bad values are UserErrors."""
    data = config.model_dump()
    for name, value in values.items():
        if value is not None and value != "":
            section, field_name = OVERRIDABLE[name]
            data[section][field_name] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        given = next(n for n, (sec, f) in OVERRIDABLE.items() if (sec, f) == tuple(error["loc"][:2]))
        raise UserError(f"{source}: {given.replace('_', '-')}: {error['msg']} (got {error.get('input')!r})",
                        fix="pass a valid value") from None
