"""Edit-reflection wording experiment: N sampled instructions per variant, applied and scored on afinn train+val."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import litellm

from gepa_bot import reflection
from gepa_bot.edits import INSTRUCTION_SCHEMA
from gepa_bot.modelserver import LocalModelServer

REPO = Path("/work/main")
AFINN = REPO / "bench/tasks/afinn"
SEED = (AFINN / "prompts/afinn.txt").read_text()
RECORDS = [
    {"Generated Outputs": "5", "Feedback": "expected -2, got 5: wrong sign; word: 'danger'", "score": 0.0},
    {"Generated Outputs": "5", "Feedback": "expected 1, got 5: too strong by 4; word: 'greeted'", "score": 0.0},
    {"Generated Outputs": "-5", "Feedback": "expected -2, got -5: too strong by 3; word: 'burdened'", "score": 0.0},
]
variants = json.loads(Path(sys.argv[1]).read_text())  # name -> EDIT_INSTRUCTIONS text
n = int(sys.argv[2])

def score_prompt(server, text):
    d = Path("/tmp/exp/task")
    subprocess.run(["rm", "-rf", str(d)])
    subprocess.run(["cp", "-r", str(AFINN), str(d)])
    (d / "prompts/afinn.txt").write_text(text)
    env = {**os.environ, "PYTHONPATH": str(REPO), **server.eval_env(), "GEPA_BOT_MODE": "evaluate",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("GEPA_BOT_IDS_FILE", None)
    out = subprocess.run([sys.executable, "eval.py"], cwd=d, env=env, capture_output=True, text=True)
    res = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return sum(r["score"] for r in res) / len(res)

with LocalModelServer() as server:
    kw = server.litellm_kwargs()
    for name, template in variants.items():
        reflection.EDIT_INSTRUCTIONS = template
        msgs = reflection.build_edit_messages("prompts/afinn.txt", SEED, RECORDS)
        scores = []
        for s in range(n):
            t = time.time()
            r = litellm.completion(messages=msgs, temperature=0.7, seed=s, max_tokens=384,
                                   response_format={"type": "json_object", "schema": INSTRUCTION_SCHEMA}, **kw)
            reply = r.choices[0].message.content
            try:
                prop = reflection.parse_edit_proposal(reply, SEED)
                sc = score_prompt(server, prop.text)
                scores.append(sc)
                print(f"{name} s{s} {sc:.3f} ({time.time()-t:.0f}s) {prop.summary[:200]!r}", flush=True)
            except Exception as exc:
                scores.append(0.0)
                print(f"{name} s{s} REJECTED {exc} {reply[:200]!r}", flush=True)
        print(f"== {name}: mean {sum(scores)/len(scores):.3f} max {max(scores):.3f}", flush=True)
