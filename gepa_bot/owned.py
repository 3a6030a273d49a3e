"""Directories gepa-bot owns (run directory, eval cache) carry a marker file.

Such a directory is never copied into a candidate's repo copy, and only such a directory is ever deleted
(`gepa-bot optimize --fresh`): a mistyped ``run_dir`` can never delete the user's files.
"""

from __future__ import annotations

from pathlib import Path

OWNED_MARKER = ".gepa-bot-owned"


def mark_owned(directory: Path) -> Path:
    """Create ``directory`` (if needed) with gepa-bot's marker file in it; returns ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / OWNED_MARKER
    if not marker.exists():
        marker.write_text("Written by gepa-bot (a run directory or an eval cache). Never copied into candidate "
                          "copies of the repository; `gepa-bot optimize --fresh` deletes a run directory only when "
                          "this file is in it.\n", encoding="utf-8")
    return directory


def is_owned(directory: Path) -> bool:
    """True when ``directory`` carries gepa-bot's marker file."""
    return (directory / OWNED_MARKER).is_file()
