"""A tiny repository with a real eval command, and a scripted reflection LLM that reads its feedback.

The eval scores an instance 1 when the prompt mentions the instance's keyword, else 0 with feedback
"the prompt should mention '<keyword>'". The scripted LLM adds the keywords named in the feedback it is
shown, so GEPA measurably improves the prompt with no real model involved.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

from gepa_bot.search.llm import Reply

KEYWORDS = ["billing", "refund", "login", "password", "crash", "export", "invoice", "upgrade",
            "cancel", "delete", "bug", "slow"]

# Every toy eval starts like this: load the data next to the script, answer list mode.
EVAL_PRELUDE = textwrap.dedent('''
    import json, os, sys, time
    from pathlib import Path
    data = {json.loads(l)["id"]: json.loads(l) for l in Path(__file__).with_name("data.jsonl").read_text().splitlines()}
    if os.environ.get("GEPA_BOT_MODE") == "list":
        for i, row in data.items():
            print(json.dumps({"id": i, "split": row["split"]}))
        sys.exit(0)
''')

# A hostile eval's first lines: it searches for a secret (the text of the file NEEDLE_FILE, raw and base64, also as
# git's basic-auth header) in its own environment, every ancestor's environment, command line and open files
# (pipes included), and the files under its working directory, GITHUB_WORKSPACE and RUNNER_TEMP. It appends what
# it found, a JSON list per run, to SNOOP_REPORT (read it with snoop_reports), and leaves ``found`` defined.
SNOOP = textwrap.dedent('''
    import base64, json, os
    from pathlib import Path
    secret = Path(os.environ["NEEDLE_FILE"]).read_text()
    needles = [secret, base64.b64encode(secret.encode()).decode(),
               base64.b64encode(f"x-access-token:{secret}".encode()).decode()]
    found = []
    def look(where, data):
        if any(n and n in data for n in needles):
            found.append(where)
    look("own environ", json.dumps(dict(os.environ)))
    pid = os.getpid()
    while pid > 1:
        for part in ("environ", "cmdline"):
            try:
                look(f"/proc/{pid}/{part}", Path(f"/proc/{pid}/{part}").read_bytes().decode("utf-8", "replace"))
            except OSError:
                pass
        for fd in Path(f"/proc/{pid}/fd").glob("*") if Path(f"/proc/{pid}/fd").exists() else []:
            try:
                handle = os.open(str(fd), os.O_RDONLY | os.O_NONBLOCK)
                try:
                    look(f"{fd} -> {os.readlink(fd)}", os.read(handle, 1 << 16).decode("utf-8", "replace"))
                finally:
                    os.close(handle)
            except OSError:
                pass
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    for root in {os.environ.get("GITHUB_WORKSPACE", ""), os.environ.get("RUNNER_TEMP", ""), os.getcwd()}:
        for path in Path(root).rglob("*") if root else []:
            if path.is_file() and path.stat().st_size < 2_000_000:
                look(str(path), path.read_bytes().decode("utf-8", "replace"))
    with open(os.environ["SNOOP_REPORT"], "a") as report:
        report.write(json.dumps(found) + "\\n")
''')


def snoop_reports(path: Path) -> list[list[str]]:
    """What each run of a SNOOP eval found (empty lists: nothing)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


EVAL_SCRIPT = EVAL_PRELUDE + textwrap.dedent('''
    prompt = Path("prompts/main.txt").read_text()
    system = Path("prompts/agent.yaml").read_text() if Path("prompts/agent.yaml").exists() else ""
    delay = float(os.environ.get("TOY_EVAL_SLEEP", "0"))
    for i in Path(os.environ["GEPA_BOT_IDS_FILE"]).read_text().split():
        time.sleep(delay)
        word = data[i]["keyword"]
        counter = Path(os.environ["TOY_COUNTER_DIR"]) / f"{os.getpid()}-{i}" if os.environ.get("TOY_COUNTER_DIR") else None
        if counter: counter.write_text(i)
        hit = word in prompt.lower() or word in system.lower()
        print(json.dumps({"id": i, "score": 1.0 if hit else 0.0,
                          "feedback": "correct" if hit else f"the prompt should mention '{word}'",
                          "output": word if hit else "unknown"}))
''')


