"""Feedback-grounded proposals: statements from the feedback, the generality guard, worked examples, the rules
move, real rationales, and the acceptance rule for ties at 0."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from gepa_bot.evals.cache import candidate_hash
from gepa_bot.runlog import RunLog, read_records
from gepa_bot.search.budget import Budget
from gepa_bot.search.edits import INSTRUCTION_SCHEMA, RULES_SCHEMA, EditRejected, parse_rules_reply
from gepa_bot.search.engine import ValGate
from gepa_bot.search.feedback_rules import (
    Statement,
    definition,
    extract_statements,
    form_failures,
    output_shape,
    shape_changed,
    specific_phrases,
    stated_labels,
    with_definitions_grouped,
    worked_example,
)
from gepa_bot.search.label_definitions import stated_meanings
from gepa_bot.search.llm import LLM, Reply
from gepa_bot.search.reflection import RationaleReflector, parse_rules_proposal, with_schema
from gepa_bot.search.reflection_proposals import (
    Proposal,
    ProposalRejected,
    answer_cue,
    guard_answer_cue,
    guard_stated_meanings,
    guard_stated_numbers,
    labels_left_out,
    reason_about_the_change,
    stated_numbers,
)

POLICY = {"P1": "a customer-facing outage, data loss or a security breach",
          "P2": "a core feature broken for many customers with no workaround",
          "P3": "a problem with a workaround, or one that affects a single customer"}


def rec(rid: str, feedback: str, score: float = 0.0, output: str = "") -> dict:
    return {"Inputs": {"instance_id": rid}, "Generated Outputs": output, "Feedback": feedback, "score": score}


def incident(rid: str, expected: str, got: str, report: str) -> dict:
    return rec(rid, f"expected {expected}, got {got}: under our policy {expected} means {POLICY[expected]}; "
                    f"{got} means {POLICY[got]}; report: {report!r}", output=got)


INCIDENTS = [incident("i1", "P1", "P3", "Checkout is down for every customer since 9:00."),
             incident("i2", "P1", "P2", "A migration deleted two days of invoices."),
             incident("i3", "P2", "P3", "Search is broken for all EU customers; no workaround."),
             incident("i4", "P1", "P3", "Customers in Firefox cannot load the dashboard at all.")]

TICKETS = [
    rec("t1", "expected 'feature_request', but the reply 'This ticket asks for exporting data in Firefox' is not one of "
              "the allowed labels (billing, bug, account, feature_request, other); ticket: 'Could you add an export "
              "feature in Firefox? It already works in Chrome.'", output="This ticket asks for exporting data in Firefox"),
    rec("t2", "expected 'bug', but the reply 'Sure! It is a bug report about the app' is not one of the allowed labels "
              "(billing, bug, account, feature_request, other); ticket: 'The app crashes when I log in.'"),
    rec("t3", "expected 'billing', got 'account' (raw reply: 'account'); ticket: 'I was charged twice this month.'"),
    rec("t4", "correct: expected 'bug'; ticket: 'Saving a draft shows error 500.'", score=1.0),
]

PROMPT = "Read the ticket below and decide which queue it should go to.\n\nTicket:\n{ticket}\n\nQueue:\n"
INCIDENT_PROMPT = "Read the incident report and assign it a priority.\n\nReport: {report}\n\nPriority:\n"


def test_statements_are_the_general_clauses_merged_across_failures_and_a_scales_definitions_are_one():
    statements = extract_statements(INCIDENTS, INCIDENT_PROMPT)
    assert len(statements) == 1  # P1 (3 failures), P3 (3, after a ';'), P2 (1): one scale, so a choice takes it whole
    scale = statements[0]
    assert scale.definitions == tuple(POLICY.items()) and scale.scope == "Under our policy"
    assert scale.text == "Under our policy: " + "; ".join(f"{label} means {meaning}" for label, meaning in POLICY.items())
    assert scale.ids == ("i1", "i2", "i4", "i3")  # P1's failures first: it is the best-supported definition
    # no instance detail: the echoed report and the "expected X, got Y" heads are not statements
    assert not any(w in scale.text for w in ("Checkout", "expected", "report"))


def test_definitions_group_only_for_two_labels_and_never_for_pronouns():
    one_label = [rec("a", "expected P1, got P2: under our policy P1 means an outage"),
                 rec("b", "expected P1, got P3: P1 means an outage; this means the reply must name the label")]
    texts = [(s.text, s.definitions) for s in extract_statements(one_label, INCIDENT_PROMPT)]
    assert ("P1 means an outage", ()) in texts  # one label defined: a plain statement
    assert any(text.startswith("This means") and not definitions for text, definitions in texts)
    scale = with_definitions_grouped([Statement("'bug' means something is broken", ("t1",)),
                                      Statement("Answer with one label", ("t1", "t2")),
                                      Statement("'billing' means money", ("t2",)),
                                      Statement("'bug' means an error", ("t3",))])
    assert [s.text for s in scale] == ["'billing' means money; 'bug' means something is broken", "Answer with one label",
                                       "'bug' means an error"]  # a second meaning stays out of the scale, on its own
    assert scale[0].definitions == (("'billing'", "money"), ("'bug'", "something is broken")) and not scale[0].scope
    assert definition("P10 means x") == ("", "P10", "x")
    assert definition("Under the guide, P2 stands for y") == ("Under the guide", "P2", "y")


def test_near_duplicate_statements_merge_and_numbers_or_echoes_are_dropped():
    records = [rec("a1", "expected 10, got 16: that number is copied from the question; the answer must be computed; "
                         "reply: 'Omar had 16 eggs'; problem: 'Omar had 16 eggs and gave 6 away.'"),
               rec("a2", "expected 26, got 8: the problem needs 17 + 9; the reply looks cut off (limit 48 tokens): keep "
                         "the working short and end with the number; problem: 'Sam has 17 apples.'"),
               rec("a3", "expected 7, but the reply has no number: 'I think'; keep the working short and end with "
                         "the final number; problem: 'x'"),
               rec("a4", "correct: 9; keep it up", score=1.0)]
    statements = extract_statements(records, "Solve this math word problem.\n\n{question}\n")
    assert [(s.text, s.ids) for s in statements] == [
        ("Keep the working short and end with the number", ("a2", "a3")),  # "... the final number": the same rule
        ("The answer must be computed", ("a1",))]


def test_statements_the_prompt_already_makes_are_left_out():
    prompt = INCIDENT_PROMPT + f"Under our policy P1 means {POLICY['P1']}.\n"
    statements = extract_statements(INCIDENTS, prompt)
    assert [label for s in statements for label, _ in s.definitions] == ["P2", "P3"]
    assert POLICY["P1"] not in " ".join(s.text for s in statements)


def test_stated_labels_come_from_expected_got_and_listed_alternatives():
    assert stated_labels(TICKETS) >= {"feature_request", "bug", "billing", "account", "other"}
    assert stated_labels(INCIDENTS) == {"p1", "p2", "p3"}


def test_the_guard_refuses_phrases_of_one_training_input_and_keeps_stated_labels():
    winning = ("For example, if a ticket mentions an export feature in Firefox but not Chrome, it should be "
               "classified under 'feature_request'.")
    found = dict(specific_phrases(winning, TICKETS, PROMPT))
    assert {"Firefox", "Chrome", "export feature"} <= set(found) and set(found.values()) == {"t1"}
    general = "Answer with exactly one of the allowed labels: billing, bug, account, feature_request or other."
    assert specific_phrases(general, TICKETS, PROMPT) == []
    # the feedback's own rule words are allowed although only one record states them
    assert specific_phrases(f"P2 means {POLICY['P2']}.", INCIDENTS, INCIDENT_PROMPT,
                            extract_statements(INCIDENTS, INCIDENT_PROMPT)) == []
    assert specific_phrases("Mind the Firefox dashboard.", INCIDENTS, INCIDENT_PROMPT) == [("Firefox", "i4")]
    assert specific_phrases("If customers cannot load the dashboard, choose P1.", INCIDENTS, INCIDENT_PROMPT) == [
        ("cannot load the", "i4"), ("load the dashboard", "i4"), ("cannot load", "i4")]


def test_the_guard_needs_two_records_to_tell_anything_apart():
    assert specific_phrases("Watch the Firefox export feature.", TICKETS[:1], PROMPT) == []


def test_form_failures_and_the_worked_example():
    assert [r["Inputs"]["instance_id"] for r in form_failures(TICKETS)] == ["t1", "t2"]
    assert form_failures(INCIDENTS) == []  # wrong label, right form
    example = worked_example(TICKETS, PROMPT)
    assert example is not None and (example.instance_id, example.expected) == ("t2", "bug")  # the shorter input
    assert example.line() == 'Example: "The app crashes when I log in." -> bug'
    assert worked_example(TICKETS, PROMPT + example.line()) .instance_id == "t1"  # already shown: the next one


def test_rules_reply_parsing():
    parsed = parse_rules_reply('{"keep": [2, "1", 9, 2], "reason": "r", "instruction": " Do  X. "}', 3)
    assert parsed.keep == [2, 1] and parsed.instruction == "Do X."
    with pytest.raises(EditRejected, match="names no statement: give numbers from 1 to 3"):
        parse_rules_reply('{"keep": [7], "reason": "", "instruction": ""}', 3)
    with pytest.raises(EditRejected, match="names no statement: give the number 1$"):  # not "from 1 to 1"
        parse_rules_reply('{"keep": [], "reason": "", "instruction": ""}', 1)
    with pytest.raises(EditRejected, match="keep"):
        parse_rules_reply('{"instruction": "x"}', 3)


def test_rules_proposal_uses_a_grounded_condensation_else_the_statements_verbatim():
    statements = extract_statements(INCIDENTS, INCIDENT_PROMPT)
    short = "Under our policy P1 means an outage or data loss; P2 a core feature broken; P3 a workaround exists."
    condensed = json.dumps({"keep": [1], "reason": "outages were rated too low", "instruction": short})
    proposal = parse_rules_proposal(condensed, INCIDENT_PROMPT, statements, INCIDENTS)
    assert proposal.text == INCIDENT_PROMPT.replace("Report:", f"{short}\n\nReport:")
    assert proposal.kind == "rules" and proposal.failure_ids == ("i1", "i2", "i4", "i3")
    assert proposal.rationale == "outages were rated too low"
    unfinished = json.dumps({"keep": [1], "reason": "", "instruction": short.rstrip(".")})  # seen in the quick start
    assert parse_rules_proposal(unfinished, INCIDENT_PROMPT, statements, INCIDENTS).text == proposal.text
    verbatim = "Under our policy:\n" + "".join(f"{label} means {meaning}.\n" for label, meaning in POLICY.items())
    invented = json.dumps({"keep": [1], "reason": "", "instruction": "Prioritize severe issues like P1, P2 or P3."})
    dropped = json.dumps({"keep": [1], "reason": "", "instruction": f"P1 means {POLICY['P1']}."})  # P2, P3 left out
    assert labels_left_out("P1 or P10: 'feature request' and P2-ish", [Statement("x", (), (
        ("P1", "a"), ("P2", "b"), ("'feature request'", "c")))]) == ["P2"]  # whole labels, a multi-word one too
    for reply in (invented, dropped):
        proposal = parse_rules_proposal(reply, INCIDENT_PROMPT, statements, INCIDENTS)
        assert proposal.text == INCIDENT_PROMPT.replace("Report:", f"{verbatim}\nReport:")
        assert proposal.rationale.startswith("The feedback on these failures states:")


class Scripted:
    def __init__(self, replies):
        self.replies, self.calls = list(replies), []

    def __call__(self, model, messages, **params):
        self.calls.append({"content": messages[-1]["content"], **params})
        return Reply(text=self.replies.pop(0), prompt_tokens=10, completion_tokens=5)


def _reflector(tmp_path, replies, style="mixed"):
    runlog = RunLog(tmp_path / "run")
    transport = Scripted(replies)
    llm = LLM("openai/toy", Budget(max_rollouts=10), runlog, transport=transport, extra={"seed": 3})
    reflector = RationaleReflector(llm=llm, runlog=runlog, style=style, attempts=2,
                                   response_format={"type": "json_object", "schema": INSTRUCTION_SCHEMA})
    return reflector, transport, runlog


def test_mixed_rotation_asks_for_rules_with_numbered_statements_and_records_reason_and_failure_ids(tmp_path):
    scale = "P1 means an outage; P2 means a broken core feature; P3 means a workaround exists."
    reply = json.dumps({"keep": [1], "reason": "outages were rated P2 or P3", "instruction": scale})
    reflector, transport, runlog = _reflector(tmp_path, [reply])
    parent = {"p": INCIDENT_PROMPT}
    proposal, _ = reflector.reflect(parent, {"p": INCIDENTS}, ["p"])
    runlog.close()
    asked = transport.calls[0]
    assert f"1. Under our policy: P1 means {POLICY['P1']}; P2 means {POLICY['P2']}; P3" in asked["content"]
    assert f"{POLICY['P3']} [4]\n\nSome of the wrong answers" in asked["content"]  # one numbered rule
    assert asked["response_format"] == {"type": "json_object", "schema": RULES_SCHEMA}
    child = candidate_hash({**parent, **proposal.new_texts})
    assert reflector.rationales[child] == {"p": "outages were rated P2 or P3 (failures: i1, i2, i4, i3)"}
    assert reflector.motivations[child] == {"p": ["i1", "i2", "i4", "i3"]} and reflector.kinds[child] == {"p": "rules"}
    assert scale in proposal.new_texts["p"]
    logged = [r for r in read_records(tmp_path / "run") if r["kind"] == "proposal"][0]
    assert logged["failures"] == {"p": ["i1", "i2", "i4", "i3"]}


def test_mixed_rotation_adds_a_worked_example_without_an_llm_call_once_per_parent(tmp_path):
    rules = json.dumps({"keep": [1], "reason": "replies were sentences",
                        "instruction": "Answer with one of the allowed labels: billing, bug, account, feature_request, "
                                       "other."})
    reflector, transport, runlog = _reflector(tmp_path, [rules, rules])
    parent = {"p": PROMPT}
    first, _ = reflector.reflect(parent, {"p": TICKETS}, ["p"])  # rules
    second, _ = reflector.reflect(parent, {"p": TICKETS}, ["p"])  # example: no call
    assert len(transport.calls) == 1
    assert 'Example: "The app crashes when I log in." -> bug\n\nTicket:' in second.new_texts["p"]
    child = candidate_hash({**parent, **second.new_texts})
    assert reflector.rationales[child]["p"].startswith("The feedback on failures t1, t2, t3 says the answer's form")
    reflector.calls = 1  # the example's turn again: already tried on this parent, so the rules move instead
    reflector.reflect(parent, {"p": TICKETS}, ["p"])
    runlog.close()
    assert "numbered rules" in transport.calls[1]["content"]  # (the same rules again is refused as a known candidate)


def test_an_edit_quoting_one_training_input_is_refused_and_retried_with_the_reason(tmp_path):
    quoting = json.dumps({"problem": "p", "instruction": "If a ticket mentions an export feature in Firefox, choose "
                                                         "feature_request."})
    general = json.dumps({"problem": "feature asks were filed as bugs",
                          "instruction": "If the customer asks for something new, choose feature_request."})
    reflector, transport, runlog = _reflector(tmp_path, [quoting, general], style="edit")
    proposal, _ = reflector.reflect({"p": PROMPT}, {"p": TICKETS}, ["p"])
    runlog.close()
    assert "names details of single training examples" in reflector.rejected[0]["reason"]
    assert "'Firefox' (only in t1)" in transport.calls[1]["content"]
    assert "something new" in proposal.new_texts["p"] and "Firefox" not in proposal.new_texts["p"]
    child = candidate_hash({"p": proposal.new_texts["p"]})
    assert reflector.rationales[child]["p"] == "feature asks were filed as bugs (failures: t1, t2, t3)"


def test_the_plain_rewrite_asks_for_no_reason_and_its_rationale_states_what_changed(tmp_path):
    """Asked for a reason first, the 1.5B model gave a usable tickets rewrite 0 times in 12 (bench/results/
    simplify-probe.md): the request asks for the prompt only, and the PR states what the rewrite dropped and added."""
    with_reason = "Reason: one label per answer.\n````prompt\nGive the queue of the ticket.\n\nTicket:\n{ticket}\n````"
    without = "````prompt\nQueue of this ticket?\n\nTicket:\n{ticket}\n````"
    reflector, transport, runlog = _reflector(tmp_path, [with_reason, without], style="mixed")
    reflector.warm_start_rewrites = 2
    stating_nothing = [r for r in TICKETS if r["Inputs"]["instance_id"] == "t3"]  # expected/got only: no rule to carry over first
    first, _ = reflector.reflect({"p": PROMPT}, {"p": stating_nothing}, ["p"])
    second, _ = reflector.reflect({"p": PROMPT}, {"p": stating_nothing}, ["p"])
    runlog.close()
    assert "Reason" not in transport.calls[0]["content"] and "prompt inside ONE fenced block" in transport.calls[0]["content"]
    rationales = [reflector.rationales[candidate_hash(p.new_texts)]["p"] for p in (first, second)]
    assert rationales[0] == "one label per answer."  # a reason given unasked, about the change, stays
    assert rationales[1] == (f"Plain rewrite, {len(PROMPT)} -> {len(second.new_texts['p'])} chars, asked only to make "
                             f"the prompt easier for a small model (no failures shown): dropped "
                             f"{PROMPT.splitlines()[0]!r}; added 'Queue of this ticket?'.")
    assert not any("shorter and more direct" in r for r in rationales)


def test_the_rewrite_request_lists_the_feedback_statements(tmp_path):
    reflector, transport, runlog = _reflector(tmp_path, ["Rationale: x\n````prompt\nRate it.\n{report}\n````"],
                                              style="rewrite")
    reflector.reflect({"p": INCIDENT_PROMPT}, {"p": INCIDENTS}, ["p"])
    runlog.close()
    assert "## Rules the feedback states" in transport.calls[0]["content"]
    assert f"Under our policy: P1 means {POLICY['P1']}; P2 means" in transport.calls[0]["content"]


def test_with_schema_keeps_the_constrained_mode():
    assert with_schema({"type": "json_object", "schema": INSTRUCTION_SCHEMA}, RULES_SCHEMA, "r") == \
        {"type": "json_object", "schema": RULES_SCHEMA}
    hosted = with_schema({"type": "json_schema", "json_schema": {"name": "e", "schema": {}, "strict": True}},
                         RULES_SCHEMA, "r")
    assert hosted == {"type": "json_schema", "json_schema": {"name": "r", "schema": RULES_SCHEMA, "strict": True}}
    assert with_schema(None, RULES_SCHEMA, "r") is None


def test_output_shape_classes():
    assert output_shape("42") == ("1", "line", "number")
    assert output_shape(" billing ") == ("1", "line", "text")
    assert output_shape("To solve this, first add 17 and 9 to get the total number of apples Sam has now") == \
        ("6-20", "line", "text")
    assert output_shape("") == ("0", "line", "empty") and output_shape('{"a": 1}')[2] == "json"
    assert shape_changed(["long working " * 12, "long working " * 12], ["26", "long working " * 12])
    assert not shape_changed(["bug", "billing", "other"], ["account", "bug", "billing"])


def _proposal(before, after, outputs_before, outputs_after, candidate=None):
    evaluation = lambda scores, outputs: SimpleNamespace(scores=scores, outputs=outputs)  # noqa: E731
    return SimpleNamespace(candidate=candidate or {"p": "child"}, subsample_scores_before=before,
                           subsample_scores_after=after, eval_before=evaluation(before, outputs_before),
                           eval_after=evaluation(after, outputs_after))


def test_a_tie_at_zero_goes_to_val_only_when_the_answers_changed_form():
    gate = ValGate("improvement_or_equal", set())
    same_form = _proposal([0, 0, 0], [0, 0, 0], ["bug", "other", "bug"], ["billing", "bug", "account"])
    assert not gate.should_accept(same_form, None)
    assert "did not change form" in gate.reject_reason(same_form, None)
    new_form = _proposal([0, 0, 0], [0, 0, 0], ["To solve this we first " * 5] * 3, ["26", "7", "To solve " * 9])
    assert gate.should_accept(new_form, None)
    # other ties and improvements: gepa's rule as before
    assert gate.should_accept(_proposal([1, 0, 0], [0, 1, 0], ["a", "b", "c"], ["a", "b", "c"]), None)
    assert not gate.should_accept(_proposal([1, 0, 0], [0, 0, 0], ["a", "b", "c"], ["a", "b", "c"]), None)
    # strict improvement is untouched, and warm-start rewrites still skip the gate
    assert not ValGate("strict_improvement", set()).should_accept(new_form, None)
    ungated = _proposal([0, 0], [0, 0], ["a", "b"], ["c", "d"], candidate={"p": "warm"})
    assert ValGate("improvement_or_equal", {candidate_hash({"p": "warm"})}).should_accept(ungated, None)
    worse = _proposal([1, 1], [1, 0], ["a", "b"], ["a", "d"], candidate={"p": "warm"})  # lost a minibatch instance
    assert not ValGate("improvement_or_equal", {candidate_hash({"p": "warm"})}).should_accept(worse, None)
    level = _proposal([1, 0], [0, 1], ["a", "b"], ["c", "d"], candidate={"p": "warm"})
    assert ValGate("strict_improvement", {candidate_hash({"p": "warm"})}).should_accept(level, None)


def test_a_reason_that_retells_one_example_gives_way_to_the_facts():
    statements = extract_statements(INCIDENTS, INCIDENT_PROMPT)
    retold = json.dumps({"keep": [1], "reason": "The report says Checkout is down for every customer since 9:00.",
                         "instruction": ""})
    proposal = parse_rules_proposal(retold, INCIDENT_PROMPT, statements, INCIDENTS)
    assert proposal.rationale == f"The feedback on these failures states: {statements[0].text!r}"
    long_reason = json.dumps({"keep": [1], "reason": "x " * 200, "instruction": ""})
    assert parse_rules_proposal(long_reason, INCIDENT_PROMPT, statements, INCIDENTS).rationale.startswith(
        "The feedback on these failures states:")


def test_a_tie_at_zero_on_an_instance_nobody_solves_does_not_put_a_candidate_on_the_front():
    from gepa_bot.search.engine import pareto_front

    result = SimpleNamespace(val_subscores=[{0: 1.0, 1: 0.0}, {0: 1.0, 1: 0.0}, {0: 0.0, 1: 0.0}],
                             per_val_instance_best_candidates={0: {0, 1}, 1: {0, 1, 2}})
    assert pareto_front(result) == [0, 1]  # #2 ties only where every candidate scores 0
    result.val_subscores[2][1] = 0.5
    result.per_val_instance_best_candidates[1] = {2}
    assert pareto_front(result) == [0, 1, 2]


def test_a_form_requirement_stated_after_the_expected_value_is_a_statement():
    records = [rec(q, f"{q}: expected {m} metres as a bare number, reply was {r!r} (not a bare number)")
               for q, m, r in (("6 feet", "1.83", "About 1.83 m."), ("half a mile", "805", "Half a mile is 2640 feet."),
                               ("3 yards", "2.74", "3 yards = 2.74 m"))]
    records.append(rec("12 inches", "12 inches: expected 0.305 metres as a bare number, reply was '0.5' (wrong value)"))
    [statement] = extract_statements(records, "{quantity}\nHow long is that?\n")
    assert statement.text == "Answer with metres as a bare number" and len(statement.ids) == 4
    # a value followed only by what the reply was states no rule
    assert extract_statements([rec("t", "expected 'bug', got 'billing' (raw reply: 'billing')")], PROMPT) == []


def test_the_metres_examples_feedback_states_the_rule_for_the_form():
    rule = "; answer with the number of metres only, no unit"  # examples/pytest-metres/tests/test_convert.py
    records = [rec(q, f"{q}: expected {m} metres as a bare number, reply was {r!r} (not a bare number){rule}")
               for q, m, r in (("6 feet", "1.83", "1.83 meters"), ("1 mile", "1609", "1 mile is 1609.34 meters."))]
    texts = [s.text for s in extract_statements(records, "{quantity}\nHow long is that?\n")]
    assert "Answer with the number of metres only, no unit" in texts


def test_the_warm_start_opens_with_the_rules_the_feedback_states(tmp_path):
    rules = json.dumps({"keep": [1], "reason": "the policy", "instruction": f"Under our policy P1 means {POLICY['P1']}."})
    rewrite = "Reason: plainer.\n````prompt\nRate the incident P1-P4.\n\nReport: {report}\n````"
    reflector, transport, runlog = _reflector(tmp_path, [rules, rewrite], style="mixed")
    reflector.warm_start_rewrites = 2
    first, _ = reflector.reflect({"p": INCIDENT_PROMPT}, {"p": INCIDENTS}, ["p"])
    second, _ = reflector.reflect({"p": INCIDENT_PROMPT}, {"p": INCIDENTS}, ["p"])
    runlog.close()
    kinds = [reflector.kinds[candidate_hash(p.new_texts)]["p"] for p in (first, second)]
    assert kinds == ["rules", "simplify"] and "numbered rules" in transport.calls[0]["content"]
    assert POLICY["P1"] in first.new_texts["p"]
    assert {candidate_hash(first.new_texts), candidate_hash(second.new_texts)} == reflector.ungated



def test_the_warm_start_shows_a_worked_example_second_when_the_failures_are_about_form(tmp_path):
    """The metres example: every failure is a form failure ("not a bare number"); after the rules move the warm
    start tries one worked example (no LLM call) before the plain rewrites."""
    rules = json.dumps({"keep": [1], "reason": "replies were sentences",
                        "instruction": "Answer with one of the allowed labels: billing, bug, account, feature_request, "
                                       "other."})
    rewrite = "Reason: plainer.\n````prompt\nQueue?\n\nTicket:\n{ticket}\n````"
    reflector, transport, runlog = _reflector(tmp_path, [rules, rewrite], style="mixed")
    reflector.warm_start_rewrites = 3
    proposals = [reflector.reflect({"p": PROMPT}, {"p": TICKETS}, ["p"])[0] for _ in range(3)]
    runlog.close()
    kinds = [reflector.kinds[candidate_hash(p.new_texts)]["p"] for p in proposals]
    assert kinds == ["rules", "example", "simplify"] and len(transport.calls) == 2
    assert 'Example: "The app crashes when I log in." -> bug' in proposals[1].new_texts["p"]


def _example_eval():
    """prompts.example/evals/run_eval.py as a module (it is a script, not part of the package)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "prompts.example" / "evals" / "run_eval.py"
    spec = importlib.util.spec_from_file_location("example_run_eval", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("reply", ["billing", "I think this is a question for sales"])
def test_the_example_evals_feedback_states_each_queues_definition_as_one_statement(monkeypatch, capsys, reply):
    """The quick start's eval quotes its triage guide for the expected queue; the rules move must see each
    definition whole (not cut at a colon), so the reflector can carry it into the prompt."""
    example = _example_eval()
    monkeypatch.setattr(example.evalkit, "complete", lambda *args, **kwargs: reply)
    rows = {row["label"]: row for row in example.load_tickets().values() if row["label"] != "billing"}
    for row in rows.values():
        example.score_one(row, "system", "Queue for: {ticket}", 3, SimpleNamespace())
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["score"] for line in lines] == [0.0] * len(rows)
    statements = extract_statements([rec(line["id"], line["feedback"]) for line in lines], "Queue for: {ticket}")
    texts = [s.text for s in statements]
    for label in rows:
        definition = example.TRIAGE_GUIDE[label]
        assert any(f"'{label}' means {definition}" in text for text in texts), (label, texts)
    assert not any(row["text"][:20] in text for row in rows.values() for text in texts)  # no ticket text


