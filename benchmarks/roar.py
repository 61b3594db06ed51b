"""ROAR / KAR: remove (or keep) the most important features by each attribution method, retrain, and measure.

    python -m benchmarks roar --dataset NAME|PATH [--label-column COL] [--task auto|classification|regression]
        [--methods shapnet,random,...|all] [--fractions 0.1,0.3,0.5,0.7,0.9] [--repeats 3]
        [--mode roar|kar|both] [--model deep|shallow|mlp|package.module:function]
        [--target predicted|label] [--rank abs|signed] [--out DIR] [--n-jobs N] [--scheduler tcp://HOST:PORT]

Protocol (Hooker et al., NeurIPS 2019; DESIGN §9). One model is trained on the original data; every method
explains that model's predicted class (or the label; the single output for regression) for every training
AND test row, once. For a fraction ``t``, each row's features are ranked by the attribution (``|a|`` or
signed; pixels for images) and ``round(t * F)`` of them are replaced by the training mean (per feature; per
channel for images): the most important ones for ROAR, the least important ones for KAR. A fresh model of
the same architecture and training recipe, with a new seed, is trained on the modified training set and
scored on the modified test set: accuracy for classification, R² (and RMSE) for regression. Fraction 0
(the unmodified data) is shared by all methods. A good method makes the ROAR score fall fast (small area
under the curve) and keeps the KAR score high (large area); a random ranking is the control.

Outputs in ``--out``: ``results.csv`` (one line per finished cell, appended and fsynced, so a killed run
resumes where it stopped), ``summary.csv`` (mean and sample std per cell, and the area under each curve),
``roar.png``, ``methods.json`` (settings, machine, budgets, unsupported methods with reasons) and
``cache/`` (the original model and each method's attributions, keyed by :func:`joblib.hash` of everything
they depend on). One run at a time may use an ``--out`` (a lock file; a lock left by a killed run is taken
over).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import joblib
import numpy as np
import torch
from torch import nn

from shapnet.datasets import Dataset, load_dataset
from shapnet.progress import progress as progress_bar

from ._common import (
    ResultFile,
    atomic_write,
    better,
    exit_status,
    figure,
    format_mean_std,
    format_table,
    machine_info,
    mean_std,
    prepare_out,
    write_csv,
    write_json,
)
from .methods import DEFAULT_METHODS, METHODS, MethodSpec, get_method, is_shapnet
from .models import (
    MODEL_KINDS,
    ModelConfig,
    default_config,
    instantiate,
    model_factory,
    outputs,
    reference_row,
    score,
    single_thread,
    train_model,
    training_mean,
    weights_hash,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "RESULT_COLUMNS",
    "Cell",
    "ClusterLost",
    "RoarResult",
    "RoarSettings",
    "RunLocked",
    "area_under_curve",
    "exclusive_out",
    "main",
    "read_results",
    "removal_mask",
    "run_roar",
    "summarize",
]

MODES: tuple[str, ...] = ("roar", "kar")
BASELINE = "baseline"  # method name of the shared fraction-0 cells (mode "none")
DEFAULT_FRACTIONS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
#: What a cell's score is, per task: the column prefix in ``summary.csv`` and the axis label.
METRICS: dict[str, tuple[str, str]] = {
    "classification": ("accuracy", "test accuracy"),
    "regression": ("r2", "test R²"),
}


class RunLocked(RuntimeError):
    """Another live run holds the output directory."""


class ClusterLost(RuntimeError):
    """The Dask cluster went away (no workers, or the scheduler closed) before every cell finished."""


# --------------------------------------------------------------------------- #
# Settings and cells
# --------------------------------------------------------------------------- #
@dataclass
class RoarSettings:
    """Everything a ROAR/KAR run depends on.

    Attributes:
        dataset: a :class:`shapnet.datasets.Dataset` (e.g. from ``from_arrays``/``from_frame``), or a name or
            path for :func:`shapnet.datasets.load_dataset` (a registry name, a ``.csv``/``.parquet``/``.npz``
            file, an IDX image folder).
        methods: method names (see :mod:`benchmarks.methods`) or :class:`~benchmarks.methods.MethodSpec`
            objects (e.g. a test-only oracle).
        fractions: removal fractions in ``(0, 1)``; 0 (the unmodified data) is always added.
        repeats: retrains per cell, each with its own seed.
        modes: ``("roar",)``, ``("kar",)`` or both.
        model: the training recipe, and the architecture when ``model_factory`` is None
            (:class:`benchmarks.models.ModelConfig`).
        model_factory: a zero-argument callable returning an untrained ``nn.Module`` (logits ``(B, K)``, or
            ``(B, 1)`` for regression): the user's own architecture, retrained in every cell (seeded by the
            caller). A ShapNet's reference is set to the training mean. None: ``model.kind``.
        model_name: how outputs name the model (default: the kind, or the factory's qualified name).
        target: explain the ``"predicted"`` class of the original model or the true ``"label"``
            (regression: always the single output).
        rank: rank features by ``"abs"`` attribution or by the ``"signed"`` value (largest first).
        seed: seeds the original model, the attributions, tie-breaking and (offset) every retrain.
        data_dir: data root for registry datasets that read files (default ``$SHAPNET_DATA``).
        max_train: keep at most this many training rows (None: all; when ``dataset`` is loaded here).
        max_test: keep the first this many test rows (None: all; the split is already shuffled).
        out: output directory.
        n_jobs: joblib workers for the retraining cells (-1: all cores); ignored with ``scheduler``.
        scheduler: a Dask scheduler address: every cell runs on that cluster.
        worker_timeout: seconds a Dask cluster may have no worker before the run stops (finished cells kept).
        progress: show progress of the original model's training, the attributions and the cells.
        chunk_size: at most this many rows per attribution call (fewer for inputs over 128 elements), which
            bounds the memory of the sampling methods. Chunk ``i`` is seeded ``seed + i``.
    """

    dataset: str | os.PathLike | Dataset = "breast_cancer"
    methods: Sequence[str | MethodSpec] = DEFAULT_METHODS
    fractions: Sequence[float] = DEFAULT_FRACTIONS
    repeats: int = 3
    modes: Sequence[str] = MODES
    model: ModelConfig = field(default_factory=ModelConfig)
    model_factory: Callable[[], nn.Module] | None = None
    model_name: str | None = None
    target: Literal["predicted", "label"] = "predicted"
    rank: Literal["abs", "signed"] = "abs"
    seed: int = 0
    data_dir: str | None = None
    max_train: int | None = None
    max_test: int | None = None
    out: str | os.PathLike = "results/roar"
    n_jobs: int = 1
    scheduler: str | None = None
    worker_timeout: float = 60.0
    progress: bool = True
    chunk_size: int = 256

    def __post_init__(self) -> None:
        fractions = [float(f) for f in self.fractions]
        bad = [f for f in fractions if not 0.0 < f < 1.0]
        if bad or not fractions:
            raise ValueError(
                "fractions must be numbers strictly between 0 and 1 (0 is always added), "
                f"got {list(self.fractions)}."
            )
        self.fractions = tuple(sorted({round(f, 6) for f in fractions}))
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
        if self.model_factory is not None and not callable(self.model_factory):
            raise TypeError(
                f"model_factory must be a callable returning an nn.Module, got {self.model_factory!r}."
            )
        if not self.methods:
            raise ValueError("methods must name at least one attribution method.")
        specs = [m if isinstance(m, MethodSpec) else get_method(m) for m in self.methods]
        names = [s.name for s in specs]
        if len(set(names)) != len(names) or BASELINE in names:
            raise ValueError(f"method names must be unique and not {BASELINE!r}, got {names}.")
        self.methods = tuple(specs)
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {self.chunk_size!r}.")
        if self.max_test is not None and (
            isinstance(self.max_test, bool) or not isinstance(self.max_test, int) or self.max_test < 1
        ):
            raise ValueError(f"max_test must be a positive int or None, got {self.max_test!r}.")
        if not self.worker_timeout > 0:
            raise ValueError(
                f"worker_timeout must be a positive number of seconds, got {self.worker_timeout!r}."
            )

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


@dataclass
class RoarResult:
    """What :func:`run_roar` returns (and wrote to ``out``).

    Attributes:
        results: one row per cell (``results.csv``): method, mode, fraction, repeat, score (accuracy or
            R²), rmse (regression), seconds, seed, worker, config.
        summary: one row per (method, mode) (``summary.csv``): the mean and sample std of the score per
            fraction and the area under the curve (lower is better for ROAR, higher for KAR).
        methods: per method: library, budget, status, reason, attribution seconds.
        unsupported: ``{method: reason}`` for the methods that could not explain the model.
        metric: ``"accuracy"`` or ``"r2"``.
        out: the output directory.
    """

    results: pd.DataFrame
    summary: pd.DataFrame
    methods: dict[str, dict[str, Any]]
    unsupported: dict[str, str]
    metric: str
    out: Path


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
    k = round(fraction * f)
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


# --------------------------------------------------------------------------- #
# Results file (benchmarks._common.ResultFile: append-only, fsynced, validated on read)
# --------------------------------------------------------------------------- #
RESULT_COLUMNS: dict[str, Callable[[str], Any]] = {
    "method": str,
    "mode": str,
    "fraction": float,
    "repeat": int,
    "score": float,
    "rmse": float,
    "attribution_seconds": float,
    "retrain_seconds": float,
    "seed": int,
    "worker": str,
    "config": str,
}


def _check_row(row: dict[str, Any]) -> None:
    if not row["method"]:
        raise ValueError("empty method name")
    if row["mode"] not in (*MODES, "none"):
        raise ValueError(f"mode must be roar, kar or none, got {row['mode']!r}")
    if None in (row["fraction"], row["repeat"], row["score"], row["seed"]):
        raise ValueError("fraction, repeat, score and seed must not be empty")
    # accuracy is in [0, 1]; R² is at most 1 (and may be negative)
    if not 0.0 <= row["fraction"] < 1.0 or row["repeat"] < 0 or not row["score"] <= 1.0:
        raise ValueError("fraction must be in [0, 1), repeat >= 0 and score (accuracy or R²) <= 1")


def _results_file(path: str | os.PathLike) -> ResultFile:
    return ResultFile(
        path,
        RESULT_COLUMNS,
        key=("method", "mode", "fraction", "repeat"),
        validate=_check_row,
        what="ROAR cells",
    )


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Parse ``results.csv`` into dicts, validating every line.

    An unterminated last line (a write cut short by a kill) is dropped from the file with a warning.

    Raises:
        ValueError: naming the file and line number of the first malformed or duplicated line.
    """
    return _results_file(path).read()


# --------------------------------------------------------------------------- #
# The output directory: one run at a time
# --------------------------------------------------------------------------- #
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return False
    return True


def _owner_text(owner: dict[str, Any]) -> str:
    here = owner.get("host") == socket.gethostname()
    state = (
        ("running" if _pid_alive(int(owner.get("pid", -1))) else "not running") if here else "on another host"
    )
    return f"pid {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}, {state}"


@contextlib.contextmanager
def exclusive_out(out: str | os.PathLike, log: Callable[[str], None] = print) -> Iterator[Path]:
    """Create ``out`` and hold an exclusive lock on it for the block.

    The lock is an OS file lock (``filelock``) on ``out/.roar.lock``: the OS drops it when its process
    dies, however it dies, so a killed run never blocks the next one. ``out/.roar.lock.json`` names the
    holder for the refusal message; finding it while the lock is free means the last run was killed.

    Raises:
        RunLocked: another live run holds the lock.
    """
    from filelock import FileLock, Timeout

    out = prepare_out(out)
    lock = FileLock(out / ".roar.lock", timeout=0)
    owner_path = out / ".roar.lock.json"
    try:
        lock.acquire()
    except Timeout:
        try:
            owner = _owner_text(json.loads(owner_path.read_text()))
        except (OSError, ValueError):
            owner = "owner unknown"
        raise RunLocked(
            f"another ROAR run is using {out} ({owner}); wait for it to finish or use another --out."
        ) from None
    try:
        if owner_path.exists():
            with contextlib.suppress(OSError, ValueError):
                log(
                    f"taking over {out}: the run that held it "
                    f"({_owner_text(json.loads(owner_path.read_text()))}) "
                    "ended without releasing it (killed); its finished cells are kept."
                )
        write_json(
            owner_path,
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            },
        )
        yield out
    finally:
        with contextlib.suppress(OSError):
            owner_path.unlink()
        lock.release()


