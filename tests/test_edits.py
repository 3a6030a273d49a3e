"""Edit-style reflection: parsing the JSON edit, applying it deterministically, and the reflector around it."""

from __future__ import annotations

import json

import pytest

from gepa_bot.evals.cache import candidate_hash
from gepa_bot.runlog import RunLog, read_records
from gepa_bot.search.budget import Budget
from gepa_bot.search.edits import (
    INSTRUCTION_SCHEMA,
    Edit,
    EditRejected,
    apply_edits,
    default_insertion_point,
    parse_edit_reply,
    same_apart_from_whitespace,
)
from gepa_bot.search.llm import LLM, Reply
from gepa_bot.search.reflection import (
    ProposalRejected,
    RationaleReflector,
    edit_response_format,
    parse_edit_proposal,
    parse_reply,
)

PROMPT = """You help our support team triage incoming customer tickets.

Read the ticket below and decide which queue it should go to.

Ticket:
{ticket}

Queue:
"""


def test_add_goes_before_the_input_section_and_keeps_placeholders():
    new = apply_edits(PROMPT, [Edit("add", "", "Answer with exactly one word.")])
    assert new == PROMPT.replace("Ticket:\n", "Answer with exactly one word.\n\nTicket:\n")
    assert new.count("{ticket}") == 1


def test_add_before_a_named_line_replace_and_delete():
    new = apply_edits(PROMPT, [Edit("add", "Read the ticket", "Be careful."),
                               Edit("replace", "which queue it should go to", "which single queue fits best"),
                               Edit("delete", "You help our support team triage incoming customer tickets.\n", "")])
    assert new.startswith("\nBe careful.\n\nRead the ticket below and decide which single queue fits best.")
    assert "{ticket}" in new and "support team" not in new


def test_prompt_without_placeholders_gets_the_line_appended():
    assert apply_edits("Be brief.", [Edit("add", "", "Use plain words.")]) == "Be brief.\nUse plain words.\n"
    assert apply_edits("Be brief.\n", [Edit("add", "", "Use plain words.")]) == "Be brief.\nUse plain words.\n"
    assert default_insertion_point("Q: {q}\nA:") == 0  # label on the placeholder's own line


def test_an_instruction_goes_after_a_question_that_follows_the_input():
    metres = "{quantity}\nHow long is that?\n"  # examples/pytest-metres
    assert apply_edits(metres, [Edit("add", "", "Answer with the number of metres only, no unit.")]) == \
        "{quantity}\nHow long is that?\nAnswer with the number of metres only, no unit.\n"
    assert default_insertion_point("Ticket:\n{ticket}\n\nQueue:\n") == 0  # an answer cue: before the input, as before
    assert default_insertion_point("Is {a} bigger?\n{b}\n") == 0  # the question must follow the last input


@pytest.mark.parametrize("edit, reason", [
    (Edit("add", "", "Ticket: {ticket}"), "contains a placeholder"),          # duplicated placeholder
    (Edit("add", "", "Use the {customer} name."), "contains a placeholder"),  # invented placeholder
    (Edit("add", "", "Answer in {{ lang }}."), "contains a placeholder"),
    (Edit("replace", "Ticket:\n{ticket}", "Ticket text"), "holds a placeholder"),
    (Edit("delete", "{ticket}", ""), "holds a placeholder"),
    (Edit("replace", "no such sentence", "x"), "is not in the prompt"),       # anchor not found
    (Edit("add", "no such line", "x"), "is not in the prompt"),
    (Edit("replace", "ticket", "x"), "occurs"),                                # ambiguous anchor
    (Edit("add", "", "Read the ticket below and decide which queue it should go to."), "already in the prompt"),
])
def test_bad_edits_are_refused_with_a_reason(edit, reason):
    with pytest.raises(EditRejected, match=reason):
        apply_edits(PROMPT, [edit])


def test_overlapping_edits_are_refused():
    with pytest.raises(EditRejected, match="overlap"):
        apply_edits(PROMPT, [Edit("replace", "Read the ticket below", "Read it"),
                             Edit("delete", "the ticket below and decide", "")])
    with pytest.raises(EditRejected, match="overlap"):  # two inserts at the same place
        apply_edits(PROMPT, [Edit("add", "", "One."), Edit("add", "", "Two.")])
    # adjacent, not overlapping: fine
    new = apply_edits(PROMPT, [Edit("replace", "Read the ticket", "Read this ticket"), Edit("delete", " below", "")])
    assert "Read this ticket and decide" in new


