"""Measurement helpers shared by every benchmark, each defined once.

* Writing: :func:`atomic_write` (temporary file, fsync, rename), :func:`write_json`, :func:`write_csv`.
* Resuming: :class:`ResultFile`, the one format for results that must survive a kill: a CSV file with a
  header, one line per finished cell, appended and fsynced; an unterminated last line (a write cut short)
  is dropped on read, any other malformed or duplicated line is a ValueError naming the file and line.
* Statistics: :func:`mean_std` uses the sample standard deviation (``ddof=1``; NaN for a single value) and
  :func:`format_mean_std` prints a plain number when there is one value, ``mean ± std`` otherwise.
  :func:`spearman_rows` is :func:`scipy.stats.spearmanr` per row pair (one implementation, in the core).
* Explaining: :class:`CountingModel` counts the rows a model is evaluated on; :func:`timed_attributions`
  runs a registry method (:mod:`benchmarks.methods`) timed and counted; :func:`attribution_metrics`
  compares attributions with exact values.
* Reporting: :func:`machine_info`, :func:`prepare_out`, :func:`format_table` (text/Markdown from rows or a
  pandas DataFrame), :func:`better` (a header that says the direction), :func:`figure` (a matplotlib figure
  saved on exit), :func:`comma_separated` (argparse lists), :func:`limit_blas_threads`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import torch
from torch import nn

from shapnet.cli import portable

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "CountingModel",
    "ResultFile",
    "atomic_write",
    "attribution_metrics",
    "better",
    "call_with_options",
    "comma_separated",
    "dense_matmul_flops",
    "exit_status",
    "figure",
    "format_mean_std",
    "format_table",
    "limit_blas_threads",
    "machine_info",
    "mean_std",
    "prepare_out",
    "spearman_rows",
    "timed_attributions",
    "write_csv",
    "write_json",
    "write_outputs",
]


# --------------------------------------------------------------------------- #
# Writing
# --------------------------------------------------------------------------- #
def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], None]) -> None:
    """Write ``path`` so that it holds either its old content or all of the new one, never a part.

    The data go to ``<path>.tmp``, which is flushed, fsynced and renamed over ``path``.

    Args:
        path: the file to (re)write.
        data: the bytes, a str (written as UTF-8), or ``writer(binary_file)`` (e.g. ``torch.save``).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        if callable(data):
            data(fh)
        else:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    """``payload`` as indented JSON, atomically (values JSON cannot hold are written with ``str``; the data
    folder is written as ``$SHAPNET_DATA``, see :func:`shapnet.cli.portable`)."""
    atomic_write(path, json.dumps(portable(payload), indent=2, default=str))


def write_csv(
    path: str | os.PathLike,
    rows: pd.DataFrame | Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
) -> None:
    """Rows (dicts or a DataFrame) as CSV with a header, atomically; ``columns`` picks and orders them."""
    import pandas as pd

    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if columns is not None:
        frame = frame.reindex(columns=list(columns))
    atomic_write(path, frame.to_csv(index=False, lineterminator="\n"))


# --------------------------------------------------------------------------- #
# Resumable results
# --------------------------------------------------------------------------- #
Parser = Callable[[str], Any]


