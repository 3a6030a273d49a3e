"""Trimming the best prompt: which sentences may go, how they are cut, the greedy loop, the held-back budget,
and the whole step inside a real run (toy repo, real eval command, scripted reflection that pads its prompts)."""

from __future__ import annotations

import pytest
from test_engine import settings_for
from toyrepo import ScriptedReflection, make_toy_repo

from gepa_bot.budget import Budget, BudgetExhausted
from gepa_bot.engine import optimize
from gepa_bot.llm import Reply
from gepa_bot.report import render
from gepa_bot.runlog import read_records
from gepa_bot.trim import removable_sentences, trials_wanted, trim, without

SEED = {"p": "Rate the word from -5 to 5.\nWord: {word}\nAnswer:\n"}
RULE = "Use a scale from -2 to 2."
PADDED = {"p": f"Rate the word from -5 to 5.\n{RULE} Be careful with every answer.\n{RULE}\nWord: {{word}}\nAnswer:\n"}


def test_only_sentences_the_search_added_may_go_repeats_first_then_longest():
    sentences = removable_sentences(SEED, PADDED)
    assert [s.text for s in sentences] == [RULE, "Be careful with every answer.", RULE]
    assert sentences[0].start > sentences[2].start  # the repeat is the later copy; the first copy is tried last
    assert all("{word}" not in s.text and s.text != "Answer:" for s in sentences)


def test_labels_headings_and_placeholder_sentences_are_never_cut():
    candidate = {"p": "# Task\nRead it. Then decide carefully.\nTicket: {ticket} is here.\nQueue name:\n"}
    assert [s.text for s in removable_sentences({"p": "x"}, candidate)] == ["Then decide carefully."]


def test_cutting_a_sentence_keeps_the_line_and_placeholders_tidy():
    repeat, careful, original = removable_sentences(SEED, PADDED)
    text = PADDED["p"]
    assert without(text, careful) == f"Rate the word from -5 to 5.\n{RULE}\n{RULE}\nWord: {{word}}\nAnswer:\n"
    assert without(text, repeat) == ("Rate the word from -5 to 5.\n"
                                     f"{RULE} Be careful with every answer.\nWord: {{word}}\nAnswer:\n")
    assert without(text, original).startswith("Rate the word from -5 to 5.\nBe careful with every answer.\n")
    first_paragraph = {"p": "Use a scale from -2 to 2 here.\n\nRate the word.\n\nWord: {word}\n"}
    cut = removable_sentences({"p": "Rate the word.\n\nWord: {word}\n"}, first_paragraph)[0]
    assert without(first_paragraph["p"], cut) == "Rate the word.\n\nWord: {word}\n"  # no blank line left on top
    assert without("Intro.\n\nA useless extra sentence.\n\nWord: {word}", removable_sentences(
        {"p": "Intro."}, {"p": "Intro.\n\nA useless extra sentence.\n\nWord: {word}"})[0]) == "Intro.\n\nWord: {word}"


def test_trials_only_when_the_best_is_longer_than_the_seed_and_within_a_share_of_the_budget():
    assert trials_wanted(SEED, SEED, n_val=20, max_rollouts=200) == 0
    assert trials_wanted(SEED, {"p": "Short: {word}"}, n_val=20, max_rollouts=200) == 0
    assert trials_wanted(SEED, PADDED, n_val=10, max_rollouts=200) == 3  # 3 sentences; 30 rollouts = 3 val passes
    assert trials_wanted(SEED, PADDED, n_val=15, max_rollouts=200) == 2
    assert trials_wanted(SEED, PADDED, n_val=23, max_rollouts=150) == 1  # 22 rollouts: still one val pass
    assert trials_wanted(SEED, PADDED, n_val=23, max_rollouts=80) == 0  # fewer than 4 val passes: all for the search


