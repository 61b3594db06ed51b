"""Sparse explanations and pruning: L1 on every layer's Shapley values, then threshold pruning.

    python -m benchmarks sparsity --dataset adult --data-dir $SHAPNET_DATA --out results/sparsity/adult
    python -m benchmarks sparsity --dataset mnist --data-dir $SHAPNET_DATA --max-train 6000 --epochs 1 \\
        --out results/sparsity/mnist

For every penalty strength ``l1`` (and residual on/off with ``--residual true,false``) a Deep ShapNet (tables)
or a VisionShapNet (images) is trained with ``l1 * mean |Phi^(l)|`` over all layers added to its loss. Each
trained model then explains the test set under threshold pruning (``Pruning(threshold=t)``: after a layer,
features whose Shapley vector has an L1 norm below ``t`` are set to the reference, so the modules that see
only such features are skipped). For every (residual, l1, threshold) the benchmark records:

- ``score``: test accuracy (R² for regression) of the pruned model (pruning is part of the model);
- ``skipped``: the share of (module, sample) evaluations skipped, overall and per layer (``skipped_l<i>``).
  Without pruning (threshold ``none``, written -1 in the CSV) it is the share that the input's own sparsity
  idles: a feature at its reference stays exactly 0 in every layer, and the kernels always skip a module
  whose inputs are all 0, pruned or not;
- ``explain_speedup``: CPU time of the unpruned explanation over the pruned one, same model, medians of
  interleaved repeats on one thread (so that a slow spell of a shared machine hits both alike);
- ``rel_error``: ``||Phi_pruned - Phi|| / ||Phi||`` against the unpruned explanation of the same model.

``profile.csv`` has, for every cell, each compiled-kernel call of one explanation in order (``kernel``, median
CPU ``ms``, ``busy_pairs`` for a layer): where the time goes, layer by layer.

Trained models are checkpointed and finished rows kept in ``cells.csv``: a killed run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shapnet import DeepShapNet, Pruning, VisionShapNet, load, save
from shapnet.cli import add_dataset_arguments, dataset_from_args, fail_cleanly
from shapnet.datasets import Dataset
from shapnet.progress import progress
from shapnet.training import evaluate, fit

from ._common import (
    ResultFile,
    better,
    comma_separated,
    figure,
    format_table,
    kernel_calls,
    machine_info,
    write_json,
)

__all__ = ["main", "run_sparsity"]


def _threshold(text: str) -> float | None:
    return None if text.strip().lower() in ("none", "0", "") else float(text)


def _boolean(text: str) -> bool:
    if text.strip().lower() not in ("true", "false"):
        raise ValueError(f"expected true or false, got {text!r}")
    return text.strip().lower() == "true"


def _build(dataset: Dataset, residual: bool, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    if dataset.image_shape is not None:
        channels, height, width = dataset.image_shape
        return VisionShapNet(channels, dataset.n_classes, image_size=(height, width), residual=residual)
    return DeepShapNet(dataset.n_features, dataset.n_classes, residual=residual)


def _explain_time(model: torch.nn.Module, x: torch.Tensor, prunings: list[Pruning | None], repeats: int) -> list[float]:
    """Median CPU seconds of ``model.explain(x)`` under each pruning, interleaved within every repeat."""
    times: list[list[float]] = [[] for _ in prunings]
    with torch.no_grad():
        for index in range(repeats + 1):  # the first round warms up
            for pruning, sink in zip(prunings, times):
                model.prune = pruning
                start = time.process_time()
                model.explain(x)
                if index:
                    sink.append(time.process_time() - start)
    model.prune = None
    return [statistics.median(t) for t in times]


def _kernel_profile(model: torch.nn.Module, x: torch.Tensor, pruning: Pruning | None, repeats: int) -> list[dict]:
    """Each compiled-kernel call of one ``model.explain(x)``: median CPU ms over ``repeats`` and busy pairs.

    Shows where a pruned explanation's time goes (which layers, and whether pruning has a pass of its own).
    """
    model.prune = pruning
    runs = []
    with torch.no_grad(), kernel_calls() as calls:
        for index in range(repeats + 1):  # the first round warms up
            calls.clear()
            model.explain(x)
            if index:
                runs.append(list(calls))
    model.prune = None
    return [
        {"call": i, "kernel": name, "ms": 1000 * statistics.median(run[i][1] for run in runs),
         "busy_pairs": result if name == "relu_modules_forward" else None}
        for i, (name, _, result) in enumerate(runs[0])
    ]


def _columns(n_layers: int) -> dict[str, Callable[[str], Any]]:
    columns: dict[str, Callable[[str], Any]] = {
        "residual": _boolean, "l1": float, "threshold": float, "score": float, "skipped": float,
        "explain_speedup": float, "explain_ms": float, "rel_error": float, "efficiency_error": float,
    }
    columns.update({f"skipped_l{i}": float for i in range(n_layers)})
    return columns


def run_sparsity(
    dataset: Dataset,
    *,
    out: str | Path,
    l1: list[float],
    thresholds: list[float | None],
    residual: list[bool] = (True,),  # type: ignore[assignment]
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 3e-3,
    explain_rows: int = 512,
    repeats: int = 7,
    seed: int = 0,
) -> Any:
    """Train one model per (residual, l1), explain it under every threshold; returns the rows as a DataFrame.

    Args:
        dataset: a :class:`~shapnet.datasets.Dataset` (tables or images).
        out: output folder (``cells.csv``, ``models/``, ``results.json``, ``sparsity.png``).
        l1: penalty strengths on all layers' Shapley values (include 0 for the baseline).
        thresholds: pruning thresholds on a feature's L1 norm (None: no pruning).
        residual: residual connection settings to compare.
        epochs, batch_size, lr: training settings (AdamW, cosine schedule; see :func:`shapnet.training.fit`).
        explain_rows: test rows explained in every timed repeat.
        repeats: interleaved timing repeats.
        seed: weights' initialisation and shuffling.
    """
    out = Path(out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    task = dataset.task
    probe = _build(dataset, residual[0], seed)
    n_layers = len(probe.layers) if isinstance(probe, DeepShapNet) else len(probe.stages)
    results = ResultFile(out / "cells.csv", _columns(n_layers), key=("residual", "l1", "threshold"),
                         what="sparsity cells")
    profile = ResultFile(out / "profile.csv", {
        "residual": _boolean, "l1": float, "threshold": float, "call": int, "kernel": str, "ms": float,
        "busy_pairs": int}, key=("residual", "l1", "threshold", "call"), what="kernel profile")
    profiled = {(p["residual"], p["l1"], p["threshold"]) for p in profile.read()}
    done = {results.key_of(r) for r in results.read()}
    X_test = torch.as_tensor(dataset.X_test)
    x_timed = X_test[:explain_rows]
    cells = [(r, s) for r in residual for s in l1]
    for r, strength in progress(cells, desc="models", unit="model"):
        todo = [t for t in thresholds if (r, strength, -1.0 if t is None else t) not in done]
        if not todo:
            continue
        path = out / "models" / f"residual{int(r)}_l1_{strength:g}.pt"
        if path.exists():
            model = load(path)
        else:
            model = _build(dataset, r, seed)
            fit(model, dataset.X_train, dataset.y_train, epochs=epochs, batch_size=batch_size, lr=lr,
                l1=strength, reg_layers="all", seed=seed, task=task, checkpoint=out / "models" / "partial.pt")
            save(model, path)
            (out / "models" / "partial.pt").unlink(missing_ok=True)
        model.eval()
        with torch.no_grad():
            dense = model.explain(X_test).values
        prunings = [None if t is None else Pruning(threshold=t) for t in todo]
        times = _explain_time(model, x_timed, [None, *prunings], repeats)
        for threshold, pruning, seconds in zip(todo, prunings, times[1:]):
            model.prune = pruning
            with torch.no_grad():
                ex = model.explain(X_test)
            score = evaluate(model, dataset.X_test, dataset.y_test, task=task)
            idle = ex
            if pruning is None:
                # A zero threshold prunes nothing but counts the pairs that the input's own sparsity idles
                # (features at the reference stay exactly 0 in every layer): the unpruned model skips those too.
                model.prune = Pruning(threshold=0.0)
                with torch.no_grad():
                    idle = model.explain(X_test)
                model.prune = None
            per_layer = idle.skipped_layers or (0.0,) * n_layers
            row = {
                "residual": r, "l1": strength, "threshold": -1.0 if threshold is None else threshold,
                "score": score, "skipped": idle.skipped or 0.0, "explain_speedup": times[0] / seconds,
                "explain_ms": 1000 * seconds,
                "rel_error": float((ex.values - dense).norm() / dense.norm().clamp_min(1e-30)),
                "efficiency_error": float(ex.efficiency_error().abs().max()),
                **{f"skipped_l{i}": float(v) for i, v in enumerate(per_layer)},
            }
            # The profile first: a cell is done once its row is written, and a rerun skips it.
            if (r, strength, row["threshold"]) not in profiled:
                for call in _kernel_profile(model, x_timed, pruning, repeats):
                    profile.append({"residual": r, "l1": strength, "threshold": row["threshold"], **call})
            results.append(row)
        model.prune = None
    frame = results.frame()
    _report(frame, out, dataset, {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "explain_rows": len(x_timed),
        "repeats": repeats, "seed": seed, "n_train": len(dataset.X_train), "n_test": len(X_test),
    })
    return frame


def _report(frame: Any, out: Path, dataset: Dataset, settings: dict[str, Any]) -> None:
    frame = frame.sort_values(["residual", "l1", "threshold"])
    shown = frame.assign(threshold=frame.threshold.map(lambda t: "none" if t < 0 else f"{t:g}"))
    columns = ["residual", "l1", "threshold", "score", "skipped", "explain_speedup", "rel_error"]
    table = format_table(shown, columns)
    print(f"{dataset.name}: score = {'accuracy' if dataset.task == 'classification' else 'R²'} with pruning; "
          "skipped = share of (module, sample) pairs; explain_speedup = unpruned / pruned CPU time")
    print(table)
    write_json(out / "results.json", {
        "dataset": dataset.name, "task": dataset.task, "settings": settings, "machine": machine_info(),
        "rows": json.loads(frame.to_json(orient="records")),
    })
    with figure(out / "sparsity.png", figsize=(7, 5)) as (_, ax):
        for (residual, strength), group in frame.groupby(["residual", "l1"]):
            group = group.sort_values("explain_speedup")
            label = f"l1={strength:g}" + ("" if residual else ", no residual")
            ax.plot(group.explain_speedup, group.score, marker="o", label=label)
        ax.set_xlabel(better("explanation speed-up over the unpruned model", "higher"))
        ax.set_ylabel(better("test accuracy" if dataset.task == "classification" else "test R²", "higher"))
        ax.set_title(f"{dataset.name}: L1 on all layers' Shapley values, then threshold pruning")
        ax.grid(alpha=0.3)
        ax.legend()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sparsity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser, default="adult")
    parser.add_argument("--l1", type=comma_separated(float, minimum=0), default=[0.0, 0.01, 0.03, 0.1])
    parser.add_argument("--thresholds", type=comma_separated(_threshold), default=[None, 0.01, 0.03, 0.1])
    parser.add_argument("--residual", type=comma_separated(_boolean), default=[True])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--max-train", type=int, default=None, help="subsample the training set")
    parser.add_argument("--max-test", type=int, default=2000, help="test rows explained and scored")
    parser.add_argument("--explain-rows", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/sparsity")
    args = parser.parse_args(argv)
    with fail_cleanly(args.out):
        dataset = dataset_from_args(args, max_train=args.max_train)
        if args.max_test is not None and len(dataset.X_test) > args.max_test:
            keep = np.random.default_rng(args.seed).permutation(len(dataset.X_test))[: args.max_test]
            dataset = Dataset(**{**dataset.__dict__, "X_test": dataset.X_test[keep], "y_test": dataset.y_test[keep]})
        run_sparsity(
            dataset, out=args.out, l1=args.l1, thresholds=args.thresholds, residual=args.residual,
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, explain_rows=args.explain_rows,
            repeats=args.repeats, seed=args.seed,
        )
    return 0
