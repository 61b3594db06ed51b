"""Fidelity: how close each attribution method gets to the exact Shapley values of a trained Deep ShapNet.

    python -m benchmarks fidelity --dataset yeast|wine|diabetes|PATH [--data-dir DIR] [--out DIR]
        [--consistency L] [--n-samples 100] [--epochs 80] [--budgets 64,256,1024] [--methods NAME,...|all]
        [--controls shallow,harsanyi]

The game is the same for every method: ``v(S) = f_k(x_S, r)``, the trained model's output ``k`` with the
features outside ``S`` at the model's reference ``r`` (zeros = the training mean, as the data are
standardised). ``k`` is the model's predicted class for each sample, or the single output of a
regression. The truth is :func:`shapnet.exact_shapley` over all ``2**F`` coalitions on a float64 copy of
the model, so the data must be tabular with at most :data:`MAX_FEATURES` features; every method explains
the float32 model. The methods are those of the registry (:mod:`benchmarks.methods`), each given ``r``
as its one background row / baseline, so that each explains this game. A method that cannot explain the
model (DeepLift's rules on a ShapNet's functional ReLUs) is listed with the reason. The methods run on the
first ``--n-samples`` test samples (100 by default). Every method gets one untimed warm-up call first (shap
compiles code with numba on first use); calls under 0.5 s are repeated 5 times and the median is kept.
Times are wall-clock on one torch thread and one BLAS thread, per explained sample.

Per method: relative L2 error ``||A - phi*|| / ||phi*||`` over the whole subset (lower is better), mean
per-sample Spearman rank correlation with ``phi*`` (samples where either vector is constant are left out;
higher is better), mean top-3 agreement ``|top3(|A|) ∩ top3(|phi*|)| / 3`` (higher is better), seconds
and model evaluations (forward rows, counted) per sample. A ShallowShapNet on all feature pairs trained
the same way is the exact control: its built-in error must be ~1e-7 (float32). ``--controls
shallow,harsanyi`` adds a HarsanyiNet (two layers of 100 Harsanyi units; exact by construction, see
:mod:`shapnet.harsanyi`) trained the same way: its built-in values against its own exact Shapley values,
with its test score and training time, next to the Deep ShapNet's.

Amortised methods (``--methods ...,fastshap``: FastSHAP, an explainer network trained for the Deep ShapNet)
are trained first by the registry's ``prepare_for`` on the training rows; the one-off training time is the
column ``training_seconds``, apart from the time per sample, and the summary gives the number of explained
samples after which that training is paid back against each sampler at FastSHAP's own error (the sampler's
time at that error interpolated as for the ratio; ``training / (sampler time - FastSHAP time)`` per sample).

Budgets: the sampling estimators (:data:`SAMPLERS`: shap Kernel and Permutation, Captum KernelShap and
ShapleyValueSampling) run at each of ``--budgets`` model evaluations per sample, converted to each
method's own parameter (:func:`budget_for`); shap Kernel also runs at ``2**F``, which enumerates every
coalition. The ratio printed at the end (and stored in fidelity.json): for each sampler, the time per
sample it needs to reach the ShapNet's error, interpolated linearly in log(error)-log(time) between the two
budgets that bracket it, divided by the ShapNet's time per sample. When even a sampler's smallest budget
beats the ShapNet, smaller budgets are added (halving, down to one permutation or F + 1 coalitions; rows
marked "extra budget") until one does not; if even the smallest possible budget beats it, the ratio is an
upper bound and says so. ``--no-bracket`` skips the extra budgets.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from shapnet import DeepShapNet, HarsanyiNet, ShallowShapNet, ShapNet, exact_shapley
from shapnet.groups import padded_size

from ._common import (
    attribution_metrics,
    better,
    call_with_options,
    comma_separated,
    figure,
    format_table,
    limit_blas_threads,
    timed_attributions,
    write_outputs,
)
from .methods import MethodSpec, get_method, list_methods
from .models import single_thread

if TYPE_CHECKING:
    import pandas as pd

    from shapnet.datasets import Dataset

__all__ = [
    "COLUMNS",
    "DEFAULT_BUDGETS",
    "DEFAULT_METHODS",
    "MAX_FEATURES",
    "SAMPLERS",
    "budget_for",
    "main",
    "min_budget",
    "predicted_targets",
    "run_fidelity",
    "time_to_reach",
    "true_values",
]

#: The sampling estimators whose error-versus-time curves define the speed-up ratio.
SAMPLERS: tuple[str, ...] = ("shap_kernel", "shap_permutation", "kernel_shap", "shapley_value_sampling")
#: The methods compared by default (registry names); ``"shapnet"`` is always run.
DEFAULT_METHODS: tuple[str, ...] = (
    "shapnet",
    "shap_kernel",
    "shap_permutation",
    "shap_exact",
    "kernel_shap",
    "shapley_value_sampling",
    "deeplift",
    "deeplift_shap",
    "gradient_shap",
    "integrated_gradients",
    "input_x_gradient",
    "random",
)
#: Model evaluations per sample at which every sampler runs (shap Kernel also at ``2**F``).
DEFAULT_BUDGETS: tuple[int, ...] = (64, 256, 1024)
#: Exact Shapley values enumerate ``2**F`` coalitions per sample: more features take too long.
MAX_FEATURES = 16
#: The exact controls ``--controls`` may name: model -> the label of its row.
CONTROLS = {
    "shallow": "ShallowShapNet (built-in, exact control)",
    "harsanyi": "HarsanyiNet (built-in, exact control)",
}
#: Columns of ``fidelity.csv`` and of the returned DataFrame.
COLUMNS: tuple[str, ...] = (
    "method",
    "family",
    "library",
    "budget",
    "parameters",
    "status",
    "rel_l2",
    "spearman",
    "top3",
    "sec_per_sample",
    "evals_per_sample",
    "training_seconds",
    "note",
)
#: Metric -> the better direction (printed in headers, stored in fidelity.json).
DIRECTIONS = {"rel_l2": "lower", "spearman": "higher", "top3": "higher"}
FAST_SECONDS, FAST_REPEATS = 0.5, 5  # calls faster than this are timed this many times (median)


# --------------------------------------------------------------------------- #
# Budgets: model evaluations per sample -> each sampler's own parameter
# --------------------------------------------------------------------------- #
def budget_for(name: str, evaluations: int, n_features: int) -> dict[str, int]:
    """The registry budget of sampler ``name`` that spends about ``evaluations`` model rows per sample.

    shap Kernel and Captum KernelShap evaluate one coalition per sample (one background row); shap
    Permutation walks each permutation forward and back (``2 F + 1`` rows); Captum ShapleyValueSampling
    walks it once (``F`` rows).
    """
    if name in ("shap_kernel", "kernel_shap"):
        return {"nsamples" if name == "shap_kernel" else "n_samples": int(evaluations)}
    if name == "shap_permutation":
        return {"permutations": max(1, evaluations // (2 * n_features + 1))}
    if name == "shapley_value_sampling":
        return {"n_samples": max(1, evaluations // n_features)}
    raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}.")


def min_budget(name: str, n_features: int) -> int:
    """The smallest sensible budget in model evaluations: one permutation, or one coalition more than F."""
    return {
        "shap_kernel": n_features + 2,
        "shap_permutation": 2 * n_features + 1,
        "kernel_shap": n_features + 1,
        "shapley_value_sampling": n_features,
    }[name]


def _at_budget(name: str, evaluations: int, n_features: int) -> tuple[MethodSpec, str, str]:
    """``(spec, row label, parameters)`` of sampler ``name`` at ``evaluations`` per sample."""
    budget = budget_for(name, evaluations, n_features)
    full = 2**n_features
    label = (
        f"{name} (2^{n_features}={full})"
        if name == "shap_kernel" and evaluations == full
        else f"{name} ({evaluations})"
    )
    parameters = ", ".join(f"{k}={v}" for k, v in budget.items())
    if name == "shap_kernel" and evaluations >= full - 2:
        parameters += "; enumerates all coalitions (exact)"
    return dataclasses.replace(get_method(name), budget=budget), label, parameters


# --------------------------------------------------------------------------- #
# Truth and metrics
# --------------------------------------------------------------------------- #
@torch.no_grad()
def predicted_targets(model: ShapNet, x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` int64: the predicted class (``0`` for single-output models)."""
    return model(x).argmax(1)


