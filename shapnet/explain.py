"""``python -m shapnet.explain``: explain a CSV/Parquet table that need not fit in memory, on Dask.

    python -m shapnet.explain --model model.pt --input rows.parquet --output explained/ --key-columns id

writes ``explained/part-NNNNN.parquet`` (the key columns, ``prediction[o]``, ``base_value[o]`` and one
``shap[feature, o]`` column per feature and output) and ``explained/_explain.json``. See
docs/guide/explain-at-scale.md.

This module is only the command line. The Dask machinery lives in :mod:`shapnet_adapters.dask` and is
imported inside :func:`main`: the command's name is part of the user-facing contract (``shapnet.explain``),
while the library keeps its one-way imports (``import shapnet`` never loads Dask or the adapters).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _columns(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m shapnet.explain",
        description="Explain every row of a CSV or Parquet file (or a folder of them) with a saved ShapNet, "
        "partition by partition on a Dask cluster, into a folder of Parquet parts. Resumable: re-running "
        "with the same settings writes only the missing parts.",
    )
    p.add_argument("--model", required=True, help="checkpoint written by shapnet.save (e.g. model.pt)")
    p.add_argument("--input", required=True, help="a .csv or .parquet file, or a folder of them")
    p.add_argument("--output", required=True, help="output folder of Parquet parts (created)")
    p.add_argument(
        "--key-columns",
        type=_columns,
        default=[],
        metavar="A,B",
        help="comma-separated input columns copied to the output (ids)",
    )
    p.add_argument(
        "--feature-columns",
        type=_columns,
        default=None,
        metavar="A,B",
        help="only for a checkpoint without a recorded input spec: the feature columns, used as "
        "they are (default: every non-key column)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="a running Dask scheduler, e.g. tcp://10.0.0.1:8786 (default: a local cluster)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes of the local cluster (default: one per core)",
    )
    p.add_argument("--threads-per-worker", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=4096, help="rows explained at once inside a partition")
    p.add_argument("--blocksize", default="32MiB", help="target partition size, e.g. 32MiB")
    p.add_argument("--no-resume", action="store_true", help="refuse an existing output folder")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress (default: a bar on a terminal, else a line every 10%% or 30 s)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the command line; returns the summary also written to ``--output/_explain.json``.

    A bad model, input or output path (or bad columns) prints one line ``error: ...`` and exits with 2.
    """
    from .cli import fail_cleanly

    args = _parser().parse_args(argv)
    with fail_cleanly(args.output):  # an output folder this run created is removed on failure
        from shapnet_adapters.dask import explain_files  # lazy: shapnet itself never imports the adapters

        return explain_files(
            args.model,
            args.input,
            args.output,
            key_columns=args.key_columns,
            feature_columns=args.feature_columns,
            scheduler=args.scheduler,
            n_workers=args.workers,
            threads_per_worker=args.threads_per_worker,
            batch_size=args.batch_size,
            blocksize=args.blocksize,
            resume=not args.no_resume,
            progress=not args.no_progress,
        )


if __name__ == "__main__":  # pragma: no cover
    main()