# --------------------------------------------------------------------------- #
# Step 1: prepare (data, model factory, keys; nothing written)
# --------------------------------------------------------------------------- #
@dataclass
class _Run:
    settings: RoarSettings
    data: Dataset
    factory: Callable[[], nn.Module]
    model_name: str
    task: str
    n_features: int  # ranked features: pixels for images
    data_key: str
    model_key: str
    key: str
    target_scale: float = 1.0  # regression: the models learn y / scale (centred); RMSE is reported times it

    @property
    def metric(self) -> str:
        return METRICS[self.task][0]


def _hash(*parts: Any) -> str:
    return str(joblib.hash(parts))[:16]


def _load(settings: RoarSettings) -> Dataset:
    if isinstance(settings.dataset, Dataset):
        data = settings.dataset
    else:
        data = load_dataset(
            settings.dataset, settings.data_dir, random_state=settings.seed, max_train=settings.max_train
        )
    if settings.max_test is not None:
        data = dataclasses.replace(
            data, X_test=data.X_test[: settings.max_test], y_test=data.y_test[: settings.max_test]
        )
    return data


def _fresh_model(factory: Callable[[], nn.Module], seed: int, X_train: np.ndarray) -> nn.Module:
    """``factory()`` seeded with ``seed``; a ShapNet's reference set to the training mean (every method's
    baseline), so that all methods explain the same game."""
    model = instantiate(factory, seed)
    reference = getattr(model, "reference", None)
    if is_shapnet(model) and isinstance(reference, torch.Tensor):
        for value in (reference_row(X_train), training_mean(X_train)):
            if tuple(reference.shape) == value.shape:
                with torch.no_grad():
                    reference.copy_(torch.as_tensor(value))
                break
    return model


