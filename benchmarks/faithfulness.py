"""Faithfulness without retraining: Captum and Quantus metrics for ShapNet and the ROAR methods.

    python -m benchmarks faithfulness --dataset breast_cancer|digits|mnist [--data-dir DIR] [--out DIR]
        [--model deep|shallow|mlp] [--methods roar|all|name,name] [--n-samples 50] [--n-sensitivity 10]
        [--max-train N] [--epochs E]

Tiny sample counts: by default 50 test samples (MNIST: 20, and the model is trained on 10000 training
images) and sensitivity_max on the first 10 of them (MNIST: 4).

One model is trained with the ROAR benchmark's recipe (:mod:`benchmarks.models`; ``--model deep`` is a
DeepShapNet for tables and a small VisionShapNet for images) with its reference set to the training mean.
Every method of :mod:`benchmarks.methods` (by default the ROAR set, :data:`benchmarks.methods.DEFAULT_METHODS`)
explains the predicted class's logit of the first ``--n-samples`` test samples against that same reference
(one background row). A method that cannot explain the model is reported as not applicable, with the reason.

Metrics (arrow: which direction is better), all on logits (Quantus ``softmax=False``):

* ``infidelity`` ↓ (Captum ``infidelity``, ``normalize=True``, 32 perturbations per sample): a uniformly
  random subset of features (whole pixels; each with probability 1/2) is set to the reference, the same
  removal as in the Shapley game, and the perturbation vector is that subset's 0/1 mask, so the score is
  the (optimally rescaled) squared error of "sum of the removed features' attributions" as a prediction of
  the logit's change.
* ``sensitivity_max`` ↓ (Captum, default uniform noise of radius 0.02 in standardised units, 5 perturbations),
  on the first ``--n-sensitivity`` samples only: it re-runs the method on every perturbed input.
* ``faithfulness_corr`` ↑ (Quantus FaithfulnessCorrelation, 100 random subsets of ``F/4`` features, at most 224),
  ``monotonicity_corr`` ↑ (Quantus MonotonicityCorrelation, 1 sample per step: the removal is deterministic)
  and ``pixel_flipping`` ↓ (Quantus PixelFlipping curve of the logit as the most relevant features are removed,
  averaged over the curve): removed features are replaced by the reference (a custom ``perturb_func``),
  ``F/28`` features per step (at least 1). Other parameters are Quantus' defaults (normalise by max;
  MonotonicityCorrelation takes absolute values).
* images only: ``road_morf`` ↓ and ``road_lerf`` ↑ (Quantus ROAD with noisy linear imputation, noise 0.01, at
  5, 15, ..., 95 % of pixels removed, most- and least-relevant first; the mean accuracy over the percentages
  of predicting the originally predicted class). Quantus ROAD only orders most-relevant first; least-relevant
  first is the same metric on the reversed ranking (``max(a) - a`` per sample).

Tabular data reach Quantus as ``(B, 1, F)`` (``shapnet_adapters.quantus.TabularAsImage`` for ShapNets, an
equivalent wrapper for other models). Quantus 0.6 calls ``np.trapz``, removed in numpy 2.4, to compute the
AUC of PixelFlipping; the curves are taken with ``return_auc_per_sample=False`` and integrated with
``np.trapezoid`` instead (``shapnet_adapters.quantus.auc``).
"""

from __future__ import annotations

import argparse
import csv
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ._common import format_table, machine_info, prepare_out, write_json

__all__ = ["FAITHFULNESS_DATASETS", "METRICS", "RowAsImage", "reference_replacement", "subset_removal", "main"]

FAITHFULNESS_DATASETS = ("breast_cancer", "digits", "mnist")

#: metric -> (better direction, images only)
METRICS: dict[str, tuple[str, bool]] = {
    "infidelity": ("lower", False),
    "sensitivity_max": ("lower", False),
    "faithfulness_corr": ("higher", False),
    "monotonicity_corr": ("higher", False),
    "pixel_flipping": ("lower", False),
    "road_morf": ("lower", True),
    "road_lerf": ("higher", True),
}

ROAD_PERCENTAGES = list(range(5, 100, 10))


