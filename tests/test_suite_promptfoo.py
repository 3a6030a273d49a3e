"""The promptfoo adapter runs the real promptfoo CLI (npm `promptfoo`, pinned in .ci/package-lock.json) against a
loopback stub model (tests/promptfoo_examples.py): per-test scores must equal promptfoo's own run of the same
config, on promptfoo's own example configs too; every assertion type works (llm-rubric graded by the stub,
javascript, transform, transformVars, CSV, file:// and chat prompts)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from promptfoo_examples import (
    EDGE_CASES,
    PROMPTFOO,
    PROMPTFOO_EXAMPLES,
    StubModel,
    compare,
    make_suite,
    promptfoo_output,
    repo_copy,
)
from pydantic import ValidationError

from gepa_bot.config import PromptfooSuiteConfig
from gepa_bot.evals.promptfoo_suite import PromptfooSuite, instance_id_of, provider_id
from gepa_bot.evals.suite import SuiteContext, SuiteError, materialize

# every test runs the real promptfoo CLI (Node.js), several times
pytestmark = pytest.mark.slow

TRIAGE_PROMPT = "prompts/triage.txt"

if not PROMPTFOO.exists() or not shutil.which("node"):
    if os.environ.get("CI"):
        pytest.fail("promptfoo is not installed: `npm ci --prefix .ci` (Node.js >= 20.20)", pytrace=False)
    pytest.skip("promptfoo not installed (npm ci --prefix .ci); CI installs it", allow_module_level=True)


@pytest.fixture(scope="module")
def stub():
    model = StubModel()
    yield model
    model.close()


def workdir(repo: Path, tmp_path: Path, files: dict[str, str] | None = None):
    files = files or {TRIAGE_PROMPT: (repo / TRIAGE_PROMPT).read_text(encoding="utf-8")}
    return materialize(repo, files, dict(files), tmp_path / "work")


def promptfoo_itself(repo: Path, config: str, stub: StubModel, tmp_path: Path) -> list[float]:
    """Every row's score from `promptfoo eval` run directly on the config, with the same stub model."""
    return sorted(float(r["score"]) for r in promptfoo_output(repo, config, stub, tmp_path)["results"]["results"])


@pytest.mark.parametrize(("fixture", "config"), [("support-triage", "promptfooconfig.yaml"),
                                                  ("support-triage", "promptfooconfig-csv.yaml"),
                                                  ("init-default", "promptfooconfig.yaml")])
def test_every_score_equals_promptfoos_own_run(stub, tmp_path, fixture, config):
    repo = repo_copy(tmp_path, fixture)
    suite = make_suite(repo, stub, config)
    ids = [i.id for i in suite.list_instances()]
    files = {TRIAGE_PROMPT: (repo / TRIAGE_PROMPT).read_text()} if (repo / TRIAGE_PROMPT).exists() else {}
    results = suite.evaluate(materialize(repo, files, dict(files), tmp_path / "work"), ids)
    ours = sorted(float(row["score"]) for i in ids for row in results[i].trace)
    assert ours == promptfoo_itself(repo, config, stub, tmp_path)
    assert len(ours) >= len(ids) and any(s > 0 for s in ours)  # not an agreement on errors


@pytest.fixture(scope="module")
def agreement(stub, tmp_path_factory):
    """compare() of a fixture config, run once per module (the last test reads them all)."""
    done = {}

    def get(fixture: str, config: str):
        if (fixture, config) not in done:
            done[fixture, config] = compare(fixture, config, stub, tmp_path_factory.mktemp("agreement"))
        return done[fixture, config]
    return get


@pytest.mark.parametrize(("fixture", "config"), PROMPTFOO_EXAMPLES + EDGE_CASES, ids=lambda v: v.split("/")[-1])
def test_each_test_of_promptfoos_examples_scores_as_in_promptfoos_own_run(agreement, fixture, config):
    result = agreement(fixture, config)
    differ = {t.id: {"gepa-bot": t.ours, "promptfoo": t.theirs} for t in result.tests if t.ours != t.theirs}
    assert not differ, json.dumps(differ, indent=1)
    assert result.rows >= len(result.tests) > 0 and result.errors < result.rows  # not an agreement on errors


def test_the_examples_have_at_least_41_tests_with_passing_and_failing_rows(agreement):
    results = [agreement(*fixture_config) for fixture_config in PROMPTFOO_EXAMPLES]
    assert sum(len(r.tests) for r in results) >= 41  # issue #13's count
    assert 0 < sum(r.passing_rows for r in results) < sum(r.rows for r in results)
    edge = agreement(*EDGE_CASES[0])
    assert 0 < edge.passing_rows < edge.rows


