"""result.json through the RunResult model: round trip, extra keys refused, version 1 migrated, garbage refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gepa_bot.errors import UserError
from gepa_bot.result import (
    DEFAULT_MIN_CONFIDENCE,
    RESULT_NAME,
    RESULT_VERSION,
    BudgetSummary,
    Evaluation,
    RunResult,
)
from gepa_bot.search.budget import Budget


def result_data() -> dict:
    """A complete version-2 result.json (a seed and one reflection child, one trim child)."""
    val = ["v1", "v2", "v3"]

    def cand(index: int, origin: str, parents: list[int], scores: list[float | None], **extra) -> dict:
        return {"index": index, "hash": f"h{index}", "components": {"main": f"prompt {index} ✓"}, "parents": parents,
                "origin": origin, "rationale": {"main": "why"} if index else {}, "motivated_by": {}, "move": {},
                "val_mean": sum(s or 0.0 for s in scores) / len(scores), "discovered_at_rollout": 4 * index,
                "val": {i: None if s is None else {"score": s, "feedback": f"fb {i}", "failed": False, "stdev": 0.0}
                        for i, s in zip(val, scores, strict=True)}, **extra}

    return {
        "version": RESULT_VERSION,
        "components": [{"name": "main", "path": "prompts/main.txt", "kind": "text", "key": None}],
        "split": {"train": ["t1", "t2"], "val": val},
        "candidates": [cand(0, "seed", [], [0.0, 1.0, 0.0]),
                       cand(1, "reflection", [0], [1.0, 1.0, 0.0], motivated_by={"main": ["t1"]}, move={"main": "rules"}),
                       cand(2, "trim", [1], [1.0, 1.0, None], val_scored=2)],
        "pareto_front": [1, 2], "best_candidate": 2, "baseline_candidate": 0,
        "best_files": {"prompts/main.txt": "prompt 2 ✓\n"},
        "rejected_proposals": [{"component": "main", "attempt": "1", "reason": "no JSON object", "reply_excerpt": "x"}],
        "reflection_style": "mixed", "eval_repeats": 1,
        "budget": {**Budget(max_rollouts=50).to_json(), "cache_hit_rate": 0.0},
        "models": {"task": "openai/a", "reflection": "openai/b", "reflection_max_tokens": 1024,
                   "reflection_temperature": 0.7},
        "seed": 0, "min_improvement": 0.0, "min_confidence": 0.9,
        "search_errors": [{"where": "search iteration 3", "type": "KeyError", "message": "'x'"}],
        "variants": 3,
    }


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / RESULT_NAME
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def one_line_error(path: Path) -> str:
    with pytest.raises(UserError) as info:
        RunResult.read(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "Fix:" in message
    return message


def test_write_then_read_gives_an_equal_model(tmp_path: Path):
    result = RunResult.model_validate(result_data())
    path = result.write(tmp_path)
    assert path == tmp_path / RESULT_NAME
    assert RunResult.read(path) == result == RunResult.read(tmp_path)  # the file, or the run dir that holds it
    assert json.loads(path.read_text(encoding="utf-8")) == result_data()  # result.json is the serialization
    assert "✓" in path.read_text(encoding="utf-8")  # not escaped: a reviewer reads it
    assert result.best.index == 2 and result.best.val_scored == 2 and result.baseline.origin == "seed"
    assert result.best.val["v3"] is None and result.candidates[1].move == {"main": "rules"}


def test_the_budget_model_holds_every_key_of_the_budget_and_the_hit_rate():
    budget = Budget(max_rollouts=10)
    budget.reserve_rollouts(4)
    budget.record_eval(executed=3, cache_hits=1, seconds=0.5)
    summary = BudgetSummary.of(budget)
    assert set(BudgetSummary.model_fields) == set(budget.to_json()) | {"cache_hit_rate"}
    assert summary.cache_hit_rate == 0.25 and summary.rollouts_used == 4 and summary.rollouts_executed == 3


def test_extra_keys_are_refused_with_a_clear_error(tmp_path: Path):
    data = result_data()
    data["surprise"] = 1
    data["candidates"][1]["val"]["v1"]["grade"] = "A"
    message = one_line_error(write(tmp_path, data))
    assert "not a valid gepa-bot result (version 2)" in message
    assert "surprise: Extra inputs are not permitted" in message and "candidates.1.val.v1.grade" in message
    with pytest.raises(ValueError):
        RunResult.model_validate(data)


def test_a_wrong_type_names_the_field(tmp_path: Path):
    data = result_data()
    data["candidates"][0]["origin"] = "mutation"
    assert "candidates.0.origin" in one_line_error(write(tmp_path, data))


def test_a_version_1_result_is_migrated(tmp_path: Path):
    data = result_data()
    data["version"] = 1  # an earlier release: without the keys added along the way
    for key in ("min_confidence", "search_errors", "reflection_style", "eval_repeats", "variants"):
        del data[key]
    del data["budget"]["repeats_in_batch"]
    for cand in data["candidates"]:
        for key in ("motivated_by", "move"):
            cand.pop(key)
        for entry in cand["val"].values():
            if entry is not None:
                del entry["stdev"]
    result = RunResult.read(write(tmp_path, data))
    assert result.version == RESULT_VERSION and result.min_confidence == DEFAULT_MIN_CONFIDENCE
    assert result.search_errors == [] and result.reflection_style is None and result.eval_repeats == 1
    assert result.budget.repeats_in_batch == 0 and result.candidates[1].move == {}
    assert result.candidates[0].val["v1"] is not None and result.candidates[0].val["v1"].stdev == 0.0
    result.write(tmp_path)  # written back as the current version
    assert json.loads((tmp_path / RESULT_NAME).read_text(encoding="utf-8"))["version"] == RESULT_VERSION


def test_a_version_1_result_that_cannot_be_migrated_is_a_one_line_error(tmp_path: Path):
    data = result_data()
    data["version"] = 1
    del data["candidates"]
    message = one_line_error(write(tmp_path, data))
    assert "version 1" in message and "candidates: Field required" in message


@pytest.mark.parametrize("version, hint", [(3, "upgrade gepa-bot"), ("2", "gepa-bot optimize")])
def test_an_unknown_version_is_refused(tmp_path: Path, version, hint):
    data = result_data()
    data["version"] = version
    message = one_line_error(write(tmp_path, data))
    assert f"result version {version!r}" in message and hint in message


@pytest.mark.parametrize("text", ['{"version": 2, "components": [', "not json at all", "[1, 2]", '{"val_mean": 1}',
                                  "\udcff"])
def test_a_truncated_garbage_or_foreign_file_is_a_user_error(tmp_path: Path, text: str):
    path = tmp_path / RESULT_NAME
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    message = one_line_error(path)
    assert "gepa-bot result" in message


def test_a_missing_file_is_a_user_error(tmp_path: Path):
    assert "no result.json" in one_line_error(tmp_path / RESULT_NAME)


def test_an_evaluation_is_typed_too():
    budget = BudgetSummary.of(Budget(max_rollouts=3))
    evaluation = Evaluation(val_mean=0.5, val={"v1": {"score": 0.5, "feedback": "half"}}, budget=budget)
    assert Evaluation.model_validate(evaluation.model_dump(mode="json")) == evaluation
    assert evaluation.val["v1"].score == 0.5 and evaluation.val["v1"].stdev == 0.0
