"""Hostile evals (issue 26): one test per route an eval could take from the step that runs it to the GitHub token,
the job's later steps or gepa-bot's own output. Each test runs real gepa-bot processes against a real eval that
tries the route; the fix it checks is named in its docstring (the threat model is docs/security.md).

Covered elsewhere, not repeated here: symlinked prompt paths (test_action_jobs.py's tampered artifacts and
test_discovery.py), closing keywords in the PR body and the eval cache's branch scopes (test_hardening.py), the
token kept from the optimize step's environment (test_action.py, test_publish.py).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from chatstub import ChatStub
from processes import alive, all_gone
from test_action import NO_KWARGS, Harness, push_event
from toyrepo import EVAL_SCRIPT, host_on_fake_github, make_toy_repo

from gepa_bot.config import load_config
from gepa_bot.errors import UserError
from gepa_bot.github import action
from gepa_bot.redact import GITHUB_TOKEN_NAMES

pytest_plugins = ["tests.fakegithub.fixtures"]

OWNER, NAME = "octo", "toy"
TOKEN = "ghp_hostileRoutesToken0123456789abcdefAB"
IMPROVING = "Rationale: name the topics.\n\n````prompt\nClassify the ticket {ticket}.\nTopics: billing refund login\n````"


def gepa_bot(env: dict[str, str], *args: str, prefix: tuple[str, ...] = (),
             python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, python, "-m", "gepa_bot.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def reflection():
    stub = ChatStub(lambda messages: IMPROVING)
    yield stub
    stub.close()


def process_env(reflection: ChatStub, **extra: str) -> dict[str, str]:
    """A gepa-bot process's environment: no token unless given, the reflection model on the stub."""
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "GH_TOKEN", "GEPA_BOT_TOKEN")}
    env.update(OPENAI_API_BASE=reflection.url, OPENAI_API_KEY="sk-offline-unused-0000",
               PYTHONPATH=os.pathsep.join(sys.path), **extra)
    return env


