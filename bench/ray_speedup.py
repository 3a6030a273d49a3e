#!/usr/bin/env python3
"""Speedup of ``eval.executor: ray`` with a sleep-bound eval (1 s per instance) on a local Ray cluster.

    python bench/ray_speedup.py [--instances 64] [--levels 1,4,16,64] [--out bench/results]

Starts `ray start --head` on 127.0.0.1 (64 logical CPUs: the eval sleeps, so 2 real cores host 64 tasks),
scores one batch of ``--instances`` ids at each level of concurrent Ray tasks (optimizer.workers) through
gepa-bot's RayExecutor, and compares with the ideal (instances / level seconds). Each level runs a warm-up
batch first (Ray starts its worker processes on demand) and then the measured one. The per-batch scheduling
overhead is the wall time of a batch of instant instances at the same level. Writes ray.md and ray.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gepa_bot.evalsuite import SuiteContext  # noqa: E402
from gepa_bot.executor import RayExecutor  # noqa: E402
from gepa_bot.suites.command_suite import CommandSuite  # noqa: E402

# The eval: sleeps BENCH_SLEEP seconds per instance (a shell loop: no interpreter start-up per process to speak of).
EVAL = """#!/bin/sh
while read -r id; do
  [ -n "$id" ] || continue
  sleep "${BENCH_SLEEP:-1}"
  printf '{"id": "%s", "score": 1.0, "feedback": "ok"}\\n' "$id"
done < "$GEPA_BOT_IDS_FILE"
"""
RAY_ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch_seconds(executor: RayExecutor, suite: CommandSuite, ids: list[str]) -> float:
    started = time.perf_counter()
    results = executor.evaluate(suite, {}, {}, ids)
    elapsed = time.perf_counter() - started
    bad = [r for r in results.values() if r.failed or r.score != 1.0]
    if bad:
        raise SystemExit(f"a rollout failed: {bad[0].feedback[:500]}")
    return elapsed


def measure(repo: Path, address: str, instances: int, level: int, sleep: float) -> dict:
    ids = [f"i{k:03d}" for k in range(instances)]
    suite = CommandSuite(SuiteContext(repo=repo), "sh eval.sh", [], timeout=600)
    executor = RayExecutor(repo, workers=level, address=address, timeout=600, num_cpus=1,
                           forward_env=["BENCH_SLEEP"])
    try:
        os.environ["BENCH_SLEEP"] = "0"
        batch_seconds(executor, suite, ids)  # warm-up: Ray starts `level` worker processes
        overhead = batch_seconds(executor, suite, ids)
        os.environ["BENCH_SLEEP"] = str(sleep)
        cold = batch_seconds(executor, suite, ids)
        warm = batch_seconds(executor, suite, ids)
    finally:
        executor.close()
    ideal = sleep * -(-instances // level)
    return {"instances": instances, "level": level, "sleep_s": sleep, "ideal_s": ideal, "first_s": round(cold, 3),
            "wall_s": round(warm, 3), "efficiency": round(ideal / warm, 3),
            "overhead_per_batch_s": round(overhead, 3)}


def write_markdown(rows: list[dict], out: Path, command: str, wall: float) -> None:
    base = next((r["wall_s"] for r in rows if r["level"] == 1), None)
    lines = ["# Ray executor: speedup with a sleep-bound eval", "",
             f"Command: `{command}`; machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
             f"Python {platform.python_version()}, Ray {__import__('ray').__version__}; total {wall:.0f} s; a local "
             "cluster (`ray start --head`, 64 logical CPUs) on 127.0.0.1.", "",
             "| concurrent Ray tasks | instances | ideal (s) | measured (s) | speedup vs 1 | efficiency (ideal / measured) "
             "| scheduling overhead per batch, instant eval (s) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        speedup = f"{base / r['wall_s']:.1f}x" if base else "-"
        lines.append(f"| {r['level']} | {r['instances']} | {r['ideal_s']:.1f} | {r['wall_s']:.2f} | {speedup} | "
                     f"{r['efficiency']:.2f} | {r['overhead_per_batch_s']:.2f} |")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=64)
    parser.add_argument("--levels", default="1,4,16,64")
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="ray-bench-", dir="/tmp"))
    repo = work / "repo"
    repo.mkdir()
    (repo / "eval.sh").write_text(EVAL)
    port = free_port()
    subprocess.run(["ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=64",
                    "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={work / 'ray'}"],
                   env=RAY_ENV, check=True, capture_output=True, timeout=180)
    rows = []
    try:
        for level in (int(x) for x in args.levels.split(",")):
            row = measure(repo, f"127.0.0.1:{port}", args.instances, level, args.sleep)
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        subprocess.run(["ray", "stop", "--force"], env=RAY_ENV, capture_output=True, timeout=120)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "ray.jsonl").open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    command = "python bench/ray_speedup.py " + " ".join(sys.argv[1:])
    write_markdown(rows, args.out / "ray.md", command.strip(), time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
