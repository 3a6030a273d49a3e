"""`gepa-bot init`: scaffold `.gepa-bot.yml`, a starter eval and its data for a repository.

It finds the prompt files (or takes them from ``--prompt``), picks the first placeholder of the first prompt
as the input slot, and writes a starter eval that already speaks the protocol: fill ``evals/gepa_cases.jsonl``
with real cases and adjust ``score()``. Existing files are never overwritten.
"""

from __future__ import annotations

from pathlib import Path

from gepa_bot.config import DEFAULT_CONFIG_NAME
from gepa_bot.discovery import PLACEHOLDER
from gepa_bot.errors import UserError

PROMPT_SUFFIXES = (".md", ".txt", ".prompt", ".j2", ".jinja")
SKIPPED_DIRS = {".git", ".gepa-bot", "node_modules", ".venv", "venv", "__pycache__", "tests", "docs"}

STARTER_EVAL = '''"""Starter eval written by `gepa-bot init` (see docs/eval-protocol.md). Replace the cases and the scorer."""

import sys
from pathlib import Path

from gepa_bot import evalkit

HERE = Path(__file__).resolve().parent


def score(row: dict, reply: str) -> tuple[float, str, dict]:
    """1.0 when the reply starts with the expected answer; the feedback says what was expected."""
    expected, got = str(row["label"]).strip().lower(), reply.strip().lower()
    if got.startswith(expected):
        return 1.0, f"correct: {{expected!r}}", {{}}
    return 0.0, f"expected {{expected!r}}, got {{reply.strip()[:200]!r}}", {{}}


if __name__ == "__main__":
    sys.exit(evalkit.run_template_eval(HERE / "gepa_cases.jsonl", Path({prompt!r}), {placeholder!r}, score))
'''

STARTER_CASES = [
    '{{"id": "case-1", "input": "REPLACE with a real input", "label": "REPLACE with the expected answer", '
    '"split": "train"}}',
    '{{"id": "case-2", "input": "REPLACE with a real input", "label": "REPLACE with the expected answer", '
    '"split": "val"}}',
]

CONFIG = """# gepa-bot config written by `gepa-bot init` (every field: docs/configuration.md).
prompts:
{prompts}
eval:
  # the protocol: docs/eval-protocol.md; $GEPA_BOT_PYTHON is gepa-bot's Python (the eval imports gepa_bot.evalkit)
  command: '"${{GEPA_BOT_PYTHON:-python}}" evals/gepa_eval.py'
  watch: ["evals/**"]
budget:
  rollouts: 150
"""


def find_prompts(repo: Path) -> list[str]:
    """Text files with a ``{placeholder}``, prompts/ first: the likely prompt templates."""
    found = []
    for path in sorted(repo.rglob("*")):
        relative = path.relative_to(repo)
        if (path.is_file() and path.suffix in PROMPT_SUFFIXES and not SKIPPED_DIRS & set(relative.parts)
                and path.stat().st_size < 100_000 and PLACEHOLDER.search(path.read_text(encoding="utf-8",
                                                                                       errors="replace"))):
            found.append(relative.as_posix())
    return sorted(found, key=lambda p: (not p.startswith("prompts/"), p))


def init_repo(repo: Path, prompts: list[str] | None = None) -> list[str]:
    """Write the scaffold; returns the paths written (relative). Never overwrites a file."""
    prompts = prompts or find_prompts(repo)
    if not prompts:
        raise UserError(f"{repo}: found no prompt file (a .md/.txt/.prompt file with a {{placeholder}})",
                        fix="pass --prompt path/to/prompt.md (repeatable)")
    for prompt in prompts:
        if not (repo / prompt).is_file():
            raise UserError(f"--prompt {prompt}: no such file in {repo}", fix="give a path relative to the repo root")
    first = (repo / prompts[0]).read_text(encoding="utf-8", errors="replace")
    match = PLACEHOLDER.search(first)
    placeholder = match.group(0) if match else "{input}"
    files = {
        DEFAULT_CONFIG_NAME: CONFIG.format(prompts="\n".join(f"  - path: {p}" for p in prompts)),
        "evals/gepa_eval.py": STARTER_EVAL.format(prompt=prompts[0], placeholder=placeholder),
        "evals/gepa_cases.jsonl": "\n".join(line.format() for line in STARTER_CASES) + "\n",
    }
    written = []
    for relative, content in files.items():
        target = repo / relative
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        written.append(relative)
    gitignore = repo / ".gitignore"
    lines = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    if ".gepa-bot/" not in lines:
        gitignore.write_text("\n".join([*lines, ".gepa-bot/"]) + "\n", encoding="utf-8")
        written.append(".gitignore")
    return written