def test_a_verdict_on_one_reply_before_but_is_not_part_of_the_statement():
    """Seen on continents: the prompt gained "Right continent, but answer with the two-letter continent code only."""
    feedback = ("expected 'EU' (Europe), got 'Europe': right continent, but answer with the two-letter continent code "
                "only; the codes are AF Africa, EU Europe")
    texts = [s.text for s in extract_statements([rec("c1", feedback)])]
    assert texts == ["Answer with the two-letter continent code only", "The codes are AF Africa, EU Europe"]
    kept = [s.text for s in extract_statements([rec("c2", "never guess, but always answer with one word only")])]
    assert kept == ["Never guess, but always answer with one word only"]  # the prefix states a rule: kept


def test_a_leading_input_before_expected_gives_a_worked_example_only_when_it_varies():
    """docs/adapters.md's pytest feedback starts with the input ("6 feet: expected 1.83 metres ..."); a fixed
    leading word on every record ("policy: expected P1") is not an input."""
    metres = [rec("a", "6 feet: expected 1.83 metres as a bare number, reply was '1.83 meters' (not a bare number)"),
              rec("b", "10 km: expected 10000 metres as a bare number, reply was 'It is 10,000 m' (not a bare number)")]
    example = worked_example(metres, "{quantity}\nHow long is that?")
    assert (example.input, example.expected, example.line()) == ("10 km", "10000", 'Example: "10 km" -> 10000')
    assert worked_example(metres[:1], "{quantity}") is None  # one record cannot show that the text varies
    fixed = [rec("a", "policy: expected P1 as a bare label (not a bare label)"),
             rec("b", "policy: expected P2 as a bare label (not a bare label)")]
    assert worked_example(fixed, "{report}") is None


