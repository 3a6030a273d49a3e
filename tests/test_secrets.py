"""Secrets never leave the process, and untrusted text cannot break the PR body or the Actions log.

A real `gepa-bot optimize --dry-run` subprocess runs with fake API keys and a GitHub token in its
environment. The eval echoes every secret it can get in feedback, trace, output and stderr (and
crashes on some ids so its stderr becomes feedback), and the reflection LLM (litellm's own
``mock_response``) echoes one in its rationale. Afterwards no file under the run dir, the cache dir,
the PR body, the full report, nor the command's output contains a secret, or any 12-character piece
of one (a cut in the middle of a secret must not leave half of it); ``***`` shows where they were.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from toyrepo import EVAL_PRELUDE

SECRETS = {
    "OPENAI_API_KEY": "sk-test-Zq8WvN3kLr5TxY2mHc7PjB4dFg6SaE1uKo9",
    "ANTHROPIC_API_KEY": "sk-ant-test-Hn4Rt7Yp2Lm9Qw3Ez8Xc5Vb1Nk6Js0Df",
    "GITHUB_TOKEN": "ghs_Pq2Wz7Xe4Rt9Yu1Io6Lk3Jh8Gf5Ds0Aa",
}
NASTY = "</details></summary> ``` ~~~ ::set-output name=x::y\n::add-mask::z\n::error::boom | cell"
WINDOW = 12

LEAKY_EVAL = EVAL_PRELUDE + textwrap.dedent('''
    prompt = Path("prompts/main.txt").read_text().lower()
    openai, anthropic = os.environ.get("OPENAI_API_KEY", "<none>"), os.environ.get("ANTHROPIC_API_KEY", "<none>")
    github = os.environ.get("GITHUB_TOKEN") or Path(os.environ["LEAK_FILE"]).read_text()  # leaked some other way
    nasty = os.environ["NASTY"]
    written = 0  # chars of stderr so far: the crash below puts a key right where gepa-bot cuts long stderr

    def err(text):
        global written
        written += len(text)
        sys.stderr.write(text)

    for i in Path(os.environ["GEPA_BOT_IDS_FILE"]).read_text().split():
        crashed_before = Path(os.environ["LEAK_FILE"]).with_name(f"crashed-{i}")
        if i in ("i05", "i06") and not crashed_before.exists():  # crash once, dumping the environment (an error:
            crashed_before.write_text("")  # retried, then scored); the cut of long stderr falls inside a key
            err("x" * max(0, 730 - written) + openai + "y" * 3000 + "\\n")
            err(f"Traceback: auth failed with {anthropic} / {github}\\n{nasty}\\n")
            sys.exit(1)
        word = data[i]["keyword"]
        hit = word in prompt
        print(json.dumps({"id": i, "score": 1.0 if hit else 0.0,
                          "feedback": f"key={openai} {nasty} " + ("correct" if hit else f"the prompt should mention '{word}'"),
                          "trace": {"headers": {"Authorization": f"Bearer {github}", "x-api-key": anthropic}},
                          "output": f"{anthropic} {word}"}))
        err(f"debug: using {openai}\\n")
''')

REPLY_TEMPLATE = ("Rationale: the eval printed @OPENAI@ and @GITHUB@; its feedback said </details> ::set-output name=a::b"
                  " then ``` and ::add-mask::@ANTHROPIC@.\n\n````prompt\nClassify the ticket {ticket} into a queue.\n"
                  "Topics: billing refund login password crash\n````")
CHILD = ("import functools, os, sys, litellm; from gepa_bot.cli import main\n"
         "reply = os.environ['REPLY_TEMPLATE']\n"
         "for name, var in (('@OPENAI@', 'OPENAI_API_KEY'), ('@GITHUB@', 'GITHUB_TOKEN'),\n"
         "                  ('@ANTHROPIC@', 'ANTHROPIC_API_KEY')):\n"
         "    reply = reply.replace(name, os.environ[var])\n"
         "litellm.completion = functools.partial(litellm.completion, mock_response=reply)\n"
         "sys.exit(main())\n")


def leaks(text: str) -> list[str]:
    """Every secret of which some WINDOW-character piece occurs in ``text``."""
    found = []
    for name, value in SECRETS.items():
        if any(value[k:k + WINDOW] in text for k in range(len(value) - WINDOW + 1)):
            found.append(name)
    return found


@pytest.mark.slow
def test_no_secret_reaches_any_artifact_or_output(tmp_path):
    from toyrepo import make_toy_repo

    repo = make_toy_repo(tmp_path)
    (repo / "evals" / "eval.py").write_text(LEAKY_EVAL)
    leak_file = tmp_path / "outside" / "token.txt"
    leak_file.parent.mkdir()
    leak_file.write_text(SECRETS["GITHUB_TOKEN"])
    out = tmp_path / "pr" / "body.md"
    env = {**os.environ, **SECRETS, "LEAK_FILE": str(leak_file), "NASTY": NASTY, "REPLY_TEMPLATE": REPLY_TEMPLATE,
           "PYTHONPATH": os.pathsep.join(sys.path), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    completed = subprocess.run([sys.executable, "-c", CHILD, "optimize", "--repo", str(repo), "--budget", "30",
                                "--run-dir", str(tmp_path / "run"), "--dry-run", "--out", str(out)],
                               env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]

    cache_dir = repo / ".gepa-bot" / "cache"
    artifacts = [p for p in tmp_path.rglob("*") if p.is_file() and p != leak_file]
    assert any(p.is_relative_to(cache_dir) for p in artifacts) and (tmp_path / "run" / "run.jsonl") in artifacts
    assert out in artifacts and (tmp_path / "run" / "report-full.md") in artifacts
    for path in artifacts:
        text = path.read_bytes().decode("utf-8", "replace")
        assert leaks(text) == [], f"{path.relative_to(tmp_path)} leaks {leaks(text)}"
    assert leaks(completed.stdout + completed.stderr) == []

    # the secrets were really there to leak, and were masked where they appeared
    run_log = (tmp_path / "run" / "run.jsonl").read_text()
    assert "key=***" in run_log and "Bearer ***" in run_log
    llm = [json.loads(line) for line in run_log.splitlines() if '"kind": "llm"' in line]
    assert llm and all("printed *** and ***" in r["text"] and "::add-mask::***" in r["text"] for r in llm)
    crashed = [json.loads(line) for line in run_log.splitlines() if '"kind": "eval_error"' in line]
    assert {"i05", "i06"} <= {r["id"] for r in crashed}  # logged as errors (then retried), never as scores
    assert all("exited with code 1" in r["message"] and "auth failed with *** / ***" in r["message"] for r in crashed)
    assert {r["attempt"] for r in crashed} == {1}  # the retry scored them
    with sqlite3.connect(cache_dir / "cache.sqlite3") as db:
        cached = [value for (value,) in db.execute("SELECT value FROM results")]
    assert any("key=***" in text for text in cached)
    body, full = out.read_text(), (tmp_path / "run" / "report-full.md").read_text()
    assert "***" in body and "***" in full
    assert "improved prompts" in body  # the rationale (with its echoed key) is part of the body


def test_untrusted_text_cannot_break_the_pr_body_or_emit_workflow_commands(tmp_path, monkeypatch):
    """Runs the same leaky eval in process; checks the rendered PR body's structure."""
    import functools

    import litellm
    from toyrepo import make_toy_repo

    from gepa_bot.cli import load_settings, run_optimize

    repo = make_toy_repo(tmp_path)
    (repo / "evals" / "eval.py").write_text(LEAKY_EVAL)
    leak_file = tmp_path / "token.txt"
    leak_file.write_text(SECRETS["GITHUB_TOKEN"])
    reply = REPLY_TEMPLATE.replace("@OPENAI@", "o").replace("@GITHUB@", "g").replace("@ANTHROPIC@", "a")
    reply = reply.replace("Rationale: ", "Rationale: </details>\n<details><summary>x</summary>\n::warning::hi\n")
    monkeypatch.setenv("LEAK_FILE", str(leak_file))
    monkeypatch.setenv("NASTY", NASTY)
    monkeypatch.setattr(litellm, "completion", functools.partial(litellm.completion, mock_response=reply))
    settings = load_settings(repo, None, tmp_path / "run",
                             {"budget": 30, "model": None, "reflection_model": None, "workers": None, "seed": None})
    result, (body, _full) = run_optimize(settings, tmp_path / "body.md")

    full = (tmp_path / "run" / "report-full.md").read_text()
    assert result.best_candidate != 0  # the rationale and feedback are shown
    for text in (body, full):
        assert "::set-output" not in text and "::add-mask::" not in text and "::warning::" not in text
        assert not [line for line in text.splitlines() if line.lstrip().startswith("::")]
        opened = len(re.findall(r"<details>", text, re.IGNORECASE))
        assert opened == len(re.findall(r"</details>", text, re.IGNORECASE)) >= 2
        assert len(re.findall(r"<summary>", text)) == len(re.findall(r"</summary>", text)) == opened
        # fences: every fence line we open is closed by ours, none is opened or closed by untrusted text
        fences = [line for line in text.splitlines() if re.match(r"^\s*(`{3,}|~{3,})", line)]
        assert len(fences) % 2 == 0 and all(f.strip() in ("```diff", "```text", "```mermaid", "```") for f in fences)
        # table rows keep their column count (pipes in feedback are escaped)
        for line in text.splitlines():
            if line.startswith("| i"):
                assert len(re.findall(r"(?<!\\)\|", line)) == 6, line
        assert "<details><summary>x</summary>" not in text