def local_repo(root: Path, hostile: str) -> Path:
    """The toy repository (one commit) whose eval first runs ``hostile`` (Python, its own imports)."""
    repo = make_toy_repo(root)
    (repo / "evals" / "eval.py").write_text(textwrap.dedent(hostile) + EVAL_SCRIPT)
    (repo / ".gitignore").write_text(".gepa-bot/\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-qm", "initial"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


@pytest.fixture
def hosted(fake_github, tmp_path):
    """octo/toy on the fake GitHub (TOKEN may push) and a clone of it like actions/checkout's: ``work``."""
    src = make_toy_repo(tmp_path / "src")
    work = host_on_fake_github(fake_github, src, OWNER, NAME, TOKEN, tmp_path / "work")
    return fake_github, work


def make_hostile(work: Path, hostile: str) -> None:
    """The checkout's eval runs ``hostile`` first (an uncommitted change: the evals run on the working tree)."""
    (work / "evals" / "eval.py").write_text(textwrap.dedent(hostile) + EVAL_SCRIPT)


def reports(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ---- route 5: $GITHUB_ENV and friends ----------------------------------------------------------------------------

RUNNER_FILES_EVAL = '''
    import json, os
    wanted = ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY", "RUNNER_TEMP")
    seen = sorted(n for n in os.environ if n in wanted or n.startswith("ACTIONS_"))
    with open(os.environ["HOSTILE_REPORT"], "a") as report:
        report.write(json.dumps(seen) + "\\n")
    if os.environ.get("GITHUB_ENV"):
        with open(os.environ["GITHUB_ENV"], "a") as env_file:
            env_file.write("BASH_ENV=/tmp/pwned.sh\\n")
'''
@pytest.mark.slow
def test_an_eval_gets_no_runner_command_file_runner_temp_or_actions_variable(tmp_path, reflection):
    """An eval that appends `BASH_ENV=...` to $GITHUB_ENV would run code in the job's later steps: $GITHUB_ENV,
    $GITHUB_PATH, $GITHUB_OUTPUT, $GITHUB_STATE, $GITHUB_STEP_SUMMARY, RUNNER_TEMP and every ACTIONS_* variable
    are withheld from eval processes (gepa_bot.redact.withheld)."""
    repo = local_repo(tmp_path / "src", RUNNER_FILES_EVAL)
    runner = tmp_path / "runner"
    runner.mkdir()
    files = {name: runner / name.lower() for name in ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STATE",
                                                      "GITHUB_STEP_SUMMARY")}
    for path in files.values():
        path.write_text("EXISTING=1\n")
    env = process_env(reflection, HOSTILE_REPORT=str(tmp_path / "report.jsonl"), RUNNER_TEMP=str(runner),
                      ACTIONS_RUNTIME_URL="http://127.0.0.1:9/", ACTIONS_CACHE_URL="http://127.0.0.1:9/",
                      ACTIONS_RESULTS_URL="http://127.0.0.1:9/", **{k: str(v) for k, v in files.items()})

    done = gepa_bot(env, "optimize", "--repo", str(repo), "--budget", "12", "--dry-run")

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    seen = reports(tmp_path / "report.jsonl")
    assert seen and all(names == [] for names in seen), seen
    assert all(path.read_text() == "EXISTING=1\n" for path in files.values())


@pytest.mark.parametrize("name", ["GITHUB_ENV", "GITHUB_PATH", "RUNNER_TEMP", "ACTIONS_CACHE_URL", "GEPA_BOT_TOKEN"])
def test_no_config_list_forwards_a_withheld_variable_to_evals(tmp_path, name):
    config = tmp_path / ".gepa-bot.yml"
    config.write_text("prompts:\n  - path: p.md\neval:\n  command: 'true'\n"
                      f"ray:\n  forward_env: [OPENAI_API_KEY, {name}]\n")
    with pytest.raises(UserError) as refused:
        load_config(config)
    message = str(refused.value)
    assert "ray.forward_env" in message and f"{name} never goes to eval code" in message
    assert "OPENAI_API_KEY" not in message.split("never goes")[0]


# ---- route 7: credentials in .git/config -------------------------------------------------------------------------

def _extraheader(work: Path, fake) -> str:
    key = f"http.{fake.base_url}/.extraheader"
    subprocess.run(["git", "config", "--local", key, "AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46c2VjcmV0"], cwd=work,
                   check=True)
    return key


def _password_in_origin(work: Path, fake) -> str:
    url = fake.git_url(OWNER, NAME).replace("http://", f"http://x-access-token:{TOKEN}@")
    subprocess.run(["git", "remote", "set-url", "origin", url], cwd=work, check=True)
    return "remote.origin.url"


@pytest.mark.slow
@pytest.mark.parametrize("store", [_extraheader, _password_in_origin])
def test_optimize_refuses_a_checkout_whose_git_config_holds_credentials(hosted, tmp_path, reflection, store):
    """actions/checkout's default (persist-credentials: true) leaves the token in .git/config, where any eval can read
    it: `gepa-bot optimize` (without --dry-run) refuses to run a single eval there, with one line naming the file,
    the key and the fix, and never the secret."""
    fake, work = hosted
    key = store(work, fake)
    counter = tmp_path / "counter"
    counter.mkdir()

    done = gepa_bot(process_env(reflection, GITHUB_TOKEN=TOKEN, GITHUB_API_URL=fake.api_url,
                                TOY_COUNTER_DIR=str(counter)), "optimize", "--repo", str(work), "--budget", "12")

    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {work / '.git' / 'config'} holds credentials ({key})"), line
    assert "persist-credentials: false" in line and TOKEN not in line and "eC1hY2Nlc3M" not in line
    assert not any(counter.iterdir())  # no eval ran
    assert fake.pulls(OWNER, NAME) == []


def test_the_actions_optimize_phase_refuses_a_checkout_with_a_persisted_token(fake_github, tmp_path, monkeypatch,
                                                                               capsys):
    h = Harness(fake_github, tmp_path, monkeypatch)
    work = h.workspace()
    key = _extraheader(work, fake_github)
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    env = h.env("push", push_event("prompts/main.txt"), work=work, RUNNER_TEMP=str(runner_temp))
    action.run_phase("plan", env, emit=h.lines.append, **NO_KWARGS)
    capsys.readouterr()

    code = action.main({k: v for k, v in env.items() if k not in GITHUB_TOKEN_NAMES}, phase="optimize")

    assert code == 2
    [line] = capsys.readouterr().out.strip().splitlines()
    assert line.startswith(f"::error::{work / '.git' / 'config'} holds credentials ({key})") and \
        "persist-credentials: false" in line
    assert not h.eval_ran()


@pytest.mark.parametrize(("key", "value", "stored"), [
    ("http.extraheader", "Authorization: Bearer abc", True),
    ("http.https://github.com/.extraheader", "X-Other: 1", False),
    ("remote.origin.url", "https://user:pass@github.com/o/r.git", True),
    ("remote.origin.pushurl", "https://ghp_abcdef123456@github.com/o/r.git", True),
    ("remote.origin.url", "https://someone@github.com/o/r.git", False),
    ("remote.origin.url", "git@github.com:o/r.git", False),
    ("url.https://x-access-token:abc@github.com/.insteadOf", "https://github.com/", True),
])
def test_what_counts_as_stored_credentials(tmp_path, key, value, stored):
    from gepa_bot.github.safegit import stored_credentials

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "config", "--local", key, value], cwd=tmp_path, check=True)
    assert bool(stored_credentials(tmp_path)) is stored


