"""Faithful Deep ShapNets: sweep the Shapley-consistency weight λ and measure fidelity, accuracy and cost.

    python -m benchmarks consistency --dataset yeast|wine|diabetes|PATH [--lambdas 0,1,3,10,30] [--epochs 80]
        [--seeds 0] [--data-dir DIR] [--out DIR] [--n-jobs 1]
    python -m benchmarks consistency --dataset mnist|IDX-FOLDER --checkpoints A.pt,B.pt [--n-images 5]
        [--permutations 40]

Tabular (at most :data:`MAX_FEATURES` features; classification or regression): for every λ a DeepShapNet
(two rounds of the butterfly, 16 channels, hidden 64, residual) is trained with
``loss = task loss + λ * shapley_consistency`` and its built-in explanation is compared with the exact
Shapley values of its own output (``shapnet.exact_shapley`` over every coalition) on the whole test set.
A GAM ShallowShapNet (additive, exact by construction) is trained alongside as a reference.

Images (MNIST's 784 pixels: no enumeration): the built-in values of trained checkpoints are compared with a
high-budget antithetic permutation-sampling estimate, whose own standard error is reported.

Errors are lower-is-better, Spearman correlations and test scores higher-is-better.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from shapnet import DeepShapNet, ShallowShapNet, explanation_error, load
from shapnet.groups import padded_size
from shapnet.training import evaluate, fit

from ._common import (
    better,
    comma_separated,
    figure,
    format_table,
    machine_info,
    prepare_out,
    write_json,
    write_outputs,
)

if TYPE_CHECKING:
    from shapnet.datasets import Dataset

COLUMNS = [
    "dataset",
    "model",
    "lambda",
    "seed",
    "score",
    "metric",
    "relative_l2",
    "spearman",
    "train_seconds",
    "time_ratio",
    "score_delta",
]
#: Exact Shapley values enumerate ``2**F`` coalitions per test row: more features take too long.
MAX_FEATURES = 16
DIRECTIONS = {"score": "higher", "relative_l2": "lower", "spearman": "higher"}


def run_one(ds: Dataset, kind: str, lam: float, seed: int, epochs: int, max_test: int | None = None) -> dict:
    """Train one model and measure it. Runs in a worker: one thread, everything seeded."""
    torch.set_num_threads(1)
    n_outputs = ds.n_classes if ds.task == "classification" else 1
    torch.manual_seed(seed)
    if kind == "deep":
        _, stages = padded_size(ds.n_features, 2)
        model = DeepShapNet(ds.n_features, n_outputs, depth=2 * stages, channels=16, hidden=(64,))
    else:
        model = ShallowShapNet(ds.n_features, n_outputs, groups="gam", hidden=(64,))
    result = fit(
        model,
        ds.X_train,
        ds.y_train,
        epochs=epochs,
        batch_size=64,
        lr=3e-3,
        consistency=lam,
        progress=False,
        seed=seed,
        task=ds.task,
    )
    score = evaluate(model, ds.X_test, ds.y_test, 512, task=ds.task)
    with torch.no_grad():
        err = explanation_error(model, torch.from_numpy(ds.X_test[:max_test]))
    return {
        "dataset": ds.name,
        "model": "DeepShapNet" if kind == "deep" else "ShallowShapNet(gam)",
        "lambda": lam,
        "seed": seed,
        "score": score,
        "metric": "accuracy" if ds.task == "classification" else "r2",
        "relative_l2": err["relative_l2"],
        "spearman": err["spearman"],
        "train_seconds": result.seconds,
    }


def tabular(args: argparse.Namespace, ds: Dataset) -> int:
    from joblib import Parallel, delayed

    from shapnet.progress import progress

    if ds.X_train.ndim != 2 or ds.n_features > MAX_FEATURES:
        raise ValueError(
            "the tabular sweep compares with exact Shapley values over 2**F coalitions: at most "
            f"{MAX_FEATURES} "
            f"features, got {ds.name!r} with input shape {tuple(ds.X_train.shape[1:])}."
        )
    jobs = [("deep", lam, seed) for seed in args.seeds for lam in args.lambdas] + [
        ("gam", 0.0, seed) for seed in args.seeds
    ]
    start = time.perf_counter()
    results = Parallel(n_jobs=args.n_jobs, return_as="generator")(
        delayed(run_one)(ds, kind, lam, seed, args.epochs, args.max_test) for kind, lam, seed in jobs
    )
    rows = list(progress(results, total=len(jobs), desc="consistency models", unit="model"))
    for row in rows:
        base = next(
            r for r in rows if r["model"] == "DeepShapNet" and r["lambda"] == 0.0 and r["seed"] == row["seed"]
        )
        row["time_ratio"] = row["train_seconds"] / base["train_seconds"]
        row["score_delta"] = row["score"] - base["score"]
    wall = time.perf_counter() - start
    print(f"consistency sweep on {ds.name}: {args.epochs} epochs, seeds {args.seeds}, wall {wall:.0f} s")
    print(
        format_table(
            [{better(k, DIRECTIONS[k]) if k in DIRECTIONS else k: v for k, v in r.items()} for r in rows],
            [better(c, DIRECTIONS[c]) if c in DIRECTIONS else c for c in COLUMNS],
        )
    )
    payload = {"settings": vars(args), "directions": DIRECTIONS, "wall_seconds": wall, "rows": rows}
    write_outputs(
        args.out,
        f"consistency_{ds.name}",
        [{c: r[c] for c in COLUMNS} for r in rows],
        payload,
        lambda path: plot(rows, path, ds.name),
    )
    return 0


def plot(rows: list[dict], path: Path, dataset: str) -> None:
    """Error (log) and test score against λ for the DeepShapNet; the GAM's score as a line."""
    deep = [r for r in rows if r["model"] == "DeepShapNet"]
    lambdas = sorted({r["lambda"] for r in deep})

    def mean(key: str, lam: float) -> float:
        return float(np.mean([r[key] for r in deep if r["lambda"] == lam]))

    xs = [lam if lam > 0 else 0.3 for lam in lambdas]  # λ = 0 drawn at 0.3 on the log axis
    with figure(path, figsize=(6, 4)) as (fig, ax):
        ax.plot(
            xs, [mean("relative_l2", lam) for lam in lambdas], "o-", color="C0", label="relative L2 error"
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs, ["0" if lam == 0 else f"{lam:g}" for lam in lambdas])
        ax.set_xlabel("consistency weight λ")
        ax.set_ylabel(better("relative L2 error vs exact Shapley", "lower"), color="C0")
        twin = ax.twinx()
        metric = deep[0]["metric"]
        twin.plot(xs, [mean("score", lam) for lam in lambdas], "s--", color="C1", label=f"test {metric}")
        gam = [r["score"] for r in rows if r["model"] != "DeepShapNet"]
        if gam:
            twin.axhline(float(np.mean(gam)), color="C2", ls=":", label=f"GAM test {metric}")
        twin.set_ylabel(better(f"test {metric}", "higher"), color="C1")
        fig.legend(loc="upper center", ncol=3, fontsize=8)
        ax.set_title(f"{dataset}: Shapley-consistency sweep", pad=22)