def test_a_key_in_an_llm_error_message_is_masked_everywhere(tmp_path, monkeypatch):
    """Providers quote the rejected key in auth errors; the reason is kept in the log and result.json."""
    import litellm
    from test_engine import settings_for
    from toyrepo import make_toy_repo

    from gepa_bot.errors import RunStopped
    from gepa_bot.runlog import read_records
    from gepa_bot.search.engine import optimize

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    key = SECRETS["OPENAI_API_KEY"]
    messages = [f"Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com",
                "x" * 270 + key]  # the second is cut (at 300 chars) in the middle of the key

    class Rejecting:
        calls = 0

        def __call__(self, model, messages_, **params):
            Rejecting.calls += 1
            raise litellm.AuthenticationError(message=messages[Rejecting.calls % 2], llm_provider="openai", model=model)

    repo = make_toy_repo(tmp_path)
    with pytest.raises(RunStopped) as stopped:  # a reflection model refusing every call stops the run (exit 3)
        optimize(settings_for(repo, tmp_path, Rejecting(), budget__rollouts=20))

    reasons = [r["reason"] for r in read_records(tmp_path / "run", "rejected_proposal")]
    assert Rejecting.calls >= 2 and any("Incorrect API key provided: ***" in r for r in reasons)
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert leaks(path.read_text(errors="replace")) == [], path.name
    assert leaks(str(stopped.value)) == []
