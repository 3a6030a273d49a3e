"""PR body rendering: sections, ordering, escaping of untrusted text, GitHub's size limit."""

from __future__ import annotations

import copy

import pytest

from gepa_bot.config import OutputConfig
from gepa_bot.escaping import untrusted
from gepa_bot.report.render import BODY_BUDGET, render
from gepa_bot.result import Candidate, RejectedProposal, RunResult, SearchError, migrate_v1
from gepa_bot.text import BODY_LIMIT
from gepa_bot.verdict import verdict


def rejected(reason: str) -> RejectedProposal:
    return RejectedProposal(component="p.txt", attempt="1", reason=reason, reply_excerpt="")


def make_result(n_val: int = 4, feedback: str = "expected bug, got billing", prompt_lines: int = 3
                ) -> tuple[RunResult, dict[str, str]]:
    data, originals = result_data(n_val, feedback, prompt_lines)
    return RunResult.model_validate(data), originals


def result_data(n_val: int = 4, feedback: str = "expected bug, got billing", prompt_lines: int = 3) -> tuple[dict, dict]:
    """result.json's data (version 2) for make_result."""
    val_ids = [f"v{k:03d}" for k in range(n_val)]
    base_scores = {i: (1.0 if k % 2 == 0 else 0.0) for k, i in enumerate(val_ids)}
    best_scores = {i: (0.0 if k == 0 else 1.0) for k, i in enumerate(val_ids)}  # v000 regresses, odd ones fixed
    def cand(index, scores, text, parents, rationale):
        return {"index": index, "hash": f"h{index}", "components": {"p.txt": text}, "parents": parents,
                "origin": "seed" if index == 0 else "reflection", "rationale": rationale,
                "val_mean": sum(scores.values()) / len(scores), "discovered_at_rollout": 10 * index,
                "val": {i: {"score": s, "feedback": feedback, "failed": False} for i, s in scores.items()}}
    old = "\n".join(f"line {k} {{question}}" for k in range(prompt_lines)) + "\n"
    new = "\n".join(f"better line {k} {{question}}" for k in range(prompt_lines)) + "\n"
    return {
        "version": 2, "components": [{"name": "p.txt", "path": "p.txt", "kind": "text", "key": None}],
        "split": {"train": ["t1"], "val": val_ids},
        "candidates": [cand(0, base_scores, old, [], {}), cand(1, best_scores, new, [0], {"p.txt": "Say the label set."})],
        "pareto_front": [0, 1], "best_candidate": 1, "baseline_candidate": 0, "best_files": {"p.txt": new},
        "rejected_proposals": [rejected("no fence").model_dump()], "min_improvement": 0.0,
        "min_confidence": 0.0,  # 2 fixed, 1 regressed is not significant: the sign test's gate has its own tests
        "budget": {"rollouts_limit": 100, "rollouts_used": 90, "rollouts_executed": 60, "cache_hits": 30,
                   "cache_hit_rate": 0.333, "llm_calls": 5, "llm_calls_replayed": 0, "prompt_tokens": 1000,
                   "completion_tokens": 200, "llm_cost_usd": 0.0123, "max_llm_cost_usd": None, "wall_time_s": 12.5,
                   "eval_time_s": 5.0, "llm_time_s": 4.0, "overhead_share": 0.28, "stop_reason": "budget"},
        "models": {"task": "openai/gpt-4o-mini", "reflection": "openai/gpt-4o", "reflection_max_tokens": 1024,
                   "reflection_temperature": 0.7},
        "reflection_style": None, "eval_repeats": 1, "seed": 0,
    }, {"p.txt": old}


def test_body_has_every_section_with_regressions_first():
    result, originals = make_result()
    body, full = render(result, originals)
    for heading in ("## gepa-bot: improved prompts", "### Changes", "### Per-instance results",
                    "### Pareto front", "### Reflection rationale and lineage", "### Budget"):
        assert heading in body
    table = body.split("### Per-instance results")[1].split("###")[0]
    rows = [line for line in table.splitlines() if line.startswith("| v")]
    assert rows[0].startswith("| v000 | 1.00 | 0.00 | ⚠️ regressed")
    assert "✅ fixed" in rows[1]
    assert "-line 0 {question}" in body and "+better line 0 {question}" in body
    assert "Say the label set." in body and "#0 (0.500) → #1 (0.750)" in body
    assert "| 90 / 100 | 60 | 30 (33%)" in body
    assert body == full  # small enough: nothing cut


