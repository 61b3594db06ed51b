"""ROAR / KAR: remove (or keep) the most important features by each attribution method, retrain, and measure.

    python -m benchmarks roar --dataset breast_cancer [--methods shapnet,random,...|all]
        [--fractions 0.1,0.3,0.5,0.7,0.9] [--repeats 3] [--mode roar|kar|both] [--model deep|shallow|mlp]
        [--target predicted|label] [--rank abs|signed] [--data-dir DIR] [--out DIR] [--n-jobs N]
        [--scheduler tcp://HOST:PORT]

Protocol (Hooker et al., NeurIPS 2019; DESIGN §9). One model is trained on the original data; every method
explains that model's predicted class (or the label) for every training AND test row, once. For a fraction
``t``, each row's features are ranked by the attribution (``|a|`` or signed; pixels for images) and
``round(t * F)`` of them are replaced by the training mean (per feature; per channel for images): the most
important ones for ROAR, the least important ones for KAR. A fresh model of the same kind and
hyperparameters, with a new seed, is trained on the modified training set and scored on the modified test
set. Fraction 0 (the unmodified data) is shared by all methods. A good method makes ROAR accuracy fall fast
and keeps KAR accuracy high; a random ranking is the control.

Outputs in ``--out``: ``results.csv`` (one line per finished cell, appended and fsynced, so a killed run
resumes where it stopped), ``summary.csv`` (mean ± std per cell and the area under each accuracy curve),
``roar.png``, ``methods.json`` (settings, machine, budgets, unsupported methods with reasons) and
``cache/`` (the original model and each method's attributions).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from shapnet.datasets import Dataset, list_datasets, load_dataset

from .methods import DEFAULT_METHODS, METHODS, MethodSpec, get_method
from .models import MODEL_KINDS, ModelConfig, build_model, default_config, predict, single_thread, weights_hash
from .models import accuracy as model_accuracy
from .models import train_model
from .report import format_table, machine_info, prepare_out, write_json

__all__ = [
    "RoarSettings",
    "Cell",
    "RESULT_COLUMNS",
    "run_roar",
    "read_results",
    "summarize",
    "area_under_curve",
    "removal_mask",
    "main",
]

MODES: tuple[str, ...] = ("roar", "kar")
BASELINE = "baseline"  # method name of the shared fraction-0 cells (mode "none")
RESULT_COLUMNS: tuple[str, ...] = (
    "method", "mode", "fraction", "repeat", "test_accuracy", "attribution_seconds", "retrain_seconds",
    "seed", "config",
)
DEFAULT_FRACTIONS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)


# --------------------------------------------------------------------------- #
# Settings and cells
# --------------------------------------------------------------------------- #
@dataclass
class RoarSettings:
    """Everything a ROAR/KAR run depends on.

    Attributes:
        dataset: a name of :func:`shapnet.datasets.list_datasets`, or a :class:`shapnet.datasets.Dataset`.
        methods: method names (see :mod:`benchmarks.methods`) or :class:`~benchmarks.methods.MethodSpec`
            objects (e.g. a test-only oracle).
        fractions: removal fractions in ``(0, 1)``; 0 (the unmodified data) is always added.
        repeats: retrains per cell, each with its own seed.
        modes: ``("roar",)``, ``("kar",)`` or both.
        model: the model kind and training recipe (:class:`benchmarks.models.ModelConfig`).
        target: explain the ``"predicted"`` class of the original model or the true ``"label"``.
        rank: rank features by ``"abs"`` attribution or by the ``"signed"`` value (largest first).
        seed: seeds the original model, the attributions, tie-breaking and (offset) every retrain.
        data_dir: data root for yeast, adult and mnist (default ``$SHAPNET_DATA``).
        max_train: keep at most this many training rows (None: all).
        max_test: keep the first this many test rows (None: all; the split is already shuffled).
        out: output directory.
        n_jobs: joblib workers for the retraining cells (-1: all cores).
        scheduler: a Dask scheduler address: run the cells on that cluster via joblib's Dask backend.
        progress: show a tqdm bar over the cells.
        chunk_size: at most this many rows per attribution call (fewer for inputs over 128 elements), which
            bounds the memory of the sampling methods. Chunk ``i`` is seeded ``seed + i``.
    """

    dataset: str | Dataset = "breast_cancer"
    methods: Sequence[str | MethodSpec] = DEFAULT_METHODS
    fractions: Sequence[float] = DEFAULT_FRACTIONS
    repeats: int = 3
    modes: Sequence[str] = MODES
    model: ModelConfig = field(default_factory=ModelConfig)
    target: Literal["predicted", "label"] = "predicted"
    rank: Literal["abs", "signed"] = "abs"
    seed: int = 0
    data_dir: str | None = None
    max_train: int | None = None
    max_test: int | None = None
    out: str | os.PathLike = "results/roar"
    n_jobs: int = 1
    scheduler: str | None = None
    progress: bool = True
    chunk_size: int = 256

    def __post_init__(self) -> None:
        fractions = [float(f) for f in self.fractions]
        bad = [f for f in fractions if not 0.0 < f < 1.0]
        if bad or not fractions:
            raise ValueError(f"fractions must be numbers strictly between 0 and 1 (0 is always added), got {list(self.fractions)}.")
        self.fractions = tuple(sorted(set(round(f, 6) for f in fractions)))
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            raise ValueError(f"repeats must be a positive int, got {self.repeats!r}.")
        modes = list(self.modes)
        if not modes or any(m not in MODES for m in modes):
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {modes}.")
        self.modes = tuple(m for m in MODES if m in modes)
        if self.target not in ("predicted", "label"):
            raise ValueError(f"target must be 'predicted' or 'label', got {self.target!r}.")
        if self.rank not in ("abs", "signed"):
            raise ValueError(f"rank must be 'abs' or 'signed', got {self.rank!r}.")
        if not self.methods:
            raise ValueError("methods must name at least one attribution method.")
        specs = [m if isinstance(m, MethodSpec) else get_method(m) for m in self.methods]
        names = [s.name for s in specs]
        if len(set(names)) != len(names) or BASELINE in names:
            raise ValueError(f"method names must be unique and not {BASELINE!r}, got {names}.")
        self.methods = tuple(specs)
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {self.chunk_size!r}.")

    @property
    def specs(self) -> tuple[MethodSpec, ...]:
        return tuple(self.methods)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Cell:
    """One retraining: ``method`` x ``mode`` x ``fraction`` x ``repeat`` (fraction 0: method ``baseline``)."""

    method: str
    mode: str
    fraction: float
    repeat: int

    @property
    def key(self) -> tuple[str, str, float, int]:
        return (self.method, self.mode, round(self.fraction, 6), self.repeat)


def retrain_seed(seed: int, repeat: int) -> int:
    """Seed of every retrain of ``repeat`` (shared by all methods and fractions: common random numbers)."""
    return int(seed) + 1000 * (int(repeat) + 1)


# --------------------------------------------------------------------------- #
# Ranking and removal
# --------------------------------------------------------------------------- #
def feature_scores(attributions: np.ndarray, rank: str) -> np.ndarray:
    """Per-feature ranking scores ``(N, F)`` from attributions ``(N, F)`` or ``(N, C, H, W)``.

    Images are ranked per pixel: ``|a|`` summed over channels (``rank="abs"``) or the signed sum.
    """
    a = np.asarray(attributions, dtype=np.float64)
    if a.ndim == 4:
        a = np.abs(a).sum(1) if rank == "abs" else a.sum(1)
        return a.reshape(a.shape[0], -1)
    if a.ndim != 2:
        raise ValueError(f"attributions must be (N, F) or (N, C, H, W), got shape {a.shape}.")
    return np.abs(a) if rank == "abs" else a


def importance_order(scores: np.ndarray, seed: int) -> np.ndarray:
    """``(N, F)`` feature indices per row, most important first; ties broken at random (seeded).

    Random tie-breaking matters: methods with many exact zeros (saliency through a dead ReLU, a ShapNet's
    features at the reference) would otherwise remove low-index features first, a hidden bias.
    """
    rng = np.random.default_rng(seed)
    tiebreak = rng.random(scores.shape)
    # np.lexsort sorts by the last key first: by descending score, then by the random key.
    return np.lexsort((tiebreak, -scores), axis=-1).astype(np.int32)


def removal_mask(order: np.ndarray, fraction: float, mode: str) -> np.ndarray:
    """Boolean ``(N, F)``: the features to replace for ``fraction`` in ``mode``.

    ROAR replaces the ``round(fraction * F)`` most important features of each row, KAR the same number
    of least important ones (keeping the most important ``1 - fraction``).
    """
    n, f = order.shape
    k = int(round(fraction * f))
    chosen = order[:, :k] if mode == "roar" else order[:, f - k :]
    mask = np.zeros((n, f), dtype=bool)
    np.put_along_axis(mask, chosen, True, axis=1)
    return mask


def apply_removal(X: np.ndarray, mask: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """``X`` with the masked features replaced by ``fill``.

    Args:
        X: ``(N, F)`` or ``(N, C, H, W)``.
        mask: ``(N, F)`` or ``(N, H*W)`` (pixels; all channels of a pixel are replaced).
        fill: ``(F,)`` per feature, or ``(C,)`` per channel.
    """
    if X.ndim == 4:
        n, c, h, w = X.shape
        return np.where(mask.reshape(n, 1, h, w), fill.reshape(1, c, 1, 1), X).astype(X.dtype)
    return np.where(mask, fill.reshape(1, -1), X).astype(X.dtype)


def training_mean(X: np.ndarray) -> np.ndarray:
    """The fill value: per feature ``(F,)`` for tabular ``X``, per channel ``(C,)`` for images."""
    return (X.mean(axis=(0, 2, 3)) if X.ndim == 4 else X.mean(axis=0)).astype(np.float32)


def reference_row(X: np.ndarray) -> np.ndarray:
    """The training mean laid out as one input, ``input_shape``: the ShapNet reference and every baseline."""
    fill = training_mean(X)
    if X.ndim == 4:
        return np.broadcast_to(fill.reshape(-1, 1, 1), X.shape[1:]).astype(np.float32).copy()
    return fill


# --------------------------------------------------------------------------- #
# One cell (runs in a worker)
# --------------------------------------------------------------------------- #
def run_cell(
    cell: Cell,
    config: ModelConfig,
    seed: int,
    n_classes: int,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    order_train: np.ndarray | None,
    order_test: np.ndarray | None,
) -> dict[str, Any]:
    """Modify the data for ``cell``, train a fresh model and return its test accuracy.

    The arrays are separate arguments so that joblib memory-maps them (loky) or scatters them once per
    run (Dask) instead of copying them into every task.
    """
    # One intra-op thread: workers share the cores, and the result depends on the seed only.
    torch.set_num_threads(1)
    fill = training_mean(X_train)  # of the original data: the fill value and the ShapNet reference
    reference = reference_row(X_train)
    if cell.method != BASELINE:
        X_train = apply_removal(X_train, removal_mask(order_train, cell.fraction, cell.mode), fill)
        X_test = apply_removal(X_test, removal_mask(order_test, cell.fraction, cell.mode), fill)
    cell_seed = retrain_seed(seed, cell.repeat)
    tic = time.perf_counter()
    model = build_model(config, X_train.shape[1:], n_classes, seed=cell_seed, reference=reference)
    train_model(model, X_train, y_train, config, seed=cell_seed)
    seconds = time.perf_counter() - tic
    return {"cell": cell, "test_accuracy": model_accuracy(model, X_test, y_test), "retrain_seconds": seconds,
            "seed": cell_seed}


# --------------------------------------------------------------------------- #
# Results file: append-only, fsynced, validated on read
# --------------------------------------------------------------------------- #
def _format_row(row: dict[str, Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(
        [row["method"], row["mode"], f"{row['fraction']:g}", row["repeat"], f"{row['test_accuracy']:.6f}",
         f"{row['attribution_seconds']:.4f}", f"{row['retrain_seconds']:.4f}", row["seed"], row["config"]]
    )
    return buf.getvalue()


def _fsync_write(fh: io.TextIOBase, text: str) -> None:
    fh.write(text)
    fh.flush()
    os.fsync(fh.fileno())


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Parse ``results.csv`` into dicts, validating every line.

    An unterminated last line (a write cut short by a kill) is dropped from the file with a warning.

    Raises:
        ValueError: naming the file and line number of the first malformed or duplicated line.
    """
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n") + 1
        warnings.warn(
            f"{path}: dropping an unterminated last line (an append interrupted mid-write): {raw[cut:][:80]!r}",
            stacklevel=2,
        )
        with open(path, "r+b") as fh:
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())
        raw = raw[:cut]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not valid UTF-8 text; the results file is corrupt.") from None
    lines = text.splitlines()
    if not lines:
        return []
    header = next(csv.reader([lines[0]]))
    if tuple(header) != RESULT_COLUMNS:
        raise ValueError(
            f"{path}, line 1: expected the header {','.join(RESULT_COLUMNS)!r}, got {lines[0]!r}. "
            "This is not a ROAR results file (or it is corrupt); use another --out."
        )
    rows: list[dict[str, Any]] = []
    seen: dict[tuple, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        try:
            row = _parse_row(line)
        except ValueError as err:
            raise ValueError(
                f"{path}, line {number}: {err}. Got {line!r}. Fix or delete that line (each line is one "
                "finished cell; deleting it only means that cell is recomputed)."
            ) from None
        key = Cell(row["method"], row["mode"], row["fraction"], row["repeat"]).key
        if key in seen:
            raise ValueError(
                f"{path}, line {number}: duplicates the cell of line {seen[key]} ({key}); delete one of them."
            )
        seen[key] = number
        row["line"] = number
        rows.append(row)
    return rows


def _parse_row(line: str) -> dict[str, Any]:
    fields = next(csv.reader([line]), [])
    if len(fields) != len(RESULT_COLUMNS):
        raise ValueError(f"expected {len(RESULT_COLUMNS)} comma-separated fields, got {len(fields)}")
    row = dict(zip(RESULT_COLUMNS, fields))
    out: dict[str, Any] = {"method": row["method"], "mode": row["mode"], "config": row["config"]}
    if not out["method"]:
        raise ValueError("empty method name")
    if out["mode"] not in (*MODES, "none"):
        raise ValueError(f"mode must be roar, kar or none, got {out['mode']!r}")
    try:
        out["fraction"] = float(row["fraction"])
        out["repeat"] = int(row["repeat"])
        out["test_accuracy"] = float(row["test_accuracy"])
        out["attribution_seconds"] = float(row["attribution_seconds"])
        out["retrain_seconds"] = float(row["retrain_seconds"])
        out["seed"] = int(row["seed"])
    except ValueError as err:
        raise ValueError(f"a numeric field does not parse ({err})") from None
    if not 0.0 <= out["fraction"] < 1.0 or out["repeat"] < 0 or not 0.0 <= out["test_accuracy"] <= 1.0:
        raise ValueError("fraction must be in [0, 1), repeat >= 0 and test_accuracy in [0, 1]")
    return out


# --------------------------------------------------------------------------- #
# Data, model and attributions (parent process, cached)
# --------------------------------------------------------------------------- #
def _fingerprint(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"{part.dtype}{part.shape}".encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"|")
    return digest.hexdigest()[:16]


def _load(settings: RoarSettings) -> Dataset:
    if isinstance(settings.dataset, Dataset):
        data = settings.dataset
    else:
        if settings.dataset not in list_datasets():
            raise ValueError(f"unknown dataset {settings.dataset!r}; expected one of {', '.join(list_datasets())}.")
        data = load_dataset(settings.dataset, settings.data_dir, random_state=settings.seed, max_train=settings.max_train)
    if data.task != "classification":
        raise ValueError(f"ROAR measures accuracy: dataset {data.name!r} is a {data.task} task, expected classification.")
    if settings.max_test is not None:
        if isinstance(settings.max_test, bool) or not isinstance(settings.max_test, int) or settings.max_test < 1:
            raise ValueError(f"max_test must be a positive int or None, got {settings.max_test!r}.")
        data = dataclasses.replace(data, X_test=data.X_test[: settings.max_test], y_test=data.y_test[: settings.max_test])
    return data


def _atomic_save(path: Path, writer: Callable[[io.BufferedWriter], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        writer(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _original_model(settings: RoarSettings, data: Dataset, data_key: str, cache: Path) -> nn.Module:
    """The model every method explains, trained once (seed ``settings.seed``) and cached on disk."""
    ref = reference_row(data.X_train)
    model = build_model(settings.model, data.X_train.shape[1:], data.n_classes, seed=settings.seed, reference=ref)
    path = cache / f"model-{_fingerprint(data_key, settings.model.to_dict(), settings.seed)}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    with single_thread():  # bit-reproducible, whatever the machine's thread count
        train_model(model, data.X_train, data.y_train, settings.model, seed=settings.seed)
    _atomic_save(path, lambda fh: torch.save(model.state_dict(), fh))
    return model.eval()


def _attribute(
    spec: MethodSpec, model: nn.Module, X: np.ndarray, target: np.ndarray, background: np.ndarray, seed: int,
    chunk_size: int,
) -> np.ndarray:
    """``spec``'s attributions ``(N, *input_shape)`` in chunks (chunk ``i`` seeded ``seed + i``)."""
    bg = torch.as_tensor(background).unsqueeze(0)
    out = []
    for i, start in enumerate(range(0, len(X), chunk_size)):
        x = torch.as_tensor(X[start : start + chunk_size])
        t = torch.as_tensor(target[start : start + chunk_size])
        out.append(spec(model, x, t, background=bg, seed=seed + i).numpy())
    return np.concatenate(out)


def _method_key(spec: MethodSpec, model_hash: str, data_key: str, settings: RoarSettings) -> str:
    # The chunk size decides the per-chunk seeds of the stochastic methods, so it is part of the key.
    return _fingerprint(
        spec.name, dict(spec.budget), model_hash, data_key, settings.target, settings.seed, settings.chunk_size
    )


def _attributions(
    spec: MethodSpec, model: nn.Module, data: Dataset, targets: tuple[np.ndarray, np.ndarray], key: str,
    settings: RoarSettings, cache: Path,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(train, test) attributions and their wall time, from ``cache`` or computed and cached."""
    path = cache / f"attr-{spec.name}-{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["train"], z["test"], float(z["seconds"])
    background = reference_row(data.X_train)
    X = np.concatenate([data.X_train, data.X_test])
    target = np.concatenate(targets)
    tic = time.perf_counter()
    # Fewer rows per call for large inputs: sampling methods multiply each chunk by their sample count.
    chunk = max(8, min(settings.chunk_size, 2**15 // max(1, int(np.prod(X.shape[1:])))))
    attr = _attribute(spec, model, X, target, background, settings.seed, chunk)
    seconds = time.perf_counter() - tic
    if not np.isfinite(attr).all():
        raise ValueError(f"returned non-finite attributions ({int((~np.isfinite(attr)).sum())} entries)")
    train, test = attr[: len(data.X_train)], attr[len(data.X_train) :]
    _atomic_save(path, lambda fh: np.savez(fh, train=train, test=test, seconds=np.float64(seconds)))
    return train, test, seconds


# --------------------------------------------------------------------------- #
# The run
# --------------------------------------------------------------------------- #
def _cells(settings: RoarSettings, methods: Sequence[str]) -> list[Cell]:
    cells = [Cell(BASELINE, "none", 0.0, r) for r in range(settings.repeats)]
    for r in range(settings.repeats):
        for name in methods:
            for mode in settings.modes:
                cells += [Cell(name, mode, f, r) for f in settings.fractions]
    return cells


def _iterate(tasks: list[tuple], n_jobs: int, scheduler: str | None) -> Iterable[dict[str, Any]]:
    """Run ``run_cell(*task)`` for each task and yield the results as they finish (any order)."""
    from joblib import Parallel, delayed, parallel_config

    jobs = (delayed(run_cell)(*task) for task in tasks)
    if scheduler is None:
        yield from Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs)
        return
    from distributed import Client

    with Client(scheduler) as client, parallel_config(backend="dask"):
        if n_jobs == -1 or n_jobs is None:
            n_jobs = max(1, sum(client.ncores().values()))
        yield from Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs)


def run_roar(
    settings: RoarSettings, *, on_cell: Callable[[dict[str, Any]], None] | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run (or resume) a ROAR/KAR benchmark and write its outputs into ``settings.out``.

    Args:
        settings: the run.
        on_cell: called with each result row right after it was appended to ``results.csv`` (a test hook:
            raising from it interrupts the run, like a kill).
        log: where progress lines go.

    Returns:
        ``{"results": rows, "summary": rows, "methods": per-method info, "unsupported": {name: reason}}``.

    Raises:
        ValueError: bad settings, a corrupt ``results.csv``, or an ``--out`` holding results of other settings.
    """
    from tqdm.auto import tqdm

    out = prepare_out(settings.out)
    cache = prepare_out(out / "cache")
    data = _load(settings)
    image = data.X_train.ndim == 4
    n_features = int(np.prod(data.X_train.shape[2:])) if image else data.n_features
    data_key = _fingerprint(data.name, data.X_train, data.y_train, data.X_test, data.y_test)
    run_key = _fingerprint(data_key, settings.model.to_dict(), settings.target, settings.rank, settings.seed)

    results_path = out / "results.csv"
    existing = read_results(results_path)
    for row in existing:
        if row["config"] != run_key and not row["config"].startswith(run_key + "-"):
            raise ValueError(
                f"{results_path}, line {row['line']}: this cell was computed with other settings (config "
                f"{row['config']!r}, this run {run_key!r}: dataset, model, training recipe, target, rank or "
                "seed differ). Use another --out, or the settings of the earlier run."
            )

    tic = time.perf_counter()
    model = _original_model(settings, data, data_key, cache)
    model_hash = weights_hash(model)
    train_pred, test_pred = predict(model, data.X_train), predict(model, data.X_test)
    original_accuracy = float((test_pred == data.y_test).mean())
    log(f"original {settings.model.kind} model on {data.name}: test accuracy {original_accuracy:.4f} "
        f"({time.perf_counter() - tic:.1f} s, weights {model_hash})")
    targets = (train_pred, test_pred) if settings.target == "predicted" else (data.y_train, data.y_test)

    # Attributions, once per method, with the original model; failures make the method unsupported.
    info: dict[str, dict[str, Any]] = {}
    orders: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    method_keys: dict[str, str] = {}
    for spec in settings.specs:
        entry: dict[str, Any] = {
            "library": spec.library, "description": spec.description, "budget": dict(spec.budget),
            "caveat": spec.caveat, "status": "ok", "reason": None, "attribution_seconds": None,
        }
        info[spec.name] = entry
        reason = spec.supports(model, n_features)
        if reason is None:
            key = _method_key(spec, model_hash, data_key, settings)
            try:
                train_attr, test_attr, seconds = _attributions(spec, model, data, targets, key, settings, cache)
            except Exception as err:  # noqa: BLE001 (any failure of a third-party method is reported, not fatal)
                reason = f"failed on this model: {type(err).__name__}: {err}".strip()
            else:
                entry["attribution_seconds"] = seconds
                method_keys[spec.name] = key
                rank_seed = settings.seed + 7
                orders[spec.name] = (
                    importance_order(feature_scores(train_attr, settings.rank), rank_seed),
                    importance_order(feature_scores(test_attr, settings.rank), rank_seed + 1),
                )
                log(f"  {spec.name:<24} attributions in {seconds:7.2f} s")
        if reason is not None:
            entry.update(status="unsupported", reason=reason)
            log(f"  {spec.name:<24} UNSUPPORTED: {reason}")
    unsupported = {name: e["reason"] for name, e in info.items() if e["status"] != "ok"}
    supported = [s.name for s in settings.specs if s.name in orders]

    payload = {
        "benchmark": "roar",
        "settings": _settings_dict(settings, data, n_features),
        "config": run_key,
        "original_model": {"test_accuracy": original_accuracy, "weights_hash": model_hash},
        "machine": machine_info(),
        "methods": info,
        "unsupported": unsupported,
    }
    write_json(out / "methods.json", payload)

    # Cells: skip the finished ones, run the rest, append each result as soon as it arrives.
    def config_of(name: str) -> str:
        return run_key if name == BASELINE else f"{run_key}-{method_keys[name]}"

    done = {(r["method"], r["mode"], round(r["fraction"], 6), r["repeat"]): r for r in existing}
    for row in existing:  # a method's budget changed: its old rows no longer describe these attributions
        if row["method"] in method_keys and row["config"] != config_of(row["method"]):
            raise ValueError(
                f"{results_path}, line {row['line']}: method {row['method']!r} was run with other attributions "
                f"(config {row['config']!r}, now {config_of(row['method'])!r}: its budget changed). Use "
                "another --out or delete that method's lines."
            )
    cells = _cells(settings, supported)
    pending = [c for c in cells if c.key not in done]
    attr_seconds = {name: info[name]["attribution_seconds"] for name in supported}
    tasks = [
        (c, settings.model, settings.seed, data.n_classes, data.X_train, data.y_train, data.X_test, data.y_test,
         *(orders[c.method] if c.method != BASELINE else (None, None)))
        for c in pending
    ]
    log(f"{len(cells)} cells, {len(cells) - len(pending)} already done, {len(pending)} to run "
        f"({'dask ' + settings.scheduler if settings.scheduler else f'n_jobs={settings.n_jobs}'})")
    new_file = not results_path.exists() or results_path.stat().st_size == 0
    threads = torch.get_num_threads()
    bar = tqdm(total=len(cells), initial=len(cells) - len(pending), desc="roar cells", unit="cell",
               disable=not settings.progress, dynamic_ncols=True)
    try:
        with open(results_path, "a", encoding="utf-8", newline="") as fh:
            if new_file:
                _fsync_write(fh, ",".join(RESULT_COLUMNS) + "\n")
            if pending:
                for result in _iterate(tasks, settings.n_jobs, settings.scheduler):
                    cell: Cell = result["cell"]
                    row = {
                        "method": cell.method, "mode": cell.mode, "fraction": cell.fraction, "repeat": cell.repeat,
                        "test_accuracy": result["test_accuracy"],
                        "attribution_seconds": attr_seconds.get(cell.method, 0.0),
                        "retrain_seconds": result["retrain_seconds"], "seed": result["seed"],
                        "config": config_of(cell.method),
                    }
                    line = _format_row(row)
                    _fsync_write(fh, line)
                    done[cell.key] = _parse_row(line.rstrip("\n"))  # exactly what a resumed run reads back
                    bar.update(1)
                    if on_cell is not None:
                        on_cell(row)
    finally:
        bar.close()
        torch.set_num_threads(threads)  # run_cell sets 1 thread, also in this process (n_jobs=1, in-process Dask)

    rows = [done[c.key] for c in cells]
    summary = summarize(rows, [s.name for s in settings.specs if s.name in supported], settings.modes, settings.fractions)
    _write_summary(out / "summary.csv", summary, settings.fractions)
    plot(summary, settings.fractions, out / "roar.png", title=f"{data.name}, {settings.model.kind} model")
    log("\n" + summary_table(summary, settings.fractions))
    if unsupported:
        log("\nunsupported methods:")
        for name, reason in unsupported.items():
            log(f"  {name}: {reason}")
    payload["wall_seconds"] = time.perf_counter() - tic
    write_json(out / "methods.json", payload)
    return {"results": rows, "summary": summary, "methods": info, "unsupported": unsupported}


def _settings_dict(settings: RoarSettings, data: Dataset, n_features: int) -> dict[str, Any]:
    return {
        "dataset": data.name, "n_train": len(data.X_train), "n_test": len(data.X_test),
        "input_shape": list(data.X_train.shape[1:]), "n_features_ranked": n_features, "n_classes": data.n_classes,
        "methods": [s.name for s in settings.specs], "fractions": list(settings.fractions),
        "repeats": settings.repeats, "modes": list(settings.modes), "model": settings.model.to_dict(),
        "target": settings.target, "rank": settings.rank, "seed": settings.seed,
        "retrain_seeds": [retrain_seed(settings.seed, r) for r in range(settings.repeats)],
        "fill": "training mean per " + ("channel" if data.X_train.ndim == 4 else "feature"),
        "baseline": "the training mean (the ShapNet reference) for every method",
        "max_train": settings.max_train, "max_test": settings.max_test, "n_jobs": settings.n_jobs, "scheduler": settings.scheduler,
        "chunk_size": settings.chunk_size,
    }


# --------------------------------------------------------------------------- #
# Summary, table and plot
# --------------------------------------------------------------------------- #
def area_under_curve(x: Sequence[float], y: Sequence[float]) -> float:
    """Trapezoidal area under ``y(x)`` (``x`` increasing)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape} and {y.shape}.")
    return float(((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0).sum())


def summarize(
    rows: Sequence[dict[str, Any]], methods: Sequence[str], modes: Sequence[str], fractions: Sequence[float]
) -> list[dict[str, Any]]:
    """One row per (method, mode): mean and std test accuracy per fraction (0 included) and the AUC.

    The AUC is the trapezoidal area under accuracy versus fraction over ``[0, max(fractions)]``, computed
    per repeat (with that repeat's baseline at 0) and then averaged; lower is better for ROAR, higher for KAR.
    """
    baseline = {r["repeat"]: r["test_accuracy"] for r in rows if r["method"] == BASELINE}
    xs = [0.0, *sorted(fractions)]
    out = []
    for mode in modes:
        for method in methods:
            acc: dict[float, list[float]] = {x: [] for x in xs}
            by_repeat: dict[int, dict[float, float]] = {}
            for r in rows:
                if r["method"] == method and r["mode"] == mode:
                    acc.setdefault(round(r["fraction"], 6), []).append(r["test_accuracy"])
                    by_repeat.setdefault(r["repeat"], {})[round(r["fraction"], 6)] = r["test_accuracy"]
            for repeat, value in baseline.items():
                if repeat in by_repeat:
                    acc[0.0].append(value)
                    by_repeat[repeat][0.0] = value
            aucs = [area_under_curve(xs, [c[x] for x in xs]) for c in by_repeat.values() if all(x in c for x in xs)]
            row: dict[str, Any] = {"method": method, "mode": mode, "repeats": len(by_repeat)}
            for x in xs:
                values = acc.get(x, [])
                row[f"acc_{x:g}"] = float(np.mean(values)) if values else float("nan")
                row[f"std_{x:g}"] = float(np.std(values)) if values else float("nan")
            row["auc"] = float(np.mean(aucs)) if aucs else float("nan")
            row["auc_std"] = float(np.std(aucs)) if aucs else float("nan")
            out.append(row)
    return out


def _write_summary(path: Path, summary: list[dict[str, Any]], fractions: Sequence[float]) -> None:
    columns = ["method", "mode", "repeats", *[f"{p}_{x:g}" for x in (0.0, *fractions) for p in ("acc", "std")],
               "auc", "auc_std"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in summary:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    _atomic_save(path, lambda fh: fh.write(buf.getvalue().encode()))


def summary_table(summary: list[dict[str, Any]], fractions: Sequence[float]) -> str:
    """The printed table: test accuracy mean ± std per fraction, and AUC, ranked within each mode."""
    xs = [0.0, *fractions]
    rows = []
    for mode in dict.fromkeys(r["mode"] for r in summary):
        part = [r for r in summary if r["mode"] == mode]
        # ROAR: lower area = better ranking; KAR: higher is better.
        part.sort(key=lambda r: (math.isnan(r["auc"]), r["auc"] if mode == "roar" else -r["auc"]))
        for r in part:
            rows.append({
                "mode": mode, "method": r["method"],
                **{f"{x:g}": f"{r[f'acc_{x:g}']:.3f} ± {r[f'std_{x:g}']:.3f}" for x in xs},
                "AUC": f"{r['auc']:.4f} ± {r['auc_std']:.4f}",
            })
    return format_table(rows)


def plot(summary: list[dict[str, Any]], fractions: Sequence[float], path: str | os.PathLike, title: str = "") -> None:
    """``roar.png``: accuracy against fraction per method, one panel per mode, random dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(dict.fromkeys(r["mode"] for r in summary)) or ["roar"]
    xs = [0.0, *fractions]
    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4), squeeze=False)
    methods = list(dict.fromkeys(r["method"] for r in summary))
    colors = {m: plt.get_cmap("tab20")(i % 20) for i, m in enumerate(methods)}
    for ax, mode in zip(axes[0], modes):
        for r in (r for r in summary if r["mode"] == mode):
            mean = np.array([r[f"acc_{x:g}"] for x in xs])
            std = np.array([r[f"std_{x:g}"] for x in xs])
            is_random = r["method"] == "random"
            ax.plot(xs, mean, "--" if is_random else "-", marker="o", ms=3, lw=2 if r["method"] == "shapnet" else 1.3,
                    color="black" if is_random else colors[r["method"]], label=f"{r['method']} ({r['auc']:.3f})")
            ax.fill_between(xs, mean - std, mean + std, alpha=0.12, color="black" if is_random else colors[r["method"]])
        ax.set_title(f"{mode.upper()}: {'most' if mode == 'roar' else 'least'} important replaced")
        ax.set_xlabel("fraction of features replaced by the training mean")
        ax.set_ylabel("test accuracy after retraining")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="method (AUC)", title_fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #
def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.1,0.5,0.9, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks roar", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="breast_cancer", help=f"one of: {', '.join(list_datasets())}")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated, or 'all' ({', '.join(METHODS)})")
    parser.add_argument("--fractions", type=_floats, default=list(DEFAULT_FRACTIONS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", choices=("roar", "kar", "both"), default="both")
    parser.add_argument("--model", choices=MODEL_KINDS, default="deep",
                        help="deep: DeepShapNet (VisionShapNet for images); shallow: ShallowShapNet; mlp: a plain MLP")
    parser.add_argument("--target", choices=("predicted", "label"), default="predicted")
    parser.add_argument("--rank", choices=("abs", "signed"), default="abs")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: per dataset)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--max-train", type=int, default=None, help="keep at most this many training rows")
    parser.add_argument("--max-test", type=int, default=None, help="keep at most this many test rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="data root for yeast, adult, mnist (default $SHAPNET_DATA)")
    parser.add_argument("--out", default=None, help="output directory (default results/roar/<dataset>-<model>)")
    parser.add_argument("--n-jobs", type=int, default=-1, help="parallel retraining workers (-1: all cores)")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://HOST:8786")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    methods = list(METHODS) if args.methods.strip() == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        model = default_config(args.model, args.dataset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
        settings = RoarSettings(
            dataset=args.dataset, methods=methods, fractions=args.fractions, repeats=args.repeats,
            modes=MODES if args.mode == "both" else (args.mode,), model=model, target=args.target,
            rank=args.rank, seed=args.seed, data_dir=args.data_dir, max_train=args.max_train,
            max_test=args.max_test,
            out=args.out or f"results/roar/{args.dataset}-{args.model}", n_jobs=args.n_jobs,
            scheduler=args.scheduler, progress=not args.no_progress,
        )
        run_roar(settings)
    except (ValueError, OSError) as err:  # bad settings or data, a corrupt results file, no scheduler
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"\nwrote {settings.out}/results.csv, summary.csv, roar.png, methods.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