def test_ids_are_descriptions_or_content_hashes_and_survive_edits(stub, tmp_path):
    repo = repo_copy(tmp_path, "support-triage")
    ids = [i.id for i in make_suite(repo, stub).list_instances()]
    assert ids[:2] == ["Double charge", "App crash"] and re.fullmatch(r"t-[0-9a-f]{12}", ids[2])
    assert ids[3] == "Exact answer"
    # CSV rows get promptfoo's "Row #N": not an id (it moves when a row is added); __description is one
    csv_ids = [i.id for i in make_suite(repo, stub, "promptfooconfig-csv.yaml").list_instances()]
    assert csv_ids == ["charged twice", "app crash", "plain equals"]
    config = repo / "promptfooconfig.yaml"
    config.write_text(config.read_text().replace("tests:\n", "tests:\n  - vars: {ticket: new first test}\n", 1))
    assert [i.id for i in make_suite(repo, stub).list_instances()][1:] == ids
    assert instance_id_of({"description": "Row #7", "vars": {"a": 1}}) == instance_id_of({"vars": {"a": 1}})


def test_array_vars_and_several_prompts_average_into_one_instance(stub, tmp_path):
    repo = repo_copy(tmp_path, "support-triage")
    suite = make_suite(repo, stub)
    login = [i.id for i in suite.list_instances()][2]  # customer: [Ana, Bo]: two rows, one instance
    result = suite.evaluate(workdir(repo, tmp_path), [login])[login]
    assert [row["vars"]["customer"] for row in result.trace] == ["Ana", "Bo"]
    assert result.score == pytest.approx(sum(r["score"] for r in result.trace) / 2)
    assert "[prompt" in result.feedback and "Bo" in result.feedback and "- [not-contains-any]" in result.feedback


def test_the_candidate_prompt_is_read_from_the_workdir(stub, tmp_path):
    repo = repo_copy(tmp_path, "support-triage")
    suite = make_suite(repo, stub)
    baseline = suite.evaluate(workdir(repo, tmp_path / "a"), ["Double charge"])["Double charge"]
    broken = {TRIAGE_PROMPT: "Ticket: {{ticket}}. Answer in one word."}  # no JSON asked for, no customer
    changed = suite.evaluate(workdir(repo, tmp_path / "b", broken), ["Double charge"])["Double charge"]
    assert baseline.score == 1.0 and changed.score == 1.0  # the stub answers by ticket: same JSON
    assert "Answer in one word" in stub.requests[-1][-1]["content"]
    assert not list(repo.glob(".gepa-bot-promptfoo-tests*"))  # nothing left in the repo


def test_llm_rubric_javascript_transform_and_transform_vars(stub, tmp_path):
    repo = tmp_path / "repo"
    (repo / "prompts").mkdir(parents=True)
    (repo / "prompts" / "chat.json").write_text(json.dumps([
        {"role": "system", "content": "You write tweets."},
        {"role": "user", "content": "Write a {{style}} tweet about {{topic}}"}]))
    (repo / "promptfooconfig.yaml").write_text("""
prompts: [file://prompts/chat.json]
providers: [openai:gpt-4o-mini]
defaultTest:
  options:
    transform: output.trim()
tests:
  - description: rubric
    vars: {topic: new york, style: funny}
    assert:
      - type: llm-rubric
        value: ensure that the output is funny
  - description: rubric fails
    vars: {topic: new york, style: dull}
    assert:
      - type: llm-rubric
        value: ensure that the output is funny
  - description: javascript and transformVars
    vars: {topic: avocado, style: plain}
    options:
      transformVars: "{ ...vars, style: vars.style + ' and short' }"
    assert:
      - type: javascript
        value: "output.startsWith('avocado') && context.vars.style === 'plain and short'"
      - type: javascript
        value: "output.length < 5"
""")
    suite = make_suite(repo, stub)
    files = {"prompts/chat.json": (repo / "prompts" / "chat.json").read_text()}
    results = suite.evaluate(materialize(repo, files, dict(files), tmp_path / "work"),
                             ["rubric", "rubric fails", "javascript and transformVars"])
    assert results["rubric"].score == 1.0
    assert results["rubric fails"].score == 0.0 and "stub grader: not funny" in results["rubric fails"].feedback
    js = results["javascript and transformVars"]
    assert js.score == 0.5 and "- [javascript]" in js.feedback
    chat = [m for m in stub.requests if any("avocado" in str(x.get("content")) for x in m)][-1]
    assert chat[0] == {"role": "system", "content": "You write tweets."}  # the chat-format prompt, as messages


def test_parallel_batches_in_one_workdir_do_not_mix(stub, tmp_path):
    """gepa-bot scores a candidate in `workers` concurrent batches in the same workdir."""
    from gepa_bot.evals.suite import evaluate_parallel

    repo = repo_copy(tmp_path, "support-triage")
    suite = make_suite(repo, stub)
    ids = [i.id for i in suite.list_instances()]
    results = evaluate_parallel(suite, workdir(repo, tmp_path), ids, workers=2)
    assert set(results) == set(ids) and all(r.trace and not r.failed for r in results.values())