def test_no_improvement_verdict():
    result, originals = make_result()
    result.best_candidate = 0
    body, _ = render(result, originals)
    assert "no candidate beats the current prompts" in body


def test_huge_report_fits_githubs_limit_and_keeps_the_full_version():
    result, originals = make_result(n_val=3000, feedback="x" * 5000, prompt_lines=4000)
    body, full = render(result, originals)
    assert len(body) <= BODY_BUDGET < BODY_LIMIT
    assert len(full) > BODY_LIMIT
    assert "report-full.md" in body
    assert "### Budget" in body  # the tail sections survive the cut


def test_untrusted_text_cannot_escape_markdown_or_emit_workflow_commands():
    result, originals = make_result(feedback="</details>| pipe\n::set-output name=x::pwned\n<script>")
    result.candidates[1].rationale = {"p.txt": "```\n</details>\n::add-mask::x"}
    body, _ = render(copy.deepcopy(result), originals)
    assert "</details>|" not in body and "<script>" not in body
    assert "::set-output" not in body and "::add-mask" not in body
    assert body.count("<details>") == body.count("</details>")
    assert untrusted("a|b", 10) == "a\\|b"


def test_rejections_are_counted_per_reason_with_the_top_reason_explained():
    result, originals = make_result()
    result.rejected_proposals = ([rejected("no fenced prompt block in the reply")] * 49
                                 + [rejected("the edit's text 'Ticket: {ticket}' contains a placeholder"),
                                    rejected("the edit's text 'Q: {q}' contains a placeholder")])
    body, _ = render(result, originals)
    section = body.split("rejected before any rollout was spent:")[1]
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert lines[0].startswith("- 49× no fenced prompt block in the reply")
    assert "try optimizer.reflection_style: edit or a stronger model" in lines[0]
    # one group, shown by its first reason as written
    assert lines[1].startswith("- 2× the edit's text 'Ticket: {ticket}' contains a placeholder")


def test_a_broken_or_all_zero_eval_is_flagged_loudly():
    result, originals = make_result()
    body, _ = render(result, originals)
    assert "[!WARNING]" not in body
    for entry in result.candidates[0].val.values():
        entry.score = 0.0
    body, _ = render(result, originals)
    assert "score 0 on all 4 validation instances" in body
    for entry in list(result.candidates[0].val.values())[:3]:
        entry.failed = True
    body, _ = render(result, originals)
    assert "3 of 4 validation instances got no valid result line" in body and "score 0 on all" not in body


def test_a_search_error_warning_appears_once_even_when_rows_are_cut():
    result, originals = make_result(n_val=400)
    result.search_errors = [SearchError(where="reflection on p.txt", type="TypeError", message="boom")]
    body, full = render(result, originals)
    for text in (body, full):
        assert text.count("internal error(s) interrupted steps of the search") == 1
    assert "more rows not shown" in body and "TypeError: boom" in body
    cut_line = next(line for line in body.splitlines() if "more rows not shown" in line)
    assert cut_line.startswith("_") and cut_line.endswith("._")


def test_eval_and_llm_text_cannot_mention_link_or_embed_and_diffs_stay_byte_exact():
    result, originals = make_result(feedback="ping @octocat see [docs](https://evil.example) ![x](http://t.example/p.png)"
                                             " or www.evil.example")
    new = "Answer in a ```json block.\n````\nnested\n````\n{question} @team\n"
    result.best_files = {"p.txt": new}
    result.candidates[1].components = {"p.txt": new}
    body, _ = render(result, originals)
    table = body.split("### Per-instance results")[1].split("###")[0]
    assert "@octocat" not in table and "@\u200boctocat" in table  # no notification
    assert "[docs](" not in table and "![x](" not in table  # no link, no image
    assert "https://" not in table and "www.evil" not in table  # no autolink
    # the diff is shown byte for byte: its fence is longer than any backtick run inside it
    diff = body.split("<summary><code>p.txt</code></summary>")[1]
    assert "`````diff\n" in diff and "+Answer in a ```json block.\n+````\n+nested\n+````\n+{question} @team\n" in diff
    assert "\u200b" not in diff.split("`````diff\n")[1].split("\n`````")[0]


