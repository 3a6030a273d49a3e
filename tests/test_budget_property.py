"""The hard caps hold for any rollout budget / worker count / minibatch size / seed, and for cost and time.

Each hypothesis example is a whole optimize run on the toy repo (real eval subprocesses, scripted LLM
at the seam), in a fresh directory so the cache is cold.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import litellm
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine import settings_for
from toyrepo import ScriptedReflection, make_toy_repo

from gepa_bot.runlog import read_records
from gepa_bot.search.engine import optimize
from gepa_bot.search.llm import Reply

N_VAL = 6  # make_toy_repo(n=12): every odd instance is a val instance


@st.composite
def run_shapes(draw):
    minibatch = draw(st.integers(1, 4))
    feasible = N_VAL + 2 * minibatch  # session.check_budget_fits: the baseline plus one GEPA step
    return {"rollouts": draw(st.integers(feasible, 80)), "workers": draw(st.integers(1, 4)),
            "minibatch": minibatch, "seed": draw(st.integers(0, 2**16)),
            "junk_every": draw(st.sampled_from([0, 0, 2, 3]))}


@pytest.mark.slow
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(shape=run_shapes())
def test_rollout_cap_and_accounting_hold_for_any_run_shape(shape, monkeypatch):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        counter = root / "counter"
        counter.mkdir()
        monkeypatch.setenv("TOY_COUNTER_DIR", str(counter))
        repo = make_toy_repo(root, yaml_prompt=shape["seed"] % 2 == 1)
        result = optimize(settings_for(repo, root, ScriptedReflection(junk_every=shape["junk_every"]),
                                       budget__rollouts=shape["rollouts"], optimizer__workers=shape["workers"],
                                       optimizer__minibatch_size=shape["minibatch"], optimizer__seed=shape["seed"]))
        budget = result.budget
        rollouts = list(read_records(root / "run", "rollout"))
        executed = sorted(p.name for p in counter.iterdir())

    assert budget.rollouts_used <= shape["rollouts"] == budget.rollouts_limit
    assert budget.rollouts_executed <= budget.rollouts_used
    assert budget.rollouts_executed + budget.cache_hits + budget.repeats_in_batch == budget.rollouts_used
    keys = Counter((r["candidate"], r["split"], r["id"]) for r in rollouts)
    assert [k for k, n in keys.items() if n > 1] == []  # every logged rollout unique
    assert len(rollouts) == budget.rollouts_executed == len(executed)  # ... and each one really ran once
    assert budget.stop_reason


# --- LLM cost cap --------------------------------------------------------------------------------

PRICED_MODEL = "gpt-4o-mini"


class PricedReflection(ScriptedReflection):
    """The toy reflection, reporting token usage and the price litellm's table gives for it."""

    completion_tokens = 700  # a verbose (but realistic) answer: rationale plus the whole prompt

    def __init__(self):
        super().__init__()
        self.costs: list[float] = []

    def __call__(self, model, messages, **params):
        reply = super().__call__(model, messages, **params)
        prompt_tokens = len(messages[-1]["content"]) // 4
        prompt_cost, completion_cost = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens,
                                                              completion_tokens=self.completion_tokens)
        self.costs.append(prompt_cost + completion_cost)
        return Reply(text=reply.text, prompt_tokens=prompt_tokens, completion_tokens=self.completion_tokens,
                     cost_usd=prompt_cost + completion_cost)


def test_llm_cost_cap_is_never_crossed(tmp_path):
    repo = make_toy_repo(tmp_path, n=24)
    cap = 0.0015  # a few calls of ~$0.0005 each; the pre-call check uses the worst case (max_tokens=1024)
    transport = PricedReflection()
    result = optimize(settings_for(repo, tmp_path, transport, budget__rollouts=500, budget__max_llm_cost_usd=cap,
                                   models__reflection=PRICED_MODEL))

    budget = result.budget
    assert transport.costs and all(c > 0 for c in transport.costs)
    assert budget.llm_cost_usd == round(sum(transport.costs), 6) <= cap
    assert budget.llm_calls == len(transport.costs) >= 2
    assert "LLM cost cap" in budget.stop_reason
    assert budget.rollouts_used < 500  # the cost cap, not the rollout budget, ended the run
    logged = list(read_records(tmp_path / "run", "llm"))
    assert round(sum(r["cost_usd"] for r in logged), 6) == budget.llm_cost_usd


# --- wall-time cap -------------------------------------------------------------------------------

# What we assert: wall_time_s <= cap + WALL_SLACK. Why that bound holds: the budget refuses to start
# any rollout or LLM call once the cap is reached, and an eval already running gets its timeout
# clamped to the deadline (SuiteContext.clamp, floor 0.1 s) and its process group is killed. What can
# run past the deadline is therefore one clamped eval batch (<= 0.1 s floor + kill/reap), the LLM
# timeout floor (1 s, but the scripted LLM answers at once), and writing result.json. Measured
# overshoot is ~0.02 s; 0.75 s covers the eval floor, process teardown and result building on a
# loaded 2-core CI runner. litellm's cold import (~2 s) is paid by the engine before the clock starts.
WALL_CAP_MINUTES = 0.02  # 1.2 s
WALL_SLACK = 0.75


