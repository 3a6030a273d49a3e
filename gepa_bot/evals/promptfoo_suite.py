"""The ``promptfoo`` adapter: the real promptfoo CLI scores the candidate, exactly as the user's own CI does.

One instance per test case of the config as written (after promptfoo loads it: inline, `file://` YAML/JSON or
CSV tests), before promptfoo expands array vars into several combinations. Its id is the test's
``description`` (promptfoo's automatic "Row #N" of CSV tests does not count: it moves when a row is added),
else a hash of its vars and assertions, so ids survive edits to other tests.

- Listing: ``promptfoo eval -n 1`` with the `echo` provider and grader (no model call) writes the loaded
  config as JSON; its ``tests`` are the raw test cases. promptfoo keeps the `file://` entries of a ``tests:``
  list as paths there: gepa_bot/evals/promptfoo_tests.py reads them (YAML/JSON/JSONL files here, others
  through promptfoo). Every problem is a one-line SuiteError ending in ``Fix: ...``.
- Scoring: the selected raw tests (each tagged with its id in ``metadata``) are written next to the
  candidate's config, and ``promptfoo eval -c <config> -t <those tests>`` runs in the candidate's workdir:
  promptfoo's own templating, YAML parsing, ``defaultTest``, ``transform``/``transformVars``, `file://`
  prompts, and every assertion type (``llm-rubric``, ``javascript``, ...). ``--no-cache`` (gepa-bot has its
  own cache), ``-o`` JSON, ``-j max_concurrency``; one promptfoo process per batch.
- Result: score = mean of promptfoo's ``score`` over the test's combinations x prompts x providers; the pass
  verdicts are in the trace; feedback = the reasons of failed assertions (llm-rubric's and javascript's too)
  and the output. A row promptfoo could not score (failureReason 2: the provider or the grading crashed; or a
  grader that failed, ``metadata.graderError``) makes the test an error (``failed``), never a score.
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
from typing import Any

from gepa_bot.config import PROMPTFOO_VERSION, PromptfooSuiteConfig
from gepa_bot.evals.promptfoo_tests import expand_tests, setup_error
from gepa_bot.evals.suite import (
    EvalSuite,
    Instance,
    InstanceResult,
    ProcessOutput,
    SuiteContext,
    SuiteError,
    Workdir,
    describe_process,
    excerpt,
    failure,
    hash_files,
    run_process,
)

TESTS_FILE = ".gepa-bot-promptfoo-tests-{}.json"
ID_KEY = "gepa_bot_id"
AUTO_DESCRIPTION = re.compile(r"^Row #\d+$")
QUIET_ENV = {"PROMPTFOO_DISABLE_TELEMETRY": "1", "PROMPTFOO_DISABLE_UPDATE": "1", "PROMPTFOO_DISABLE_SHARING": "1",
             "PROMPTFOO_DISABLE_REDTEAM_REMOTE_GENERATION": "1", "NO_COLOR": "1"}
PROVIDER_PREFIXES = {"openai": "openai:chat:", "anthropic": "anthropic:messages:"}
OUTPUT_PREVIEW = 300
ERROR_FAILURE = 2  # promptfoo's ResultFailureReason.ERROR (1 = ASSERT)
ERROR_LINE = re.compile(r"^\s*\w*(?:Error|Exception)(?: \[\w+\])?: \S")  # YAMLException: ..., Error [ERR_X]: ...
NODE_FIX = "install Node.js >= 20.20 (in GitHub Actions: actions/setup-node) or set eval.command to your promptfoo"


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
    raise setup_error("promptfoo needs Node.js (>= 20.20), and neither `promptfoo` nor `npx` is on PATH", NODE_FIX)


class PromptfooFailed(SuiteError):
    """promptfoo ran and failed: ``summary`` is its error in one line, ``str()`` the whole account."""

    def __init__(self, argv: str, output: ProcessOutput, timeout: float):
        self.summary = error_summary(output, timeout)
        super().__init__(f"`{argv}` failed: {self.summary}\n{describe_process(output, timeout)}")


def error_summary(output: ProcessOutput, timeout: float) -> str:
    """promptfoo's own error line (Node prints the exception's ``Name: message`` under a source excerpt)."""
    if output.timed_out:
        return f"timed out after {timeout:g}s"
    for text in (output.stderr, output.stdout):
        for line in text.splitlines():
            if ERROR_LINE.match(line):
                return excerpt(" ".join(line.split()), 300)
    lines = [line.strip() for line in (output.stderr + "\n" + output.stdout).splitlines() if line.strip()]
    return excerpt(lines[-1], 300) if lines else f"exit code {output.returncode}"


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
        raise setup_error(f"providers/grader: task_model cannot use {model!r} with promptfoo (openai/... and "
                          "anthropic/... models, and the embedded local/... models, are supported)",
                          "use the config's own providers (providers: config, grader: config), or another models.task")
    return PROVIDER_PREFIXES[prefix] + name


class PromptfooSuite(EvalSuite):
    """Runs the promptfoo CLI on the candidate's workdir; see the module docstring."""

    def __init__(self, context: SuiteContext, config: PromptfooSuiteConfig):
        super().__init__(context)
        self.config = config
        self.command = promptfoo_command(context.repo, config.command)
        if not (context.repo / config.config).is_file():
            raise setup_error(f"eval.config: {config.config} not found in {context.repo}",
                              "set eval.config to your promptfoo config's path, relative to the repo root")
        self._model_flags()  # a task model promptfoo cannot call fails here, not on every batch
        try:
            self.tests, self.version = self._load_tests()  # id -> raw test case, in the config's order
        except SuiteError:
            raise
        except Exception as exc:  # anything else promptfoo's output or the test files hold: still one clear line
            raise setup_error(f"{config.config}: listing its tests failed ({type(exc).__name__}: {exc})",
                              f"run `promptfoo eval -c {config.config}` by hand and fix what it reports") from None

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
        listing = self._listing(self.context.repo, self.config.config)
        version = str((listing.get("metadata") or {}).get("promptfooVersion") or "unknown")
        tests = expand_tests(listing["config"].get("tests"), self.context.repo, self.config.config, self._listing)
        if not tests:
            raise setup_error(f"{self.config.config}: promptfoo found no test cases",
                              "add `tests:` to the config (inline tests, or file:// paths to test files)")
        by_id: dict[str, dict[str, Any]] = {}
        for test in tests:
            base = instance_id_of(test)
            key, n = base, 2
            while key in by_id:  # identical tests: numbered, in order
                key, n = f"{base}#{n}", n + 1
            by_id[key] = test
        return by_id, version

    def _listing(self, cwd: Path, config: str, what: str = "") -> dict[str, Any]:
        """``promptfoo eval -n 1`` with the echo provider and grader (no model call): its JSON output."""
        what = what or self.config.config
        with tempfile.TemporaryDirectory(prefix="gepa-bot-promptfoo-") as tmp:
            out = Path(tmp) / "list.json"
            try:
                self._run(["eval", "-c", config, "-n", "1", "-r", "echo", "--grader", "echo", *self._quiet_flags(),
                           "-o", str(out)], cwd, timeout=300, tmp=Path(tmp))
            except PromptfooFailed as exc:
                raise setup_error(f"promptfoo could not load {what}: {exc.summary}",
                                  f"fix what it reports; `promptfoo eval -c {self.config.config}` must run") from None
            try:
                listing = json.loads(out.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise setup_error(f"promptfoo did not list the tests of {self.config.config} ({exc})",
                                  f"check that `promptfoo eval -c {self.config.config} -o out.json` writes out.json "
                                  "(a promptfoo 0.121 or newer)") from None
        if not isinstance(listing, dict) or not isinstance(listing.get("config"), dict):
            raise setup_error(f"promptfoo's output for {self.config.config} has no `config`",
                              f"use promptfoo {PROMPTFOO_VERSION} (set eval.command)")
        return listing

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
            raise setup_error("providers/grader: task_model needs a task model", "set models.task")
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
        """Run promptfoo; its stdout, or SuiteError (PromptfooFailed: it ran and failed). Exit code 100 = some tests
        failed."""
        argv = " ".join(shlex.quote(a) for a in [*self.command, *args])
        try:
            output = run_process(argv, cwd, self._env(tmp), "", timeout)
        except (OSError, subprocess.SubprocessError) as exc:
            raise setup_error(f"promptfoo could not start ({exc})", NODE_FIX) from None
        if output.returncode == 127:
            raise setup_error(f"promptfoo could not start: {output.stderr.strip()[-300:]}", NODE_FIX)
        if output.timed_out or output.returncode not in (0, 100):
            raise PromptfooFailed(argv, output, timeout)
        return output.stdout


def _instance_result(instance_id: str, rows: list[dict[str, Any]]) -> InstanceResult:
    """Mean score over the test's rows; any row promptfoo could not score (provider or grader error) makes the
    whole test an error: a mean over what is left would be a score of another test."""
    if not rows:
        return failure(instance_id, "promptfoo returned no result for this test")
    many = len(rows) > 1
    trace = [{"prompt": (r.get("prompt") or {}).get("label"), "provider": (r.get("provider") or {}).get("id"),
              "vars": r.get("vars"), "score": r.get("score"), "pass": bool(r.get("success")),
              "error": _error_text(r) if _is_error(r) else None} for r in rows]
    outputs = [_output(r) for r in rows]
    output = outputs[0] if len(outputs) == 1 else json.dumps(outputs)
    errors = [r for r in rows if _is_error(r)]
    if errors:
        feedback = "\n".join(_head(r, many) + f"ERROR: {excerpt(_error_text(r), 800)}" for r in errors)
        return InstanceResult(id=instance_id, score=0.0, feedback=excerpt(feedback), trace=trace, output=output,
                              failed=True)
    scores = [float(r.get("score") or 0.0) for r in rows]
    return InstanceResult(id=instance_id, score=sum(scores) / len(scores), trace=trace, output=output,
                          feedback=excerpt("\n".join(_section(r, many) for r in rows)))


def _is_error(row: dict[str, Any]) -> bool:
    """promptfoo could not score the row: failureReason 2 (the provider or the grading crashed), or a model-graded
    assertion's grader failed (unreachable, no JSON verdict): promptfoo reports that as a plain failed assertion
    (failureReason 1) tagged ``metadata.graderError``."""
    return row.get("failureReason") == ERROR_FAILURE or bool(_grader_errors(row.get("gradingResult")))


def _grader_errors(result: Any) -> list[dict[str, Any]]:
    """The grading results (nested ones too: assert-sets) whose grader failed."""
    if not isinstance(result, dict):
        return []
    own = [result] if (result.get("metadata") or {}).get("graderError") is True else []
    nested = [e for part in result.get("componentResults") or [] for e in _grader_errors(part)]
    return nested or own


def _error_text(row: dict[str, Any]) -> str:
    graders = [f"grader error in [{(e.get('assertion') or {}).get('type', '?')}]: {e.get('reason') or 'no reason'}"
               for e in _grader_errors(row.get("gradingResult"))]
    return "; ".join(graders) or str(row.get("error") or "promptfoo reported an error without a message")


def _output(row: dict[str, Any]) -> str:
    output = (row.get("response") or {}).get("output")
    return output if isinstance(output, str) else json.dumps(output)


def _head(row: dict[str, Any], many: bool) -> str:
    """Which prompt, provider and vars a row is, when the test has several rows."""
    if not many:
        return ""
    return (f"[prompt {(row.get('prompt') or {}).get('label', '?')} · {(row.get('provider') or {}).get('id', '?')}"
            f" · vars {excerpt(json.dumps(row.get('vars'), default=str), 200)}]\n")


def _section(row: dict[str, Any], many: bool) -> str:
    """A scored row: the verdict, the reason of every failed assertion (the grader's for model-graded ones), the
    output."""
    grading = row.get("gradingResult") or {}
    lines = [f"{_head(row, many)}{'PASS' if row.get('success') else 'FAIL'}: score {float(row.get('score') or 0):.2f}"]
    for part in grading.get("componentResults") or []:
        if not part.get("pass"):
            kind = (part.get("assertion") or {}).get("type", "?")
            lines.append(f"- [{kind}] {excerpt(str(part.get('reason') or 'failed'), 600)}")
    if not grading.get("componentResults") and grading.get("reason") and not row.get("success"):
        lines.append(f"- {excerpt(str(grading['reason']), 600)}")
    lines.append(f"output: {excerpt(_output(row), OUTPUT_PREVIEW)}")
    return "\n".join(lines)