def test_a_sentence_about_the_prompt_itself_is_cut_from_the_condensed_rule():
    """Seen in the quick start (1.5B reflector): a correct rule followed by "The prompt should be modified to
    explicitly state this rule.", which went into the candidate prompt as is."""
    statements = extract_statements(INCIDENTS, INCIDENT_PROMPT)
    p1 = 1  # the scale P1-P3
    rule = "P1 means an outage or data loss; P2 means a broken core feature; P3 means a workaround exists."
    meta = json.dumps({"keep": [p1], "reason": "outages were rated too low", "instruction":
                       f"{rule} The prompt should be modified to explicitly state this rule."})
    proposal = parse_rules_proposal(meta, INCIDENT_PROMPT, statements, INCIDENTS)
    assert proposal.text == INCIDENT_PROMPT.replace("Report:", f"{rule}\n\nReport:")
    incidents_bench = json.dumps({"keep": [p1], "reason": "", "instruction": f"{rule} In the prompt, "
                                  f"explicitly define that P1 means {POLICY['P1']}."})  # seen on the incidents bench
    assert parse_rules_proposal(incidents_bench, INCIDENT_PROMPT, statements, INCIDENTS).text == proposal.text
    only_meta = json.dumps({"keep": [p1], "reason": "", "instruction": "This rule should be added to the prompt."})
    verbatim = parse_rules_proposal(only_meta, INCIDENT_PROMPT, statements, INCIDENTS)
    assert f"Under our policy:\nP1 means {POLICY['P1']}.\n" in verbatim.text and "should" not in verbatim.text
    continents = json.dumps({"keep": [p1], "reason": "", "instruction": "Modify the prompt to include the rule "
                             f"'P1 means {POLICY['P1']}'."})  # seen on the continents bench (c87ac0d, seed 1)
    assert parse_rules_proposal(continents, INCIDENT_PROMPT, statements, INCIDENTS).text == verbatim.text