# ---- route 4: a daemon that outlives its eval --------------------------------------------------------------------

# In list mode (once per run), the eval double-forks a daemon into a session of its own, which writes its pid and then
# watches every process's environment and command line for the token, for two minutes.
DAEMON_EVAL = '''
    import os, sys, time
    from pathlib import Path
    if os.environ.get("GEPA_BOT_MODE") == "list" and os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            Path(os.environ["DAEMON_PID"]).write_text(str(os.getpid()))
            needle = os.environ["DAEMON_NEEDLE"].encode()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                for proc in Path("/proc").glob("[0-9]*"):
                    for part in ("environ", "cmdline"):
                        try:
                            if needle in (proc / part).read_bytes():
                                with open(os.environ["DAEMON_FOUND"], "a") as found:
                                    found.write(f"{proc}/{part}\\n")
                        except OSError:
                            pass
                time.sleep(0.05)
        os._exit(0)
    if os.environ.get("GEPA_BOT_MODE") == "list":
        os.wait()
'''
@pytest.mark.slow
def test_a_daemon_an_eval_starts_does_not_outlive_the_run(tmp_path, reflection):
    """An eval's daemon (double fork, setsid) leaves the eval's process group: gepa-bot is a child subreaper while
    evals run, so the daemon stays its descendant, and it kills every such leftover when the run ends."""
    repo = local_repo(tmp_path / "src", DAEMON_EVAL)
    pid_file = tmp_path / "daemon.pid"
    env = process_env(reflection, DAEMON_PID=str(pid_file), DAEMON_NEEDLE="not-in-any-environment-0123",
                      DAEMON_FOUND=str(tmp_path / "found"))
    try:
        done = gepa_bot(env, "optimize", "--repo", str(repo), "--budget", "12", "--dry-run")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert pid_file.exists(), "the daemon never started"
        daemon = int(pid_file.read_text())
        assert all_gone([daemon], timeout=2.0), "the eval's daemon outlived the run"
    finally:
        if pid_file.exists() and alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


# ---- route 6: workflow commands written through /proc/<gepa-bot>/fd/1 --------------------------------------------

# Every ancestor's stdout and stderr, opened through /proc and written to: a workflow command in gepa-bot's own output.
INJECT = '''
    import json, os
    from pathlib import Path
    injected = []
    pid = os.getppid()
    while pid > 1:
        for fd in (1, 2):
            try:
                target = os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY | os.O_APPEND)
                os.write(target, b"::add-mask::INJECTED-BY-EVAL\\n::warning::INJECTED-BY-EVAL\\n")
                os.close(target)
                injected.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace"))
            except OSError:
                pass
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    with open(os.environ["HOSTILE_REPORT"], "a") as report:
        report.write(json.dumps(injected) + "\\n")
'''


