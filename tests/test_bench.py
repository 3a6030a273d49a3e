"""The bench harness (bench/harness.py) on a toy task with a scripted reflection LLM: no real model."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import textwrap
from pathlib import Path

import pytest

from gepa_bot.result import RunResult
from gepa_bot.search.llm import Reply
from gepa_bot.significance import sign_test_p

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
harness = pytest.importorskip("harness")
seeds_cell = pytest.importorskip("report").seeds_cell
METHOD_LABELS = pytest.importorskip("report").METHOD_LABELS

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
    """Reflection: add the keywords the feedback names. Rewrite (no feedback): add one keyword per call.
    gepa's default prompt (plain_gepa): the same, in its ``` format."""

    def __init__(self):
        self.rewrites = 0
        self.reflections = 0
        self.default_prompts: list[str] = []

    def __call__(self, model: str, messages: list[dict[str, str]], **params: object) -> Reply:
        content = messages[-1]["content"]
        if "````prompt" not in content:  # gepa's default reflection prompt: new instructions in a ``` block
            self.default_prompts.append(content)
            wanted = sorted(set(re.findall(r"should mention '(\w+)'", content)))
            current = content.split("```\n", 1)[1].split("\n```", 1)[0]
            return Reply(text=f"```\n{current}\nKeywords: {', '.join(wanted or ['none'])}\n```")
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


class SeedEcho:
    """A rewrite model that returns whatever its sampling seed makes it write, and records the seeds."""

    def __init__(self):
        self.seeds, self.requests = [], []

    def __call__(self, model, messages, **params):
        self.seeds.append(params.get("seed"))
        self.requests.append(messages[-1]["content"])
        current = messages[-1]["content"].split("````prompt\n", 1)[1].split("\n````", 1)[0]
        return Reply(text=f"````prompt\n{current}\nSample {params.get('seed')}.\n````")


def test_best_of_n_draws_distinct_samples(tmp_path: Path):
    """N rewrites of the same prompt must be N different samples, not N copies of one request."""
    from arms import make_config, run_best_of_n

    task = harness.find_tasks(["toy"], make_task(tmp_path))[0]
    transport = SeedEcho()
    opts = harness.BenchOptions(budgets=[30], task_model="openai/toy-task", reflection_model="openai/toy-reflection",
                                transport=transport, work_dir=tmp_path / "work", log=lambda m: None)
    outcome = run_best_of_n(task, make_config(task, 30, 5, opts), tmp_path / "bon", opts)
    n = outcome.extra["n"]
    assert n >= 3
    assert len(set(transport.seeds)) == len(transport.seeds) == n  # distinct sampling seeds...
    assert outcome.extra["distinct_rewrites"] == n  # ...so distinct rewrites
    # one request, the reflector's own: best-of-N samples exactly what gepa-bot's rewrite proposals ask for
    from gepa_bot.search.reflection import build_simplify_messages

    seed_text = (task.repo / "prompts" / "main.txt").read_text()
    assert set(transport.requests) == {build_simplify_messages(seed_text)[0]["content"]}


