"""The promptfoo adapter: real configs, real assertion scoring, a deterministic fake task model."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from gepa_bot.evalsuite import SuiteContext, SuiteError, materialize
from gepa_bot.suites import promptfoo_suite
from gepa_bot.suites.promptfoo_suite import (Assertion, PromptfooSuite, PromptfooSuiteConfig, check,
                                             extract_json_objects, levenshtein, load_config)

FIXTURES = Path(__file__).parent / "fixtures" / "promptfoo"
TRIAGE_PROMPT = "prompts/triage.txt"

# Canned task-model answers keyed by a phrase of the rendered prompt (the ticket). The expected scores in
# test_support_triage_scores_match_promptfoo were produced by promptfoo 0.121.20 itself (`promptfoo eval`
# with a custom provider returning exactly these strings), so they pin promptfoo's semantics.
CANNED = {
    "charged twice": lambda prompt: '{"label": "billing", "reason": "Duplicate charge on an order."}',
    "crashes": lambda prompt: 'Sure! {"label": "technical", "reason": "crash"}',
    "log in": lambda prompt: ('{"label": "account", "reason": "Login problem after an email change."}'
                              if "from Ana:" in prompt else "As an AI, I think billing."),
    "word ok": lambda prompt: "okay",
    "Say hi": lambda prompt: "hi",
}


class FakeModel:
    """Stands in for litellm.completion behind the adapter's ``complete`` seam; records every call."""

    def __init__(self, answer=None, error: Exception | None = None):
        self.answer = answer
        self.error = error
        self.calls: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, messages, **kwargs):
        with self.lock:
            self.calls.append({"messages": messages, **kwargs})
        if self.error:
            raise self.error
        prompt = messages[-1]["content"]
        if self.answer is not None:
            return self.answer(prompt) if callable(self.answer) else self.answer
        return next((reply(prompt) for key, reply in CANNED.items() if key in prompt), "no idea")


@pytest.fixture
def fake(monkeypatch) -> FakeModel:
    model = FakeModel()
    monkeypatch.setattr(promptfoo_suite, "complete", model)
    return model


def repo_copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def make_suite(repo: Path, config: str = "promptfooconfig.yaml", **kwargs) -> PromptfooSuite:
    cfg = PromptfooSuiteConfig(type="promptfoo", config=config)
    context = SuiteContext(repo=repo, model="openai/fake-model", api_base="http://localhost:1", api_key="k")
    return PromptfooSuite(context, cfg, **kwargs)


def workdir(repo: Path, tmp_path: Path, files: dict[str, str] | None = None):
    files = files or {TRIAGE_PROMPT: (repo / TRIAGE_PROMPT).read_text(encoding="utf-8")}
    return materialize(repo, files, dict(files), tmp_path / "work")


def test_config_model():
    config = PromptfooSuiteConfig(type="promptfoo")
    assert (config.config, config.timeout, config.max_tokens) == ("promptfooconfig.yaml", 120, 256)
    with pytest.raises(ValidationError):
        PromptfooSuiteConfig.model_validate({"type": "promptfoo", "providers": ["x"]})
    with pytest.raises(ValidationError, match="relative to the repo root"):
        PromptfooSuiteConfig.model_validate({"type": "promptfoo", "config": "../other/promptfooconfig.yaml"})
    suite = config.model_copy(update={"config": "promptfooconfig.yaml"}).build(
        SuiteContext(repo=FIXTURES / "init-native", model="m"))
    assert isinstance(suite, PromptfooSuite)


def test_init_default_config_is_rejected_up_front_with_every_unsupported_assertion():
    with pytest.raises(SuiteError) as excinfo:
        make_suite(FIXTURES / "init-default")
    message = str(excinfo.value)
    assert "test 2, assertion 2: type 'javascript' (code execution: excluded on purpose)" in message
    assert "test 3, assertion 1: type 'llm-rubric'" in message
    assert "excluded on purpose" in message and "command adapter" in message
    assert message.count("\n  - ") == 2


