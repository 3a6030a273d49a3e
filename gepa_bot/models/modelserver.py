"""One llama.cpp server (``python -m llama_cpp.server``) on 127.0.0.1 for the embedded models a run needs.

Usage::

    with LocalModelServer() as server:
        gepa_bot.models.completion.chat(messages=[...], **server.litellm_kwargs())
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gepa_bot import containment
from gepa_bot.models.localmodel import DEFAULT_LOCAL_MODEL, LOCAL_MODELS, LocalModel, LocalModelUnavailable, _check_server_modules


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _tail(path: Path, max_chars: int = 3000) -> str:
    try:
        data = path.read_bytes()[-max_chars:]
    except OSError:
        return "<no log>"
    return data.decode("utf-8", errors="replace").strip() or "<empty log>"


class LocalModelServer:
    """Runs ``python -m llama_cpp.server`` on a free loopback port for the duration of a ``with`` block.

    One process serves every model in ``models`` (a config file lists them when there are several).
    The server runs in its own process group (so :meth:`stop` also ends anything it spawned) and
    writes its output to :attr:`log_path`, never to the console. ``start``/``stop`` are idempotent
    and the object can be entered again after it was stopped.
    """

    api_key = "local"

    def __init__(
        self,
        models: Sequence[LocalModel] | LocalModel | None = None,
        *,
        gguf: str | os.PathLike[str] | None = None,
        port: int | None = None,
        n_threads: int | None = None,
        n_ctx: int | None = None,
        startup_timeout: float = 120.0,
        log_path: str | os.PathLike[str] | None = None,
        python: str | None = None,
    ) -> None:
        if isinstance(models, LocalModel):
            models = [models]
        self.models = list(dict.fromkeys(models or [LOCAL_MODELS[DEFAULT_LOCAL_MODEL]]))
        if gguf is not None and len(self.models) != 1:
            raise ValueError("gguf= overrides the weights of a single model")
        self._ggufs: dict[str, Path] = {self.models[0].name: Path(gguf)} if gguf is not None else {}
        self._requested_port = port
        self.n_threads = n_threads or _cores()
        self.n_ctx = n_ctx
        self.startup_timeout = startup_timeout
        self._log_path = Path(log_path) if log_path is not None else None
        self.python = python or sys.executable
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- public properties -------------------------------------------------------------------
    @property
    def model(self) -> str:
        """The litellm model string of the first (or only) model."""
        return self.model_for(self.models[0])

    @staticmethod
    def model_for(model: LocalModel) -> str:
        return f"openai/{model.alias}"

    @property
    def api_base(self) -> str:
        if self.port is None:
            raise RuntimeError("LocalModelServer is not started")
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def litellm_kwargs(self, model: LocalModel | None = None) -> dict[str, str]:
        """``model``/``api_base``/``api_key`` for ``litellm.completion(**kwargs, messages=...)``."""
        return {"model": self.model_for(model or self.models[0]), "api_base": self.api_base, "api_key": self.api_key}

    def eval_env(self, model: LocalModel | None = None) -> dict[str, str]:
        """The ``GEPA_BOT_MODEL``/``_API_BASE``/``_API_KEY`` variables an eval command reads."""
        kwargs = self.litellm_kwargs(model)
        return {"GEPA_BOT_MODEL": kwargs["model"], "GEPA_BOT_API_BASE": kwargs["api_base"],
                "GEPA_BOT_API_KEY": kwargs["api_key"]}

    def _gguf(self, model: LocalModel) -> Path:
        if model.name not in self._ggufs:
            self._ggufs[model.name] = model.locate()
        return self._ggufs[model.name]

    def _model_settings(self, model: LocalModel) -> dict[str, Any]:
        return {"model": str(self._gguf(model)), "model_alias": model.alias, "n_threads": self.n_threads,
                "n_ctx": self.n_ctx or model.n_ctx}

    def command(self, port: int) -> list[str]:
        base = [self.python, "-m", "llama_cpp.server"]
        if len(self.models) > 1:
            config = {"host": "127.0.0.1", "port": port, "models": [self._model_settings(m) for m in self.models]}
            path = Path(tempfile.gettempdir()) / f"gepa-bot-llama-{port}.json"
            path.write_text(json.dumps(config), encoding="utf-8")
            return base + ["--config_file", str(path)]
        settings = self._model_settings(self.models[0])
        return base + [
            "--model", settings["model"],
            "--model_alias", settings["model_alias"],
            "--host", "127.0.0.1",
            "--port", str(port),
            "--n_threads", str(settings["n_threads"]),
            "--n_ctx", str(settings["n_ctx"]),
        ]  # fmt: skip

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> LocalModelServer:
        if self.running:
            return self
        for model in self.models:
            self._gguf(model)
        _check_server_modules()
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="gepa-bot-localmodel-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        attempts = 1 if self._requested_port else 3
        for attempt in range(attempts):
            port = self._requested_port or _free_port()
            try:
                self._launch(port)
                return self
            except LocalModelUnavailable as exc:
                # Another process may have taken the free port between probe and bind: retry.
                if attempt + 1 < attempts and "address already in use" in str(exc).lower():
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self, port: int) -> None:
        assert self._log_path is not None
        command = self.command(port)
        with open(self._log_path, "ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        containment.keep(self._proc.pid)  # ours, not an eval's leftover: stop() ends it
        self.port = port
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout
        url = f"http://127.0.0.1:{port}/v1/models"
        while True:
            code = self._proc.poll()
            if code is not None:
                self._forget()
                raise LocalModelUnavailable(
                    f"The local model server exited with code {code} before answering. "
                    f"Log ({self._log_path}), last lines:\n{_tail(self._log_path)}"
                )
            if self._answers(url, {m.alias for m in self.models}):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise LocalModelUnavailable(
                    f"The local model server did not answer {url} within {self.startup_timeout:.0f} s. "
                    f"Log ({self._log_path}), last lines:\n{_tail(self._log_path)}"
                )
            time.sleep(0.2)

    @staticmethod
    def _answers(url: str, aliases: set[str]) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status != 200:
                    return False
                body = json.loads(resp.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return aliases <= {m.get("id") for m in body.get("data", []) if isinstance(m, dict)}

    @property
    def exit_description(self) -> str:
        """How the server process ended: "killed by SIGSEGV" or "exited with code 1" ("running" if it has not)."""
        code = None if self._proc is None else self._proc.poll()
        if code is None:
            return "running" if self._proc is not None else "not started"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with code {code}"

    def restart(self) -> None:
        """Start a stopped or dead server again on the same port (the evals' API base stays valid)."""
        port = self.port
        self.stop()
        self._requested_port = port
        self.start()

    def _forget(self) -> None:
        if self._proc is not None:
            containment.forget(self._proc.pid)
        self._proc = None
        self.port = None
        atexit.unregister(self.stop)

    def stop(self) -> None:
        """Kill the server's process group; does nothing when it is not running."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # Reap whatever is left of the group (the server itself spawns nothing, but be thorough).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc.poll() is None:
            proc.wait(timeout=5)
        self._forget()

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running on {self.api_base}" if self.running else "stopped"
        return f"<LocalModelServer {state}>"


class ServerWatch:
    """Watches a run's embedded model server between batches: a dead server is restarted once (with what it said
    before dying in the run's warnings); after that, :meth:`check` returns the cause that stops the run."""

    def __init__(self, server: LocalModelServer, restarts: int = 1):
        self.server, self.restarts_left = server, restarts
        self.events: list[str] = []

    def check(self) -> str | None:
        """None while the server runs (or was restarted now); the stop cause once it died for good."""
        if self.server.running:
            return None
        death = f"the embedded model server {self.server.exit_description}; log {self.server.log_path}, last lines: " \
                f"{_tail(self.server.log_path, 600) if self.server.log_path else '<no log>'}"
        if self.restarts_left <= 0:
            return death
        self.restarts_left -= 1
        self.events.append(death)
        try:
            self.server.restart()
        except LocalModelUnavailable as exc:
            return f"{death}; restarting it failed: {exc}"
        return None


_watches: list[ServerWatch] = []  # the embedded servers of the runs in this process (usually one)


def watching(watch: ServerWatch) -> ServerWatch:
    """Register ``watch`` for :func:`check_model_servers` (undo with :func:`unwatch`)."""
    _watches.append(watch)
    return watch


def unwatch(watch: ServerWatch) -> None:
    if watch in _watches:
        _watches.remove(watch)


def check_model_servers() -> str | None:
    """Poll every watched embedded server (cheap: a waitpid); the cause that stops the run, or None."""
    for watch in list(_watches):
        if (cause := watch.check()) is not None:
            return cause
    return None