def test_a_broken_candidate_fails_only_that_batch(stub, tmp_path):
    repo = repo_copy(tmp_path, "support-triage")
    suite = make_suite(repo, stub)
    bad = workdir(repo, tmp_path, {TRIAGE_PROMPT: "x"})
    (bad.path / "promptfooconfig.yaml").unlink()  # a hard link to the repo's file: replace, never write through
    (bad.path / "promptfooconfig.yaml").write_text("prompts: [")
    result = suite.evaluate(bad, ["Double charge"])["Double charge"]
    assert result.score == 0.0 and result.failed and "promptfoo failed on this batch" in result.feedback
    # a failed assertion is a low score, not a broken eval
    fine = suite.evaluate(workdir(repo, tmp_path / "ok"), ["App crash"])["App crash"]
    assert not fine.failed and fine.score < 1


def test_setup_errors_are_one_clear_line(stub, tmp_path):
    repo = repo_copy(tmp_path, "support-triage")
    with pytest.raises(SuiteError, match="promptfoo could not start.*Node.js"):
        PromptfooSuite(SuiteContext(repo=repo), PromptfooSuiteConfig(type="promptfoo", command="/nonexistent/pf"))
    with pytest.raises(SuiteError, match="not found"):
        make_suite(repo, stub, "missing.yaml")
    with pytest.raises(SuiteError, match="task_model cannot use 'cohere/x'"):
        provider_id("cohere/x")
    with pytest.raises(SuiteError, match=r"task_model cannot use 'cohere/x' .*\. Fix: use the config's own providers"):
        PromptfooSuite(SuiteContext(repo=repo, model="cohere/x"),  # at build time, not on every batch
                       PromptfooSuiteConfig(type="promptfoo", command=str(PROMPTFOO), providers="task_model"))
    with pytest.raises(ValidationError, match="assertions"):
        PromptfooSuiteConfig(type="promptfoo", assertions="native")  # unknown fields are errors


def test_fingerprint_covers_the_promptfoo_version_and_the_loaded_tests(stub, tmp_path):
    repo = repo_copy(tmp_path, "support-triage")
    before = make_suite(repo, stub, "promptfooconfig-csv.yaml")
    assert any(re.fullmatch(r"\d+\.\d+\.\d+", part) for part in before.fingerprint_parts())
    (repo / "tests.csv").write_text((repo / "tests.csv").read_text().replace("Say hi", "Say hello"))
    assert make_suite(repo, stub, "promptfooconfig-csv.yaml").fingerprint() != before.fingerprint()


def write_files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


FILE_TESTS = {
    "prompts/p.txt": "Answer: {{q}}",
    "promptfooconfig.yaml": """
prompts: [file://prompts/p.txt]
providers: [openai:gpt-4o-mini]
tests:
  - file://tests/cases.yaml
  - file://tests/more-*.yml
  - file://tests/sub/nested.json
  - file://tests/rows.csv
  - description: inline
    vars: {q: inline one}
    assert: [{type: contains, value: one}]
""",
    "tests/cases.yaml": """
- description: first
  vars: {q: first thing}
  assert: [{type: contains, value: first}]
- vars: {q: second thing}
  assert: [{type: contains, value: nope}]
""",
    "tests/more-b.yml": "- {description: glob b, vars: {q: glob b}, assert: [{type: contains, value: glob}]}\n",
    "tests/more-a.yml": "- {description: glob a, vars: {q: glob a}, assert: [{type: contains, value: glob}]}\n",
    "tests/sub/nested.json": '{"description": "vars file", "vars": "file://vars.yaml", '
                             '"assert": [{"type": "contains", "value": "from the vars file"}]}',
    "tests/sub/vars.yaml": "q: from the vars file\n",
    "tests/rows.csv": "q,__expected,__description\ncsv row,contains:csv,from csv\n",
}


def test_tests_given_as_file_paths_and_globs_are_read_relative_to_the_config(stub, tmp_path):
    repo = write_files(tmp_path / "repo", {"evals/" + name: text for name, text in FILE_TESTS.items()})
    suite = make_suite(repo, stub, "evals/promptfooconfig.yaml")
    ids = [i.id for i in suite.list_instances()]
    assert ids[0] == "first" and re.fullmatch(r"t-[0-9a-f]{12}", ids[1])
    assert ids[2:] == ["glob a", "glob b", "vars file", "from csv", "inline"]
    results = suite.evaluate(materialize(repo, {}, {}, tmp_path / "work"), ids)
    assert {i: (r.score, r.failed) for i, r in results.items()} == {i: (0.0 if i == ids[1] else 1.0, False) for i in ids}
    assert "- [contains] Expected output to contain \"nope\"" in results[ids[1]].feedback
    before = suite.fingerprint()
    (repo / "evals/tests/more-a.yml").write_text(FILE_TESTS["tests/more-a.yml"].replace("glob a}", "glob A}"))
    assert make_suite(repo, stub, "evals/promptfooconfig.yaml").fingerprint() != before