def test_a_gain_inside_the_measured_noise_is_not_proposed():
    result, _ = make_result()  # baseline 0.5 -> best 0.75 on 4 val instances
    assert verdict(result).improved and verdict(result).noise == 0.0  # eval_repeats 1: nothing measured
    for cand in result.candidates:
        for entry in cand.val.values():
            entry.stdev = 0.5  # each instance flipped between 0 and 1 over the repeats
    v = verdict(result)
    assert v.noise == pytest.approx((4 * (0.25 + 0.25)) ** 0.5 / 4)
    assert v.gain == pytest.approx(0.25) and v.needed == pytest.approx(2 * v.noise) and not v.improved
    assert v.reason == ("gain +0.2500 is not above the 0.7071 needed (output.min_improvement: 0, "
                           "plus twice the measured noise 0.3536)")


# --- the sign test's gate ------------------------------------------------------------------------------

def scored_result(base: list[float], best: list[float], **extra: float) -> tuple[RunResult, dict]:
    """make_result with these per-instance val scores, as a version-1 result.json without the fixture's
    min_confidence: 0 (migrated: the config default) unless ``extra`` sets it."""
    data, originals = result_data(n_val=len(base))
    data["version"] = 1
    del data["min_confidence"]
    for cand, scores in zip(data["candidates"], (base, best), strict=True):
        cand["val"] = {f"v{k:03d}": {"score": s, "feedback": "f", "failed": False} for k, s in enumerate(scores)}
        cand["val_mean"] = sum(scores) / len(scores)
    data.update(extra)
    return RunResult.model_validate(migrate_v1(data)), originals


# 23 val instances: 8 flip 0 -> 1, 1 flips 1 -> 0, 14 tie (7 at 1, 7 at 0)
SIGNIFICANT = ([0.0] * 8 + [1.0] + [1.0] * 7 + [0.0] * 7, [1.0] * 8 + [0.0] + [1.0] * 7 + [0.0] * 7)
# 23 val instances: 3 flip 0 -> 1, 1 flips 1 -> 0: a bigger mean than the baseline's, but p = 5/16
NOT_SIGNIFICANT = ([0.0] * 3 + [1.0] + [1.0] * 10 + [0.0] * 9, [1.0] * 3 + [0.0] + [1.0] * 10 + [0.0] * 9)


def test_a_significant_gain_is_proposed_and_the_body_states_the_test():
    result, originals = scored_result(*SIGNIFICANT)
    v = verdict(result)
    assert v.improved and v.significant and v.p_value == 10 / 512
    assert (v.improved_instances, v.regressed_instances, v.min_confidence) == (8, 1, 0.9)
    assert v.test == "8 instances improved, 1 regressed, exact sign test p = 0.0195 (one-sided)"
    assert v.reason == "significant: p = 0.0195 <= 0.10 (8 improved, 1 regressed on 23 val instances)"
    body, _ = render(result, originals)
    assert body.startswith("## gepa-bot: improved prompts (+30.4 pts on validation)")
    assert ("Significance: 8 instances improved, 1 regressed, exact sign test p = 0.0195 (one-sided); "
            "`output.min_confidence: 0.9` requires p <= 0.10.") in body


def test_a_gain_the_sign_test_does_not_trust_is_not_proposed_by_default():
    result, originals = scored_result(*NOT_SIGNIFICANT)  # no min_confidence in result.json: the default 0.9
    v = verdict(result)
    assert v.gain > v.needed and v.beats
    assert not v.improved and not v.significant and v.p_value == 5 / 16
    assert v.reason == ("not significant: p = 0.3125 > 0.10 (3 improved, 1 regressed on 23 val instances; "
                           "output.min_confidence: 0.9)")
    body, _ = render(result, originals)
    assert body.startswith("## gepa-bot: no reliable improvement (+8.7 pts on validation, not proposed)")
    assert "nothing to propose, not significant: p = 0.3125 > 0.10 (3 improved, 1 regressed" in body
    assert "improved prompts" not in body


