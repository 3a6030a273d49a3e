"""The optimize job's result artifact, and the publish job's validation of it.

In the two-job setup (action.yml ``job: optimize`` / ``job: publish``; docs/security.md) the evals run in a job
without any write token, and a later job on a fresh runner pushes and opens the pull request. Everything the
optimize job hands over was written on a machine the evals controlled, so the publish job treats it as untrusted
data. The artifact is a directory::

    manifest.json      {"version": 1, "base_sha": "<40 hex>", "stopped": null | "<why the run stopped>"}
    result.json        the run's RunResult (absent when the run stopped)
    files/<path>       the proposed content of each prompt file (result.json's best_files, byte for byte)

:func:`write_artifact` builds it from a run directory (optimize side); :func:`read_validated` checks it against a
fresh checkout of the base commit and the config found there (publish side) and returns the :class:`Proposal`, or
raises a one-line :class:`~gepa_bot.errors.UserError` naming the first problem. Nothing in the artifact is ever
executed, imported or followed (symlinks are refused, not resolved).

``python -m gepa_bot.github.artifact write|check ...`` runs either side from a workflow step.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import stat
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from git.exc import GitCommandError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gepa_bot.config import Config, load_config
from gepa_bot.discovery import (
    FRONT_MATTER,
    IGNORED_TOP_DIRS,
    Component,
    _yaml_scalar_node,
    discover,
    glob_matches,
    placeholder_problem,
    render_files,
    symlink_in,
)
from gepa_bot.errors import UserError
from gepa_bot.github.action_context import Stage, State
from gepa_bot.github.safegit import head_sha
from gepa_bot.github.workflow import command_data, log_line
from gepa_bot.result import RESULT_NAME, RunResult, describe

MANIFEST_NAME = "manifest.json"
FILES_DIR = "files"
ARTIFACT_VERSION = 1
MAX_FILE_BYTES = 256 * 1024  # one proposed prompt file
MAX_TOTAL_BYTES = 2 * 1024 * 1024  # all proposed files together
MAX_FILES = 200
MAX_RESULT_BYTES = 64 * 1024 * 1024  # result.json (every candidate's texts and per-instance feedback)
MAX_MANIFEST_BYTES = 64 * 1024
_FIX = "rerun the optimization; an artifact that fails these checks was not written by gepa-bot's optimize job"


class Manifest(BaseModel):
    """manifest.json: what the optimize job says it optimized (checked against the publish job's own facts)."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=ARTIFACT_VERSION, le=ARTIFACT_VERSION)
    base_sha: str = Field(pattern=r"^[0-9a-f]{40}$")
    stopped: str | None = Field(default=None, max_length=4000)


@dataclass(frozen=True)
class Proposal:
    """A validated artifact: the result and files to publish, or (``stopped``) why the run stopped."""

    base_sha: str
    result: RunResult | None  # None when the run stopped
    result_path: Path | None
    files: dict[str, str]  # repo-relative path -> proposed content (== result.best_files)
    stopped: str | None = None


# --- optimize side --------------------------------------------------------------------------------------

def write_artifact(run_dir: Path, out: Path, base_sha: str) -> Path:
    """Build the artifact directory ``out`` from ``run_dir``'s result.json; returns ``out``.

    Refuses (UserError) what the publish job would refuse anyway on size or path grounds, so that the optimize
    job fails with the reason instead of the publish job.
    """
    result = RunResult.read(run_dir)
    files = result.best_files
    for path, content in files.items():
        _check_path_shape(path)
        _check_size(path, len(content.encode("utf-8")))
    _check_totals(len(files), sum(len(c.encode("utf-8")) for c in files.values()))
    _prepare(out, base_sha, None)
    (out / RESULT_NAME).write_text(result.to_json(), encoding="utf-8")
    if (out / RESULT_NAME).stat().st_size > MAX_RESULT_BYTES:
        raise UserError(f"{run_dir / RESULT_NAME}: larger than {MAX_RESULT_BYTES} bytes", fix="lower the budget")
    for path, content in files.items():
        target = out / FILES_DIR / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode("utf-8"))
    return out


def write_stopped_artifact(out: Path, base_sha: str, cause: str) -> Path:
    """An artifact for a run that errors stopped: no result, no files, only the cause (publish reports it)."""
    _prepare(out, base_sha, cause[:4000])
    return out


