"""The ``promptfoo`` adapter: the real promptfoo CLI scores the candidate, exactly as the user's own CI does.

One instance per test case of the config as written (after promptfoo loads it: inline, `file://` YAML/JSON or
CSV tests), before promptfoo expands array vars into several combinations. Its id is the test's
``description`` (promptfoo's automatic "Row #N" of CSV tests does not count: it moves when a row is added),
else a hash of its vars and assertions, so ids survive edits to other tests.

- Listing: ``promptfoo eval -n 1`` with the `echo` provider and grader (no model call) writes the loaded
  config as JSON; its ``tests`` are the raw test cases.
- Scoring: the selected raw tests (each tagged with its id in ``metadata``) are written next to the
  candidate's config, and ``promptfoo eval -c <config> -t <those tests>`` runs in the candidate's workdir:
  promptfoo's own templating, YAML parsing, ``defaultTest``, ``transform``/``transformVars``, `file://`
  prompts, and every assertion type (``llm-rubric``, ``javascript``, ...). ``--no-cache`` (gepa-bot has its
  own cache), ``-o`` JSON, ``-j max_concurrency``; one promptfoo process per batch.
- Result: score = mean of promptfoo's ``score`` over the test's combinations x prompts x providers; the pass
  verdicts are in the trace; feedback = the reasons of failed assertions (llm-rubric's and javascript's too)
  and the output; an error (provider, assertion) scores 0 with its message.
- Models: the config's own providers and grader by default (what the user's CI runs); ``providers:
  task_model`` / ``grader: task_model`` use gepa-bot's task model instead (the embedded local server through
  promptfoo's OpenAI provider and ``OPENAI_BASE_URL``).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from gepa_bot.evalsuite import (
    EvalSuite,
    Instance,
    InstanceResult,
    SuiteConfigBase,
    SuiteContext,
    SuiteError,
    Workdir,
    describe_process,
    failure,
    hash_files,
    repo_relative,
    run_process,
    truncate,
)

PROMPTFOO_VERSION = "0.121.20"  # what `npx` runs when no promptfoo is installed (the version gepa-bot tests)
TESTS_FILE = ".gepa-bot-promptfoo-tests-{}.json"
ID_KEY = "gepa_bot_id"
AUTO_DESCRIPTION = re.compile(r"^Row #\d+$")
QUIET_ENV = {"PROMPTFOO_DISABLE_TELEMETRY": "1", "PROMPTFOO_DISABLE_UPDATE": "1", "PROMPTFOO_DISABLE_SHARING": "1",
             "PROMPTFOO_DISABLE_REDTEAM_REMOTE_GENERATION": "1", "NO_COLOR": "1"}
PROVIDER_PREFIXES = {"openai": "openai:chat:", "anthropic": "anthropic:messages:"}
OUTPUT_PREVIEW = 300
ERROR_FAILURE = 2  # promptfoo's ResultFailureReason.ERROR (1 = ASSERT)


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

    def build(self, context: SuiteContext) -> PromptfooSuite:
        return PromptfooSuite(context, self)


def promptfoo_command(repo: Path, configured: str | None) -> list[str]:
    """How to start promptfoo: the configured command, the repo's own install, one on PATH, else pinned npx."""
    if configured:
        return shlex.split(configured)
    local = repo / "node_modules" / ".bin" / "promptfoo"
    if local.exists():
        return [str(local)]
    if found := shutil.which("promptfoo"):
        return [found]
    if npx := shutil.which("npx"):
        return [npx, "--yes", f"promptfoo@{PROMPTFOO_VERSION}"]
    raise SuiteError("promptfoo needs Node.js (>= 20.20), and neither `promptfoo` nor `npx` is on PATH: install "
                     "Node.js (in GitHub Actions: actions/setup-node), or set eval.command to your promptfoo")


def instance_id_of(test: dict[str, Any]) -> str:
    """A test's stable id: its description, else a hash of what it checks (vars and assertions)."""
    description = str(test.get("description") or "")
    if description and not AUTO_DESCRIPTION.match(description):
        return description
    digest = hashlib.sha256(json.dumps({"vars": test.get("vars"), "assert": test.get("assert")},
                                       sort_keys=True, default=str).encode()).hexdigest()
    return "t-" + digest[:12]


def provider_id(model: str) -> str:
    """promptfoo's provider id for a litellm model string (openai/... and anthropic/...)."""
    prefix, _, name = model.partition("/")
    if prefix not in PROVIDER_PREFIXES or not name:
        raise SuiteError(f"providers/grader: task_model cannot use {model!r} with promptfoo (openai/... and "
                         "anthropic/... models, and the embedded local/... models, are supported); use the "
                         "config's own providers (providers: config)")
    return PROVIDER_PREFIXES[prefix] + name