@pytest.mark.parametrize("min_confidence, improved, reason", [
    (0.0, True, "significance test disabled (output.min_confidence: 0): p = 0.3125 (3 improved, 1 regressed on 23 val "
                "instances)"),
    (0.6, True, "significant: p = 0.3125 <= 0.40 (3 improved, 1 regressed on 23 val instances)"),
    (0.7, False, "not significant: p = 0.3125 > 0.30 (3 improved, 1 regressed on 23 val instances; "
                 "output.min_confidence: 0.7)"),
    (0.6875, True, "significant: p = 0.3125 <= 0.3125 (3 improved, 1 regressed on 23 val instances)"),  # p == 1 - conf
])
def test_min_confidence_from_result_json_sets_the_bar(min_confidence, improved, reason):
    result, originals = scored_result(*NOT_SIGNIFICANT, min_confidence=min_confidence)
    v = verdict(result)
    assert v.improved is improved and v.reason == reason
    assert render(result, originals)[0].startswith("## gepa-bot: improved prompts") is improved


def test_fractional_scores_get_a_bootstrap_interval_and_unscored_instances_are_left_out():
    base = [0.2, 0.5, 0.4, 0.3, 0.6, 0.5, 0.1, 0.7, 0.3, 0.5]
    best = [0.6, 0.9, 0.5, 0.8, 0.6, 0.9, 0.6, 0.6, 0.7, 0.9]  # 8 better, 1 worse, 1 tie
    result, originals = scored_result(base, best)
    v = verdict(result)
    assert (v.improved_instances, v.regressed_instances, v.p_value) == (8, 1, 10 / 512) and v.improved
    assert "; paired bootstrap 90% interval of the mean gain: +" in v.test and v.test.endswith(" pts")
    result.candidates[1].val["v000"] = None  # not scored (trimming): neither a win nor a loss
    v = verdict(result)
    assert (v.improved_instances, v.regressed_instances) == (7, 1)
    assert "on 9 val instances" in v.reason


def test_min_confidence_is_an_output_setting_with_a_documented_default():
    assert OutputConfig().min_confidence == 0.9
    assert OutputConfig(min_confidence=0).min_confidence == 0
    field = OutputConfig.model_fields["min_confidence"]
    assert field.description and "0 disables" in field.description and "p <= 0.1" in field.description
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            OutputConfig(min_confidence=bad)


# --- variants: the other Pareto candidates, side by side ------------------------------------------------

def add_candidate(result: RunResult, text: str, scores: dict[str, float], rationale: str = "", rollout: int = 0,
                  pareto: bool = True) -> int:
    """Append a reflection candidate of p.txt with these val scores (unlisted instances: 0)."""
    index = len(result.candidates)
    val = {i: {"score": scores.get(i, 0.0), "feedback": "f", "failed": False} for i in result.split.val}
    result.candidates = [*result.candidates, Candidate.model_validate({
        "index": index, "hash": f"h{index}", "components": {"p.txt": text}, "parents": [0], "origin": "reflection",
        "rationale": {"p.txt": rationale} if rationale else {}, "val_mean": sum(scores.values()) / len(val),
        "discovered_at_rollout": rollout or 10 * index, "val": val})]
    if pareto:
        result.pareto_front = [*result.pareto_front, index]
    return index


def variant_sections_of(body: str) -> list[str]:
    return [part.split("</details>")[0] for part in body.split("<details><summary>Variant #")[1:]]


def test_the_body_shows_up_to_output_variants_pareto_candidates_and_skips_trivial_ones():
    result, originals = make_result()  # best #1: 0, 1, 1, 1 on v000..v003
    best_text = result.best.components["p.txt"]
    add_candidate(result, best_text.upper().replace(" ", "  ") + "!!", {"v000": 1.0})  # #2: trivially the best
    add_candidate(result, "Keep it short {question}\n", {"v000": 1.0, "v001": 1.0},
                  rationale="Regressed on v002 </details> ::set-output x @octocat", rollout=17)  # #3
    add_candidate(result, "Keep it short, {question}.\n", {"v000": 1.0})  # #4: trivially #3
    add_candidate(result, "Name the label set {question}\n", {"v000": 1.0, "v002": 1.0})  # #5
    add_candidate(result, "Think first {question}\n", {"v000": 1.0})  # #6
    add_candidate(result, "Answer in one word {question}\n", {"v000": 1.0, "v003": 1.0})  # #7
    add_candidate(result, "Not on the front {question}\n", {"v000": 1.0, "v001": 1.0}, pareto=False)  # #8
    add_candidate(result, "Never better {question}\n", {"v001": 1.0, "v002": 1.0})  # #9: wins nothing the best loses
    body, full = render(result, originals)
    sections = variant_sections_of(body)
    assert [s.split(" ", 1)[0] for s in sections] == ["3", "5", "7"]  # OutputConfig().variants == 3, best score first
    assert OutputConfig().variants == result.variants == 3
    three = sections[0]
    assert three.startswith("3 (reflection): validation score 0.500 (best: 0.750), found at rollout 17</summary>")
    assert "-line 0 {question}\n" in three and "+Keep it short {question}" in three  # diff against the base
    assert "- Wins where the best loses (1): v000\n" in three
    assert "- Loses where the best wins (2): v002, v003\n" in three
    assert "::set-output" not in body and "@octocat" not in body and "&lt;/details&gt;" in three
    assert body.count("<details>") == body.count("</details>")
    # the full report has every non-trivial Pareto variant
    assert [s.split(" ", 1)[0] for s in variant_sections_of(full)] == ["3", "5", "7", "6"]  # never #9: dominated
    result.variants = 0
    assert variant_sections_of(render(result, originals)[0]) == []


