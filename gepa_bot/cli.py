"""`gepa-bot` command line: `optimize` runs GEPA on a repo and writes the PR body (--dry-run) or opens the PR;
`publish` opens the PR for a finished run."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gepa_bot.config import DEFAULT_CONFIG_NAME, LOCAL_MODEL, Config, load_config, with_overrides
from gepa_bot.containment import become_undumpable
from gepa_bot.errors import UserError
from gepa_bot.owned import OWNED_MARKER, is_owned
from gepa_bot.redact import GITHUB_TOKEN_NAMES
from gepa_bot.report.rejections import rejection_reasons
from gepa_bot.report.render import PR_BODY_NAME, Report, original_files, render, suite_warnings
from gepa_bot.result import RESULT_NAME, RunResult
from gepa_bot.runlog import read_records
from gepa_bot.search.adapter import SearchStatus
from gepa_bot.search.budget import Budget
from gepa_bot.search.engine import optimize
from gepa_bot.search.progress import progress_lines, repeats_note, status_line
from gepa_bot.search.session import RunSettings
from gepa_bot.text import one_line
from gepa_bot.verdict import verdict

err_console = Console(stderr=True)


def resolve_paths(repo: Path, config_path: Path, run_dir: Path | None, config: Config) -> RunSettings:
    settings = RunSettings(repo=repo, config=config, config_path=config_path,
                           run_dir=(run_dir or repo / config.output.run_dir).resolve(),
                           cache_dir=(repo / config.output.cache_dir).resolve())
    for name, path in (("--run-dir" if run_dir else "output.run_dir", settings.run_dir),
                       ("output.cache_dir", settings.cache_dir)):
        if repo.resolve().is_relative_to(path):
            raise UserError(f"{name} {path}: is the repository {repo} or a directory that holds it",
                            fix="use a directory of its own, e.g. .gepa-bot/run (the default)")
    return settings


def delete_run_dir(run_dir: Path) -> None:
    """`--fresh`: delete the run directory, but only one that carries gepa-bot's marker (a run dir it made)."""
    if not run_dir.exists():
        return
    if not is_owned(run_dir):
        raise UserError(f"--fresh: {run_dir} has no {OWNED_MARKER} file, so gepa-bot did not make it and will not "
                        "delete it", fix="point --run-dir / output.run_dir at a directory of gepa-bot's, or delete "
                        "this one yourself if you are sure")
    shutil.rmtree(run_dir)


def interrupt_on_sigterm() -> None:
    """CI cancellation sends SIGTERM: treat it like Ctrl-C so the run log is closed and servers stop. SIGINT too,
    even when this process was started with SIGINT ignored (`cmd &` in a script, nohup): that is inherited, and
    `kill -INT` would then never stop the run."""
    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


@click.group()
@click.version_option(package_name="gepa-bot")
def main() -> None:
    """Optimize the prompts in a repository with GEPA and propose the result as a pull request."""
    interrupt_on_sigterm()


@main.command("optimize")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True,
              help="Repository to optimize.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"Config file (default: <repo>/{DEFAULT_CONFIG_NAME}).")
@click.option("--budget", type=click.IntRange(min=1), help="Hard cap on rollouts (eval calls).")
@click.option("--model", help="Task model (litellm string; local/qwen2.5-coder-1.5b = embedded).")
@click.option("--reflection-model", help="Reflection model (litellm string).")
@click.option("--workers", type=click.IntRange(1, 64), help="Parallel eval processes.")
@click.option("--seed", type=int, help="Random seed (same seed + cache = free rerun).")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (run log, result.json). An existing one is always resumed: its LLM replies are "
                   "replayed and its rollouts reused (use --fresh to start over).")
@click.option("--fresh", is_flag=True, help="Start over: delete the run directory first (the eval cache is kept).")
@click.option("--dry-run", is_flag=True, help="Write the PR body only; without it the PR is opened or updated "
                                              "afterwards (token from GITHUB_TOKEN; see `gepa-bot publish`).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Where to write the PR body.")
