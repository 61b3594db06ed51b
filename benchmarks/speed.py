"""Speed of ShapNets: explain, training step, efficiency against the dense matmul rate, and threads.

    python -m benchmarks speed [--out results/speed] [--repeats 15] [--configs ...]
    python -m benchmarks speed --threads 1,2 [--configs "deep d=64,vision 28x28"]

Without ``--threads`` everything runs on one thread and is timed in CPU time (robust on a shared machine);
each row also gives what the input checks in front of the compute backends cost per explanation.
With ``--threads``, each configuration is timed in wall-clock time at every thread count, on the compiled
kernels and on the PyTorch tiles (``shapnet.kernels.disabled()``), interleaved, with the speed-up against
one thread of the same path.

Efficiency = naive coalition FLOPs / (time x dense-matmul FLOP/s measured by this process on 1 thread).
The numerator counts every module's inner MLP evaluated on all 2**k coalitions at 2 FLOPs per multiply-add,
which is what a straightforward implementation computes; shapnet computes the same values with less work
(DESIGN §7), so the efficiency can exceed the matmul utilisation it really achieves.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from shapnet import DeepShapNet, Pruning, VisionShapNet, kernels, modules
from shapnet._backends import compiled
from shapnet.layers import ShapleyConv2d, ShapleyLayer

from ._common import dense_matmul_flops, format_table, kernel_calls, machine_info, prepare_out, write_json


def naive_coalition_flops(model: torch.nn.Module, batch: int) -> float:
    """FLOPs of evaluating every module's inner MLP on all of its ``2**k`` coalitions."""
    total = 0.0
    for layer in model.modules():
        if not isinstance(layer, (ShapleyLayer, ShapleyConv2d)):
            continue
        mlp = layer.mlp
        dims = [mlp.group_size * mlp.in_channels, *mlp.hidden, mlp.out_channels]
        per_eval = sum(2 * a * b for a, b in itertools.pairwise(dims))
        if isinstance(layer, ShapleyLayer):
            evaluations = layer.n_modules * batch
        else:
            h, w = model.input_shape[1:]
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
                layer.kernel_size,
                layer.stride,
                layer.padding,
                layer.dilation,
            )
            windows = ((h + 2 * ph - dh * (kh - 1) - 1) // sh + 1) * (
                (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            )
            evaluations = windows * batch
        total += evaluations * 2**mlp.group_size * per_eval
    return total


def _interleaved_timings(
    fns: list[Callable[[], object]], repeats: int, warmup: int = 3
) -> list[tuple[float, float]]:
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


def check_cost(model: torch.nn.Module, x: torch.Tensor, repeats: int = 200) -> float:
    """CPU seconds that the input checks in front of the compute backends take in one explanation of ``x``.

    Records the checks one ``model.explain(x)`` makes (arguments included), then replays them ``repeats``
    times: a direct measure, far below the noise of timing the explanation with and without them.
    """
    calls: list[tuple[Callable, tuple, dict]] = []

    def recorder(fn: Callable) -> Callable:
        def record(*args: object, **kwargs: object) -> None:
            calls.append((fn, args, kwargs))
            fn(*args, **kwargs)

        return record

    # The checks are looked up by name in the modules that call them.
    patched = [(compiled, "check_layer"), (compiled, "check_prune"), (modules, "check_layer")]
    originals = [getattr(module, name) for module, name in patched]
    try:
        for (module, name), fn in zip(patched, originals):
            setattr(module, name, recorder(fn))
        with torch.no_grad():
            model.explain(x)
    finally:
        for (module, name), fn in zip(patched, originals):
            setattr(module, name, fn)
    start = time.process_time()
    for _ in range(repeats):
        for fn, args, kwargs in calls:
            fn(*args, **kwargs)
    return (time.process_time() - start) / repeats


def measure(
    name: str,
    build: Callable[[object], torch.nn.Module],
    prunes: tuple,
    batch: int,
    repeats: int,
    peak: float,
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
        checks_ms = 1e3 * check_cost(model, x)
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
                "checks_ms": checks_ms,
                "checks_share": checks_ms / (1e3 * explain_med),
            }
        )
    base = rows[0]["explain_ms"]
    for row in rows:
        row["speedup"] = base / row["explain_ms"]
    return rows