@pytest.mark.parametrize(("files", "expected"), [
    ({}, r"eval.config: promptfooconfig.yaml not found in .*\. Fix: set eval.config"),
    ({"promptfooconfig.yaml": "prompts: [\n"}, r"promptfoo could not load promptfooconfig.yaml: YAMLException: .*\. Fix: "),
    ({"promptfooconfig.yaml": "prompts: [x]\nproviders: [echo]\n"}, r"found no test cases\. Fix: add `tests:`"),
    ({"promptfooconfig.yaml": "prompts: [x]\nproviders: [echo]\ntests: [file://tests/none*.yaml]\n"},
     r"the tests entry file://tests/none\*\.yaml matches no file\. Fix: fix the path"),
    ({"promptfooconfig.yaml": "prompts: [x]\nproviders: [echo]\ntests: [file://t.yaml]\n", "t.yaml": "- vars: [\n"},
     r"promptfoo could not load promptfooconfig.yaml: YAMLException: .*\. Fix: "),
    ({"promptfooconfig.yaml": "prompts: [x]\nproviders: [echo]\ntests: [file://t.yaml]\n", "t.yaml": "- 1\n- 2\n"},
     r"promptfoo could not load promptfooconfig.yaml: Error: Test case must contain one of .*\. Fix: "),
], ids=["missing config", "bad yaml", "no tests", "no such test file", "bad test yaml", "not tests"])
def test_every_listing_problem_is_a_one_line_suite_error_with_a_fix(stub, tmp_path, files, expected):
    repo = write_files(tmp_path / "repo", files)
    with pytest.raises(SuiteError) as excinfo:
        make_suite(repo, stub)
    message = str(excinfo.value)
    assert "\n" not in message and re.search(expected, message), message


FLAKY_PROVIDER = """
module.exports = class {
  id() { return 'flaky'; }
  async callApi(prompt) {
    return prompt.includes('Bo') ? { error: 'connect ECONNREFUSED 127.0.0.1:1' } : { output: 'fine, ' + prompt };
  }
};
"""


def grader_answer(messages: list[dict]) -> str:
    """A grader that fails to give a verdict for "is polite" and fails "is rude" with a reason."""
    text = "\n".join(str(m.get("content")) for m in messages)
    if "is polite" in text:
        return "I am not sure what to say."
    return json.dumps({"pass": False, "score": 0.0, "reason": "stub grader: not rude at all"})


def test_a_provider_or_grader_error_is_an_error_and_grader_reasons_are_feedback(tmp_path):
    from chatstub import ChatStub

    repo = write_files(tmp_path / "repo", {"provider.js": FLAKY_PROVIDER, "promptfooconfig.yaml": """
prompts: ["Hello {{who}}"]
providers: [file://provider.js]
tests:
  - description: provider error on one row
    vars: {who: [Ana, Bo]}
    assert: [{type: contains, value: fine}]
  - description: grader error
    vars: {who: Cy}
    assert: [{type: contains, value: fine}, {type: llm-rubric, value: is polite}]
  - description: graded fail
    vars: {who: Di}
    assert: [{type: llm-rubric, value: is rude}]
  - description: plain fail
    vars: {who: Ed}
    assert: [{type: contains, value: nope}]
"""})
    grader = ChatStub(grader_answer)
    try:
        config = PromptfooSuiteConfig(type="promptfoo", command=str(PROMPTFOO), grader="task_model")
        suite = PromptfooSuite(SuiteContext(repo=repo, model="openai/stub", api_base=grader.url, api_key="k"), config)
        ids = [i.id for i in suite.list_instances()]
        results = suite.evaluate(materialize(repo, {}, {}, tmp_path / "work"), ids)
    finally:
        grader.close()
    assert {i: (r.score, r.failed) for i, r in results.items()} == {
        "provider error on one row": (0.0, True), "grader error": (0.0, True),
        "graded fail": (0.0, False), "plain fail": (0.0, False)}
    assert "ERROR: connect ECONNREFUSED" in results["provider error on one row"].feedback
    assert "Ana" not in results["provider error on one row"].feedback  # the row that answered is no error
    assert "grader error in [llm-rubric]: Could not extract JSON" in results["grader error"].feedback
    assert "- [llm-rubric] stub grader: not rude at all" in results["graded fail"].feedback
    assert "- [contains] Expected output to contain \"nope\"" in results["plain fail"].feedback