def _unprivileged() -> tuple[str, ...]:
    """How to run a process the way an eval on a runner is: the same user as gepa-bot, no CAP_SYS_PTRACE. As root:
    uid 0 with every capability dropped (setpriv); root's own capabilities would open any process's files."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("runs as root and setpriv (util-linux) is missing: cannot run gepa-bot without root's capabilities")
    return ("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--")
@pytest.mark.slow
def test_an_eval_cannot_write_workflow_commands_into_gepa_bots_output(tmp_path, reflection):
    """An eval runs as gepa-bot's user, so it could open /proc/<gepa-bot>/fd/1 and print `::add-mask::` or
    `::warning::` lines as gepa-bot: gepa-bot is non-dumpable (prctl(PR_SET_DUMPABLE, 0)) before any eval runs.
    (Root, or sudo, still could: the job split is the boundary, docs/security.md.)"""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_DUMPABLE and /proc are Linux's")
    prefix = _unprivileged()
    report = tmp_path / "report.jsonl"
    control = subprocess.run([*prefix, sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, "
                              f"'-c', {textwrap.dedent(INJECT)!r}])"], env={**os.environ, "HOSTILE_REPORT": str(report)},
                             capture_output=True, text=True, timeout=60)
    assert "::warning::INJECTED-BY-EVAL" in control.stdout, "control: the injection works into a dumpable parent"
    report.unlink()
    repo = local_repo(tmp_path / "src", INJECT)

    done = gepa_bot(process_env(reflection, HOSTILE_REPORT=str(report)), "optimize", "--repo", str(repo),
                    "--budget", "12", "--dry-run", prefix=prefix)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "INJECTED-BY-EVAL" not in done.stdout + done.stderr
    runs = reports(report)
    assert runs and not any("gepa_bot.cli" in target for run in runs for target in run), runs


# ---- route 1: git hooks and configuration the eval leaves in the checkout ----------------------------------------

# In list mode the eval runs in the checkout itself: it writes hooks into .git/hooks and into a directory of its own,
# which it makes core.hooksPath. Each hook appends its name and its environment to HOOK_MARKER.
HOOKS_EVAL = '''
    import os, subprocess
    from pathlib import Path
    if os.environ.get("GEPA_BOT_MODE") == "list":
        marker = os.environ["HOOK_MARKER"]
        hook = f"#!/bin/sh\\necho \\"$0 $*\\" >> {marker}\\nenv >> {marker}\\n"
        for where in (Path(".git/hooks"), Path(os.environ["HOOK_DIR"])):
            where.mkdir(parents=True, exist_ok=True)
            for name in ("pre-push", "reference-transaction", "post-checkout", "post-commit", "pre-auto-gc",
                         "post-index-change"):
                (where / name).write_text(hook)
                (where / name).chmod(0o755)
        subprocess.run(["git", "config", "core.hooksPath", os.environ["HOOK_DIR"]], check=True)
'''
@pytest.mark.slow
def test_hooks_an_eval_writes_into_the_checkout_never_run_when_gepa_bot_publishes(hosted, tmp_path, reflection):
    """An eval writes .git/hooks/pre-push and reference-transaction and points core.hooksPath at its own hooks: the
    push would run them with the token at hand. Every git command of the publishing side runs with
    core.hooksPath=/dev/null, no system or global configuration, and builds and pushes the branch in a fresh bare
    repository holding the base commit, never in the checkout the evals ran in (gepa_bot.github.safegit)."""
    fake, work = hosted
    make_hostile(work, HOOKS_EVAL)
    marker = tmp_path / "hooks-ran"
    env = process_env(reflection, GITHUB_TOKEN=TOKEN, GITHUB_API_URL=fake.api_url, HOOK_MARKER=str(marker),
                      HOOK_DIR=str(tmp_path / "evil-hooks"))

    done = gepa_bot(env, "optimize", "--repo", str(work), "--budget", "30")

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (work / ".git" / "hooks" / "pre-push").exists(), "the hostile eval never ran"
    assert "billing" in fake.read_file(OWNER, NAME, "gepa-bot/main", "prompts/main.txt")  # published
    assert not marker.exists(), marker.read_text()[:2000]


# ---- route 2: the token never in an environment variable or on a command line ------------------------------------

def _needles(token: str) -> list[bytes]:
    return [token.encode(), base64.b64encode(token.encode()), base64.b64encode(f"x-access-token:{token}".encode())]


class ProcWatch:
    """Scans every process's environment and command line for the token while a run lasts (best effort: it catches
    processes that live at least a few milliseconds); gepa-bot's main process is left out (the user hands it the
    token in its environment; it moves it to memory before anything else runs)."""

    def __init__(self, needles: list[bytes]):
        self.needles, self.hits, self.done = needles, set(), threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.done.is_set():
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    cmdline = (proc / "cmdline").read_bytes()
                    seen = cmdline + (proc / "environ").read_bytes()
                except OSError:
                    continue
                if b"gepa_bot.cli" not in cmdline and any(n in seen for n in self.needles):
                    self.hits.add(cmdline.replace(b"\0", b" ").decode("utf-8", "replace")[:200])
            self.done.wait(0.01)

    def stop(self) -> set[str]:
        self.done.set()
        self.thread.join()
        return self.hits


def _git_shim(tmp_path: Path) -> tuple[Path, Path]:
    """A directory with a `git` that appends its arguments and environment to a log, then runs the real git."""
    log, shim = tmp_path / "git-calls.log", tmp_path / "shim"
    shim.mkdir()
    (shim / "git").write_text(f"#!/bin/sh\n{{ echo \"ARGV $*\"; env; }} >> {log}\nexec {shutil.which('git')} \"$@\"\n")
    (shim / "git").chmod(0o755)
    return shim, log


def _assert_no_token_reached_git(log: Path, hits: set[str], token: str) -> None:
    calls = log.read_bytes()
    assert b"ARGV push " in calls and b"ARGV ls-remote " in calls  # the publishing side's git went through the shim
    assert [n for n in _needles(token) if n in calls] == []
    assert hits == set(), hits
@pytest.mark.slow
def test_the_token_reaches_git_in_no_environment_variable_and_no_command_line(hosted, tmp_path, reflection):
    """git gets the token from a credential helper that reads a pipe only that git command inherits: no
    GIT_CONFIG_* value, `-c http.extraheader=...` or URL that /proc/<pid>/environ or cmdline would show (nor the
    token variable itself). Every git command `gepa-bot optimize` starts goes through a PATH shim that records its
    arguments and environment, and every process's environ and cmdline is watched while it runs."""
    fake, work = hosted
    shim, log = _git_shim(tmp_path)
    env = process_env(reflection, GITHUB_TOKEN=TOKEN, GITHUB_API_URL=fake.api_url)
    env["PATH"] = f"{shim}{os.pathsep}{env['PATH']}"
    watch = ProcWatch(_needles(TOKEN))

    done = gepa_bot(env, "optimize", "--repo", str(work), "--budget", "30")

    hits = watch.stop()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "billing" in fake.read_file(OWNER, NAME, "gepa-bot/main", "prompts/main.txt")  # pushed with the token
    _assert_no_token_reached_git(log, hits, TOKEN)