def _standardised_target(data: Dataset) -> tuple[Dataset, float]:
    """Regression: ``data`` with ``y`` centred and scaled by the training mean and std, and that std.

    Every model then starts near the target's scale whatever its units (e.g. diabetes' 25 to 346); R² is
    unchanged by the affine map, and RMSE is reported in the target's units.
    """
    if data.task != "regression":
        return data, 1.0
    mean, std = float(np.mean(data.y_train)), float(np.std(data.y_train))
    std = std if std > 0 else 1.0
    scaled = {k: ((getattr(data, k) - mean) / std).astype(np.float32) for k in ("y_train", "y_test")}
    return dataclasses.replace(data, **scaled), std


def prepare(settings: RoarSettings) -> _Run:
    """Load the data and check the model: every failure a user can cause happens here, before any write."""
    data, target_scale = _standardised_target(_load(settings))
    if settings.model_factory is not None:
        factory = settings.model_factory
        name = settings.model_name or getattr(factory, "__qualname__", type(factory).__name__)
    else:
        factory = model_factory(settings.model.kind, data, settings.model)
        name = settings.model_name or settings.model.kind
    probe = _fresh_model(factory, settings.seed, data.X_train)
    n_outputs = data.n_classes
    try:
        out_shape = tuple(outputs(probe, data.X_train[:2]).shape)
    except Exception as err:  # an architecture that does not fit the data is bad input
        raise ValueError(
            f"the model {name} fails on inputs of shape {tuple(data.X_train.shape[1:])} ({data.name}): "
            f"{type(err).__name__}: {err}"
        ) from None
    if out_shape != (min(2, len(data.X_train)), n_outputs):
        raise ValueError(
            f"the model {name} maps inputs {tuple(data.X_train.shape[1:])} to outputs {out_shape[1:]}, "
            "expected "
            f"({n_outputs},): {'one logit per class' if data.task == 'classification' else 'one output'} of "
            f"{data.name}."
        )
    image = data.X_train.ndim == 4
    data_key = _hash(data.name, data.X_train, data.y_train, data.X_test, data.y_test)
    model_key = _hash(settings.model.to_dict(), type(probe).__name__, repr(probe), weights_hash(probe))
    key = _hash(data_key, model_key, settings.target, settings.rank, settings.seed)
    return _Run(
        settings=settings,
        data=data,
        factory=factory,
        model_name=name,
        task=data.task,
        n_features=int(np.prod(data.X_train.shape[2:])) if image else data.n_features,
        data_key=data_key,
        model_key=model_key,
        key=key,
        target_scale=target_scale,
    )


# --------------------------------------------------------------------------- #
# Cache entries: safe formats (torch weights_only, npz without pickle); a corrupt entry is recomputed
# --------------------------------------------------------------------------- #
def _cached(
    path: Path,
    what: str,
    load: Callable[[Path], Any],
    compute: Callable[[], Any],
    save: Callable[[Any], Callable[[Any], None]],
) -> Any:
    if path.exists():
        try:
            return load(path)
        except Exception as err:
            warnings.warn(
                f"{path}: the cached {what} is corrupt ({type(err).__name__}: {err}); recomputing it.",
                stacklevel=3,
            )
    value = compute()
    atomic_write(path, save(value))
    return value


