"""Scaling: time to explain one batch as the number of features grows, ShapNet against post-hoc estimators.

    python -m benchmarks scaling [--dims 16,64,256,1024] [--batch 64] [--out results/scaling]
        [--rivals harsanyi,fastshap] [--fastshap-epochs N]

Models: at each ``d`` a ``DeepShapNet(d, 1, channels=16, hidden=(64,))`` with one butterfly
(``log2 d`` layers), briefly trained (``--train-steps`` Adam steps of 64, default 100; 0 = untrained)
on a synthetic regression task: ``x ~ N(0, I)``, ``y = x·w + sum of d/2 random pairwise products``.
One output (a regression), so post-hoc methods and the ShapNet explain the same single logit; the
reference is 0 (the data mean) and every method uses it as its baseline/background.

Methods (from the registry, :mod:`benchmarks.methods`): ``shapnet``, the ShapNet's built-in values (one
explained forward pass); ``shap_kernel``, shap's ``KernelExplainer`` (``l1_reg=False``); and
``shapley_value_sampling``, Captum's permutation sampling. Budgets:

* ``d = 16`` (ground truth by :func:`shapnet.exact_shapley` is feasible): each estimator's budget is
  calibrated, on the first ``--calib-samples`` samples (8), to the smallest of a doubling ladder whose
  relative L2 error against the exact values is at most the ShapNet's own error on them (Kernel SHAP:
  ``nsamples`` from 32 up to ``2**16``, where it enumerates every coalition; sampling: 1 to 256
  permutations). If no budget on the ladder reaches it, the largest is used and the table says so.
* ``d > 16``: the libraries' default budgets (shap: ``nsamples = 2 d + 2048``; Captum: 25 permutations).

Post-hoc methods cost the same for every sample, and at large ``d`` a batch takes minutes: each is timed on
one sample, then on as many samples of the batch as fit in ``--max-seconds`` (default 60), and the time is
scaled to the batch (column ``measured``: how many samples were timed). One-time costs (imports, shap's
numba compilation) are paid before any timing. The ShapNet is timed on the whole batch (median of
``--repeats``). One torch thread and one BLAS thread throughout. Times: lower is better.

Rivals (``--rivals``, none by default), timed on the same batch the same way as the ShapNet:

* ``harsanyi``: a ``HarsanyiNet(d, 1)`` (two layers of 100 Harsanyi units) trained on the same task and
  steps, explained by its built-in values (exact by construction; at ``d <= 16`` its error against its own
  exact values is measured on the calibration samples). A different model: ``x_shapnet`` compares times.
* ``fastshap``: the registry's FastSHAP explainer, trained for the Deep ShapNet by the registry's
  ``prepare_for`` on the model's training inputs (its budget, with ``--fastshap-epochs`` if given). Its
  one-off ``training_seconds`` is reported apart, and ``seconds_with_training`` is the total time to
  explain the batch from scratch (training plus explanation); at ``d <= 16`` its error against the exact
  values is measured on the calibration samples.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shapnet import DeepShapNet, HarsanyiNet, ShapNet, exact_shapley

from ._common import (
    attribution_metrics,
    better,
    comma_separated,
    figure,
    format_table,
    limit_blas_threads,
    prepare_out,
    timed_attributions,
    write_outputs,
)
from .methods import MethodSpec, get_method
from .models import single_thread

__all__ = ["RIVALS", "build_model", "calibrate", "main", "posthoc", "synthetic_task"]

DEFAULT_DIMS = (16, 64, 256, 1024)
KERNEL_LADDER = tuple(2**p for p in range(2, 17))  # 4 ... 65536; cut to (d + 1, 2**d]
SAMPLING_LADDER = tuple(2**p for p in range(9))  # 1 ... 256 permutations
MAX_EXACT = 16
#: The post-hoc estimators: registry name -> (budget parameter, unit shown in the table).
POSTHOC = {"shap_kernel": ("nsamples", "nsamples"), "shapley_value_sampling": ("n_samples", "permutations")}
#: The one-pass rivals ``--rivals`` may name: a HarsanyiNet's built-in values, and FastSHAP (the registry's).
RIVALS = ("harsanyi", "fastshap")
COLUMNS = (
    "d",
    "method",
    "budget",
    "budget_rule",
    "evals_per_sample",
    "measured",
    "seconds_per_batch",
    "rel_l2",
    "x_shapnet",
    "training_seconds",
    "seconds_with_training",
)


def synthetic_task(d: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X (n, d), y (n,))``: standard normal features, a linear term plus ``d/2`` pairwise products."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, generator=g) / math.sqrt(d)
    pairs = torch.randperm(d, generator=g)[: 2 * (d // 2)].view(-1, 2)  # (d/2, 2) disjoint random pairs
    y = x @ w + (x[:, pairs[:, 0]] * x[:, pairs[:, 1]]).sum(1) / math.sqrt(max(1, len(pairs)))
    return x, y


def build_model(d: int, args: argparse.Namespace, kind: str = "deep") -> ShapNet:
    """A seeded single-output Deep ShapNet (``kind="harsanyi"``: a HarsanyiNet with two layers of 100
    units), trained ``args.train_steps`` steps on :func:`synthetic_task`."""
    torch.manual_seed(args.seed)
    model: ShapNet = (
        HarsanyiNet(d, 1, hidden=(100, 100))
        if kind == "harsanyi"
        else DeepShapNet(d, 1, channels=args.channels, hidden=tuple(args.hidden))
    )
    if args.train_steps > 0:
        from shapnet.training import fit

        x, y = synthetic_task(d, 64 * args.train_steps, args.seed)
        fit(model, x, y, epochs=1, batch_size=64, lr=3e-3, seed=args.seed, progress=False, task="regression")
    return model.eval()


def posthoc(name: str, budget: int) -> MethodSpec:
    """The registry's estimator ``name`` (a key of :data:`POSTHOC`) at ``budget`` of its own parameter."""
    return dataclasses.replace(get_method(name), budget={POSTHOC[name][0]: int(budget)})