def optimize_command(repo: Path, config_file: Path | None, dry_run: bool, fresh: bool, out: Path | None,
                     run_dir: Path | None, **flags: Any) -> None:
    """Run GEPA on the repo's prompts using its own eval suite; write result.json and the PR body, then
    (without --dry-run) push the best prompts to the bot's branch and open or update ONE pull request."""
    try:
        token = "" if dry_run else _token_out_of_the_environment(repo)
        settings = load_settings(repo, config_file, run_dir, flags)
        result, _report = run_optimize(settings, out, fresh=fresh)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted: every finished rollout and LLM reply is in the run log; run the same command "
                   "again (same --run-dir) to resume without paying for them twice", err=True)
        sys.exit(130)
    budget = result.budget
    best, base = result.best, result.candidates[0]
    click.echo(f"baseline {base.val_mean:.3f} -> best {best.val_mean:.3f} (candidate #{best.index}); "
               f"rollouts {budget.rollouts_used}/{budget.rollouts_limit} ({budget.rollouts_executed} executed, "
               f"{budget.cache_hits} cached{repeats_note(budget.repeats_in_batch)}); "
               f"{budget.wall_time_s:.1f}s")
    click.echo(f"verdict: {verdict(result).reason}")
    for warning in suite_warnings(result):
        click.echo(f"warning: {warning}", err=True)
    top = next(iter(rejection_reasons(result.rejected_proposals)), None)
    click.echo(f"proposals: {len(result.candidates) - 1} kept by GEPA, {len(result.rejected_proposals)} replies "
               "rejected before any rollout" + (f" (most often: {top.count}x {one_line(top.reason, 300)}"
                                               + (f"; {top.hint}" if top.hint else "") + ")" if top else ""))
    if result.search_errors:
        for error in result.search_errors:
            click.echo(f"error: {error.where}: {error.type}: {error.message}", err=True)
        click.echo(f"error: {len(result.search_errors)} internal error(s) during the search (details in "
                   "gepa.log in the run directory); the results above may be incomplete", err=True)
        sys.exit(1)
    if not dry_run:
        _publish(settings, token, result=result)


def _token_out_of_the_environment(repo: Path | None = None) -> str:
    """The token (this process's environment then holds none); with ``repo``, also checks that its GitHub
    repository can be told from `origin` and that its .git/config holds no credentials an eval could read: all
    fail before a single rollout is spent."""
    from gepa_bot.github.tokenpipe import take_token

    token = take_token()  # first: nothing else has started a process yet
    become_undumpable()  # its memory holds the token now: no process of ours without CAP_SYS_PTRACE may read it
    from gepa_bot.github.publish import github_remote
    from gepa_bot.github.safegit import refuse_stored_credentials

    if repo is not None:
        github_remote(repo.resolve())
        refuse_stored_credentials(repo.resolve())
    return token


def _publish(settings: RunSettings, token: str, github_repo: str | None = None, base: str | None = None,
             result: RunResult | None = None) -> None:
    """Publish the run in ``settings.run_dir`` (``result``: its result, when the caller holds it already)."""
    from gepa_bot.github.publish import Operation, proposal_report, publish, target_from_checkout

    try:
        result = result or RunResult.read(settings.run_dir)
        target = target_from_checkout(settings.repo, settings.config, token, github_repo=github_repo, base=base,
                                      emit=click.echo)
        outcome = publish(result, proposal_report(result, target.workspace, target.base), target)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if outcome.operation in (Operation.UNCHANGED, Operation.LEFT_ALONE):
        click.echo("gepa-bot: no pull request opened (nothing beats the current prompts, or a human declined "
                   "this same proposal)")


@main.command("publish")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True,
              help="The repository's checkout (its `origin` names the GitHub repository).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"Config file (default: <repo>/{DEFAULT_CONFIG_NAME}).")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The finished run (result.json) to publish (default: output.run_dir of the config).")