def test_every_move_keeps_sentences_about_the_prompt_out_of_the_prompt():
    """The incidents bench's best prompt (seed 0, budget 200) held "In the prompt, explicitly define that P1 means
    ..." beside the definitions it restates: the edit and rewrite moves had no meta-sentence check, only rules."""
    from gepa_bot.search.reflection_proposals import ProposalRejected, parse_edit_proposal, parse_reply

    rule = f"P1 means {POLICY['P1']}."
    both = json.dumps({"problem": "outages rated low", "instruction": f"{rule} In the prompt, explicitly define "
                       f"that P1 means {POLICY['P1']}."})
    assert parse_edit_proposal(both, INCIDENT_PROMPT).text == INCIDENT_PROMPT.replace("Report:", f"{rule}\n\nReport:")
    only_meta = json.dumps({"rationale": "r", "edits": [{"op": "add", "target": "", "text":
                            "The prompt should explicitly state the policy."}]})
    with pytest.raises(ProposalRejected, match="speaks about the prompt instead of telling the model"):
        parse_edit_proposal(only_meta, INCIDENT_PROMPT)
    rewrite = f"Reason: outages\n```\nThis prompt must define P1.\n{rule}\n{INCIDENT_PROMPT}```\n"
    with pytest.raises(ProposalRejected, match="speaks about the prompt \\('This prompt must define P1.'\\)"):
        parse_reply(rewrite, INCIDENT_PROMPT)
    about_prompts = "Rewrite the prompt below so it is shorter.\n{prompt}\n"  # a task about prompts may say so
    edit = json.dumps({"problem": "p", "instruction": "The rewritten prompt must keep its placeholders."})
    assert "The rewritten prompt must keep its placeholders." in parse_edit_proposal(edit, about_prompts).text


