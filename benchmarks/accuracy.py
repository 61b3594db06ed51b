"""Test accuracy (R² for regression) of ShapNets and HarsanyiNet against an MLP and scikit-learn baselines.

    python -m benchmarks accuracy [--dataset yeast,breast_cancer,wine,adult,digits,diabetes|PATH,...]
        [--models gam,pairs,deep,vision,harsanyi,mlp,logreg,hgb] [--data-dir DIR] [--out results/accuracy]
        [--seeds 0,1,2] [--single-seed adult,mnist] [--vision-checkpoint mnist=results/mnist/run/model.pt]
        [--scale-target]

``--dataset`` takes comma-separated registry names or paths (a CSV/Parquet table, an ``.npz`` file, an IDX
image folder; see ``--label-column``, ``--task``); :func:`run_accuracy` takes
:class:`shapnet.datasets.Dataset` objects. Scores: higher is better (accuracy, or R² for a regression).

Every (dataset, model, seed) cell is trained on the dataset's standardised training split and scored on its
test split (``--scale-target``: a regression's target is standardised too, with the training split's mean
and standard deviation, and the dataset is named ``<name>_scaled_y``; R² does not change under that
scaling, but models that start at output 0 with unit-scale weights reach the target's scale); the table
shows the mean over seeds (± the sample standard deviation when there are several).
Cells are appended to ``cells.csv`` (:class:`benchmarks._common.ResultFile`) as they finish, so a killed run
resumes where it stopped.

Models (all seeded; tabular models see image sets as flattened pixels):

* ``gam``, ``pairs``: :class:`shapnet_adapters.sklearn.ShapNetClassifier` with a ShallowShapNet on single
  features or on all feature pairs;
* ``deep``: the same estimator with a butterfly DeepShapNet (16 channels, hidden 64);
  all ShapNets here are trained plainly (``consistency=0``; the consistency benchmark measures its effect);
* ``vision``: a VisionShapNet trained with :func:`shapnet.training.fit` (image sets only); for MNIST pass a
  model trained by ``python -m shapnet.training`` with ``--vision-checkpoint``;
* ``harsanyi``: a HarsanyiNet (Chen et al., ICML 2023; exact Shapley values in one pass): on tables the
  estimator ``ShapNetClassifier(model="harsanyi")`` (two layers of 100 Harsanyi units) with the recipe of the
  other estimators; on image sets a :class:`~shapnet.VisionHarsanyiNet` built and trained with the ROAR and
  rivals benchmarks' recipe (:func:`benchmarks.models.default_config`, reference the training mean);
* ``mlp``: the ROAR benchmark's plain two-hidden-layer ReLU MLP with about as many parameters as the
  DeepShapNet (on MNIST, as the default VisionShapNet, since no tabular DeepShapNet is run there), trained
  by skorch with the same recipe (AdamW, learning rate, batch size, early stopping) as the ShapNets;
* ``logreg``: scikit-learn's LogisticRegression (LinearRegression for regression);
* ``hgb``: HistGradientBoostingClassifier (Regressor for regression), default settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ._common import (
    ResultFile,
    better,
    comma_separated,
    figure,
    format_mean_std,
    format_table,
    mean_std,
    prepare_out,
    write_outputs,
)

if TYPE_CHECKING:
    import pandas as pd

    from shapnet.datasets import Dataset

__all__ = ["CELL_COLUMNS", "MODELS", "cell_file", "main", "pivot", "run_accuracy", "run_cell"]

DEFAULT_DATASETS = ("yeast", "breast_cancer", "wine", "adult", "digits", "diabetes")
MODELS = ("gam", "pairs", "deep", "vision", "harsanyi", "mlp", "logreg", "hgb")
LABELS = {
    "gam": "ShallowShapNet gam",
    "pairs": "ShallowShapNet pairs",
    "deep": "DeepShapNet",
    "vision": "VisionShapNet",
    "harsanyi": "HarsanyiNet",
    "mlp": "MLP",
    "logreg": "LogisticRegression",
    "hgb": "HistGradientBoosting",
}

#: Training recipe of the neural models per dataset: (max_epochs, batch_size). Early stopping on a 10%
#: validation split (patience 20, the estimators' default, for the ShapNets and HarsanyiNet; 5 for the MLP)
#: usually ends training well before max_epochs on the small sets.
RECIPES = {"adult": (20, 256), "mnist": (10, 256)}
DEFAULT_RECIPE = (100, 64)
SCALED_SUFFIX = "_scaled_y"  # a dataset whose regression target --scale-target standardised
LR = 3e-3
DEEP_KWARGS = {"channels": 16, "hidden": (64,)}
#: VisionShapNet on digits: the recipe of ``python -m shapnet.training --dataset digits`` (lr 1e-2, batch 64).
VISION_EPOCHS = 20


def skip_reason(dataset: str, model: str, n_features: int, image: bool) -> str | None:
    """Why a cell is not run, or None."""
    if model == "vision" and not image:
        return "VisionShapNet is for images"
    if model == "harsanyi" and dataset == "mnist":
        return (
            "not run for time (a VisionHarsanyiNet took 16 min for 2 epochs on 2,000 MNIST images here; the "
            "rivals benchmark trains that one)"
        )
    if model == "pairs" and n_features * (n_features - 1) // 2 > 20_000:
        return f"{n_features * (n_features - 1) // 2:,} pair modules (more than 20,000)"
    if model == "deep" and n_features > 256:
        layers = math.ceil(math.log2(n_features))
        return (
            f"not run for time ({n_features} features, {layers} butterfly layers); "
            "VisionShapNet is the deep model"
        )
    return None


def _mlp_width(n_features: int, n_outputs: int, n_params: int) -> int:
    """Width ``w`` of a ``F -> w -> w -> K`` MLP with about ``n_params`` parameters."""
    # w**2 + (F + K + 2) w + K = n_params
    b = n_features + n_outputs + 2
    return max(8, round((-b + math.sqrt(b * b + 4 * max(0, n_params - n_outputs))) / 2))


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _shapnet_params(ds: Any, n_features: int, n_outputs: int) -> int:
    """Parameters of the deep ShapNet the MLP is compared with: the DeepShapNet, or the default
    VisionShapNet where the DeepShapNet is not run (MNIST)."""
    from shapnet import DeepShapNet, VisionShapNet

    if skip_reason(ds.name, "deep", n_features, ds.image_shape is not None) is None:
        return _n_params(DeepShapNet(n_features, n_outputs, **DEEP_KWARGS))
    return _n_params(VisionShapNet(ds.image_shape[0], n_outputs, image_size=ds.image_shape[1:]))


def _score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score, r2_score

    return float(accuracy_score(y_true, y_pred) if task == "classification" else r2_score(y_true, y_pred))


def run_cell(ds: Any, model: str, seed: int, vision_checkpoint: str | None = None) -> dict[str, Any]:
    """Train and score one model on one dataset; returns the result row."""
    classification = ds.task == "classification"
    image = ds.image_shape is not None
    vision = image and model in ("vision", "harsanyi")  # the models that see images as images
    X_train, X_test = ds.X_train, ds.X_test
    if image and not vision:
        X_train, X_test = X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1)
    n_features = X_train.shape[1] if not vision else int(np.prod(ds.image_shape[1:]))
    n_outputs = ds.n_classes if classification else 1
    max_epochs, batch_size = RECIPES.get(ds.name.removesuffix(SCALED_SUFFIX), DEFAULT_RECIPE)
    row: dict[str, Any] = {
        "dataset": ds.name,
        "model": model,
        "seed": seed,
        "metric": "accuracy" if classification else "r2",
    }
    start = time.perf_counter()
    epochs, seconds = None, None
    if model in ("gam", "pairs", "deep") or (model == "harsanyi" and not image):
        from shapnet_adapters.sklearn import ShapNetClassifier, ShapNetRegressor

        estimator_class = ShapNetClassifier if classification else ShapNetRegressor
        hidden = (64,) if model == "gam" else (16,)
        kwargs = {
            "deep": dict(DEEP_KWARGS),
            "harsanyi": {},  # the estimator's HarsanyiNet: two layers of 100 units
        }.get(model, {"groups": model, "hidden": hidden})
        est = estimator_class(
            model=model if model in ("deep", "harsanyi") else "shallow",
            model_kwargs=kwargs,
            max_epochs=max_epochs,
            batch_size=batch_size,
            lr=LR,
            random_state=seed,
            consistency=0.0,
        ).fit(X_train, ds.y_train)
        y_pred, n_params, epochs = est.predict(X_test), _n_params(est.model_), est.n_iter_
    elif model == "mlp":
        from skorch import NeuralNetClassifier, NeuralNetRegressor
        from skorch.callbacks import EarlyStopping
        from skorch.dataset import ValidSplit

        from .models import ModelConfig, build_model

        width = _mlp_width(n_features, n_outputs, _shapnet_params(ds, n_features, n_outputs))
        # The ROAR benchmark's plain ReLU MLP, initialised from ``seed``.
        mlp = build_model(
            ModelConfig(kind="mlp", hidden=(width, width)), (n_features,), n_outputs, seed=seed
        ).train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = (NeuralNetClassifier if classification else NeuralNetRegressor)(
                mlp,
                criterion=nn.CrossEntropyLoss if classification else nn.MSELoss,
                optimizer=torch.optim.AdamW,
                lr=LR,
                max_epochs=max_epochs,
                batch_size=batch_size,
                iterator_train__shuffle=True,
                train_split=ValidSplit(0.1, stratified=classification, random_state=seed),
                callbacks=[EarlyStopping(monitor="valid_loss", patience=5, load_best=True)],
                verbose=0,
            )
            y_fit = ds.y_train if classification else ds.y_train.reshape(-1, 1)
            net.fit(X_train, y_fit)
        y_pred = net.predict(X_test).reshape(-1)
        n_params, epochs = _n_params(net.module_), len(net.history)
        row["width"] = width
    elif model == "vision":
        # A loaded checkpoint reports its own training time.
        y_pred, n_params, epochs, seconds = _vision(ds, seed, vision_checkpoint)
    elif model == "harsanyi":
        y_pred, n_params, epochs = _vision_harsanyi(ds, seed)
    elif model == "logreg":
        from sklearn.linear_model import LinearRegression, LogisticRegression

        est = LogisticRegression(max_iter=5000) if classification else LinearRegression()
        y_pred = est.fit(X_train, ds.y_train).predict(X_test)
        n_params = int(np.size(est.coef_) + np.size(est.intercept_))
    elif model == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        est = (HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor)(
            random_state=seed
        )
        y_pred, n_params = est.fit(X_train, ds.y_train).predict(X_test), None
    else:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}.")
    row.update(
        score=_score(ds.task, ds.y_test, np.asarray(y_pred)),
        params=n_params,
        epochs=epochs,
        seconds=time.perf_counter() - start if seconds is None else seconds,
    )
    return row


def _vision(ds: Any, seed: int, checkpoint: str | None) -> tuple[np.ndarray, int, int | None, float | None]:
    """Predictions of a VisionShapNet on the test images: trained here (digits) or loaded (``checkpoint``)."""
    from shapnet import VisionShapNet, load
    from shapnet.training import DIGITS_STAGES, fit

    if checkpoint is not None:
        model = load(checkpoint)
        result = Path(checkpoint).with_name("result.json")
        info = json.loads(result.read_text()) if result.exists() else {}
        epochs, seconds = info.get("epochs"), info.get("train_seconds")
    else:
        if ds.name == "mnist":
            raise ValueError(
                "training a VisionShapNet on MNIST takes about half an hour; train it with "
                "`python -m shapnet.training --dataset mnist ...` and pass "
                "--vision-checkpoint mnist=PATH/model.pt."
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = VisionShapNet(
                ds.image_shape[0], ds.n_classes, stages=DIGITS_STAGES, image_size=ds.image_shape[1:]
            )
        epochs, seconds = VISION_EPOCHS, None
        fit(model, ds.X_train, ds.y_train, epochs=epochs, batch_size=64, lr=1e-2, progress=False, seed=seed)
    model.eval()
    with torch.no_grad():
        chunks = np.array_split(ds.X_test, max(1, len(ds.X_test) // 500))
        logits = torch.cat([model(torch.from_numpy(x)) for x in chunks])
    return logits.argmax(1).numpy(), _n_params(model), epochs, seconds


def _vision_harsanyi(ds: Any, seed: int) -> tuple[np.ndarray, int, int]:
    """Predictions of a VisionHarsanyiNet on the test images, built and trained with the ROAR recipe."""
    from .models import build_model, default_config, predict, reference_row, train_model

    config = default_config("harsanyi", ds.name)
    reference = reference_row(ds.X_train)
    model = build_model(config, ds.image_shape, ds.n_classes, seed=seed, reference=reference)
    train_model(model, ds.X_train, ds.y_train, config, seed=seed)
    return predict(model, ds.X_test), _n_params(model), config.epochs


#: One line per (dataset, model, seed) cell: scored (``score``...) or not run (``skipped``: the reason).
CELL_COLUMNS = {
    "dataset": str,
    "model": str,
    "seed": int,
    "metric": str,
    "score": float,
    "params": int,
    "epochs": int,
    "seconds": float,
    "width": int,
    "skipped": str,
}


def cell_file(path: str | Path) -> ResultFile:
    """The resumable file of finished cells (``cells.csv``)."""
    return ResultFile(path, CELL_COLUMNS, key=("dataset", "model", "seed"), what="accuracy cells")


def mean_scores(rows: list[dict[str, Any]], dataset: str, model: str) -> list[float]:
    return [
        r["score"] for r in rows if r["dataset"] == dataset and r["model"] == model and not r.get("skipped")
    ]


def pivot(rows: list[dict[str, Any]], datasets: list[str], models: list[str]) -> list[dict[str, Any]]:
    """One row per dataset, one column per model: the mean score over seeds (± std), or "n/a" if skipped."""
    table = []
    for name in datasets:
        line: dict[str, Any] = {"dataset": name}
        for model in models:
            scores = mean_scores(rows, name, model)
            skipped = any(r.get("skipped") for r in rows if r["dataset"] == name and r["model"] == model)
            if not scores:
                line[LABELS[model]] = "n/a" if skipped else ""
            else:
                line[LABELS[model]] = format_mean_std(scores, 4)
        deep, mlp = mean_scores(rows, name, "deep"), mean_scores(rows, name, "mlp")
        line["deep - mlp (pts)"] = f"{100 * (np.mean(deep) - np.mean(mlp)):+.2f}" if deep and mlp else ""
        if "harsanyi" in models:
            harsanyi = mean_scores(rows, name, "harsanyi")
            # Against the deep ShapNet of the same input: the tabular one, or the VisionShapNet on images.
            deep = mean_scores(rows, name, "vision") or deep
            line["harsanyi - deep (pts)"] = (
                f"{100 * (np.mean(harsanyi) - np.mean(deep)):+.2f}" if harsanyi and deep else ""
            )
        table.append(line)
    return table


def plot(rows: list[dict[str, Any]], datasets: list[str], models: list[str], path: Path) -> None:
    """Bars of the mean test score per dataset and model, with the sample std over seeds as error bars."""
    with figure(path, figsize=(11, 4)) as (_, ax):
        width = 0.8 / len(models)
        for i, model in enumerate(models):
            xs, ys, errs = [], [], []
            for j, name in enumerate(datasets):
                scores = mean_scores(rows, name, model)
                if scores:
                    mean, std = mean_std(scores)
                    xs.append(j + (i - (len(models) - 1) / 2) * width)
                    ys.append(mean)
                    errs.append(0.0 if math.isnan(std) else std)
            ax.bar(xs, ys, width, yerr=errs, label=LABELS[model])
        ax.set_xticks(range(len(datasets)), datasets)
        ax.set_ylabel(better("test accuracy (R² for regression)", "higher"))
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, ncol=4, loc="lower center")
        ax.set_title("Test scores: ShapNets and HarsanyiNet against an MLP and scikit-learn baselines")


def _scaled_target(ds: Dataset) -> Dataset:
    """A regression with its target standardised by the training split's mean and std (others as given)."""
    if ds.task != "regression":
        return ds
    mean, std = float(np.mean(ds.y_train)), float(np.std(ds.y_train)) or 1.0
    return dataclasses.replace(
        ds,
        name=f"{ds.name}{SCALED_SUFFIX}",
        y_train=((ds.y_train - mean) / std).astype(np.float32),
        y_test=((ds.y_test - mean) / std).astype(np.float32),
    )


