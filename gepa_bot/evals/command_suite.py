"""The JSONL command protocol: the repo's own eval command lists instances and scores them (gepa_bot/evalkit.py)."""

from __future__ import annotations

import json
import os
import shlex
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from gepa_bot import evalkit
from gepa_bot.config import CommandSuiteConfig
from gepa_bot.evals.suite import (
    MAX_CAPTURE_BYTES,
    EvalSuite,
    Instance,
    InstanceResult,
    SuiteContext,
    SuiteError,
    Workdir,
    describe_process,
    failure,
    hash_files,
    parse_result_lines,
    run_process,
)

DEFAULT_TIMEOUT: float = CommandSuiteConfig.model_fields["timeout"].default


class CommandSuite(EvalSuite):
    """The JSONL command protocol (see :mod:`gepa_bot.evalkit` for the contract)."""

    def __init__(self, context: SuiteContext, command: str, watch: list[str], instances_file: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT):
        super().__init__(context)
        self.command, self.timeout = command, timeout
        self.watch = watch
        self.instances_file = instances_file

    def fingerprint_parts(self) -> list[str]:
        """The command, and the content of the ``watch`` files, the instances file and every file the command
        names (``python evals/run.py`` hashes evals/run.py): a fixed eval is never served stale results."""
        named = files_named_in(self.command, self.context.repo)
        watched = [*self.watch, *named, *([self.instances_file] if self.instances_file else [])]
        return [self.command, *hash_files(self.context.repo, watched)]

    def list_instances(self) -> list[Instance]:
        if self.instances_file:
            return _instances_from_file(self.context.repo / self.instances_file)
        output = run_process(self.command, self.context.repo, {**self.context.task_env(), evalkit.ENV_MODE: "list"},
                             "", self.context.clamp(self.timeout))
        if output.timed_out or output.returncode != 0:
            raise SuiteError(f"listing instances failed: {describe_process(output, self.timeout)}")
        return _instances_from_lines(output.stdout.splitlines())

    def evaluate(self, workdir: Workdir, ids: list[str]) -> dict[str, InstanceResult]:
        ids_file = workdir.candidate_file.parent / f"ids-{os.getpid()}-{id(ids)}.txt"
        ids_file.write_text("\n".join(ids) + "\n", encoding="utf-8")
        env = self.context.evaluate_env(ids_file, workdir.candidate_file)
        timeout = self.context.clamp(self.timeout)
        output = run_process(self.command, workdir.path, env, "\n".join(ids) + "\n", timeout)
        results, problems = parse_result_lines(output.stdout, ids)
        if output.timed_out or output.returncode != 0 or len(results) < len(ids):
            context = describe_process(output, timeout)
            if output.stdout_cut:
                context = (f"the eval's stdout was cut after {MAX_CAPTURE_BYTES:,} bytes ({output.stdout_cut:,} more "
                           "bytes not read), so this id's result line was lost: print logs to stderr\n" + context)
            if problems:
                context += "\n--- protocol problems ---\n" + "\n".join(problems[:10])
            for missing in (i for i in ids if i not in results):
                results[missing] = failure(missing, f"no result line for this id.\n{context}")
        return results


def files_named_in(command: str, repo: Path) -> list[str]:
    """Repo-relative paths of the existing files a shell command names (``python evals/run.py --x`` ->
    ``evals/run.py``): the eval's own code counts for the cache even when ``watch`` leaves it out."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    named = []
    for word in words:
        candidate = word.split("=", 1)[-1]  # --data=evals/cases.jsonl
        if not candidate or candidate.startswith("-") or os.path.isabs(candidate) or ".." in Path(candidate).parts:
            continue
        if (repo / candidate).is_file():
            named.append(Path(candidate).as_posix())
    return named


def _instances_from_file(path: Path) -> list[Instance]:
    if not path.is_file():
        raise SuiteError(f"instances file {path} does not exist: fix eval.instances in the config")
    return _instances_from_lines(path.read_text(encoding="utf-8").splitlines())


def _instances_from_lines(lines: Iterable[str]) -> list[Instance]:
    instances: list[Instance] = []
    for line in (raw.strip() for raw in lines):
        if not line:
            continue
        if line.startswith("{"):
            try:
                data = json.loads(line)
                instances.append(Instance(id=str(data["id"]), split=data.get("split")))
            except (ValueError, KeyError) as exc:
                raise SuiteError(f"instance line is not JSON with an 'id': {line[:200]} ({exc})") from exc
        else:
            instances.append(Instance(id=line))
    noisy = [i.id for i in instances if not i.id or any(ch.isspace() for ch in i.id)]
    if noisy:  # ids travel one per line and are split on white space: these are log lines, not ids
        shown = "; ".join(repr(n[:120]) for n in noisy[:5])
        raise SuiteError(f"{len(noisy)} listed line(s) look like log output, not instance ids (ids may not contain "
                         f"spaces): {shown}. Print log messages to stderr, or list ids as JSON lines "
                         '{"id": ..., "split": ...}')
    duplicates = sorted(i for i, count in Counter(i.id for i in instances).items() if count > 1)
    if duplicates:
        raise SuiteError(f"instance ids must be unique; duplicated: {', '.join(duplicates[:10])}")
    return instances