def test_a_number_one_failure_expected_is_not_a_label_the_guard_allows():
    """Seen in the metres example: an edit quoting "Answer with 2500 metres as a bare number." (the 2.5 km case's
    answer) passed the generality guard, because every value after "expected" counted as a stated label."""
    from gepa_bot.search.reflection_proposals import Proposal, ProposalRejected, guard_generality

    metres = [rec("a", "2.5 kilometres: expected 2500 metres as a bare number, reply was '2.5 km' (not a bare number)"),
              rec("b", "6 feet: expected 1.83 metres as a bare number, reply was 'about 1.83 m' (not a bare number)")]
    current = "{quantity}\nHow long is that?\n"
    quoting = Proposal("r", "Answer like this: 2500 metres becomes 2500.\n\n" + current, kind="edit")
    with pytest.raises(ProposalRejected, match="'2500' \\(only in a\\)"):
        guard_generality(quoting, current, metres)
    assert "2500" not in stated_labels(metres) and "bug" in stated_labels([rec("t", "expected 'bug', got 'other'")])
    both = [rec("x", "expected 4, got 5"), rec("y", "expected 4, got 3")]
    assert "4" in stated_labels(both)  # a value two failures state is a label of the task


def test_the_rationale_names_each_motivating_failure_once():
    """gepa pads a short minibatch with repeated ids; the metres PR read "(failures: ...[2.5 kilometres],
    ...[2.5 kilometres], ...)"."""
    from gepa_bot.search.reflection import motivated

    assert motivated("why", ["a", "b", "a"]) == "why (failures: a, b)"
    assert motivated("why", []) == "why"