def _checkpoints(text: str | None) -> dict[str, str]:
    out = {}
    for item in filter(None, (text or "").split(",")):
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise argparse.ArgumentTypeError(f"--vision-checkpoint takes DATASET=PATH items, got {item!r}.")
        out[name.strip()] = path.strip()
    return out


def run_accuracy(
    datasets: Dataset | Sequence[Dataset],
    *,
    models: Sequence[str] = MODELS,
    seeds: Sequence[int] = (0,),
    single_seed: Sequence[str] = ("adult", "mnist"),
    vision_checkpoints: Mapping[str, str] | None = None,
    scale_target: bool = False,
    out: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Train and score every model on every dataset for every seed; resume from ``out/cells.csv``.

    Args:
        datasets: one or several :class:`shapnet.datasets.Dataset` (classification or regression; names
            must differ: a cell is keyed by ``(dataset.name, model, seed)``).
        models: keys of :data:`LABELS`.
        seeds: seeds of the weights, shuffling and validation split.
        single_seed: dataset names that use only the first seed (the large ones).
        vision_checkpoints: dataset name -> a VisionShapNet saved by ``python -m shapnet.training``.
        scale_target: standardise a regression's target (training mean and std) for every model; the
            dataset is then named ``<name>_scaled_y`` (its cells are kept apart from the unscaled ones).
        out: where ``cells.csv`` (finished cells, appended as they finish), ``accuracy.csv``,
            ``accuracy.json`` and ``accuracy.png`` go; None: nothing is written and nothing resumed.
        progress: a progress bar over the cells.
        log: where the table goes.

    Returns:
        Every cell, one row each (columns :data:`CELL_COLUMNS`: ``score`` is the test accuracy or R²,
        ``skipped`` the reason a cell was not run); ``.attrs["table"]`` holds the printed table (one row per
        dataset, one column per model: mean over seeds ``± sample std``, ``deep - mlp (pts)`` and, with
        ``harsanyi``, ``harsanyi - deep (pts)``: against the VisionShapNet on image sets where it ran).

    Raises:
        ValueError: unknown models, repeated dataset names, or a corrupt ``cells.csv``.
    """
    from shapnet.datasets import Dataset
    from shapnet.progress import progress as progress_bar

    datasets = [datasets] if isinstance(datasets, Dataset) else list(datasets)
    if scale_target:
        datasets = [_scaled_target(ds) for ds in datasets]
    names = [ds.name for ds in datasets]
    unknown = sorted(set(models) - set(MODELS))
    if unknown or not models:
        raise ValueError(f"unknown models {unknown}; expected some of {list(MODELS)}.")
    if len(set(names)) != len(names) or not names:
        raise ValueError(
            f"datasets must be given with distinct names (cells are keyed by them), got {names}."
        )
    checkpoints = dict(vision_checkpoints or {})
    cells = None if out is None else cell_file(prepare_out(out) / "cells.csv")
    rows = [] if cells is None else cells.read()
    done = {(r["dataset"], r["model"], r["seed"]) for r in rows}
    seeds_of = {
        ds.name: list(seeds)[:1] if ds.name.removesuffix(SCALED_SUFFIX) in single_seed else list(seeds)
        for ds in datasets
    }
    todo = [
        (ds, m, s)
        for ds in datasets
        for m in models
        for s in seeds_of[ds.name]
        if (ds.name, m, s) not in done
    ]
    start = time.perf_counter()
    with progress_bar(total=len(todo), desc="accuracy cells", unit="cell", disable=not progress) as bar:
        for ds, model, seed in todo:
            n_features = int(np.prod(ds.X_train.shape[1:]))
            reason = skip_reason(ds.name, model, n_features, ds.image_shape is not None)
            if model == "vision" and reason is None and ds.name == "mnist" and "mnist" not in checkpoints:
                reason = "no --vision-checkpoint mnist=PATH given"
            if reason is not None:
                row = {"dataset": ds.name, "model": model, "seed": seed, "skipped": reason}
            else:
                row = run_cell(ds, model, seed, checkpoints.get(ds.name))
            rows.append(row if cells is None else cells.append(row))
            bar.update(1)
    rows = [
        {k: v for k, v in r.items() if k != "line"}
        for r in rows
        if r["dataset"] in seeds_of and r["model"] in models and r["seed"] in seeds_of[r["dataset"]]
    ]
    import pandas as pd

    table = pivot(rows, names, list(models))
    frame = pd.DataFrame(rows, columns=list(CELL_COLUMNS))
    frame.attrs["table"] = table
    log("test accuracy, or R² for a regression (higher is better); mean over seeds ± sample std")
    log(format_table(table))
    skipped = sorted(
        {f"  {r['dataset']} / {LABELS[r['model']]}: {r['skipped']}" for r in rows if r.get("skipped")}
    )
    if skipped:
        log("not run:\n" + "\n".join(skipped))
    if out is not None:
        settings = {
            "datasets": names,
            "models": list(models),
            "seeds": list(seeds),
            "single_seed": list(single_seed),
            "vision_checkpoints": checkpoints,
            "scale_target": scale_target,
        }
        write_outputs(
            out,
            "accuracy",
            frame,
            {"settings": settings, "table": table, "cells": rows},
            lambda path: plot(rows, names, list(models), path),
            started=start,
            log=log,
        )
    return frame


def main(argv: list[str] | None = None) -> int:
    from shapnet.cli import add_dataset_arguments, dataset_from_args, fail_cleanly

    parser = argparse.ArgumentParser(prog="python -m benchmarks accuracy", description=__doc__.split("\n")[0])
    add_dataset_arguments(parser, default=",".join(DEFAULT_DATASETS))
    parser.add_argument(
        "--models",
        type=comma_separated(str),
        default=list(MODELS),
        help=f"comma-separated, some of {','.join(MODELS)}",
    )
    parser.add_argument("--out", default="results/accuracy")
    parser.add_argument(
        "--seeds",
        type=comma_separated(int),
        default=[0],
        help="comma-separated seeds (weights, shuffling, validation split)",
    )
    parser.add_argument(
        "--single-seed",
        type=comma_separated(str),
        default=["adult", "mnist"],
        help="datasets that use only the first seed (the large ones; default: adult,mnist)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: results do not depend on the machine)"
    )
    parser.add_argument(
        "--vision-checkpoint",
        default=None,
        help="DATASET=PATH[,...]: a VisionShapNet trained by `python -m shapnet.training` (model.pt)",
    )
    parser.add_argument(
        "--scale-target",
        action="store_true",
        help="standardise a regression's target (training mean and std); the dataset becomes <name>_scaled_y",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    try:
        checkpoints = _checkpoints(args.vision_checkpoint)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; expected some of {list(MODELS)}")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with fail_cleanly(args.out):
            # Every dataset loads before the first cell runs: a bad name fails before anything is written.
            names = [n.strip() for n in args.dataset.split(",") if n.strip()]
            datasets = [
                dataset_from_args(argparse.Namespace(**{**vars(args), "dataset": n}), random_state=0)
                for n in names
            ]
            run_accuracy(
                datasets,
                models=args.models,
                seeds=args.seeds,
                single_seed=args.single_seed,
                vision_checkpoints=checkpoints,
                scale_target=args.scale_target,
                out=args.out,
                progress=args.progress,
            )
    finally:
        torch.set_num_threads(threads)
    return 0
