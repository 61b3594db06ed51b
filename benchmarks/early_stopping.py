"""Does early stopping help the scikit-learn estimators? Test scores with and without it (issue #13).

For each dataset, model (``deep``, ``shallow``) and seed, fits :class:`ShapNetClassifier` /
:class:`ShapNetRegressor` with their defaults except the early-stopping setting under test, and records the
test score (accuracy or R²), the epochs run and the wall time. Settings: ``full`` (no early stopping,
``max_epochs`` epochs), ``es5`` and ``es20`` (early stopping with patience 5 or 20 on a 10% validation
split, best weights restored). Datasets: the scikit-learn bundled ``breast_cancer``, ``wine`` and
``diabetes``, and a real regression task, UCI Adult's ``hours-per-week`` predicted from the other census
columns (needs ``$SHAPNET_DATA``; skipped otherwise).

Usage: ``python -m benchmarks.early_stopping --out results/early_stopping [--seeds 0 1] [--max-train 3000]
[--settings full es5 es20] [--models deep shallow] [--datasets ...]``.
Writes ``scores.csv`` (one row per fit, resumable: finished fits are kept and skipped) and ``summary.csv``
(mean per dataset, model and setting), and prints the summary.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from shapnet.datasets import Dataset, load_dataset
from shapnet_adapters.sklearn import ShapNetClassifier, ShapNetRegressor

SETTINGS = {
    "full": {"early_stopping": False},
    "es5": {"early_stopping": True, "patience": 5},
    "es20": {"early_stopping": True, "patience": 20},
}
FIELDS = ["dataset", "model", "setting", "seed", "score", "epochs", "seconds"]


def adult_hours(max_train: int, seed: int) -> SimpleNamespace | None:
    """Adult with ``hours-per-week`` (standardised) as the target and the other columns as features."""
    try:
        data = load_dataset("adult", random_state=seed, max_train=max_train)
    except (FileNotFoundError, ValueError):
        return None
    column = data.feature_names.index("hours-per-week")
    keep = [i for i in range(data.n_features) if i != column]
    n_test = min(len(data.X_test), 5000)
    return SimpleNamespace(
        name="adult_hours",
        task="regression",
        X_train=data.X_train[:, keep],
        y_train=data.X_train[:, column].astype(np.float32),
        X_test=data.X_test[:n_test, keep],
        y_test=data.X_test[:n_test, column].astype(np.float32),
    )


DATASETS = ("breast_cancer", "wine", "diabetes", "adult_hours")


def datasets(names: list[str], max_train: int, seed: int) -> list[Dataset]:
    found = [load_dataset(name, random_state=seed) for name in names if name != "adult_hours"]
    adult = adult_hours(max_train, seed) if "adult_hours" in names else None
    return found + ([adult] if adult is not None else [])


def fit_and_score(data: Dataset, model: str, setting: str, seed: int) -> dict:
    regression = data.task == "regression"
    y_train, y_test = data.y_train, data.y_test
    if regression:  # the regressor expects standardised targets (its docstring)
        mean, std = float(y_train.mean()), float(y_train.std())
        y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
    estimator = (ShapNetRegressor if regression else ShapNetClassifier)(
        model=model, random_state=seed, **SETTINGS[setting]
    )
    start = time.perf_counter()
    estimator.fit(data.X_train, y_train)
    seconds = time.perf_counter() - start
    return {
        "dataset": data.name,
        "model": model,
        "setting": setting,
        "seed": seed,
        "score": round(float(estimator.score(data.X_test, y_test)), 4),
        "epochs": estimator.n_iter_,
        "seconds": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/early_stopping")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--max-train", type=int, default=3000, help="training rows of the Adult task")
    parser.add_argument("--models", nargs="+", default=["deep", "shallow"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "scores.csv"
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    done = {(r["dataset"], r["model"], r["setting"], int(r["seed"])) for r in rows}
    for seed in args.seeds:
        for data in datasets(args.datasets, args.max_train, seed):
            for model in args.models:
                for setting in args.settings:
                    if (data.name, model, setting, seed) in done:
                        continue
                    row = fit_and_score(data, model, setting, seed)
                    print(row, flush=True)
                    rows.append({k: str(v) for k, v in row.items()})
                    tmp = path.with_suffix(".tmp")
                    with tmp.open("w", newline="") as handle:
                        writer = csv.DictWriter(handle, FIELDS)
                        writer.writeheader()
                        writer.writerows(rows)
                    os.replace(tmp, path)
    summary = {}
    for r in rows:
        summary.setdefault((r["dataset"], r["model"], r["setting"]), []).append(r)
    with (out / "summary.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", "model", "setting", "n", "score", "epochs", "seconds"])
        print(f"{'dataset':<14}{'model':<9}{'setting':<8}{'score':>8}{'epochs':>8}{'seconds':>9}")
        for (name, model, setting), group in sorted(summary.items()):
            score = np.mean([float(r["score"]) for r in group])
            epochs = np.mean([float(r["epochs"]) for r in group])
            seconds = np.mean([float(r["seconds"]) for r in group])
            writer.writerow(
                [name, model, setting, len(group), f"{score:.4f}", f"{epochs:.1f}", f"{seconds:.1f}"]
            )
            print(f"{name:<14}{model:<9}{setting:<8}{score:>8.4f}{epochs:>8.1f}{seconds:>9.1f}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared); wrote {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
