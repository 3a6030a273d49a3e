"""promptfoo configs scored two ways against one loopback stub model: by gepa-bot's promptfoo suite and by
`promptfoo eval` run directly. tests/test_suite_promptfoo.py asserts the per-test agreement on promptfoo's own
example configs (tests/fixtures/promptfoo/examples/, adapted to run offline) and bench/promptfoo_agreement.py
reports it (bench/results/promptfoo-agreement.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatstub import ChatStub

from gepa_bot.config import PromptfooSuiteConfig
from gepa_bot.evals.promptfoo_suite import (
    AUTO_DESCRIPTION,
    ERROR_FAILURE,
    PromptfooSuite,
    instance_id_of,
)
from gepa_bot.evals.suite import SuiteContext, materialize

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "promptfoo"
PROMPTFOO = ROOT / ".ci" / "node_modules" / ".bin" / "promptfoo"
STUB_PROVIDER = "openai:chat:stub"  # what gepa-bot's task_model openai/stub is in promptfoo
# (fixture directory under FIXTURES, config): every adapted example of promptfoo's examples/ directory
PROMPTFOO_EXAMPLES = [(f"examples/{p.parent.name}", p.name)
                      for p in sorted((FIXTURES / "examples").glob("*/promptfooconfig*.yaml"))]
EDGE_CASES = [("edge-cases", "promptfooconfig.yaml")]  # written for gepa-bot, in promptfoo's format

# The stub task model's answers, keyed by a phrase of the rendered prompt (the first match wins).
CANNED = {
    "charged twice": lambda prompt: '{"label": "billing", "reason": "Duplicate charge on an order."}',
    "crashes": lambda prompt: 'Sure! {"label": "technical", "reason": "crash"}',
    "log in": lambda prompt: ('{"label": "account", "reason": "Login problem after an email change."}'
                              if "from Ana:" in prompt else "As an AI, I think billing."),
    "word ok": lambda prompt: "okay",
    "Say hi": lambda prompt: "hi",
    "bananas": lambda prompt: "Bananas are great!",
    "avocado": lambda prompt: "avocado toast, again",
    "new york": lambda prompt: "NYC: pizza rats rule" + ("!" if "funny" in prompt else "."),
    # promptfoo's examples: a few right answers, so their tests pass and fail (the rest get last_line)
    "Hello world": lambda prompt: "Ahoy! Bonjour le monde!",
    "in JSON": lambda prompt: '{"name": "Stub", "story": "Answered prompts, then retired."}',
    "quick brown fox": lambda prompt: "Arrr, the quick brown fox be jumpin' o'er the lazy dog!",
    "Banana": lambda prompt: '{"color": "yellow", "countries": ["Ecuador", "Costa Rica"]}',
    "Passion fruit": lambda prompt: '{"color": "purple", "countries": ["Brazil", "Paraguay"]}',
}


def last_line(messages: list[dict]) -> str:
    """The answer to any other prompt: the last non-empty line of the last message (a model that repeats)."""
    lines = [line.strip() for line in str(messages[-1].get("content") if messages else "").splitlines()]
    return next((line for line in reversed(lines) if line), "no idea")


class StubModel(ChatStub):
    """The loopback chat stub (tests/chatstub.py) answering with canned replies, else the prompt's last line, and
    grading llm-rubric: an output ending in "!" passes (the rubric's verdict is the stub's, so promptfoo's own
    reason is checked)."""

    def __init__(self):
        super().__init__(self.answer)

    @staticmethod
    def answer(messages: list[dict]) -> str:
        text = "\n".join(str(m.get("content")) for m in messages)
        if "<Rubric>" in text or "rubric" in text.lower() and "<Output>" in text:
            output = text.rsplit("<Output>", 1)[-1].split("</Output>", 1)[0].strip()
            passed = output.endswith("!")
            return json.dumps({"reason": f"stub grader: {'funny' if passed else 'not funny'}", "pass": passed,
                               "score": 1.0 if passed else 0.0})
        return next((reply(text) for key, reply in CANNED.items() if key in text), last_line(messages))


def repo_copy(tmp_path: Path, name: str) -> Path:
    """A copy of the fixture directory ``name`` (under FIXTURES) to run in."""
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def make_suite(repo: Path, stub: StubModel, config: str = "promptfooconfig.yaml", **fields) -> PromptfooSuite:
    cfg = PromptfooSuiteConfig(type="promptfoo", config=config, command=str(PROMPTFOO), providers="task_model",
                               grader="task_model", **fields)
    return PromptfooSuite(SuiteContext(repo=repo, model="openai/stub", api_base=stub.url, api_key="k"), cfg)


def promptfoo_output(repo: Path, config: str, stub: StubModel, tmp_path: Path) -> dict[str, Any]:
    """The JSON output of `promptfoo eval` run directly on the config, with the same stub model and grader."""
    out = tmp_path / "direct.json"
    env = {**os.environ, "OPENAI_BASE_URL": stub.url, "OPENAI_API_KEY": "k", "PROMPTFOO_DISABLE_TELEMETRY": "1",
           "PROMPTFOO_DISABLE_UPDATE": "1", "PROMPTFOO_CONFIG_DIR": str(tmp_path / "pf-home")}
    done = subprocess.run([str(PROMPTFOO), "eval", "-c", config, "-r", STUB_PROVIDER, "--grader", STUB_PROVIDER,
                           "--no-cache", "--no-write", "--no-table", "--no-progress-bar", "-o", str(out)],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode not in (0, 100):  # 100: some tests failed
        raise RuntimeError(f"promptfoo eval -c {config} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return json.loads(out.read_text(encoding="utf-8"))


def rows_per_test(output: dict[str, Any], ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """promptfoo's rows of a direct run, per test case; ``ids``: gepa-bot's ids, in the config's order.

    A row's ``testIdx`` is its test's position in the config: none of these configs expands array vars into
    several combinations, which would number each one (checked: exactly one ``testIdx`` per test). Its
    ``testCase`` is the test after promptfoo merged defaultTest's vars, asserts and options into it and ran
    transformVars, so ``instance_id_of(testCase)`` is gepa-bot's id only when the test has a description:
    those are checked to match."""
    by_index: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in output["results"]["results"]:
        by_index[row["testIdx"]].append(row)
    if sorted(by_index) != list(range(len(ids))):
        raise RuntimeError(f"{len(ids)} tests listed, promptfoo ran test indices {sorted(by_index)}")
    for index, rows in by_index.items():
        for test in (row["testCase"] for row in rows):
            described = test.get("description") and not AUTO_DESCRIPTION.match(str(test["description"]))
            if described and instance_id_of(test) != ids[index].split("#")[0]:
                raise RuntimeError(f"test #{index} is {instance_id_of(test)!r} in promptfoo, {ids[index]!r} in gepa-bot")
    return {ids[index]: rows for index, rows in by_index.items()}


Row = tuple[str, float, bool]  # (prompt label, provider and vars as JSON; score; pass)


def _row(prompt: Any, provider: Any, variables: Any, score: Any, passed: Any) -> Row:
    return json.dumps([prompt, provider, variables], sort_keys=True, default=str), float(score or 0.0), bool(passed)


@dataclass
class CaseAgreement:
    """One test case: its rows as gepa-bot's suite scored them (``ours``) and as promptfoo did (``theirs``)."""

    id: str
    ours: list[Row]
    theirs: list[Row]

    @property
    def equal_scores(self) -> bool:
        return [r[:2] for r in self.ours] == [r[:2] for r in self.theirs]

    @property
    def equal_verdicts(self) -> bool:
        return [(r[0], r[2]) for r in self.ours] == [(r[0], r[2]) for r in self.theirs]