@pytest.mark.slow
def test_bench_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    tasks = harness.find_tasks(["toy"], make_task(tmp_path))
    transport = Scripted()
    budgets = [20, 30]
    opts = harness.BenchOptions(budgets=budgets, task_model="openai/toy-task", reflection_model="openai/toy-reflection",
                                workers=2, transport=transport, work_dir=tmp_path / "work", log=lambda m: None,
                                seeds=[0, 1], reflection_style="rewrite")
    rows_file = tmp_path / "out" / "rows.jsonl"
    rows_file.parent.mkdir()
    data = harness.run_bench(tasks, opts, rows_file=rows_file)
    rows = data["rows"]
    expected = {(b, m, s) for b in budgets for m in harness.METHODS for s in (0, 1)} - {
        (b, "gepa_bot_nocache", 1) for b in budgets}  # the no-cache arm runs for the first seed only
    assert {(r["budget"], r["method"], r["seed"]) for r in rows} == expected
    assert [json.loads(line) for line in rows_file.read_text().splitlines()] == rows  # written as they come
    for row in rows:
        assert set(harness.ROW_FIELDS) <= set(row)
        assert row["found_at_rollout"] <= row["budget"] or row["method"] == "seed"
        assert row["rollouts_used"] <= max(budgets)
        assert 0.0 <= row["test_score"] <= 1.0 and row["test_n"] == len(tasks[0].test_ids())
        assert row["prompt_chars"] == sum(len(t) for t in row["prompt"].values())
    seed = [r for r in rows if r["method"] == "seed"]
    assert all(r["test_score"] == 0.0 and r["rollouts_used"] == 0 and r["pr_opens"] is None for r in seed)
    n_val = data["splits"]["toy"]["val"]
    baseline = RunResult.read(tmp_path / "work" / "toy" / "0" / "gepa_bot" / "run").baseline
    assert baseline.val_mean == 0.0  # so a pick's val score is its count of improved instances, none regressed
    for row in (r for r in rows if r["method"] != "seed"):  # the product's gate: p <= 0.10 by default
        improved = round(row["val_score"] * n_val)
        assert row["pr_opens"] is (sign_test_p(improved, 0) <= 0.1), row
    assert {r["pr_opens"] for r in rows if r["val_score"]} == {True, False}  # 4 of 6 opens (p 0.0625), 2 does not
    gepa = [r for r in rows if r["method"] == "gepa_bot" and r["budget"] == 30]
    assert all(r["test_score"] > 0 for r in gepa)  # feedback-driven keywords generalize to test
    plain = [r for r in rows if r["method"] == "plain_gepa"]
    assert all(r["llm_calls"] > 0 and r["reflection_style"] == "gepa-default" for r in plain)
    assert "Evaluation results" not in transport.default_prompts[0] and transport.default_prompts  # gepa's own prompt
    nocache = [r for r in rows if r["method"] == "gepa_bot_nocache"]
    assert all(r["cache_hits"] == 0 and r["rollouts_executed"] == r["rollouts_used"] for r in nocache)
    g0 = [r for r in rows if r["method"] == "gepa_bot" and r["seed"] == 0]
    for g, nc in zip(g0, nocache, strict=True):  # same search: reflection replies replayed, same prompt chosen
        assert nc["llm_calls_replayed"] == nc["llm_calls"] == g["llm_calls"] > 0
        assert nc["prompt"] == g["prompt"]
    n_val = data["splits"]["toy"]["val"]
    shorter = [r for r in rows if r["method"] == "gepa_bot_shorter"]
    for row in shorter:  # the same search's candidates, chosen with one val instance of slack
        full = next(r for r in rows if (r["method"], r["seed"], r["budget"]) == ("gepa_bot", row["seed"], row["budget"]))
        assert row["prompt_chars"] <= full["prompt_chars"] and row["val_score"] >= full["val_score"] - 1 / n_val - 1e-9
        assert row["llm_calls"] == full["llm_calls"] and row["run_wall_s"] == full["run_wall_s"]
        assert row["prompt"] == full["prompt"]  # prefer_shorter_within: 1 is the default: the gepa_bot arm's own rule
    derived_file = tmp_path / "derived.jsonl"
    derived = harness.derive_rows(tmp_path / "work", tasks, opts, derived_file)["rows"]
    assert [{**r, "run_wall_s": 0} for r in derived] == [{**r, "run_wall_s": 0} for r in shorter]
    assert [json.loads(line) for line in derived_file.read_text().splitlines()] == derived
    # anytime: a larger budget never returns a candidate with a worse val score
    for method in ("best_of_n", "plain_gepa", "gepa_bot"):
        for s in (0, 1):
            small, large = (next(r for r in rows if (r["method"], r["seed"], r["budget"]) == (method, s, b))
                            for b in budgets)
            assert large["val_score"] >= small["val_score"]

    (tmp_path / "out" / "chunks.jsonl").write_text(json.dumps({
        "command": "test", "tasks": ["toy"], "seeds": [0, 1], "budgets": budgets, "task_model": "openai/toy-task",
        "reflection_model": "openai/toy-reflection", "workers": 2, "max_val": None, "splits": data["splits"],
        "wall_s": 1.0, "machine": harness.machine_info()}) + "\n")
    assert harness.render(tmp_path / "out", ["a note"]) == 0
    out = tmp_path / "out"
    loaded = json.loads((out / "results.json").read_text())
    assert len(loaded["rows"]) == len(rows)
    agg = {(a["budget"], a["method"]): a for a in loaded["aggregate"]}
    assert agg[(30, "gepa_bot")]["seeds"] == 2 and agg[(30, "gepa_bot_nocache")]["seeds"] == 1
    assert loaded["targets"][0]["task"] == "toy" and "vs seed (+10 pts)" in loaded["targets"][0]["margins"]
    assert "## Rollouts to match plain gepa" in (tmp_path / "out" / "results.md").read_text()
    md = (out / "results.md").read_text()
    assert "## `toy`" in md and "Targets at each task" in md and "a note" in md and "nproc" not in md
    target_row, match_row = [line for line in md.splitlines() if line.startswith("| `toy` |")]
    assert match_row.count("|") == 8
    target = loaded["targets"][0]
    assert target_row.startswith(f"| `toy` | 30 | {seeds_cell(target['seeds'])} | {target['seed_test']:.3f} "
                                 f"| {target['gepa_bot_test']:.3f} | ")
    assert target["seeds"]["gepa_bot"] == 2 and "gepa_bot_nocache" not in target["seeds"]
    assert "2 cores" in md or "cores" in md
    table_rows = [line for line in md.splitlines() if line.startswith(("| 20 |", "| 30 |"))]
    assert len(table_rows) == 2 * len(harness.METHODS) and all(line.count("|") == 14 for line in table_rows)
    for row_line in table_rows:  # "PR opens": of the seeds' picks, how many pass the product's PR gate
        budget, method = row_line.split(" | ")[0].strip("| "), row_line.split(" | ")[1]
        key = next(m for m in harness.METHODS if METHOD_LABELS.get(m, m) == method)
        flags = [r["pr_opens"] for r in rows if r["method"] == key and r["budget"] == int(budget)]
        assert row_line.split(" | ")[8] == ("-" if key == "seed" else f"{sum(flags)}/{len(flags)}")
    if importlib.util.find_spec("matplotlib") is None:
        assert loaded and not (out / "score_vs_rollouts.png").exists()
    else:
        assert (out / "score_vs_rollouts.png").stat().st_size > 1000

    with rows_file.open("a") as handle:  # a re-run appended without archiving the rows it replaces
        handle.write(json.dumps(rows[0]) + "\n")
    assert harness.render(tmp_path / "out", []) == 1
    assert "with more than one row" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["rows"] == loaded["rows"]  # the page was left as it was