@pytest.mark.slow
def test_a_huge_report_with_three_variants_fits_githubs_limit():
    result, originals = make_result(n_val=3000, feedback="x" * 5000, prompt_lines=4000)
    for k in range(4):
        text = "\n".join(f"variant {k} line {n} {{question}} " + "y" * 200 for n in range(4000))
        wins = {f"v{n:03d}": 1.0 for n in range(k, 3000, 3)} | {"v000": 1.0}  # v000: where the best loses
        add_candidate(result, text, wins, rationale="z" * 20_000)
    body, full = render(result, originals)
    assert len(body) <= BODY_BUDGET < BODY_LIMIT
    assert len(variant_sections_of(body)) == 3 and len(variant_sections_of(full)) == 4
    assert "more diff lines not shown" in variant_sections_of(body)[0]
    assert "### Budget" in body and "xychart-beta" in body
    assert body.count("<details>") == body.count("</details>")
    # prompts too large for even the smallest sections: the variants go before anything is cut blindly
    for k, cand in enumerate(result.candidates[2:]):
        cand.components = {"p.txt": "\n".join("w" * 399 + str(n + k) for n in range(4000))}
    for cand in result.candidates[2:]:
        cand.rationale = {f"p{n}.txt": "r" * 200 for n in range(300)}
    body, full = render(result, originals)
    assert len(body) <= BODY_BUDGET and variant_sections_of(body) == []
    assert "other Pareto variants were left out to fit GitHub's size limit" in body
    assert len(variant_sections_of(full)) == 4


# --- the chart ------------------------------------------------------------------------------------------

def chart_of(body: str) -> list[str]:
    block = body.split("```mermaid\n", 1)[1].split("\n```", 1)[0]
    return [line.strip() for line in block.splitlines()]


def test_the_chart_is_a_mermaid_xychart_with_the_points_in_rollout_order():
    result, originals = make_result()  # #0 at rollout 0 (0.5), #1 at 10 (0.75)
    add_candidate(result, "a {question}\n", {"v000": 1.0}, rollout=4)  # 0.25
    add_candidate(result, "b {question}\n", {"v000": 1.0, "v001": 1.0, "v002": 1.0, "v003": 1.0}, rollout=30)
    add_candidate(result, "c {question}\n", {"v000": 1.0, "v001": 1.0}, rollout=30, pareto=False)  # same rollout
    body, _ = render(result, originals)
    lines = chart_of(body)
    assert lines[0] == "xychart-beta"
    assert lines[1] == 'title "Validation score vs rollouts"'
    assert lines[2] == 'x-axis "rollouts" ["0", "4", "10", "30 #3", "30 #4"]'
    assert lines[3] == 'y-axis "validation score" 0 --> 1'
    assert lines[4] == "bar [0.5, 0.25, 0.75, 1, 0.5]"  # each candidate's val score, in rollout order
    assert lines[5] == "line [0.5, 0.5, 0.75, 1, 1]"  # the val best so far
    assert len(lines) == 6