def true_values(model: ShapNet, x: torch.Tensor) -> torch.Tensor:
    """Exact Shapley values of every output, ``(B, F, O)`` float64, from a float64 copy of ``model``."""
    exact_model = copy.deepcopy(model).double().eval()
    # A HarsanyiNet's AND gates hold (rows, units, children) tensors: at most ~2048 rows per call.
    chunk = max(1, 2048 // len(x)) if isinstance(model, HarsanyiNet) else None
    return exact_shapley(exact_model, x.double(), exact_model.reference, chunk_size=chunk)


def time_to_reach(points: Sequence[tuple[float, float]], target_error: float) -> dict[str, Any]:
    """When an estimator's error first falls to ``target_error``, from its ``(seconds, error)`` points.

    ``points`` are in budget order. Between the two budgets bracketing ``target_error`` the time is
    interpolated linearly in ``log(time)`` against ``log(error)``.

    Returns:
        ``{"status": "interpolated" | "first budget" | "not reached", "seconds": float | None,
        "budget_index": index of the first budget at or below the target (None if not reached)}``.
        ``"first budget"`` means no smaller budget gives a usable bracket: even the smallest budget is at
        least as accurate, or the budget before it failed (a non-finite error, or one above 1, worse than
        attributing nothing), so ``seconds`` is an upper bound.
    """
    floor = 1e-300  # exact methods reach ~1e-8; keep the logarithms finite
    for i, (sec, err) in enumerate(points):
        if err <= target_error:
            before = points[i - 1][1] if i else math.nan
            if not (math.isfinite(before) and before <= 1.0):  # nothing to interpolate from
                return {"status": "first budget", "seconds": float(sec), "budget_index": i}
            (s0, e0), (s1, e1) = points[i - 1], (sec, err)
            le0, le1, lt = (
                math.log(max(e0, floor)),
                math.log(max(e1, floor)),
                math.log(max(target_error, floor)),
            )
            frac = 0.0 if le0 == le1 else (lt - le0) / (le1 - le0)
            seconds = math.exp(math.log(s0) + frac * (math.log(s1) - math.log(s0)))
            return {"status": "interpolated", "seconds": float(seconds), "budget_index": i}
    return {"status": "not reached", "seconds": None, "budget_index": None}


# --------------------------------------------------------------------------- #
# Running
# --------------------------------------------------------------------------- #
def _train(model: ShapNet, data: Dataset, **recipe: Any) -> tuple[float, float]:
    """Train in place with :func:`shapnet.training.fit` and ``recipe`` (epochs, lr, ...); returns
    ``(test score, training seconds)``."""
    from shapnet.training import evaluate, fit

    result = fit(model, data.X_train, data.y_train, task=data.task, **recipe)
    model.eval()
    return float(evaluate(model, data.X_test, data.y_test, task=data.task)), float(result.seconds)


class _Runner:
    """Runs methods on one model and subset against its exact values, and makes the table rows."""

    def __init__(
        self,
        model: ShapNet,
        x: torch.Tensor,
        target: torch.Tensor,
        truth: np.ndarray,
        X_train: np.ndarray | None = None,
    ) -> None:
        self.model, self.x, self.target, self.truth, self.X_train = model, x, target, truth, X_train
        self.background = model.reference.detach().clone().unsqueeze(0)  # (1, F): the game's r

    def row(
        self,
        spec: MethodSpec,
        label: str,
        *,
        budget: int | None = None,
        parameters: str = "",
        note: str = "",
        family: str | None = None,
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "method": label,
            "family": family or spec.name,
            "library": spec.library,
            "budget": budget,
            "parameters": parameters,
            "note": note or spec.caveat,
        }
        reason = spec.supports(self.model, self.x.shape[1])
        if reason is None:
            try:
                # Amortised methods (FastSHAP) train for this model first: a one-off cost, reported apart.
                if spec.prepare is not None:
                    if self.X_train is None:
                        raise ValueError(f"{spec.name} trains on the training rows, which were not given")
                    prepared = spec.prepare_for(self.model, self.X_train, background=self.background, seed=0)
                    row["training_seconds"] = prepared["training_seconds"]
                with warnings.catch_warnings():
                    # Expected at small budgets: shap's "regression equation is singular", Captum's notices.
                    warnings.simplefilter("ignore")
                    attributions, sec, evals = timed_attributions(
                        spec,
                        self.model,
                        self.x,
                        self.target,
                        background=self.background,
                        seed=0,
                        warmup=min(2, len(self.x)),
                        fast_seconds=FAST_SECONDS,
                        fast_repeats=FAST_REPEATS,
                    )
            except Exception as err:
                reason = f"failed on this model: {type(err).__name__}: {err}"
            else:
                metrics = attribution_metrics(attributions.double().numpy(), self.truth)
                if spec.prepare is not None:
                    # The explainer finds its network by the model's weights, so it runs on the model itself
                    # (uncounted): one model row per sample plus f(reference) once per call.
                    evals = 1.0 + 1.0 / len(self.x)
                return {**row, "status": "ok", **metrics, "sec_per_sample": sec, "evals_per_sample": evals}
        return {**row, "status": "unsupported", "note": reason}


def _curve(rows: Sequence[dict], family: str) -> list[dict]:
    """The measured rows of ``family`` in budget order."""
    return sorted(
        (r for r in rows if r["family"] == family and r["status"] == "ok"), key=lambda r: r["budget"]
    )


def _bracket(rows: list[dict], runner: _Runner, n_features: int) -> list[dict]:
    """Add smaller budgets to every sampler whose smallest budget already beats the ShapNet.

    Halves the budget (down to :func:`min_budget`) until the error exceeds the ShapNet's, so that the
    time to reach the ShapNet's error is interpolated between two measured budgets instead of bounded.
    The added rows come first in their family and say so in ``note``.
    """
    goal = rows[0]["rel_l2"]
    extra: dict[str, list[dict]] = {}
    for name in SAMPLERS:
        points = _curve(rows, name)
        if not points or points[0]["rel_l2"] > goal:
            continue
        budget, floor = points[0]["budget"], min_budget(name, n_features)
        while budget > floor:
            smaller = max(floor, budget // 2)
            if budget_for(name, smaller, n_features) == budget_for(name, budget, n_features):
                break  # the same number of permutations: nothing smaller to try
            budget = smaller
            spec, label, parameters = _at_budget(name, budget, n_features)
            row = runner.row(
                spec,
                label,
                budget=budget,
                parameters=parameters,
                note="extra budget to bracket ShapNet's error",
            )
            extra.setdefault(name, []).insert(0, row)
            if row["status"] != "ok" or row["rel_l2"] > goal:
                break
    out: list[dict] = []
    for r in rows:
        if r["family"] in extra:
            out.extend(extra.pop(r["family"]))
        out.append(r)
    return out


def _sampler_hits(rows: Sequence[dict], error: float) -> Iterator[tuple[str, list[dict], dict[str, Any]]]:
    """``(sampler, its budget curve, when it reaches `error` (time_to_reach))`` for every sampler measured."""
    for name in SAMPLERS:
        points = _curve(rows, name)
        if points:
            yield name, points, time_to_reach([(p["sec_per_sample"], p["rel_l2"]) for p in points], error)


def _ratios(rows: list[dict]) -> dict[str, Any]:
    shapnet = rows[0]
    per_family: dict[str, Any] = {}
    for name, points, hit in _sampler_hits(rows, shapnet["rel_l2"]):
        entry: dict[str, Any] = {**hit, "budgets": [r["budget"] for r in points]}
        if hit["budget_index"] is not None:
            entry["first_budget_reaching"] = points[hit["budget_index"]]["budget"]
        entry["ratio"] = None if hit["seconds"] is None else hit["seconds"] / shapnet["sec_per_sample"]
        if hit["seconds"] is None:
            entry["best_error"] = min(r["rel_l2"] for r in points)
            entry["ratio_lower_bound"] = max(r["sec_per_sample"] for r in points) / shapnet["sec_per_sample"]
        per_family[name] = entry
    reached = {f: e for f, e in per_family.items() if e["ratio"] is not None}
    fastest = min(reached, key=lambda f: reached[f]["ratio"]) if reached else None
    return {
        "shapnet_rel_l2": shapnet["rel_l2"],
        "shapnet_sec_per_sample": shapnet["sec_per_sample"],
        "per_family": per_family,
        "fastest_family": fastest,
        "ratio": None if fastest is None else reached[fastest]["ratio"],
        "payback": _payback(rows),
    }


def _payback(rows: Sequence[dict]) -> dict[str, Any]:
    """For every amortised method (a row with ``training_seconds``): after how many explained samples its
    training is paid back against each sampler run at the method's own error.

    Returns:
        ``{method: {"rel_l2", "sec_per_sample", "training_seconds", "per_family": {sampler: {"status",
        "sampler_seconds", "samples"}}}}``; ``samples`` is ``training / (sampler time - method time)`` per
        sample, None when the sampler is not slower (never paid back) or never reaches the error.
        ``status`` is :func:`time_to_reach`'s: ``"first budget"`` makes the sampler's time an upper bound
        (so ``samples`` a lower bound).
    """
    out: dict[str, Any] = {}
    for r in rows:
        if r.get("training_seconds") is None or r["status"] != "ok" or r["family"] == "control":
            continue
        per_family: dict[str, Any] = {}
        for name, _, hit in _sampler_hits(rows, r["rel_l2"]):
            gain = None if hit["seconds"] is None else hit["seconds"] - r["sec_per_sample"]
            per_family[name] = {
                "status": hit["status"],
                "sampler_seconds": hit["seconds"],
                "samples": r["training_seconds"] / gain if gain is not None and gain > 0 else None,
            }
        out[r["method"]] = {
            "rel_l2": r["rel_l2"],
            "sec_per_sample": r["sec_per_sample"],
            "training_seconds": r["training_seconds"],
            "per_family": per_family,
        }
    return out


def _ratio_sentences(ratios: dict[str, Any]) -> list[str]:
    lines = [
        f"ShapNet built-in: relative L2 error {ratios['shapnet_rel_l2']:.4g} at "
        f"{ratios['shapnet_sec_per_sample'] * 1e6:.3g} µs per sample."
    ]
    for family, e in ratios["per_family"].items():
        if e["ratio"] is None:
            lines.append(
                f"  {family}: never reaches it (best error {e['best_error']:.3g} at budgets {e['budgets']}); "
                f"> {e['ratio_lower_bound']:.3g}x ShapNet's time."
            )
            continue
        if e["status"] == "first budget" and e["first_budget_reaching"] == e["budgets"][0]:
            how = f"even its smallest budget tried, {e['budgets'][0]}, does: an upper bound"
        elif e["status"] == "first budget":
            how = (
                f"first reached at budget {e['first_budget_reaching']}, after a failed smaller budget: "
                "an upper bound"
            )
        else:
            how = f"first reached at budget {e['first_budget_reaching']}, log-log interpolated"
        lines.append(
            f"  {family}: {e['seconds'] * 1e3:.3g} ms per sample = {e['ratio']:.3g}x ShapNet ({how})."
        )
    if ratios["fastest_family"] is None:
        lines.append("No sampling method reached the ShapNet's error at the budgets tried.")
    else:
        bound = ratios["per_family"][ratios["fastest_family"]]["status"] == "first budget"
        lines.append(
            f"Fastest sampling method to reach ShapNet's error: {ratios['fastest_family']}, "
            f"{'at most ' if bound else ''}{ratios['ratio']:.3g}x the ShapNet's time per sample."
        )
    for method, p in ratios.get("payback", {}).items():
        lines.append(
            f"{method} (amortised): relative L2 error {p['rel_l2']:.4g} at {p['sec_per_sample'] * 1e6:.3g} µs "
            f"per sample after {p['training_seconds']:.3g} s of training; paid back against a sampler at its "
            "error after:"
        )
        for family, e in p["per_family"].items():
            if e["samples"] is not None:
                bound = "at least " if e["status"] == "first budget" else ""
                lines.append(f"  {family}: {bound}{e['samples']:,.0f} explained samples.")
            elif e["sampler_seconds"] is None:
                lines.append(f"  {family}: never reaches its error at the budgets tried.")
            else:
                lines.append(f"  {family}: never (not slower per sample at that error).")
    return lines


def plot(rows: Sequence[dict], path: str | os.PathLike, title: str) -> None:
    """Error against time per sample, one curve per method family (log-log), ShapNet as a star."""
    families: dict[str, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok" and r["family"] != "control":  # the control is another model: table only
            families.setdefault(r["family"], []).append(r)
    floor = 1e-9  # exact methods have error ~1e-7 (float32); keep them on the log axis
    markers = iter("osD^v<>phXPd8H" * 3)
    with figure(path, figsize=(8, 5.5)) as (_, ax):
        for family, pts in families.items():
            xs = [p["sec_per_sample"] for p in pts]
            ys = [max(p["rel_l2"], floor) for p in pts]
            if family == "shapnet":
                ax.scatter(
                    xs,
                    ys,
                    s=260,
                    marker="*",
                    color="crimson",
                    zorder=5,
                    edgecolor="black",
                    label="shapnet (built-in)",
                )
                ax.axhline(ys[0], color="crimson", lw=0.8, ls=":")
                ax.axvline(xs[0], color="crimson", lw=0.8, ls=":")
                continue
            ax.plot(xs, ys, marker=next(markers), lw=1.2 if len(pts) > 1 else 0, label=family)
            for p, xv, yv in zip(pts, xs, ys):
                if len(pts) > 1:
                    ax.annotate(
                        str(p["budget"]), (xv, yv), textcoords="offset points", xytext=(4, 3), fontsize=7
                    )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("seconds per sample (1 thread)")
        ax.set_ylabel(better("relative L2 error vs exact Shapley values", "lower"))
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")


def _method_names(methods: Sequence[str] | str | None) -> list[str]:
    if methods is None:
        names = list(DEFAULT_METHODS)
    elif methods == "all":
        names = list_methods()
    else:
        names = [methods] if isinstance(methods, str) else list(methods)
    for name in names:
        get_method(name)  # a ValueError listing the valid names
    return ["shapnet", *(n for n in dict.fromkeys(names) if n != "shapnet")]  # the ratio needs it first


def run_fidelity(
    dataset: Dataset,
    *,
    out: str | os.PathLike | None = None,
    methods: Sequence[str] | str | None = None,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    n_samples: int = 100,
    consistency: float = 0.0,
    epochs: int = 80,
    batch_size: int = 64,
    lr: float = 3e-3,
    channels: int = 16,
    hidden: Sequence[int] = (64,),
    rounds: int = 2,
    seed: int = 0,
    bracket: bool = True,
    controls: Sequence[str] = ("shallow",),
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Train a Deep ShapNet (and the exact controls) on ``dataset`` and compare every method with the exact
    Shapley values of its output on the first ``n_samples`` test rows.

    Args:
        dataset: a tabular :class:`shapnet.datasets.Dataset` with at most :data:`MAX_FEATURES` features,
            classification (the predicted class is explained) or regression (the single output).
        out: where to write ``fidelity.csv``, ``fidelity.json`` and ``fidelity.png`` (None: nothing).
        methods: registry names, ``"all"``, or None for :data:`DEFAULT_METHODS`; ``"shapnet"`` is added.
        budgets: model evaluations per sample for the :data:`SAMPLERS`.
        n_samples: test rows explained.
        consistency: weight of the Shapley-consistency loss when training the Deep ShapNet.
        epochs, batch_size, lr, seed: the training recipe (:func:`shapnet.training.fit`).
        channels, hidden, rounds: the Deep ShapNet (``depth = rounds * log2(padded F)``).
        bracket: add smaller budgets to samplers whose smallest budget already beats the ShapNet.
        controls: keys of :data:`CONTROLS`: models trained with the same recipe whose built-in values are
            exact (an all-pairs ShallowShapNet with ``hidden``; a HarsanyiNet with two layers of 100 units),
            each explained by its own values against its own exact Shapley values.
        progress: progress bars for training and the methods.
        log: where the table and the summary go.

    Returns:
        One row per method and budget (columns :data:`COLUMNS`); ``.attrs`` holds ``"ratio"`` (the
        speed-up summary), ``"models"`` and ``"settings"``.

    Raises:
        ValueError: image data, too many features, bad budgets, method or control names.
    """
    from shapnet.progress import progress as progress_bar

    unknown = sorted(set(controls) - set(CONTROLS))
    if unknown:
        raise ValueError(f"unknown controls {unknown}; expected some of {list(CONTROLS)}.")

    n_features = dataset.n_features
    if dataset.X_train.ndim != 2 or n_features > MAX_FEATURES:
        shape = tuple(dataset.X_train.shape[1:])
        raise ValueError(
            "fidelity needs exact Shapley values over 2**F coalitions: tabular data with at most "
            f"{MAX_FEATURES} "
            f"features, got dataset {dataset.name!r} with input shape {shape}. Use the faithfulness "
            "benchmark for larger inputs."
        )
    budgets = [int(b) for b in budgets]
    if not budgets or min(budgets) < 1 or n_samples < 1 or consistency < 0:
        raise ValueError(
            f"budgets must be positive ints, n_samples >= 1 and consistency >= 0, got budgets "
            f"{budgets}, n_samples {n_samples}, consistency {consistency}."
        )
    names = _method_names(methods)
    wall = time.perf_counter()
    with single_thread():
        n_outputs = 1 if dataset.task == "regression" else dataset.n_classes
        _, stages = padded_size(n_features, 2)
        torch.manual_seed(seed)
        deep = DeepShapNet(
            n_features, n_outputs, depth=rounds * stages, channels=channels, hidden=tuple(hidden)
        )
        builders = {
            "shallow": lambda: ShallowShapNet(n_features, n_outputs, groups="pairs", hidden=tuple(hidden)),
            "harsanyi": lambda: HarsanyiNet(n_features, n_outputs, hidden=(100, 100)),
        }
        exact_models: dict[str, ShapNet] = {}
        for name in dict.fromkeys(controls):
            torch.manual_seed(seed)
            exact_models[name] = builders[name]()
        log(
            f"{dataset.name}: F = {n_features}, {len(dataset.X_train)} train / {len(dataset.X_test)} test, "
            f"{dataset.task}; Deep ShapNet depth {len(deep.layers)} (padded to {deep.n_padded}), "
            f"consistency λ = {consistency:g}"
        )
        recipe = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "progress": progress}
        deep_score, deep_seconds = _train(deep, dataset, consistency=consistency, **recipe)
        trained = {name: _train(m, dataset, consistency=0.0, **recipe) for name, m in exact_models.items()}
        metric = "accuracy" if dataset.task == "classification" else "R2"
        log(
            f"test {metric}: DeepShapNet {deep_score:.3f} ({deep_seconds:.0f} s)"
            + "".join(
                f", {type(exact_models[k]).__name__} {score:.3f} ({sec:.0f} s)"
                for k, (score, sec) in trained.items()
            )
        )

        x = torch.as_tensor(dataset.X_test[:n_samples])
        n = len(x)
        tic = time.perf_counter()
        target = predicted_targets(deep, x)
        runner = _Runner(
            deep, x, target, true_values(deep, x)[torch.arange(n), :, target].numpy(), dataset.X_train
        )
        truth_seconds = (time.perf_counter() - tic) / n

        jobs: list[tuple[MethodSpec, str, dict[str, Any]]] = []
        full = 2**n_features
        for name in names:
            if name not in SAMPLERS:
                jobs.append((get_method(name), name, {}))
                continue
            for evals in sorted(set(budgets) | ({full} if name == "shap_kernel" else set())):
                spec, label, parameters = _at_budget(name, evals, n_features)
                jobs.append((spec, label, {"budget": evals, "parameters": parameters}))
        rows: list[dict[str, Any]] = []
        with limit_blas_threads():
            for spec, label, extra in progress_bar(
                jobs, desc="fidelity methods", unit="method", disable=not progress
            ):
                rows.append(runner.row(spec, label, **extra))
            if bracket:
                rows = _bracket(rows, runner, n_features)
            # The exact controls: each model's own values against its own exact Shapley values.
            for name, model in exact_models.items():
                c_target = predicted_targets(model, x)
                control = _Runner(
                    model, x, c_target, true_values(model, x)[torch.arange(n), :, c_target].numpy()
                )
                kind = "all-pairs ShallowShapNet" if name == "shallow" else "HarsanyiNet, two layers of 100"
                rows.append(
                    control.row(
                        get_method("shapnet"),
                        CONTROLS[name],
                        family="control",
                        note=f"a different model ({kind})",
                    )
                )

    import pandas as pd

    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if rows[0]["status"] != "ok":
        raise ValueError(f"the ShapNet's own values failed: {rows[0]['note']}")
    ratios = _ratios(rows)
    sentences = _ratio_sentences(ratios)
    explained = "the predicted class's logit" if n_outputs > 1 else "the single output"
    log(
        f"\nAttributions of {explained}, {n} test samples, against exact_shapley (float64 brute force: "
        f"{truth_seconds * 1e3:.3g} ms per sample)."
    )
    shown = table.rename(columns={k: better(k, d) for k, d in DIRECTIONS.items()})
    log(
        format_table(
            shown,
            [
                "method",
                "budget",
                "status",
                *(better(k, d) for k, d in DIRECTIONS.items()),
                "sec_per_sample",
                "evals_per_sample",
                *(["training_seconds"] if ratios["payback"] else []),
            ],
        )
    )
    notes = {r["method"].split(" (")[0]: r["note"] for r in rows if r["note"] and r["family"] != "control"}
    log("\n".join(f"  {name}: {note}" for name, note in notes.items()))
    log("\n" + "\n".join(sentences))

    models = {
        "deep": {
            "config": deep.config,
            "test_score": deep_score,
            "metric": metric,
            "train_seconds": deep_seconds,
            "consistency": consistency,
        },
        **{
            name: {
                "config": exact_models[name].config,
                "test_score": score,
                "metric": metric,
                "train_seconds": seconds,
            }
            for name, (score, seconds) in trained.items()
        },
    }
    settings = {
        "dataset": dataset.name,
        "methods": names,
        "budgets": budgets,
        "n_samples": n_samples,
        "consistency": consistency,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "channels": channels,
        "hidden": list(hidden),
        "rounds": rounds,
        "seed": seed,
        "bracket": bracket,
        "controls": list(exact_models),
    }
    table.attrs.update(ratio={**ratios, "summary": sentences}, models=models, settings=settings)
    if out is not None:
        payload = {
            "settings": settings,
            "dataset": {
                "name": dataset.name,
                "n_features": n_features,
                "task": dataset.task,
                "n_outputs": n_outputs,
                "feature_names": list(dataset.feature_names),
            },
            "explained_output": "predicted class logit" if n_outputs > 1 else "the single output",
            "n_samples": n,
            "directions": DIRECTIONS,
            "models": models,
            "truth_seconds_per_sample": truth_seconds,
            "rows": rows,
            "ratio": table.attrs["ratio"],
        }
        title = (
            f"Fidelity on {dataset.name} (F={n_features}, {n} samples, λ={consistency:g}): "
            "error vs time per sample"
        )
        write_outputs(
            out, "fidelity", table, payload, lambda path: plot(rows, path, title), started=wall, log=log
        )
    return table


def main(argv: list[str] | None = None) -> int:
    from shapnet.cli import add_dataset_arguments, dataset_from_args, fail_cleanly

    parser = argparse.ArgumentParser(prog="python -m benchmarks fidelity", description=__doc__.split("\n")[0])
    add_dataset_arguments(parser, default="yeast")
    parser.add_argument("--out", default=None, help="default: results/fidelity/<dataset>[_lambda<L>]")
    parser.add_argument(
        "--consistency",
        type=float,
        default=0.0,
        metavar="L",
        help="weight of the Shapley-consistency loss when training the Deep ShapNet (0: off)",
    )
    parser.add_argument("--n-samples", type=int, default=100, help="test samples explained by every method")
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64])
    parser.add_argument(
        "--rounds", type=int, default=2, help="butterfly rounds: depth = rounds x log2(F padded)"
    )
    parser.add_argument(
        "--budgets",
        type=comma_separated(int, minimum=1),
        default=list(DEFAULT_BUDGETS),
        help="model evaluations per sample for every sampler (shap Kernel also runs at 2**F); "
        "default 64,256,1024",
    )
    parser.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated registry names or 'all' (default: {','.join(DEFAULT_METHODS)})",
    )
    parser.add_argument(
        "--no-bracket",
        dest="bracket",
        action="store_false",
        help="do not add smaller budgets to samplers whose smallest budget already beats ShapNet",
    )
    parser.add_argument(
        "--controls",
        type=comma_separated(str),
        default=["shallow"],
        help=f"exact models trained the same way, each checked against its own exact values: some of "
        f"{','.join(CONTROLS)} (default: shallow)",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.controls) - set(CONTROLS))
    if unknown:
        parser.error(f"unknown controls {unknown}; expected some of {list(CONTROLS)}")
    if args.out is None:
        suffix = f"_lambda{args.consistency:g}" if args.consistency else ""
        args.out = os.path.join("results", "fidelity", Path(args.dataset).stem + suffix)  # the dataset's name
    methods = None if args.methods is None else "all" if args.methods == "all" else args.methods.split(",")
    with fail_cleanly(args.out):
        data = dataset_from_args(args, random_state=args.seed)
        call_with_options(run_fidelity, args, data, methods=methods)
    return 0