def _explain(spec: MethodSpec, model: ShapNet, x: torch.Tensor) -> np.ndarray:
    """``(B, d)`` attributions of the single output against the model's reference."""
    target = torch.zeros(len(x), dtype=torch.long)
    return spec(model, x, target, background=model.reference.detach().unsqueeze(0), seed=0).double().numpy()


def calibrate(
    model: ShapNet,
    x: torch.Tensor,
    truth: np.ndarray,
    target_error: float,
    name: str,
    ladder: Sequence[int],
) -> dict[str, Any]:
    """The smallest budget on ``ladder`` at which estimator ``name``'s error on ``x`` is at most
    ``target_error``.

    Returns:
        ``{"budget", "rel_l2", "reached" (bool), "tried": [(budget, rel_l2), ...]}``; the largest budget
        when none reaches the target.
    """
    tried = []
    for budget in ladder:
        err = attribution_metrics(_explain(posthoc(name, budget), model, x), truth)["rel_l2"]
        tried.append((budget, err))
        if err <= target_error:
            return {"budget": budget, "rel_l2": err, "reached": True, "tried": tried}
    return {"budget": ladder[-1], "rel_l2": tried[-1][1], "reached": False, "tried": tried}


def _time(spec: MethodSpec, model: ShapNet, x: torch.Tensor, **kwargs: Any) -> tuple[float, float]:
    """``(seconds per sample, model evaluations per sample)`` of explaining ``x``'s single output."""
    _, seconds, evals = timed_attributions(
        spec,
        model,
        x,
        torch.zeros(len(x), dtype=torch.long),
        background=model.reference.detach().unsqueeze(0),
        **kwargs,
    )
    return seconds, evals