def test_support_triage_instances_are_stable_and_expanded(fake):
    suite = make_suite(FIXTURES / "support-triage")
    ids = [i.id for i in suite.list_instances()]
    assert ids == ["test-01-double-charge", "test-02-app-crash", "test-03-v1", "test-03-v2",
                   "test-04-exact-answer"]
    assert ids == [i.id for i in make_suite(FIXTURES / "support-triage").list_instances()]
    assert fake.calls == []  # listing never calls the model


def test_support_triage_scores_match_promptfoo(fake, tmp_path: Path):
    repo = repo_copy(tmp_path, "support-triage")
    suite = make_suite(repo)
    ids = [i.id for i in suite.list_instances()]
    results = suite.evaluate(workdir(repo, tmp_path), ids)
    # promptfoo 0.121.20: scores 1, 0.5, 1, 0, 0.75 for the same outputs (weight 2 on icontains is
    # irrelevant in test 1 because everything passes)
    assert {i: r.score for i, r in results.items()} == {
        "test-01-double-charge": 1.0, "test-02-app-crash": 0.5, "test-03-v1": 1.0, "test-03-v2": 0.0,
        "test-04-exact-answer": 0.75}
    assert not any(r.failed for r in results.values())

    crash = results["test-02-app-crash"].feedback
    assert "FAIL: score 0.50 (2/4 assertions passed)" in crash
    assert "expected output to be valid JSON" in crash
    assert "expected output to match regex" in crash
    assert "vars: customer='a customer', ticket='The app crashes whenever I open my cart.'" in crash

    bo = results["test-03-v2"].feedback
    assert "threshold 0.5" in bo and "customer='Bo'" in bo
    assert "expected output not to contain 'as an ai' (any case), got: 'As an AI, I think billing.'" in bo
    assert "expected output not to contain one of ['billing', 'refund']" in bo
    assert "expected output to start with '{'" in bo

    exact = results["test-04-exact-answer"]
    assert "expected output to equal 'ok', got: 'okay'" in exact.feedback
    assert exact.output == "okay" and [a["pass"] for a in exact.trace[0]["assertions"]] == [False, True, True, True]

    # the prompt was rendered with defaultTest vars merged under the test's vars, and sent with our settings
    sent = {c["messages"][0]["content"] for c in fake.calls}
    assert "Ticket from a customer: I was charged twice for my order last week.\n" in "\n".join(sent)
    assert any("Ticket from Bo: I cannot log in" in s for s in sent)
    call = fake.calls[0]
    assert (call["model"], call["api_base"], call["api_key"], call["max_tokens"]) == (
        "openai/fake-model", "http://localhost:1", "k", 256)


def test_weights_change_the_score(tmp_path: Path, monkeypatch):
    repo = repo_copy(tmp_path, "support-triage")
    # billing answer in prose: is-json and contains-json fail, not-icontains passes, icontains (weight 2) passes
    monkeypatch.setattr(promptfoo_suite, "complete", FakeModel(answer="This is about billing."))
    result = make_suite(repo).evaluate(workdir(repo, tmp_path), ["test-01-double-charge"])["test-01-double-charge"]
    assert result.score == pytest.approx(3 / 5)
    assert "expected output to contain JSON matching the schema" not in result.feedback
    assert "expected output to contain valid JSON" in result.feedback
    assert "[weight" not in result.feedback  # the weighted one passed


def test_candidate_prompt_is_read_from_the_workdir(fake, tmp_path: Path):
    repo = repo_copy(tmp_path, "support-triage")
    suite = make_suite(repo)
    candidate = "Label this ticket ({{ customer | upper }}): {{ticket}} {{ missing_var }}!"
    wd = workdir(repo, tmp_path, {TRIAGE_PROMPT: candidate})
    fake.answer = '{"label": "account", "reason": "Login problem after an email change."}'
    results = suite.evaluate(wd, ["test-03-v1"])
    assert fake.calls[0]["messages"] == [
        {"role": "user", "content": "Label this ticket (ANA): I cannot log in after changing my email. !"}]
    assert results["test-03-v1"].score == 1.0
    assert "{{" in (repo / TRIAGE_PROMPT).read_text() and "Label this" not in (repo / TRIAGE_PROMPT).read_text()