def test_wall_time_cap_ends_the_run_close_to_the_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("TOY_EVAL_SLEEP", "0.15")  # each instance takes 0.15 s: evals are mid-flight at the cap
    repo = make_toy_repo(tmp_path, n=24)
    result = optimize(settings_for(repo, tmp_path, ScriptedReflection(), budget__rollouts=500,
                                   budget__wall_time_minutes=WALL_CAP_MINUTES))

    budget = result.budget
    cap = WALL_CAP_MINUTES * 60
    assert "wall-time cap" in budget.stop_reason
    assert budget.wall_time_s <= cap + WALL_SLACK, budget
    assert budget.rollouts_used < 500
    assert result.candidates[0].val  # the baseline was scored before time ran out


def test_wall_time_cap_kills_an_eval_in_flight(tmp_path, monkeypatch):
    """An eval longer than the whole cap is cut at the deadline, not waited for, and not retried; a cut eval is a
    budget stop, not an error and not a score: with no baseline, the run ends with the cap named (exit code 2)."""
    import time

    from gepa_bot.errors import UserError
    from gepa_bot.runlog import read_records

    monkeypatch.setenv("TOY_EVAL_SLEEP", "3")
    repo = make_toy_repo(tmp_path)
    started = time.monotonic()
    with pytest.raises(UserError, match="ran out while scoring the baseline \\(wall-time cap of") as ended:
        optimize(settings_for(repo, tmp_path, ScriptedReflection(), budget__rollouts=500,
                              budget__wall_time_minutes=WALL_CAP_MINUTES))
    assert time.monotonic() - started <= WALL_CAP_MINUTES * 60 + WALL_SLACK
    assert ended.value.exit_code == 2
    assert list(read_records(tmp_path / "run", "rollout")) == []  # nothing scored: nothing cached as a result
    assert {r["attempt"] for r in read_records(tmp_path / "run", "eval_error")} == {1}  # no retry past the cap


def test_a_padded_minibatch_naming_an_instance_twice_runs_it_once(tmp_path, monkeypatch):
    """gepa pads a short epoch (6 train ids, minibatch 4) with repeated ids; found by the property above.

    Before the fix the duplicate was executed twice, logged twice and counted as two executed rollouts.
    """
    from gepa_bot.config import load_config
    from gepa_bot.discovery import discover
    from gepa_bot.evals.cache import EvalCache
    from gepa_bot.evals.command_suite import CommandSuite
    from gepa_bot.evals.executor import LocalExecutor
    from gepa_bot.evals.suite import SuiteContext
    from gepa_bot.runlog import RunLog
    from gepa_bot.search.adapter import RepoAdapter, Split
    from gepa_bot.search.budget import Budget

    counter = tmp_path / "counter"
    counter.mkdir()
    monkeypatch.setenv("TOY_COUNTER_DIR", str(counter))
    repo = make_toy_repo(tmp_path)
    config = load_config(repo / ".gepa-bot.yml")
    components = discover(repo, config, repo / ".gepa-bot.yml")
    suite = CommandSuite(SuiteContext(repo=repo), "python evals/eval.py", ["evals/**"])
    budget = Budget(max_rollouts=10)
    runlog = RunLog(tmp_path / "run")
    adapter = RepoAdapter(suite, components, Split(train=["i00", "i02", "i04"], val=["i01"]),
                          EvalCache(tmp_path / "cache", suite.fingerprint()), budget, runlog,
                          LocalExecutor(repo, tmp_path / "scratch", workers=2))
    seed = {c.name: c.text for c in components}
    batch = adapter.evaluate(["i00", "i02", "i00", "i04"], seed)
    assert len(batch.scores) == 4 and batch.scores[0] == batch.scores[2]
    assert len(list(counter.iterdir())) == 3 == len(list(read_records(tmp_path / "run", "rollout")))
    # the repeated id was neither executed again nor served by the cache
    assert (budget.rollouts, budget.executed, budget.cache_hits, budget.repeats) == (4, 3, 0, 1)
    adapter.evaluate(["i00", "i02", "i00", "i04"], seed)  # now all four come from the cache
    runlog.close()
    assert (budget.rollouts, budget.executed, budget.cache_hits) == (8, 3, 4)


def test_cost_cap_on_an_unpriced_model_is_refused_before_any_work(tmp_path):
    """Fail closed: litellm cannot price `openai/toy-reflection`, so a cost cap on it could never trigger."""
    from gepa_bot.errors import UserError

    repo = make_toy_repo(tmp_path)
    transport = PricedReflection()
    with pytest.raises(UserError) as err:
        optimize(settings_for(repo, tmp_path, transport, budget__max_llm_cost_usd=1.0))
    assert "budget.max_llm_cost_usd" in str(err.value) and "openai/toy-reflection" in str(err.value)
    assert "max_llm_cost_usd: null" in err.value.fix
    assert transport.costs == [] and not list(read_records(tmp_path / "run", "rollout"))
