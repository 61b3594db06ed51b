"""Speed of ShapNets on one thread: explain, training step, and efficiency against the dense matmul rate.

    python -m benchmarks speed [--out results/speed] [--repeats 15] [--quick]

Efficiency = naive coalition FLOPs / (time x dense-matmul FLOP/s measured by this process on 1 thread).
The numerator counts every module's inner MLP evaluated on all 2**k coalitions at 2 FLOPs per multiply-add,
which is what a straightforward implementation computes; shapnet computes the same values with less work
(DESIGN §7), so the efficiency can exceed the matmul utilisation it really achieves.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from shapnet import DeepShapNet, Pruning, VisionShapNet
from shapnet.layers import ShapleyConv2d, ShapleyLayer

from .report import dense_matmul_flops, format_table, machine_info, prepare_out, write_json


def naive_coalition_flops(model: torch.nn.Module, batch: int) -> float:
    """FLOPs of evaluating every module's inner MLP on all of its ``2**k`` coalitions."""
    total = 0.0
    for layer in model.modules():
        if not isinstance(layer, (ShapleyLayer, ShapleyConv2d)):
            continue
        mlp = layer.mlp
        dims = [mlp.group_size * mlp.in_channels, *mlp.hidden, mlp.out_channels]
        per_eval = sum(2 * a * b for a, b in zip(dims[:-1], dims[1:]))
        if isinstance(layer, ShapleyLayer):
            evaluations = layer.n_modules * batch
        else:
            h, w = model.input_shape[1:]
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
            windows = ((h + 2 * ph - dh * (kh - 1) - 1) // sh + 1) * ((w + 2 * pw - dw * (kw - 1) - 1) // sw + 1)
            evaluations = windows * batch
        total += evaluations * 2**mlp.group_size * per_eval
    return total


def _interleaved_timings(fns: list[Callable[[], object]], repeats: int, warmup: int = 3) -> list[tuple[float, float]]:
    """(median, best) CPU seconds of each of ``fns``, run in turn within every repeat.

    Interleaving means that a slow spell of the (shared, virtual) machine hits every function alike, so the
    ratios between them (train/explain, pruned/dense) are fair even when absolute times drift. The process
    runs torch on one thread, so its CPU time is the compute time; unlike wall time it does not count the
    time the scheduler gives other processes.
    """
    times: list[list[float]] = [[] for _ in fns]
    for index in range(warmup + repeats):
        for fn, sink in zip(fns, times):
            start = time.process_time()
            fn()
            if index >= warmup:
                sink.append(time.process_time() - start)
    return [(statistics.median(t), min(t)) for t in times]


def measure(
    name: str, build: Callable[[object], torch.nn.Module], prunes: tuple, batch: int, repeats: int, peak: float
) -> list[dict]:
    """Explain and training-step times of one configuration, with and without pruning, interleaved."""
    torch.manual_seed(0)
    reference = build(None).state_dict()  # the same weights with and without pruning
    explainers, trainers = [], []
    for prune in prunes:
        explainer, trainer = build(prune), build(prune)
        explainer.load_state_dict(reference)
        trainer.load_state_dict(reference)
        explainers.append(explainer)
        trainers.append(trainer)
    x = torch.randn(batch, *explainers[0].input_shape)
    y = torch.randint(0, explainers[0].n_outputs, (batch,))

    def explain(model: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                model.explain(x)

        return run

    def train_step(model: torch.nn.Module) -> Callable[[], None]:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def run() -> None:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

        return run

    fns = [explain(m) for m in explainers] + [train_step(m) for m in trainers]
    timings = _interleaved_timings(fns, repeats)
    rows = []
    for index, (prune, model) in enumerate(zip(prunes, explainers)):
        (explain_med, explain_best), (train_med, train_best) = timings[index], timings[len(prunes) + index]
        with torch.no_grad():
            skipped = model.explain(x).skipped
        flops = naive_coalition_flops(model, batch)
        rows.append(
            {
                "config": name,
                "prune": "none" if prune is None else f"{prune.fraction:g} {prune.granularity}",
                "batch": batch,
                "explain_ms": 1e3 * explain_med,
                "explain_best_ms": 1e3 * explain_best,
                "train_step_ms": 1e3 * train_med,
                "train_best_ms": 1e3 * train_best,
                "train/explain": train_med / explain_med,
                "naive_gflop": flops / 1e9,
                "efficiency": flops / (explain_med * peak),
                "efficiency_best": flops / (explain_best * peak),
                "skipped": 0.0 if skipped is None else skipped,
            }
        )
    base = rows[0]["explain_ms"]
    for row in rows:
        row["speedup"] = base / row["explain_ms"]
    return rows


TABULAR_PRUNES = (None, Pruning(fraction=0.5), Pruning(fraction=0.5, granularity="group"))
CONFIGS: dict[str, tuple[Callable[[object], torch.nn.Module], tuple, int]] = {
    "deep d=16": (lambda p: DeepShapNet(16, 10, channels=16, hidden=(64,), prune=p), TABULAR_PRUNES, 512),
    "deep d=64": (lambda p: DeepShapNet(64, 10, channels=16, hidden=(64,), prune=p), TABULAR_PRUNES, 512),
    # Not one of issue #6's configurations: wide modules, where the module work that pruning skips dominates.
    "deep d=64 h=256": (lambda p: DeepShapNet(64, 10, channels=16, hidden=(256,), prune=p), TABULAR_PRUNES, 512),
    "vision 28x28": (lambda p: VisionShapNet(1, 10, prune=p), (None, Pruning(fraction=0.5)), 64),
}


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['config']}\nprune {r['prune']}" for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4))
    pos = range(len(rows))
    ax.bar([p - 0.2 for p in pos], [r["explain_ms"] for r in rows], 0.4, label="explain")
    ax.bar([p + 0.2 for p in pos], [r["train_step_ms"] for r in rows], 0.4, label="training step")
    ax.set_xticks(list(pos), labels, fontsize=8)
    ax.set_ylabel("CPU ms per batch (median, 1 thread)")
    ax.set_yscale("log")
    for p, r in zip(pos, rows):
        ax.text(p - 0.2, r["explain_ms"], f"eff {r['efficiency']:.2f}", ha="center", va="bottom", fontsize=7)
    ax.legend()
    ax.set_title("ShapNet speed")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks speed", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/speed")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of: {', '.join(CONFIGS)}")
    parser.add_argument("--batch", type=int, default=None, help="override every configuration's batch size")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = prepare_out(args.out)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configs {unknown}; expected some of {list(CONFIGS)}")
    start = time.perf_counter()
    peak = dense_matmul_flops()
    rows: list[dict] = []
    for name in names:
        build, prunes, batch = CONFIGS[name]
        rows.extend(measure(name, build, prunes, args.batch or batch, args.repeats, peak))
    info = {**machine_info(), "dense_matmul_gflops_1_thread": peak / 1e9, "repeats": args.repeats,
            "wall_seconds": time.perf_counter() - start}
    columns = ["config", "prune", "batch", "explain_ms", "train_step_ms", "train/explain", "naive_gflop",
               "efficiency", "efficiency_best", "skipped", "speedup"]
    table = format_table(rows, columns)
    print(f"machine: {info['cpu']}, 1 thread, dense matmul {peak / 1e9:.1f} GFLOP/s")
    print(table)
    import csv

    with open(out / "speed.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_json(out / "speed.json", {"machine": info, "rows": rows})
    plot(rows, str(out / "speed.png"))
    print(f"wrote {out / 'speed.csv'}, {out / 'speed.json'}, {out / 'speed.png'} in {info['wall_seconds']:.0f} s")
    return 0