class ResultFile:
    """An append-only CSV of finished cells: what a killed run keeps and a resumed run skips.

    Each :meth:`append` writes one line and fsyncs it, so a kill loses at most the cell being written.
    :meth:`read` validates the whole file: the header must be ``columns``; every field is parsed with its
    column's parser (an empty field is None); ``validate(row)`` may add checks (raise ValueError); two
    lines with the same ``key`` are an error. An unterminated last line is cut off the file, with a warning.

    Args:
        path: the CSV file (created with its header on the first append).
        columns: column name -> parser from text (``str``, ``int``, ``float`` or any ``str -> value``),
            in file order.
        key: the columns identifying a cell (``("dataset", "model", "seed")``).
        validate: optional extra checks on a parsed row.
        what: what the file holds, for error messages (``"accuracy cells"``).

    Example::

        columns = {"model": str, "seed": int, "score": float}
        results = ResultFile(out / "cells.csv", columns, key=("model", "seed"))
        done = {results.key_of(r) for r in results.read()}
        for model, seed in todo:
            if (model, seed) not in done:
                results.append({"model": model, "seed": seed, "score": run(model, seed)})
    """

    def __init__(
        self,
        path: str | os.PathLike,
        columns: Mapping[str, Parser],
        key: Sequence[str],
        *,
        validate: Callable[[dict[str, Any]], None] | None = None,
        what: str = "results",
    ) -> None:
        self.path = Path(path)
        self.columns = dict(columns)
        self.key = tuple(key)
        missing = [k for k in self.key if k not in self.columns]
        if not self.columns or missing:
            raise ValueError(f"key columns {missing} are not among the columns {list(self.columns)}.")
        self.validate = validate
        self.what = what

    def key_of(self, row: Mapping[str, Any]) -> tuple:
        """The cell ``row`` belongs to (the values of the key columns)."""
        return tuple(row[k] for k in self.key)

    def read(self) -> list[dict[str, Any]]:
        """The finished cells, parsed, in file order; each row also has ``"line"`` (its line number).

        Raises:
            ValueError: a wrong header, a malformed line or a duplicated cell, naming the file and line.
        """
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            cut = raw.rfind(b"\n") + 1
            warnings.warn(
                f"{self.path}: dropping an unterminated last line (a write interrupted by a kill): "
                f"{raw[cut:][:80]!r}",
                stacklevel=2,
            )
            with open(self.path, "r+b") as fh:
                fh.truncate(cut)
                fh.flush()
                os.fsync(fh.fileno())
            raw = raw[:cut]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            raise ValueError(
                f"{self.path}, line {line}: not UTF-8 text; the {self.what} file is corrupt."
            ) from None
        lines = text.splitlines()
        if not lines:
            return []
        if next(csv.reader([lines[0]]), []) != list(self.columns):
            raise ValueError(
                f"{self.path}, line 1: expected the header {','.join(self.columns)!r}, got {lines[0]!r}. "
                f"This is not a file of {self.what} (or it is corrupt); use another --out."
            )
        rows: list[dict[str, Any]] = []
        seen: dict[tuple, int] = {}
        for number, line in enumerate(lines[1:], start=2):
            try:
                row = self._parse(line)
            except ValueError as err:
                raise ValueError(
                    f"{self.path}, line {number}: {err}. Got {line!r}. Fix or delete that line (each line is "
                    "one finished cell: deleting it only means that the cell is computed again)."
                ) from None
            cell = self.key_of(row)
            if cell in seen:
                raise ValueError(
                    f"{self.path}, line {number}: the same cell {dict(zip(self.key, cell))} as line "
                    f"{seen[cell]}; delete one of the two lines."
                )
            seen[cell] = number
            rows.append({**row, "line": number})
        return rows

    def append(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Append one finished cell (missing columns are empty) and fsync; returns it as :meth:`read` will."""
        unknown = sorted(set(row) - set(self.columns) - {"line"})
        if unknown:
            raise ValueError(
                f"row has columns {unknown} that the {self.what} file does not ({list(self.columns)})."
            )
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if not self.path.exists() or self.path.stat().st_size == 0:
            writer.writerow(self.columns)
        line = [_to_text(row.get(name)) for name in self.columns]
        writer.writerow(line)
        text = buf.getvalue()
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        return self._parse(text.splitlines()[-1])

    def frame(self) -> pd.DataFrame:
        """:meth:`read` as a DataFrame (columns in file order, without ``line``)."""
        import pandas as pd

        return pd.DataFrame(self.read(), columns=list(self.columns))

    def _parse(self, line: str) -> dict[str, Any]:
        fields = next(csv.reader([line]), [])
        if len(fields) != len(self.columns):
            raise ValueError(f"expected {len(self.columns)} comma-separated fields, got {len(fields)}")
        row: dict[str, Any] = {}
        for (name, parse), text in zip(self.columns.items(), fields):
            try:
                row[name] = None if text == "" else parse(text)
            except (ValueError, TypeError) as err:
                raise ValueError(f"column {name!r} does not parse ({err})") from None
        if self.validate is not None:
            self.validate(row)
        return row


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # the shortest text that reads back as the same float
    if isinstance(value, (np.integer, np.bool_)):
        return str(value.item())
    return str(value)


# --------------------------------------------------------------------------- #
# Statistics
# --------------------------------------------------------------------------- #
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, sample standard deviation)`` (``ddof=1``); std is NaN for one value, both NaN for none."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        return float("nan"), float("nan")
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else float("nan")


def format_mean_std(values: Sequence[float], digits: int = 3) -> str:
    """``"0.912"`` for one value, ``"0.912 ± 0.010"`` (sample std) for several, ``""`` for none."""
    mean, std = mean_std(values)
    if math.isnan(mean):
        return ""
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair of two ``(B, F)`` arrays: ``(B,)``, NaN if a row is constant
    (:func:`shapnet.consistency.spearman_rows`, scipy's ranks)."""
    from shapnet.consistency import spearman_rows as rows

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a and b must both have shape (B, F), got {a.shape} and {b.shape}.")
    return rows(torch.from_numpy(a), torch.from_numpy(b)).numpy()


# --------------------------------------------------------------------------- #
# Explaining
# --------------------------------------------------------------------------- #
class CountingModel(nn.Module):
    """``model`` with a counter of the rows it is evaluated on (forward passes, not backward).

    Attributes:
        model: the wrapped model.
        rows: rows evaluated since construction or the last reset (``counting.rows = 0``).

    Shape:
        ``x``: ``(N, *input_shape)``; output: the wrapped model's, ``(N, O)``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += int(x.shape[0])
        return self.model(x)


def timed_attributions(
    spec: Callable[..., torch.Tensor],
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    background: torch.Tensor,
    seed: int = 0,
    warmup: int = 0,
    repeats: int = 1,
    fast_seconds: float = 0.0,
    fast_repeats: int = 5,
) -> tuple[torch.Tensor, float, float]:
    """Run a registry method on ``x``, timed, counting the model's evaluations.

    ``warmup`` rows are explained once first, untimed (imports, shap's numba compilation). Then the whole
    of ``x`` is explained ``repeats`` times, or ``fast_repeats`` times when the first call took less than
    ``fast_seconds`` (millisecond timings are noisy), and the median time is kept. The method runs on a
    :class:`CountingModel`, except a method of library ``"shapnet"``, which needs the ShapNet itself and
    evaluates it once per row by construction (one explained forward pass).

    Args:
        spec: a :class:`benchmarks.methods.MethodSpec` (``spec(model, x, target, background=, seed=)``).
        model, x, target, background, seed: as the method takes them; ``x`` is ``(B, *input_shape)``.

    Returns:
        ``(attributions (B, *input_shape), seconds per row, model evaluations per row)``, the attributions
        and count from the first timed call.
    """
    counted = getattr(spec, "library", None) != "shapnet"
    runner = CountingModel(model) if counted else model

    def call(rows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return spec(runner, rows, targets, background=background, seed=seed)

    if warmup:
        call(x[:warmup], target[:warmup])
    if counted:
        runner.rows = 0
    start = time.perf_counter()
    attributions = call(x, target)
    times = [time.perf_counter() - start]
    evals = runner.rows / len(x) if counted else 1.0
    calls = max(repeats, fast_repeats) if times[0] < fast_seconds else repeats
    for _ in range(calls - 1):
        start = time.perf_counter()
        call(x, target)
        times.append(time.perf_counter() - start)
    return attributions, float(np.median(times)) / len(x), float(evals)


def attribution_metrics(attributions: np.ndarray, truth: np.ndarray, top: int = 3) -> dict[str, float]:
    """Error of ``(B, F)`` attributions against ``(B, F)`` exact values.

    Returns:
        ``rel_l2`` (``||A - T|| / ||T||``, Frobenius over the batch), ``spearman`` (mean per-row rank
        correlation, constant rows left out; NaN if none is left) and ``top3`` (mean fraction of the
        ``top`` largest ``|truth|`` features found among the ``top`` largest ``|attributions|``).
    """
    a, t = np.asarray(attributions, np.float64), np.asarray(truth, np.float64)
    if a.shape != t.shape or a.ndim != 2:
        raise ValueError(f"attributions and truth must both have shape (B, F), got {a.shape} and {t.shape}.")
    rel = float(np.linalg.norm(a - t) / np.linalg.norm(t))
    rho = spearman_rows(a, t)
    spearman = float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan")
    k = min(top, a.shape[1])
    top_a = np.argsort(-np.abs(a), axis=1)[:, :k]
    top_t = np.argsort(-np.abs(t), axis=1)[:, :k]
    overlap = [len(set(p) & set(q)) / k for p, q in zip(top_a.tolist(), top_t.tolist())]
    return {"rel_l2": rel, "spearman": spearman, "top3": float(np.mean(overlap))}


KERNELS = (
    "relu_modules_forward",
    "relu_modules_backward",
    "prune_units",
)  # shapnet.kernels' compiled kernels


@contextlib.contextmanager
def kernel_calls(names: Sequence[str] = KERNELS) -> Iterator[list[tuple[str, float, Any]]]:
    """Record every call of the compiled kernels ``names`` as ``(name, CPU seconds, result)``.

    Each call's CPU time is its own thread's (``time.thread_time``); with one thread the calls are recorded in
    the order they ran (pool threads append as they finish).

    The backends call the kernels as ``shapnet.kernels.<name>``, so wrapping those attributes sees every call;
    they are restored on exit. The result of ``relu_modules_forward`` is its busy (module, row) pairs.
    """
    from shapnet import kernels

    calls: list[tuple[str, float, Any]] = []
    originals = {name: getattr(kernels, name) for name in names}

    def timed(name: str, kernel: Callable) -> Callable:
        def run(*args: object) -> object:
            start = time.thread_time()
            result = kernel(*args)
            calls.append((name, time.thread_time() - start, result))
            return result

        return run

    try:
        for name, kernel in originals.items():
            setattr(kernels, name, timed(name, kernel))
        yield calls
    finally:
        for name, kernel in originals.items():
            setattr(kernels, name, kernel)


def limit_blas_threads() -> contextlib.AbstractContextManager:
    """A context manager limiting numpy's BLAS to one thread (torch's threads are set separately)."""
    from threadpoolctl import threadpool_limits  # ships with scikit-learn

    return threadpool_limits(1)


# --------------------------------------------------------------------------- #
# Reporting
# --------------------------------------------------------------------------- #
def machine_info() -> dict[str, Any]:
    """What produced a result: CPU, cores, threads, library versions and the date."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # Whether idle OpenMP threads spin: it decides how torch's threads and the kernels' share the cores.
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def prepare_out(path: str | os.PathLike) -> Path:
    """The output directory, created if needed."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_outputs(
    out: str | os.PathLike,
    stem: str,
    table: pd.DataFrame | Sequence[Mapping[str, Any]],
    payload: Mapping[str, Any],
    draw: Callable[[Path], None],
    *,
    started: float | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """A benchmark's three outputs in ``out``: ``<stem>.csv`` (the table), ``<stem>.json`` (``payload`` with
    the machine, and the wall time since ``started``, a ``time.perf_counter()``) and ``<stem>.png``
    (``draw(path)``). Returns ``out`` as a Path."""
    out = prepare_out(out)
    write_csv(out / f"{stem}.csv", table)
    machine = machine_info()
    if started is not None:
        machine["wall_seconds"] = time.perf_counter() - started
    write_json(out / f"{stem}.json", {"machine": machine, **payload})
    draw(out / f"{stem}.png")
    took = "" if started is None else f" in {machine['wall_seconds']:.0f} s"
    log(f"wrote {stem}.csv, {stem}.json and {stem}.png to {out}{took}")
    return out


def better(name: str, direction: str) -> str:
    """A column or axis header that says which way is better: ``better("area", "lower")``."""
    if direction not in ("lower", "higher"):
        raise ValueError(f"direction must be 'lower' or 'higher', got {direction!r}.")
    return f"{name} ({direction} is better)"


def format_table(
    rows: pd.DataFrame | Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> str:
    """A plain-text table that is also Markdown: floats with 4 significant digits, None and NaN empty."""
    import pandas as pd

    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    if columns is None:
        columns = (
            list(rows.columns) if isinstance(rows, pd.DataFrame) else list(records[0]) if records else []
        )
    if not records:
        return "(no rows)"

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)):
            return ""  # a value that does not apply (pandas holds None as NaN)
        if isinstance(v, (float, np.floating)):
            return f"{v:.4g}" if abs(v) < 1e4 or not math.isfinite(v) else f"{v:.3e}"
        return str(v)

    body = [[cell(r.get(c)) for c in columns] for r in records]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(columns), sep, *(line(b) for b in body)])


@contextlib.contextmanager
def figure(
    path: str | os.PathLike, nrows: int = 1, ncols: int = 1, **subplots: Any
) -> Iterator[tuple[Figure, Any]]:
    """``with figure(path, figsize=(7, 5)) as (fig, axes): ...``: a matplotlib figure (Agg backend) saved to
    ``path`` at 120 dpi with a tight layout on exit, then closed. ``axes`` is an array when ``nrows`` or
    ``ncols`` exceed 1 (or ``squeeze=False``), else one Axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, **subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def comma_separated(kind: Callable[[str], Any], *, minimum: float | None = None) -> Callable[[str], list]:
    """An argparse ``type=`` for ``"1,2,3"``: a non-empty list of ``kind`` values, each ``>= minimum``."""

    def parse(text: str) -> list:
        try:
            values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values such as 1,2,3, got {text!r}"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one value, got {text!r}")
        if minimum is not None and any(v < minimum for v in values):
            raise argparse.ArgumentTypeError(f"every value must be >= {minimum:g}, got {text!r}")
        return values

    parse.__name__ = f"comma-separated {kind.__name__}"  # argparse names the type in its own errors
    return parse


