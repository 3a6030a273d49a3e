"""The pytest adapter against a real tiny repository and real pytest subprocesses."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from gepa_bot.config import PytestSuiteConfig
from gepa_bot.evals.junit_suite import PytestSuite, junit_key
from gepa_bot.evals.registry import build_suite
from gepa_bot.evals.suite import SuiteContext, SuiteError, materialize

FIXTURE = Path(__file__).parent / "fixtures" / "pytest_repo"
PROMPT_PATH = "prompts/classify.txt"
PYTHON = sys.executable

ALL_IDS = [
    "evals/check_prompt.py::test_lists_every_label",
    "evals/check_prompt.py::test_keeps_ticket_placeholder",
    "evals/check_prompt.py::test_instruction_phrase[label only]",
    "evals/check_prompt.py::test_instruction_phrase[exactly one]",
    "evals/check_prompt.py::test_brevity",
    "evals/check_prompt.py::test_sees_candidate",
    "evals/check_prompt.py::test_needs_network",
    "evals/check_prompt.py::TestFormat::test_no_trailing_spaces",
    "evals/nested/check_ids.py::test_odd_ids[a/b::c]",
    "evals/nested/check_ids.py::test_odd_ids[x [y]]",
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(FIXTURE, target)
    return target


def make_suite(repo: Path, **overrides) -> PytestSuite:
    config = PytestSuiteConfig.model_validate({"type": "pytest", "python": PYTHON, **overrides})
    return build_suite(config, SuiteContext(repo=repo, model="openai/fake-model"))


def workdir_with(repo: Path, tmp_path: Path, prompt: str):
    return materialize(repo, {PROMPT_PATH: prompt}, {"classify": prompt}, tmp_path / "work")


def test_config_is_strict_and_has_defaults():
    config = PytestSuiteConfig(type="pytest")
    assert (config.args, config.python, config.watch, config.timeout) == ([], "python", ["**/*.py"], 600)
    with pytest.raises(ValidationError):
        PytestSuiteConfig.model_validate({"type": "pytest", "argz": ["tests"]})
    with pytest.raises(ValidationError):
        PytestSuiteConfig.model_validate({"type": "command"})
    with pytest.raises(ValidationError, match="relative to the repo root"):
        PytestSuiteConfig.model_validate({"type": "pytest", "watch": ["../elsewhere/*.py"]})
    with pytest.raises(ValidationError):
        PytestSuiteConfig.model_validate({"type": "pytest", "timeout": 0})


def test_lists_one_instance_per_node_id(repo: Path):
    instances = make_suite(repo).list_instances()
    assert [i.id for i in instances] == ALL_IDS
    assert not list(repo.rglob("__pycache__")) and not (repo / ".pytest_cache").exists()


def test_args_select_and_filter(repo: Path):
    suite = make_suite(repo, args=["evals/check_prompt.py", "-k", "phrase or brevity"])
    assert [i.id for i in suite.list_instances()] == [
        "evals/check_prompt.py::test_instruction_phrase[label only]",
        "evals/check_prompt.py::test_instruction_phrase[exactly one]",
        "evals/check_prompt.py::test_brevity",
    ]


def test_collection_failure_is_a_suite_error_quoting_pytest(repo: Path):
    (repo / "evals" / "check_broken.py").write_text("import not_a_module_anywhere\n", encoding="utf-8")
    with pytest.raises(SuiteError) as excinfo:
        make_suite(repo).list_instances()
    assert "not_a_module_anywhere" in str(excinfo.value)


def test_no_tests_collected_is_a_suite_error(repo: Path):
    with pytest.raises(SuiteError, match="no tests were collected"):
        make_suite(repo, args=["-k", "matches_nothing_at_all"]).list_instances()


def test_evaluate_seed_prompt(repo: Path, tmp_path: Path):
    suite = make_suite(repo)
    seed = (repo / PROMPT_PATH).read_text(encoding="utf-8")
    results = suite.evaluate(workdir_with(repo, tmp_path, seed), ALL_IDS)
    assert set(results) == set(ALL_IDS)
    passing = [i for i in ALL_IDS if "brevity" not in i and "network" not in i]
    assert {i: results[i].score for i in passing} == {i: 1.0 for i in passing}
    assert not any(results[i].failed for i in passing)

    words = len(seed.split())
    brevity = results["evals/check_prompt.py::test_brevity"]
    assert brevity.score == pytest.approx(round(20 / words, 3)) and 0 < brevity.score < 1
    assert f"prompt has {words} words" in brevity.feedback and not brevity.failed

    skipped = results["evals/check_prompt.py::test_needs_network"]
    assert skipped.failed and skipped.score == 0.0 and "needs network access" in skipped.feedback

    sees = results["evals/check_prompt.py::test_sees_candidate"]
    assert "mode=evaluate components=['classify']" in sees.feedback


def test_evaluate_bad_candidate_gives_assertion_and_stdout_feedback(repo: Path, tmp_path: Path):
    suite = make_suite(repo)
    bad = "Say something about the ticket.   \nTicket: {ticket}\n"
    ids = ["evals/check_prompt.py::test_lists_every_label",
           "evals/check_prompt.py::test_instruction_phrase[label only]",
           "evals/check_prompt.py::TestFormat::test_no_trailing_spaces",
           "evals/check_prompt.py::test_keeps_ticket_placeholder",
           "evals/check_prompt.py::test_brevity",
           "evals/nested/check_ids.py::test_odd_ids[a/b::c]"]
    results = suite.evaluate(workdir_with(repo, tmp_path, bad), ids)
    labels = results["evals/check_prompt.py::test_lists_every_label"]
    assert labels.score == 0.0 and not labels.failed
    assert "labels missing from the prompt: ['billing', 'technical', 'account']" in labels.feedback
    assert "captured stdout" in labels.feedback and f"prompt has {len(bad)} chars" in labels.feedback
    assert results["evals/check_prompt.py::test_instruction_phrase[label only]"].score == 0.0
    assert "trailing whitespace on lines [1]" in results[
        "evals/check_prompt.py::TestFormat::test_no_trailing_spaces"].feedback
    assert results["evals/check_prompt.py::test_keeps_ticket_placeholder"].score == 1.0
    assert results["evals/check_prompt.py::test_brevity"].score == 1.0  # 7 words <= 20
    assert results["evals/nested/check_ids.py::test_odd_ids[a/b::c]"].score == 0.0
    # the real repository was not touched by the candidate
    assert "billing" in (repo / PROMPT_PATH).read_text(encoding="utf-8")


def test_evaluate_runs_only_requested_ids(repo: Path, tmp_path: Path):
    suite = make_suite(repo)
    ids = ["evals/nested/check_ids.py::test_odd_ids[x [y]]"]
    results = suite.evaluate(workdir_with(repo, tmp_path, (repo / PROMPT_PATH).read_text()), ids)
    assert list(results) == ids and results[ids[0]].score == 1.0


def test_junit_key_mirrors_pytest_mangling():
    assert junit_key("tests/sub/test_x.py::TestA::test_b[p/q::r]") == ("tests.sub.test_x.TestA", "test_b[p/q::r]")
    assert junit_key("test_x.py::test_y") == ("test_x", "test_y")
    assert junit_key("t.py::test_z[\x07]") == ("t", "test_z[#x07]")


def write_repo(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def test_bad_scores_errors_and_multiple_properties(tmp_path: Path):
    repo = write_repo(tmp_path / "repo", {
        "prompt.txt": "hello",
        "test_scores.py": """
            import pytest

            @pytest.fixture
            def broken():
                raise RuntimeError("fixture exploded")

            def test_too_high(record_property):
                record_property("gepa_score", 1.5)

            def test_not_a_number(record_property):
                record_property("gepa_score", "lots")

            def test_failed_but_partial(record_property):
                record_property("gepa_score", 0.25)
                record_property("gepa_feedback", "first note")
                record_property("gepa_feedback", "second note")
                assert False, "wrong answer"

            def test_setup_error(broken, record_property):
                record_property("gepa_score", 1.0)
        """})
    suite = make_suite(repo)
    ids = [i.id for i in suite.list_instances()]
    results = suite.evaluate(workdir_with(repo, tmp_path, "hi"), ids)
    too_high = results["test_scores.py::test_too_high"]
    assert too_high.failed and too_high.score == 0.0 and "outside [0, 1]" in too_high.feedback
    assert "is not a number" in results["test_scores.py::test_not_a_number"].feedback
    partial = results["test_scores.py::test_failed_but_partial"]
    assert partial.score == 0.25 and not partial.failed
    assert partial.feedback == "first note\nsecond note"  # the test's own feedback, none of pytest's text
    errored = results["test_scores.py::test_setup_error"]
    assert errored.failed and errored.score == 0.0 and "fixture exploded" in errored.feedback


def test_crash_and_timeout_become_failures_with_process_text(tmp_path: Path):
    repo = write_repo(tmp_path / "repo", {
        "prompt.txt": "hello",
        "test_crash.py": """
            import os, sys, time

            def test_crash():
                sys.stderr.write("about to die\\n"); sys.stderr.flush()
                if os.environ.get("GEPA_BOT_MODE") == "evaluate":
                    os._exit(3)

            def test_slow():
                if os.environ.get("GEPA_BOT_MODE") == "evaluate":
                    time.sleep(60)
        """})
    suite = make_suite(repo, timeout=5)
    crash = suite.evaluate(workdir_with(repo, tmp_path, "x"), ["test_crash.py::test_crash"])["test_crash.py::test_crash"]
    assert crash.failed and "exited with code 3" in crash.feedback and "no JUnit XML" in crash.feedback
    slow = suite.evaluate(workdir_with(repo, tmp_path, "x"), ["test_crash.py::test_slow"])["test_crash.py::test_slow"]
    assert slow.failed and "timed out after 5s" in slow.feedback


@pytest.mark.slow
def test_id_missing_from_workdir_and_candidate_collection_error(tmp_path: Path):
    repo = write_repo(tmp_path / "repo", {
        "prompt.py": "GREETING = 'hello'\n",
        "test_prompt.py": """
            from prompt import GREETING

            def test_greeting():
                assert GREETING.startswith("hello")
        """})
    suite = make_suite(repo)
    assert [i.id for i in suite.list_instances()] == ["test_prompt.py::test_greeting"]
    workdir = materialize(repo, {"prompt.py": "GREETING = 'unterminated\n"}, {"p": "x"}, tmp_path / "work")
    results = suite.evaluate(workdir, ["test_prompt.py::test_greeting", "test_prompt.py::test_gone"])
    for result in results.values():
        assert result.failed and "SyntaxError" in result.feedback


def test_fingerprint_follows_watched_files_and_args(repo: Path):
    base = make_suite(repo).fingerprint()
    assert make_suite(repo).fingerprint() == base
    assert make_suite(repo, args=["evals/nested"]).fingerprint() != base
    (repo / "evals" / "check_prompt.py").write_text("# changed\n", encoding="utf-8")
    assert make_suite(repo).fingerprint() != base


def test_assertion_failures_are_scores_and_other_exceptions_are_errors(tmp_path: Path):
    """pytest writes an exception in the test body as <failure> too: only an assertion (or pytest.fail) is a 0."""
    repo = write_repo(tmp_path / "repo", {
        "prompt.txt": "hello",
        "test_kinds.py": """
            import pytest

            @pytest.fixture
            def broken():
                raise OSError("grader unreachable")

            def test_assertion():
                assert "metres" == "feet", "expected metres"

            def test_pytest_fail():
                pytest.fail("reply was not a number")

            def test_model_unreachable(record_property):
                record_property("gepa_score", 1.0)
                raise ConnectionError("task model at 127.0.0.1:9 refused the connection")

            def test_fixture_error(broken):
                pass

            def test_passes():
                pass
        """})
    suite = make_suite(repo)
    results = suite.evaluate(workdir_with(repo, tmp_path, "hi"), [i.id for i in suite.list_instances()])
    scored = {k.split("::")[1]: (r.score, r.failed) for k, r in results.items()}
    assert scored == {"test_assertion": (0.0, False), "test_pytest_fail": (0.0, False),
                      "test_model_unreachable": (0.0, True), "test_fixture_error": (0.0, True),
                      "test_passes": (1.0, False)}
    unreachable = results["test_kinds.py::test_model_unreachable"].feedback
    assert "test raised ConnectionError, not an assertion failure" in unreachable
    assert "refused the connection" in unreachable
    assert "grader unreachable" in results["test_kinds.py::test_fixture_error"].feedback
    assert "expected metres" in results["test_kinds.py::test_assertion"].feedback


def test_feedback_is_the_recorded_text_or_a_short_assertion_message(tmp_path: Path):
    repo = write_repo(tmp_path / "repo", {
        "prompt.txt": "hello",
        "test_noise.py": """
            import pytest

            def is_number(text):
                return text.replace(".", "").isdigit()

            class Checker:
                def __call__(self, text):
                    return is_number(text)

            @pytest.mark.parametrize("quantity", ["6 feet"])
            def test_plain(quantity, record_property):
                reply, check = "about two metres", Checker()
                assert check(reply), f"{quantity}: reply was {reply!r}"

            def test_recorded(record_property):
                record_property("gepa_feedback", "expected 1.83 metres as a bare number, reply was 'two'")
                assert is_number("two"), "this assertion text is not the feedback"

            def test_long():
                assert False, "line\\n" * 500
        """})
    suite = make_suite(repo)
    results = suite.evaluate(workdir_with(repo, tmp_path, "hi"), [i.id for i in suite.list_instances()])
    plain = results["test_noise.py::test_plain[6 feet]"]
    assert plain.score == 0.0 and not plain.failed
    assert plain.feedback.startswith("test failed\nAssertionError: 6 feet: reply was 'about two metres'")
    assert "<test_noise.Checker object>('about two metres')" in plain.feedback  # pytest wrote "object at 0x7f..."
    for noise in ("def test_", "record_property", " at 0x", "check(reply), f", "test_noise.py:"):
        assert noise not in plain.feedback, noise
    recorded = results["test_noise.py::test_recorded"]
    assert recorded.feedback == "expected 1.83 metres as a bare number, reply was 'two'" and recorded.score == 0.0
    long = results["test_noise.py::test_long"].feedback
    assert long.count("line") <= 12 and len(long) < 1000


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pytest-metres"
EXAMPLE_ID = "tests/test_convert.py::test_converts_to_metres[{}]"


def example_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXAMPLE, tmp_path / "pytest-metres"))


def test_example_lists_its_cases_and_errors_without_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GEPA_BOT_MODEL", raising=False)
    repo = example_copy(tmp_path)
    config = PytestSuiteConfig.model_validate({"type": "pytest", "python": PYTHON, "args": ["tests"]})
    suite = build_suite(config, SuiteContext(repo=repo))  # no task model
    ids = [i.id for i in suite.list_instances()]
    assert len(ids) == 20 and ids[0] == EXAMPLE_ID.format("6 feet") and len(set(ids)) == 20
    seed = (repo / "prompts" / "convert.md").read_text(encoding="utf-8")
    results = suite.evaluate(materialize(repo, {"prompts/convert.md": seed}, {"convert": seed}, tmp_path / "work"),
                             ids[:3])
    for result in results.values():
        assert result.failed and "test raised RuntimeError" in result.feedback
        assert "GEPA_BOT_MODEL is not set" in result.feedback


def test_example_scores_a_stub_model_with_its_own_feedback(tmp_path: Path):
    from chatstub import ChatStub

    replies = {"6 feet": "1.83", "3 yards": "About 2.74 metres.", "1 mile": "1500", "12 inches": "0.3048"}
    stub = ChatStub(lambda messages: replies[str(messages[-1]["content"]).splitlines()[0]])
    repo = example_copy(tmp_path)
    try:
        config = PytestSuiteConfig.model_validate({"type": "pytest", "python": PYTHON, "args": ["tests"]})
        suite = build_suite(config, SuiteContext(repo=repo, model="openai/stub", api_base=stub.url, api_key="k"))
        ids = [EXAMPLE_ID.format(q) for q in replies]
        seed = (repo / "prompts" / "convert.md").read_text(encoding="utf-8")
        results = suite.evaluate(materialize(repo, {"prompts/convert.md": seed}, {"c": seed}, tmp_path / "w"), ids)
    finally:
        stub.close()
    got = {i.split("[")[1][:-1]: (r.score, r.failed, r.feedback) for i, r in results.items()}
    assert got["6 feet"][:2] == got["12 inches"][:2] == (1.0, False)
    assert got["3 yards"] == (0.0, False, "3 yards: expected 2.74 metres as a bare number, reply was "
                              "'About 2.74 metres.' (not a bare number); answer with the number of metres only, "
                              "no unit")
    assert got["1 mile"] == (0.0, False, "1 mile: expected 1609 metres as a bare number, reply was '1500' (wrong value)")