def test_best_at_picks_val_best_within_budget_shorter_on_ties():
    from arms import Outcome, Point

    def entry(rollouts, score, text):
        return Point(rollouts, score, {"p": text})

    outcome = Outcome([entry(10, 0.5, "the seed prompt"), entry(40, 0.5, "short"), entry(70, 0.7, "best but late")])
    assert outcome.best_at(20).candidate == {"p": "the seed prompt"}
    assert outcome.best_at(50).candidate == {"p": "short"}  # equal val: the shorter prompt
    assert outcome.best_at(100).candidate == {"p": "best but late"}
    assert outcome.best_at(5).candidate == {"p": "the seed prompt"}  # nothing fits: the seed
    assert outcome.best_at(100, slack=0.25).candidate == {"p": "short"}  # 0.5 is within 0.25 of 0.7
    assert outcome.best_at(100, slack=0.1).candidate == {"p": "best but late"}


def test_best_of_n_runs_with_different_seeds_share_no_sample(tmp_path: Path):
    """Bench seeds must be independent: seed 1's sampling seeds were seed 0's shifted by one (s + k), so two
    'seeds' drew almost the same best-of-N samples."""
    from arms import make_config, run_best_of_n

    task = harness.find_tasks(["toy"], make_task(tmp_path))[0]
    drawn = {}
    for seed in (0, 1):
        transport = SeedEcho()
        opts = harness.BenchOptions(budgets=[30], task_model="openai/toy-task", reflection_model="openai/toy-reflection",
                                    transport=transport, work_dir=tmp_path / f"work{seed}", log=lambda m: None)
        run_best_of_n(task, make_config(task, 30, seed, opts), tmp_path / f"bon{seed}", opts)
        drawn[seed] = set(transport.seeds)
    assert drawn[0] and drawn[1] and not drawn[0] & drawn[1]


def _row(method, seed, budget, test, found=0, used=None, chars=100):
    return {"task": "t", "method": method, "seed": seed, "budget": budget, "test_score": test, "test_n": 200,
            "prompt_chars": chars, "found_at_rollout": found, "rollouts_used": used if used is not None else budget}


