"""Explain tables and arrays that do not fit in memory, partition by partition, with Dask.

- :func:`explain_array`: a Dask array ``(N, *input_shape)`` -> lazy Dask arrays of values, base values and
  predictions, shaped as ``model.explain`` gives them.
- :func:`explain_dataframe`: a Dask DataFrame of raw columns -> a lazy Dask DataFrame with the key columns,
  ``prediction[o]``, ``base_value[o]`` and one ``shap[feature, o]`` column per (feature, output).
- :func:`explain_files`: CSV/Parquet file(s) -> a folder of Parquet parts, on a Dask cluster (what
  ``python -m shapnet.explain`` runs); resumable, with progress, rows per second and worker memory.

The model travels inside the task graph as ONE key: a worker deserialises it once and every partition it
runs uses that copy (:func:`models_loaded` counts the copies of a process). Raw columns are transformed as
recorded in the checkpoint (:class:`shapnet.InputSpec`). See docs/guide/explain-at-scale.md.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import torch

from shapnet.inputs import InputSpec
from shapnet.io import load as load_model
from shapnet.progress import progress as progress_bar
from shapnet.protocol import SelfExplaining, is_self_explaining

__all__ = [
    "ArrayExplanation",
    "explain_array",
    "explain_dataframe",
    "explain_files",
    "models_loaded",
    "output_columns",
    "read_table",
]

DEFAULT_BATCH_SIZE = 4096
DEFAULT_BLOCKSIZE = "32MiB"
MANIFEST = "_explain.json"

_LOADS = 0  # models deserialised in this process (see models_loaded)


def models_loaded() -> int:
    """How many models this process has deserialised from a task graph (one per worker per graph).

    Run it on the workers (``client.run(models_loaded)``) to check that the model was shipped once per worker,
    not once per partition.
    """
    return _LOADS


class _Shipped:
    """The model as it travels to workers; counts its deserialisations and tokenises by content."""

    def __init__(self, model: SelfExplaining) -> None:
        if not is_self_explaining(model):
            raise TypeError(
                "expected a self-explaining model (a ShapNet, HarsanyiNet or FastSHAP: an nn.Module with "
                f"input_shape, reference, n_outputs and explain), got {type(model).__name__}."
            )
        self.model = model.eval()
        self._token = _model_token(model)

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self.model, "_token": self._token}

    def __setstate__(self, state: dict[str, Any]) -> None:
        global _LOADS
        _LOADS += 1
        self.__dict__.update(state)

    def __dask_tokenize__(self) -> str:
        return self._token


def _model_token(model: SelfExplaining) -> str:
    digest = hashlib.sha256(type(model).__name__.encode())
    digest.update(repr(sorted(getattr(model, "config", {}).items())).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _ship(model: SelfExplaining) -> Any:
    """One graph key holding the model (pure: the same weights give the same key)."""
    shipped = _Shipped(model)
    return dask.delayed(shipped, pure=True, name=f"shapnet-model-{shipped._token[:16]}")


def _explain_numpy(
    shipped: _Shipped, x: np.ndarray, batch_size: int, per_element: bool
) -> tuple[np.ndarray, ...]:
    """``values (b, P, K)``, ``predictions (b, K)``, ``base_values (b, K)`` for ``x (b, *input_shape)``.

    ``P`` is ``prod(input_shape)`` with ``per_element`` (images split over channels), else the number of
    explained units (features, or pixels).
    """
    model = shipped.model
    dtype = next(model.parameters()).dtype
    # Allocated once the first batch gives the shapes; the batch loop then writes in place.
    values: Any = None
    predictions: Any = None
    bases: Any = None
    with torch.inference_mode():
        xt = torch.as_tensor(np.ascontiguousarray(x)).to(dtype)
        for start in range(0, len(xt), batch_size):
            expl = model.explain(xt[start : start + batch_size])
            v = expl.per_element() if per_element else expl.values
            v = v.reshape(len(v), -1, v.shape[-1]).numpy()
            if values is None:  # allocate once: the batch loop writes in place
                values = np.empty((len(xt), *v.shape[1:]), dtype=v.dtype)
                predictions = np.empty((len(xt), v.shape[-1]), dtype=v.dtype)
                bases = np.empty_like(predictions)
            stop = start + len(v)
            values[start:stop] = v
            predictions[start:stop] = expl.predictions.numpy()
            bases[start:stop] = expl.base_values.numpy()
    if values is None:  # an empty block
        p, k = _value_shape(model, per_element)
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        return np.empty((0, p, k), np_dtype), np.empty((0, k), np_dtype), np.empty((0, k), np_dtype)
    return values, predictions, bases


def _reference_explanation(model: SelfExplaining) -> Any:
    """The explanation of one sample (the reference): the shapes and dtype every block will have."""
    with torch.inference_mode():
        return model.explain(model.reference.to(next(model.parameters())).expand(1, *model.input_shape))


def _value_shape(model: SelfExplaining, per_element: bool) -> tuple[int, int]:
    """``(P, K)`` of one sample's flattened values."""
    expl = _reference_explanation(model)
    v = expl.per_element() if per_element else expl.values
    return int(np.prod(v.shape[1:-1])), int(v.shape[-1])