def kernel_share(fn: Callable[[], object], repeats: int = 10, warmup: int = 2) -> float:
    """Median share of ``fn``'s one-thread CPU time spent inside the compiled kernels (the part that threads
    split): ``s`` bounds the speed-up of ``n`` threads by Amdahl's law, ``1 / ((1 - s) + s / n)``, unless
    the PyTorch ops around the kernels speed up too."""
    shares = []
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with kernel_calls() as calls:
            for index in range(warmup + repeats):
                calls.clear()
                start = time.process_time()
                fn()
                total = time.process_time() - start
                if index >= warmup:
                    shares.append(sum(seconds for _, seconds, _ in calls) / total)
    finally:
        torch.set_num_threads(before)
    return statistics.median(shares)


def measure_threads(
    name: str,
    build: Callable[[object], torch.nn.Module],
    batch: int,
    repeats: int,
    counts: list[int],
    warmup: int = 2,
) -> list[dict]:
    """Wall-clock explain and training-step times at each thread count, compiled kernels and PyTorch tiles.

    Every (path, thread count, task) runs in turn within each repeat, so a busy spell of a shared machine
    hits all of them alike; the speed-ups are ratios of medians against one thread of the same path.
    """
    torch.manual_seed(0)
    explainer, trainer = build(None), build(None)
    trainer.load_state_dict(explainer.state_dict())
    x = torch.randn(batch, *explainer.input_shape)
    y = torch.randint(0, explainer.n_outputs, (batch,))
    optimizer = torch.optim.Adam(trainer.parameters(), lr=1e-3)

    def explain() -> None:
        with torch.no_grad():
            explainer.explain(x)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(trainer(x), y).backward()
        optimizer.step()

    cases = [
        (path, n, task)
        for path in ("compiled", "torch tiles")
        for n in counts
        for task in ("explain", "train")
    ]
    run = {"explain": explain, "train": train_step}
    times: dict[tuple, list[float]] = {case: [] for case in cases}
    for index in range(warmup + repeats):
        for case in cases:
            path, n, task = case
            torch.set_num_threads(n)
            with kernels.disabled() if path == "torch tiles" else contextlib.nullcontext():
                start = time.perf_counter()
                run[task]()
                elapsed = time.perf_counter() - start
            if index >= warmup:
                times[case].append(elapsed)
    torch.set_num_threads(1)
    shares = {"explain": kernel_share(explain, repeats), "train": kernel_share(train_step, repeats)}
    rows = []
    for path in ("compiled", "torch tiles"):
        for n in counts:
            explain_ms = 1e3 * statistics.median(times[(path, n, "explain")])
            train_ms = 1e3 * statistics.median(times[(path, n, "train")])
            one_explain = 1e3 * statistics.median(times[(path, counts[0], "explain")])
            one_train = 1e3 * statistics.median(times[(path, counts[0], "train")])
            rows.append(
                {
                    "config": name,
                    "path": path,
                    "threads": n,
                    "batch": batch,
                    "explain_ms": explain_ms,
                    "explain_speedup": one_explain / explain_ms,
                    "train_step_ms": train_ms,
                    "train_speedup": one_train / train_ms,
                    # One-thread CPU share inside the kernels, and the speed-up Amdahl's law allows
                    # if only they ran on n threads (compiled path only).
                    "explain_kernel_share": shares["explain"] if path == "compiled" else None,
                    "explain_amdahl": 1 / (1 - shares["explain"] + shares["explain"] / n)
                    if path == "compiled"
                    else None,
                    "train_kernel_share": shares["train"] if path == "compiled" else None,
                    "train_amdahl": 1 / (1 - shares["train"] + shares["train"] / n)
                    if path == "compiled"
                    else None,
                }
            )
    return rows


