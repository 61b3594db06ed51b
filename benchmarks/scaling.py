"""Scaling: time to explain one batch as the number of features grows, ShapNet against post-hoc estimators.

    python -m benchmarks scaling [--dims 16,64,256,1024] [--batch 64] [--out results/scaling]

Models: at each ``d`` a ``DeepShapNet(d, 1, channels=16, hidden=(64,))`` with one butterfly
(``log2 d`` layers), briefly trained (``--train-steps`` Adam steps of 64, default 100; 0 = untrained)
on a synthetic regression task: ``x ~ N(0, I)``, ``y = x·w + sum of d/2 random pairwise products``.
One output (a regression), so post-hoc methods and the ShapNet explain the same single logit; the
reference is 0 (the data mean) and every method uses it as its baseline/background.

Methods: the ShapNet's built-in values (one explained forward pass); shap ``KernelExplainer``
(``l1_reg=False``) and Captum ``ShapleyValueSampling`` (permutation sampling). Budgets:

* ``d = 16`` (ground truth by :func:`shapnet.exact_shapley` is feasible): each estimator's budget is
  calibrated, on the first ``--calib-samples`` samples (8), to the smallest of a doubling ladder whose
  relative L2 error against the exact values is at most the ShapNet's own error on them (Kernel SHAP:
  ``nsamples`` from 32 up to ``2**16``, where it enumerates every coalition; sampling: 1 to 256
  permutations). If no budget on the ladder reaches it, the largest is used and the table says so.
* ``d > 16``: the libraries' default budgets (shap: ``nsamples = 2 d + 2048``; Captum: 25 permutations).

Post-hoc methods cost the same for every sample, and at large ``d`` a batch takes minutes: each is timed on
one sample, then on as many samples of the batch as fit in ``--max-seconds`` (default 60), and the time is
scaled to the batch (column ``measured``: how many samples were timed). One-time costs (imports, shap's
numba compilation) are paid before any timing. The ShapNet is
timed on the whole batch (median of ``--repeats``). One torch thread and one BLAS thread throughout.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from shapnet import DeepShapNet, exact_shapley

from ._common import (
    CountingModel, attribution_metrics, format_table, limit_blas_threads, machine_info, prepare_out, write_json,
)
from .fidelity import numpy_model

__all__ = ["synthetic_task", "build_model", "kernel_shap", "shapley_sampling", "calibrate", "main"]

DEFAULT_DIMS = (16, 64, 256, 1024)
KERNEL_LADDER = tuple(2**p for p in range(2, 17))  # 4 ... 65536; cut to (d + 1, 2**d]
SAMPLING_LADDER = tuple(2**p for p in range(0, 9))  # 1 ... 256 permutations
MAX_EXACT = 16

# explain(model, x (B, d)) -> (B, d) attributions of the single output
Explain = Callable[[torch.nn.Module, torch.Tensor], np.ndarray]


def synthetic_task(d: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X (n, d), y (n,))``: standard normal features, a linear term plus ``d/2`` pairwise products."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, generator=g) / math.sqrt(d)
    pairs = torch.randperm(d, generator=g)[: 2 * (d // 2)].view(-1, 2)  # (d/2, 2) disjoint random pairs
    y = x @ w + (x[:, pairs[:, 0]] * x[:, pairs[:, 1]]).sum(1) / math.sqrt(max(1, len(pairs)))
    return x, y


def build_model(d: int, args: argparse.Namespace) -> DeepShapNet:
    """A seeded single-output Deep ShapNet, trained ``args.train_steps`` steps on :func:`synthetic_task`."""
    torch.manual_seed(args.seed)
    model = DeepShapNet(d, 1, channels=args.channels, hidden=tuple(args.hidden))
    if args.train_steps > 0:
        from shapnet.training import fit

        x, y = synthetic_task(d, 64 * args.train_steps, args.seed)
        fit(model, x, y, epochs=1, batch_size=64, lr=3e-3, seed=args.seed, progress=False, task="regression")
    return model.eval()


def kernel_shap(nsamples: int | None) -> Explain:
    """shap's KernelExplainer with the model's reference as the one background row (None: shap's default)."""

    def run(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
        import shap

        reference = model.model.reference if isinstance(model, CountingModel) else model.reference
        explainer = shap.KernelExplainer(numpy_model(model), reference.detach().unsqueeze(0).numpy())
        kwargs: dict[str, Any] = {"l1_reg": False, "silent": True}
        if nsamples is not None:
            kwargs["nsamples"] = nsamples
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # singular regressions at small budgets
            values = np.asarray(explainer.shap_values(x.numpy(), **kwargs))
        return values.reshape(len(x), -1)  # (B, d, 1) -> (B, d)

    return run


def shapley_sampling(permutations: int | None) -> Explain:
    """Captum's ShapleyValueSampling against the model's reference (None: Captum's default, 25)."""

    def run(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
        from captum.attr import ShapleyValueSampling

        reference = model.model.reference if isinstance(model, CountingModel) else model.reference
        kwargs: dict[str, Any] = {"perturbations_per_eval": min(x.shape[1], 64)}
        if permutations is not None:
            kwargs["n_samples"] = permutations
        with torch.no_grad():
            values = ShapleyValueSampling(model).attribute(
                x, baselines=reference.detach().unsqueeze(0), target=0, **kwargs
            )
        return values.numpy()

    return run


def _builtin_values(model: DeepShapNet, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.explain(x).values[..., 0].numpy()


def calibrate(
    model: DeepShapNet, x: torch.Tensor, truth: np.ndarray, target_error: float, make: Callable[[int], Explain],
    ladder: tuple[int, ...],
) -> dict[str, Any]:
    """The smallest budget on ``ladder`` whose error on ``x`` is at most ``target_error``.

    Returns:
        ``{"budget", "rel_l2", "reached" (bool), "tried": [(budget, rel_l2), ...]}``; the largest budget
        when none reaches the target.
    """
    tried = []
    for budget in ladder:
        err = attribution_metrics(make(budget)(model, x), truth)["rel_l2"]
        tried.append((budget, err))
        if err <= target_error:
            return {"budget": budget, "rel_l2": err, "reached": True, "tried": tried}
    return {"budget": ladder[-1], "rel_l2": tried[-1][1], "reached": False, "tried": tried}


def _time_posthoc(
    explain: Explain, model: DeepShapNet, x: torch.Tensor, max_seconds: float
) -> tuple[float, int, float]:
    """``(seconds per sample, samples timed, model evaluations per sample)``.

    Times one sample; if ``max_seconds`` allows ``n > 1`` samples, times the first ``n`` samples again
    (one call) and reports that. One-time costs (imports, numba) are paid beforehand by :func:`_warm_up`.
    """
    counting = CountingModel(model).eval()
    start = time.perf_counter()
    explain(counting, x[:1])
    one = time.perf_counter() - start
    evals = counting.rows
    n = max(1, min(len(x), int(max_seconds / max(one, 1e-9))))
    if n <= 1:
        return one, 1, float(evals)
    counting.rows = 0
    start = time.perf_counter()
    explain(counting, x[:n])
    return (time.perf_counter() - start) / n, n, counting.rows / n


def _warm_up() -> None:
    """Pay the one-time costs (imports, shap's numba compilation) on a tiny model, untimed."""
    torch.manual_seed(0)
    tiny = DeepShapNet(4, 1, channels=2, hidden=(4,)).eval()
    x = torch.randn(2, 4)
    for explain in (kernel_shap(16), shapley_sampling(2)):
        explain(CountingModel(tiny).eval(), x)


def _time_builtin(model: DeepShapNet, x: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        model.explain(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.explain(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def plot(rows: list[dict], path: str, batch: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    methods: dict[str, list[dict]] = {}
    for r in rows:
        methods.setdefault(r["method"], []).append(r)
    for method, pts in methods.items():
        shapnet = method.startswith("ShapNet")
        style = {"color": "crimson", "marker": "*", "markersize": 12} if shapnet else {"marker": "o"}
        ax.plot([p["d"] for p in pts], [p["seconds_per_batch"] for p in pts], label=method, **style)
        for p in pts:
            if p["measured"] < batch:
                ax.annotate(f"{p['measured']}/{batch}", (p["d"], p["seconds_per_batch"]), fontsize=6,
                            textcoords="offset points", xytext=(3, -9))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("number of features d")
    ax.set_ylabel(f"seconds to explain {batch} samples (1 thread)")
    ax.set_title(f"Explanation time vs number of features (d <= {MAX_EXACT}: post-hoc budgets calibrated to "
                 "ShapNet's error;\n"
                 f"larger d: library defaults; n/{batch}: timed on n samples, scaled to the batch)", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _int_list(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{name} must be comma-separated integers, got {text!r}") from err
    if not values or any(v < 2 for v in values):
        raise argparse.ArgumentTypeError(f"{name} must hold integers >= 2, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--dims", default=",".join(map(str, DEFAULT_DIMS)), help="feature counts d")
    parser.add_argument("--batch", type=int, default=64, help="samples in the explained batch")
    parser.add_argument("--out", default="results/scaling")
    parser.add_argument("--train-steps", type=int, default=100, help="Adam steps on synthetic data (0: untrained)")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64])
    parser.add_argument("--calib-samples", type=int, default=8, help="samples for the d = 16 budget calibration")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="time budget per post-hoc cell: fewer samples are timed and scaled to the batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of the ShapNet's explain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # tests: toy sizes
    args = parser.parse_args(argv)
    try:
        dims = _int_list(args.dims, "--dims")
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    if args.quick:
        args.batch, args.train_steps, args.channels, args.hidden = min(args.batch, 4), 2, 4, [8]
        args.calib_samples, args.max_seconds, args.repeats = 2, 0.5, 1
    if args.batch < 1 or args.calib_samples < 1 or args.train_steps < 0:
        parser.error("--batch and --calib-samples must be >= 1, --train-steps >= 0")

    from tqdm.auto import tqdm

    torch.set_num_threads(1)
    out = prepare_out(args.out)
    wall = time.perf_counter()
    rows: list[dict[str, Any]] = []
    calibration: dict[int, dict[str, Any]] = {}
    with limit_blas_threads():
        _warm_up()
        for d in tqdm(dims, desc="d", disable=len(dims) < 2):
            model = build_model(d, args)
            x = synthetic_task(d, args.batch, args.seed + 1)[0]  # fresh samples, not the training set
            shapnet_seconds = _time_builtin(model, x, args.repeats)
            row = {"d": d, "method": "ShapNet (built-in)", "budget": "", "budget_rule": "one explained forward",
                   "evals_per_sample": 1.0, "measured": len(x), "seconds_per_batch": shapnet_seconds,
                   "rel_l2": "", "x_shapnet": 1.0}
            posthoc: list[tuple[str, Explain, Any, str]] = []
            if d <= MAX_EXACT:
                xc = x[: args.calib_samples]
                tic = time.perf_counter()
                truth = exact_shapley(model, xc, model.reference)[..., 0].numpy()  # (B, d); float64 sums
                exact_seconds = (time.perf_counter() - tic) / len(xc)
                target = attribution_metrics(_builtin_values(model, xc), truth)["rel_l2"]
                row["rel_l2"] = target
                # Doubling from the first power of 2 above d + 1 up to 2**d (every coalition: exact).
                ladder = tuple(b for b in KERNEL_LADDER if d + 1 < b < 2**d) + (2**d,)
                cal_k = calibrate(model, xc, truth, target, kernel_shap, ladder)
                cal_s = calibrate(model, xc, truth, target, shapley_sampling, SAMPLING_LADDER)
                calibration[d] = {"shapnet_rel_l2": target, "shap Kernel": cal_k, "Captum ShapleyValueSampling": cal_s,
                                  "calib_samples": len(xc), "exact_seconds_per_sample": exact_seconds}
                for name, make, cal, unit in (("shap Kernel", kernel_shap, cal_k, "nsamples"),
                                              ("Captum ShapleyValueSampling", shapley_sampling, cal_s, "permutations")):
                    rule = ("calibrated: reaches ShapNet's error" if cal["reached"]
                            else "calibrated: largest tried, does NOT reach ShapNet's error")
                    posthoc.append((name, make(cal["budget"]), f"{cal['budget']} {unit}",
                                    f"{rule} ({cal['rel_l2']:.3g} vs {target:.3g})"))
                rows.append(row)
                rows.append({"d": d, "method": "exact_shapley (brute force)", "budget": f"2^{d} coalitions",
                             "budget_rule": "ground truth", "evals_per_sample": float(2**d), "measured": len(xc),
                             "seconds_per_batch": exact_seconds * len(x), "rel_l2": 0.0,
                             "x_shapnet": exact_seconds * len(x) / shapnet_seconds})
            else:
                rows.append(row)
                posthoc.append(("shap Kernel", kernel_shap(None), f"{2 * d + 2048} nsamples",
                                "shap default (2d + 2048)"))
                posthoc.append(("Captum ShapleyValueSampling", shapley_sampling(None), "25 permutations",
                                "Captum default"))
            for name, explain, budget, rule in posthoc:
                per_sample, measured, evals = _time_posthoc(explain, model, x, args.max_seconds)
                cal = calibration.get(d, {}).get(name)
                rows.append({"d": d, "method": name, "budget": budget, "budget_rule": rule,
                             "evals_per_sample": evals, "measured": measured,
                             "seconds_per_batch": per_sample * len(x),
                             "rel_l2": "" if cal is None else cal["rel_l2"],
                             "x_shapnet": per_sample * len(x) / shapnet_seconds})
            done = [r for r in rows if r["d"] == d]
            print(format_table(done, ["d", "method", "budget", "measured", "seconds_per_batch", "x_shapnet"]))

    columns = ["d", "method", "budget", "budget_rule", "evals_per_sample", "measured", "seconds_per_batch",
               "rel_l2", "x_shapnet"]
    info = {**machine_info(), "wall_seconds": time.perf_counter() - wall}
    print(f"\nExplaining a batch of {args.batch} samples, single-output DeepShapNet "
          f"({'untrained' if args.train_steps == 0 else f'{args.train_steps} Adam steps on synthetic data'}); "
          "'measured' = samples actually timed (scaled to the batch).")
    print(format_table(rows, columns))
    with open(out / "scaling.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    write_json(out / "scaling.json", {"machine": info, "settings": vars(args), "dims": dims,
                                      "calibration": {str(k): v for k, v in calibration.items()}, "rows": rows})
    plot(rows, str(out / "scaling.png"), args.batch)
    print(f"wrote {out / 'scaling.csv'}, {out / 'scaling.json'}, {out / 'scaling.png'} in {info['wall_seconds']:.0f} s")
    return 0