def _check_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    return batch_size


# --------------------------------------------------------------------------- #
# Dask arrays
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class ArrayExplanation:
    """Lazy results of :func:`explain_array` (compute them together: they share one task per block).

    Attributes:
        values: ``(N, F, K)`` for tabular models, ``(N, H, W, K)`` per pixel for image models.
        base_values: ``(N, K)``.
        predictions: ``(N, K)``.
    """

    values: da.Array
    base_values: da.Array
    predictions: da.Array

    def compute(self, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(values, base_values, predictions)`` as NumPy arrays, in one pass over the data."""
        return dask.compute(self.values, self.base_values, self.predictions, **kwargs)


def _explain_block(block: np.ndarray, shipped: _Shipped, batch_size: int) -> np.ndarray:
    values, predictions, bases = _explain_numpy(shipped, block, batch_size, per_element=False)
    return np.concatenate([values, predictions[:, None], bases[:, None]], axis=1)


def explain_array(
    model: SelfExplaining, x: da.Array, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> ArrayExplanation:
    """Explain a Dask array lazily, block by block along its first axis.

    Args:
        model: a self-explaining model (put in eval mode).
        x: ``(N, *model.input_shape)``, chunked along ``N`` (other axes are merged into one chunk).
        batch_size: rows explained at once inside a block (bounds the activations' memory).

    Returns:
        lazy ``values``, ``base_values`` and ``predictions`` (see :class:`ArrayExplanation`), in the model's
        dtype; the same numbers as ``model.explain(torch.as_tensor(x.compute()))``.
    """
    if not isinstance(x, da.Array):
        raise TypeError(
            f"explain_array expects a dask.array.Array, got {type(x).__name__}; "
            "wrap NumPy data with dask.array.from_array(x, chunks=(rows, ...))."
        )
    batch_size = _check_batch_size(batch_size)
    shipped = _ship(model)
    shape = tuple(model.input_shape)
    if tuple(x.shape[1:]) != shape:
        raise ValueError(
            f"x must have shape (N, {', '.join(map(str, shape))}) for this "
            f"{type(model).__name__}, got {tuple(x.shape)}."
        )
    x = x.rechunk(dict.fromkeys(range(1, x.ndim), -1))
    sample = _reference_explanation(model)
    value_shape = tuple(sample.values.shape[1:-1])
    p, k = int(np.prod(value_shape)), int(sample.values.shape[-1])
    packed = da.map_blocks(
        _explain_block,
        x,
        shipped,
        batch_size,
        drop_axis=list(range(1, x.ndim)),
        new_axis=[1, 2],
        chunks=(x.chunks[0], (p + 2,), (k,)),
        dtype=sample.values.numpy().dtype,
        meta=np.empty((0, 0, 0), dtype=sample.values.numpy().dtype),
    )
    values = packed[:, :p, :]
    if len(value_shape) > 1:
        values = values.reshape((x.shape[0], *value_shape, k), merge_chunks=False)
    return ArrayExplanation(values=values, base_values=packed[:, p + 1, :], predictions=packed[:, p, :])


# --------------------------------------------------------------------------- #
# Dask DataFrames
# --------------------------------------------------------------------------- #
def output_columns(feature_names: Sequence[str], output_names: Sequence[str]) -> list[str]:
    """``prediction[o]`` and ``base_value[o]`` per output, then ``shap[feature, o]`` feature-major."""
    return (
        [f"prediction[{o}]" for o in output_names]
        + [f"base_value[{o}]" for o in output_names]
        + [f"shap[{f}, {o}]" for f in feature_names for o in output_names]
    )


def _explain_frame(
    frame: pd.DataFrame,
    shipped: _Shipped,
    spec: InputSpec,
    keys: list[str],
    columns: list[str],
    batch_size: int,
) -> pd.DataFrame:
    model = shipped.model
    x = spec.transform(frame).reshape(len(frame), *model.input_shape)
    values, predictions, bases = _explain_numpy(shipped, x, batch_size, per_element=True)
    block = np.concatenate([predictions, bases, values.reshape(len(frame), -1)], axis=1)
    out = pd.DataFrame(block, columns=columns, index=frame.index)
    if keys:
        out = pd.concat([frame[keys], out], axis=1)
    return out


def _resolve_spec(
    model: SelfExplaining, columns: Sequence[str], inputs: InputSpec | Sequence[str] | None, keys: list[str]
) -> InputSpec:
    if inputs is None:
        inputs = [c for c in columns if c not in keys]
    if not isinstance(inputs, InputSpec):
        inputs = InputSpec(list(inputs))
    inputs.check_model(model)
    return inputs


def explain_dataframe(
    model: SelfExplaining,
    df: dd.DataFrame,
    *,
    inputs: InputSpec | Sequence[str] | None = None,
    key_columns: Sequence[str] = (),
    output_names: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dd.DataFrame:
    """Explain every row of a Dask DataFrame lazily, partition by partition.

    Args:
        model: a self-explaining model (put in eval mode).
        df: raw rows.
        inputs: how columns become the model's inputs: an :class:`shapnet.InputSpec` (e.g. read from the
            checkpoint), a list of feature columns used as they are, or None (every non-key column, in order).
        key_columns: columns copied to the output (ids), first.
        output_names: names of the ``K`` outputs; default ``inputs.output_names`` or ``0..K-1``.
        batch_size: rows explained at once inside a partition (bounds the activations' memory).

    Returns:
        a lazy Dask DataFrame, same partitions and index as ``df``: the key columns, ``prediction[o]``,
        ``base_value[o]`` and ``shap[feature, o]`` (image models: each pixel's value split equally over
        its channels, as :meth:`shapnet.ShapleyExplanation.per_element`). Float columns have the model's
        dtype.
    """
    if not isinstance(df, dd.DataFrame):
        raise TypeError(
            f"explain_dataframe expects a dask.dataframe.DataFrame, got {type(df).__name__}; "
            "wrap pandas data with dask.dataframe.from_pandas(frame, npartitions=...)."
        )
    batch_size = _check_batch_size(batch_size)
    keys = list(key_columns)
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise ValueError(
            f"key columns {missing} are not in the input; its columns are {list(df.columns)[:12]}."
        )
    spec = _resolve_spec(model, list(df.columns), inputs, keys)
    needed = list(dict.fromkeys(keys + spec.columns(df.columns)))  # lets Dask read only these columns
    _, k = _value_shape(model, per_element=True)
    names = output_names or spec.output_names or [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(
            f"the model has {k} outputs but {len(names)} output names were given: {list(names)}."
        )
    columns = output_columns(spec.feature_names, names)
    dtype = torch.empty(0, dtype=next(model.parameters()).dtype).numpy().dtype
    meta = pd.DataFrame({c: np.empty(0, dtype=dtype) for c in columns})
    if keys:
        meta = pd.concat([df._meta[keys], meta], axis=1)
    return df[needed].map_partitions(
        _explain_frame, _ship(model), spec, keys, columns, batch_size, meta=meta, align_dataframes=False
    )


# --------------------------------------------------------------------------- #
# Files (the command line)
# --------------------------------------------------------------------------- #
def _input_files(path: str) -> tuple[list[str], str]:
    """The CSV or Parquet files at ``path`` (a file or a folder) and their format."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"input {path!r} does not exist (expected a .csv or .parquet file, or a folder of them)."
        )
    files = (
        sorted(glob.glob(os.path.join(path, "**", "*"), recursive=True)) if os.path.isdir(path) else [path]
    )
    kinds = {".csv": "csv", ".parquet": "parquet", ".parq": "parquet", ".pq": "parquet"}
    found = {
        f: kinds[os.path.splitext(f)[1].lower()]
        for f in files
        if os.path.isfile(f) and os.path.splitext(f)[1].lower() in kinds
    }
    formats = set(found.values())
    if not found:
        what = "the folder holds no" if os.path.isdir(path) else "the file is not a"
        raise ValueError(
            f"input {path!r}: {what} .csv or .parquet file (expected a .csv or .parquet file, "
            "or a folder of them)."
        )
    if len(formats) > 1:
        raise ValueError(f"input folder {path!r} mixes CSV and Parquet files; give a folder of one kind.")
    return sorted(found), formats.pop()


def read_table(
    path: str | os.PathLike, *, blocksize: str | int = DEFAULT_BLOCKSIZE, columns: Sequence[str] | None = None
) -> dd.DataFrame:
    """A CSV or Parquet file, or a folder of them, as a lazy Dask DataFrame in partitions of ``blocksize``.

    Parquet partitions are never smaller than one row group: write large files with row groups of a few
    tens of MB so that workers hold little at a time.
    """
    files, kind = _input_files(os.fspath(path))
    if kind == "csv":
        return dd.read_csv(files, blocksize=blocksize, usecols=list(columns) if columns else None)
    return dd.read_parquet(
        files, blocksize=blocksize, split_row_groups="adaptive", columns=columns, aggregate_files=False
    )


def _worker_usage() -> dict[str, float]:
    """CPU seconds and peak resident memory (bytes) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024  # Linux: kilobytes
    return {"cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_bytes": float(peak)}


def _file_signature(files: list[str]) -> list[list[Any]]:
    return [[os.path.abspath(f), os.path.getsize(f), int(os.path.getmtime(f))] for f in files]


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_part(frame: pd.DataFrame, path: str) -> int:
    """Write one explained partition atomically (a killed worker never leaves half a part); its row count."""
    tmp = f"{path}.{os.getpid()}.tmp"
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return len(frame)


def _open_output(output: str, settings: dict[str, Any], resume: bool) -> set[int]:
    """Create ``output`` or check it holds a run of the same settings; the parts already written."""
    manifest = os.path.join(output, MANIFEST)
    if os.path.isdir(output) and os.listdir(output):
        if not os.path.exists(manifest):
            raise ValueError(
                f"output folder {output!r} exists and is not a shapnet.explain output; give a "
                "new folder (it is created) or an earlier run's output to resume it."
            )
        with open(manifest) as fh:
            previous = json.load(fh)["settings"]
        if previous != settings or not resume:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            why = f"other settings ({', '.join(changed)} differ)" if changed else "a run, and resume is off"
            raise ValueError(f"output folder {output!r} holds {why}; give a new folder or delete it.")
        done = set()
        for name in os.listdir(output):
            if name.startswith("part-") and name.endswith(".parquet"):
                done.add(int(name[5:-8]))
        return done
    if os.path.exists(output) and not os.path.isdir(output):
        raise ValueError(f"output {output!r} is a file; --output names a folder of Parquet parts.")
    os.makedirs(output, exist_ok=True)
    _write_json(manifest, {"settings": settings})
    return set()


def _write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def explain_files(
    model_path: str | os.PathLike,
    input_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    key_columns: Sequence[str] = (),
    feature_columns: Sequence[str] | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    blocksize: str | int = DEFAULT_BLOCKSIZE,
    resume: bool = True,
    progress: bool = True,
    on_partition: Callable[[int, Any], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Explain the rows of CSV/Parquet file(s) on a Dask cluster into ``output/part-NNNNN.parquet``.

    Args:
        model_path: a checkpoint written by :func:`shapnet.save`; its :class:`shapnet.InputSpec`, if any,
            says which raw columns the model reads and how they are standardised and one-hot encoded.
        input_path: a ``.csv`` or ``.parquet`` file, or a folder of them (read lazily: it need not fit in
            memory).
        output: folder of Parquet parts (one per input partition) and ``_explain.json`` (settings and
            results).
            Re-running with the same settings writes only the missing parts.
        key_columns: input columns copied to the output (ids).
        feature_columns: for a checkpoint without an input spec: the feature columns, used as they are
            (default: every non-key column).
        scheduler: address of a running Dask scheduler; default a ``LocalCluster`` with ``n_workers`` worker
            processes (default: one per core) of ``threads_per_worker`` threads.
        batch_size: rows explained at once inside a partition.
        blocksize: target partition size (e.g. ``"32MiB"``): bounds what a worker holds at a time.
        resume: continue a previous run's output folder.
        progress: show a progress bar over partitions.
        on_partition: called as ``on_partition(index, client)`` after each part is written (a hook for tests).
        log: where the summary lines go.

    Returns:
        ``{"rows", "partitions", "seconds", "rows_per_second", "workers", "worker_cpu_seconds",
        "peak_rss_mb_per_worker", ...}``
        (also written to ``output/_explain.json``).
    """
    from distributed import Client, LocalCluster, as_completed

    model_path, input_path, output = os.fspath(model_path), os.fspath(input_path), os.fspath(output)
    if not os.path.isfile(model_path):
        raise FileNotFoundError(
            f"model {model_path!r} does not exist (expected a checkpoint written by "
            "shapnet.save, e.g. model.pt of python -m shapnet.training)."
        )
    model = load_model(model_path).eval()
    spec = InputSpec.from_checkpoint(model_path)
    if spec is not None and feature_columns is not None:
        raise ValueError(
            "the checkpoint records the model's input columns and their standardisation; "
            "--feature-columns applies only to a checkpoint without them."
        )
    files, _ = _input_files(input_path)
    df = read_table(input_path, blocksize=blocksize)
    explained = explain_dataframe(
        model, df, inputs=spec or feature_columns, key_columns=key_columns, batch_size=batch_size
    )
    settings = {
        "model_sha256": _sha256(model_path),
        "input": _file_signature(files),
        "key_columns": list(key_columns),
        "feature_columns": None if feature_columns is None else list(feature_columns),
        "blocksize": blocksize,
        "batch_size": batch_size,
        "partitions": explained.npartitions,
    }
    done = _open_output(output, settings, resume)
    todo = [i for i in range(explained.npartitions) if i not in done]
    parts = explained.to_delayed()
    writes = [
        dask.delayed(_write_part)(
            parts[i], os.path.join(output, f"part-{i:05d}.parquet"), dask_key_name=f"write-part-{i}"
        )
        for i in todo
    ]
    if spec is None:
        log(
            f"note: {model_path} records no input spec: its columns are used as they are (no "
            "standardisation)."
        )

    started = time.perf_counter()
    if scheduler is None:
        n_workers = n_workers or os.cpu_count() or 1
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    else:
        cluster = None
    try:
        with Client(cluster if cluster is not None else scheduler) as client:
            workers = len(client.scheduler_info()["workers"])
            cluster_seconds = time.perf_counter() - started
            before = client.run(_worker_usage)
            tic = time.perf_counter()
            rows = 0
            bar = progress_bar(
                total=len(todo), desc="explaining partitions", unit="part", disable=not progress
            )
            key_to_part = dict(zip((f"write-part-{i}" for i in todo), todo))
            with bar:
                for future in as_completed(client.compute(writes)):
                    rows += future.result()
                    bar.update(1)
                    if on_partition is not None:
                        on_partition(key_to_part[future.key], client)
            seconds = time.perf_counter() - tic
            after = client.run(_worker_usage)
            loads = client.run(models_loaded)
    finally:
        if cluster is not None:
            cluster.close()
    result = {
        "rows": rows,
        "partitions": explained.npartitions,
        "partitions_this_run": len(todo),
        "seconds": seconds,
        "rows_per_second": rows / seconds if seconds > 0 else float("nan"),
        "cluster_start_seconds": cluster_seconds,
        "workers": workers,
        "threads_per_worker": threads_per_worker,
        # CPU time the workers spent on this run (a replaced worker's time is lost): less sensitive than wall
        # time to other processes sharing the machine.
        "worker_cpu_seconds": sum(
            u["cpu_seconds"] - before.get(w, {"cpu_seconds": 0.0})["cpu_seconds"] for w, u in after.items()
        ),
        # Peak since each worker process started (so a fresh cluster measures this run alone).
        "peak_rss_mb_per_worker_before_run": sorted(
            round(u["peak_rss_bytes"] / 2**20, 1) for u in before.values()
        ),
        "peak_rss_mb_per_worker": sorted(round(u["peak_rss_bytes"] / 2**20, 1) for u in after.values()),
        "models_loaded_per_worker": sorted(loads.values()),
    }
    _write_json(os.path.join(output, MANIFEST), {"settings": settings, "result": result})
    log(json.dumps(result))
    return result
