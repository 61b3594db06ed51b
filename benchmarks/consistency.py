"""Faithful Deep ShapNets: sweep the Shapley-consistency weight λ and measure fidelity, accuracy and cost.

    python -m benchmarks consistency --dataset yeast|wine|diabetes [--lambdas 0,1,3,10,30] [--epochs 80]
        [--seeds 0] [--data-dir DIR] [--out DIR] [--n-jobs 1]
    python -m benchmarks consistency --dataset mnist --checkpoints A.pt,B.pt [--n-images 5] [--permutations 40]

Tabular: for every λ a DeepShapNet (two rounds of the butterfly, 16 channels, hidden 64, residual) is
trained with ``loss = task loss + λ * shapley_consistency`` and its built-in explanation is compared with
the exact Shapley values of its own output (``shapnet.exact_shapley`` over every coalition) on the whole
test set. A GAM ShallowShapNet (additive, exact by construction) is trained alongside as a reference.

MNIST (784 pixels, no enumeration): the built-in values of trained checkpoints are compared with a
high-budget antithetic permutation-sampling estimate, whose own standard error is reported.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from shapnet import DeepShapNet, ShallowShapNet, explanation_error, load
from shapnet.datasets import load_dataset
from shapnet.groups import padded_size
from shapnet.training import evaluate, fit

from ._common import format_table, machine_info, prepare_out, write_json

COLUMNS = ["dataset", "model", "lambda", "seed", "score", "metric", "relative_l2", "spearman", "train_seconds",
           "time_ratio", "score_delta"]


def run_one(dataset: str, data_dir: str | None, kind: str, lam: float, seed: int, epochs: int,
            max_test: int | None = None) -> dict:
    """Train one model and measure it. Runs in a worker: one thread, everything seeded."""
    torch.set_num_threads(1)
    ds = load_dataset(dataset, data_dir, random_state=0)
    n_outputs = ds.n_classes if ds.task == "classification" else 1
    torch.manual_seed(seed)
    if kind == "deep":
        _, stages = padded_size(ds.n_features, 2)
        model = DeepShapNet(ds.n_features, n_outputs, depth=2 * stages, channels=16, hidden=(64,))
    else:
        model = ShallowShapNet(ds.n_features, n_outputs, groups="gam", hidden=(64,))
    result = fit(model, ds.X_train, ds.y_train, epochs=epochs, batch_size=64, lr=3e-3, consistency=lam,
                 progress=False, seed=seed, task=ds.task)
    score = evaluate(model, ds.X_test, ds.y_test, 512, task=ds.task)
    with torch.no_grad():
        err = explanation_error(model, torch.from_numpy(ds.X_test[:max_test]))
    return {
        "dataset": dataset, "model": "DeepShapNet" if kind == "deep" else "ShallowShapNet(gam)",
        "lambda": lam, "seed": seed, "score": score,
        "metric": "accuracy" if ds.task == "classification" else "r2",
        "relative_l2": err["relative_l2"], "spearman": err["spearman"], "train_seconds": result.seconds,
    }


def tabular(args: argparse.Namespace) -> int:
    from joblib import Parallel, delayed

    out = prepare_out(args.out)
    lambdas = [float(v) for v in args.lambdas.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [("deep", lam, seed) for seed in seeds for lam in lambdas] + [("gam", 0.0, seed) for seed in seeds]
    start = time.perf_counter()
    rows = Parallel(n_jobs=args.n_jobs)(
        delayed(run_one)(args.dataset, args.data_dir, kind, lam, seed, args.epochs, args.max_test)
        for kind, lam, seed in jobs
    )
    for row in rows:
        base = next(r for r in rows if r["model"] == "DeepShapNet" and r["lambda"] == 0.0 and r["seed"] == row["seed"])
        row["time_ratio"] = row["train_seconds"] / base["train_seconds"]
        row["score_delta"] = row["score"] - base["score"]
    wall = time.perf_counter() - start
    print(f"consistency sweep on {args.dataset}: {args.epochs} epochs, seeds {seeds}, wall {wall:.0f} s")
    print(format_table(rows, COLUMNS))
    with open(out / f"consistency_{args.dataset}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    settings = {k: v for k, v in vars(args).items()}
    write_json(out / f"consistency_{args.dataset}.json",
               {"machine": machine_info(), "settings": settings, "wall_seconds": wall, "rows": rows})
    plot(rows, out / f"consistency_{args.dataset}.png", args.dataset)
    return 0


def plot(rows: list[dict], path: Path, dataset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deep = [r for r in rows if r["model"] == "DeepShapNet"]
    lambdas = sorted({r["lambda"] for r in deep})
    mean = lambda key, lam: float(np.mean([r[key] for r in deep if r["lambda"] == lam]))  # noqa: E731
    xs = [lam if lam > 0 else 0.3 for lam in lambdas]  # λ = 0 drawn at 0.3 on the log axis
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [mean("relative_l2", lam) for lam in lambdas], "o-", color="C0", label="relative L2 error")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(xs, ["0" if lam == 0 else f"{lam:g}" for lam in lambdas])
    ax.set_xlabel("consistency weight λ")
    ax.set_ylabel("relative L2 error vs exact Shapley", color="C0")
    twin = ax.twinx()
    metric = deep[0]["metric"]
    twin.plot(xs, [mean("score", lam) for lam in lambdas], "s--", color="C1", label=f"test {metric}")
    gam = [r["score"] for r in rows if r["model"] != "DeepShapNet"]
    if gam:
        twin.axhline(float(np.mean(gam)), color="C2", ls=":", label=f"GAM test {metric}")
    twin.set_ylabel(f"test {metric}", color="C1")
    fig.legend(loc="upper center", ncol=3, fontsize=8)
    ax.set_title(f"{dataset}: Shapley-consistency sweep", pad=22)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@torch.no_grad()
def permutation_estimate(model: torch.nn.Module, x: torch.Tensor, target: int, n_permutations: int,
                         generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
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
            contrib = torch.empty(n)
            contrib[perm] = out[1:] - out[:-1]
            pair.append(contrib)
        draws.append((pair[0] + pair[1]) / 2)
    stacked = torch.stack(draws)
    return stacked.mean(0), stacked.std(0, unbiased=True) / len(draws) ** 0.5


def images(args: argparse.Namespace) -> int:
    out = prepare_out(args.out)
    torch.set_num_threads(args.threads)
    ds = load_dataset(args.dataset, args.data_dir, random_state=0)
    rows = []
    gen = torch.Generator().manual_seed(0)
    picks = torch.randperm(len(ds.X_test), generator=gen)[: args.n_images]
    start = time.perf_counter()
    for path in args.checkpoints.split(","):
        model = load(path).eval()
        built_in, estimate, error_bar = [], [], []
        for i in picks.tolist():
            x = torch.from_numpy(ds.X_test[i])
            with torch.no_grad():
                ex = model.explain(x.unsqueeze(0))
            target = int(ex.predictions.argmax(1))
            est, se = permutation_estimate(model, x, target, args.permutations, gen)
            built_in.append(ex.values[0, :, :, target].reshape(-1))
            estimate.append(est)
            error_bar.append(se)
        b, e, s = torch.stack(built_in), torch.stack(estimate), torch.stack(error_bar)
        config = json.loads(json.dumps(model.config))
        rows.append({
            "checkpoint": path,
            "relative_l2_vs_estimate": float((b - e).norm() / e.norm()),
            # The estimate's own noise, in the same units: ||se|| / ||estimate||.
            "estimate_relative_se": float(s.norm() / e.norm()),
            # E||b - e||^2 = ||b - phi||^2 + sum(se^2) for an unbiased estimate e of the exact phi, so the
            # noise can be taken out of the squared error (clipped at 0).
            "relative_l2_debiased": float(((b - e).pow(2).sum() - s.pow(2).sum()).clamp_min(0).sqrt() / e.norm()),
            "n_images": args.n_images, "permutations": args.permutations,
            "model": type(model).__name__, "config": config,
        })
    wall = time.perf_counter() - start
    print(format_table([{k: v for k, v in r.items() if k != "config"} for r in rows]))
    write_json(out / f"consistency_{args.dataset}.json",
               {"machine": machine_info(), "settings": vars(args), "wall_seconds": wall, "rows": rows})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks consistency", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, choices=["yeast", "wine", "diabetes", "mnist", "digits"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="results/consistency")
    parser.add_argument("--lambdas", default="0,1,3,10,30")
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--max-test", type=int, default=None,
                        help="measure the explanation error on the first N test rows (default: all)")
    parser.add_argument("--checkpoints", default=None, help="image datasets: comma-separated shapnet.save files")
    parser.add_argument("--n-images", type=int, default=5)
    parser.add_argument("--permutations", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.dataset in ("mnist", "digits"):
        if not args.checkpoints:
            parser.error("image datasets need --checkpoints (models trained with python -m shapnet.training)")
        return images(args)
    return tabular(args)