def test_anchor_match_forgives_case_and_white_space_only():
    new = apply_edits(PROMPT, [Edit("replace", "read the  TICKET below\nand", "Read the message below and")])
    assert "Read the message below and decide" in new
    with pytest.raises(EditRejected, match="not in the prompt"):  # other words: refused, never guessed at
        apply_edits(PROMPT, [Edit("replace", "read the tickets below", "x")])


def test_parse_reply_accepts_the_short_instruction_form():
    parsed = parse_edit_reply('{"problem": "replies are sentences", "instruction": "Answer with one word."}')
    assert parsed.rationale == "replies are sentences" and parsed.edits == [Edit("add", "", "Answer with one word.")]
    with pytest.raises(EditRejected, match="empty"):
        parse_edit_reply('{"problem": "p", "instruction": "  "}')
    with pytest.raises(EditRejected, match="placeholder"):
        apply_edits(PROMPT, parse_edit_reply('{"problem": "p", "instruction": "Ticket: {ticket}"}').edits)


def test_parse_reply_accepts_fenced_json_and_a_single_edit_object():
    reply = 'Here you go:\n```json\n{"rationale": "r", "edits": {"op": "ADD", "target": "", "text": "x."}}\n```'
    parsed = parse_edit_reply(reply)
    assert parsed.rationale == "r" and parsed.edits == [Edit("add", "", "x.")]
    for bad, why in [("no json here", "no JSON object"), ('{"edits": []}', "missing or empty"),
                     ('{"edits": [{"op": "rewrite", "text": "x"}]}', "unknown edit op"),
                     ('{"edits": [{"op": "replace", "target": " ", "text": "x"}]}', "no target"),
                     ('{"edits": [{"op": "add", "text": ""}]}', "no text")]:
        with pytest.raises(EditRejected, match=why):
            parse_edit_reply(bad)


def test_proposal_keeps_the_trailing_newline_and_a_rationale():
    proposal = parse_edit_proposal(json.dumps({"rationale": "", "edits": [{"op": "add", "target": "", "text": "X."}]}),
                                   "Be brief.\n")
    assert proposal.text == "Be brief.\nX.\n" and proposal.rationale == "add 'X.'"


def test_an_edit_asking_for_json_is_refused_unless_the_prompt_already_speaks_of_json():
    # Seen with Qwen2.5-Coder-1.5B, whose reflection answer is constrained to JSON: the leak ends up in the prompt.
    seen = json.dumps({"problem": "p", "instruction": "The model should answer with the prompt in JSON format."})
    with pytest.raises(ProposalRejected, match="speaks about the prompt"):  # the meta-sentence check comes first
        parse_edit_proposal(seen, 'Rate the word "{word}".\n')
    leak = json.dumps({"problem": "p", "instruction": "The model should answer in JSON format."})
    with pytest.raises(ProposalRejected, match="asks for JSON"):
        parse_edit_proposal(leak, 'Rate the word "{word}".\n')
    json_prompt = 'Rate the word "{word}". Reply with a json object.\n'
    assert "JSON format" in parse_edit_proposal(leak, json_prompt).text


def test_a_four_backtick_block_closed_with_three_is_taken_only_at_the_end_of_the_reply():
    current = 'Rate the sentiment of the word "{word}" on a scale from -5 to 5.\n\nRating:\n'
    reply = '````prompt\nRate the sentiment of "{word}" from -5 to 5.\n\nRating:\n```'  # seen in the afinn bench
    assert parse_reply(reply, current).text == 'Rate the sentiment of "{word}" from -5 to 5.\n\nRating:\n'
    with_example = 'R.\n\n````prompt\nRate "{word}". Example:\n```\n-2\n```\nRating:\n```\n'
    assert parse_reply(with_example, current).text == 'Rate "{word}". Example:\n```\n-2\n```\nRating:\n'
    for ambiguous in ('````prompt\nRate "{word}".\n```\nMore text after the short fence.',
                      '````prompt\nRate "{word}".\nRating:',
                      # a three-backtick block never closed (seen with the 1.5B model): refused, not a regex error
                      'Reason: adjusted.\n\n```\nprompt\nRate "{word}".\n>>>\n\nDo not add any text in c'):
        with pytest.raises(ProposalRejected, match="never closed"):
            parse_reply(ambiguous, current)