class PromptfooSuite(EvalSuite):
    """Runs the promptfoo CLI on the candidate's workdir; see the module docstring."""

    def __init__(self, context: SuiteContext, config: PromptfooSuiteConfig):
        super().__init__(context)
        self.config = config
        self.command = promptfoo_command(context.repo, config.command)
        if not (context.repo / config.config).is_file():
            raise SuiteError(f"eval.config: {config.config} not found in {context.repo}")
        self.tests, self.version = self._load_tests()  # id -> raw test case, in the config's order

    # --- listing ------------------------------------------------------------------------------------

    def list_instances(self) -> list[Instance]:
        return [Instance(id=i) for i in self.tests]

    def fingerprint_parts(self) -> list[str]:
        return ["promptfoo", self.version, self.config.config, self.config.providers, self.config.grader,
                str(self.config.max_tokens),
                json.dumps(self.tests, sort_keys=True, default=str),
                *hash_files(self.context.repo, [self.config.config, *self.config.watch])]

    def _load_tests(self) -> tuple[dict[str, dict[str, Any]], str]:
        """The config's test cases by instance id, and the promptfoo version that loaded them (one Node start)."""
        with tempfile.TemporaryDirectory(prefix="gepa-bot-promptfoo-") as tmp:
            out = Path(tmp) / "list.json"
            self._run(["eval", "-c", self.config.config, "-n", "1", "-r", "echo", "--grader", "echo",
                       *self._quiet_flags(), "-o", str(out)], self.context.repo, timeout=300, tmp=Path(tmp))
            try:
                listing = json.loads(out.read_text(encoding="utf-8"))
                raw = listing["config"]["tests"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise SuiteError(f"promptfoo did not list the tests of {self.config.config} ({exc})") from None
        version = str((listing.get("metadata") or {}).get("promptfooVersion") or "unknown")
        if not isinstance(raw, list) or not raw:
            raise SuiteError(f"{self.config.config}: promptfoo found no test cases; add `tests:` to the config")
        tests: dict[str, dict[str, Any]] = {}
        for test in raw:
            base = instance_id_of(test)
            key, n = base, 2
            while key in tests:  # identical tests: numbered, in order
                key, n = f"{base}#{n}", n + 1
            tests[key] = test
        return tests, version

    # --- scoring ------------------------------------------------------------------------------------

    def evaluate(self, workdir: Workdir, ids: list[str]) -> dict[str, InstanceResult]:
        known = [i for i in ids if i in self.tests]
        results = {i: failure(i, f"no test with id {i} in {self.config.config}") for i in ids if i not in self.tests}
        if not known:
            return results
        config_path = workdir.path / self.config.config
        with tempfile.TemporaryDirectory(prefix="gepa-bot-promptfoo-") as tmp:
            # next to the config (relative file:// paths still resolve); one file per batch: parallel workers share
            # the workdir
            tests_file = config_path.parent / TESTS_FILE.format(secrets.token_hex(6))
            selected = [{**self.tests[i], "metadata": {**(self.tests[i].get("metadata") or {}), ID_KEY: i}}
                        for i in known]
            tests_file.write_text(json.dumps(selected), encoding="utf-8")
            out = Path(tmp) / "out.json"
            try:
                # paths relative to the config's directory: promptfoo labels a file:// prompt by its path as the
                # config names it, which must not carry the candidate's temp workdir into rows and feedback
                self._run(["eval", "-c", config_path.name, "-t", tests_file.name, *self._model_flags(),
                           "-j", str(self.config.max_concurrency), *self._quiet_flags(), "-o", str(out)],
                          config_path.parent, timeout=self.context.clamp(self.config.timeout), tmp=Path(tmp))
                rows = json.loads(out.read_text(encoding="utf-8"))["results"]["results"]
            except (SuiteError, OSError, ValueError, KeyError, TypeError) as exc:
                return {**results, **{i: failure(i, f"promptfoo failed on this batch: {exc}") for i in known}}
            finally:
                tests_file.unlink(missing_ok=True)
        by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_id[str(((row.get("testCase") or {}).get("metadata") or {}).get(ID_KEY, ""))].append(row)
        for i in known:
            results[i] = _instance_result(i, by_id.get(i, []))
        return results

    # --- running promptfoo -------------------------------------------------------------------------

    def _model_flags(self) -> list[str]:
        flags: list[str] = []
        if self.config.providers == "task_model":
            flags += ["-r", provider_id(self._task_model())]
        if self.config.grader == "task_model":
            flags += ["--grader", provider_id(self._task_model())]
        return flags

    def _task_model(self) -> str:
        if not self.context.model:
            raise SuiteError("providers/grader: task_model needs models.task")
        return self.context.model

    @staticmethod
    def _quiet_flags() -> list[str]:
        return ["--no-cache", "--no-write", "--no-table", "--no-progress-bar"]

    def _env(self, tmp: Path | None) -> dict[str, str]:
        env = {**self.context.task_env(), **QUIET_ENV}
        if tmp is not None:
            env["PROMPTFOO_CONFIG_DIR"] = str(tmp / "promptfoo-home")  # no writes to ~/.promptfoo
        if self.config.providers == "task_model" or self.config.grader == "task_model":
            env.update(OPENAI_MAX_TOKENS=str(self.config.max_tokens), OPENAI_TEMPERATURE="0")
            if self.context.api_base:
                env.update(OPENAI_BASE_URL=self.context.api_base, OPENAI_API_KEY=self.context.api_key or "local")
        return env

    def _run(self, args: list[str], cwd: Path, timeout: float, tmp: Path | None = None) -> str:
        """Run promptfoo; its stdout, or SuiteError with what it printed. Exit code 100 = some tests failed."""
        argv = " ".join(shlex.quote(a) for a in [*self.command, *args])
        try:
            output = run_process(argv, cwd, self._env(tmp), "", timeout)
        except (OSError, subprocess.SubprocessError) as exc:
            raise SuiteError(f"promptfoo could not start ({exc}); install Node.js >= 20.20 or set eval.command") \
                from None
        if output.returncode == 127:
            raise SuiteError(f"promptfoo could not start: {output.stderr.strip()[-300:]}; install Node.js >= 20.20 "
                             "(in GitHub Actions: actions/setup-node) or set eval.command")
        if output.timed_out or output.returncode not in (0, 100):
            raise SuiteError(f"`{argv}` failed: {describe_process(output, timeout)}")
        return output.stdout


def _instance_result(instance_id: str, rows: list[dict[str, Any]]) -> InstanceResult:
    if not rows:
        return failure(instance_id, "promptfoo returned no result for this test")
    scores = [float(r.get("score") or 0.0) for r in rows]
    sections = [_section(r, many=len(rows) > 1) for r in rows]
    trace = [{"prompt": (r.get("prompt") or {}).get("label"), "provider": (r.get("provider") or {}).get("id"),
              "vars": r.get("vars"), "score": r.get("score"), "pass": bool(r.get("success")),
              "error": r.get("error") if _is_error(r) else None} for r in rows]
    outputs = [_output(r) for r in rows]
    return InstanceResult(id=instance_id, score=sum(scores) / len(scores), feedback=truncate("\n".join(sections)),
                          trace=trace, output=outputs[0] if len(outputs) == 1 else json.dumps(outputs),
                          failed=all(_is_error(r) for r in rows))


def _is_error(row: dict[str, Any]) -> bool:
    """promptfoo's failureReason 2: the provider or an assertion crashed (1 is a plain failed assertion)."""
    return row.get("failureReason") == ERROR_FAILURE


def _output(row: dict[str, Any]) -> str:
    output = (row.get("response") or {}).get("output")
    return output if isinstance(output, str) else json.dumps(output)


def _section(row: dict[str, Any], many: bool) -> str:
    head = []
    if many:
        head.append(f"[prompt {(row.get('prompt') or {}).get('label', '?')} · {(row.get('provider') or {}).get('id', '?')}"
                    f" · vars {truncate(json.dumps(row.get('vars'), default=str), 200)}]")
    grading = row.get("gradingResult") or {}
    verdict = "PASS" if row.get("success") else "FAIL"
    if _is_error(row) and not grading.get("componentResults"):
        return "\n".join([*head, f"ERROR: {truncate(str(row['error']), 800)}"])
    lines = [*head, f"{verdict}: score {float(row.get('score') or 0):.2f}"]
    for part in grading.get("componentResults") or []:
        if not part.get("pass"):
            kind = (part.get("assertion") or {}).get("type", "?")
            lines.append(f"- [{kind}] {truncate(str(part.get('reason') or 'failed'), 600)}")
    if not grading.get("componentResults") and grading.get("reason") and not row.get("success"):
        lines.append(f"- {truncate(str(grading['reason']), 600)}")
    lines.append(f"output: {truncate(_output(row), OUTPUT_PREVIEW)}")
    return "\n".join(lines)