def make_toy_repo(root: Path, n: int = 12, val_every: int = 2, yaml_prompt: bool = False) -> Path:
    """Write the toy repo under ``root`` and return its path."""
    repo = root / "toy"
    (repo / "prompts").mkdir(parents=True)
    (repo / "evals").mkdir()
    rows = [{"id": f"i{k:02d}", "keyword": KEYWORDS[(k // 2) % len(KEYWORDS)], "split": "val" if k % val_every else "train"}
            for k in range(n)]
    (repo / "evals" / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (repo / "evals" / "eval.py").write_text(EVAL_SCRIPT)
    (repo / "prompts" / "main.txt").write_text("Classify the ticket {ticket} into a queue.\n")
    prompts = ["  - path: prompts/main.txt"]
    if yaml_prompt:
        (repo / "prompts" / "agent.yaml").write_text(
            "# agent settings\nname: triage\nsystem: |\n  You are helpful.\n  Be brief.\nretries: 2\n")
        prompts.append("  - path: prompts/agent.yaml\n    keys: [system]")
    (repo / ".gepa-bot.yml").write_text(
        "prompts:\n" + "\n".join(prompts) + "\n"
        "eval:\n  command: python evals/eval.py\n  watch: ['evals/**']\n  timeout: 30\n"
        "budget:\n  rollouts: 60\n"
        "models:\n  task: openai/toy-task\n  reflection: openai/toy-reflection\n"
        "optimizer:\n  minibatch_size: 3\n  workers: 2\n  seed: 0\n"
        "output:\n  min_confidence: 0\n")  # 6 val instances: too few for the sign test's default confidence
    return repo


class ScriptedReflection:
    """Transport for the LLM seam: proposes the current prompt plus the keywords its feedback asks for."""

    def __init__(self, junk_every: int = 0):
        self.calls: list[str] = []
        self.junk_every = junk_every

    def __call__(self, model: str, messages: list[dict[str, str]], **params: object) -> Reply:
        content = messages[-1]["content"]
        self.calls.append(content)
        if self.junk_every and len(self.calls) % self.junk_every == 0:
            return Reply(text="Rationale: truncated reply\n````prompt\nhalf a prom", prompt_tokens=10, completion_tokens=5)
        current = content.split("````prompt\n", 1)[1].split("\n````", 1)[0]
        wanted = sorted(set(re.findall(r"should mention '(\w+)'", content)))
        new = current.rstrip("\n") + ("\nConsider: " + ", ".join(wanted) if wanted else "\nBe precise.")
        return Reply(text=f"Rationale: failures mention {', '.join(wanted) or 'nothing'}.\n\n````prompt\n{new}\n````",
                     prompt_tokens=len(content) // 4, completion_tokens=len(new) // 4)


def host_on_fake_github(fake_github, src: Path, owner: str, name: str, token: str, work: Path) -> Path:
    """Commit ``src`` as the first commit of ``owner/name`` on the fake GitHub (``token`` may use it) and clone it to
    ``work`` like actions/checkout does: ``origin`` without credentials. Returns ``work``."""
    import subprocess

    (src / ".gitignore").write_text(".gepa-bot/\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-qm", "initial"]):
        subprocess.run(["git", *args], cwd=src, check=True)
    fake_github.create_repo(owner, name, src)
    fake_github.add_token(token, owner)
    remote = fake_github.git_url(owner, name)
    subprocess.run(["git", "clone", "-q", remote.replace("http://", f"http://x-access-token:{token}@"), str(work)],
                   check=True)
    subprocess.run(["git", "remote", "set-url", "origin", remote], cwd=work, check=True)
    return work