@pytest.mark.slow
def test_the_actions_publish_job_hands_git_the_token_only_through_the_pipe(fake_github, tmp_path, monkeypatch):
    """The same for the three-job layout's publish job (`gepa-bot action --phase publish`, the token in its
    environment from the workflow): no git process it starts, GitPython's own `git version` included, holds it."""
    from test_action import TOKEN as ACTIONS_TOKEN
    from test_action_jobs import _checkout, _job_env, _optimize_job, _plan_job, _subprocess_env

    h = Harness(fake_github, tmp_path, monkeypatch)
    plan_env, plan = _plan_job(h, "push", push_event("prompts/main.txt"))
    artifact = _optimize_job(h, plan_env, plan)
    runner = _checkout(h, plan["base-sha"], "publish-job")  # (the test's own fetch sends the token in its URL)
    shim, log = _git_shim(tmp_path)
    env = _subprocess_env(_job_env(h, plan_env, runner, plan, token=True), GEPA_BOT_ARTIFACT=str(artifact),
                          GEPA_BOT_BASE_SHA=plan["base-sha"], PATH=f"{shim}{os.pathsep}{os.environ['PATH']}")
    watch = ProcWatch(_needles(ACTIONS_TOKEN))

    done = subprocess.run([sys.executable, "-m", "gepa_bot.cli", "action", "--phase", "publish"], env=env,
                          cwd=runner.work, capture_output=True, text=True, timeout=300)

    hits = watch.stop()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert fake_github.branch_sha(f"{OWNER}/{NAME}", "gepa-bot/main") is not None
    _assert_no_token_reached_git(log, hits, ACTIONS_TOKEN)