def test_greedy_trim_keeps_a_deletion_only_when_val_does_not_drop():
    scored: list[str] = []

    def score(candidate):
        scored.append(candidate["p"])
        return (0.6 if RULE in candidate["p"] else 0.1), 100 + 20 * len(scored)

    outcome = trim(dict(PADDED), 0.6, SEED, trials=5, score=score)
    assert [(s.removed.text, s.kept) for s in outcome.steps] == [
        (RULE, True), ("Be careful with every answer.", True), (RULE, False)]
    assert outcome.kept[-1].child == {"p": f"Rate the word from -5 to 5.\n{RULE}\nWord: {{word}}\nAnswer:\n"}
    assert [s.rollouts_after for s in outcome.steps] == [120, 140, 160]


def test_trim_stops_at_its_trial_cap_and_when_the_budget_is_gone():
    assert len(trim(dict(PADDED), 0.5, SEED, trials=1, score=lambda c: (0.5, 0)).steps) == 1
    assert trim(dict(PADDED), 0.5, SEED, trials=3, score=lambda c: None).steps == []


def test_held_back_rollouts_stop_the_search_and_are_released_for_trimming():
    budget = Budget(max_rollouts=100)
    budget.held_back = 30
    budget.reserve_rollouts(70)
    with pytest.raises(BudgetExhausted, match="held back for trimming"):
        budget.reserve_rollouts(1)
    assert budget.should_stop() and budget.rollouts == 70
    assert budget.release_held_back() == 30
    budget.reserve_rollouts(30)
    with pytest.raises(BudgetExhausted, match="cap 100"):
        budget.reserve_rollouts(1)


class PaddedReflection(ScriptedReflection):
    """The scripted reflection (it adds the keywords the feedback asks for) plus one sentence that never helps."""

    FILLER = "Always answer politely and with great care."

    def __call__(self, model, messages, **params):
        reply = super().__call__(model, messages, **params)
        head, closing_fence = reply.text.rsplit("\n````", 1)
        return Reply(text=f"{head}\n{self.FILLER}\n````{closing_fence}", prompt_tokens=1, completion_tokens=1)


def test_a_run_trims_the_filler_its_search_added_and_keeps_what_scores(tmp_path, monkeypatch):
    (tmp_path / "counter").mkdir()
    monkeypatch.setenv("TOY_COUNTER_DIR", str(tmp_path / "counter"))
    repo = make_toy_repo(tmp_path)
    result = optimize(settings_for(repo, tmp_path, PaddedReflection(), budget__rollouts=90))

    best = result["candidates"][result["best_candidate"]]
    searched_best = max((c for c in result["candidates"] if c["origin"] != "trim"), key=lambda c: c["val_mean"])
    assert best["origin"] == "trim" and best["val_mean"] == searched_best["val_mean"] == 1.0
    assert PaddedReflection.FILLER not in best["components"]["prompts/main.txt"]
    assert PaddedReflection.FILLER in searched_best["components"]["prompts/main.txt"]
    assert "{ticket}" in best["components"]["prompts/main.txt"]
    assert result["budget"]["rollouts_used"] <= 90 and "held back for trimming" in result["budget"]["stop_reason"]
    assert set(best["val"]) == set(result["split"]["val"]) and all(best["val"].values())

    trims = list(read_records(tmp_path / "run", "trim"))
    assert any(t["kept"] and t["removed"] == PaddedReflection.FILLER for t in trims)
    body, _ = render(result, {"prompts/main.txt": "Classify the ticket {ticket} into a queue.\n"})
    assert "(trim)" in body and f"Removed {PaddedReflection.FILLER!r}" in body  # lineage and rationale say what went


def test_trimming_off_leaves_the_search_all_the_budget(tmp_path, monkeypatch):
    (tmp_path / "counter").mkdir()
    monkeypatch.setenv("TOY_COUNTER_DIR", str(tmp_path / "counter"))
    repo = make_toy_repo(tmp_path)
    result = optimize(settings_for(repo, tmp_path, PaddedReflection(), budget__rollouts=60, optimizer__trim=False))
    assert all(c["origin"] != "trim" for c in result["candidates"])
    assert "held back" not in (result["budget"]["stop_reason"] or "")
    assert not list(read_records(tmp_path / "run", "trim"))