def exit_status(
    run: Callable[[], str], errors: tuple[type[BaseException], ...] = (ValueError, OSError)
) -> int:
    """A benchmark command's exit status: ``run()`` does the work and returns what it wrote, which is printed
    (``wrote <files>``), status 0; one of ``errors`` becomes one line ``error: <message>`` on stderr, status 2
    (as for argparse's usage errors), and the output folder keeps what was finished."""
    try:
        wrote = run()
    except errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"\nwrote {wrote}")
    return 0


def call_with_options(
    fn: Callable[..., Any], args: argparse.Namespace, *positional: Any, **overrides: Any
) -> Any:
    """``fn(*positional, **options, **overrides)``: ``options`` are the parsed command-line options named like
    a keyword parameter of ``fn`` that ``positional`` and ``overrides`` leave open (``--n-samples`` feeds
    ``n_samples=``)."""
    import inspect

    names = list(inspect.signature(fn).parameters)
    taken = {*names[: len(positional)], *overrides}
    options = {k: v for k, v in vars(args).items() if k in names and k not in taken}
    return fn(*positional, **options, **overrides)


def dense_matmul_flops(size: int = 1024, repeats: int = 20) -> float:
    """The dense float32 matmul rate of this process (FLOP/s, best of ``repeats``) at the current thread
    count, in CPU time (see :mod:`benchmarks.speed`)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        a @ b
        best = min(best, time.process_time() - start)
    return 2 * size**3 / best