SYSTEM = "You are a helpful assistant working on a SaaS company's support desk.\nBe brief.\n"


def test_a_system_prompt_is_rewritten_as_a_role_from_its_task_prompt_and_an_invented_task_is_refused(tmp_path):
    from gepa_bot.search.edits import ROLE_SCHEMA

    invented = json.dumps({"reason": "it is vague", "task": "You find the root cause of an intermittent crash in the app.",
                           "answer": "Reply with the cause."})
    role = json.dumps({"reason": "it never says that the model picks a queue",
                       "task": "You decide which queue a support ticket should go to",
                       "answer": "Answer with the queue only, one of billing, bug, account, feature_request or other."})
    reflector, transport, runlog = _reflector(tmp_path, [invented, role], style="mixed")
    reflector.calls = 2  # the rotation's turn for a plain rewrite
    parent = {"task": PROMPT, "system": SYSTEM}
    proposal, _ = reflector.reflect(parent, {"system": TICKETS}, ["system"])
    runlog.close()
    assert "A small language model gets a system prompt and a task prompt" in transport.calls[0]["content"]
    assert PROMPT.strip() in transport.calls[0]["content"]  # the task prompt is shown
    assert transport.calls[0]["response_format"] == {"type": "json_object", "schema": ROLE_SCHEMA}
    assert "brings in words neither the task prompt" in reflector.rejected[0]["reason"]
    assert proposal.new_texts["system"] == ("You decide which queue a support ticket should go to. Answer with the queue "
                                            "only, one of billing, bug, account, feature_request or other.\n")
    child = candidate_hash({**parent, **proposal.new_texts})
    assert reflector.kinds[child] == {"system": "role"}
    assert reflector.rationales[child] == {"system": "it never says that the model picks a queue"}


def test_the_role_move_is_asked_once_per_parent_and_never_for_the_prompt_with_the_placeholder(tmp_path):
    rewrite = "Reason: plainer.\n````prompt\nYou answer support tickets. Be brief.\n````"
    task_rewrite = "Reason: plainer.\n````prompt\nWhich queue? {ticket}\n````"
    reflector, transport, runlog = _reflector(tmp_path, [rewrite, task_rewrite], style="mixed")
    reflector.roles_tried.add((candidate_hash({"task": PROMPT, "system": SYSTEM}), "system"))
    reflector.calls = 2
    first, _ = reflector.reflect({"task": PROMPT, "system": SYSTEM}, {"system": TICKETS}, ["system"])
    reflector.calls = 2
    second, _ = reflector.reflect({"task": PROMPT, "system": SYSTEM}, {"task": TICKETS}, ["task"])
    runlog.close()
    assert all("Rewrite the prompt below" in call["content"] for call in transport.calls)
    assert first.new_texts == {"system": "You answer support tickets. Be brief.\n"}
    assert second.new_texts == {"task": "Which queue? {ticket}\n"}


def test_role_reply_parsing():
    from gepa_bot.search.edits import parse_role_reply

    with pytest.raises(EditRejected, match='must start with "You"'):
        parse_role_reply(json.dumps({"reason": "r", "task": "Classify tickets.", "answer": "Reply with a label."}))
    for answer in (" ", "Read the ticket and decide its queue."):  # seen: content, not the answer's form
        with pytest.raises(EditRejected, match='"answer" must start with "Reply with"'):
            parse_role_reply(json.dumps({"reason": "r", "task": "You classify tickets.", "answer": answer}))
    parsed = parse_role_reply('Sure: {"reason": "r", "task": "You  classify\\ntickets.", "answer": "Reply with a label."}')
    assert (parsed.task, parsed.answer) == ("You classify tickets.", "Reply with a label.")


def test_a_proposal_that_returns_to_an_earlier_candidate_is_refused_and_keeps_its_rationale(tmp_path):
    back = f"Reason: plainer.\n````prompt\n{INCIDENT_PROMPT}````"  # the grandparent's text again (seen, metres)
    other = "Reason: shorter.\n````prompt\nRate the incident P1-P4.\n\nReport: {report}\n````"
    rules = json.dumps({"keep": [1], "reason": "the policy", "instruction": f"Under our policy P1 means {POLICY['P1']}."})
    reflector, transport, runlog = _reflector(tmp_path, [rules, back, other], style="mixed")
    first, _ = reflector.reflect({"p": INCIDENT_PROMPT}, {"p": INCIDENTS}, ["p"])
    reflector.calls = 2  # the plain rewrite's turn
    second, _ = reflector.reflect(first.new_texts, {"p": INCIDENTS}, ["p"])
    runlog.close()
    assert reflector.rejected[0]["reason"] == ("the proposed prompt is the same as an earlier candidate's; write a "
                                               "different one")
    assert second.new_texts["p"].startswith("Rate the incident P1-P4.")
    assert reflector.rationales[candidate_hash(first.new_texts)]["p"].startswith("the policy")


def test_a_proposal_that_only_changes_punctuation_is_refused_before_any_rollout(tmp_path):
    """Seen on the incidents bench (e37c5b4, seed 1): a rewrite whose one change was a comma ("Under our policy,
    P2 means ...") went to a minibatch."""
    comma = f"Reason: clearer.\n````prompt\n{INCIDENT_PROMPT.replace('Report:', 'REPORT,', 1)}````"
    other = "Reason: shorter.\n````prompt\nRate the incident P1-P4.\n\nReport: {report}\n````"
    reflector, transport, runlog = _reflector(tmp_path, [comma, other], style="mixed")
    reflector.calls = 2  # the plain rewrite's turn
    proposal, _ = reflector.reflect({"p": INCIDENT_PROMPT}, {"p": INCIDENTS}, ["p"])
    runlog.close()
    assert len(transport.calls) == 2
    assert reflector.rejected[0]["reason"] == ("the proposed prompt is identical to the current one apart from "
                                               "punctuation and case; change what it says")
    assert proposal.new_texts["p"].startswith("Rate the incident P1-P4.")