class RowAsImage(nn.Module):
    """Any tabular classifier seen by Quantus as a one-row, one-channel image.

    The non-ShapNet counterpart of ``shapnet_adapters.quantus.TabularAsImage``.

    Shape:
        ``x``: ``(B, 1, F)``; output: ``(B, K)``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.reshape(x.shape[0], -1))


def reference_replacement(arr: np.ndarray, indices: np.ndarray, reference: np.ndarray, **kwargs: Any) -> np.ndarray:
    """Quantus batch ``perturb_func``: set ``arr[b, indices[b]]`` to the reference's values.

    Args:
        arr: ``(B, E)`` flattened inputs (Quantus' batched faithfulness metrics pass them flat).
        indices: ``(B, I)`` element indices to remove.
        reference: ``(E,)`` the flattened reference.
        kwargs: Quantus' other perturbation arguments (``perturb_baseline``), unused.

    Returns:
        ``(B, E)`` perturbed copy.
    """
    out = np.array(arr, copy=True)
    idx = np.asarray(indices, dtype=np.int64)
    rows = np.arange(out.shape[0])[:, None]
    out[rows, idx] = np.asarray(reference, dtype=out.dtype).reshape(-1)[idx]
    return out


def subset_removal(reference: torch.Tensor, seed: int) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Captum infidelity ``perturb_func``: random features (whole pixels) set to ``reference``.

    The perturbation returned is the 0/1 removal mask ``I``, so that ``I · a`` is the total attribution of
    the removed features: the prediction an additive explanation makes for ``f(x) - f(x with them
    removed)``. This is Captum's ``multiply_by_inputs`` convention (``(x - x̃) / (x - r)``), right for
    attributions that already include ``x - r`` (Shapley values, path methods), and the same sum that
    Quantus' FaithfulnessCorrelation correlates with the prediction change.

    Returns:
        ``perturb(inputs) -> (mask, perturbed)``, both like ``inputs`` (``(N, F)`` or ``(N, C, H, W)``).
    """
    generator = torch.Generator().manual_seed(int(seed))

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        shape = (x.shape[0], 1, *x.shape[2:]) if x.dim() == 4 else x.shape  # one draw per pixel
        removed = (torch.rand(shape, generator=generator) < 0.5).expand_as(x)
        perturbed = torch.where(removed, reference.to(x), x)
        return removed.to(x.dtype), perturbed

    return perturb


def _n_features(input_shape: tuple[int, ...]) -> int:
    """Ranked features: input elements for tables, pixels for images."""
    return input_shape[0] if len(input_shape) == 1 else input_shape[1] * input_shape[2]


def _quantus_view(model: nn.Module, x: np.ndarray, a: np.ndarray) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """The model and arrays as Quantus takes them: tables become ``(B, 1, F)``."""
    if x.ndim == 4:
        return model, x, a
    from shapnet import ShapNet
    from shapnet_adapters.quantus import TabularAsImage

    wrapped = TabularAsImage(model) if isinstance(model, ShapNet) else RowAsImage(model)
    return wrapped.eval(), x[:, None, :], a[:, None, :]


def _quantus_scores(
    model: nn.Module, x: np.ndarray, y: np.ndarray, a: np.ndarray, reference: np.ndarray, seed: int
) -> dict[str, float]:
    import quantus

    from shapnet_adapters.quantus import auc

    qmodel, qx, qa = _quantus_view(model, x, a)
    n_features = _n_features(tuple(x.shape[1:]))
    step = max(1, n_features // 28)
    common = {"disable_warnings": True, "display_progressbar": False}
    perturb = {"perturb_func": reference_replacement, "perturb_func_kwargs": {"reference": reference.reshape(-1)}}
    call = {"model": qmodel, "x_batch": qx, "y_batch": y, "a_batch": qa, "softmax": False,
            "channel_first": True, "device": "cpu", "batch_size": len(qx)}
    out: dict[str, float] = {}
    np.random.seed(seed)  # FaithfulnessCorrelation draws its subsets from numpy's global RNG
    metrics: dict[str, Callable[[], Any]] = {
        "faithfulness_corr": lambda: quantus.FaithfulnessCorrelation(
            nr_runs=100, subset_size=max(1, min(224, n_features // 4)), **perturb, **common)(**call),
        "monotonicity_corr": lambda: quantus.MonotonicityCorrelation(
            nr_samples=1, features_in_step=step, **perturb, **common)(**call),
        "pixel_flipping": lambda: quantus.PixelFlipping(
            features_in_step=step, return_auc_per_sample=False, **perturb, **common)(**call),
    }
    for name, run in metrics.items():
        scores = run()
        if name == "pixel_flipping":
            curves = np.asarray(scores, dtype=np.float64)  # (B, T): logit after each removal step
            scores = auc(curves, dx=1.0 / max(1, curves.shape[1] - 1))  # the curve's mean over [0, 1]
        out[name] = float(np.nanmean(np.asarray(scores, dtype=np.float64)))
    if x.ndim == 4:
        for name, ranking in (("road_morf", qa), ("road_lerf", _reversed(qa))):
            road = quantus.ROAD(percentages=ROAD_PERCENTAGES, noise=0.01, abs=False, **common)
            curve = road(**{**call, "a_batch": ranking})  # {percentage: accuracy}
            out[name] = float(np.mean(list(curve.values())))
    return out


def _reversed(a: np.ndarray) -> np.ndarray:
    """The same ranking reversed, kept non-negative (Quantus rejects all-negative attributions)."""
    flat = a.reshape(a.shape[0], -1)
    return (flat.max(1, keepdims=True) - flat).reshape(a.shape)


def _captum_scores(
    model: nn.Module, explain: Callable[..., Any], x: torch.Tensor, target: torch.Tensor,
    attributions: torch.Tensor, reference: torch.Tensor, n_sensitivity: int, seed: int,
) -> dict[str, float]:
    from captum.metrics import infidelity, sensitivity_max

    with torch.no_grad():
        infid = infidelity(model, subset_removal(reference, seed), x, attributions, target=target,
                           n_perturb_samples=32, normalize=True)
    torch.manual_seed(seed)  # sensitivity_max draws its noise from torch's global RNG
    k = min(n_sensitivity, len(x))
    sens = sensitivity_max(explain, x[:k], n_perturb_samples=5, target=target[:k])
    return {"infidelity": float(infid.double().mean()), "sensitivity_max": float(sens.double().mean())}


def _explainer(spec: Any, model: nn.Module, background: torch.Tensor, seed: int) -> Callable[..., Any]:
    """The method as a Captum ``explanation_func`` (``sensitivity_max`` passes inputs as a 1-tuple)."""

    def explain(inputs: Any, target: Any = None, **kwargs: Any) -> Any:
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        out = spec(model, x.detach(), torch.as_tensor(target).reshape(-1), background=background, seed=seed)
        # A tuple in, a tuple out: sensitivity_max iterates over the result as a tuple of tensors.
        return (out,) if isinstance(inputs, tuple) else out

    return explain


def _load_model(args: argparse.Namespace, data: Any) -> tuple[nn.Module, float, float]:
    from .models import accuracy, build_model, default_config, train_model

    config = default_config(args.model, args.dataset, epochs=args.epochs)
    reference = data.X_train.mean(0)
    model = build_model(config, data.X_train.shape[1:], data.n_classes, seed=args.seed, reference=reference)
    tic = time.perf_counter()
    train_model(model, data.X_train, data.y_train, config, seed=args.seed)
    return model.eval(), accuracy(model, data.X_test, data.y_test), time.perf_counter() - tic


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in METRICS if any(isinstance(r.get(m), float) and math.isfinite(r[m]) for r in rows)]
    if not metrics:
        return
    cols = min(4, len(metrics))
    n_rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.6 * cols, 3.2 * n_rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        pts = [(r["method"], r[metric]) for r in rows if isinstance(r.get(metric), float) and math.isfinite(r[metric])]
        colors = ["crimson" if name == "shapnet" else ("grey" if name == "random" else "tab:blue") for name, _ in pts]
        ax.barh([p[0] for p in pts], [p[1] for p in pts], color=colors)
        ax.set_title(f"{metric} ({METRICS[metric][0]} is better)", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.invert_yaxis()
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from .methods import DEFAULT_METHODS, METHODS, get_method

    parser = argparse.ArgumentParser(prog="python -m benchmarks faithfulness", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=FAITHFULNESS_DATASETS, default="breast_cancer")
    parser.add_argument("--data-dir", default=None, help="data root (default: $SHAPNET_DATA; mnist only)")
    parser.add_argument("--out", default=None, help="default: results/faithfulness/<dataset>")
    parser.add_argument("--model", choices=("deep", "shallow", "mlp"), default="deep",
                        help="model kind of the ROAR benchmark (benchmarks.models)")
    parser.add_argument("--methods", default="roar",
                        help="'roar' (the ROAR benchmark's default set), 'all', or comma-separated method names")
    parser.add_argument("--n-samples", type=int, default=None,
                        help="test samples explained and scored (default 50; mnist 20)")
    parser.add_argument("--n-sensitivity", type=int, default=None,
                        help="samples for sensitivity_max, which re-explains each 5 times (default 10; mnist 4)")
    parser.add_argument("--epochs", type=int, default=None, help="override the ROAR recipe's epochs")
    parser.add_argument("--max-train", type=int, default=None,
                        help="use at most this many training samples (default: all; mnist 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # tests: toy sizes
    args = parser.parse_args(argv)
    # MNIST's 784 pixels make the sampling methods slow (Captum's Shapley value sampling: ~30 s per image).
    for name, default, mnist in (("n_samples", 50, 20), ("n_sensitivity", 10, 4), ("max_train", None, 10000)):
        if getattr(args, name) is None:
            setattr(args, name, mnist if args.dataset == "mnist" else default)
    if args.quick:
        args.n_samples, args.n_sensitivity = min(args.n_samples, 6), min(args.n_sensitivity, 2)
        args.epochs = args.epochs or 1
        args.max_train = args.max_train or 300
    if args.n_samples < 2 or args.n_sensitivity < 1:
        parser.error("--n-samples must be >= 2 and --n-sensitivity >= 1")
    if args.methods == "roar":
        names = list(DEFAULT_METHODS)
    elif args.methods == "all":
        names = list(METHODS)
    else:
        names = [n.strip() for n in args.methods.split(",") if n.strip()]
        try:
            for n in names:
                get_method(n)
        except ValueError as err:
            parser.error(str(err))
    out = prepare_out(args.out or f"results/faithfulness/{args.dataset}")

    from tqdm.auto import tqdm

    from shapnet.datasets import load_dataset

    torch.set_num_threads(1)
    wall = time.perf_counter()
    data = load_dataset(args.dataset, args.data_dir, max_train=args.max_train)
    model, acc, train_seconds = _load_model(args, data)
    input_shape = tuple(data.X_train.shape[1:])
    n_features = _n_features(input_shape)
    print(f"{args.dataset}: input {input_shape}, {len(data.X_train)} train; {args.model} model "
          f"({type(model).__name__}) test accuracy {acc:.3f} ({train_seconds:.0f} s)")
    x = torch.as_tensor(data.X_test[: args.n_samples])
    with torch.no_grad():
        target = model(x).argmax(1)  # explain the predicted class
    reference = torch.as_tensor(data.X_train.mean(0))
    background = reference.unsqueeze(0)
    image = len(input_shape) == 3

    rows: list[dict[str, Any]] = []
    checks: dict[str, float] = {}
    for name in tqdm(names, desc="methods"):
        spec = get_method(name)
        row: dict[str, Any] = {"method": name, "library": spec.library, "budget": dict(spec.budget) or ""}
        reason = spec.supports(model, n_features)
        if reason is not None:
            rows.append({**row, "status": "n/a", "reason": reason, **{m: "n/a" for m in METRICS}})
            continue
        spec(model, x[:1], target[:1], background=background, seed=args.seed)  # warm-up: imports, numba
        tic = time.perf_counter()
        attributions = spec(model, x, target, background=background, seed=args.seed)
        row["sec_per_sample"] = (time.perf_counter() - tic) / len(x)
        row["status"], row["reason"] = "ok", spec.caveat
        if name == "shapnet":
            # Cross-check: the Quantus adapter gives the same values as the registry (Captum adapter).
            from shapnet_adapters.quantus import explain_func

            qmodel, qx, _ = _quantus_view(model, x.numpy(), attributions.numpy())
            via_quantus = explain_func(qmodel, qx, target.numpy()).reshape(attributions.shape)
            checks["shapnet_quantus_vs_captum_max_abs_diff"] = float(np.abs(via_quantus - attributions.numpy()).max())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                row.update(_captum_scores(model, _explainer(spec, model, background, args.seed), x, target,
                                          attributions, reference, args.n_sensitivity, args.seed))
            except Exception as err:  # one failing metric must not lose the others: report it
                row["reason"] = f"{row['reason']}; Captum metrics failed: {type(err).__name__}: {err}".strip("; ")
            try:
                row.update(_quantus_scores(model, x.numpy(), target.numpy(), attributions.numpy(),
                                           reference.numpy(), args.seed))
            except Exception as err:
                row["reason"] = f"{row['reason']}; Quantus metrics failed: {type(err).__name__}: {err}".strip("; ")
        for metric, (_, images_only) in METRICS.items():
            if images_only and not image:
                row[metric] = "n/a (images only)"
            row.setdefault(metric, "failed")
        rows.append(row)

    columns = ["method", "status", *METRICS, "sec_per_sample"]
    print(f"\n{len(x)} test samples (sensitivity_max: {min(args.n_sensitivity, len(x))}), predicted-class logit, "
          f"reference = training mean. Better: " + ", ".join(f"{m} {d}" for m, (d, _) in METRICS.items()))
    print(format_table(rows, columns))
    for r in rows:
        if r.get("reason"):
            print(f"  {r['method']}: {r['reason']}")
    fields = ["method", "library", "status", *METRICS, "sec_per_sample", "budget", "reason"]
    with open(out / "faithfulness.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    info = {**machine_info(), "wall_seconds": time.perf_counter() - wall}
    write_json(out / "faithfulness.json", {
        "machine": info, "settings": vars(args), "methods": names,
        "model": {"kind": args.model, "class": type(model).__name__, "test_accuracy": acc,
                  "train_seconds": train_seconds},
        "n_samples": len(x), "n_sensitivity": min(args.n_sensitivity, len(x)),
        "directions": {m: d for m, (d, _) in METRICS.items()}, "checks": checks, "rows": rows,
    })
    plot(rows, str(out / "faithfulness.png"), f"Faithfulness on {args.dataset} ({args.model} model, {len(x)} samples)")
    print(f"wrote {out / 'faithfulness.csv'}, {out / 'faithfulness.json'}, {out / 'faithfulness.png'} "
          f"in {info['wall_seconds']:.0f} s")
    return 0