def _time_posthoc(
    spec: MethodSpec, model: ShapNet, x: torch.Tensor, max_seconds: float
) -> tuple[float, int, float]:
    """``(seconds per sample, samples timed, model evaluations per sample)``.

    Times one sample; if ``max_seconds`` allows ``n > 1`` samples, times the first ``n`` samples again
    (one call) and reports that. One-time costs (imports, numba) are paid beforehand by :func:`_warm_up`.
    """
    one, evals = _time(spec, model, x[:1])
    n = max(1, min(len(x), int(max_seconds / max(one, 1e-9))))
    if n <= 1:
        return one, 1, evals
    seconds, evals = _time(spec, model, x[:n])
    return seconds, n, evals


def _warm_up() -> None:
    """Pay the one-time costs (imports, shap's numba compilation) on a tiny model, untimed."""
    torch.manual_seed(0)
    tiny = DeepShapNet(4, 1, channels=2, hidden=(4,)).eval()
    for spec in (get_method("shapnet"), posthoc("shap_kernel", 16), posthoc("shapley_value_sampling", 2)):
        _explain(spec, tiny, torch.randn(2, 4))


def _rival_rows(
    d: int,
    model: ShapNet,
    x: torch.Tensor,
    xc: torch.Tensor | None,
    truth: np.ndarray | None,
    shapnet_seconds: float,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """The rows of ``args.rivals`` at ``d``: the batch ``x`` timed as the ShapNet's is; the error on ``xc``
    against ``truth`` (the Deep ShapNet's exact values) where ``d <= MAX_EXACT``."""
    rows: list[dict[str, Any]] = []
    for rival in args.rivals:
        row: dict[str, Any] = {"d": d, "measured": len(x)}
        if rival == "harsanyi":
            rival_model = build_model(d, args, "harsanyi")
            spec = get_method("shapnet")
            seconds, _ = _time(spec, rival_model, x, warmup=1, repeats=args.repeats)
            row.update(
                method="harsanyi (built-in)",
                budget="",
                budget_rule="one explained forward of its own model (HarsanyiNet, 2 x 100 units)",
                evals_per_sample=1.0,
            )
            if xc is not None:  # its own exact values: it is another model
                # At most ~2048 rows per call: a HarsanyiNet's AND gates hold (rows, units, children) tensors.
                chunk = max(1, 2048 // len(xc))
                own = exact_shapley(rival_model, xc, rival_model.reference, chunk_size=chunk)[..., 0].numpy()
                row["rel_l2"] = attribution_metrics(_explain(spec, rival_model, xc), own)["rel_l2"]
        else:
            spec = get_method("fastshap")
            if args.fastshap_epochs is not None:
                spec = dataclasses.replace(spec, budget={**spec.budget, "epochs": args.fastshap_epochs})
            # Trained on the model's own training inputs (fresh ones when the model is untrained).
            train = synthetic_task(d, 64 * max(args.train_steps, 1), args.seed)[0]
            info = spec.prepare_for(model, train, background=model.reference.detach(), seed=args.seed)
            seconds, _ = _time(spec, model, x, warmup=1, repeats=args.repeats)
            row.update(
                method="fastshap",
                budget=f"{info['epochs_run']} epochs",
                budget_rule="amortised: an explainer trained once for this model",
                # One explainer and one model pass per sample, plus f(reference) once per call.
                evals_per_sample=1.0 + 1.0 / len(x),
                training_seconds=info["training_seconds"],
                seconds_with_training=info["training_seconds"] + seconds * len(x),
            )
            if xc is not None and truth is not None:
                row["rel_l2"] = attribution_metrics(_explain(spec, model, xc), truth)["rel_l2"]
        row.update(seconds_per_batch=seconds * len(x), x_shapnet=seconds * len(x) / shapnet_seconds)
        rows.append(row)
    return rows


def plot(rows: list[dict], path: str | Path, batch: int) -> None:
    """Seconds per batch against ``d`` (log-log), one line per method."""
    methods: dict[str, list[dict]] = {}
    for r in rows:
        methods.setdefault(r["method"], []).append(r)
    with figure(path, figsize=(7, 5)) as (_, ax):
        for method, pts in methods.items():
            style = (
                {"color": "crimson", "marker": "*", "markersize": 12}
                if method == "shapnet"
                else {"marker": "o"}
            )
            ax.plot([p["d"] for p in pts], [p["seconds_per_batch"] for p in pts], label=method, **style)
            if method == "fastshap":  # the amortised cost: total time to explain the batch from scratch
                totals = [p["seconds_with_training"] for p in pts]
                ax.plot([p["d"] for p in pts], totals, ls="--", marker="o", label="fastshap incl. training")
            for p in pts:
                if p["measured"] < batch:
                    ax.annotate(
                        f"{p['measured']}/{batch}",
                        (p["d"], p["seconds_per_batch"]),
                        fontsize=6,
                        textcoords="offset points",
                        xytext=(3, -9),
                    )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("number of features d")
        ax.set_ylabel(better(f"seconds to explain {batch} samples (1 thread)", "lower"))
        ax.set_title(
            f"Explanation time vs number of features (d <= {MAX_EXACT}: post-hoc budgets calibrated to "
            "ShapNet's error;\n"
            f"larger d: library defaults; n/{batch}: timed on n samples, scaled to the batch)",
            fontsize=8,
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)


def main(argv: list[str] | None = None) -> int:
    from shapnet.cli import fail_cleanly
    from shapnet.progress import progress

    parser = argparse.ArgumentParser(prog="python -m benchmarks scaling", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dims",
        type=comma_separated(int, minimum=2),
        default=list(DEFAULT_DIMS),
        help="feature counts d (default 16,64,256,1024)",
    )
    parser.add_argument("--batch", type=int, default=64, help="samples in the explained batch")
    parser.add_argument("--out", default="results/scaling")
    parser.add_argument(
        "--train-steps", type=int, default=100, help="Adam steps on synthetic data (0: untrained)"
    )
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64])
    parser.add_argument(
        "--calib-samples", type=int, default=8, help="samples for the d = 16 budget calibration"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="time budget per post-hoc cell: fewer samples are timed and scaled to the batch",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of the ShapNet's explain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rivals",
        type=comma_separated(str),
        default=[],
        help=f"one-pass rivals timed next to the ShapNet: some of {','.join(RIVALS)} (default: none)",
    )
    parser.add_argument(
        "--fastshap-epochs",
        type=int,
        default=None,
        help="at most this many FastSHAP training epochs (default: the registry's budget, early stopped)",
    )
    args = parser.parse_args(argv)
    if args.batch < 1 or args.calib_samples < 1 or args.train_steps < 0 or args.repeats < 1:
        parser.error("--batch, --calib-samples and --repeats must be >= 1, --train-steps >= 0")
    unknown = sorted(set(args.rivals) - set(RIVALS))
    if unknown:
        parser.error(f"unknown rivals {unknown}; expected some of {list(RIVALS)}")
    if args.fastshap_epochs is not None and args.fastshap_epochs < 1:
        parser.error("--fastshap-epochs must be >= 1")

    wall = time.perf_counter()
    rows: list[dict[str, Any]] = []
    calibration: dict[int, dict[str, Any]] = {}
    with fail_cleanly(args.out), single_thread(), limit_blas_threads():
        out = prepare_out(args.out)  # before the long part: an unwritable --out fails at once
        _warm_up()
        for d in progress(args.dims, desc="scaling d", unit="d"):
            model = build_model(d, args)
            x = synthetic_task(d, args.batch, args.seed + 1)[0]  # fresh samples, not the training set
            shapnet_seconds, _ = _time(get_method("shapnet"), model, x, warmup=1, repeats=args.repeats)
            shapnet_seconds *= len(x)
            row = {
                "d": d,
                "method": "shapnet",
                "budget": "",
                "budget_rule": "one explained forward",
                "evals_per_sample": 1.0,
                "measured": len(x),
                "seconds_per_batch": shapnet_seconds,
                "rel_l2": None,
                "x_shapnet": 1.0,
            }
            cells: list[tuple[str, int, str]] = []  # (estimator, budget, rule)
            xc, truth = None, None
            if d <= MAX_EXACT:
                xc = x[: args.calib_samples]
                tic = time.perf_counter()
                truth = exact_shapley(model, xc, model.reference)[..., 0].numpy()  # (B, d); float64 sums
                exact_seconds = (time.perf_counter() - tic) / len(xc)
                target = attribution_metrics(_explain(get_method("shapnet"), model, xc), truth)["rel_l2"]
                row["rel_l2"] = target
                # Doubling from the first power of 2 above d + 1 up to 2**d (every coalition: exact).
                ladders = {
                    "shap_kernel": (*(b for b in KERNEL_LADDER if d + 1 < b < 2**d), 2**d),
                    "shapley_value_sampling": SAMPLING_LADDER,
                }
                calibration[d] = {
                    "shapnet_rel_l2": target,
                    "calib_samples": len(xc),
                    "exact_seconds_per_sample": exact_seconds,
                }
                for name, ladder in ladders.items():
                    cal = calibration[d][name] = calibrate(model, xc, truth, target, name, ladder)
                    rule = (
                        "calibrated: reaches ShapNet's error"
                        if cal["reached"]
                        else "calibrated: largest tried, does NOT reach ShapNet's error"
                    )
                    cells.append((name, cal["budget"], f"{rule} ({cal['rel_l2']:.3g} vs {target:.3g})"))
                rows.append(row)
                rows.append(
                    {
                        "d": d,
                        "method": "exact_shapley (brute force)",
                        "budget": f"2^{d} coalitions",
                        "budget_rule": "ground truth",
                        "evals_per_sample": float(2**d),
                        "measured": len(xc),
                        "seconds_per_batch": exact_seconds * len(x),
                        "rel_l2": 0.0,
                        "x_shapnet": exact_seconds * len(x) / shapnet_seconds,
                    }
                )
            else:
                rows.append(row)
                cells.append(("shap_kernel", 2 * d + 2048, "shap default (2d + 2048)"))
                cells.append(("shapley_value_sampling", 25, "Captum default"))
            for name, budget, rule in cells:
                per_sample, measured, evals = _time_posthoc(posthoc(name, budget), model, x, args.max_seconds)
                cal = calibration.get(d, {}).get(name)
                rows.append(
                    {
                        "d": d,
                        "method": name,
                        "budget": f"{budget} {POSTHOC[name][1]}",
                        "budget_rule": rule,
                        "evals_per_sample": evals,
                        "measured": measured,
                        "seconds_per_batch": per_sample * len(x),
                        "rel_l2": None if cal is None else cal["rel_l2"],
                        "x_shapnet": per_sample * len(x) / shapnet_seconds,
                    }
                )
            rows.extend(_rival_rows(d, model, x, xc, truth, shapnet_seconds, args))
            amortised = ["training_seconds", "seconds_with_training"] if "fastshap" in args.rivals else []
            print(
                format_table(
                    [r for r in rows if r["d"] == d],
                    ["d", "method", "budget", "measured", "seconds_per_batch", "x_shapnet", *amortised],
                )
            )

        print(
            f"\nExplaining a batch of {args.batch} samples, single-output DeepShapNet "
            f"({f'{args.train_steps} Adam steps on synthetic data' if args.train_steps else 'untrained'}); "
            "'measured' = samples actually timed (scaled to the batch); times: lower is better."
        )
        print(format_table(rows, COLUMNS))
        payload = {
            "settings": vars(args),
            "calibration": {str(k): v for k, v in calibration.items()},
            "rows": rows,
        }
        write_outputs(
            out,
            "scaling",
            [{c: r.get(c) for c in COLUMNS} for r in rows],
            payload,
            lambda path: plot(rows, path, args.batch),
            started=wall,
        )
    return 0
