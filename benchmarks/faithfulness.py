"""Faithfulness without retraining: Captum and Quantus metrics for ShapNet and the ROAR methods.

    python -m benchmarks faithfulness --dataset breast_cancer|digits|mnist|PATH [--data-dir DIR] [--out DIR]
        [--model deep|shallow|harsanyi|mlp|package.module:function] [--methods roar|all|name,name]
        [--n-samples 50]
        [--n-sensitivity 10] [--max-train N] [--epochs E]

Tiny sample counts: by default 50 test samples (MNIST: 20, and the model is trained on 10000 training
images) and sensitivity_max on the first 10 of them (MNIST: 4).

One model is trained with the ROAR benchmark's recipe (:mod:`benchmarks.models`; ``--model deep`` is a
DeepShapNet for tables and a small VisionShapNet for images, ``--model harsanyi`` a HarsanyiNet or a
VisionHarsanyiNet) with its reference set to the training mean; ``--model package.module:function`` (or
``model_factory`` in :func:`run_faithfulness`) trains a user's own architecture instead. Every method of
:mod:`benchmarks.methods` (by default the ROAR set, :data:`benchmarks.methods.DEFAULT_METHODS`) explains the
predicted class's logit (a regression: the single output) of the first ``--n-samples`` test samples against
the training mean (one background row). A method that cannot explain the model (ShapNet's built-in values
of a model that is not self-explaining) is reported as not applicable, with the reason. An amortised
method (``fastshap``: ``--model mlp --methods fastshap,random``) is first trained for the model by the
registry's ``prepare_for``; its one-off training time is the column ``training_seconds``, apart from the
time per explained sample.

Metrics (arrow: which direction is better), all on logits (Quantus ``softmax=False``):

* ``infidelity`` ↓ (Captum ``infidelity``, ``normalize=True``, 32 perturbations per sample): a uniformly
  random subset of features (whole pixels; each with probability 1/2) is set to the reference, the same
  removal as in the Shapley game, and the perturbation vector is that subset's 0/1 mask, so the score is
  the (optimally rescaled) squared error of "sum of the removed features' attributions" as a prediction of
  the logit's change.
* ``sensitivity_max`` ↓ (Captum, default uniform noise of radius 0.02 in standardised units, 5 perturbations),
  on the first ``--n-sensitivity`` samples only: it re-runs the method on every perturbed input.
* ``faithfulness_corr`` ↑ (Quantus FaithfulnessCorrelation, 100 random subsets of ``F/4`` features, at
  most 224), ``monotonicity_corr`` ↑ (Quantus MonotonicityCorrelation, 1 sample per step: the removal is
  deterministic) and ``pixel_flipping`` ↓ (Quantus PixelFlipping curve of the logit as the most relevant
  features are removed, averaged over the curve): removed features are replaced by the reference (a custom
  ``perturb_func``), ``F/28`` features per step (at least 1). Other parameters are Quantus' defaults
  (normalise by max; MonotonicityCorrelation takes absolute values).
* images, classification only: ``road_morf`` ↓ and ``road_lerf`` ↑ (Quantus ROAD with noisy linear
  imputation, noise 0.01, at 5, 15, ..., 95 % of pixels removed, most- and least-relevant first; the mean
  accuracy over the percentages of predicting the originally predicted class). Quantus ROAD only orders
  most-relevant first; least-relevant first is the same metric on the reversed ranking (``max(a) - a`` per
  sample).

Tabular data reach Quantus as one-row images ``(B, 1, F)``, the model behind an ``nn.Flatten``. Quantus
0.6 calls ``np.trapz``, removed in numpy 2.4, to compute the AUC of PixelFlipping; the curves are taken
with ``return_auc_per_sample=False`` and integrated with ``np.trapezoid`` instead
(``shapnet_adapters.quantus.auc``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ._common import better, call_with_options, figure, format_table, write_outputs

if TYPE_CHECKING:
    import pandas as pd

    from shapnet.datasets import Dataset

    from .models import ModelConfig

__all__ = ["COLUMNS", "METRICS", "main", "reference_replacement", "run_faithfulness", "subset_removal"]

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
#: Columns of ``faithfulness.csv`` and of the returned DataFrame.
COLUMNS: tuple[str, ...] = (
    "method",
    "library",
    "status",
    *METRICS,
    "sec_per_sample",
    "training_seconds",
    "budget",
    "reason",
)

ROAD_PERCENTAGES = list(range(5, 100, 10))


def reference_replacement(
    arr: np.ndarray, indices: np.ndarray, reference: np.ndarray, **kwargs: Any
) -> np.ndarray:
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


def subset_removal(
    reference: torch.Tensor, seed: int
) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
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
    """The model and arrays as Quantus takes them: tables become one-row images ``(B, 1, F)``, which an
    ``nn.Flatten`` in front of any tabular model turns back into ``(B, F)``."""
    if x.ndim == 4:
        return model, x, a
    return nn.Sequential(nn.Flatten(), model).eval(), x[:, None, :], a[:, None, :]


def _quantus_scores(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    reference: np.ndarray,
    seed: int,
    road: bool,
) -> dict[str, float]:
    import quantus

    from shapnet_adapters.quantus import auc

    qmodel, qx, qa = _quantus_view(model, x, a)
    n_features = _n_features(tuple(x.shape[1:]))
    step = max(1, n_features // 28)
    common = {"disable_warnings": True, "display_progressbar": False}
    perturb = {
        "perturb_func": reference_replacement,
        "perturb_func_kwargs": {"reference": reference.reshape(-1)},
    }
    call = {
        "model": qmodel,
        "x_batch": qx,
        "y_batch": y,
        "a_batch": qa,
        "softmax": False,
        "channel_first": True,
        "device": "cpu",
        "batch_size": len(qx),
    }
    out: dict[str, float] = {}
    np.random.seed(seed)  # noqa: NPY002 (FaithfulnessCorrelation draws its subsets from numpy's global RNG)
    metrics: dict[str, Callable[[], Any]] = {
        "faithfulness_corr": lambda: quantus.FaithfulnessCorrelation(
            nr_runs=100, subset_size=max(1, min(224, n_features // 4)), **perturb, **common
        )(**call),
        "monotonicity_corr": lambda: quantus.MonotonicityCorrelation(
            nr_samples=1, features_in_step=step, **perturb, **common
        )(**call),
        "pixel_flipping": lambda: quantus.PixelFlipping(
            features_in_step=step, return_auc_per_sample=False, **perturb, **common
        )(**call),
    }
    for name, run in metrics.items():
        scores = run()
        if name == "pixel_flipping":
            curves = np.asarray(scores, dtype=np.float64)  # (B, T): logit after each removal step
            scores = auc(curves, dx=1.0 / max(1, curves.shape[1] - 1))  # the curve's mean over [0, 1]
        out[name] = float(np.nanmean(np.asarray(scores, dtype=np.float64)))
    if road:
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
    model: nn.Module,
    explain: Callable[..., Any],
    x: torch.Tensor,
    target: torch.Tensor,
    attributions: torch.Tensor,
    reference: torch.Tensor,
    n_sensitivity: int,
    seed: int,
) -> dict[str, float]:
    from captum.metrics import infidelity, sensitivity_max

    with torch.no_grad():
        infid = infidelity(
            model,
            subset_removal(reference, seed),
            x,
            attributions,
            target=target,
            n_perturb_samples=32,
            normalize=True,
        )
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


def _train(
    dataset: Dataset,
    model: str | ModelConfig,
    model_factory: Callable[[], nn.Module] | None,
    epochs: int | None,
    seed: int,
    progress: bool,
) -> tuple[nn.Module, str, dict[str, float], float]:
    """``(trained model, its description, test score, training seconds)`` with the ROAR recipe."""
    from .models import ModelConfig, default_config, instantiate, score, train_model
    from .models import model_factory as make_factory

    if isinstance(model, ModelConfig):
        config = model if epochs is None else dataclasses.replace(model, epochs=epochs)
    else:
        config = default_config("custom" if model_factory is not None else model, dataset.name, epochs=epochs)
    factory = (
        model_factory
        if model_factory is not None
        else make_factory(model if isinstance(model, str) else config.kind, dataset, config)
    )
    tic = time.perf_counter()
    net = instantiate(factory, seed)
    train_model(
        net, dataset.X_train, dataset.y_train, config, seed=seed, task=dataset.task, progress=progress
    )
    kind = "custom" if model_factory is not None else model if isinstance(model, str) else config.kind
    return (
        net.eval(),
        kind,
        score(net, dataset.X_test, dataset.y_test, dataset.task),
        time.perf_counter() - tic,
    )


def plot(rows: Sequence[dict], path: str | Path, title: str) -> None:
    """One bar panel per metric (the header says which direction is better); ShapNet red, random grey."""

    def finite(v: Any) -> bool:
        return isinstance(v, float) and math.isfinite(v)

    metrics = [m for m in METRICS if any(finite(r.get(m)) for r in rows)]
    if not metrics:
        return
    cols = min(4, len(metrics))
    n_rows = math.ceil(len(metrics) / cols)
    with figure(path, n_rows, cols, figsize=(3.6 * cols, 3.2 * n_rows), squeeze=False) as (fig, axes):
        for ax, metric in zip(axes.flat, metrics):
            pts = [(r["method"], r[metric]) for r in rows if finite(r.get(metric))]
            colors = [
                "crimson" if n == "shapnet" else ("grey" if n == "random" else "tab:blue") for n, _ in pts
            ]
            ax.barh([p[0] for p in pts], [p[1] for p in pts], color=colors)
            ax.set_title(better(metric, METRICS[metric][0]), fontsize=9)
            ax.tick_params(labelsize=7)
            ax.invert_yaxis()
        for ax in list(axes.flat)[len(metrics) :]:
            ax.axis("off")
        fig.suptitle(title, fontsize=10)


def _method_names(methods: Sequence[str] | str) -> list[str]:
    from .methods import DEFAULT_METHODS, get_method, list_methods

    if methods == "roar":
        return list(DEFAULT_METHODS)
    if methods == "all":
        return list_methods()
    names = [methods] if isinstance(methods, str) else list(methods)
    for name in names:
        get_method(name)  # a ValueError listing the valid names
    return names


def run_faithfulness(
    dataset: Dataset,
    *,
    model: str | ModelConfig = "deep",
    model_factory: Callable[[], nn.Module] | None = None,
    methods: Sequence[str] | str = "roar",
    n_samples: int = 50,
    n_sensitivity: int = 10,
    epochs: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Train one model on ``dataset`` and score every method's explanations of it with Captum and Quantus.

    Args:
        dataset: tabular or image data, classification (the predicted class is explained) or regression
            (the single output; the ROAD metrics, which score class predictions, are left out).
        model: ``"deep"``, ``"shallow"``, ``"harsanyi"``, ``"mlp"``, ``"package.module:function"`` (see
            :func:`benchmarks.models.model_factory`) or a :class:`benchmarks.models.ModelConfig`; also the
            training recipe of ``model_factory``'s model.
        model_factory: a zero-argument callable returning an untrained ``nn.Module`` (outputs ``(B, K)``,
            or ``(B, 1)`` for a regression): a user's own architecture, trained with the ROAR recipe.
        methods: ``"roar"`` (:data:`benchmarks.methods.DEFAULT_METHODS`), ``"all"`` or registry names.
        n_samples: test rows explained and scored (at least 2).
        n_sensitivity: rows for ``sensitivity_max``, which re-explains each 5 times.
        epochs: override the recipe's epochs.
        seed: seeds the weights, shuffling, the methods and the metrics' random draws.
        out: where to write ``faithfulness.csv``, ``faithfulness.json`` and ``faithfulness.png`` (None:
            nothing).
        progress: a progress bar over the methods.
        log: where the table goes.

    Returns:
        One row per method (columns :data:`COLUMNS`); ``.attrs`` holds ``"model"``, ``"checks"`` and
        ``"directions"``.

    Raises:
        ValueError: unknown method names, ``n_samples < 2`` or ``n_sensitivity < 1``.
    """
    from shapnet.progress import progress as progress_bar

    from .methods import get_method
    from .models import reference_row, single_thread

    if n_samples < 2 or n_sensitivity < 1:
        raise ValueError(
            f"n_samples must be >= 2 and n_sensitivity >= 1, got {n_samples} and {n_sensitivity}."
        )
    names = _method_names(methods)
    wall = time.perf_counter()
    with single_thread():
        net, kind, test_score, train_seconds = _train(dataset, model, model_factory, epochs, seed, progress)
        input_shape = tuple(dataset.X_train.shape[1:])
        n_features = _n_features(input_shape)
        metric = "accuracy" if dataset.task == "classification" else "R2"
        log(
            f"{dataset.name}: input {input_shape}, {len(dataset.X_train)} train; {kind} model "
            f"({type(net).__name__}) test {metric} {test_score['score']:.3f} ({train_seconds:.0f} s)"
        )
        x = torch.as_tensor(dataset.X_test[:n_samples])
        with torch.no_grad():
            target = net(x).argmax(1)  # the predicted class; 0 for a single output
        # The training mean (per channel for images), as in ROAR: the ShapNet's reference and every baseline.
        reference = torch.as_tensor(reference_row(dataset.X_train))
        background = reference.unsqueeze(0)
        road = len(input_shape) == 3 and dataset.task == "classification"

        rows: list[dict[str, Any]] = []
        checks: dict[str, float] = {}
        for name in progress_bar(names, desc="faithfulness methods", unit="method", disable=not progress):
            spec = get_method(name)
            row: dict[str, Any] = {
                "method": name,
                "library": spec.library,
                "budget": dict(spec.budget) or None,
            }
            reason = spec.supports(net, n_features)
            if reason is not None:
                rows.append({**row, "status": "unsupported", "reason": reason})
                continue
            try:
                # Amortised methods (FastSHAP) train for this model first; the cost is reported apart.
                prepared = spec.prepare_for(net, dataset.X_train, background=reference, seed=seed)
                row["training_seconds"] = prepared.get("training_seconds")
                spec(net, x[:1], target[:1], background=background, seed=seed)  # warm-up: imports, numba
                tic = time.perf_counter()
                attributions = spec(net, x, target, background=background, seed=seed)
            except Exception as err:
                rows.append(
                    {
                        **row,
                        "status": "unsupported",
                        "reason": f"failed on this model: {type(err).__name__}: {err}",
                    }
                )
                continue
            row["sec_per_sample"] = (time.perf_counter() - tic) / len(x)
            row["status"], row["reason"] = "ok", spec.caveat
            if name == "shapnet":
                # Cross-check: the Quantus adapter gives the same values as the registry (Captum adapter).
                from shapnet_adapters.quantus import TabularAsImage, explain_func

                tabular = x.dim() == 2
                qmodel, qx = (TabularAsImage(net), x.numpy()[:, None]) if tabular else (net, x.numpy())
                via_quantus = explain_func(qmodel, qx, target.numpy()).reshape(attributions.shape)
                checks["shapnet_quantus_vs_captum_max_abs_diff"] = float(
                    np.abs(via_quantus - attributions.numpy()).max()
                )
            failures = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    row.update(
                        _captum_scores(
                            net,
                            _explainer(spec, net, background, seed),
                            x,
                            target,
                            attributions,
                            reference,
                            n_sensitivity,
                            seed,
                        )
                    )
                except Exception as err:
                    failures.append(f"Captum metrics failed: {type(err).__name__}: {err}")
                try:
                    row.update(
                        _quantus_scores(
                            net,
                            x.numpy(),
                            target.numpy(),
                            attributions.numpy(),
                            reference.numpy(),
                            seed,
                            road,
                        )
                    )
                except Exception as err:
                    failures.append(f"Quantus metrics failed: {type(err).__name__}: {err}")
            row["reason"] = "; ".join(filter(None, [row["reason"], *failures]))
            rows.append(row)

    import pandas as pd

    table = pd.DataFrame(rows, columns=list(COLUMNS))
    directions = {m: d for m, (d, _) in METRICS.items()}
    shown = [m for m, (_, images) in METRICS.items() if road or not images]
    explained = "predicted-class logit" if dataset.task == "classification" else "the single output"
    log(
        f"\n{len(x)} test samples (sensitivity_max: {min(n_sensitivity, len(x))}), {explained}, "
        "reference = training mean."
    )
    log(
        format_table(
            table.rename(columns={m: better(m, directions[m]) for m in shown}),
            [
                "method",
                "status",
                *(better(m, directions[m]) for m in shown),
                "sec_per_sample",
                *(["training_seconds"] if any(r.get("training_seconds") for r in rows) else []),
            ],
        )
    )
    for r in rows:
        if r.get("reason"):
            log(f"  {r['method']}: {r['reason']}")
    model_info = {
        "kind": kind,
        "class": type(net).__name__,
        "test_score": test_score["score"],
        "metric": metric,
        "train_seconds": train_seconds,
    }
    table.attrs.update(model=model_info, checks=checks, directions=directions)
    if out is not None:
        payload = {
            "dataset": dataset.name,
            "task": dataset.task,
            "methods": names,
            "model": model_info,
            "settings": {
                "n_samples": n_samples,
                "n_sensitivity": n_sensitivity,
                "epochs": epochs,
                "seed": seed,
            },
            "n_samples": len(x),
            "n_sensitivity": min(n_sensitivity, len(x)),
            "directions": directions,
            "checks": checks,
            "rows": rows,
        }
        title = f"Faithfulness on {dataset.name} ({kind} model, {len(x)} samples)"
        write_outputs(
            out, "faithfulness", table, payload, lambda path: plot(rows, path, title), started=wall, log=log
        )
    return table