def test_csv_tests_and_expected_syntax(fake, tmp_path: Path):
    repo = repo_copy(tmp_path, "support-triage")
    suite = make_suite(repo, "promptfooconfig-csv.yaml")
    ids = [i.id for i in suite.list_instances()]
    assert ids == ["test-01-charged-twice", "test-02-app-crash", "test-03-plain-equals"]
    loaded = load_config(repo, "promptfooconfig-csv.yaml")
    assert [(a.type, a.value) for a in loaded.tests[1].asserts] == [
        ("contains-any", ["technical", "crash"]), ("regex", '"label":\\s*"technical"')]
    results = suite.evaluate(workdir(repo, tmp_path), ids)
    assert {i: r.score for i, r in results.items()} == {i: 1.0 for i in ids}  # promptfoo agrees: all pass


def test_init_native_two_inline_prompts_average(tmp_path: Path, monkeypatch):
    repo = repo_copy(tmp_path, "init-native")
    model = FakeModel(answer=lambda p: "Avocado toast is life" if p.startswith("Write a tweet") else "Toast.")
    monkeypatch.setattr(promptfoo_suite, "complete", model)
    suite = make_suite(repo)
    assert [i.id for i in suite.list_instances()] == ["test-01", "test-02", "test-03"]
    results = suite.evaluate(materialize(repo, {}, {}, tmp_path / "work"), ["test-01", "test-02"])
    assert results["test-02"].score == 0.5  # passes with the first prompt, fails with the second
    assert "[prompt Write a concise, funny tweet about {{topic}}]" in results["test-02"].feedback
    assert "expected output to contain 'avocado' (any case), got: 'Toast.'" in results["test-02"].feedback
    assert results["test-01"].score == 1.0 and "no assertions" in results["test-01"].feedback
    assert len(model.calls) == 4


def test_inline_prompt_edits_in_the_workdir_config_are_evaluated(tmp_path: Path, monkeypatch):
    repo = repo_copy(tmp_path, "init-native")
    model = FakeModel(answer=lambda p: p)  # echo
    monkeypatch.setattr(promptfoo_suite, "complete", model)
    config = (repo / "promptfooconfig.yaml").read_text().replace('"Write a tweet about {{topic}}"',
                                                                  '"Tweet: {{topic}} and AVOCADO"')
    wd = materialize(repo, {"promptfooconfig.yaml": config}, {"config": config}, tmp_path / "work")
    assert make_suite(repo).evaluate(wd, ["test-02"])["test-02"].score == 1.0
    assert model.calls[0]["messages"][0]["content"] == "Tweet: avocado toast and AVOCADO"


def test_litellm_mock_response_through_completion_kwargs(tmp_path: Path):
    repo = repo_copy(tmp_path, "support-triage")
    answer = '{"label": "billing", "reason": "Charged twice for one order."}'
    suite = make_suite(repo, completion_kwargs={"mock_response": answer})
    results = suite.evaluate(workdir(repo, tmp_path), ["test-01-double-charge", "test-02-app-crash"])
    assert results["test-01-double-charge"].score == 1.0
    assert results["test-01-double-charge"].output == answer
    crash = results["test-02-app-crash"]
    assert crash.score == pytest.approx(3 / 4)  # valid JSON, no "as an ai", reason long enough; wrong label
    assert "expected output to contain '\"label\": \"technical\"'" in crash.feedback