def test_targets_compare_only_with_arms_that_gained_and_count_rollouts_to_match():
    from report import aggregate, targets

    rows = [_row("seed", s, b, 0.30) for s in (0, 1) for b in (50, 200)]
    rows += [_row("best_of_n", s, b, 0.32) for s in (0, 1) for b in (50, 200)]  # +2 pts: not a gain that counts
    rows += [_row("plain_gepa", s, 50, 0.40, used=50) for s in (0, 1)] + [_row("plain_gepa", s, 200, 0.50, used=180)
                                                                            for s in (0, 1)]
    rows += [_row("gepa_bot", 0, 50, 0.45, found=30), _row("gepa_bot", 0, 200, 0.55, found=70, chars=250),
             _row("gepa_bot", 1, 50, 0.50, found=40), _row("gepa_bot", 1, 200, 0.50, found=40, chars=150)]
    [check] = targets(aggregate(rows), rows)
    assert set(check["margins"]) == {"vs seed (+10 pts)", "vs plain gepa (>=)", "length <= 2x seed"}
    assert abs(check["margins"]["vs plain gepa (>=)"] - 0.025) < 1e-9  # 0.525 vs 0.500
    assert check["met"]["vs seed (+10 pts)"] and check["met"]["length <= 2x seed"]  # 200 chars vs 2 x 100
    match = check["rollouts_to_match"]
    assert match["per_seed"] == {"0": 70, "1": 40} and match["mean_rollouts"] == 55
    assert match["plain_gepa_rollouts"] == 180 and check["test_n"] == 200
    rows = [r for r in rows if not (r["method"] == "gepa_bot" and r["seed"] == 1)]
    rows[-1]["test_score"] = 0.49  # seed 0 never reaches 0.50
    [check] = targets(aggregate(rows), rows)
    assert check["rollouts_to_match"]["seeds_reached"] == 0 and check["rollouts_to_match"]["mean_rollouts"] is None


def test_targets_count_a_runs_shorter_proposal_as_gepa_bots_where_one_was_derived():
    from report import at_default

    def row(method, seed, score, chars):
        return {"task": "t", "budget": 200, "method": method, "seed": seed, "test_score": score, "prompt_chars": chars}

    rows = [row("seed", 0, 0.1, 40), row("gepa_bot", 0, 0.3, 500), row("gepa_bot_shorter", 0, 0.5, 90),
            row("gepa_bot", 1, 0.6, 80)]  # seed 1 ran without kept candidates: its own row stands
    default = at_default(rows)
    assert [(r["method"], r["seed"], r["test_score"]) for r in default] == [
        ("seed", 0, 0.1), ("gepa_bot", 0, 0.5), ("gepa_bot_shorter", 0, 0.5), ("gepa_bot", 1, 0.6)]
    assert rows[1]["test_score"] == 0.3  # the rows themselves are left as measured


def test_rescore_scores_every_rows_prompt_again_on_the_grown_test_split(tmp_path: Path):
    """A test split that grew: rows keep their search (prompt, val, rollouts); test_score and test_n are new."""
    root = make_task(tmp_path)
    tasks = harness.find_tasks(["toy"], root)
    opts = harness.BenchOptions(budgets=[30], task_model="openai/toy-task", reflection_model="openai/toy-reflection",
                                workers=2, work_dir=tmp_path / "work", log=lambda m: None, seeds=[0])
    prompts = ["Classify {ticket}.", "Classify {ticket}. Consider: billing, refund", "Consider: crash {ticket}"]
    source = tmp_path / "old.jsonl"
    source.write_text("".join(json.dumps({"task": task, "budget": 30, "method": "gepa_bot", "seed": k, "test_score": 0.5,
                                          "test_n": 6, "val_score": 0.25, "prompt": {"prompts/main.txt": text}}) + "\n"
                              for k, text in enumerate(prompts) for task in ("toy", "other")))
    data_file = root / "toy" / "data.jsonl"
    grown = [{"id": f"x{k:02d}", "keyword": KEYWORDS[k % len(KEYWORDS)], "split": "test"} for k in range(12)]
    data_file.write_text(data_file.read_text() + "".join(json.dumps(r) + "\n" for r in grown))
    test_rows = [json.loads(line) for line in data_file.read_text().splitlines() if json.loads(line)["split"] == "test"]

    out = tmp_path / "rows.jsonl"
    data = harness.rescore_rows(source, tasks, opts, out)
    rows = data["rows"]
    assert data["splits"] == {"toy": {"train": 6, "val": 6, "test": 18}}  # what the report's chunk lines print

    assert [r["prompt"]["prompts/main.txt"] for r in rows] == prompts  # the other task's rows are left alone
    for row in rows:
        text = row["prompt"]["prompts/main.txt"].lower()
        expected = sum(r["keyword"] in text for r in test_rows) / len(test_rows)
        assert row["test_score"] == round(expected, 4) and row["test_n"] == len(test_rows) == 18
        assert row["rescored_from"] == {"test_score": 0.5, "test_n": 6} and row["val_score"] == 0.25
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    assert len({r["test_score"] for r in rows}) == 3