# --------------------------------------------------------------------------- #
# Step 2: the original model
# --------------------------------------------------------------------------- #
def _original_model(run: _Run, cache: Path, log: Callable[[str], None]) -> nn.Module:
    """The model every method explains, trained once (seed ``settings.seed``) and cached."""
    settings, data = run.settings, run.data
    model = _fresh_model(run.factory, settings.seed, data.X_train)

    def load(path: Path) -> nn.Module:
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()

    def train() -> nn.Module:
        log(
            f"training the original {run.model_name} model on {data.name} ({len(data.X_train)} rows, "
            f"{settings.model.epochs} epochs)"
        )
        with single_thread():  # bit-reproducible, whatever the machine's thread count
            train_model(
                model,
                data.X_train,
                data.y_train,
                settings.model,
                seed=settings.seed,
                task=run.task,
                progress=settings.progress,
            )
        return model.eval()

    return _cached(
        cache / f"model-{_hash(run.key, 'model')}.pt",
        "original model",
        load,
        train,
        lambda m: lambda fh: torch.save(m.state_dict(), fh),
    )


# --------------------------------------------------------------------------- #
# Step 3: attributions, once per method
# --------------------------------------------------------------------------- #
@dataclass
class _Method:
    spec: MethodSpec
    info: dict[str, Any]
    key: str | None = None
    orders: tuple[np.ndarray, np.ndarray] | None = None  # (train, test) importance orders


def _attribute(
    spec: MethodSpec,
    model: nn.Module,
    X: np.ndarray,
    target: np.ndarray,
    background: np.ndarray,
    seed: int,
    chunk_size: int,
    on_chunk: Callable[[], None] = lambda: None,
) -> np.ndarray:
    """``spec``'s attributions ``(N, *input_shape)`` in chunks (chunk ``i`` seeded ``seed + i``)."""
    bg = torch.as_tensor(background).unsqueeze(0)
    out = []
    for i, start in enumerate(range(0, len(X), chunk_size)):
        x = torch.as_tensor(X[start : start + chunk_size])
        t = torch.as_tensor(target[start : start + chunk_size])
        out.append(spec(model, x, t, background=bg, seed=seed + i).numpy())
        on_chunk()
    return np.concatenate(out)


