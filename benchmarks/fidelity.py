"""Fidelity: how close each attribution method gets to the exact Shapley values of a trained Deep ShapNet.

    python -m benchmarks fidelity --dataset yeast|wine|diabetes [--data-dir DIR] [--out DIR]
        [--consistency L] [--n-samples 100] [--epochs 80] [--seed 0]

The game is the same for every method: ``v(S) = f_k(x_S, r)``, the trained model's logit ``k`` with the
features outside ``S`` at the model's reference ``r`` (zeros = the training mean, as the data are
standardised). ``k`` is the model's predicted class for each sample (the single output for diabetes).
The truth is :func:`shapnet.exact_shapley` over all ``2**F`` coalitions on a float64 copy of the model;
every method explains the float32 model. shap gets a one-row masker/background holding ``r`` (so its game
is this game) and Kernel SHAP runs with ``l1_reg=False`` (plain Kernel SHAP, no feature selection);
Captum gets ``baselines=r``. DeepLiftShap needs at least two baseline rows, so it gets ``r`` twice.
The expensive methods are run on the first ``--n-samples`` test samples (100 by default); all rows use
the same subset. Every timed method gets one untimed warm-up call first (shap compiles code with numba
on first use). Times are wall-clock on one torch thread (and one BLAS thread), per explained sample.

Per method: relative L2 error ``||A - phi*|| / ||phi*||`` over the whole subset, mean per-sample Spearman
rank correlation with ``phi*`` (samples where either vector is constant are left out), mean top-3
agreement ``|top3(|A|) ∩ top3(|phi*|)| / 3``, seconds and model evaluations (forward rows) per sample.
A ShallowShapNet trained the same way is the exact control: its built-in error must be ~1e-7 (float32).

The ratio printed at the end (and stored in fidelity.json): for each sampling estimator (shap Kernel,
shap Permutation, Captum KernelShap, Captum ShapleyValueSampling), the time per sample it needs to reach
the ShapNet's error, interpolated linearly in log(error)-log(time) between the two budgets that bracket
it, divided by the ShapNet's time per sample. When even a family's smallest budget beats the ShapNet,
smaller budgets are added (halving, down to one permutation or F + 1 coalitions; rows marked "extra
budget") until one does not, so that the crossing is bracketed; if even the smallest possible budget
beats it, the ratio is an upper bound and says so. ``--no-bracket`` skips the extra budgets.

Budgets are each method's own parameter: shap Kernel ``nsamples`` (64, 256, 1024 and ``2**F``, which
enumerates every coalition), shap Permutation ``max_evals`` (256, 1024), Captum KernelShap ``n_samples``
and Captum ShapleyValueSampling ``budget // F`` permutations (budgets 64, 256, 1024 model evaluations).
The table's ``evals_per_sample`` counts the model's forward rows actually used.
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from shapnet import DeepShapNet, ShallowShapNet, ShapNet, exact_shapley
from shapnet.groups import padded_size

from ._common import (
    CountingModel, attribution_metrics, format_table, limit_blas_threads, machine_info, prepare_out, write_json,
)

__all__ = [
    "FIDELITY_DATASETS",
    "CountingModel",
    "numpy_model",
    "limit_blas_threads",
    "MethodSpec",
    "build_methods",
    "sampling_spec",
    "min_budget",
    "attribution_metrics",
    "time_to_reach",
    "predicted_targets",
    "true_values",
    "main",
]

#: Datasets small enough for exact Shapley values (``F <= 20``).
FIDELITY_DATASETS = ("yeast", "wine", "diabetes")

#: The sampling estimators whose error-versus-time curves define the speed-up ratio.
SAMPLING_FAMILIES = ("shap Kernel", "shap Permutation", "Captum KernelShap", "Captum ShapleyValueSampling")

DEFAULT_KERNEL_BUDGETS = (64, 256, 1024)  # plus 2**F, added at run time
DEFAULT_PERMUTATION_BUDGETS = (256, 1024)
DEFAULT_CAPTUM_BUDGETS = (64, 256, 1024)
FAST_SECONDS, FAST_REPEATS = 0.5, 5  # calls faster than this are timed this many times (median)


# --------------------------------------------------------------------------- #
# Methods
# --------------------------------------------------------------------------- #
# run(counting_model, x (B, F) float32, target (B,) int64, reference (F,)) -> attributions (B, F)
RunFn = Callable[[CountingModel, torch.Tensor, torch.Tensor, torch.Tensor], np.ndarray]


@dataclass(frozen=True)
class MethodSpec:
    """One attribution method at one setting.

    Attributes:
        name: row label, e.g. ``"shap Kernel (256)"``.
        family: the method without its budget (curves in the plot group by it).
        budget: the method's own sample-count parameter (None for deterministic methods).
        run: computes ``(B, F)`` attributions of the target outputs.
        note: how the method was configured (shown in the CSV).
    """

    name: str
    family: str
    budget: int | None
    run: RunFn
    note: str = ""


def numpy_model(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """The model as shap wants it: numpy ``(N, F)`` (float64 from maskers) in, float32 ``(N, K)`` out."""

    def fn(z: np.ndarray) -> np.ndarray:
        rows = torch.as_tensor(np.asarray(z), dtype=torch.float32)
        with torch.no_grad():
            # shap hands over all of a sample's coalitions at once (thousands of rows): bound the memory.
            return torch.cat([model(rows[i : i + 2048]) for i in range(0, len(rows), 2048)]).numpy()

    return fn


def _select(values: np.ndarray, target: torch.Tensor) -> np.ndarray:
    """``(B, F, K)`` -> ``(B, F)`` at each row's target output."""
    values = np.asarray(values)
    if values.ndim == 2:  # single-output models: shap may drop K
        return values
    return values[np.arange(len(values)), :, target.numpy()]


