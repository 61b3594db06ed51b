"""Explain at scale: ``python -m shapnet.explain`` throughput with 1 and 2 Dask workers, and worker memory.

    python -m benchmarks explain_scale [--rows 1000000,2000000] [--workers 1,2] [--repeats 3]
        [--data-dir /tmp/shapnet-explain-scale] [--out results/explain_scale]

Data: a generated Parquet file per row count (``--data-dir``, default under the system temp folder; never
in the repository): an ``id`` column and ``--features`` (64) float32 columns ``f00..f63`` drawn from
normal distributions with per-column means and scales, in row groups of 65,536 rows (16 MiB).
Model: a seeded, untrained ``DeepShapNet(64, 2)`` (the default butterfly: 6 layers, 16 channels,
hidden 64), saved with an :class:`shapnet.InputSpec` holding those means and scales, so every row goes
through the same standardisation a trained model's table would.

Each cell runs :func:`shapnet_adapters.dask.explain_files` (what the command runs) on a fresh
``LocalCluster`` of ``w`` single-threaded worker processes and records rows per second (from submitting
the graph to the last part written: cluster start-up excluded and reported apart), the workers' CPU
seconds, and each worker's peak resident memory. Cells are interleaved (repeat r runs every
(rows, workers) pair before repeat r + 1) so that load from other processes falls on all of them alike;
the summary gives medians and the ratio 2 workers / 1 worker. Finished cells are kept in ``cells.csv``
(a killed run resumes); the explained output of a cell is deleted after it is measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

import shapnet
from shapnet import DeepShapNet, InputSpec

from ._common import ResultFile, comma_separated, figure, format_table, machine_info, prepare_out, write_json

__all__ = ["generate", "main"]

ROW_GROUP = 65_536
CELL_COLUMNS = {
    "rows": int, "workers": int, "repeat": int, "seconds": float, "rows_per_second": float,
    "worker_cpu_seconds": float, "cluster_start_seconds": float, "partitions": int,
    "peak_rss_mb_max": float, "peak_rss_mb_per_worker": str,
}


def _spec(n_features: int, seed: int) -> tuple[InputSpec, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mean, scale = rng.normal(0, 5, n_features), rng.uniform(0.5, 4.0, n_features)
    return InputSpec([f"f{i:02d}" for i in range(n_features)], mean, scale, ["no", "yes"]), mean, scale


def generate(path: Path, rows: int, n_features: int, seed: int = 0) -> Path:
    """Write ``rows`` seeded rows to ``path`` (Parquet, row groups of 65,536) unless it is already there."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists():
        return path
    spec, mean, scale = _spec(n_features, seed)
    rng = np.random.default_rng(seed + 1)
    tmp = path.with_name(path.name + ".tmp")
    writer = None
    try:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            x = (rng.standard_normal((n, n_features)) * scale + mean).astype(np.float32)
            table = pa.table({"id": np.arange(start, start + n, dtype=np.int64),
                              **{name: x[:, j] for j, name in enumerate(spec.feature_names)}})
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table, row_group_size=ROW_GROUP)
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, path)
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks explain_scale",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=comma_separated(int, minimum=1), default=[1_000_000, 2_000_000])
    p.add_argument("--workers", type=comma_separated(int, minimum=1), default=[1, 2])
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--blocksize", default="32MiB")
    p.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "shapnet-explain-scale"),
                   help="where the generated Parquet files and explained outputs go (not the repository)")
    p.add_argument("--out", default="results/explain_scale")
    return p