@torch.no_grad()
def permutation_estimate(
    model: torch.nn.Module, x: torch.Tensor, target: int, n_permutations: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Antithetic permutation sampling of one image's per-pixel Shapley values for one output.

    Returns ``(estimate, standard_error)``, both ``(H*W,)``. Each permutation walks all pixels (one batched
    forward of ``H*W + 1`` images); its reverse is walked too, and the pair average is one draw.
    """
    _, h, w = x.shape
    n = h * w
    ref = model.reference.to(x)
    draws = []
    for _ in range(n_permutations // 2):
        order = torch.randperm(n, generator=generator)
        pair = []
        for perm in (order, order.flip(0)):
            rank = torch.empty(n, dtype=torch.long)
            rank[perm] = torch.arange(n)
            mask = rank.unsqueeze(0) < torch.arange(n + 1).unsqueeze(1)  # row t: the first t pixels of perm
            images = torch.where(mask.view(n + 1, 1, h, w), x.unsqueeze(0), ref.unsqueeze(0))
            out = torch.cat([model(chunk)[:, target] for chunk in images.split(256)])
            contrib = out.new_empty(n)  # in the model's dtype (float64 models too)
            contrib[perm] = out[1:] - out[:-1]
            pair.append(contrib)
        draws.append((pair[0] + pair[1]) / 2)
    stacked = torch.stack(draws)
    return stacked.mean(0), stacked.std(0, unbiased=True) / len(draws) ** 0.5


def images(args: argparse.Namespace, ds: Dataset) -> int:
    """Built-in values of each checkpoint against a permutation-sampling estimate on ``--n-images`` images."""
    from shapnet.progress import progress

    out = prepare_out(args.out)
    torch.set_num_threads(args.threads)
    rows = []
    gen = torch.Generator().manual_seed(0)
    picks = torch.randperm(len(ds.X_test), generator=gen)[: args.n_images]
    start = time.perf_counter()
    for path in args.checkpoints.split(","):
        model = load(path).eval()
        built_in, estimate, error_bar = [], [], []
        for i in progress(picks.tolist(), desc=f"images of {Path(path).name}", unit="image"):
            x = torch.from_numpy(ds.X_test[i]).to(model.reference.dtype)
            with torch.no_grad():
                ex = model.explain(x.unsqueeze(0))
            target = int(ex.predictions.argmax(1))
            est, se = permutation_estimate(model, x, target, args.permutations, gen)
            built_in.append(ex.values[0, :, :, target].reshape(-1))
            estimate.append(est)
            error_bar.append(se)
        b, e, s = torch.stack(built_in), torch.stack(estimate), torch.stack(error_bar)
        config = json.loads(json.dumps(model.config))
        rows.append(
            {
                "checkpoint": path,
                "relative_l2_vs_estimate": float((b - e).norm() / e.norm()),
                # The estimate's own noise, in the same units: ||se|| / ||estimate||.
                "estimate_relative_se": float(s.norm() / e.norm()),
                # E||b - e||^2 = ||b - phi||^2 + sum(se^2) for an unbiased estimate e of the exact phi, so the
                # noise can be taken out of the squared error (clipped at 0).
                "relative_l2_debiased": float(
                    ((b - e).pow(2).sum() - s.pow(2).sum()).clamp_min(0).sqrt() / e.norm()
                ),
                "n_images": args.n_images,
                "permutations": args.permutations,
                "model": type(model).__name__,
                "config": config,
            }
        )
    wall = time.perf_counter() - start
    print("errors against the estimate: lower is better")
    print(format_table([{k: v for k, v in r.items() if k != "config"} for r in rows]))
    write_json(
        out / f"consistency_{ds.name}.json",
        {"machine": machine_info(), "settings": vars(args), "wall_seconds": wall, "rows": rows},
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    from shapnet.cli import add_dataset_arguments, dataset_from_args, fail_cleanly

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks consistency", description=__doc__.split("\n")[0]
    )
    add_dataset_arguments(parser)
    parser.add_argument("--out", default="results/consistency")
    parser.add_argument(
        "--lambdas",
        type=comma_separated(float, minimum=0),
        default=[0.0, 1.0, 3.0, 10.0, 30.0],
        help="consistency weights (default 0,1,3,10,30; 0 is the baseline and always run)",
    )
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--seeds", type=comma_separated(int), default=[0])
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument(
        "--max-test",
        type=int,
        default=None,
        help="measure the explanation error on the first N test rows (default: all)",
    )
    parser.add_argument(
        "--checkpoints", default=None, help="image datasets: comma-separated shapnet.save files"
    )
    parser.add_argument("--n-images", type=int, default=5)
    parser.add_argument("--permutations", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if 0.0 not in args.lambdas:
        args.lambdas = [0.0, *args.lambdas]  # the time ratio and score delta are against λ = 0
    with fail_cleanly(args.out):
        ds = dataset_from_args(args, random_state=0)
        if ds.image_shape is not None:
            if not args.checkpoints:
                raise ValueError(
                    f"image datasets ({ds.name}) need --checkpoints: models trained with "
                    "`python -m shapnet.training`, comma-separated"
                )
            return images(args, ds)
        return tabular(args, ds)