def _chunk_rows(X: np.ndarray, chunk_size: int) -> int:
    """Rows per attribution call: fewer for large inputs, as sampling methods multiply each chunk by their
    sample count."""
    return max(8, min(chunk_size, 2**15 // max(1, int(np.prod(X.shape[1:])))))


def _attributions(
    run: _Run,
    spec: MethodSpec,
    model: nn.Module,
    targets: np.ndarray,
    key: str,
    cache: Path,
    on_chunk: Callable[[], None],
) -> tuple[np.ndarray, np.ndarray, float]:
    """(train, test) attributions and their wall time, from ``cache`` or computed and cached."""
    data, settings = run.data, run.settings
    n_train = len(data.X_train)

    def load(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
        with np.load(path, allow_pickle=False) as z:
            train, test, seconds = z["train"], z["test"], float(z["seconds"])
        if train.shape != data.X_train.shape or test.shape != data.X_test.shape:
            raise ValueError(
                f"shapes {train.shape} and {test.shape}, expected {data.X_train.shape} and "
                f"{data.X_test.shape}"
            )
        return train, test, seconds

    def compute() -> tuple[np.ndarray, np.ndarray, float]:
        X = np.concatenate([data.X_train, data.X_test])
        tic = time.perf_counter()
        attr = _attribute(
            spec,
            model,
            X,
            targets,
            reference_row(data.X_train),
            settings.seed,
            _chunk_rows(X, settings.chunk_size),
            on_chunk,
        )
        seconds = time.perf_counter() - tic
        if not np.isfinite(attr).all():
            raise ArithmeticError(
                f"returned non-finite attributions ({int((~np.isfinite(attr)).sum())} entries)"
            )
        return attr[:n_train], attr[n_train:], seconds

    def save(value: tuple[np.ndarray, np.ndarray, float]) -> Callable[[Any], None]:
        return lambda fh: np.savez(fh, train=value[0], test=value[1], seconds=np.float64(value[2]))

    return _cached(cache / f"attr-{spec.name}-{key}.npz", f"attributions of {spec.name}", load, compute, save)


class _MethodFailed(Exception):
    pass


def _attribute_all(run: _Run, model: nn.Module, cache: Path, log: Callable[[str], None]) -> list[_Method]:
    """Each method explains the original model once; a method that cannot, or fails, is unsupported."""
    settings, data = run.settings, run.data
    model_hash = weights_hash(model)
    if run.task == "regression":  # one output: explain it
        targets = np.zeros(len(data.X_train) + len(data.X_test), dtype=np.int64)
    elif settings.target == "predicted":
        targets = np.concatenate(
            [outputs(model, data.X_train).argmax(1), outputs(model, data.X_test).argmax(1)]
        )
    else:
        targets = np.concatenate([data.y_train, data.y_test]).astype(np.int64)
    methods = []
    n_rows = len(data.X_train) + len(data.X_test)
    chunks = math.ceil(n_rows / _chunk_rows(data.X_train, settings.chunk_size))
    # One bar over every method's chunks (a cached or unsupported method counts as done at once).
    bar = progress_bar(
        total=chunks * len(settings.specs), desc="attributions", unit="chunk", disable=not settings.progress
    )
    for number, spec in enumerate(settings.specs, start=1):
        bar.set_postfix_str(spec.name)
        info: dict[str, Any] = {
            "library": spec.library,
            "description": spec.description,
            "budget": dict(spec.budget),
            "caveat": spec.caveat,
            "status": "ok",
            "reason": None,
            "attribution_seconds": None,
        }
        method = _Method(spec, info)
        methods.append(method)
        reason = spec.supports(model, run.n_features)
        if reason is None:
            # The chunk size decides the per-chunk seeds of the stochastic methods, so it is part of the key.
            key = _hash(
                spec.name,
                dict(spec.budget),
                model_hash,
                run.data_key,
                settings.target,
                settings.seed,
                settings.chunk_size,
            )
            try:
                # Amortised methods (FastSHAP) train once for this model; the cost is reported apart.
                info.update(spec.prepare_for(model, data.X_train, background=reference_row(data.X_train),
                                             seed=settings.seed, cache_dir=cache))
                train, test, seconds = _attributions(
                    run, spec, model, targets, key, cache, lambda: bar.update(1)
                )
            except Exception as err:
                reason = f"failed on this model: {type(err).__name__}: {err}".strip()
            else:
                info["attribution_seconds"] = seconds
                method.key = key
                rank_seed = settings.seed + 7
                method.orders = (
                    importance_order(feature_scores(train, settings.rank), rank_seed),
                    importance_order(feature_scores(test, settings.rank), rank_seed + 1),
                )
                log(f"  {spec.name:<24} attributions in {seconds:7.2f} s")
        if reason is not None:
            info.update(status="unsupported", reason=reason)
            log(f"  {spec.name:<24} UNSUPPORTED: {reason}")
        bar.update(chunks * number - bar.n)
    bar.close()
    return methods


# --------------------------------------------------------------------------- #
# Step 4: the cells (each runs in a worker)
# --------------------------------------------------------------------------- #
def _where() -> str:
    """The Dask worker running this task, or ``pid N`` outside Dask."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def run_cell(
    cell: Cell,
    factory: Callable[[], nn.Module],
    config: ModelConfig,
    seed: int,
    task: str,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    order_train: np.ndarray | None,
    order_test: np.ndarray | None,
) -> dict[str, Any]:
    """Modify the data for ``cell``, train a fresh model and return its test score.

    The arrays are separate arguments so that joblib memory-maps them (loky) or Dask ships them once per
    run (scattered) instead of copying them into every task.
    """
    # One intra-op thread: workers share the cores, and the result depends on the seed only.
    torch.set_num_threads(1)
    fill = training_mean(X_train)  # of the original data: the fill value and the ShapNet reference
    model = _fresh_model(factory, retrain_seed(seed, cell.repeat), X_train)
    if cell.method != BASELINE:
        X_train = apply_removal(X_train, removal_mask(order_train, cell.fraction, cell.mode), fill)
        X_test = apply_removal(X_test, removal_mask(order_test, cell.fraction, cell.mode), fill)
    tic = time.perf_counter()
    train_model(model, X_train, y_train, config, seed=retrain_seed(seed, cell.repeat), task=task)
    return {
        "cell": cell,
        **score(model, X_test, y_test, task),
        "retrain_seconds": time.perf_counter() - tic,
        "seed": retrain_seed(seed, cell.repeat),
        "worker": _where(),
    }


def _cells(settings: RoarSettings, methods: Sequence[str]) -> list[Cell]:
    cells = [Cell(BASELINE, "none", 0.0, r) for r in range(settings.repeats)]
    for r in range(settings.repeats):
        for name in methods:
            for mode in settings.modes:
                cells += [Cell(name, mode, f, r) for f in settings.fractions]
    return cells


def _on_joblib(tasks: list[tuple], n_jobs: int) -> Iterator[dict[str, Any]]:
    """``run_cell(*task)`` for each task in local processes (loky), yielded as they finish."""
    from joblib import Parallel, delayed

    yield from Parallel(n_jobs=n_jobs, return_as="generator_unordered")(delayed(run_cell)(*t) for t in tasks)


def _on_dask(
    tasks: list[tuple], scheduler: str, worker_timeout: float, log: Callable[[str], None]
) -> Iterator[dict[str, Any]]:
    """``run_cell(*task)`` for each task on the Dask cluster at ``scheduler``, yielded as they finish.

    Every task goes to the cluster, whatever its size (joblib's Dask backend runs ``n_jobs=1`` in the
    client). Losing the cluster raises :class:`ClusterLost`; the caller has saved each finished cell.
    """
    from distributed import CancelledError, Client, KilledWorker, wait

    lost = (CancelledError, KilledWorker, OSError, TimeoutError)
    try:
        client = Client(scheduler, timeout=f"{worker_timeout}s")
    except lost as err:
        raise ClusterLost(
            f"cannot reach the Dask scheduler at {scheduler} ({type(err).__name__}: {err})."
        ) from None
    try:
        try:
            client.wait_for_workers(1, timeout=worker_timeout)
        except lost:
            raise ClusterLost(
                f"the Dask cluster at {scheduler} has no worker (waited {worker_timeout:g} s)."
            ) from None
        nthreads = client.nthreads()
        log(
            f"running on the Dask cluster at {scheduler}: {len(nthreads)} workers, "
            f"{sum(nthreads.values())} threads"
        )
        # Each array goes into the graph once, as a task of its own rather than scattered data: the
        # scheduler can recompute it on a new worker if the worker holding it is lost.
        shared: dict[int, Any] = {}

        def once(value: Any) -> Any:
            if not isinstance(value, np.ndarray):
                return value
            if id(value) not in shared:
                shared[id(value)] = client.submit(np.asarray, value, pure=False)
            return shared[id(value)]

        pending = {client.submit(run_cell, *[once(v) for v in task], pure=False) for task in tasks}
        idle_since = None
        while pending:
            try:
                try:
                    done, pending = wait(pending, timeout=1.0, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    done = set()
                for future in done:
                    yield future.result()
                has_workers = True if done else bool(client.scheduler_info()["workers"])
            except lost as err:
                raise ClusterLost(_lost_message(scheduler, f"{type(err).__name__}: {err}")) from None
            idle_since = None if has_workers else (idle_since or time.monotonic())
            if idle_since is not None and time.monotonic() - idle_since > worker_timeout:
                client.cancel(list(pending))
                raise ClusterLost(_lost_message(scheduler, f"no worker for {worker_timeout:g} s"))
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=5)


def _lost_message(scheduler: str, why: str) -> str:
    return (
        f"lost the Dask cluster at {scheduler} ({why}). Every finished cell is saved in results.csv: "
        "run the same command again (with a working --scheduler, or without one) to resume."
    )


def _run_cells(
    run: _Run,
    methods: list[_Method],
    results: ResultFile,
    existing: list[dict[str, Any]],
    on_cell: Callable[[dict[str, Any]], None] | None,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Run the unfinished cells and append each result to ``results`` as soon as it arrives."""
    settings, data = run.settings, run.data
    ok = {m.spec.name: m for m in methods if m.orders is not None}
    config_of = {BASELINE: run.key, **{name: f"{run.key}-{m.key}" for name, m in ok.items()}}
    for row in existing:  # a method's budget changed: its old rows no longer describe these attributions
        if row["method"] in config_of and row["config"] != config_of[row["method"]]:
            raise ValueError(
                f"{results.path}, line {row['line']}: method {row['method']!r} was run with other "
                "attributions "
                f"(config {row['config']!r}, now {config_of[row['method']]!r}: its budget changed). Use "
                "another --out or delete that method's lines."
            )
    done = {results.key_of(r): r for r in existing}
    cells = _cells(settings, list(ok))
    pending = [c for c in cells if c.key not in done]
    tasks = [
        (
            c,
            run.factory,
            settings.model,
            settings.seed,
            run.task,
            data.X_train,
            data.y_train,
            data.X_test,
            data.y_test,
            *(ok[c.method].orders if c.method != BASELINE else (None, None)),
        )  # type: ignore[misc]
        for c in pending
    ]
    where = f"Dask cluster {settings.scheduler}" if settings.scheduler else f"n_jobs={settings.n_jobs}"
    log(f"{len(cells)} cells, {len(cells) - len(pending)} already done, {len(pending)} to run ({where})")
    threads = torch.get_num_threads()
    bar = progress_bar(
        total=len(cells),
        initial=len(cells) - len(pending),
        desc="roar cells",
        unit="cell",
        disable=not settings.progress,
    )
    try:
        stream = (
            ()
            if not tasks
            else _on_dask(tasks, settings.scheduler, settings.worker_timeout, log)
            if settings.scheduler
            else _on_joblib(tasks, settings.n_jobs)
        )
        for result in stream:
            cell: Cell = result["cell"]
            row = {
                "method": cell.method,
                "mode": cell.mode,
                "fraction": cell.fraction,
                "repeat": cell.repeat,
                "score": result["score"],
                "rmse": None if run.task != "regression" else result["rmse"] * run.target_scale,
                "attribution_seconds": ok[cell.method].info["attribution_seconds"]
                if cell.method in ok
                else 0.0,
                "retrain_seconds": result["retrain_seconds"],
                "seed": result["seed"],
                "worker": result["worker"],
                "config": config_of[cell.method],
            }
            done[cell.key] = results.append(row)  # exactly what a resumed run reads back
            bar.update(1)
            if on_cell is not None:
                on_cell(row)
    finally:
        bar.close()
        torch.set_num_threads(threads)  # run_cell sets 1 thread, also in this process (n_jobs=1)
    return [done[c.key] for c in cells]


# --------------------------------------------------------------------------- #
# The run
# --------------------------------------------------------------------------- #
def run_roar(
    settings: RoarSettings,
    *,
    on_cell: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] = print,
) -> RoarResult:
    """Run (or resume) a ROAR/KAR benchmark and write its outputs into ``settings.out``.

    Args:
        settings: the run.
        on_cell: called with each result row right after it was appended to ``results.csv`` (a test hook:
            raising from it interrupts the run, like a kill).
        log: where progress lines go.

    Returns:
        A :class:`RoarResult` with the results and summary tables as pandas DataFrames.

    Raises:
        ValueError: bad settings or data (raised before anything is written), a corrupt ``results.csv``, or
            an ``--out`` holding results of other settings.
        RunLocked: another run is using ``settings.out``.
        ClusterLost: the Dask cluster went away (the finished cells are saved; rerun to resume).
    """
    tic = time.perf_counter()
    run = prepare(settings)
    with exclusive_out(settings.out, log) as out:
        results = _results_file(out / "results.csv")
        existing = _check_existing(results, run)
        cache = prepare_out(out / "cache")
        model = _original_model(run, cache, log)
        original = score(model, run.data.X_test, run.data.y_test, run.task)
        if "rmse" in original:
            original["rmse"] *= run.target_scale
        log(
            f"original {run.model_name} model on {run.data.name}: "
            f"{METRICS[run.task][1]} {original['score']:.4f}"
        )
        methods = _attribute_all(run, model, cache, log)
        payload = _payload(run, methods, original, weights_hash(model))
        write_json(out / "methods.json", payload)
        rows = _run_cells(run, methods, results, existing, on_cell, log)
        report = _report(run, methods, rows, out, log)
        payload["wall_seconds"] = time.perf_counter() - tic
        write_json(out / "methods.json", payload)
        return report


def _check_existing(results: ResultFile, run: _Run) -> list[dict[str, Any]]:
    existing = results.read()
    for row in existing:
        if row["config"] != run.key and not row["config"].startswith(run.key + "-"):
            raise ValueError(
                f"{results.path}, line {row['line']}: this cell was computed with other settings (config "
                f"{row['config']!r}, this run {run.key!r}: dataset, model, training recipe, target, rank or "
                "seed differ). Use another --out, or the settings of the earlier run."
            )
    return existing


def _payload(
    run: _Run, methods: list[_Method], original: dict[str, float], model_hash: str
) -> dict[str, Any]:
    settings, data = run.settings, run.data
    info = {m.spec.name: m.info for m in methods}
    return {
        "benchmark": "roar",
        "settings": {
            "dataset": data.name,
            "task": run.task,
            "metric": run.metric,
            "class_names": data.class_names,
            "n_train": len(data.X_train),
            "n_test": len(data.X_test),
            "input_shape": list(data.X_train.shape[1:]),
            "n_features_ranked": run.n_features,
            "n_outputs": data.n_classes,
            "methods": [s.name for s in settings.specs],
            "fractions": list(settings.fractions),
            "repeats": settings.repeats,
            "modes": list(settings.modes),
            "model": run.model_name,
            "training": settings.model.to_dict(),
            "target": "the single output" if run.task == "regression" else settings.target,
            "target_scale": run.target_scale if run.task == "regression" else None,
            "rank": settings.rank,
            "seed": settings.seed,
            "retrain_seeds": [retrain_seed(settings.seed, r) for r in range(settings.repeats)],
            "fill": "training mean per " + ("channel" if data.X_train.ndim == 4 else "feature"),
            "baseline": "the training mean (the ShapNet reference) for every method",
            "max_train": settings.max_train,
            "max_test": settings.max_test,
            "n_jobs": settings.n_jobs,
            "scheduler": settings.scheduler,
            "chunk_size": settings.chunk_size,
        },
        "config": run.key,
        "original_model": {**{f"test_{k}": v for k, v in original.items()}, "weights_hash": model_hash},
        "machine": machine_info(),
        "methods": info,
        "unsupported": {name: e["reason"] for name, e in info.items() if e["status"] != "ok"},
    }


# --------------------------------------------------------------------------- #
# Step 5: report (summary, table, plot)
# --------------------------------------------------------------------------- #
def area_under_curve(x: Sequence[float], y: Sequence[float]) -> float:
    """Trapezoidal area under ``y(x)`` (``x`` increasing)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape} and {y.shape}.")
    return float(np.trapezoid(y, x))


def _curves(
    rows: Sequence[dict[str, Any]], method: str, mode: str, xs: Sequence[float], column: str = "score"
) -> dict[int, dict[float, float]]:
    """``{repeat: {fraction: value}}`` of one method and mode, with that repeat's baseline at 0."""
    by_repeat: dict[int, dict[float, float]] = {}
    for r in rows:
        if r["method"] == method and r["mode"] == mode:
            by_repeat.setdefault(r["repeat"], {})[round(r["fraction"], 6)] = r[column]
    for r in rows:
        if r["method"] == BASELINE and r["repeat"] in by_repeat:
            by_repeat[r["repeat"]][0.0] = r[column]
    return by_repeat


def summarize(
    rows: Sequence[dict[str, Any]],
    methods: Sequence[str],
    modes: Sequence[str],
    fractions: Sequence[float],
    metric: str = "accuracy",
) -> pd.DataFrame:
    """One row per (method, mode): mean and sample std of the score per fraction (0 included), and the area.

    The area is the trapezoidal area under score versus fraction over ``[0, max(fractions)]``, computed per
    repeat (with that repeat's baseline at 0) and then averaged; lower is better for ROAR, higher for KAR.
    Columns: ``method, mode, repeats, {metric}_{x}, std_{x}`` per fraction ``x`` (and ``rmse_{x}`` when the
    rows have an RMSE), ``area, area_std``.
    """
    import pandas as pd

    xs = [0.0, *sorted(fractions)]
    has_rmse = any(r.get("rmse") is not None for r in rows)
    out = []
    for mode in modes:
        for method in methods:
            curves = _curves(rows, method, mode, xs)
            row: dict[str, Any] = {"method": method, "mode": mode, "repeats": len(curves)}
            for x in xs:
                row[f"{metric}_{x:g}"], row[f"std_{x:g}"] = mean_std(
                    [c[x] for c in curves.values() if x in c]
                )
                if has_rmse:
                    rmse = _curves(rows, method, mode, xs, "rmse")
                    row[f"rmse_{x:g}"] = mean_std([c[x] for c in rmse.values() if x in c])[0]
            areas = [
                area_under_curve(xs, [c[x] for x in xs]) for c in curves.values() if all(x in c for x in xs)
            ]
            row["area"], row["area_std"] = mean_std(areas)
            out.append(row)
    return pd.DataFrame(out)


def summary_table(
    rows: Sequence[dict[str, Any]],
    summary: pd.DataFrame,
    fractions: Sequence[float],
    metric_label: str = "test accuracy",
) -> str:
    """The printed tables, one per mode, best area first: mean (± sample std if repeated) per fraction."""
    xs = [0.0, *fractions]
    parts = []
    for mode in dict.fromkeys(summary["mode"]):
        direction = "lower" if mode == "roar" else "higher"
        part = summary[summary["mode"] == mode].sort_values(
            "area", ascending=mode == "roar", na_position="last"
        )
        table = []
        for method in part["method"]:
            curves = _curves(rows, method, mode, xs)
            areas = [
                area_under_curve(xs, [c[x] for x in xs]) for c in curves.values() if all(x in c for x in xs)
            ]
            table.append(
                {
                    "method": method,
                    **{f"{x:g}": format_mean_std([c[x] for c in curves.values() if x in c]) for x in xs},
                    better("area", direction): format_mean_std(areas, digits=4),
                }
            )
        replaced = "most" if mode == "roar" else "least"
        parts.append(
            f"{mode.upper()}: {metric_label} after replacing the {replaced} important fraction of features"
            f"\n{format_table(table)}"
        )
    return "\n\n".join(parts)


def plot(
    summary: pd.DataFrame,
    fractions: Sequence[float],
    path: str | os.PathLike,
    title: str = "",
    metric: str = "accuracy",
    metric_label: str = "test accuracy",
) -> None:
    """``roar.png``: score against fraction per method, one panel per mode, random dashed."""
    import matplotlib.pyplot as plt

    modes = list(dict.fromkeys(summary["mode"])) or ["roar"]
    xs = [0.0, *fractions]
    methods = list(dict.fromkeys(summary["method"]))
    colors = {m: plt.get_cmap("tab20")(i % 20) for i, m in enumerate(methods)}
    with figure(path, 1, len(modes), figsize=(5.5 * len(modes), 4), squeeze=False) as (fig, axes):
        for ax, mode in zip(axes[0], modes):
            direction = "lower" if mode == "roar" else "higher"
            for r in summary[summary["mode"] == mode].to_dict("records"):
                mean = np.array([r[f"{metric}_{x:g}"] for x in xs])
                std = np.nan_to_num(np.array([r[f"std_{x:g}"] for x in xs]))
                color = "black" if r["method"] == "random" else colors[r["method"]]
                ax.plot(
                    xs,
                    mean,
                    "--" if r["method"] == "random" else "-",
                    marker="o",
                    ms=3,
                    lw=2 if r["method"] == "shapnet" else 1.3,
                    color=color,
                    label=f"{r['method']} ({r['area']:.3f})",
                )
                ax.fill_between(xs, mean - std, mean + std, alpha=0.12, color=color)
            ax.set_title(f"{mode.upper()}: {'most' if mode == 'roar' else 'least'} important replaced")
            ax.set_xlabel("fraction of features replaced by the training mean")
            ax.set_ylabel(f"{metric_label} after retraining")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, title=f"method: {better('area', direction)}", title_fontsize=7)
        if title:
            fig.suptitle(title)


def _report(
    run: _Run, methods: list[_Method], rows: list[dict[str, Any]], out: Path, log: Callable[[str], None]
) -> RoarResult:
    import pandas as pd

    settings = run.settings
    metric, label = METRICS[run.task]
    names = [m.spec.name for m in methods if m.orders is not None]
    summary = summarize(rows, names, settings.modes, settings.fractions, metric)
    write_csv(out / "summary.csv", summary)
    plot(
        summary,
        settings.fractions,
        out / "roar.png",
        metric=metric,
        metric_label=label,
        title=f"{run.data.name} ({run.task}), {run.model_name} model",
    )
    log("\n" + summary_table(rows, summary, settings.fractions, label))
    unsupported = {m.spec.name: m.info["reason"] for m in methods if m.orders is None}
    if unsupported:
        log("\nunsupported methods:")
        for name, reason in unsupported.items():
            log(f"  {name}: {reason}")
    results = pd.DataFrame(
        [{k: v for k, v in r.items() if k != "line"} for r in rows], columns=list(RESULT_COLUMNS)
    )
    return RoarResult(
        results=results,
        summary=summary,
        methods={m.spec.name: m.info for m in methods},
        unsupported=unsupported,
        metric=metric,
        out=out,
    )


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #
def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.1,0.5,0.9, got {text!r}"
        ) from None