TABULAR_PRUNES = (None, Pruning(fraction=0.5), Pruning(fraction=0.5, granularity="group"))
CONFIGS: dict[str, tuple[Callable[[object], torch.nn.Module], tuple, int]] = {
    "deep d=16": (lambda p: DeepShapNet(16, 10, channels=16, hidden=(64,), prune=p), TABULAR_PRUNES, 512),
    "deep d=64": (lambda p: DeepShapNet(64, 10, channels=16, hidden=(64,), prune=p), TABULAR_PRUNES, 512),
    # Not one of issue #6's configurations: wide modules, where the module work that pruning skips dominates.
    "deep d=64 h=256": (
        lambda p: DeepShapNet(64, 10, channels=16, hidden=(256,), prune=p),
        TABULAR_PRUNES,
        512,
    ),
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


def plot_threads(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(dict.fromkeys(r["config"] for r in rows))
    fig, axes = plt.subplots(1, len(configs), figsize=(4.5 * len(configs), 3.6), squeeze=False)
    for ax, config in zip(axes[0], configs):
        for path_name, style in (("compiled", "-o"), ("torch tiles", "--s")):
            for task, color in (("explain", "C0"), ("train_step", "C1")):
                sel = [r for r in rows if r["config"] == config and r["path"] == path_name]
                ax.plot(
                    [r["threads"] for r in sel],
                    [r[f"{task}_ms"] for r in sel],
                    style,
                    color=color,
                    label=f"{task.replace('_', ' ')}, {path_name}",
                )
        ax.set_xlabel("threads")
        ax.set_ylabel("wall ms per batch (median)")
        ax.set_yscale("log")
        ax.set_title(config)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks speed", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/speed")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help=f"comma-separated subset of: {', '.join(CONFIGS)}"
    )
    parser.add_argument("--batch", type=int, default=None, help="override every configuration's batch size")
    parser.add_argument(
        "--threads",
        default=None,
        help="comma-separated thread counts, e.g. 1,2: time each (wall clock) instead",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = prepare_out(args.out)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configs {unknown}; expected some of {list(CONFIGS)}")
    counts = None
    if args.threads is not None:
        try:
            counts = [int(t) for t in args.threads.split(",") if t.strip()]
        except ValueError:
            counts = []
        if not counts or min(counts) < 1:
            parser.error(f"--threads takes positive integers such as 1,2; got {args.threads!r}")
    start = time.perf_counter()
    rows: list[dict] = []
    info = machine_info()
    if counts is not None:
        for name in names:
            build, _, batch = CONFIGS[name]
            rows.extend(measure_threads(name, build, args.batch or batch, args.repeats, counts))
        columns = [
            "config",
            "path",
            "threads",
            "batch",
            "explain_ms",
            "explain_speedup",
            "explain_amdahl",
            "train_step_ms",
            "train_speedup",
            "train_amdahl",
            "explain_kernel_share",
            "train_kernel_share",
        ]
        stem = "threads"
        print(f"machine: {info['cpu']}, {info['cores']} cores; wall-clock medians, threads {counts}")
    else:
        peak = dense_matmul_flops()
        info["dense_matmul_gflops_1_thread"] = peak / 1e9
        for name in names:
            build, prunes, batch = CONFIGS[name]
            rows.extend(measure(name, build, prunes, args.batch or batch, args.repeats, peak))
        columns = [
            "config",
            "prune",
            "batch",
            "explain_ms",
            "train_step_ms",
            "train/explain",
            "naive_gflop",
            "efficiency",
            "efficiency_best",
            "skipped",
            "speedup",
            "checks_ms",
            "checks_share",
        ]
        stem = "speed"
        print(f"machine: {info['cpu']}, 1 thread, dense matmul {peak / 1e9:.1f} GFLOP/s")
    info.update(repeats=args.repeats, wall_seconds=time.perf_counter() - start, threads=counts or [1])
    print(format_table(rows, columns))
    import csv

    with open(out / f"{stem}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_json(out / f"{stem}.json", {"machine": info, "rows": rows})
    (plot_threads if counts is not None else plot)(rows, str(out / f"{stem}.png"))
    print(f"wrote {out / stem}.csv, .json and .png in {info['wall_seconds']:.0f} s")
    return 0
