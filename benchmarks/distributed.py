"""Distributed training speed: ``torchrun`` with N processes against one process, training steps per second.

    python -m benchmarks distributed --dataset mnist [--data-dir DIR] [--processes 2] [--threads 1]
        [--steps 50] [--batch-size 64] [--repeats 3] [--out results/distributed]

Each repeat runs the training CLI twice on the same ``--steps`` global batches of ``--batch-size`` images
(``--max-train steps * batch_size``, one epoch, the CLI's default model): once as one process and once
under ``torchrun --nproc-per-node N`` (DistributedDataParallel, gloo), each process with ``--threads``
intra-op threads, in alternating order. Steps per second come from the epoch's wall time in
``result.json`` (start-up, data loading and process-group set-up excluded); the speed-up of a repeat is the
ratio of its two runs, and the table reports the median over repeats. The load average before each run is
recorded: on a shared machine other jobs take cores, and a run with N processes suffers more from that.
Writes ``distributed.json``, ``distributed.csv`` and ``distributed.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from shapnet.cli import add_dataset_arguments

from ._common import figure, format_table, machine_info, prepare_out, write_csv, write_json

__all__ = ["main", "run_once"]


def run_once(processes: int, train_args: list[str], out: Path) -> dict[str, Any]:
    """One training run of the CLI (``processes > 1``: under torchrun); its result.json plus the load."""
    if processes > 1:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(processes),
        ]
        command = [*launcher, "-m", "shapnet.training"]
    else:
        command = [sys.executable, "-m", "shapnet.training"]
    load = os.getloadavg()[0]
    subprocess.run([*command, *train_args, "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    result = json.loads((out / "result.json").read_text())
    steps = sum(1 for _ in range(0, result["n_train"], int(train_args[train_args.index("--batch-size") + 1])))
    return {
        "processes": processes,
        "steps": steps,
        "seconds": result["train_seconds"],
        "steps_per_second": steps / result["train_seconds"],
        "load_before": load,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks distributed", description=__doc__.split("\n")[0])
    add_dataset_arguments(p, default="mnist")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=64, help="global batch (over all processes)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="results/distributed")
    args = p.parse_args(argv)
    out = prepare_out(args.out)
    train_args = [
        "--dataset",
        args.dataset,
        "--max-train",
        str(args.steps * args.batch_size),
        "--epochs",
        "1",
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--no-resume",
        "--no-test",
        "--progress",
        "none",
    ]
    train_args += ["--data-dir", args.data_dir] if args.data_dir else []
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            order = (1, args.processes) if repeat % 2 == 0 else (args.processes, 1)  # interleaved
            for processes in order:
                row = run_once(processes, train_args, Path(scratch) / f"r{repeat}-p{processes}")
                runs.append({"repeat": repeat, **row})
                print(json.dumps(runs[-1]), flush=True)
    ratios = []
    for repeat in range(args.repeats):
        one, many = (
            next(r for r in runs if r["repeat"] == repeat and r["processes"] == n)
            for n in (1, args.processes)
        )
        ratios.append(many["steps_per_second"] / one["steps_per_second"])
    summary = [
        {
            "processes": n,
            "threads_each": args.threads,
            "steps_per_second_median": statistics.median(
                r["steps_per_second"] for r in runs if r["processes"] == n
            ),
            "speedup_median": 1.0 if n == 1 else statistics.median(ratios),
        }
        for n in (1, args.processes)
    ]
    print(format_table(summary))
    print(f"speed-up per repeat: {', '.join(f'{r:.2f}' for r in ratios)}")
    write_csv(out / "distributed.csv", runs)
    write_json(
        out / "distributed.json",
        {
            "settings": vars(args),
            "machine": machine_info(),
            "runs": runs,
            "speedups": ratios,
            "summary": summary,
        },
    )
    with figure(out / "distributed.png", figsize=(6, 4)) as (_, ax):
        for n in (1, args.processes):
            mine = [r for r in runs if r["processes"] == n]
            ax.plot(
                [r["repeat"] for r in mine],
                [r["steps_per_second"] for r in mine],
                marker="o",
                label=f"{n} process{'es' if n > 1 else ''} x {args.threads} thread",
            )
        ax.set_xlabel("repeat")
        ax.set_ylabel("training steps per second (higher is better)")
        ax.set_title(f"{args.dataset}: DDP speed-up, median {statistics.median(ratios):.2f}x")
        ax.legend()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
