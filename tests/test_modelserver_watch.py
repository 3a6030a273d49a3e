"""The embedded model server is watched: a server that dies (a llama.cpp build for another CPU segfaults on its first
completion) is restarted once on the same port; the second death stops the run with the cause (exit code 3).

The server is a REAL process that plays `python -m llama_cpp.server`: LocalModelServer runs its usual command with
`python=` a shim that drops `-m llama_cpp.server` and starts a small HTTP stub serving `/v1/models` and
`/v1/chat/completions` on the `--port` it is given. It is killed with a real SIGSEGV. Nothing of gepa-bot is mocked
except the check that the llama_cpp modules are installed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from test_engine import settings_for
from toyrepo import ScriptedReflection, make_toy_repo

import gepa_bot.models.modelserver as modelserver
from gepa_bot.errors import RunStopped
from gepa_bot.models.localmodel import SMOLLM2
from gepa_bot.models.modelserver import LocalModelServer, ServerWatch, check_model_servers, unwatch, watching
from gepa_bot.runlog import read_records
from gepa_bot.search.engine import optimize

# `python <stub> <pids file> -m llama_cpp.server --model ... --model_alias A --host H --port P ...`
STUB = textwrap.dedent('''
    import json, os, resource, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a SIGSEGV leaves no core file behind
    pids, argv = sys.argv[1], sys.argv[2:]
    option = lambda name: argv[argv.index(name) + 1]
    alias, port = option("--model_alias"), int(option("--port"))
    with open(pids, "a") as f:
        f.write(f"{os.getpid()}\\n")

    class Handler(BaseHTTPRequestHandler):
        def reply(self, data):
            body = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self.reply({"object": "list", "data": [{"id": alias, "object": "model"}]})

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.reply({"id": "c", "object": "chat.completion", "created": 0, "model": alias,
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": f"OK from {os.getpid()}"}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"llama stub pid {os.getpid()} serving {alias} on port {port}", flush=True)
    server.serve_forever()
''')


class Stub:
    """A LocalModelServer whose `python -m llama_cpp.server` is the stub, and the pids of the stubs it started."""

    def __init__(self, tmp_path: Path):
        stub, self.pids_file = tmp_path / "llama_stub.py", tmp_path / "pids"
        stub.write_text(STUB)
        shim = tmp_path / "python-shim"
        shim.write_text(f'#!/bin/sh\n# drops "-m llama_cpp.server", keeps the server options\nshift 2\n'
                        f'exec "{sys.executable}" "{stub}" "{self.pids_file}" "$@"\n')
        shim.chmod(0o755)
        gguf = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
        gguf.write_bytes(b"GGUF fake")
        self.server = LocalModelServer(SMOLLM2, gguf=gguf, python=str(shim), log_path=tmp_path / "server.log",
                                       startup_timeout=30)
        self.watches: list[ServerWatch] = []

    def pids(self) -> list[int]:
        return [int(line) for line in self.pids_file.read_text().split()] if self.pids_file.exists() else []

    def watch(self) -> ServerWatch:
        self.watches.append(watching(ServerWatch(self.server)))
        return self.watches[-1]

    def segfault(self) -> None:
        """SIGSEGV to the server process (as a bad llama.cpp build does to itself); returns once it is dead."""
        os.kill(self.pids()[-1], signal.SIGSEGV)
        deadline = time.monotonic() + 10
        while self.server.running:
            assert time.monotonic() < deadline, "the server survived SIGSEGV"
            time.sleep(0.05)


@pytest.fixture
def stub(tmp_path, monkeypatch):
    monkeypatch.setattr(modelserver, "_check_server_modules", lambda: None)  # llama_cpp may be absent in CI
    stub = Stub(tmp_path)
    try:
        yield stub
    finally:
        for watch in stub.watches:
            unwatch(watch)
        stub.server.stop()


def completion(port: int) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", method="POST",
                                     data=json.dumps({"model": SMOLLM2.alias, "messages": []}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)["choices"][0]["message"]["content"]


def test_a_segfaulted_server_is_restarted_once_on_the_same_port_and_the_second_death_is_the_cause(stub):
    server = stub.server
    server.start()
    port, api_base = server.port, server.api_base
    [first] = stub.pids()
    assert completion(port) == f"OK from {first}"
    watch = stub.watch()
    assert check_model_servers() is None  # running: nothing to do

    stub.segfault()
    assert check_model_servers() is None  # dead once: restarted, the run goes on
    [_, second] = stub.pids()
    assert second != first and server.running
    assert (server.port, server.api_base) == (port, api_base)  # the evals' GEPA_BOT_API_BASE stays valid
    assert completion(port) == f"OK from {second}"
    [event] = watch.events
    assert event.startswith("the embedded model server killed by SIGSEGV") and f"llama stub pid {first}" in event

    stub.segfault()
    cause = check_model_servers()
    assert cause is not None and cause.startswith("the embedded model server killed by SIGSEGV")
    assert str(server.log_path) in cause
    assert f"llama stub pid {second} serving {SMOLLM2.alias} on port {port}" in cause  # the log's last lines
    assert stub.pids() == [first, second] and not server.running  # restarted once, not twice
    assert check_model_servers() == cause  # and it stays the cause


def test_a_server_that_died_twice_stops_the_run_with_exit_code_3(stub, tmp_path, monkeypatch):
    counter = tmp_path / "counter"
    counter.mkdir()
    monkeypatch.setenv("TOY_COUNTER_DIR", str(counter))
    repo = make_toy_repo(tmp_path)
    stub.server.start()
    stub.watch()
    stub.segfault()
    assert check_model_servers() is None  # the one restart
    stub.segfault()

    reflection = ScriptedReflection()
    with pytest.raises(RunStopped) as stopped:
        optimize(settings_for(repo, tmp_path, reflection, budget__rollouts=30))

    assert stopped.value.exit_code == 3
    message = str(stopped.value)
    assert message.startswith("run stopped: the embedded model server killed by SIGSEGV")
    assert f"llama stub pid {stub.pids()[-1]}" in message  # what the server said before it died
    assert "Fix: the embedded model crashed" in message and "scripts/install-local-model" in message
    assert "\n" not in message  # one line, the log tail included
    run_dir = tmp_path / "run"
    [record] = read_records(run_dir, "stopped")
    assert "killed by SIGSEGV" in record["cause"]
    assert not (run_dir / "result.json").exists()  # nothing a publish step could take for a result
    assert list(counter.iterdir()) == [] and reflection.calls == []  # nothing ran against a dead model
    assert len(stub.pids()) == 2 and not stub.server.running  # not restarted a second time