def test_constrained_output_for_loopback_servers_only():
    assert edit_response_format("openai/qwen", "http://127.0.0.1:8080/v1") == {"type": "json_object",
                                                                               "schema": INSTRUCTION_SCHEMA}
    assert edit_response_format("openai/some-unknown-model", "https://example.invalid/v1") is None
    hosted = edit_response_format("gpt-4o-mini", None)
    assert hosted is not None and hosted["type"] == "json_schema"
    assert hosted["json_schema"]["schema"] == INSTRUCTION_SCHEMA


class ScriptedEdits:
    """A reflection model that answers edit requests; records what it was asked."""

    def __init__(self, replies):
        self.replies, self.calls = list(replies), []

    def __call__(self, model, messages, **params):
        self.calls.append({"content": messages[-1]["content"], **params})
        return Reply(text=self.replies.pop(0), prompt_tokens=10, completion_tokens=5)


def _reflector(tmp_path, transport, **kw):
    runlog = RunLog(tmp_path / "run")
    llm = LLM("openai/toy", Budget(max_rollouts=10), runlog, transport=transport, extra={"seed": 3})
    return RationaleReflector(llm=llm, runlog=runlog, style="edit", attempts=2,
                              response_format={"type": "json_object", "schema": INSTRUCTION_SCHEMA}, **kw), runlog


def test_edit_reflector_retries_with_the_reason_and_remembers_failed_edits(tmp_path):
    add = lambda text: json.dumps({"rationale": "answers are sentences", "edits": [  # noqa: E731
        {"op": "add", "target": "", "text": text}]})
    transport = ScriptedEdits(['{"edits": [{"op": "add", "target": "", "text": "Ticket: {ticket}"}]}',
                               add("Answer with one word."), add("Reply with the queue name only.")])
    reflector, runlog = _reflector(tmp_path, transport)
    records = [{"Inputs": {"instance_id": "t1"}, "Generated Outputs": "The billing queue", "score": 0.0,
                "Feedback": "expected 'billing' but the reply is not one of the allowed labels"}]
    parent = {"p": PROMPT}
    proposal, _ = reflector.reflect(parent, {"p": records}, ["p"])
    assert "Answer with one word.\n\nTicket:" in proposal.new_texts["p"]
    assert "contains a placeholder" in transport.calls[1]["content"]  # the retry says why
    assert all(c["response_format"]["schema"] == INSTRUCTION_SCHEMA for c in transport.calls)
    # GEPA did not keep that child: the next reflection on the same parent is told not to repeat it
    proposal2, _ = reflector.reflect(parent, {"p": records}, ["p"])
    assert "DID NOT HELP" in transport.calls[2]["content"]
    assert "- add 'Answer with one word.'" in transport.calls[2]["content"]
    assert "Reply with the queue name only." in proposal2.new_texts["p"]
    runlog.close()
    kinds = [r["kind"] for r in read_records(tmp_path / "run")]
    assert kinds.count("rejected_proposal") == 1 and kinds.count("proposal") == 2


def test_kept_children_are_not_listed_as_failures(tmp_path):
    reply = json.dumps({"rationale": "why", "edits": [{"op": "add", "target": "", "text": "Answer in one word."}]})
    reflector, runlog = _reflector(tmp_path, ScriptedEdits([reply]))
    parent = {"p": PROMPT}
    proposal, _ = reflector.reflect(parent, {"p": [{"score": 0.0, "Feedback": "f"}]}, ["p"])


    reflector.accepted.add(candidate_hash({**parent, **proposal.new_texts}))
    assert reflector.failed_before(candidate_hash(parent), "p") == []
    runlog.close()