def main(argv: list[str] | None = None) -> int:
    from shapnet_adapters.dask import explain_files

    args = _parser().parse_args(argv)
    out = prepare_out(args.out)
    data = prepare_out(args.data_dir)
    spec, _, _ = _spec(args.features, 0)
    torch.manual_seed(0)
    model = DeepShapNet(args.features, 2).eval()
    model_path = data / "model.pt"
    shapnet.save(model, model_path, inputs=spec)
    inputs = {rows: generate(data / f"rows-{rows}-f{args.features}.parquet", rows, args.features)
              for rows in args.rows}
    cells = ResultFile(out / "cells.csv", CELL_COLUMNS, key=("rows", "workers", "repeat"),
                       what="explain cells")
    done = {cells.key_of(r) for r in cells.read()}
    for repeat in range(args.repeats):
        for rows in args.rows:
            for workers in args.workers:
                if (rows, workers, repeat) in done:
                    continue
                target = data / f"explained-{rows}-w{workers}"
                shutil.rmtree(target, ignore_errors=True)
                r = explain_files(model_path, inputs[rows], target, key_columns=["id"], n_workers=workers,
                                  batch_size=args.batch_size, blocksize=args.blocksize, progress=False,
                                  log=lambda _: None)
                shutil.rmtree(target)
                row = cells.append({
                    "rows": rows, "workers": workers, "repeat": repeat, "seconds": r["seconds"],
                    "rows_per_second": r["rows_per_second"], "worker_cpu_seconds": r["worker_cpu_seconds"],
                    "cluster_start_seconds": r["cluster_start_seconds"], "partitions": r["partitions"],
                    "peak_rss_mb_max": max(r["peak_rss_mb_per_worker"]),
                    "peak_rss_mb_per_worker": " ".join(map(str, r["peak_rss_mb_per_worker"])),
                })
                print(f"rows={rows} workers={workers} repeat={repeat}: {row['rows_per_second']:.0f} rows/s, "
                      f"peak RSS per worker {row['peak_rss_mb_per_worker']} MB", flush=True)
    summary = _summary(cells.read(), args.workers)
    print(format_table(summary))
    write_json(out / "explain_scale.json", {
        "command": "python -m benchmarks explain_scale " + " ".join(argv if argv is not None else []),
        "settings": {k: v for k, v in vars(args).items() if k not in ("data_dir", "out")},
        "model": {"class": "DeepShapNet", "config": model.config}, "machine": machine_info(),
        "summary": summary,
    })
    _plot(summary, out / "explain_scale.png")
    return 0


def _summary(rows: list[dict[str, Any]], workers: list[int]) -> list[dict[str, Any]]:
    """Medians per (rows, workers) and each row count's throughput ratio against the fewest workers."""
    out = []
    for n in sorted({r["rows"] for r in rows}):
        base = None
        for w in sorted({r["workers"] for r in rows if r["rows"] == n}):
            cell = [r for r in rows if r["rows"] == n and r["workers"] == w]
            rate = statistics.median(r["rows_per_second"] for r in cell)
            cpu_rate = statistics.median(r["rows"] / r["worker_cpu_seconds"] for r in cell)
            base = base if base is not None else rate
            out.append({
                "rows": n, "workers": w, "repeats": len(cell), "rows_per_s": rate, "speedup": rate / base,
                "rows_per_cpu_s": cpu_rate, "peak_rss_mb_per_worker": statistics.median(
                    r["peak_rss_mb_max"] for r in cell),
                "cluster_start_s": statistics.median(r["cluster_start_seconds"] for r in cell),
                "partitions": cell[0]["partitions"],
            })
    return out


def _plot(summary: list[dict[str, Any]], path: Path) -> None:
    with figure(path, 1, 2, figsize=(10, 4)) as (_, (left, right)):
        for n in sorted({s["rows"] for s in summary}):
            cells = [s for s in summary if s["rows"] == n]
            label = f"{n / 1e6:g}M rows"
            left.plot([s["workers"] for s in cells], [s["rows_per_s"] for s in cells], "o-", label=label)
            right.plot([s["workers"] for s in cells], [s["peak_rss_mb_per_worker"] for s in cells], "o-",
                       label=label)
        left.set(xlabel="workers (1 thread each)", ylabel="rows per second (higher is better)")
        right.set(xlabel="workers (1 thread each)", ylabel="peak RSS per worker, MB (flat is better)")
        workers = sorted({s["workers"] for s in summary})
        for ax in (left, right):
            ax.set_ylim(bottom=0)
            ax.set_xticks(workers)
            ax.legend()
            ax.grid(alpha=0.3)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
