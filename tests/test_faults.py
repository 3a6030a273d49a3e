"""LLM and eval faults, injected through the real litellm transport (litellm's own ``mock_response``).

litellm 1.91.5 (``litellm/main.py``: ``_handle_mock_potential_exceptions`` / ``_handle_mock_timeout``)
raises a real ``litellm.RateLimitError`` / ``litellm.InternalServerError`` for those exact
``mock_response`` strings, re-raises any ``openai.APIError`` instance given as ``mock_response``
(so ``litellm.AuthenticationError(...)``, ``litellm.BadRequestError(...)``,
``litellm.ServiceUnavailableError(...)`` work), and raises ``litellm.Timeout`` for
``mock_timeout=True`` when a ``timeout`` is passed. A dict or ``ModelResponse`` is returned as is,
which lets us send a reply whose content is ``None`` (an "empty" answer). The only scripting is
*which* ``mock_response`` each successive call gets; everything from ``litellm.completion`` through
``default_transport``, the retry policy, the reflector and GEPA is the production code.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import litellm
import pytest
from test_engine import settings_for
from toyrepo import EVAL_PRELUDE, ScriptedReflection, make_toy_repo

from gepa_bot.errors import RunStopped
from gepa_bot.report.render import render
from gepa_bot.runlog import RunLog, read_records
from gepa_bot.search.budget import Budget
from gepa_bot.search.engine import optimize
from gepa_bot.search.errorpolicy import MAX_LLM_FAILURES
from gepa_bot.search.llm import LLM, LLMError, default_transport

MODEL = "openai/toy-reflection"
GOOD = "Rationale: name the topics.\n\n````prompt\nClassify the ticket {ticket} into a queue.\nTopics: billing refund\n````"
MESSAGES = [{"role": "user", "content": "improve this prompt"}]


def _auth_error() -> Exception:
    return litellm.AuthenticationError(message="Incorrect API key provided", llm_provider="openai", model=MODEL)


def _bad_request() -> Exception:
    return litellm.BadRequestError(message="max_tokens is too large", llm_provider="openai", model=MODEL)


TRANSIENT = {
    "rate_limit": ("litellm.RateLimitError", "RateLimitError"),
    "5xx": ("litellm.InternalServerError", "InternalServerError"),
    "503": (lambda: litellm.ServiceUnavailableError(message="overloaded", llm_provider="openai", model=MODEL),
            "ServiceUnavailableError"),
    "timeout": ("timeout", "Timeout"),
}


class MockedLitellm:
    """A transport that calls the real ``default_transport`` with the next scripted ``mock_response``.

    A script item is a reply string, ``"timeout"`` (litellm's mock_timeout), an exception factory, or
    a callable ``(messages) -> str`` computing the reply (e.g. the toy repo's scripted reflection).
    The last item repeats forever.
    """

    def __init__(self, *script):
        self.script = list(script)
        self.calls: list[list[dict[str, str]]] = []
        self.params: list[dict] = []

    def __call__(self, model, messages, **params):
        item = self.script[min(len(self.calls), len(self.script) - 1)]
        self.calls.append(messages)
        self.params.append(params)
        if item == "timeout":
            params.setdefault("timeout", 0.01)  # litellm's mock sleeps for the timeout, then raises Timeout
            return default_transport(model, messages, mock_response="unused", mock_timeout=True, **params)
        if isinstance(item, ScriptedReflection):
            item = item(model, messages, **params).text  # the toy repo's reflection decides the text
        elif callable(item):
            item = item()  # a fresh exception (or response object) per call
        return default_transport(model, messages, mock_response=item, **params)


def _llm(tmp_path: Path, transport, attempts: int = 4, min_wait: float = 0.02) -> tuple[LLM, RunLog, Budget]:
    budget = Budget(max_rollouts=10)
    runlog = RunLog(tmp_path / "run")
    return LLM(MODEL, budget, runlog, transport=transport, attempts=attempts, min_wait=min_wait), runlog, budget


# --- the retry policy at the seam -----------------------------------------------------------------

@pytest.mark.parametrize("fault", list(TRANSIENT))
def test_transient_errors_are_retried_with_backoff_and_the_reply_is_used(tmp_path, fault):
    mock, _ = TRANSIENT[fault]
    transport = MockedLitellm(mock, mock, GOOD)
    llm, runlog, budget = _llm(tmp_path, transport, min_wait=0.05)

    started = time.monotonic()
    reply = llm.complete(MESSAGES)
    elapsed = time.monotonic() - started
    runlog.close()

    assert reply.text == GOOD and reply.completion_tokens > 0
    assert len(transport.calls) == 3
    assert elapsed >= 0.05 + 0.10  # exponential backoff: 1x then 2x min_wait before attempts 2 and 3
    logged = list(read_records(tmp_path / "run", "llm"))
    assert [r["text"] for r in logged] == [GOOD]  # only the successful answer is written ahead
    assert budget.llm_calls == 1


@pytest.mark.parametrize("fault", ["rate_limit", "5xx", "timeout"])
def test_transient_errors_give_up_after_the_configured_attempts(tmp_path, fault):
    mock, name = TRANSIENT[fault]
    transport = MockedLitellm(mock)
    llm, runlog, budget = _llm(tmp_path, transport, attempts=3, min_wait=0.001)

    with pytest.raises(LLMError, match=rf"still failing after 3 attempts: {name}"):
        llm.complete(MESSAGES)
    runlog.close()
    assert len(transport.calls) == 3
    assert list(read_records(tmp_path / "run", "llm")) == [] and budget.llm_calls == 0


def test_a_call_the_wall_time_cap_cuts_is_a_budget_stop_not_a_model_failure(tmp_path):
    """Seen in the quick start: the last reflection call, cut by the 9-minute cap, was retried 4 times and reported
    as "LLM call failed ... check the model name, the API key" (and counted toward the error rate)."""
    from gepa_bot.search.budget import BudgetExhausted
    from gepa_bot.search.errorpolicy import ErrorPolicy

    def slow_then_timeout(model, messages, **params):
        transport.calls.append(messages)
        time.sleep(params["timeout"])  # the server answers nothing before the (cap-shortened) timeout
        raise TimeoutError("timed out")

    transport = SimpleNamespace(calls=[])
    budget = Budget(max_rollouts=10, max_seconds=0.3)
    errors = ErrorPolicy()
    llm = LLM(MODEL, budget, RunLog(tmp_path / "run"), transport=slow_then_timeout, attempts=4, min_wait=0.001,
              errors=errors)
    with pytest.raises(BudgetExhausted, match="wall-time cap"):
        llm.complete(MESSAGES)
    assert len(transport.calls) == 1  # no retry past the cap
    assert errors.llm_failures_in_a_row == 0 and errors.stop_cause is None and budget.llm_calls == 0
    with pytest.raises(BudgetExhausted):  # and no new call once the cap is reached
        llm.complete(MESSAGES)
    assert len(transport.calls) == 1


@pytest.mark.parametrize(("factory", "name"), [(_auth_error, "AuthenticationError"), (_bad_request, "BadRequestError")])
def test_permanent_errors_are_not_retried(tmp_path, factory, name):
    transport = MockedLitellm(factory, GOOD)
    llm, runlog, _ = _llm(tmp_path, transport, min_wait=5.0)  # a retry would take >= 5 s

    started = time.monotonic()
    with pytest.raises(LLMError, match=name):
        llm.complete(MESSAGES)
    runlog.close()
    assert len(transport.calls) == 1 and time.monotonic() - started < 2.0


# --- faults during a whole run --------------------------------------------------------------------

@pytest.fixture
def toy(tmp_path, monkeypatch):
    counter = tmp_path / "counter"
    counter.mkdir()
    monkeypatch.setenv("TOY_COUNTER_DIR", str(counter))
    return make_toy_repo(tmp_path)


@pytest.mark.parametrize("fault", ["rate_limit", "5xx", "timeout"])
def test_transient_llm_fault_mid_run_is_retried_and_the_run_goes_on(toy, tmp_path, fault):
    mock, _ = TRANSIENT[fault]
    scripted = ScriptedReflection()
    transport = MockedLitellm(scripted, mock, scripted)  # 2nd call fails once, then succeeds on retry

    result = optimize(settings_for(toy, tmp_path, transport, budget__rollouts=40))

    assert result.rejected_proposals == []
    assert len(transport.calls) == result.budget.llm_calls + 1 >= 3  # one retry, nothing else lost
    assert transport.calls[1] == transport.calls[2]  # the retry re-sent the same request
    logged = list(read_records(tmp_path / "run", "llm"))
    assert len(logged) == result.budget.llm_calls
    best = result.candidates[result.best_candidate]
    assert best.val_mean > result.candidates[0].val_mean
    assert len(result.candidates) >= 2


def _rollout_keys(run_dir: Path) -> list[tuple[str, str, str]]:
    return sorted((r["candidate"], r["split"], r["id"]) for r in read_records(run_dir, "rollout"))


@pytest.mark.parametrize(("factory", "name"), [(_auth_error, "AuthenticationError"), (_bad_request, "BadRequestError")])
def test_a_reflection_model_that_keeps_failing_stops_the_run_instead_of_reporting_the_baseline(toy, tmp_path, factory,
                                                                                               name):
    """Every call refused (bad key, bad request): not "no gain", a stopped run with its cause (exit code 3)."""
    transport = MockedLitellm(factory)
    with pytest.raises(RunStopped) as stopped:
        optimize(settings_for(toy, tmp_path, transport, budget__rollouts=30))

    assert stopped.value.exit_code == 3
    message = str(stopped.value)
    assert f"the reflection model failed {MAX_LLM_FAILURES} calls in a row" in message and name in message
    assert "Fix: check models.reflection" in message and "\n" not in message
    assert len(transport.calls) == MAX_LLM_FAILURES  # permanent errors: one call each, no retries
    assert not (tmp_path / "run" / "result.json").exists()  # nothing a publish step could mistake for a result
    [record] = read_records(tmp_path / "run", "stopped")
    assert record["cause"].startswith("the reflection model failed")
    seed_keys = {key[0] for key in _rollout_keys(tmp_path / "run")}
    assert len(seed_keys) == 1  # the baseline was scored and logged: a resumed run pays nothing for it again


EMPTY = litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": None}, "finish_reason": "length",
                                        "index": 0}])
BAD_REPLIES = {
    "empty": (lambda: EMPTY, "no fenced prompt block in the reply"),
    "garbled": ("\ufffd\ufffd}{ ``prompt ]]\x07 Classify {ticket ~~ ``` ", "no fenced prompt block in the reply"),
    "truncated": ("Rationale: add topics.\n\n````prompt\nClassify the ticket {ticket} into a queue.\nTopics: bil",
                  "never closed"),
    "drops_placeholder": ("Rationale: shorter.\n\n````prompt\nClassify the ticket into a queue.\n````",
                          "drops placeholder(s) {ticket}"),
    "unchanged": ("Rationale: fine as is.\n\n````prompt\nClassify the ticket {ticket} into a queue.\n````",
                  "identical to the current one"),
}


@pytest.fixture(scope="module")
def no_proposal_run(tmp_path_factory):
    """The reference: a run where every reflection reply is refused, so only the seed is ever evaluated."""
    root = tmp_path_factory.mktemp("reference")
    repo = make_toy_repo(root)
    result = optimize(settings_for(repo, root, MockedLitellm(BAD_REPLIES["unchanged"][0]), budget__rollouts=30))
    return result, _rollout_keys(root / "run")


@pytest.mark.parametrize("kind", list(BAD_REPLIES))
def test_bad_replies_are_rejected_with_a_reason_and_cost_no_rollouts(toy, tmp_path, kind, no_proposal_run):
    reply, reason = BAD_REPLIES[kind]
    transport = MockedLitellm(reply)
    result = optimize(settings_for(toy, tmp_path, transport, budget__rollouts=30))

    rejected = result.rejected_proposals
    assert rejected and all(reason in r.reason for r in rejected)
    assert [r["reason"] for r in read_records(tmp_path / "run", "rejected_proposal")] == [r.reason for r in rejected]
    # reflection_attempts (2): the second try is told why the first was rejected
    assert {r.attempt for r in rejected} == {"1", "2"}
    first_reason = rejected[0].reason
    assert any(f"Your previous answer was rejected: {first_reason}" in m[0]["content"] for m in transport.calls)
    assert len(result.candidates) == 1 and result.best_candidate == 0
    reference, reference_rollouts = no_proposal_run
    assert _rollout_keys(tmp_path / "run") == reference_rollouts  # nothing evaluated beyond the seed
    assert result.budget.rollouts_executed == reference.budget.rollouts_executed
    # every bad reply was paid for and logged, so a resume replays it instead of paying again
    assert len(list(read_records(tmp_path / "run", "llm"))) == len(transport.calls) == len(rejected)


# --- a non-deterministic eval ---------------------------------------------------------------------

FLAKY_EVAL = EVAL_PRELUDE + textwrap.dedent('''
    prompt = Path("prompts/main.txt").read_text().lower()
    calls = Path(os.environ["TOY_FLIP_DIR"])
    for i in Path(os.environ["GEPA_BOT_IDS_FILE"]).read_text().split():
        word = data[i]["keyword"]
        if i in ("i01", "i03"):  # flaky: the verdict flips on every call, whatever the prompt says
            count = calls / i
            n = int(count.read_text()) if count.exists() else 0
            count.write_text(str(n + 1))
            score = float(n % 2)
        else:
            score = 1.0 if word in prompt else 0.0
        print(json.dumps({"id": i, "score": score, "feedback": "ok" if score else f"the prompt should mention '{word}'"}))
''')


def flaky_toy_repo(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """The toy repo with FLAKY_EVAL, and the directory that counts each flaky instance's runs."""
    repo = make_toy_repo(tmp_path)
    (repo / "evals" / "eval.py").write_text(FLAKY_EVAL)
    flips = tmp_path / "flips"
    flips.mkdir()
    monkeypatch.setenv("TOY_FLIP_DIR", str(flips))
    return repo, flips


def test_non_deterministic_eval_is_repeated_and_its_spread_reported(tmp_path, monkeypatch):
    repo, flips = flaky_toy_repo(tmp_path, monkeypatch)

    result = optimize(settings_for(repo, tmp_path, ScriptedReflection(), budget__rollouts=30,
                                   optimizer__eval_repeats=3))

    assert result.eval_repeats == 3
    for candidate in result.candidates:
        for instance_id, entry in candidate.val.items():
            if entry is None:
                continue
            if instance_id in ("i01", "i03"):
                assert entry.stdev > 0 and 0 < entry.score < 1
                assert entry.feedback.startswith("[score varied over 3 repeats")
            else:
                assert entry.stdev == 0.0 and entry.score in (0.0, 1.0)
    # each executed rollout of a flaky instance ran the eval three times
    flaky_rollouts = [r for r in read_records(tmp_path / "run", "rollout") if r["id"] in ("i01", "i03")]
    assert sum(int((flips / i).read_text()) for i in ("i01", "i03")) == 3 * len(flaky_rollouts)

    originals = {path: (repo / path).read_text() for path in result.best_files}
    body, full = render(result, originals)
    for text in (body, full):
        assert "±0.47" in text  # pstdev of three scores (0, 1, 0) or (1, 0, 1)
        assert "2 instance(s) scored differently across 3 repeats" in text and "non-deterministic" in text


def test_changing_eval_repeats_never_serves_the_other_setting_from_the_cache(tmp_path, monkeypatch):
    """Going from 1 to 3 repeats must re-run the evals (a single run's score is not a mean over 3)."""
    repo, flips = flaky_toy_repo(tmp_path, monkeypatch)
    once = optimize(settings_for(repo, tmp_path, ScriptedReflection(), run="one", budget__rollouts=30))
    runs_after_one = sum(int((flips / i).read_text()) for i in ("i01", "i03"))
    three = optimize(settings_for(repo, tmp_path, ScriptedReflection(), run="three", budget__rollouts=30,
                                  optimizer__eval_repeats=3))
    assert sum(int((flips / i).read_text()) for i in ("i01", "i03")) > runs_after_one
    # the baseline was scored again, 3 times per instance: the flaky instances show their spread
    baseline = three.candidates[0].val
    assert baseline["i01"].stdev > 0 and baseline["i03"].stdev > 0
    assert all(e.stdev == 0.0 for e in once.candidates[0].val.values() if e)