@dataclass
class ConfigAgreement:
    fixture: str
    config: str
    promptfoo_version: str
    tests: list[CaseAgreement]
    errors: int  # promptfoo's rows that errored (an agreement on errors alone proves nothing)

    @property
    def rows(self) -> int:
        return sum(len(t.theirs) for t in self.tests)

    @property
    def passing_rows(self) -> int:
        return sum(passed for t in self.tests for _, _, passed in t.theirs)


def compare(fixture: str, config: str, stub: StubModel, tmp_path: Path) -> ConfigAgreement:
    """Score every test of the config with gepa-bot's suite (the unchanged config as the candidate) and with
    `promptfoo eval` directly, in separate copies of the fixture; rows are matched by prompt, provider and vars."""
    repo = repo_copy(tmp_path / "repo", fixture)
    suite = make_suite(repo, stub, config)
    ids = [i.id for i in suite.list_instances()]
    ours = suite.evaluate(materialize(repo, {}, {}, tmp_path / "work"), ids)
    output = promptfoo_output(repo_copy(tmp_path / "direct", fixture), config, stub, tmp_path)
    theirs = rows_per_test(output, ids)
    tests = [CaseAgreement(
        i,
        sorted(_row(t["prompt"], t["provider"], t["vars"], t["score"], t["pass"]) for t in ours[i].trace or []),
        sorted(_row((r.get("prompt") or {}).get("label"), (r.get("provider") or {}).get("id"), r.get("vars"),
                    r.get("score"), r.get("success")) for r in theirs[i]))
        for i in ids]
    errors = sum(r.get("failureReason") == ERROR_FAILURE for r in output["results"]["results"])
    return ConfigAgreement(fixture, config, suite.version, tests, errors)
