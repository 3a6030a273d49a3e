"""The package layout is the architecture (docs/architecture.md): every import of a gepa_bot module points down.

Layers, lowest first: the top-level foundation modules (config, discovery, result, runlog, errors, redact, owned,
escaping), models/, evalkit (the evals' public helpers), evals/, then search/ and report/ side by side, then
github/, then the entry points (cli, doctor, init, __main__; and github/action.py, the Action's main, which runs
the search). Lazy imports inside functions count too: a cycle hidden in a function is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gepa_bot"

# entry points may import anything; every other top-level module (config, result, errors, ...) is the foundation
ENTRY_POINTS = {"cli", "doctor", "init", "__main__", "github.action"}

# what each layer may import besides itself
ALLOWED = {
    "foundation": {"foundation"},
    "models": {"foundation"},
    "evalkit": {"foundation", "models"},
    "evals": {"foundation", "evalkit"},
    "search": {"foundation", "models", "evalkit", "evals"},
    "report": {"foundation"},
    "github": {"foundation", "report"},
    "entry": {"foundation", "models", "evalkit", "evals", "search", "report", "github"},
}


def module_name(path: Path) -> str:
    """``gepa_bot/search/engine.py`` -> ``search.engine``; a package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    if module in ENTRY_POINTS:
        return "entry"
    if module == "evalkit":
        return "evalkit"
    head = module.split(".", 1)[0]
    if not (PACKAGE / head).is_dir():
        return "foundation"  # a top-level module (config, result, errors, ...)
    assert head in ALLOWED and head != "foundation", f"gepa_bot/{module}: place it in a layer (tests/test_layers.py)"
    return head


def imports(path: Path) -> set[str]:
    """The gepa_bot modules ``path`` imports, anywhere in the file, as module names relative to the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "gepa_bot":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("gepa_bot."):
                name = node.module.removeprefix("gepa_bot.")
                # `from gepa_bot.github import rest` imports the module gepa_bot.github.rest
                found.update(f"{name}.{alias.name}" if (PACKAGE / name / f"{alias.name}.py").exists() else name
                             for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("gepa_bot.") for a in node.names if a.name.startswith("gepa_bot."))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_point_down_the_layers(path):
    module = module_name(path)
    own = layer(module)
    wrong = sorted(name for name in imports(path) if (other := layer(name)) != own and other not in ALLOWED[own])
    assert not wrong, f"gepa_bot/{module} ({own}) imports {wrong}: see docs/architecture.md for what may import what"


def test_every_subpackage_is_a_layer():
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == {"evals", "models", "search", "report", "github"}


def test_the_layer_check_catches_an_upward_import(tmp_path):
    fake = tmp_path / "x.py"
    fake.write_text("from gepa_bot.search.engine import optimize\nfrom gepa_bot.github import rest\n")
    assert imports(fake) == {"search.engine", "github.rest"}
    assert not {"search", "github"} & ALLOWED["report"]
