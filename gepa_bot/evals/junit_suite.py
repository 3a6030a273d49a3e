"""The ``pytest`` adapter: every collected test is an instance, scored from pytest's JUnit XML.

Listing runs ``python -m pytest --collect-only <args>`` in the repository; scoring runs
``python -m pytest <args> --junitxml=...`` in the workdir with a tiny selection plugin that keeps only
the requested node ids (so options in ``args`` such as ``-m``, ``-k`` or custom flags apply to both, and
a long id list never hits the command-line length limit).

A passing test scores 1.0 and a failed assertion 0.0. A test may report a partial score and its own feedback
with pytest's built-in ``record_property`` fixture::

    def test_summary(record_property):
        record_property("gepa_score", 0.7)            # overrides pass/fail (must be within [0, 1])
        record_property("gepa_feedback", "too long")  # the feedback the optimizer sees (replaces pytest's text)

Without ``gepa_feedback`` the feedback is the assertion message, short: no traceback, no source listing.
Errors (``failed=True``: the instance could not be scored) are: a JUnit ``<error>`` (fixture setup/teardown),
an exception other than ``AssertionError``/``pytest.fail`` in the test (the plugin marks those: pytest itself
writes them as ``<failure>``), a skip, a test missing from the XML (crash, timeout, collection error), and a
bad ``gepa_score``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import tempfile
import uuid
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Properties, Property, Skipped

from gepa_bot import evalkit
from gepa_bot.config import PytestSuiteConfig
from gepa_bot.evals.suite import (
    EvalSuite,
    Instance,
    InstanceResult,
    SuiteContext,
    SuiteError,
    Workdir,
    describe_process,
    excerpt,
    failure,
    hash_files,
    run_process,
)

SCORE_PROPERTY = "gepa_score"
FEEDBACK_PROPERTY = "gepa_feedback"
ERROR_PROPERTY = "gepa_bot_error"  # set by the plugin: the test raised something other than an assertion
MAX_MESSAGE_LINES = 12
MAX_MESSAGE_CHARS = 800
AT_ADDRESS = re.compile(r"\s+at 0x[0-9a-fA-F]+\b")  # "<function f at 0x7fe5...>" -> "<function f>"
HEX_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{8,}\b")
ENV_COLLECT_OUT = "GEPA_BOT_PYTEST_COLLECT_OUT"
ENV_SELECT_FILE = "GEPA_BOT_PYTEST_SELECT_FILE"
PLUGIN_MODULE = "_gepa_bot_pytest_plugin"
CONFIG_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "setup.cfg", "tox.ini", "**/conftest.py")

# Loaded into the eval's own interpreter with ``-p`` (it may be another venv without gepa-bot installed),
# so it is written out as a file rather than imported from this package.
PLUGIN_SOURCE = f'''\
"""Written by gepa-bot: records collected node ids and/or narrows a run to the requested ones, and marks
tests that raised something other than an assertion (pytest writes both as <failure>)."""
import json
import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    excinfo = call.excinfo
    if report.when == "call" and report.failed and excinfo is not None \
            and not excinfo.errisinstance((AssertionError, pytest.fail.Exception)):
        item.user_properties.append(("{ERROR_PROPERTY}", excinfo.typename))  # written with the teardown report


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    select_file = os.environ.get("{ENV_SELECT_FILE}")
    if select_file:
        with open(select_file, encoding="utf-8") as handle:
            wanted = set(json.load(handle))
        kept = [item for item in items if item.nodeid in wanted]
        dropped = [item for item in items if item.nodeid not in wanted]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    collect_out = os.environ.get("{ENV_COLLECT_OUT}")
    if collect_out:
        with open(collect_out, "w", encoding="utf-8") as handle:
            json.dump([item.nodeid for item in items], handle)
'''


class PytestSuite(EvalSuite):
    """Runs the repository's pytest tests; see the module docstring for the scoring rules."""

    def __init__(self, context: SuiteContext, config: PytestSuiteConfig):
        super().__init__(context)
        self.config = config

    # --- contract ----------------------------------------------------------------------------------

    def fingerprint_parts(self) -> list[str]:
        return ["pytest", self.config.python, json.dumps(self.config.args),
                *hash_files(self.context.repo, [*self.config.watch, *CONFIG_FILES])]

    def list_instances(self) -> list[Instance]:
        scratch = Path(tempfile.mkdtemp(prefix="gepa-bot-pytest-"))
        try:
            out_file = scratch / "collected.json"
            task_env = self.context.task_env()
            env = {**task_env, **_plugin_env(scratch, task_env), ENV_COLLECT_OUT: str(out_file),
                   evalkit.ENV_MODE: "list", "PYTHONDONTWRITEBYTECODE": "1"}
            command = self._command(["--collect-only", "-q"])
            output = run_process(command, self.context.repo, env, "", self.context.clamp(self.config.timeout))
            if output.timed_out or output.returncode != 0:
                hint = " (no tests were collected: check eval.args)" if output.returncode == 5 else ""
                raise SuiteError(f"collecting pytest tests failed{hint}: `{command}` in {self.context.repo}\n"
                                 f"{describe_process(output, self.config.timeout)}")
            if not out_file.is_file():
                raise SuiteError(f"pytest ran but the gepa-bot collection plugin wrote nothing: `{command}`\n"
                                 f"{describe_process(output, self.config.timeout)}")
            node_ids = json.loads(out_file.read_text(encoding="utf-8"))
        finally:
            _remove_tree(scratch)
        if not node_ids:
            raise SuiteError(f"pytest collected no tests with args {self.config.args!r}")
        unique = list(dict.fromkeys(node_ids))
        return [Instance(id=node_id) for node_id in unique]

    def evaluate(self, workdir: Workdir, ids: list[str]) -> dict[str, InstanceResult]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        scratch = _scratch_dir(workdir.candidate_file.parent)
        try:
            return self._evaluate(workdir, ids, scratch)
        except Exception as exc:  # never raise for the run: every id fails with the reason
            return {i: failure(i, f"pytest adapter error: {type(exc).__name__}: {exc}") for i in ids}
        finally:
            _remove_tree(scratch)

    # --- internals ---------------------------------------------------------------------------------

    def _command(self, extra: list[str]) -> str:
        return " ".join([self.config.python, "-m", "pytest", "-p", "no:cacheprovider", "-p", PLUGIN_MODULE,
                         *map(shlex.quote, [*self.config.args, *extra])])

    def _evaluate(self, workdir: Workdir, ids: list[str], scratch: Path) -> dict[str, InstanceResult]:
        select_file = scratch / "select.json"
        select_file.write_text(json.dumps(ids), encoding="utf-8")
        ids_file = scratch / "ids.txt"
        ids_file.write_text("\n".join(ids) + "\n", encoding="utf-8")
        xml_file = scratch / "junit.xml"
        task_env = self.context.task_env()
        env = {**self.context.evaluate_env(ids_file, workdir.candidate_file), **_plugin_env(scratch, task_env),
               ENV_SELECT_FILE: str(select_file)}
        # xunit1 keeps record_property warning-free; junit_logging=all puts captured output in the XML.
        command = self._command([f"--junitxml={xml_file}", "-o", "junit_family=xunit1", "-o", "junit_logging=all",
                                 "-o", "junit_log_passing_tests=true"])
        output = run_process(command, workdir.path, env, "", self.context.clamp(self.config.timeout))
        cases: dict[tuple[str, str], list[_Case]] = {}
        xml_problem = ""
        if xml_file.is_file():
            try:
                cases = _read_cases(xml_file)
            except Exception as exc:  # a truncated file after a kill, for instance
                xml_problem = f"the JUnit XML could not be parsed ({type(exc).__name__}: {exc})\n"
        else:
            xml_problem = "pytest wrote no JUnit XML (it crashed, was killed, or failed before running tests)\n"
        results: dict[str, InstanceResult] = {}
        for node_id in ids:
            found = cases.pop(junit_key(node_id), None)
            if found:
                results[node_id] = _score(node_id, found)
        missing = [i for i in ids if i not in results]
        if missing:
            context = xml_problem + describe_process(output, self.config.timeout)
            strays = [case.describe() for group in cases.values() for case in group if case.outcome == "error"]
            if strays:  # e.g. a collection error in the candidate's workdir, reported under the module name
                context += "\n--- errors pytest reported outside the requested tests ---\n" + "\n".join(strays[:3])
            for node_id in missing:
                results[node_id] = failure(node_id, f"pytest produced no result for {node_id}.\n{context}")
        return results