def test_repeated_identical_requests_draw_new_samples(tmp_path):
    transport = ScriptedEdits(["a", "b", "c"])
    runlog = RunLog(tmp_path / "run")
    llm = LLM("openai/toy", Budget(max_rollouts=1), runlog, transport=transport, extra={"seed": 7})
    for _ in range(3):
        llm.complete([{"role": "user", "content": "same request"}])
    runlog.close()
    from gepa_bot.search.llm import repeat_seed

    assert [c["seed"] for c in transport.calls] == [repeat_seed(7, k) for k in range(3)]
    assert len({c["seed"] for c in transport.calls}) == 3


def test_mixed_style_alternates_a_short_rewrite_and_an_edit(tmp_path):
    rewrite = "Rationale: shorter.\n````\nprompt\nSort the ticket into billing, bug or other.\n\nTicket:\n{ticket}\n````"
    edit = json.dumps({"problem": "sentences", "instruction": "Answer with one word."})
    transport = ScriptedEdits([rewrite, edit])
    reflector, runlog = _reflector(tmp_path, transport)
    reflector.style = "mixed"
    records = [{"score": 0.0, "Feedback": "expected 'bug', got 'billing'"}, {"score": 1.0, "Feedback": "correct"}]
    parent = {"p": PROMPT}
    first, _ = reflector.reflect(parent, {"p": records}, ["p"])
    second, _ = reflector.reflect(parent, {"p": records}, ["p"])
    runlog.close()
    # the first request is the plain rewrite: no failures (shown them, the 1.5B model echoes), no JSON constraint
    assert "so that a small language model answers it better" in transport.calls[0]["content"]
    assert "billing" not in transport.calls[0]["content"] and "response_format" not in transport.calls[0]
    assert "Keep the placeholder {ticket} exactly as written" in transport.calls[0]["content"]
    # a bare fence with the language on the next line: the word "prompt" is not part of the new prompt
    assert first.new_texts["p"] == "Sort the ticket into billing, bug or other.\n\nTicket:\n{ticket}\n"
    assert transport.calls[1]["response_format"]["schema"] == INSTRUCTION_SCHEMA
    assert "Answer with one word." in second.new_texts["p"]
    # only edits are listed as "tried, did not help" in later edit requests
    assert reflector.failed_before(candidate_hash(parent), "p") == ["add 'Answer with one word.'"]


def test_a_rewrite_that_echoes_the_prompt_is_retried_with_a_plain_request_to_change_it(tmp_path):
    echo = "````prompt\n" + PROMPT + "````"
    changed = "````prompt\nClassify the ticket.\n\nTicket:\n{ticket}\n````"
    transport = ScriptedEdits([echo, changed])
    reflector, runlog = _reflector(tmp_path, transport)
    reflector.style = "mixed"
    proposal, _ = reflector.reflect({"p": PROMPT}, {"p": [{"score": 0.0, "Feedback": "f"}]}, ["p"])
    runlog.close()
    assert "repeated the prompt unchanged" in transport.calls[1]["content"]
    assert proposal.new_texts["p"].startswith("Classify the ticket.")
    assert reflector.rejected[0]["reason"].startswith("the proposed prompt is identical to the current one")


REWRAP_SEED = ("You help our support team triage incoming customer tickets.\n\n"
               "Read the ticket below and decide which queue it should go to. The queues are\n"
               "billing, bug, account, feature_request and other.\n\nTicket:\n{ticket}\n")


def test_a_reply_that_only_rewraps_a_paragraph_is_rejected_before_any_rollout():
    rewrapped = REWRAP_SEED.replace("are\nbilling", "are billing")
    with pytest.raises(ProposalRejected, match="apart from spacing and wrapping"):
        parse_reply(f"Tidier.\n```prompt\n{rewrapped}```\n", REWRAP_SEED)


def test_unchanged_paragraphs_keep_their_wrapping_and_only_the_changed_lines_differ():
    proposed = (REWRAP_SEED.replace("are\nbilling", "are billing")
                .replace("Ticket:", "Answer with the queue name only.\n\nTicket:"))
    text = parse_reply(f"Ask for the bare label.\n```prompt\n{proposed}```\n", REWRAP_SEED).text
    assert "The queues are\nbilling, bug" in text  # the re-wrapped paragraph came back as it was
    assert text == REWRAP_SEED.replace("Ticket:", "Answer with the queue name only.\n\nTicket:")