def test_model_errors_become_failures(tmp_path: Path, monkeypatch):
    repo = repo_copy(tmp_path, "support-triage")
    monkeypatch.setattr(promptfoo_suite, "complete", FakeModel(error=TimeoutError("model took too long")))
    results = make_suite(repo).evaluate(workdir(repo, tmp_path), ["test-01-double-charge", "no-such-test"])
    err = results["test-01-double-charge"]
    assert err.failed and err.score == 0.0 and "TimeoutError: model took too long" in err.feedback
    assert "ticket='I was charged twice" in err.feedback
    assert results["no-such-test"].failed


def test_real_litellm_exception_becomes_failure(tmp_path: Path):
    repo = repo_copy(tmp_path, "support-triage")
    suite = make_suite(repo, completion_kwargs={"mock_response": Exception("upstream 503")})
    result = suite.evaluate(workdir(repo, tmp_path), ["test-02-app-crash"])["test-02-app-crash"]
    assert result.failed and "upstream 503" in result.feedback


def test_broken_candidate_template_fails_only_that_evaluation(fake, tmp_path: Path):
    repo = repo_copy(tmp_path, "support-triage")
    results = make_suite(repo).evaluate(workdir(repo, tmp_path, {TRIAGE_PROMPT: "{{ ticket "}), ["test-01-double-charge"])
    assert results["test-01-double-charge"].failed and "does not render" in results["test-01-double-charge"].feedback


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_unsupported_everything_is_reported_together(tmp_path: Path):
    repo = write(tmp_path / "r", {
        "p.txt": "{{q}}",
        "cases.yaml": "- vars: {q: x}\n  assert:\n    - type: python\n      value: len(output) < 5\n",
        "promptfooconfig.yaml": """
prompts: [file://p.txt, file://prompts.py:make_prompt]
defaultTest:
  assert:
    - type: similar
      value: hello
tests:
  - vars: {q: a}
    assert:
      - type: not-javascript
        value: output.length > 3
      - type: contains
        value: a
        transform: output.trim()
  - file://cases.yaml
""",
    })
    with pytest.raises(SuiteError) as excinfo:
        make_suite(repo)
    message = str(excinfo.value)
    for expected in ("prompt 2: file://prompts.py:make_prompt is a code prompt",
                     "defaultTest, assertion 1: type 'similar'",
                     "test 1, assertion 1: type 'not-javascript' (code execution: excluded on purpose)",
                     "test 1, assertion 2: `transform` (JavaScript) is not supported",
                     "test 2 in cases.yaml, assertion 1: type 'python' (code execution: excluded on purpose)"):
        assert expected in message
    assert message.count("\n  - ") == 5


def test_tests_file_prompt_file_split_and_file_vars(tmp_path: Path, monkeypatch):
    repo = write(tmp_path / "r", {
        "evals/prompts.txt": "Short: {{doc}}\n---\nLong: {{doc}}",
        "evals/doc.txt": "the quarterly report",
        "evals/tests.yaml": "- description: Report!\n  vars: {doc: file://doc.txt}\n  assert:\n"
                            "    - {type: icontains, value: '{{doc}}'}\n",
        "evals/promptfooconfig.yaml": "prompts: file://prompts.txt\ntests: file://tests.yaml\n",
    })
    model = FakeModel(answer=lambda p: p.upper() if p.startswith("Short") else "nothing")
    monkeypatch.setattr(promptfoo_suite, "complete", model)
    suite = make_suite(repo, "evals/promptfooconfig.yaml")
    assert [i.id for i in suite.list_instances()] == ["test-01-report"]
    result = suite.evaluate(materialize(repo, {}, {}, tmp_path / "work"), ["test-01-report"])["test-01-report"]
    assert [c["messages"][0]["content"] for c in model.calls] == ["Short: the quarterly report",
                                                                   "Long: the quarterly report"]
    assert result.score == 0.5
    assert "expected output to contain 'the quarterly report' (any case), got: 'nothing'" in result.feedback
    # data files are part of the fingerprint, the prompt file (the candidate) is not
    before = suite.fingerprint()
    (repo / "evals/prompts.txt").write_text("Other: {{doc}}")
    assert make_suite(repo, "evals/promptfooconfig.yaml").fingerprint() == before
    (repo / "evals/doc.txt").write_text("another doc")
    assert make_suite(repo, "evals/promptfooconfig.yaml").fingerprint() != before