# ---- route 3: a .pth file in gepa-bot's own site-packages --------------------------------------------------------

# In list mode the eval asks $GEPA_BOT_PYTHON for its site-packages and drops a .pth file there: every later start of
# that interpreter runs the payload, which records its command line and whether it holds a GitHub token.
PTH_EVAL = '''
    import os, subprocess
    from pathlib import Path
    if os.environ.get("GEPA_BOT_MODE") == "list":
        site = subprocess.run([os.environ["GEPA_BOT_PYTHON"], "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        marker = os.environ["PTH_MARKER"]
        payload = (f"import os, sys, json; open({marker!r}, 'a').write(json.dumps({{'argv': sys.argv, 'token': any("
                   "os.environ.get(n) for n in ('GEPA_BOT_TOKEN', 'GITHUB_TOKEN', 'INPUT_TOKEN', 'GH_TOKEN'))}) + chr(10))")
        Path(site, "zz-hostile.pth").write_text(payload + "\\n")
'''


def _venv(path: Path) -> str:
    """A job's own interpreter (action.yml installs gepa-bot into a fresh venv on each runner)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(path)], check=True)
    return str(path / "bin" / "python")
@pytest.mark.slow
def test_a_pth_file_an_eval_drops_never_runs_in_the_publish_job(fake_github, tmp_path, monkeypatch, reflection):
    """An eval drops a .pth file into the site-packages of $GEPA_BOT_PYTHON (gepa-bot's venv): the next start of that
    interpreter runs it. The publish job runs on a fresh runner with a fresh venv, so it never does; the optimize job's
    own later steps do, and hold no token. (The single-process CLI and `job: all` are the trusted-evals mode:
    docs/security.md.)"""
    from test_action import FULL, _commit_all, _git
    from test_action_jobs import _checkout, _job_env, _plan_job, _subprocess_env

    h = Harness(fake_github, tmp_path, monkeypatch)
    (h.src / "evals" / "eval.py").write_text(textwrap.dedent(PTH_EVAL) + EVAL_SCRIPT)
    _commit_all(h.src, "a hostile eval")
    _git("push", "-q", str(fake_github.repos[FULL].git_dir), "main:refs/heads/main", cwd=h.src)
    marker = tmp_path / "pth-ran.jsonl"
    plan_env, plan = _plan_job(h, "push", push_event("evals/eval.py"))
    models = {"OPENAI_API_BASE": reflection.url, "OPENAI_API_KEY": "sk-offline-unused-0000",
              "PYTHONPATH": os.pathsep.join(sys.path), "PTH_MARKER": str(marker), "GEPA_BOT_BUDGET": "20"}

    def job(name: str, python: str, *args: str, token: bool) -> subprocess.CompletedProcess:
        runner = _checkout(h, plan["base-sha"], f"{name}-job")
        env = _subprocess_env(_job_env(h, plan_env, runner, plan, token=token), **models)
        done = subprocess.run([python, "-m", "gepa_bot.cli", "action", "--phase", name], env=env, cwd=runner.work,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{name}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
        for step in args:  # the job's later steps, with the same interpreter
            subprocess.run([python, "-c", step], env=env, cwd=runner.work, check=True, timeout=60)
        return done

    job("optimize", _venv(tmp_path / "optimize-venv"), "print('the artifact step')", token=False)
    ran = reports(marker)
    assert ran and not any(r["token"] for r in ran), ran  # control: it runs in the optimize job's later steps

    job("publish", _venv(tmp_path / "publish-venv"), token=True)

    assert reports(marker) == ran  # nothing more: the publish job's interpreter never ran it
