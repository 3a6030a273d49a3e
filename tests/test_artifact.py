"""The optimize job's artifact and the publish job's validation of it (gepa_bot/github/artifact.py), on real git repos.

The two sides run the way the runner runs them: the artifact is written in one temp dir (the optimize runner's
workspace, where the evals ran) and validated in another (a fresh clone of the base commit on the publish runner),
in separate processes for the command-line test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_result import result_data

from gepa_bot.config import load_config
from gepa_bot.errors import UserError
from gepa_bot.github.artifact import MAX_FILE_BYTES, read_validated, write_artifact, write_stopped_artifact
from gepa_bot.result import RunResult

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """\
prompts:
  - path: prompts/*.md
  - path: agent.yaml
    keys: [system]
eval:
  command: python evals/run.py
"""
ANSWER = "Answer the question {question} in one word.\n"
AGENT = "# the agent\nsystem: Be brief about {topic}.\nmodel: small\n"
PROPOSED = {"prompts/answer.md": "Answer {question} with one exact word, lowercase.\n",
            "agent.yaml": "# the agent\nsystem: Be brief and precise about {topic}.\nmodel: small\n"}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Path, str]:
    """The repository as pushed: prompts, a YAML prompt, evals and the config, one commit."""
    repo = tmp_path / "origin"
    for path, text in {"prompts/answer.md": ANSWER, "agent.yaml": AGENT, ".gepa-bot.yml": CONFIG,
                       "evals/run.py": "print('ok')\n"}.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text, encoding="utf-8")
    git(repo.parent, "init", "--quiet", "-b", "main", str(repo))
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "base")
    return repo, git(repo, "rev-parse", "HEAD")


def clone(origin: Path, where: Path, sha: str) -> Path:
    git(origin.parent, "clone", "--quiet", "--no-checkout", str(origin), str(where))
    git(where, "checkout", "--quiet", "--detach", sha)
    return where


def run_dir_with(tmp_path: Path, best_files: dict[str, str]) -> Path:
    """A run dir whose result.json proposes ``best_files`` (the engine writes the same shape)."""
    data = result_data()
    data["components"] = [{"name": "prompts/answer.md", "path": "prompts/answer.md", "kind": "text", "key": None},
                          {"name": "agent.yaml#system", "path": "agent.yaml", "kind": "yaml", "key": "system"}]
    data["best_files"] = best_files
    run_dir = tmp_path / "optimize-runner" / "run"
    run_dir.mkdir(parents=True)
    RunResult.model_validate(data).write(run_dir)
    return run_dir


@pytest.fixture
def sides(tmp_path: Path, origin: tuple[Path, str]):
    """(artifact dir written on the optimize side, fresh checkout on the publish side, base SHA, config)."""
    repo, sha = origin
    artifact = write_artifact(run_dir_with(tmp_path, dict(PROPOSED)), tmp_path / "optimize-runner" / "artifact", sha)
    downloaded = tmp_path / "publish-runner" / "artifact"
    shutil.copytree(artifact, downloaded, symlinks=True)  # what upload + download hands over
    checkout = clone(repo, tmp_path / "publish-runner" / "checkout", sha)
    return downloaded, checkout, sha, load_config(checkout / ".gepa-bot.yml")


def refused(artifact: Path, checkout: Path, sha: str, config) -> str:
    with pytest.raises(UserError) as info:
        read_validated(artifact, config, checkout, sha)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_good_artifact_passes(sides):
    artifact, checkout, sha, config = sides
    proposal = read_validated(artifact, config, checkout, sha)
    assert proposal.files == PROPOSED and proposal.base_sha == sha and proposal.stopped is None
    assert proposal.result is not None and proposal.result.best_files == PROPOSED
    assert proposal.result_path == artifact / "result.json"
    assert sorted(p.relative_to(artifact).as_posix() for p in artifact.rglob("*") if p.is_file()) == \
        ["files/agent.yaml", "files/prompts/answer.md", "manifest.json", "result.json"]


def _set_best_files(artifact: Path, best_files: dict[str, str]) -> None:
    data = json.loads((artifact / "result.json").read_text(encoding="utf-8"))
    data["best_files"] = best_files
    (artifact / "result.json").write_text(json.dumps(data), encoding="utf-8")


def _propose(artifact: Path, path: str, content: str) -> None:
    """Tamper consistently: the file under files/ and result.json's best_files both carry ``content``."""
    data = json.loads((artifact / "result.json").read_text(encoding="utf-8"))
    _set_best_files(artifact, {**data["best_files"], path: content})
    target = artifact / "files" / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content, encoding="utf-8")


def test_an_extra_path_is_refused(sides):
    artifact, checkout, sha, config = sides
    _propose(artifact, "evals/run.py", "import os; os.system('curl evil')\n")
    assert "evals/run.py is not a configured prompt path" in refused(artifact, checkout, sha, config)


def test_a_workflow_file_is_refused(sides):
    artifact, checkout, sha, config = sides
    _propose(artifact, ".github/workflows/x.yml", "on: push\n")
    assert ".github/workflows/x.yml is not a configured prompt path" in refused(artifact, checkout, sha, config)


def test_a_file_only_under_files_is_refused(sides):
    artifact, checkout, sha, config = sides
    (artifact / "files" / "prompts" / "new.md").write_text("hi\n")
    assert "does not match result.json's best_files (extra: ['prompts/new.md']" in refused(artifact, checkout, sha,
                                                                                            config)


def test_a_symlink_in_the_artifact_is_refused(sides):
    artifact, checkout, sha, config = sides
    target = artifact / "files" / "prompts" / "answer.md"
    target.unlink()
    os.symlink("/etc/passwd", target)
    assert "files/prompts/answer.md is a symlink" in refused(artifact, checkout, sha, config)


def test_a_symlinked_directory_in_the_artifact_is_refused(sides, tmp_path):
    artifact, checkout, sha, config = sides
    elsewhere = tmp_path / "elsewhere"
    shutil.move(artifact / "files" / "prompts", elsewhere)
    os.symlink(elsewhere, artifact / "files" / "prompts")
    assert "files/prompts is a symlink" in refused(artifact, checkout, sha, config)


def test_a_prompt_that_is_a_symlink_in_the_base_commit_is_refused(tmp_path, origin):
    repo, _ = origin
    (repo / "prompts" / "answer.md").unlink()
    os.symlink("../.git/config", repo / "prompts" / "answer.md")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "link")
    sha = git(repo, "rev-parse", "HEAD")
    artifact = write_artifact(run_dir_with(tmp_path, dict(PROPOSED)), tmp_path / "artifact", sha)
    checkout = clone(repo, tmp_path / "checkout", sha)
    message = refused(artifact, checkout, sha, load_config(checkout / ".gepa-bot.yml"))
    assert "prompts/answer.md is a symlink" in message


@pytest.mark.parametrize("path", ["../outside.md", "prompts/../../outside.md", "/etc/passwd", "prompts/./answer.md",
                                  ".git/config", "prompts\\answer.md"])
def test_a_path_outside_the_repo_is_refused(tmp_path, origin, path):
    repo, sha = origin
    with pytest.raises(UserError) as info:  # the optimize side will not write it
        write_artifact(run_dir_with(tmp_path, {path: "x\n"}), tmp_path / "artifact", sha)
    assert "not a plain path" in str(info.value) or "inside .git/" in str(info.value)
    # nor does the publish side accept it when a hostile optimize job writes it anyway
    artifact = write_artifact(run_dir_with(tmp_path / "b", dict(PROPOSED)), tmp_path / "b" / "artifact", sha)
    _set_best_files(artifact, {**PROPOSED, path: "x\n"})
    checkout = clone(repo, tmp_path / "checkout", sha)
    message = refused(artifact, checkout, sha, load_config(checkout / ".gepa-bot.yml"))
    assert "missing: [" in message and path.replace("\\", "\\\\") in message


def test_a_git_directory_under_files_is_refused(sides):
    """A hook or a git config among the proposed files is refused before any glob is even consulted."""
    artifact, checkout, sha, config = sides
    (artifact / "files" / ".git").mkdir()
    (artifact / "files" / ".git" / "config").write_text("[core]\n")
    assert "inside .git/" in refused(artifact, checkout, sha, config)


def test_a_dropped_placeholder_is_refused(sides):
    artifact, checkout, sha, config = sides
    _propose(artifact, "prompts/answer.md", "Answer in one word.\n")
    assert "prompts/answer.md: the proposed text drops placeholder(s) {question}" in refused(artifact, checkout, sha,
                                                                                           config)


def test_a_dropped_placeholder_in_a_yaml_key_is_refused(sides):
    artifact, checkout, sha, config = sides
    _propose(artifact, "agent.yaml", "# the agent\nsystem: Be brief.\nmodel: small\n")
    assert "agent.yaml#system: the proposed text drops placeholder(s) {topic}" in refused(artifact, checkout, sha,
                                                                                        config)


def test_a_change_outside_the_configured_prompt_is_refused(sides):
    artifact, checkout, sha, config = sides
    _propose(artifact, "agent.yaml", "# the agent\nsystem: Be brief about {topic}.\nmodel: huge-and-costly\n")
    assert "agent.yaml changes text outside its configured prompts" in refused(artifact, checkout, sha, config)


def test_an_oversized_file_is_refused(sides, tmp_path, origin):
    artifact, checkout, sha, config = sides
    big = "{question} " + "x" * MAX_FILE_BYTES + "\n"
    _propose(artifact, "prompts/answer.md", big)
    assert f"over the {MAX_FILE_BYTES}-byte cap per file" in refused(artifact, checkout, sha, config)
    with pytest.raises(UserError, match="cap per file"):  # the optimize side says so first
        write_artifact(run_dir_with(tmp_path / "w", {"prompts/answer.md": big}), tmp_path / "w" / "artifact", sha)


def test_a_wrong_base_sha_is_refused(sides, origin, tmp_path):
    artifact, checkout, sha, config = sides
    other = "0" * 40
    assert f"base SHA {sha} is not the planned base {other}" in refused(artifact, checkout, other, config)
    # the manifest may not lie either: the publish job's own checkout is the reference
    manifest = json.loads((artifact / "manifest.json").read_text())
    (artifact / "manifest.json").write_text(json.dumps({**manifest, "base_sha": other}))
    assert f"base SHA {other} is not the planned base {sha}" in refused(artifact, checkout, sha, config)


def test_a_checkout_of_another_commit_is_refused(sides, origin):
    artifact, checkout, sha, config = sides
    repo, _ = origin
    (repo / "prompts" / "answer.md").write_text("changed {question}\n")
    git(repo, "commit", "--quiet", "-am", "later")
    git(checkout, "fetch", "--quiet", "origin")
    git(checkout, "checkout", "--quiet", "--detach", "origin/main")
    assert "HEAD is " in refused(artifact, checkout, sha, config)


@pytest.mark.parametrize("garbage", ["", "not json", "[]", '{"version": 2}', '{"version": 99}', '{"version": "2"}'])
def test_a_garbage_result_json_is_refused(sides, garbage):
    artifact, checkout, sha, config = sides
    (artifact / "result.json").write_text(garbage)
    message = refused(artifact, checkout, sha, config)
    assert "result.json" in message and ("not a" in message or "version" in message)


@pytest.mark.parametrize("manifest", ["", "{}", '{"version": 1, "base_sha": "HEAD"}',
                                      '{"version": 1, "base_sha": "%s", "extra": 1}'])
def test_a_garbage_manifest_is_refused(sides, manifest):
    artifact, checkout, sha, config = sides
    (artifact / "manifest.json").write_text(manifest.replace("%s", sha))
    assert "manifest.json is not a valid manifest" in refused(artifact, checkout, sha, config)


def test_a_differing_copy_under_files_is_refused(sides):
    artifact, checkout, sha, config = sides
    (artifact / "files" / "prompts" / "answer.md").write_text("Answer {question} in two words.\n")
    assert "files/prompts/answer.md differs from result.json's best_files" in refused(artifact, checkout, sha, config)


def test_a_non_text_file_is_refused(sides):
    artifact, checkout, sha, config = sides
    (artifact / "files" / "prompts" / "answer.md").write_bytes(b"\xff\xfe{question}")
    assert "prompts/answer.md is not UTF-8 text" in refused(artifact, checkout, sha, config)


def test_a_fifo_is_refused(sides):
    artifact, checkout, sha, config = sides
    os.mkfifo(artifact / "files" / "prompts" / "pipe.md")
    assert "files/prompts/pipe.md is not a regular file" in refused(artifact, checkout, sha, config)


def test_a_stopped_run_carries_only_its_cause(tmp_path, origin):
    repo, sha = origin
    artifact = write_stopped_artifact(tmp_path / "artifact", sha, "eval crashed: Fixes #1")
    checkout = clone(repo, tmp_path / "checkout", sha)
    config = load_config(checkout / ".gepa-bot.yml")
    proposal = read_validated(artifact, config, checkout, sha)
    assert proposal.stopped == "eval crashed: Fixes #1" and proposal.result is None and proposal.files == {}
    (artifact / "files" / "prompts").mkdir(parents=True)
    (artifact / "files" / "prompts" / "answer.md").write_text("sneaked in {question}\n")
    assert "a stopped run carries a result or files" in refused(artifact, checkout, sha, config)


def test_the_two_sides_as_separate_processes(tmp_path, origin):
    """`python -m gepa_bot.github.artifact write` on the optimize runner, `check` on the publish runner (fresh clone)."""
    repo, sha = origin
    run_dir = run_dir_with(tmp_path, dict(PROPOSED))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    optimize = tmp_path / "optimize-runner" / "artifact"
    proc = subprocess.run([sys.executable, "-m", "gepa_bot.github.artifact", "write", "--run-dir", str(run_dir), "--out",
                           str(optimize), "--base-sha", sha], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    publish = tmp_path / "publish-runner"
    shutil.copytree(optimize, publish / "artifact", symlinks=True)
    checkout = clone(repo, publish / "checkout", sha)
    check = [sys.executable, "-m", "gepa_bot.github.artifact", "check", "--artifact", str(publish / "artifact"),
             "--checkout", str(checkout), "--base-sha", sha]
    proc = subprocess.run(check, cwd=publish, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"artifact valid for base {sha}: agent.yaml (sha256 " in proc.stdout
    _propose(publish / "artifact", "evals/run.py", "print('pwned')\n")
    proc = subprocess.run(check, cwd=publish, env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout.startswith("::error::gepa-bot: artifact: evals/run.py is not a configured prompt path")