def _parser() -> argparse.ArgumentParser:
    from shapnet.cli import add_dataset_arguments

    parser = argparse.ArgumentParser(prog="python -m benchmarks roar", description=__doc__.split("\n")[0])
    add_dataset_arguments(parser, default="breast_cancer")
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated, or 'all' ({', '.join(METHODS)})",
    )
    parser.add_argument("--fractions", type=_floats, default=list(DEFAULT_FRACTIONS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", choices=("roar", "kar", "both"), default="both")
    parser.add_argument(
        "--model",
        default="deep",
        metavar="deep|shallow|mlp|harsanyi|package.module:function",
        help="deep: DeepShapNet (VisionShapNet for images); shallow: ShallowShapNet; mlp: a plain "
        "MLP; harsanyi: HarsanyiNet (VisionHarsanyiNet for images); package.module:function: your own architecture, called as function(input_shape, "
        "n_outputs) and returning an untrained nn.Module",
    )
    parser.add_argument(
        "--target",
        choices=("predicted", "label"),
        default="predicted",
        help="which class is explained (classification)",
    )
    parser.add_argument("--rank", choices=("abs", "signed"), default="abs")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: per dataset)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--max-train", type=int, default=None, help="keep at most this many training rows")
    parser.add_argument("--max-test", type=int, default=None, help="keep at most this many test rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default=None, help="output directory (default results/roar/<dataset>-<model>)"
    )
    parser.add_argument("--n-jobs", type=int, default=-1, help="parallel retraining workers (-1: all cores)")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://HOST:8786")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    from shapnet.cli import dataset_from_args, fail_cleanly

    args = _parser().parse_args(argv)
    methods = (
        list(METHODS)
        if args.methods.strip() == "all"
        else [m.strip() for m in args.methods.split(",") if m.strip()]
    )
    model_label = args.model.rsplit(":", 1)[-1] if ":" in args.model else args.model
    # Everything a user can get wrong fails here, in one line, before anything is written.
    with fail_cleanly(args.out):
        data = dataset_from_args(args, random_state=args.seed, max_train=args.max_train)
        config = default_config(
            args.model, data.name, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr
        )
        settings = RoarSettings(
            dataset=data,
            methods=methods,
            fractions=args.fractions,
            repeats=args.repeats,
            modes=MODES if args.mode == "both" else (args.mode,),
            model=config,
            model_factory=None if args.model in MODEL_KINDS else model_factory(args.model, data),
            model_name=args.model,
            target=args.target,
            rank=args.rank,
            seed=args.seed,
            max_test=args.max_test,
            out=args.out or f"results/roar/{data.name}-{model_label}",
            n_jobs=args.n_jobs,
            scheduler=args.scheduler,
            progress=not args.no_progress,
        )
        prepare(settings)

    def run() -> str:
        run_roar(settings)
        return f"{settings.out}/results.csv, summary.csv, roar.png, methods.json"

    return exit_status(run, errors=(ValueError, OSError, RunLocked, ClusterLost))


if __name__ == "__main__":
    raise SystemExit(main())