def test_edits_that_only_change_spacing_leave_the_prompt_unchanged():
    assert same_apart_from_whitespace("a  b\nc", "a b c") and not same_apart_from_whitespace("a b", "a b.")


@pytest.mark.parametrize(("block", "why"), [
    ("Reason:\nI changed the placeholder {ticket} to ensure it is clear.\n\nQueue:", "starts with the rationale"),
    ("**Rationale:** shorter.\n\nTicket:\n{ticket}\n\nQueue:", "starts with the rationale"),
    ("I kept the placeholder {ticket} and removed the rest.\n\nQueue:", "talks about its placeholder"),
])
def test_a_fenced_block_that_holds_the_reasoning_is_refused(block, why):
    """Seen on the tickets bench (1.5B reflector, simplify move): the block was the reasoning, with the
    placeholder named in a sentence, so every ticket would have been pasted into that sentence."""
    current = "You help our support team.\n\nTicket:\n{ticket}\n\nQueue:\n"
    with pytest.raises(ProposalRejected, match=why):
        parse_reply(f"Shorter and clearer.\n```\n{block}\n```", current)
    kept = parse_reply("Shorter.\n```\nReason for contacting us: {ticket}\nQueue:\n```", current)
    assert kept.text == "Reason for contacting us: {ticket}\nQueue:\n"  # a prompt may start with the word


def test_an_instruction_the_schema_cut_off_loses_its_broken_sentence():
    """Seen on the tickets bench: the grammar stops a constrained reply at maxLength (300), and "..., if the ticket
    mentions 'billing' or 'invoice', it" went into the prompt. A cut sentence is dropped; nothing whole left is
    a rejection; a short text without a full stop is the model's own and kept."""
    from gepa_bot.search.edits import INSTRUCTION_MAX_CHARS, parse_edit_reply, parse_rules_reply

    whole = "If a ticket does not say what it is about, use context clues to determine the appropriate queue."
    broken = " For example, if the ticket mentions 'billing' or 'invoice' or 'refund' or 'receipt', then"
    instruction = (whole + broken * 4)[:INSTRUCTION_MAX_CHARS]  # what the grammar returns at the limit
    assert len(instruction) == INSTRUCTION_MAX_CHARS and not instruction.endswith(".")
    reply = json.dumps({"problem": "p", "instruction": instruction})
    kept = parse_edit_reply(reply).edits[0].text
    assert kept == "If a ticket does not say what it is about, use context clues to determine the appropriate queue."
    with pytest.raises(EditRejected, match="cut off at the 300-character limit"):
        parse_edit_reply(json.dumps({"problem": "p", "instruction": "word " * 60}))
    assert parse_edit_reply(json.dumps({"problem": "p", "instruction": "Answer in one word"})).edits[0].text == \
        "Answer in one word"
    rules = parse_rules_reply(json.dumps({"keep": [1], "reason": "r", "instruction": "P1 means an outage. " + "and " * 120}), 1)
    assert rules.instruction == "P1 means an outage."
    nothing_whole = json.dumps({"keep": [1], "reason": "r", "instruction": "and " * 125})
    assert parse_rules_reply(nothing_whole, 1).instruction == ""  # the statements then go in verbatim


def test_a_reason_cut_at_its_length_limit_keeps_its_whole_sentences():
    from gepa_bot.search.edits import RULES_SCHEMA, parse_rules_reply

    limit = RULES_SCHEMA["properties"]["reason"]["maxLength"]
    whole = "The answer should be in metres without any unit."
    cut = (whole + " This will ensure that the model responds with the value " + "x" * limit)[:limit - 1] + "\u8d58"
    reply = json.dumps({"keep": [1], "reason": cut, "instruction": "Answer with the number only."})
    assert parse_rules_reply(reply, 1).reason == whole  # seen on the metres example: "... or additional\u8d58"
    no_sentence = json.dumps({"keep": [1], "reason": "y" * limit, "instruction": "Answer with the number only."})
    assert parse_rules_reply(no_sentence, 1).reason == ""  # the proposal then states the facts instead