def test_a_chart_of_many_candidates_keeps_every_step_of_the_best_so_far():
    result, originals = make_result()
    for k in range(150):
        add_candidate(result, f"c{k} {{question}}\n", {"v000": 1.0} if k != 140 else {"v000": 1.0, "v001": 1.0,
                      "v002": 1.0, "v003": 1.0}, rollout=20 + k, pareto=False)
    lines = chart_of(render(result, originals)[0])
    labels = lines[2].split("[", 1)[1].rstrip("]").split(", ")
    rollouts = [int(label.strip('"').split()[0]) for label in labels]
    assert len(rollouts) == 60 and rollouts == sorted(rollouts)
    assert {0, 10, 160} <= set(rollouts)  # the steps of the best so far: #0, #1, the one at rollout 160
    assert lines[5].split("[")[1].rstrip("]").split(", ")[-1] == "1"


def test_rejection_reasons_keep_model_names_urls_and_counts():
    """The grouping key masks only what varies from reply to reply; model names, URLs and small counts stay (the
    summary once read 'openai/qwen….…-coder-….…b' and 'http://….….….…:…/v…')."""
    from gepa_bot.report.rejections import reason_group

    reason = ("LLM call failed: openai/qwen2.5-coder-1.5b: still failing after 4 attempts: TransientCompletionError: "
              "no answer from http://127.0.0.1:55951/v1: timed out")
    assert reason_group(reason) == reason
    assert reason_group("model 'openai/gpt-4o-2024-08-06' not found") == "model 'openai/gpt-4o-2024-08-06' not found"
    assert reason_group("the edit's text 'Answer {q} now' contains a placeholder") == \
        "the edit's text '…' contains a placeholder"
    assert reason_group("the proposed prompt is 5234 chars, far longer than the current 1200") == \
        "the proposed prompt is … chars, far longer than the current …"
    assert reason_group("the reply has 7 edits; at most 5 are allowed") == "the reply has 7 edits; at most 5 are allowed"
    assert reason_group("upstream error (request id req_8f3a2b1c9d0e4f5a) after 31.5s") == \
        "upstream error (request id req_…) after …"


def test_rejection_summary_groups_replies_and_shows_one_reason_as_written():
    from gepa_bot.report.rejections import rejection_reasons

    def rejected(reason: str) -> RejectedProposal:
        return RejectedProposal(component="p", attempt="1", reason=reason, reply_excerpt="")

    url = "http://127.0.0.1:55951/v1"
    failed = f"LLM call failed: openai/qwen2.5-coder-1.5b: still failing after 4 attempts: no answer from {url}"
    replies = [rejected("the edit's text 'Be {q}' contains a placeholder; placeholders are kept"),
               rejected(failed), rejected(failed), rejected(failed),
               rejected("the edit's text 'Say {q} again' contains a placeholder; placeholders are kept"),
               rejected(failed),
               rejected("the edit's text 'Say {q} again' contains a placeholder; placeholders are kept")]
    groups = rejection_reasons(replies)
    assert [(g.count, g.reason) for g in groups] == [
        (4, failed),  # shown as written: the model's name and the server's URL intact
        (3, "the edit's text 'Say {q} again' contains a placeholder; placeholders are kept")]  # the most frequent
    assert groups[0].hint.startswith("the reflection model could not be reached")
    assert groups[1].hint == "the model keeps copying the input placeholder into its edits"

    result, originals = make_result()
    result.rejected_proposals = replies
    body, _ = render(result, originals)
    line = next(line for line in body.splitlines() if line.startswith("- 4× LLM call failed"))
    assert "openai/qwen2.5-coder-1.5b" in line and "127.0.0.1:55951/v1" in line and "…" not in line


def test_a_higher_scoring_longer_candidate_passed_over_for_a_shorter_one_is_named_with_both_lengths():
    result, originals = make_result()  # best #1: 3 of 4 on val
    assert "prefer_shorter_within" not in render(result, originals)[0]  # the best val score is the proposal
    longer = "better line 0 {question}\nAlways check the answer twice before you reply, then reply.\n"
    index = add_candidate(result, longer, dict.fromkeys(result.split.val, 1.0))  # 4 of 4, longer than #1
    body, _ = render(result, originals)
    best_chars = len(result.best.components["p.txt"])
    assert (f"Candidate #{index} scores 100.0% on validation, more than #1, but it is {len(longer)} chars against "
            f"{best_chars}: a longer prompt has to win by more than `optimizer.prefer_shorter_within`") in body
    assert "| best candidate #1 (reflection) | 0.750 |" in body  # the proposal is still the shorter one
