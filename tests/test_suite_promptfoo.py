"""The promptfoo adapter runs the real promptfoo CLI (npm `promptfoo`, pinned in .ci/package-lock.json) against a
loopback stub model: per-test scores must equal promptfoo's own run of the same config, every assertion type
works (llm-rubric graded by the stub, javascript, transform, transformVars, CSV, file:// and chat prompts)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import ValidationError

from gepa_bot.evalsuite import SuiteContext, SuiteError, materialize
from gepa_bot.suites.promptfoo_suite import PromptfooSuite, PromptfooSuiteConfig, provider_id, instance_id_of

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "promptfoo"
PROMPTFOO = ROOT / ".ci" / "node_modules" / ".bin" / "promptfoo"
TRIAGE_PROMPT = "prompts/triage.txt"

if not PROMPTFOO.exists() or not shutil.which("node"):
    if os.environ.get("CI"):
        pytest.fail("promptfoo is not installed: `npm ci --prefix .ci` (Node.js >= 20.20)", pytrace=False)
    pytest.skip("promptfoo not installed (npm ci --prefix .ci); CI installs it", allow_module_level=True)

# The stub task model's answers, keyed by a phrase of the rendered prompt.
CANNED = {
    "charged twice": lambda prompt: '{"label": "billing", "reason": "Duplicate charge on an order."}',
    "crashes": lambda prompt: 'Sure! {"label": "technical", "reason": "crash"}',
    "log in": lambda prompt: ('{"label": "account", "reason": "Login problem after an email change."}'
                              if "from Ana:" in prompt else "As an AI, I think billing."),
    "word ok": lambda prompt: "okay",
    "Say hi": lambda prompt: "hi",
    "bananas": lambda prompt: "Bananas are great!",
    "avocado": lambda prompt: "avocado toast, again",
    "new york": lambda prompt: "NYC: pizza rats rule" + ("!" if "funny" in prompt else "."),
}


class StubModel:
    """An OpenAI-compatible /chat/completions on 127.0.0.1: canned answers, and a grader for llm-rubric that
    passes an output ending in "!" (the rubric's verdict is the stub's, so promptfoo's own reason is checked)."""

    def __init__(self):
        self.requests: list[list[dict]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                stub.requests.append(body["messages"])
                reply = stub.answer(body["messages"])
                data = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": reply}}],
                                   "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @staticmethod
    def answer(messages: list[dict]) -> str:
        text = "\n".join(str(m.get("content")) for m in messages)
        if "<Rubric>" in text or "rubric" in text.lower() and "<Output>" in text:
            output = text.rsplit("<Output>", 1)[-1].split("</Output>", 1)[0].strip()
            passed = output.endswith("!")
            return json.dumps({"reason": f"stub grader: {'funny' if passed else 'not funny'}", "pass": passed,
                               "score": 1.0 if passed else 0.0})
        return next((reply(text) for key, reply in CANNED.items() if key in text), "no idea")


@pytest.fixture(scope="module")
def stub():
    model = StubModel()
    yield model
    model.server.shutdown()


def repo_copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def make_suite(repo: Path, stub: StubModel, config: str = "promptfooconfig.yaml", **fields) -> PromptfooSuite:
    cfg = PromptfooSuiteConfig(type="promptfoo", config=config, command=str(PROMPTFOO), providers="task_model",
                               grader="task_model", **fields)
    return PromptfooSuite(SuiteContext(repo=repo, model="openai/stub", api_base=stub.url, api_key="k"), cfg)


def workdir(repo: Path, tmp_path: Path, files: dict[str, str] | None = None):
    files = files or {TRIAGE_PROMPT: (repo / TRIAGE_PROMPT).read_text(encoding="utf-8")}
    return materialize(repo, files, dict(files), tmp_path / "work")


def promptfoo_itself(repo: Path, config: str, stub: StubModel, tmp_path: Path) -> list[float]:
    """Every row's score from `promptfoo eval` run directly on the config, with the same stub model."""
    out = tmp_path / "direct.json"
    env = {**os.environ, "OPENAI_BASE_URL": stub.url, "OPENAI_API_KEY": "k", "PROMPTFOO_DISABLE_TELEMETRY": "1",
           "PROMPTFOO_DISABLE_UPDATE": "1", "PROMPTFOO_CONFIG_DIR": str(tmp_path / "pf-home")}
    done = subprocess.run([str(PROMPTFOO), "eval", "-c", config, "-r", "openai:chat:stub", "--grader",
                           "openai:chat:stub", "--no-cache", "--no-write", "--no-table", "--no-progress-bar", "-o",
                           str(out)], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 100), done.stdout[-2000:] + done.stderr[-2000:]
    return sorted(float(r["score"]) for r in json.loads(out.read_text())["results"]["results"])


@pytest.mark.parametrize(("fixture", "config"), [("support-triage", "promptfooconfig.yaml"),
                                                  ("support-triage", "promptfooconfig-csv.yaml"),
                                                  ("init-default", "promptfooconfig.yaml")])
def test_every_score_equals_promptfoos_own_run(stub, tmp_path, fixture, config):
    repo = repo_copy(tmp_path, fixture)
    suite = make_suite(repo, stub, config)
    ids = [i.id for i in suite.list_instances()]
    files = {TRIAGE_PROMPT: (repo / TRIAGE_PROMPT).read_text()} if (repo / TRIAGE_PROMPT).exists() else {}
    results = suite.evaluate(materialize(repo, files, dict(files), tmp_path / "work"), ids)
    ours = sorted(float(row["score"]) for i in ids for row in results[i].trace)
    assert ours == promptfoo_itself(repo, config, stub, tmp_path)
    assert len(ours) >= len(ids) and any(s > 0 for s in ours)  # not an agreement on errors


def test_ids_are_descriptions_or_content_hashes_and_survive_edits(stub, tmp_path):
    repo = repo_copy(tmp_path, "support-triage")
    ids = [i.id for i in make_suite(repo, stub).list_instances()]
    assert ids[:2] == ["Double charge", "App crash"] and re.fullmatch(r"t-[0-9a-f]{12}", ids[2])
    assert ids[3] == "Exact answer"
    # CSV rows get promptfoo's "Row #N": not an id (it moves when a row is added); __description is one
    csv_ids = [i.id for i in make_suite(repo, stub, "promptfooconfig-csv.yaml").list_instances()]
    assert csv_ids == ["charged twice", "app crash", "plain equals"]
    config = repo / "promptfooconfig.yaml"
    config.write_text(config.read_text().replace("tests:\n", "tests:\n  - vars: {ticket: new first test}\n", 1))
    assert [i.id for i in make_suite(repo, stub).list_instances()][1:] == ids
    assert instance_id_of({"description": "Row #7", "vars": {"a": 1}}) == instance_id_of({"vars": {"a": 1}})


def test_array_vars_and_several_prompts_average_into_one_instance(stub, tmp_path):
    repo = repo_copy(tmp_path, "support-triage")
    suite = make_suite(repo, stub)
    login = [i.id for i in suite.list_instances()][2]  # customer: [Ana, Bo]: two rows, one instance
    result = suite.evaluate(workdir(repo, tmp_path), [login])[login]
    assert [row["vars"]["customer"] for row in result.trace] == ["Ana", "Bo"]
    assert result.score == pytest.approx(sum(r["score"] for r in result.trace) / 2)
    assert "[prompt" in result.feedback and "Bo" in result.feedback and "- [not-contains-any]" in result.feedback


def test_the_candidate_prompt_is_read_from_the_workdir(stub, tmp_path):
    repo = repo_copy(tmp_path, "support-triage")
    suite = make_suite(repo, stub)
    baseline = suite.evaluate(workdir(repo, tmp_path / "a"), ["Double charge"])["Double charge"]
    broken = {TRIAGE_PROMPT: "Ticket: {{ticket}}. Answer in one word."}  # no JSON asked for, no customer
    changed = suite.evaluate(workdir(repo, tmp_path / "b", broken), ["Double charge"])["Double charge"]
    assert baseline.score == 1.0 and changed.score == 1.0  # the stub answers by ticket: same JSON
    assert "Answer in one word" in stub.requests[-1][-1]["content"]
    assert not list(repo.glob(".gepa-bot-promptfoo-tests*"))  # nothing left in the repo


def test_llm_rubric_javascript_transform_and_transform_vars(stub, tmp_path):
    repo = tmp_path / "repo"
    (repo / "prompts").mkdir(parents=True)
    (repo / "prompts" / "chat.json").write_text(json.dumps([
        {"role": "system", "content": "You write tweets."},
        {"role": "user", "content": "Write a {{style}} tweet about {{topic}}"}]))
    (repo / "promptfooconfig.yaml").write_text("""
prompts: [file://prompts/chat.json]
providers: [openai:gpt-4o-mini]
defaultTest:
  options:
    transform: output.trim()
tests:
  - description: rubric
    vars: {topic: new york, style: funny}
    assert:
      - type: llm-rubric
        value: ensure that the output is funny
  - description: rubric fails
    vars: {topic: new york, style: dull}
    assert:
      - type: llm-rubric
        value: ensure that the output is funny
  - description: javascript and transformVars
    vars: {topic: avocado, style: plain}
    options:
      transformVars: "{ ...vars, style: vars.style + ' and short' }"
    assert:
      - type: javascript
        value: "output.startsWith('avocado') && context.vars.style === 'plain and short'"
      - type: javascript
        value: "output.length < 5"
""")
    suite = make_suite(repo, stub)
    files = {"prompts/chat.json": (repo / "prompts" / "chat.json").read_text()}
    results = suite.evaluate(materialize(repo, files, dict(files), tmp_path / "work"),
                             ["rubric", "rubric fails", "javascript and transformVars"])
    assert results["rubric"].score == 1.0
    assert results["rubric fails"].score == 0.0 and "stub grader: not funny" in results["rubric fails"].feedback
    js = results["javascript and transformVars"]
    assert js.score == 0.5 and "- [javascript]" in js.feedback
    chat = [m for m in stub.requests if any("avocado" in str(x.get("content")) for x in m)][-1]
    assert chat[0] == {"role": "system", "content": "You write tweets."}  # the chat-format prompt, as messages


def test_parallel_batches_in_one_workdir_do_not_mix(stub, tmp_path):
    """gepa-bot scores a candidate in `workers` concurrent batches in the same workdir."""
    from gepa_bot.evalsuite import evaluate_parallel

    repo = repo_copy(tmp_path, "support-triage")
    suite = make_suite(repo, stub)
    ids = [i.id for i in suite.list_instances()]
    results = evaluate_parallel(suite, workdir(repo, tmp_path), ids, workers=2)
    assert set(results) == set(ids) and all(r.trace and not r.failed for r in results.values())


def test_a_broken_candidate_fails_only_that_batch(stub, tmp_path):
    repo = repo_copy(tmp_path, "support-triage")
    suite = make_suite(repo, stub)
    bad = workdir(repo, tmp_path, {TRIAGE_PROMPT: "x"})
    (bad.path / "promptfooconfig.yaml").unlink()  # a hard link to the repo's file: replace, never write through
    (bad.path / "promptfooconfig.yaml").write_text("prompts: [")
    result = suite.evaluate(bad, ["Double charge"])["Double charge"]
    assert result.score == 0.0 and result.failed and "promptfoo failed on this batch" in result.feedback
    # a failed assertion is a low score, not a broken eval
    fine = suite.evaluate(workdir(repo, tmp_path / "ok"), ["App crash"])["App crash"]
    assert not fine.failed and fine.score < 1


def test_setup_errors_are_one_clear_line(stub, tmp_path):
    repo = repo_copy(tmp_path, "support-triage")
    with pytest.raises(SuiteError, match="promptfoo could not start.*Node.js"):
        PromptfooSuite(SuiteContext(repo=repo), PromptfooSuiteConfig(type="promptfoo", command="/nonexistent/pf"))
    with pytest.raises(SuiteError, match="not found"):
        make_suite(repo, stub, "missing.yaml")
    with pytest.raises(SuiteError, match="task_model cannot use 'cohere/x'"):
        provider_id("cohere/x")
    with pytest.raises(ValidationError, match="assertions"):
        PromptfooSuiteConfig(type="promptfoo", assertions="native")  # unknown fields are errors


def test_fingerprint_covers_the_promptfoo_version_and_the_loaded_tests(stub, tmp_path):
    repo = repo_copy(tmp_path, "support-triage")
    before = make_suite(repo, stub, "promptfooconfig-csv.yaml")
    assert any(re.fullmatch(r"\d+\.\d+\.\d+", part) for part in before.fingerprint_parts())
    (repo / "tests.csv").write_text((repo / "tests.csv").read_text().replace("Say hi", "Say hello"))
    assert make_suite(repo, stub, "promptfooconfig-csv.yaml").fingerprint() != before.fingerprint()