def test_an_added_paragraph_keeps_only_the_sentences_the_prompt_does_not_have():
    """Seen on the incidents bench (e37c5b4, seed 1): an added paragraph began with the prompt's first sentence."""
    from gepa_bot.search.reflection_proposals import ProposalRejected, parse_edit_proposal

    rule = f"P4 means {POLICY['P3']}."
    again = json.dumps({"problem": "p", "instruction": f"Read the incident report and assign it a priority. {rule}"})
    assert parse_edit_proposal(again, INCIDENT_PROMPT).text == INCIDENT_PROMPT.replace("Report:", f"{rule}\n\nReport:")
    only_again = json.dumps({"problem": "p", "instruction": "Read the incident report and  assign it a priority."})
    with pytest.raises(ProposalRejected, match="only repeats what the prompt already says"):
        parse_edit_proposal(only_again, INCIDENT_PROMPT)
    quoted = json.dumps({"problem": "p", "instruction": "read the incident report and assign it a 'priority'!"})
    with pytest.raises(ProposalRejected, match="only repeats what the prompt already says"):  # seen on tickets
        parse_edit_proposal(quoted, INCIDENT_PROMPT)
    partial = json.dumps({"problem": "p", "instruction": "Read the incident."})  # a sentence's start is new text
    assert "Read the incident.\n\nReport:" in parse_edit_proposal(partial, INCIDENT_PROMPT).text


def test_stated_numbers_are_the_numbers_written_on_their_own():
    assert stated_numbers("Rate from -5 (very negative) to 5 (very positive).") == {-5.0, 5.0}
    assert stated_numbers("a score of 1-5, at most 12,000 chars, 0.5 steps, \u22122 too") == {1.0, 5.0, 12000.0, 0.5,
                                                                                           -2.0}
    assert stated_numbers("P1 (highest) to P4 (lowest), gpt-4, v2") == set()  # numbers inside names


SENTIMENT_PROMPT = "Rate the sentiment of the text from -5 (very negative) to 5 (very positive).\n\nText: {text}\n"
SENTIMENT = [rec("s1", "expected -3, got 2", output="2"), rec("s2", "expected 4, got 1", output="1")]


SCALE_CHANGED = ("Reason: the scale was unclear.\n````prompt\nRate the text from 1 (negative) to 5 (positive).\n\n"
                 "Text: {text}\n````")
SCALE_KEPT = ("Reason: replies missed the sign.\n````prompt\nRate the sentiment from -5 (very negative) to 5 (very "
              "positive); a negative text gets a negative number.\n\nText: {text}\n````")
CUE_FILLED = ("Reason: the queues are named.\n````prompt\nYou help our support team triage incoming customer "
              "tickets.\n\nTicket:\n{ticket}\n\nQueue: billing\n````")
CUE_KEPT = ("Reason: the queues are named.\n````prompt\nName the queue: billing, bug, account, feature_request or "
            "other.\n\nTicket:\n{ticket}\n\nQueue:\n````")


@pytest.mark.parametrize("prompt, records, refused, taken, reason, kept_text", [
    # afinn bench: "-5 ... to 5" became "1 (negative) to 5 (positive)" and reached val on a tie at 0
    (SENTIMENT_PROMPT, SENTIMENT, SCALE_CHANGED, SCALE_KEPT,
     "the proposed prompt drops the number(s) -5 that the original prompt states (a scale, a limit or a format); keep "
     "them as they are", "a negative text gets a negative number"),
    # tickets bench (2ca8c04, seed 2): a plain rewrite ended "Queue: billing", the answer for every ticket
    (PROMPT, TICKETS, CUE_FILLED, CUE_KEPT,
     "the proposed prompt ends with 'billing' after 'Queue:', where the model's answer begins: that answers every "
     "input alike; end the prompt with that line as it is", "Ticket:\n{ticket}\n\nQueue:\n"),
], ids=["scale the user wrote", "answer after the cue"])
def test_a_rewrite_the_guards_refuse_is_retried_with_the_reason(tmp_path, prompt, records, refused, taken, reason,
                                                                 kept_text):
    reflector, transport, runlog = _reflector(tmp_path, [refused, taken], style="rewrite")
    reflector.originals = {"p": prompt}
    proposal, _ = reflector.reflect({"p": prompt}, {"p": records}, ["p"])
    runlog.close()
    assert [r["reason"] for r in reflector.rejected] == [reason]
    assert reason in transport.calls[1]["content"]
    assert kept_text in proposal.new_texts["p"]


@pytest.mark.parametrize("ending", [
    "Queue: billing, bug, account, feature_request or other.",  # the choices (best-of-N, tickets seed 1: 0.6 val)
    "Queue: <queue name>",
    "Queue: billing if it is about charges.\nQueue: bug if something is broken.\n\nAnswer in the form `Queue: <name>`.",
    "Queue:",
])
def test_the_cue_followed_by_the_choices_or_by_more_instructions_is_not_an_answer(ending):
    guard_answer_cue(Proposal(rationale="r", text=f"Triage the ticket.\n\nTicket:\n{{ticket}}\n\n{ending}\n"), PROMPT)


def test_the_answer_cue_is_the_last_line_after_the_input_when_it_ends_with_a_colon():
    assert answer_cue(PROMPT) == "Queue:" and answer_cue(INCIDENT_PROMPT) == "Priority:"
    assert answer_cue("Solve this.\n\n{question}\n") is None


def test_numbers_a_candidate_added_itself_may_go_and_the_users_own_may_not():
    added = Proposal(rationale="r", text="Rate it from -5 to 5.\n{text}\n")
    guard_stated_numbers(added, "Rate it from -5 to 5.\nExample: 'meh' -> 0\n{text}\n", "Rate it from -5 to 5.\n{text}\n")
    with pytest.raises(ProposalRejected, match=r"drops the number\(s\) -5, 5"):
        guard_stated_numbers(Proposal(rationale="r", text="Rate it.\n{text}\n"), SENTIMENT_PROMPT, SENTIMENT_PROMPT)
    guard_stated_numbers(Proposal(rationale="r", text="Rate it.\n{text}\n"), SENTIMENT_PROMPT, "")  # no original known


def test_a_rewrite_reason_that_answers_the_task_instead_gives_way_to_the_facts(tmp_path):
    """tickets bench (2ca8c04, seed 2): the reason of a plain rewrite was a ticket's answer."""
    answering = "Reason: The ticket should be directed to the billing queue as it pertains to financial transactions." \
                "\n````prompt\nGive the queue of the ticket.\n\nTicket:\n{ticket}\n````"
    explaining = "Reason: the queues were not listed, so the model guessed.\n````prompt\nGive the queue of the ticket " \
                 "(billing, bug, account, feature_request or other).\n\nTicket:\n{ticket}\n````"
    reflector, _, runlog = _reflector(tmp_path, [answering, explaining], style="mixed")
    reflector.warm_start_rewrites = 2
    stating_nothing = [r for r in TICKETS if r["Inputs"]["instance_id"] == "t3"]
    first, _ = reflector.reflect({"p": PROMPT}, {"p": stating_nothing}, ["p"])
    second, _ = reflector.reflect({"p": PROMPT}, {"p": stating_nothing}, ["p"])
    runlog.close()
    rationales = [reflector.rationales[candidate_hash(p.new_texts)]["p"] for p in (first, second)]
    assert rationales[0].startswith(f"Plain rewrite, {len(PROMPT)} -> {len(first.new_texts['p'])} chars, asked only") \
        and "added 'Give the queue of the ticket.'" in rationales[0] and "billing queue" not in rationales[0]
    assert rationales[1] == "the queues were not listed, so the model guessed."
    assert not reason_about_the_change("I will now use the ticket content to determine its appropriate queue.")