def main(argv: list[str] | None = None) -> int:
    from shapnet.cli import add_dataset_arguments, dataset_from_args, fail_cleanly

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks faithfulness", description=__doc__.split("\n")[0]
    )
    add_dataset_arguments(parser, default="breast_cancer")
    parser.add_argument("--out", default=None, help="default: results/faithfulness/<dataset>")
    parser.add_argument(
        "--model",
        default="deep",
        help="deep, shallow, harsanyi, mlp (the ROAR benchmark's kinds) or package.module:function, a "
        "function(input_shape, n_outputs) returning an untrained nn.Module",
    )
    parser.add_argument(
        "--methods",
        default="roar",
        help="'roar' (the ROAR benchmark's default set), 'all', or comma-separated method names",
    )
    parser.add_argument(
        "--n-samples", type=int, default=None, help="test samples explained and scored (default 50; mnist 20)"
    )
    parser.add_argument(
        "--n-sensitivity",
        type=int,
        default=None,
        help="samples for sensitivity_max, which re-explains each 5 times (default 10; mnist 4)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the ROAR recipe's epochs")
    parser.add_argument(
        "--max-train",
        type=int,
        default=None,
        help="use at most this many training samples (default: all; mnist 10000)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    # MNIST's 784 pixels make the sampling methods slow (Captum's Shapley value sampling: ~30 s per image).
    mnist = args.dataset == "mnist"
    for name, default, for_mnist in (
        ("n_samples", 50, 20),
        ("n_sensitivity", 10, 4),
        ("max_train", None, 10000),
    ):
        if getattr(args, name) is None:
            setattr(args, name, for_mnist if mnist else default)
    out = args.out or str(Path("results", "faithfulness", Path(args.dataset).stem))  # the dataset's name
    methods = (
        args.methods
        if args.methods in ("roar", "all")
        else [m.strip() for m in args.methods.split(",") if m.strip()]
    )
    with fail_cleanly(out):
        data = dataset_from_args(args, max_train=args.max_train)
        call_with_options(run_faithfulness, args, data, methods=methods, out=out)
    return 0
