"""The promptfoo adapter's test loading: the `tests:` entries of a promptfoo config, each made a test mapping.

promptfoo keeps the `file://` entries of a ``tests:`` list as written in the config it lists: YAML/JSON/JSONL
files (globs too) are read here, relative to the config; others (CSV, XLSX, generators, URLs) promptfoo loads as
the ``tests:`` of a throwaway config. ``vars: file://...`` of a test is replaced by the merged vars files, as
promptfoo's readTest does. Every problem is a one-line SuiteError ending in ``Fix: ...`` (:func:`setup_error`).
Used by gepa_bot/evals/promptfoo_suite.py, which runs promptfoo (``listing``).
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gepa_bot.evals.suite import SuiteError, excerpt

NATIVE_TEST_FILES = (".yaml", ".yml", ".json", ".jsonl")  # `tests:` entries read here; promptfoo loads the rest

# promptfoo's listing of a config: (working directory, config file there, what it is for messages) -> its JSON
Listing = Callable[[Path, str, str], dict[str, Any]]


def setup_error(problem: str, fix: str) -> SuiteError:
    """A one-line SuiteError: what is wrong, then ``Fix: what to do``."""
    return SuiteError(f"{' '.join(problem.split()).rstrip('.')}. Fix: {fix}")


def expand_tests(raw: Any, repo: Path, config: str, listing: Listing) -> list[dict[str, Any]]:
    """The ``tests:`` of the listed config ``config`` (relative to ``repo``), every entry read into test mappings."""
    tests: list[dict[str, Any]] = []
    for entry in raw if isinstance(raw, list) else [] if raw is None else [raw]:
        if isinstance(entry, str) and _native_file(entry):
            tests += _read_test_files(entry, repo, config)
        elif isinstance(entry, str) or (isinstance(entry, dict) and isinstance(entry.get("path"), str)):
            tests += _load_with_promptfoo(entry, repo, config, listing)
        elif isinstance(entry, dict):
            tests.append(_vars_loaded(entry, (repo / config).parent))
        else:
            raise setup_error(f"{config}: the test entry {excerpt(repr(entry), 80)} is neither a test nor a file "
                              "path", "make every entry of `tests:` a mapping (vars, assert, ...) or a file:// path "
                              "to a test file")
    return tests


def _read_test_files(entry: str, repo: Path, config: str) -> list[dict[str, Any]]:
    """The tests of the YAML/JSON/JSONL files ``entry`` (a path or glob, relative to the config) names."""
    base = (repo / config).parent
    files = [Path(f) for f in sorted(glob.glob(os.path.join(base, entry.removeprefix("file://")), recursive=True))
             if os.path.isfile(f)]
    if not files:
        raise setup_error(f"{config}: the tests entry {entry} matches no file",
                          "fix the path; file:// paths in `tests:` are relative to the config's directory")
    return [_vars_loaded(test, path.parent) for path in files for test in _parse_test_file(path, repo)]


def _parse_test_file(path: Path, repo: Path) -> list[dict[str, Any]]:
    name = os.path.relpath(path, repo)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            data: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise setup_error(f"{name}: cannot read its tests ({type(exc).__name__}: {exc})",
                          f"fix {name}: it must be a {path.suffix[1:].upper()} list of test cases") from None
    data = [data] if isinstance(data, dict) else data
    if not isinstance(data, list) or not all(isinstance(test, dict) for test in data):
        raise setup_error(f"{name}: expected a list of test cases (mappings with vars, assert, ...)",
                          f"make {name} a list whose items are test cases")
    return data


def _load_with_promptfoo(entry: str | dict[str, Any], repo: Path, config: str, listing: Listing) -> list[dict[str, Any]]:
    """Tests of a file promptfoo has its own rules for (CSV, XLSX, JS/Python generators, URLs): promptfoo loads it
    as the `tests:` of a throwaway config (it resolves that form in its output; list entries it keeps as paths)."""
    base = (repo / config).parent
    reference: str | dict[str, Any] = (_absolute(entry, base) if isinstance(entry, str)
                                       else {**entry, "path": _absolute(entry["path"], base)})
    with tempfile.TemporaryDirectory(prefix="gepa-bot-promptfoo-tests-") as tmp:
        throwaway = Path(tmp) / "tests-only.yaml"
        throwaway.write_text(json.dumps({"prompts": ["{{gepa_bot_unused}}"], "providers": ["echo"],
                                         "tests": reference}), encoding="utf-8")
        tests = listing(Path(tmp), throwaway.name, f"the tests of {entry}")["config"].get("tests")
    if not isinstance(tests, list) or not tests or not all(isinstance(test, dict) for test in tests):
        raise setup_error(f"{config}: promptfoo loaded no test cases from {excerpt(str(entry), 120)}",
                          "fix that entry of `tests:` (promptfoo's file:// path rules)")
    return tests


def _native_file(entry: str) -> bool:
    """A YAML/JSON/JSONL path or glob (read here); anything else (CSV, generators, URLs) is promptfoo's to load."""
    path = entry.removeprefix("file://")
    return "://" not in path and path.lower().endswith(NATIVE_TEST_FILES)


def _absolute(entry: str, base: Path) -> str:
    """A `tests:` path made absolute against the config's directory (URLs and other schemes unchanged)."""
    path = entry.removeprefix("file://")
    return entry if "://" in path or os.path.isabs(path) else "file://" + str(base / path)


def _vars_loaded(test: dict[str, Any], directory: Path) -> dict[str, Any]:
    """``test`` with ``vars: file://...`` (a path, glob or list of them, relative to ``directory``) replaced by the
    merged content of those YAML/JSON files, as promptfoo's readTest does: the selected tests gepa-bot hands to
    promptfoo with ``-t`` are not read that way."""
    paths = test.get("vars")
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        return test
    merged: dict[str, Any] = {}
    for pattern in paths:
        files = sorted(glob.glob(os.path.join(directory, pattern.removeprefix("file://")), recursive=True))
        if not files:
            raise setup_error(f"vars: {pattern} of a test matches no file", "fix the path (relative to the file "
                              "that holds the test)")
        for name in files:
            data = yaml.safe_load(Path(name).read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise setup_error(f"{name}: a vars file must be a mapping", f"make {name} a mapping of var names")
            merged.update(data)
    return {**test, "vars": merged}
