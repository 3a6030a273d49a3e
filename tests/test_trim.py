"""Trimming the best prompt: which sentences may go, how they are cut, the greedy loop, the held-back budget,
and the whole step inside a real run (toy repo, real eval command, scripted reflection that pads its prompts)."""

from __future__ import annotations

import random

import pytest
from test_engine import settings_for
from toyrepo import ScriptedReflection, make_toy_repo

from gepa_bot.report.render import render
from gepa_bot.runlog import read_records
from gepa_bot.search.budget import Budget, BudgetExhausted
from gepa_bot.search.engine import optimize, trim_rationale
from gepa_bot.search.llm import Reply
from gepa_bot.search.trim import judge, removable_sentences, trials_wanted, trim, without

SEED = {"p": "Rate the word from -5 to 5.\nWord: {word}\nAnswer:\n"}
RULE = "Use a scale from -2 to 2."
PADDED = {"p": f"Rate the word from -5 to 5.\n{RULE} Be careful with every answer.\n{RULE}\nWord: {{word}}\nAnswer:\n"}


def test_only_sentences_the_search_added_may_go_repeats_first_then_longest():
    sentences = removable_sentences(SEED, PADDED)
    assert [s.text for s in sentences] == [RULE, "Be careful with every answer.", RULE]
    assert sentences[0].start > sentences[2].start  # the repeat is the later copy; the first copy is tried last
    assert all("{word}" not in s.text and s.text != "Answer:" for s in sentences)


def test_a_restatement_of_the_rest_of_the_prompt_is_tried_right_after_the_repeats():
    """The incidents bench's best prompt (seed 0) restated its two definitions in a longer meta sentence."""
    seed = {"p": "Assign a priority from P1 to P4.\nReport: {report}\n"}
    p1, p4 = "P1 means an outage or data loss.", "P4 means a cosmetic issue or a question."
    restated = "In the prompt, explicitly define that P1 means an outage or data loss; P4 a cosmetic issue."
    filler = "Think about every single part of the report very carefully before answering anything at all."
    candidate = {"p": f"Assign a priority from P1 to P4.\n{p1} {p4}\n{filler}\n{restated}\nReport: {{report}}\n"}
    order = [s.text for s in removable_sentences(seed, candidate)]
    assert order == [restated, p4, p1, filler]  # the definitions restate the restatement too, until it is cut
    assert len(filler) > len(restated)  # so the order is not only by length


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


VAL = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0, "e": 0.0}  # the padded prompt's val scores: 0.6


class RuleScorer:
    """Val instances a-c pass while the prompt holds RULE; every call is recorded. ``room`` is the rollout budget;
    ``refuse_after`` stands for a time cap: nothing is scored once that many rollouts are spent."""

    def __init__(self, room: int = 1000, refuse_after: int | None = None):
        self.calls: list[tuple[str, list[str]]] = []
        self.room, self.refuse_after = room, refuse_after

    def __call__(self, candidate, ids):
        ids = ids[:self.room]
        if not ids or (self.refuse_after is not None and self.rollouts >= self.refuse_after):
            return None
        self.room -= len(ids)
        self.calls.append((candidate["p"], ids))
        return {i: 1.0 if RULE in candidate["p"] and i in "abc" else 0.0 for i in ids}

    def left(self) -> int:
        return self.room

    @property
    def rollouts(self) -> int:
        return sum(len(ids) for _, ids in self.calls)


def trim_padded(scorer: RuleScorer, trials: int = 5, batch: int = 1):
    return trim(dict(PADDED), VAL, SEED, trials=trials, score=scorer, rollouts_left=scorer.left, batch=batch,
                rollouts_used=lambda: scorer.rollouts)


def test_greedy_trim_keeps_a_deletion_only_when_val_does_not_drop_and_stops_each_trial_once_it_is_decided():
    scorer = RuleScorer()
    outcome = trim_padded(scorer, batch=2)
    assert [(s.removed.text, s.kept) for s in outcome.steps] == [
        (RULE, True), ("Be careful with every answer.", True), (RULE, False)]
    assert outcome.kept[-1].child == {"p": f"Rate the word from -5 to 5.\n{RULE}\nWord: {{word}}\nAnswer:\n"}
    # the parent's wins first, two at a time: a kept cut is decided on a-d, the cut that loses every win on a-d too
    assert [ids for _, ids in scorer.calls] == [["a", "b"], ["c", "d"]] * 3 + [["e"]]
    assert [s.rollouts_after for s in outcome.steps] == [4, 8, 12]
    assert [len(s.scores) for s in outcome.steps] == [4, 5, 4]  # the last kept cut was completed with "e"
    assert outcome.kept[-1].complete and outcome.kept[-1].val_mean == 0.6 and not outcome.kept[0].complete