def test_chat_json_prompt_is_sent_as_messages(tmp_path: Path, monkeypatch):
    repo = write(tmp_path / "r", {
        "chat.json": '[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "{{q}}"}]',
        "promptfooconfig.yaml": "prompts: [file://chat.json]\ntests:\n  - vars: {q: hi}\n    assert:\n"
                                "      - {type: equals, value: hello}\n",
    })
    model = FakeModel(answer="hello")
    monkeypatch.setattr(promptfoo_suite, "complete", model)
    result = make_suite(repo).evaluate(materialize(repo, {}, {}, tmp_path / "w"), ["test-01"])["test-01"]
    assert result.score == 1.0
    assert model.calls[0]["messages"] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("assertion", "output", "passed"), [
    (Assertion("equals", "ok"), "ok", True),
    (Assertion("equals", "ok"), "ok\n", False),
    (Assertion("equals", {"a": 1}), '{"a": 1}', True),
    (Assertion("not-equals", "ok"), "nope", True),
    (Assertion("contains", 42), "answer: 42", True),
    (Assertion("contains", "Billing"), "billing", False),
    (Assertion("icontains", "Billing"), "BILLING dept", True),
    (Assertion("not-icontains", "sorry"), "Sorry!", False),
    (Assertion("contains-any", "cat, dog"), "hotdog", True),
    (Assertion("contains-all", ["cat", "dog"]), "cat only", False),
    (Assertion("not-contains-all", ["cat", "dog"]), "cat only", True),
    (Assertion("icontains-any", ["CAT"]), "a cat", True),
    (Assertion("icontains-all", ["CAT", "Dog"]), "dog and cat", True),
    (Assertion("regex", r"^\d{3}-\d{4}$"), "555-1234", True),
    (Assertion("not-regex", r"\d"), "no digits", True),
    (Assertion("starts-with", "{"), ' {"a": 1}', False),
    (Assertion("is-json"), '{"a": [1, 2]}', True),
    (Assertion("is-json"), "{'a': 1}", False),
    (Assertion("is-json", {"type": "object", "required": ["b"]}), '{"a": 1}', False),
    (Assertion("is-json", "type: array\nitems: {type: integer}"), "[1, 2]", True),
    (Assertion("not-is-json"), "plain", True),
    (Assertion("contains-json"), 'Here: {"a": {"b": 2}} done', True),
    (Assertion("contains-json", {"required": ["z"]}), 'x {"a": 1} y {"z": 2}', True),
    (Assertion("contains-json"), "no braces", False),
    (Assertion("levenshtein", "kitten"), "sitting", True),
    (Assertion("levenshtein", "kitten", threshold=2), "sitting", False),
    (Assertion("not-levenshtein", "abc", threshold=0), "abd", True),
])
def test_assertion_semantics(assertion: Assertion, output: str, passed: bool):
    assert check(assertion, output, {}).passed is passed


def test_assertion_values_are_rendered_and_bad_values_fail_cleanly():
    assert check(Assertion("contains", "{{city}}"), "I love Paris", {"city": "Paris"}).passed
    bad = check(Assertion("regex", "(unclosed"), "x", {})
    assert not bad.passed and "invalid regex" in bad.reason
    empty = check(Assertion("contains", ""), "x", {})
    assert not empty.passed and "needs a non-empty string" in empty.reason


def test_helpers():
    assert levenshtein("kitten", "sitting") == 3 and levenshtein("", "abc") == 3
    assert extract_json_objects('a {"x": 1} b {"y": {"z": 2}} { ]') == [{"x": 1}, {"y": {"z": 2}}]
    assert extract_json_objects('{"unclosed": 1') == [{"unclosed": 1}]