@click.option("--github-repo", help="OWNER/NAME (default: from the `origin` remote).")
@click.option("--base", help="Branch to propose to (default: output.base, else the checked-out branch).")
def publish_command(repo: Path, config_file: Path | None, run_dir: Path | None, github_repo: str | None,
                    base: str | None) -> None:
    """Push a finished run's best prompts to the bot's branch and open, update or close ONE pull request.

    Runs no eval. The token comes from GITHUB_TOKEN (or GH_TOKEN); the API URL from GITHUB_API_URL, else
    api.github.com (or <server>/api/v3 for GitHub Enterprise Server).
    """
    try:
        token = _token_out_of_the_environment()
        settings = load_settings(repo, config_file, run_dir, {})
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    _publish(settings, token, github_repo, base)


@main.command("check")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"Config file (default: <repo>/{DEFAULT_CONFIG_NAME}).")
@click.option("--model", help="Task model (litellm string, or local/... for an embedded one).")
@click.option("--reflection-model", help="Reflection model (litellm string).")
def check_command(repo: Path, config_file: Path | None, **flags: Any) -> None:
    """Check that a run can work: config, prompts, eval suite (a few val instances scored), models."""
    from gepa_bot.doctor import run_checks

    try:
        findings = run_checks(load_settings(repo, config_file, None, flags), lambda f: click.echo(f.line()))
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    problems = sum(1 for f in findings if f.level == "problem")
    click.echo(f"{problems} problem(s) found" if problems else "ready: `gepa-bot optimize --dry-run` can run "
               "(without --dry-run it also opens the pull request, with GITHUB_TOKEN set)")
    sys.exit(1 if problems else 0)


@main.command("init")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True)
@click.option("--prompt", "prompts", multiple=True, help="A prompt file (repeatable); default: detected.")
def init_command(repo: Path, prompts: tuple[str, ...]) -> None:
    """Scaffold .gepa-bot.yml, a starter eval and its cases, and ignore .gepa-bot/ in git."""
    from gepa_bot.init import init_repo

    try:
        written = init_repo(repo.resolve(), list(prompts) or None)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    for path in written:
        click.echo(f"wrote {path}")
    click.echo("next: put real cases in evals/gepa_cases.jsonl, adjust score() in evals/gepa_eval.py, try it with "
               "`GEPA_BOT_MODE=list python evals/gepa_eval.py`, then `gepa-bot check` and `gepa-bot optimize --dry-run`")


@main.group("model")
def model_group() -> None:
    """The embedded local models."""


@model_group.command("serve")
@click.option("--model", "name", default=LOCAL_MODEL, show_default=True,
              help="Embedded model to serve (local/qwen2.5-coder-1.5b or local/smollm2-135m).")