GUIDE = {"bug": "something that should work is broken (an error page, a crash, wrong data, a setting that is ignored), "
                "even when the ticket is about an invoice or asks for a refund",
         "billing": "questions about prices, plans, charges, invoices and receipts, when nothing in the product is broken"}
GUIDED_TICKETS = [rec("t5", f"expected '{label}', got 'other' (raw reply: 'other'); under our triage guide '{label}' "
                            f"means {meaning}; ticket: 'Ticket number {n}.'") for n, (label, meaning) in enumerate(GUIDE.items())]
QUICK_START_LIST = ("Read the ticket below and decide which queue it should go to.\n\nTicket:\n{ticket}\n\nQueue:\n"
                    "1. Bug - If the issue is a problem with the software or hardware\n"
                    "2. Feature Request - If there's an idea for new functionality\n"
                    "3. Billing - If there's an issue with our payment system\n")


def test_the_labels_the_feedback_defines_are_read_whatever_the_grouping():
    assert stated_meanings(GUIDED_TICKETS) == GUIDE  # two labels: one grouped statement
    assert stated_meanings(GUIDED_TICKETS[:1]) == {"bug": GUIDE["bug"]}  # one label: a plain statement
    assert stated_meanings(INCIDENTS) == {label.lower(): meaning for label, meaning in POLICY.items()}
    assert stated_meanings(TICKETS) == {}  # labels named, none defined


def test_a_proposal_defining_a_label_unlike_the_feedback_is_refused_and_a_quote_passes():
    """Seen on the quick start (e1a213c): a plain rewrite listed queue definitions after "Queue:" that the triage guide
    in the feedback contradicts ('Billing - an issue with our payment system'; the guide calls a broken payment
    page a bug)."""
    with pytest.raises(ProposalRejected, match=r"defines 'Bug' as 'If the issue is a problem with the software or "
                                               r"hardware', but the feedback defines it as 'something that should"):
        guard_stated_meanings(Proposal(rationale="r", text=QUICK_START_LIST), PROMPT, GUIDE)
    billing_only = QUICK_START_LIST.replace("1. Bug - If the issue is a problem with the software or hardware\n", "")
    with pytest.raises(ProposalRejected, match="defines 'Billing' as \"If there's an issue with our payment system\""):
        guard_stated_meanings(Proposal(rationale="r", text=billing_only), PROMPT, GUIDE)
    faithful = [f"'bug' means {GUIDE['bug']}.",  # the rules move's quote
                "- Bug: something that should work is broken, such as an error page or a crash.",  # condensed
                "**Billing** - questions about prices, plans and invoices; bug means wrong data or a crash.",
                "Feature requests are ideas for new functionality.",  # a label the feedback does not define
                "The ticket is about one customer.",  # not a label at all
                "Bug is not the queue for every invoice question."]  # a rule that names the label, not a definition
    for line in faithful:
        guard_stated_meanings(Proposal(rationale="r", text=PROMPT + line + "\n"), PROMPT, GUIDE)
    # a definition the current prompt already has is not the proposal's doing
    guard_stated_meanings(Proposal(rationale="r", text=QUICK_START_LIST + "Be brief.\n"), QUICK_START_LIST, GUIDE)
    guard_stated_meanings(Proposal(rationale="r", text=QUICK_START_LIST), PROMPT, {})  # nothing defined: no guard
    scale = Proposal(rationale="r", text=INCIDENT_PROMPT + "P1 means an outage; P2 means a broken core feature.\n")
    guard_stated_meanings(scale, INCIDENT_PROMPT, stated_meanings(INCIDENTS))  # each definition on its own
    hyphenated = {"feature_request": "asking for something the product does not do yet"}
    with pytest.raises(ProposalRejected, match="defines 'feature-request' as 'any idea for new functionality'"):
        guard_stated_meanings(Proposal(rationale="r", text=PROMPT + "feature-request: any idea for new functionality\n"),
                              PROMPT, hyphenated)
    with pytest.raises(ProposalRejected, match="defines 'Feature requests' as 'ideas'"):
        guard_stated_meanings(Proposal(rationale="r", text=PROMPT + "Feature requests: ideas.\n"), PROMPT, hyphenated)
    with pytest.raises(ProposalRejected, match="defines 'Other' as 'any ticket we cannot place'"):
        guard_stated_meanings(Proposal(rationale="r", text=PROMPT + "Other is any ticket we cannot place.\n"), PROMPT,
                              {"other": "anything that is not about using the product or paying for it"})
    with pytest.raises(ProposalRejected, match="defines 'P1' as 'a major problem that affects multiple customers', but"):
        # seen on the incidents bench (seed 0, 2026-12-06): the policy's P1 rewritten as severity
        guard_stated_meanings(Proposal(rationale="r", text=INCIDENT_PROMPT + "P1: a major problem that affects "
                                       "multiple customers.\n"), INCIDENT_PROMPT, stated_meanings(INCIDENTS))


def test_a_plain_rewrite_is_held_to_the_definitions_of_all_feedback_seen_so_far(tmp_path):
    """The plain rewrite is shown no failures; the definitions come from every minibatch reflected on so far."""
    listing = f"````prompt\n{QUICK_START_LIST}````"
    plain = ("````prompt\nDecide which queue the ticket goes to: billing, bug, account, feature_request or other.\n\n"
             "Ticket:\n{ticket}\n\nQueue:\n````")
    reflector, transport, runlog = _reflector(tmp_path, [listing, plain, listing, plain.replace("Decide", "Pick")])
    reflector.calls = 2  # the plain rewrite's turn
    first, _ = reflector.reflect({"p": PROMPT}, {"p": GUIDED_TICKETS}, ["p"])
    assert reflector.meanings == GUIDE
    reflector.calls = 2
    second, _ = reflector.reflect({"p": PROMPT}, {"p": TICKETS}, ["p"])  # this minibatch defines nothing
    runlog.close()
    assert len(reflector.rejected) == 2 and all(
        r["reason"].startswith("the new text defines 'Bug' as 'If the issue is a problem with") for r in reflector.rejected)
    assert "use the feedback's definition or leave 'Bug' undefined" in transport.calls[1]["content"]
    assert first.new_texts["p"].startswith("Decide which queue") and second.new_texts["p"].startswith("Pick")
    assert reflector.meanings == GUIDE