def junit_key(node_id: str) -> tuple[str, str]:
    """The (classname, name) pytest's junitxml writes for ``node_id`` (mirrors ``mangle_test_address``)."""
    path, bracket, params = node_id.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), _bin_xml_escape(names[-1])


def _bin_xml_escape(text: str) -> str:
    """pytest's visual escape of characters XML cannot hold (``\\a`` -> ``#x07``)."""
    def repl(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"#x{code:02X}" if code <= 0xFF else f"#x{code:04X}"
    return re.sub("[^\u0009\u000a\u000d\u0020-\u007e\u0080-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]", repl, text)


class _Case:
    """One <testcase> reduced to what scoring needs."""

    def __init__(self, outcome: str, message: str, text: str, properties: list[tuple[str, str]],
                 stdout: str, stderr: str, label: str):
        self.outcome = outcome  # passed | failure | error | skipped
        self.message = message
        self.text = text
        self.properties = properties
        self.stdout = stdout
        self.stderr = stderr
        self.label = label

    def describe(self) -> str:
        return f"{self.label}: {self.outcome}: {short_message(self.message, self.text)}"


def _read_cases(xml_file: Path) -> dict[tuple[str, str], list[_Case]]:
    cases: dict[tuple[str, str], list[_Case]] = {}
    for suite in JUnitXml.fromfile(str(xml_file)):
        for case in suite:
            outcome, message, text = "passed", "", ""
            results = case.result
            for kind, name in ((Error, "error"), (Failure, "failure"), (Skipped, "skipped")):
                hit = next((r for r in results if isinstance(r, kind)), None)
                if hit is not None:
                    outcome, message, text = name, hit.message or "", hit.text or ""
                    break
            properties: list[tuple[str, str]] = []
            for group in case.iterchildren(Properties):
                properties += [(p.name or "", p.value or "") for p in group.iterchildren(Property)]
            classname, name = case.classname or "", case.name or ""
            cases.setdefault((classname, name), []).append(_Case(
                outcome, message, text, properties, case.system_out or "", case.system_err or "",
                f"{classname}::{name}" if classname else name))
    return cases


def _score(node_id: str, group: list[_Case]) -> InstanceResult:
    """Combine the testcase(s) written for one node id (normally one; reruns or plugins may add more)."""
    results = [_score_case(node_id, case) for case in group]
    worst = min(results, key=lambda r: (r.score, not r.failed))
    if len(results) == 1:
        return worst
    feedback = "\n\n".join(f"[run {n}] {r.feedback}" for n, r in enumerate(results, start=1))
    return InstanceResult(id=node_id, score=worst.score, feedback=excerpt(feedback), failed=worst.failed)


def _score_case(node_id: str, case: _Case) -> InstanceResult:
    score, problem = _recorded_score(case)
    problem = _error(case) or problem
    if problem:
        return failure(node_id, problem)
    status = "passed" if case.outcome == "passed" else "failed"
    if score is None:
        score = 1.0 if case.outcome == "passed" else 0.0
    else:
        status += f", {SCORE_PROPERTY}={score:g}"
    feedbacks = [value for name, value in case.properties if name == FEEDBACK_PROPERTY]
    if feedbacks:  # the test's own words are the feedback: nothing of pytest's failure text
        return InstanceResult(id=node_id, score=score, feedback=excerpt("\n".join(feedbacks)))
    sections = [f"test {status}", short_message(case.message, case.text)]
    sections += [f"--- captured {label} ---\n" + excerpt(body, 500) for label, body in _captured_sections(case)]
    return InstanceResult(id=node_id, score=score, feedback=excerpt("\n".join(s for s in sections if s)))


def _recorded_score(case: _Case) -> tuple[float | None, str]:
    """The test's last ``gepa_score`` (None when it recorded none), or the problem with it."""
    raws = [value for name, value in case.properties if name == SCORE_PROPERTY]
    if not raws:
        return None, ""
    try:
        score = float(raws[-1])
    except ValueError:
        return None, f"record_property({SCORE_PROPERTY!r}, {raws[-1]!r}) is not a number"
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        return None, f"record_property({SCORE_PROPERTY!r}, {raws[-1]!r}) is outside [0, 1]"
    return score, ""


def _error(case: _Case) -> str:
    """Why ``case`` could not be scored, or "" when it was (passed, or failed an assertion)."""
    message = short_message(case.message, case.text)
    raised = [value for name, value in case.properties if name == ERROR_PROPERTY]
    if case.outcome == "skipped":
        return f"test was skipped: {case.message or 'no reason given'}"
    if case.outcome == "error":  # setup/teardown error: the test is broken, whatever it recorded
        return f"test errored (fixture setup/teardown):\n{message}"
    if raised and case.outcome == "failure":
        return f"test raised {raised[-1]}, not an assertion failure, so it could not score:\n{message}"
    return ""


def short_message(message: str, text: str) -> str:
    """The assertion's own words: pytest's crash message (else the ``E`` lines of its traceback), capped, without
    source listings, fixture values or object addresses."""
    lines = message.splitlines() or [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    kept = [clean(line) for line in lines if line.strip()][:MAX_MESSAGE_LINES]
    short = "\n".join(kept)
    return short if len(short) <= MAX_MESSAGE_CHARS else short[:MAX_MESSAGE_CHARS] + " [...]"


def clean(text: str) -> str:
    """``text`` without memory addresses (they differ on every run and mean nothing to a reader)."""
    return HEX_ADDRESS.sub("0x...", AT_ADDRESS.sub("", text.rstrip()))


_CAPTURE_HEADER = re.compile(r"^-+ Captured (\w+(?: \w+)*) -+$", re.MULTILINE)
_CAPTURE_NAMES = {"out": "stdout", "err": "stderr", "log": "log"}


def _captured_sections(case: _Case) -> list[tuple[str, str]]:
    """Non-empty sections of pytest's captured output (``---- Captured Out ----`` blocks), labelled."""
    parts = _CAPTURE_HEADER.split(clean(case.stdout + "\n" + case.stderr))
    sections = [("output", parts[0].strip())]
    for name, body in zip(parts[1::2], parts[2::2], strict=False):
        sections.append((_CAPTURE_NAMES.get(name.lower(), name.lower()), body.strip()))
    return [(label, body) for label, body in sections if body]


def _plugin_env(scratch: Path, env: dict[str, str]) -> dict[str, str]:
    """Put the plugin file on PYTHONPATH (ahead of whatever PYTHONPATH the eval already gets)."""
    plugin_dir = scratch / "plugin"
    plugin_dir.mkdir(parents=True, exist_ok=True)
    (plugin_dir / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
    existing = env.get("PYTHONPATH", os.environ.get("PYTHONPATH"))
    return {"PYTHONPATH": str(plugin_dir) + (os.pathsep + existing if existing else "")}


def _scratch_dir(parent: Path) -> Path:
    path = parent / f"pytest-{uuid.uuid4().hex[:12]}"
    path.mkdir(parents=True)
    return path


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