def _prepare(out: Path, base_sha: str, stopped: str | None) -> None:
    manifest = Manifest(version=ARTIFACT_VERSION, base_sha=base_sha, stopped=stopped)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise UserError(f"{out}: the artifact directory is not empty", fix="write the artifact to a new directory")
    (out / FILES_DIR).mkdir()
    (out / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")


# --- publish side ---------------------------------------------------------------------------------------

def read_validated(artifact: Path, config: Config, checkout: Path, expected_base_sha: str,
                   config_path: Path = Path(".gepa-bot.yml")) -> Proposal:
    """The optimize job's artifact, checked before anything of it is published.

    ``checkout`` is a fresh checkout of ``expected_base_sha`` (the base commit the plan recorded) and ``config``
    the config read from it. Checks: the manifest's base SHA and the checkout's HEAD both equal it; result.json
    is a valid RunResult; files/ holds regular UTF-8 text files only (no symlinks, devices or directories
    reached through links), exactly result.json's best_files, each a configured prompt file (the config's
    ``prompts:`` globs) that is a regular file in the checkout; each proposed file changes only its prompt texts
    and keeps their placeholders; per-file, total and count caps hold.
    """
    manifest = _read_manifest(artifact)
    if manifest.base_sha != expected_base_sha:
        raise UserError(f"artifact: base SHA {manifest.base_sha} is not the planned base {expected_base_sha}", fix=_FIX)
    head = _head_sha(checkout)
    if head != expected_base_sha:
        raise UserError(f"checkout {checkout}: HEAD is {head}, not the planned base {expected_base_sha}",
                        fix="check out the base SHA the plan recorded (actions/checkout with that ref)")
    listed = _artifact_files(artifact)
    if manifest.stopped is not None:
        if listed or _exists(artifact / RESULT_NAME):
            raise UserError("artifact: a stopped run carries a result or files", fix=_FIX)
        return Proposal(base_sha=manifest.base_sha, result=None, result_path=None, files={}, stopped=manifest.stopped)
    result_path = artifact / RESULT_NAME
    _check_regular(result_path, RESULT_NAME, MAX_RESULT_BYTES)
    result = RunResult.read(result_path)
    files = {path: _read_text(artifact / FILES_DIR / path, path) for path in listed}
    if set(files) != set(result.best_files):
        extra, missing = sorted(set(files) - set(result.best_files)), sorted(set(result.best_files) - set(files))
        raise UserError(f"artifact: files/ does not match result.json's best_files (extra: {extra or '-'}, "
                        f"missing: {missing or '-'})", fix=_FIX)
    for path, content in files.items():
        if result.best_files[path] != content:
            raise UserError(f"artifact: files/{path} differs from result.json's best_files", fix=_FIX)
    _check_totals(len(files), sum(len(c.encode("utf-8")) for c in files.values()))
    check_files(files, config, checkout, config_path)
    return Proposal(base_sha=manifest.base_sha, result=result, result_path=result_path, files=files)


def _read_manifest(artifact: Path) -> Manifest:
    if artifact.is_symlink() or not artifact.is_dir():
        raise UserError(f"artifact: {artifact} is not a directory", fix="download the optimize job's artifact there")
    path = artifact / MANIFEST_NAME
    _check_regular(path, MANIFEST_NAME, MAX_MANIFEST_BYTES)
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise UserError(f"artifact: {MANIFEST_NAME} is not a valid manifest: {describe(exc)}", fix=_FIX) from None


def _head_sha(checkout: Path) -> str:
    try:
        return head_sha(checkout)
    except (GitCommandError, OSError) as exc:
        raise UserError(f"checkout {checkout}: not a git checkout ({type(exc).__name__})",
                        fix="check out the base SHA first") from None


def _exists(path: Path) -> bool:
    return path.is_symlink() or path.exists()


def _artifact_files(artifact: Path) -> list[str]:
    """Every entry under files/ as a repo-relative POSIX path; anything but directories and regular files refused."""
    root = artifact / FILES_DIR
    if not _exists(root):
        return []
    if root.is_symlink() or not root.is_dir():
        raise UserError(f"artifact: {FILES_DIR} is not a directory", fix=_FIX)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            relative = full.relative_to(root).as_posix()
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise UserError(f"artifact: files/{relative} is a symlink; proposed files must be regular files",
                                fix=_FIX)
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise UserError(f"artifact: files/{relative} is not a regular file", fix=_FIX)
            _check_path_shape(relative)
            found.append(relative)
        if len(found) > MAX_FILES:
            break
    _check_totals(len(found), 0)
    return sorted(found)


def _check_path_shape(path: str) -> None:
    """A plain repo-relative POSIX path: no absolute path, no `..`, no backslash or control characters."""
    pure = PurePosixPath(path)
    bad = (not path or pure.is_absolute() or ".." in pure.parts or "." in path.split("/") or "\\" in path
           or any(ord(c) < 32 or ord(c) == 127 for c in path) or str(pure) != path)
    if bad:
        raise UserError(f"artifact: {path!r} is not a plain path inside the repository", fix=_FIX)
    if pure.parts[0] in IGNORED_TOP_DIRS:
        raise UserError(f"artifact: {path} is inside {pure.parts[0]}/, never a prompt file", fix=_FIX)


def _check_regular(path: Path, name: str, limit: int) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise UserError(f"artifact: no {name}", fix=_FIX) from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise UserError(f"artifact: {name} is not a regular file", fix=_FIX)
    if info.st_size > limit:
        raise UserError(f"artifact: {name} is {info.st_size} bytes, over the {limit}-byte cap", fix=_FIX)


def _check_size(path: str, size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise UserError(f"artifact: {path} is {size} bytes, over the {MAX_FILE_BYTES}-byte cap per file",
                        fix="keep prompt files under the cap")


def _check_totals(count: int, total: int) -> None:
    if count > MAX_FILES:
        raise UserError(f"artifact: more than {MAX_FILES} proposed files", fix=_FIX)
    if total > MAX_TOTAL_BYTES:
        raise UserError(f"artifact: the proposed files hold {total} bytes, over the {MAX_TOTAL_BYTES}-byte cap", fix=_FIX)


def _read_text(full: Path, path: str) -> str:
    size = full.lstat().st_size
    _check_size(path, size)
    data = full.read_bytes()
    if b"\x00" in data:
        raise UserError(f"artifact: {path} is not text (NUL bytes)", fix=_FIX)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"artifact: {path} is not UTF-8 text", fix=_FIX) from None


def check_files(files: dict[str, str], config: Config, checkout: Path, config_path: Path) -> None:
    """Each file is a configured prompt file of the base commit, and only its prompt texts changed."""
    for path in files:
        if not any(glob_matches(path, spec.path) for spec in config.prompts):
            raise UserError(f"artifact: {path} is not a configured prompt path (prompts: in {config_path})", fix=_FIX)
        if (link := symlink_in(checkout, path)) is not None:
            raise UserError(f"artifact: {path} is a symlink in the base commit ({link}); prompt files must be regular "
                            "files", fix="replace the symlink with the file itself")
        if not (checkout / path).is_file():
            raise UserError(f"artifact: {path} is not a file in the base commit", fix=_FIX)
    components: dict[str, list[Component]] = defaultdict(list)
    for component in discover(checkout, config, config_path):  # reads files only; runs nothing
        components[component.path].append(component)
    for path, content in files.items():
        group = components.get(path)
        if not group:
            raise UserError(f"artifact: {path} holds no configured prompt in the base commit", fix=_FIX)
        texts = _texts_in(group, content, path)
        for component in group:
            problem = placeholder_problem(component.text, texts[component.name])
            if problem:
                raise UserError(f"artifact: {component.name}: the proposed text {problem}", fix=_FIX)
        if render_files(group, texts)[path] != content:
            raise UserError(f"artifact: {path} changes text outside its configured prompts", fix=_FIX)


def _texts_in(group: list[Component], content: str, path: str) -> dict[str, str]:
    """The prompt texts a proposed file holds, read the way discovery reads the original."""
    first = group[0]
    if first.kind == "text":
        return {first.name: content}
    if first.kind == "frontmatter":
        match = FRONT_MATTER.match(content)
        if not match:
            raise UserError(f"artifact: {path} lost its front-matter", fix=_FIX)
        return {first.name: content[match.end():]}
    try:
        return {c.name: _yaml_scalar_node(path, content, c.key or "", "the proposal").value for c in group}
    except UserError as exc:
        raise UserError(f"artifact: {exc.message}", fix=_FIX) from None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- handover between the jobs (read from the plan state file action.py writes) ---------------------------

def plan_outputs(state_file: Path, workspace: Path, config_path: Path) -> dict[str, str]:
    """What the later jobs need from the plan (job outputs): whether anything runs, whether a writer's command was
    obeyed (a `/gepa stop` too: it joins the concurrency group to cancel a run), the base SHA, the eval cache's key
    scope and directories, and the plan state itself as one line of JSON (``plan-state``). The state travels as a
    job output, not an artifact: a job that ran evals can replace artifacts of its run, never another job's outputs.

    ``cache-scope`` is a hash of the branch: every scope has the same length, so no restore key
    ``gepa-bot-cache-<scope>-`` is a prefix of another branch's keys (``main-`` matched ``main-x``).
    TODO(action.py): write ``obeyed`` and ``base-sha`` in write_plan_outputs and drop this reading of the state.
    """
    data = json.loads(state_file.read_text(encoding="utf-8"))
    state = State.from_json(data)
    done = state.stage is Stage.DONE
    obeyed = not done or (state.plan.verb == "stop" and state.summary == "stop requested")
    config = load_config(config_path)
    values = {"work": "true" if not done else "false", "obeyed": "true" if obeyed else "false",
              "base-sha": _head_sha(workspace), "cache-scope": cache_scope(state.plan.base or ""),
              "cache-dir": config.output.cache_dir, "run-dir": config.output.run_dir,
              "plan-state": json.dumps(data, separators=(",", ":"), ensure_ascii=True)}
    broken = [name for name, value in values.items() if "\n" in value or "\r" in value]
    if broken:  # a line break would let the value write other step outputs
        raise UserError(f"{config_path}: {', '.join(broken)} contains a line break", fix="use a plain path")
    return values


def cache_scope(branch: str) -> str:
    """A fixed-length scope for cache keys of ``branch`` (no scope is a prefix of another)."""
    return hashlib.sha256(branch.encode("utf-8")).hexdigest()[:32]


def write_from_state(state_file: Path, run_dir: Path, out: Path, base_sha: str) -> Path:
    """The optimize job's artifact from the state its optimize phase left: the result, or why the run stopped."""
    state = State.from_json(json.loads(state_file.read_text(encoding="utf-8")))
    if state.stage is Stage.STOPPED:
        return write_stopped_artifact(out, base_sha, state.summary or "stopped")
    if state.stage is Stage.APPLY:  # no eval ran; the publish job applies from the PR body and ignores this
        return write_stopped_artifact(out, base_sha, "nothing optimized: `/gepa apply` runs in the publish job")
    if state.stage is not Stage.PUBLISH or not state.result_file:
        raise UserError(f"{state_file}: stage {state.stage.value!r}, nothing to hand to the publish job",
                        fix="run the optimize phase first (a `/gepa evaluate` is not supported in the two-job mode yet)")
    return write_artifact(run_dir, out, base_sha)


# --- command line (workflow steps) ------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gepa_bot.github.artifact", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write", help="optimize job: build the artifact from the run directory")
    write.add_argument("--run-dir", type=Path, required=True)
    write.add_argument("--out", type=Path, required=True)
    write.add_argument("--base-sha", required=True)
    write.add_argument("--stopped", default=None, help="the run stopped: write only this cause")
    from_state = sub.add_parser("from-state", help="optimize job: the artifact from the optimize phase's state file")
    from_state.add_argument("--state", type=Path, required=True)
    from_state.add_argument("--run-dir", type=Path, required=True)
    from_state.add_argument("--out", type=Path, required=True)
    from_state.add_argument("--base-sha", required=True)
    outputs = sub.add_parser("plan-outputs", help="append the plan's job outputs to $GITHUB_OUTPUT")
    outputs.add_argument("--state", type=Path, required=True)
    outputs.add_argument("--workspace", type=Path, default=Path("."))
    outputs.add_argument("--config", default=".gepa-bot.yml")
    check = sub.add_parser("check", help="publish job: validate the artifact against a fresh checkout")
    check.add_argument("--artifact", type=Path, required=True)
    check.add_argument("--checkout", type=Path, required=True)
    check.add_argument("--config", default=".gepa-bot.yml")
    check.add_argument("--base-sha", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "write":
            if args.stopped is not None:
                write_stopped_artifact(args.out, args.base_sha, args.stopped)
            else:
                write_artifact(args.run_dir, args.out, args.base_sha)
            print(f"gepa-bot: artifact written to {args.out}")
            return 0
        if args.command == "from-state":
            write_from_state(args.state, args.run_dir, args.out, args.base_sha)
            print(f"gepa-bot: artifact written to {args.out}")
            return 0
        if args.command == "plan-outputs":
            values = plan_outputs(args.state, args.workspace, args.workspace / args.config)
            with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as handle:
                handle.writelines(f"{name}={value}\n" for name, value in values.items())
            print("gepa-bot: " + ", ".join(f"{k}={v}" for k, v in values.items() if k in ("work", "obeyed", "base-sha")))
            return 0
        config_path = Path(args.config)
        proposal = read_validated(args.artifact, load_config(args.checkout / config_path), args.checkout, args.base_sha,
                                  config_path)
    except UserError as exc:
        print(f"::error::{command_data(f'gepa-bot: {exc}', 2000)}")
        return exc.exit_code
    what = f"stopped run ({len(proposal.stopped or '')} characters of cause)" if proposal.stopped is not None else \
        ", ".join(f"{p} (sha256 {_digest(c)[:12]})" for p, c in sorted(proposal.files.items())) or "no file changes"
    print(log_line(f"gepa-bot: artifact valid for base {proposal.base_sha}: {what}", 4000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