def model_serve(name: str) -> None:
    """Serve an embedded model on 127.0.0.1 and print the environment lines that point an eval at it.

    Paste the lines into another shell, then run your eval by hand (GEPA_BOT_MODE=evaluate python evals/...).
    Stops on Ctrl-C.
    """
    from gepa_bot.models.localmodel import LocalModelUnavailable, local_model
    from gepa_bot.models.modelserver import LocalModelServer

    # Ctrl-C stops the server even when this process was started with SIGINT ignored (as `cmd &` in a script
    # or nohup do): an ignored SIGINT is inherited, and Python then never raises KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    spec = local_model(name)
    if spec is None:
        click.echo(f"error: --model {name}: not an embedded model. Fix: use local/qwen2.5-coder-1.5b or "
                   "local/smollm2-135m", err=True)
        sys.exit(2)
    try:
        server = LocalModelServer(spec).start()
    except LocalModelUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    try:
        click.echo(f"# {spec.name} is served at {server.api_base} (log: {server.log_path}); paste these lines:")
        for key, value in server.eval_env().items():
            click.echo(f"export {key}={value}")
        sys.stdout.flush()
        while server.running:
            time.sleep(1)
        click.echo("error: the model server stopped", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@main.command("action")
@click.option("--phase", type=click.Choice(["plan", "optimize", "publish"]),
              help="Run one phase (action.yml runs all three as separate steps, so that the step that runs evals "
                   "never holds the GitHub token). Default: all three in this process.")
def action_command(phase: str | None) -> None:
    """GitHub Actions entry point: act on the current event (see action.yml)."""
    env = dict(os.environ)
    for name in GITHUB_TOKEN_NAMES:  # the token stays in `env` (memory): no process this one starts inherits it
        os.environ.pop(name, None)
    become_undumpable()  # nor may one read it from /proc/<pid>/environ or mem (without CAP_SYS_PTRACE)
    from gepa_bot.github import action  # (GitPython runs `git version` when imported)

    sys.exit(action.main(env, phase=phase))


def load_settings(repo: Path, config_file: Path | None, run_dir: Path | None, flags: dict[str, Any]) -> RunSettings:
    """The run's settings from --repo, --config, --run-dir and the command-line overrides."""
    if not repo.is_dir():
        raise UserError(f"--repo {repo}: not a directory", fix="pass the path of the repository to optimize")
    repo = repo.resolve()
    config_path = (config_file or repo / DEFAULT_CONFIG_NAME).resolve()
    return resolve_paths(repo, config_path, run_dir, with_overrides(load_config(config_path), **flags))


def run_optimize(settings: RunSettings, out: Path | None, fresh: bool = False) -> tuple[RunResult, Report]:
    """Run the engine with a progress bar, write the PR body and the full report; returns (result, report)."""
    config = settings.config
    if fresh:
        delete_run_dir(settings.run_dir)
    if note := resume_note(settings.run_dir, config.budget.rollouts):
        click.echo(note, err=True)
    with _progress(config.budget.rollouts) as on_progress:
        settings.on_progress = on_progress
        result = optimize(settings)
    report = render(result, original_files(result, settings.repo))
    out = out or settings.run_dir / PR_BODY_NAME
    report.write(settings.run_dir, out)  # the full report next to result.json, not next to --out
    click.echo(f"PR body written to {out} ({len(report.body)} chars); result in {settings.run_dir / RESULT_NAME}")
    return result, report


def resume_note(run_dir: Path, rollouts: int) -> str | None:
    """What a user should know when this run resumes an earlier one (None for a new run dir)."""
    starts = list(read_records(run_dir, "start"))
    if not starts:
        return None
    note = (f"resuming the run in {run_dir}: its logged rollouts and LLM replies are reused, not paid again "
            "(--fresh starts over)")
    previous = (starts[-1].get("budget") or {}).get("rollouts")
    if previous is not None and previous != rollouts:
        note += f"; the rollout budget changed from {previous} to {rollouts}: rollouts replayed from the log count too"
    return note


class _progress:
    """A rich progress bar over rollouts with the search's status (plain lines when stderr is not a terminal)."""

    def __init__(self, total: int):
        self.total, self.started = total, time.monotonic()
        self.plain = progress_lines(total, lambda line: click.echo(line, err=True))
        self.progress = Progress(TextColumn("[bold]rollouts"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[status]}"),
                                 console=err_console, transient=False, disable=not err_console.is_terminal)
        self.task = self.progress.add_task("rollouts", total=total, status="")

    def __enter__(self) -> Callable[[Budget, SearchStatus], None]:
        self.progress.start()
        return self.update

    def update(self, budget: Budget, status: SearchStatus) -> None:
        line = status_line(budget, status, self.total, time.monotonic() - self.started)
        self.progress.update(self.task, completed=budget.rollouts, status=line.split("; ", 1)[-1])
        if not err_console.is_terminal:  # CI logs: one plain line per 10%
            self.plain(budget, status)

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


if __name__ == "__main__":
    main()