def _builtin(model: CountingModel, x: torch.Tensor, target: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        model.rows += x.shape[0]  # one explained forward pass per sample
        values = model.model.explain(x).values  # (B, F, K)
    return values[torch.arange(len(x)), :, target].numpy()


def _shap_kernel(budget: int) -> RunFn:
    def run(model: CountingModel, x: torch.Tensor, target: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
        import shap

        explainer = shap.KernelExplainer(numpy_model(model), reference.unsqueeze(0).numpy())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "regression equation is singular" at small budgets: expected
            values = explainer.shap_values(x.numpy(), nsamples=budget, l1_reg=False, silent=True)
        return _select(values, target)

    return run


def _shap_masked(kind: str, budget: int | None) -> RunFn:
    def run(model: CountingModel, x: torch.Tensor, target: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
        import shap

        masker = shap.maskers.Independent(reference.unsqueeze(0).numpy(), max_samples=1)
        if kind == "exact":
            explanation = shap.explainers.Exact(numpy_model(model), masker)(x.numpy(), silent=True)
        else:
            explanation = shap.explainers.Permutation(numpy_model(model), masker)(
                x.numpy(), max_evals=budget, silent=True
            )
        return _select(explanation.values, target)

    return run


def _captum(name: str, **kwargs: Any) -> RunFn:
    def run(model: CountingModel, x: torch.Tensor, target: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
        import captum.attr as ca

        method = getattr(ca, name)(model)
        call = dict(kwargs)
        if name == "DeepLiftShap":
            call["baselines"] = reference.unsqueeze(0).repeat(2, 1)  # it refuses a single baseline row
        elif name != "InputXGradient":
            call["baselines"] = reference.unsqueeze(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "required_grads has been set automatically" and hook notices
            attributions = method.attribute(x, target=target, **call)
        return attributions.detach().numpy()

    return run


def sampling_spec(family: str, budget: int, n_features: int) -> MethodSpec:
    """One of the :data:`SAMPLING_FAMILIES` at ``budget`` (its own parameter; see :func:`build_methods`)."""
    full = 2**n_features
    if family == "shap Kernel":
        label = f"2^{n_features}={full}" if budget == full else str(budget)
        note = "nsamples; l1_reg=False" + ("; enumerates all coalitions (exact)" if budget >= full - 2 else "")
        return MethodSpec(f"shap Kernel ({label})", family, budget, _shap_kernel(budget), note)
    if family == "shap Permutation":
        return MethodSpec(f"shap Permutation ({budget})", family, budget, _shap_masked("permutation", budget),
                          "max_evals")
    if family == "Captum KernelShap":
        return MethodSpec(f"Captum KernelShap ({budget})", family, budget,
                          _captum("KernelShap", n_samples=budget, perturbations_per_eval=min(budget, 256)), "n_samples")
    if family == "Captum ShapleyValueSampling":
        perms = max(1, budget // n_features)
        return MethodSpec(f"Captum ShapleyValueSampling ({budget})", family, budget,
                          _captum("ShapleyValueSampling", n_samples=perms, perturbations_per_eval=n_features),
                          f"{perms} permutation{'s' if perms > 1 else ''}")
    raise ValueError(f"unknown sampling family {family!r}; expected one of {SAMPLING_FAMILIES}.")


def min_budget(family: str, n_features: int) -> int:
    """The smallest sensible budget: one permutation, or one more coalition than features."""
    return {"shap Kernel": n_features + 2, "shap Permutation": 2 * n_features + 1,
            "Captum KernelShap": n_features + 1, "Captum ShapleyValueSampling": n_features}[family]


def build_methods(
    n_features: int,
    *,
    kernel_budgets: Sequence[int] = DEFAULT_KERNEL_BUDGETS,
    permutation_budgets: Sequence[int] = DEFAULT_PERMUTATION_BUDGETS,
    captum_budgets: Sequence[int] = DEFAULT_CAPTUM_BUDGETS,
    include: Sequence[str] | None = None,
) -> list[MethodSpec]:
    """Every method of the fidelity table, in order.

    Args:
        n_features: ``F``; Kernel SHAP also runs at ``2**F`` (all coalitions: exact).
        kernel_budgets: shap Kernel ``nsamples``.
        permutation_budgets: shap Permutation ``max_evals``.
        captum_budgets: model evaluations per sample for Captum KernelShap (``n_samples``) and
            ShapleyValueSampling (``n_samples = budget // F`` permutations, at least 1).
        include: keep only methods whose family contains one of these strings (case-insensitive).
    """
    full = 2**n_features
    specs = [MethodSpec("ShapNet (built-in)", "ShapNet (built-in)", None, _builtin, "one explained forward pass")]
    specs += [sampling_spec("shap Kernel", b, n_features) for b in sorted(set(kernel_budgets) | {full})]
    specs += [sampling_spec("shap Permutation", b, n_features) for b in sorted(set(permutation_budgets))]
    specs.append(MethodSpec("shap Exact", "shap Exact", None, _shap_masked("exact", None), "sanity check: = truth"))
    specs += [sampling_spec("Captum KernelShap", b, n_features) for b in sorted(set(captum_budgets))]
    specs += [sampling_spec("Captum ShapleyValueSampling", b, n_features) for b in sorted(set(captum_budgets))]
    # A ShapNet applies its ReLUs inside a custom autograd function, not as nn.ReLU modules, so Captum's
    # DeepLift rules never fire: DeepLift(Shap) return gradient x (x - r), i.e. InputXGradient here.
    no_rules = "rules do not apply to a ShapNet's functional ReLUs: = gradient x (x - r)"
    specs += [
        MethodSpec("Captum DeepLift", "Captum DeepLift", None, _captum("DeepLift"), no_rules),
        MethodSpec("Captum DeepLiftShap", "Captum DeepLiftShap", None, _captum("DeepLiftShap"),
                   "baselines = r twice; " + no_rules),
        MethodSpec("Captum GradientShap", "Captum GradientShap", None, _captum("GradientShap"),
                   "defaults: n_samples=5, stdevs=0"),
        MethodSpec("Captum IntegratedGradients", "Captum IntegratedGradients", None,
                   _captum("IntegratedGradients", n_steps=50), "50 steps"),
        MethodSpec("Captum InputXGradient", "Captum InputXGradient", None, _captum("InputXGradient"),
                   "implicit baseline 0 (= r here)"),
    ]
    if include:
        wanted = [w.lower() for w in include]
        specs = [s for s in specs if any(w in s.family.lower() for w in wanted)]
    return specs


# --------------------------------------------------------------------------- #
# Truth and metrics
# --------------------------------------------------------------------------- #
@torch.no_grad()
def predicted_targets(model: ShapNet, x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` int64: the predicted class (``0`` for single-output models)."""
    return model(x).argmax(1)


def true_values(model: ShapNet, x: torch.Tensor) -> torch.Tensor:
    """Exact Shapley values of every output, ``(B, F, K)`` float64, from a float64 copy of ``model``."""
    exact_model = copy.deepcopy(model).double().eval()
    return exact_shapley(exact_model, x.double(), exact_model.reference)


def time_to_reach(points: Sequence[tuple[float, float]], target_error: float) -> dict[str, Any]:
    """When an estimator's error first falls to ``target_error``, from its ``(seconds, error)`` points.

    ``points`` are in budget order. Between the two budgets bracketing ``target_error`` the time is
    interpolated linearly in ``log(time)`` against ``log(error)``.

    Returns:
        ``{"status": "interpolated" | "first budget" | "not reached", "seconds": float | None,
        "budget_index": index of the first budget at or below the target (None if not reached)}``.
        ``"first budget"`` means even the smallest budget is at least as accurate, so ``seconds`` is an
        upper bound.
    """
    floor = 1e-300  # exact methods reach ~1e-8; keep the logarithms finite
    for i, (sec, err) in enumerate(points):
        if err <= target_error:
            if i == 0:
                return {"status": "first budget", "seconds": float(sec), "budget_index": 0}
            (s0, e0), (s1, e1) = points[i - 1], (sec, err)
            le0, le1, lt = math.log(max(e0, floor)), math.log(max(e1, floor)), math.log(max(target_error, floor))
            frac = 0.0 if le0 == le1 else (lt - le0) / (le1 - le0)
            seconds = math.exp(math.log(s0) + frac * (math.log(s1) - math.log(s0)))
            return {"status": "interpolated", "seconds": float(seconds), "budget_index": i}
    return {"status": "not reached", "seconds": None, "budget_index": None}


# --------------------------------------------------------------------------- #
# Running
# --------------------------------------------------------------------------- #
@dataclass
class Trained:
    model: ShapNet
    score: float
    train_seconds: float
    history: list[dict] = field(default_factory=list)


def _train(model: ShapNet, data: Any, args: argparse.Namespace, consistency: float) -> Trained:
    from shapnet.training import evaluate, fit

    result = fit(
        model, data.X_train, data.y_train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, progress=args.progress, consistency=consistency, task=data.task,
    )
    score = evaluate(model, data.X_test, data.y_test, task=data.task)
    return Trained(model.eval(), score, result.seconds, result.history)


def run_method(
    spec: MethodSpec, model: ShapNet, x: torch.Tensor, target: torch.Tensor, warmup: int = 2
) -> tuple[np.ndarray, float, float]:
    """Run ``spec`` once untimed on ``warmup`` samples, then timed on all of ``x``.

    Fast methods (a call under ``FAST_SECONDS``) are timed ``FAST_REPEATS`` times and the median is
    reported, so that millisecond timings are not one noisy measurement. The attributions and the
    evaluation count come from the first timed call.

    Returns:
        ``(attributions (B, F), seconds per sample, model evaluations per sample)``.
    """
    counting = CountingModel(model).eval()
    reference = model.reference.detach().clone()
    if warmup:
        spec.run(counting, x[:warmup], target[:warmup], reference)
    counting.rows = 0
    start = time.perf_counter()
    attributions = spec.run(counting, x, target, reference)
    times = [time.perf_counter() - start]
    evals = counting.rows / len(x)
    if times[0] < FAST_SECONDS:
        for _ in range(FAST_REPEATS - 1):
            start = time.perf_counter()
            spec.run(counting, x, target, reference)
            times.append(time.perf_counter() - start)
    attributions = np.asarray(attributions, dtype=np.float64).reshape(len(x), -1)
    return attributions, statistics.median(times) / len(x), evals


def _bracket(
    rows: list[dict], model: ShapNet, x: torch.Tensor, target: torch.Tensor, truth: np.ndarray, n_features: int
) -> list[dict]:
    """Add smaller budgets to every sampling family whose smallest budget already beats the ShapNet.

    Halves the budget (down to :func:`min_budget`) until the error exceeds the ShapNet's, so that the
    time to reach the ShapNet's error is interpolated between two measured budgets instead of bounded.
    The added rows come first in their family and say so in ``note``.
    """
    goal = next(r for r in rows if r["family"] == "ShapNet (built-in)")["rel_l2"]
    extra: dict[str, list[dict]] = {}
    for family in SAMPLING_FAMILIES:
        points = sorted((r for r in rows if r["family"] == family), key=lambda r: r["budget"])
        if not points or points[0]["rel_l2"] > goal:
            continue
        budget, floor = points[0]["budget"], min_budget(family, n_features)
        while budget > floor:
            budget = max(floor, budget // 2)
            spec = sampling_spec(family, budget, n_features)
            attributions, sec, evals = run_method(spec, model, x, target, warmup=0)
            row = {"method": spec.name, "family": family, "budget": budget, **attribution_metrics(attributions, truth),
                   "sec_per_sample": sec, "evals_per_sample": evals,
                   "note": f"{spec.note}; extra budget to bracket ShapNet's error"}
            extra.setdefault(family, []).insert(0, row)
            if row["rel_l2"] > goal:
                break
    out: list[dict] = []
    for r in rows:
        if r["family"] in extra:
            out.extend(extra.pop(r["family"]))
        out.append(r)
    return out


def _ratios(rows: list[dict], shapnet_error: float, shapnet_seconds: float) -> dict[str, Any]:
    per_family: dict[str, Any] = {}
    for family in SAMPLING_FAMILIES:
        points = sorted((r for r in rows if r["family"] == family), key=lambda r: r["budget"])
        if not points:
            continue
        hit = time_to_reach([(r["sec_per_sample"], r["rel_l2"]) for r in points], shapnet_error)
        entry: dict[str, Any] = {**hit, "budgets": [r["budget"] for r in points]}
        if hit["budget_index"] is not None:
            entry["first_budget_reaching"] = points[hit["budget_index"]]["budget"]
        entry["ratio"] = None if hit["seconds"] is None else hit["seconds"] / shapnet_seconds
        if hit["seconds"] is None:
            entry["best_error"] = min(r["rel_l2"] for r in points)
            entry["ratio_lower_bound"] = max(r["sec_per_sample"] for r in points) / shapnet_seconds
        per_family[family] = entry
    reached = {f: e for f, e in per_family.items() if e["ratio"] is not None}
    fastest = min(reached, key=lambda f: reached[f]["ratio"]) if reached else None
    return {
        "shapnet_rel_l2": shapnet_error,
        "shapnet_sec_per_sample": shapnet_seconds,
        "per_family": per_family,
        "fastest_family": fastest,
        "ratio": None if fastest is None else reached[fastest]["ratio"],
    }


def _ratio_sentence(ratios: dict[str, Any]) -> list[str]:
    lines = [f"ShapNet built-in: relative L2 error {ratios['shapnet_rel_l2']:.4g} at "
             f"{ratios['shapnet_sec_per_sample'] * 1e6:.3g} µs per sample."]
    for family, e in ratios["per_family"].items():
        if e["ratio"] is None:
            lines.append(f"  {family}: never reaches it (best error {e['best_error']:.3g} at budgets {e['budgets']}); "
                         f"> {e['ratio_lower_bound']:.3g}x ShapNet's time.")
        else:
            if e["status"] == "first budget":
                how = f"even its smallest budget tried, {e['budgets'][0]}, does: an upper bound"
            else:
                how = f"first reached at budget {e['first_budget_reaching']}, log-log interpolated"
            lines.append(f"  {family}: {e['seconds'] * 1e3:.3g} ms per sample = {e['ratio']:.3g}x ShapNet ({how}).")
    if ratios["fastest_family"] is None:
        lines.append("No sampling method reached the ShapNet's error at the budgets tried.")
    else:
        bound = ratios["per_family"][ratios["fastest_family"]]["status"] == "first budget"
        lines.append(f"Fastest sampling method to reach ShapNet's error: {ratios['fastest_family']}, "
                     f"{'at most ' if bound else ''}{ratios['ratio']:.3g}x the ShapNet's time per sample.")
    return lines


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    families: dict[str, list[dict]] = {}
    for r in rows:
        if r["family"].startswith("ShallowShapNet"):
            continue  # a different model: shown in the table only
        families.setdefault(r["family"], []).append(r)
    floor = 1e-9  # exact methods have error ~1e-7 (float32); keep them on the log axis
    markers = iter("osD^v<>phXPd8H" * 3)
    for family, pts in families.items():
        xs = [p["sec_per_sample"] for p in pts]
        ys = [max(p["rel_l2"], floor) for p in pts]
        if family == "ShapNet (built-in)":
            ax.scatter(xs, ys, s=260, marker="*", color="crimson", zorder=5, edgecolor="black", label=family)
            ax.axhline(ys[0], color="crimson", lw=0.8, ls=":")
            ax.axvline(xs[0], color="crimson", lw=0.8, ls=":")
            continue
        marker = next(markers)
        ax.plot(xs, ys, marker=marker, lw=1.2 if len(pts) > 1 else 0, label=family)
        if len(pts) > 1:
            for p, xv, yv in zip(pts, xs, ys):
                ax.annotate(str(p["budget"]), (xv, yv), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("seconds per sample (1 thread)")
    ax.set_ylabel("relative L2 error vs exact Shapley values")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _parse_budgets(text: str | None, default: Sequence[int]) -> list[int]:
    if text is None:
        return list(default)
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"budgets must be comma-separated integers, got {text!r}") from err
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"budgets must be positive integers, got {text!r}")
    return values


def build_models(n_features: int, n_outputs: int, args: argparse.Namespace) -> tuple[DeepShapNet, ShallowShapNet]:
    """The Deep ShapNet (``rounds`` butterflies) and the ShallowShapNet control, seeded."""
    _, stages = padded_size(n_features, 2)
    hidden = tuple(args.hidden)
    torch.manual_seed(args.seed)
    deep = DeepShapNet(n_features, n_outputs, depth=args.rounds * stages, channels=args.channels, hidden=hidden)
    torch.manual_seed(args.seed)
    shallow = ShallowShapNet(n_features, n_outputs, groups="pairs", hidden=hidden)
    return deep, shallow


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks fidelity", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=FIDELITY_DATASETS, default="yeast")
    parser.add_argument("--data-dir", default=None, help="data root (default: $SHAPNET_DATA)")
    parser.add_argument("--out", default=None, help="default: results/fidelity/<dataset>[_lambda<L>]")
    parser.add_argument("--consistency", type=float, default=0.0, metavar="L",
                        help="weight of the Shapley-consistency loss when training the Deep ShapNet (0: off)")
    parser.add_argument("--n-samples", type=int, default=100, help="test samples explained by every method")
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64])
    parser.add_argument("--rounds", type=int, default=2, help="butterfly rounds: depth = rounds x log2(F padded)")
    parser.add_argument("--kernel-budgets", default=None,
                        help="shap Kernel nsamples (2**F is always added); default 64,256,1024")
    parser.add_argument("--permutation-budgets", default=None, help="shap Permutation max_evals; default 256,1024")
    parser.add_argument("--captum-budgets", default=None,
                        help="Captum KernelShap / ShapleyValueSampling evaluations; default 64,256,1024")
    parser.add_argument("--methods", default=None, help="comma-separated substrings of method families to keep")
    parser.add_argument("--no-bracket", dest="bracket", action="store_false",
                        help="do not add smaller budgets to samplers whose smallest budget already beats ShapNet")
    parser.add_argument("--progress", action="store_true", help="show training and method progress bars")
    parser.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # tests: toy sizes
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.n_samples, args.channels, args.hidden = 1, min(args.n_samples, 4), 4, [8]
        args.kernel_budgets = args.kernel_budgets or "16"
        args.permutation_budgets = args.permutation_budgets or "64"
        args.captum_budgets = args.captum_budgets or "32"
    try:
        kernel_b = _parse_budgets(args.kernel_budgets, DEFAULT_KERNEL_BUDGETS)
        perm_b = _parse_budgets(args.permutation_budgets, DEFAULT_PERMUTATION_BUDGETS)
        captum_b = _parse_budgets(args.captum_budgets, DEFAULT_CAPTUM_BUDGETS)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    if args.n_samples < 1 or args.consistency < 0:
        parser.error("--n-samples must be >= 1 and --consistency >= 0")
    if args.out is None:
        suffix = f"_lambda{args.consistency:g}" if args.consistency else ""
        args.out = os.path.join("results", "fidelity", args.dataset + suffix)

    from tqdm.auto import tqdm

    from shapnet.datasets import load_dataset

    torch.set_num_threads(1)
    out = prepare_out(args.out)
    wall = time.perf_counter()
    data = load_dataset(args.dataset, args.data_dir)
    n_outputs = 1 if data.task == "regression" else data.n_classes
    deep, shallow = build_models(data.n_features, n_outputs, args)
    print(f"{args.dataset}: F = {data.n_features}, {len(data.X_train)} train / {len(data.X_test)} test, "
          f"{data.task}; Deep ShapNet depth {len(deep.layers)} (padded to {deep.n_padded}), "
          f"consistency λ = {args.consistency:g}")
    trained_deep = _train(deep, data, args, args.consistency)
    trained_shallow = _train(shallow, data, args, 0.0)
    metric = "accuracy" if data.task == "classification" else "R2"
    print(f"test {metric}: DeepShapNet {trained_deep.score:.3f} ({trained_deep.train_seconds:.0f} s), "
          f"ShallowShapNet {trained_shallow.score:.3f} ({trained_shallow.train_seconds:.0f} s)")

    x = torch.as_tensor(data.X_test[: args.n_samples])
    n = len(x)
    target = predicted_targets(deep, x)
    tic = time.perf_counter()
    truth = true_values(deep, x)[torch.arange(n), :, target].numpy()  # (B, F)
    truth_seconds = (time.perf_counter() - tic) / n

    rows: list[dict[str, Any]] = []
    specs = build_methods(
        data.n_features, kernel_budgets=kernel_b, permutation_budgets=perm_b, captum_budgets=captum_b,
        include=None if args.methods is None else args.methods.split(","),
    )
    if not any(s.family == "ShapNet (built-in)" for s in specs):
        specs.insert(0, build_methods(data.n_features)[0])  # the ratio needs the ShapNet row
    with limit_blas_threads():
        for spec in tqdm(specs, desc="methods", disable=not args.progress):
            attributions, sec, evals = run_method(spec, deep, x, target, warmup=min(2, n))
            rows.append({"method": spec.name, "family": spec.family, "budget": spec.budget if spec.budget else "",
                         **attribution_metrics(attributions, truth), "sec_per_sample": sec,
                         "evals_per_sample": evals, "note": spec.note})
        if args.bracket:
            rows = _bracket(rows, deep, x, target, truth, data.n_features)
        # The exact control: a ShallowShapNet's own values against its own exact Shapley values.
        s_target = predicted_targets(shallow, x)
        s_truth = true_values(shallow, x)[torch.arange(n), :, s_target].numpy()
        control = MethodSpec("", "", None, _builtin)
        s_values, s_sec, s_evals = run_method(control, shallow, x, s_target, warmup=min(2, n))
        rows.append({"method": "ShallowShapNet (built-in, exact control)", "family": "ShallowShapNet (control)",
                     "budget": "", **attribution_metrics(s_values, s_truth), "sec_per_sample": s_sec,
                     "evals_per_sample": s_evals, "note": "a different model (all-pairs ShallowShapNet)"})

    shapnet_row = next(r for r in rows if r["family"] == "ShapNet (built-in)")
    ratios = _ratios(rows, shapnet_row["rel_l2"], shapnet_row["sec_per_sample"])
    columns = ["method", "budget", "rel_l2", "spearman", "top3", "sec_per_sample", "evals_per_sample", "note"]
    print(f"\nAttributions of the predicted class's logit (regression: the output), {n} test samples, "
          f"against exact_shapley (float64 brute force: {truth_seconds * 1e3:.3g} ms per sample).")
    print(format_table(rows, columns))
    print()
    sentences = _ratio_sentence(ratios)
    print("\n".join(sentences))

    with open(out / "fidelity.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["method", "family", "budget", "rel_l2", "spearman", "top3",
                                                "sec_per_sample", "evals_per_sample", "note"])
        writer.writeheader()
        writer.writerows(rows)
    settings = {k: v for k, v in vars(args).items() if k not in ("progress",)}
    info = {**machine_info(), "wall_seconds": time.perf_counter() - wall}
    write_json(out / "fidelity.json", {
        "machine": info,
        "settings": settings,
        "dataset": {"name": args.dataset, "n_features": data.n_features, "task": data.task, "n_outputs": n_outputs},
        "explained_output": "predicted class logit" if n_outputs > 1 else "the single output",
        "n_samples": n,
        "models": {
            "deep": {"config": deep.config, "test_score": trained_deep.score, "metric": metric,
                     "train_seconds": trained_deep.train_seconds, "consistency": args.consistency},
            "shallow": {"config": shallow.config, "test_score": trained_shallow.score, "metric": metric,
                        "train_seconds": trained_shallow.train_seconds},
        },
        "truth_seconds_per_sample": truth_seconds,
        "rows": rows,
        "ratio": {**ratios, "summary": sentences},
    })
    title = (f"Fidelity on {args.dataset} (F={data.n_features}, {n} samples, λ={args.consistency:g}): "
             "error vs time per sample")
    plot(rows, str(out / "fidelity.png"), title)
    print(f"wrote {out / 'fidelity.csv'}, {out / 'fidelity.json'}, {out / 'fidelity.png'} "
          f"in {info['wall_seconds']:.0f} s")
    return 0
