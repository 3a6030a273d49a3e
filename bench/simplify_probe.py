"""Probe: how often the plain-rewrite request gets a usable, distinct rewrite from the local model, by wording.

    python bench/simplify_probe.py bench/tasks/tickets/prompts/classify.txt [N]

Samples the request N times per variant (sampling seeds 0..N-1 as the search's repeats draw them) and parses each
reply as the search does (fenced block, placeholders, unchanged text, answer cue). No rollouts. Results:
bench/results/simplify-probe.md. Run it alone (one llama.cpp process on the machine).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gepa_bot.models.modelserver import LocalModelServer  # noqa: E402
from gepa_bot.runlog import RunLog  # noqa: E402
from gepa_bot.search import reflection_prompts  # noqa: E402
from gepa_bot.search.budget import Budget  # noqa: E402
from gepa_bot.search.llm import LLM  # noqa: E402
from gepa_bot.search.reflection_proposals import ProposalRejected, guard_answer_cue, parse_reply  # noqa: E402

PROMPT_ONLY = reflection_prompts.SIMPLIFY_INSTRUCTIONS
ASK = "Write the complete new prompt inside ONE fenced block"
VARIANTS = {
    "reason_first": PROMPT_ONLY.replace(ASK, 'First write "Reason:" and ONE sentence: what you change and why.\n'
                                             "Then write the complete new prompt inside ONE fenced block"),
    "prompt_only": PROMPT_ONLY,
    "reason_after": PROMPT_ONLY.replace("Write nothing after the closing fence.",
                                        'After the closing fence, write "Reason:" and ONE sentence: what you changed '
                                        "and why."),
}


def main() -> int:
    seed = Path(sys.argv[1]).read_text(encoding="utf-8")
    samples = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    with tempfile.TemporaryDirectory() as scratch, LocalModelServer() as server:
        kwargs = server.litellm_kwargs()
        for name, template in VARIANTS.items():
            llm = LLM(kwargs["model"], Budget(max_rollouts=10**6), RunLog(Path(scratch) / name), max_tokens=384,
                      temperature=0.7, extra={"api_base": kwargs["api_base"], "api_key": kwargs["api_key"], "seed": 0})
            reflection_prompts.SIMPLIFY_INSTRUCTIONS = template
            usable, texts, refused, started = 0, set(), {}, time.monotonic()
            for _ in range(samples):
                reply = llm.complete(reflection_prompts.build_simplify_messages(seed), purpose="probe")
                try:
                    proposal = parse_reply(reply.text, seed)
                    guard_answer_cue(proposal, seed)
                except ProposalRejected as exc:
                    refused[str(exc)[:60]] = refused.get(str(exc)[:60], 0) + 1
                    continue
                usable += 1
                texts.add(proposal.text)
            print(f"{name}: {usable}/{samples} usable, {len(texts)} distinct, {time.monotonic() - started:.0f} s; "
                  f"refused {refused}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
