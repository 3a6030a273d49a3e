"""The bench harness (bench/harness.py) on a toy task with a scripted reflection LLM: no real model."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import textwrap
from pathlib import Path

import pytest

from gepa_bot.llm import Reply

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
harness = pytest.importorskip("harness")

KEYWORDS = ["billing", "refund", "login", "password", "crash", "export"]

EVAL = textwrap.dedent('''
    import json, os, sys
    from pathlib import Path
    rows = [json.loads(l) for l in Path(__file__).with_name("data.jsonl").read_text().splitlines()]
    data = {r["id"]: r for r in rows}
    if os.environ.get("GEPA_BOT_MODE") == "list":
        for r in rows:
            if r["split"] != "test":
                print(json.dumps({"id": r["id"], "split": r["split"]}))
        sys.exit(0)
    prompt = Path("prompts/main.txt").read_text().lower()
    for i in Path(os.environ["GEPA_BOT_IDS_FILE"]).read_text().split():
        word = data[i]["keyword"]
        hit = word in prompt
        print(json.dumps({"id": i, "score": 1.0 if hit else 0.0,
                          "feedback": "correct" if hit else f"the prompt should mention '{word}'"}))
''')


def make_task(root: Path) -> Path:
    task = root / "tasks" / "toy"
    (task / "prompts").mkdir(parents=True)
    splits = ["train", "val", "test"]
    rows = [{"id": f"t{k:02d}", "keyword": KEYWORDS[(k // 3) % len(KEYWORDS)], "split": splits[k % 3]} for k in range(18)]
    (task / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (task / "eval.py").write_text(EVAL)
    (task / "prompts" / "main.txt").write_text("Classify the ticket {ticket} into a queue.\n")
    (task / ".gepa-bot.yml").write_text(
        "prompts:\n  - path: prompts/main.txt\n"
        "eval:\n  command: python eval.py\n  watch: [eval.py, data.jsonl]\n  timeout: 30\n"
        "models:\n  task: openai/toy-task\n  reflection: openai/toy-reflection\n"
        "optimizer:\n  minibatch_size: 2\n  workers: 2\n")
    return task.parent


class Scripted:
    """Reflection: add the keywords the feedback names. Rewrite (no feedback): add one keyword per call."""

    def __init__(self):
        self.rewrites = 0
        self.reflections = 0

    def __call__(self, model: str, messages: list[dict[str, str]], **params: object) -> Reply:
        content = messages[-1]["content"]
        current = content.split("````prompt\n", 1)[1].split("\n````", 1)[0]
        if "Evaluation results" in content:
            self.reflections += 1
            wanted = sorted(set(re.findall(r"should mention '(\w+)'", content)))
            new = current + "\nConsider: " + ", ".join(wanted or ["nothing"])
        else:
            self.rewrites += 1
            if self.rewrites % 3 == 0:  # every third rewrite drops the placeholder: must be rejected
                return Reply(text="````prompt\nClassify tickets.\n````", prompt_tokens=5, completion_tokens=3)
            new = current + f"\nTopic hint: {KEYWORDS[self.rewrites % len(KEYWORDS)]}"
        return Reply(text=f"Rationale: scripted.\n\n````prompt\n{new}\n````", prompt_tokens=len(content) // 4,
                     completion_tokens=len(new) // 4)


def test_best_of_n_count_fits_budget():
    assert harness.best_of_n_count(50, 8) == 5  # seed + 5 rewrites = 48 val rollouts <= 50
    assert harness.best_of_n_count(16, 8) == 1
    assert harness.best_of_n_count(7, 8) == 0
    for budget in range(1, 120):
        for n_val in range(1, 20):
            assert (harness.best_of_n_count(budget, n_val) + 1) * n_val <= max(budget, n_val)


def test_bench_end_to_end(tmp_path: Path):
    tasks = harness.find_tasks(["toy"], make_task(tmp_path))
    transport = Scripted()
    budgets = [20, 30]
    opts = harness.BenchOptions(budgets=budgets, task_model="openai/toy-task", reflection_model="openai/toy-reflection",
                                workers=2, transport=transport, work_dir=tmp_path / "work", log=lambda m: None)
    data = harness.run_bench(tasks, opts)
    rows = data["rows"]
    assert {(r["budget"], r["method"]) for r in rows} == {(b, m) for b in budgets for m in harness.METHODS}
    for row in rows:
        assert set(harness.ROW_FIELDS) <= set(row)
        assert row["rollouts_used"] <= row["budget"]
        assert 0.0 <= row["test_score"] <= 1.0
        assert row["prompt_chars"] == len(row["prompt"]["main.txt"] if "main.txt" in row["prompt"]
                                          else next(iter(row["prompt"].values())))
    n_val = data["splits"]["toy"]["val"]
    for row in (r for r in rows if r["method"] == "best_of_n"):
        assert row["n_rewrites"] == harness.best_of_n_count(row["budget"], n_val)
        assert row["rollouts_used"] <= (row["n_rewrites"] + 1) * n_val <= row["budget"]
        assert row["prompt_tokens"] > 0
    # the scripted placeholder-dropping rewrites were rejected, not scored
    assert sum(r["rejected_proposals"] for r in rows if r["method"] == "best_of_n") >= 1
    seed = next(r for r in rows if r["method"] == "seed")
    assert seed["rollouts_used"] == 0 and seed["test_score"] == 0.0
    gepa = [r for r in rows if r["method"] == "gepa_bot"]
    nocache = [r for r in rows if r["method"] == "gepa_bot_nocache"]
    assert all(r["test_score"] > 0 for r in gepa)  # feedback-driven keywords generalize to test
    assert all(r["cache_hits"] == 0 and r["rollouts_executed"] == r["rollouts_used"] for r in nocache)
    for g, nc in zip(gepa, nocache):  # same search: reflection replies replayed, same prompt chosen
        assert nc["llm_calls_replayed"] == nc["llm_calls"] == g["llm_calls"] > 0
        assert nc["prompt"] == g["prompt"] and nc["rollouts_used"] == g["rollouts_used"]
    assert transport.reflections > 0 and transport.rewrites > 0

    data["speedup"] = harness.measure_speedup(instances=8, delay=0.02)
    data["machine"] = harness.machine_info()
    data["meta"] = {"command": "test", "budgets": budgets, "task_model": "openai/toy-task",
                    "reflection_model": "openai/toy-reflection", "workers": 2, "seed": 0, "total_wall_s": 1.0}
    out = tmp_path / "results"
    data["meta"]["png"] = harness.write_plot(data, out / "score_vs_rollouts.png")
    paths = harness.write_results(data, out)
    loaded = json.loads(paths["json"].read_text())
    assert len(loaded["rows"]) == len(rows)
    md = paths["md"].read_text()
    assert "## `toy`" in md and "Parallel evaluation speedup" in md and "nproc" in md and "## Notes" in md
    table_rows = [line for line in md.splitlines() if line.startswith(("| 20 |", "| 30 |"))]
    assert len(table_rows) == 8 and all(line.count("|") == 16 for line in table_rows)
    if importlib.util.find_spec("matplotlib") is None:
        assert data["meta"]["png"] is False
    else:
        assert (out / "score_vs_rollouts.png").stat().st_size > 1000


def test_speedup_measures_parallelism():
    speed = harness.measure_speedup(instances=8, delay=0.05, workers=(1, 4))
    assert speed["speedup"]["4"] > 2.0