def test_cheap_verdicts_fit_two_cuts_into_less_than_two_val_passes_and_the_result_is_always_fully_scored():
    one_pass = trim_padded(RuleScorer(room=5))  # a cut decided on a-c; 2 left: no second trial, they complete it
    assert [(s.removed.text, s.kept, len(s.scores)) for s in one_pass.steps] == [(RULE, True, 5)]
    scorer = RuleScorer(room=8)  # a-c, a-c: two cuts kept, then the 2 rollouts held for completion finish the last
    outcome = trim_padded(scorer)
    assert [(s.removed.text, s.kept) for s in outcome.steps] == [(RULE, True), ("Be careful with every answer.", True)]
    assert outcome.kept[-1].complete and outcome.kept[-1].val_mean == 0.6 and scorer.room == 0
    assert trim_padded(RuleScorer(room=4)).steps == []  # less than one val pass: no trial at all


@pytest.mark.parametrize("seed", range(40))
def test_an_early_verdict_is_the_verdict_of_a_full_val_pass(seed):
    rng = random.Random(seed)
    ids = [f"i{k}" for k in range(rng.randint(1, 12))]
    parent = {i: rng.choice([0.0, 0.5, 1.0]) for i in ids}
    child = {i: rng.choice([0.0, 0.25, 0.5, 1.0]) for i in ids}
    order = sorted(parent, key=lambda i: -parent[i])
    verdict = judge({"p": ""}, order, sum(parent.values()), lambda _, batch: {i: child[i] for i in batch},
                    batch=rng.randint(1, 3))
    assert verdict is not None and verdict.kept == (sum(child.values()) >= sum(parent.values()))
    assert set(verdict.scores) <= set(ids) and all(verdict.scores[i] == child[i] for i in verdict.scores)
    limit = rng.randint(0, len(ids))
    limited = judge({"p": ""}, order, sum(parent.values()), lambda _, batch: {i: child[i] for i in batch},
                    batch=rng.randint(1, 3), limit=limit)
    assert limited is None or (len(limited.scores) <= limit and limited.kept == verdict.kept)


def test_trim_stops_at_its_trial_cap_and_when_the_budget_is_gone():
    assert len(trim_padded(RuleScorer(), trials=1).steps) == 1
    assert trim(dict(PADDED), VAL, SEED, trials=3, score=lambda c, ids: None, rollouts_left=lambda: 100).steps == []
    capped = trim_padded(RuleScorer(refuse_after=3))  # a time cap after the first verdict: nothing completes it
    assert [(s.removed.text, s.kept, len(s.scores)) for s in capped.steps] == [(RULE, True, 3)]
    assert not capped.kept[0].complete and capped.kept[0].val_mean == 0.6  # a floor: d and e count as 0


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

    best = result.candidates[result.best_candidate]
    searched_best = max((c for c in result.candidates if c.origin != "trim"), key=lambda c: c.val_mean)
    assert best.origin == "trim" and best.val_mean == searched_best.val_mean == 1.0
    assert PaddedReflection.FILLER not in best.components["prompts/main.txt"]
    assert PaddedReflection.FILLER in searched_best.components["prompts/main.txt"]
    assert "{ticket}" in best.components["prompts/main.txt"]
    assert result.budget.rollouts_used <= 90 and "held back for trimming" in result.budget.stop_reason
    assert set(best.val) == set(result.split.val) and all(best.val.values())

    trims = list(read_records(tmp_path / "run", "trim"))
    assert any(t["kept"] and t["removed"] == PaddedReflection.FILLER for t in trims)
    body, _ = render(result, {"prompts/main.txt": "Classify the ticket {ticket} into a queue.\n"})
    assert "(trim)" in body and f"Removed {PaddedReflection.FILLER!r}" in body  # lineage and rationale say what went
    best.val_scored = 2  # as if trimming ran out of rollouts before completing the best's val table
    body, _ = render(result, {"prompts/main.txt": "Classify the ticket {ticket} into a queue.\n"})
    assert "The best candidate scores at least **" in body and "trimming scored it on 2 of them" in body


def test_a_cut_decided_on_part_of_val_says_so_in_its_rationale():
    outcome = trim_padded(RuleScorer(refuse_after=3), trials=1)
    assert "reaches its parent's validation total on 3 of 5 instances" in trim_rationale(outcome.kept[0])
    assert "does not drop" in trim_rationale(trim_padded(RuleScorer(), trials=1).kept[0])


def test_trimming_off_leaves_the_search_all_the_budget(tmp_path, monkeypatch):
    (tmp_path / "counter").mkdir()
    monkeypatch.setenv("TOY_COUNTER_DIR", str(tmp_path / "counter"))
    repo = make_toy_repo(tmp_path)
    result = optimize(settings_for(repo, tmp_path, PaddedReflection(), budget__rollouts=60, optimizer__trim=False))
    assert all(c.origin != "trim" for c in result.candidates)
    assert "held back" not in (result.budget.stop_reason or "")
    assert not list(read_records(tmp_path / "run", "trim"))


def test_a_run_interrupted_while_trimming_resumes_to_the_same_result_without_paying_twice(tmp_path, monkeypatch):
    import gepa_bot.search.engine as engine

    counter = tmp_path / "counter"
    counter.mkdir()
    monkeypatch.setenv("TOY_COUNTER_DIR", str(counter))
    repo = make_toy_repo(tmp_path)
    real_trim = engine.trim

    def interrupted_trim(best, best_scores, seed, trials, score, **kwargs):
        calls = []

        def score_then_interrupt(child, ids):
            if calls:
                raise KeyboardInterrupt  # Ctrl-C / CI cancellation between two trim batches
            calls.append(ids)
            return score(child, ids)
        return real_trim(best, best_scores, seed, trials, score_then_interrupt, **kwargs)

    monkeypatch.setattr(engine, "trim", interrupted_trim)
    with pytest.raises(KeyboardInterrupt):
        optimize(settings_for(repo, tmp_path, PaddedReflection(), budget__rollouts=90))
    paid_before = len(list(counter.iterdir()))
    monkeypatch.setattr(engine, "trim", real_trim)
    transport = PaddedReflection()
    resumed = optimize(settings_for(repo, tmp_path, transport, budget__rollouts=90))
    paid_on_resume = len(list(counter.iterdir())) - paid_before

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    reference = optimize(settings_for(repo, fresh, PaddedReflection(), budget__rollouts=90))
    assert transport.calls == []  # every reflection reply replayed from the run log
    assert paid_on_resume == resumed.budget.rollouts_executed > 0  # only what the interrupted trim had not run
    assert paid_before + paid_on_resume == reference.budget.rollouts_executed
    strip = lambda result: [(c.origin, c.components, c.val_mean) for c in result.candidates]  # noqa: E731
    assert strip(resumed) == strip(reference) and resumed.best_candidate == reference.best_candidate
    assert resumed.candidates[resumed.best_candidate].origin == "trim"
    assert resumed.budget.rollouts_used == reference.budget.rollouts_used


def test_trimming_works_on_the_candidate_the_pr_proposes_not_on_a_shorter_one_the_pr_checks_refuse(tmp_path,
                                                                                                 monkeypatch):
    """3 val instances of slack would prefer the 3/6 candidate, but the sign test refuses it (p = 0.125 against
    min_confidence 0.9): the 6/6 one is proposed, so the rollouts left go to trimming that one."""
    (tmp_path / "counter").mkdir()
    monkeypatch.setenv("TOY_COUNTER_DIR", str(tmp_path / "counter"))
    repo = make_toy_repo(tmp_path, yaml_prompt=True)
    result = optimize(settings_for(repo, tmp_path, PaddedReflection(), budget__rollouts=120,
                                   optimizer__prefer_shorter_within=3, output__min_confidence=0.9))

    best = result.candidates[result.best_candidate]
    assert best.origin == "trim" and best.val_mean == 1.0
    parent = result.candidates[best.parents[0]]
    while parent.origin == "trim":
        parent = result.candidates[parent.parents[0]]
    assert parent.val_mean == 1.0  # the trims descend from the proposal, not from the shorter 3/6 candidate
    assert all(PaddedReflection.FILLER not in text for text in best.components.values())
    assert any(PaddedReflection.FILLER in text for text in parent.components.values())
