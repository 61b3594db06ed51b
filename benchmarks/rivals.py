"""Rivals: the one-pass Shapley explainers on one harness (Deep ShapNet, HarsanyiNet, FastSHAP).

    python -m benchmarks rivals [--datasets yeast,wine,breast_cancer,diabetes,mnist] [--data-dir DIR]
        [--out results/rivals] [--consistency 1.0] [--n-explain 32] [--truth-pairs 128]
        [--budgets 1,4,16,64] [--mnist-train 2000] [--mnist-test 500] [--fractions 0.3,0.7]
        [--repeats 1] [--no-roar] [--no-explanations] [--timing-rounds 7] [--fastshap-deep NAMES]
        [--image-models deep,harsanyi,mlp] [--seed 0]

Four models per dataset, each trained once with the ROAR benchmark's recipe (:func:`benchmarks.models.
train_model`, Adam, constant learning rate, seed ``--seed``; a ShapNet's reference, every baseline and every
absent value is the training mean):

* ``deep``: a Deep ShapNet (:class:`~shapnet.DeepShapNet`; a :class:`~shapnet.VisionShapNet` for images),
  lambda = 0;
* ``deep_consistency``: the same, trained with the Shapley-consistency loss (weight ``--consistency``);
* ``harsanyi``: a :class:`~shapnet.HarsanyiNet` (a :class:`~shapnet.VisionHarsanyiNet` for images);
* ``mlp``: a plain ReLU MLP, which has no built-in values: FastSHAP (the registry method ``fastshap``,
  trained on the training inputs against the reference) and Shapley value sampling (Captum) explain it.
  FastSHAP also explains ``deep`` on tables, so that it meets the built-in values on the same model.

Per (model, explanation): test score (accuracy, or R² for diabetes), training time, time per explained
sample (one torch thread, the fastest of ``--timing-rounds`` interleaved rounds, ``--n-time`` rows per
call), model evaluations per sample, and the error against the true Shapley values of the model's output
for the explained class (the predicted class; the single output for regression) on the first
``--n-explain`` test rows: relative L2 over the batch, mean Spearman rank correlation, top-3 agreement. The truth is
:func:`shapnet.exact_shapley` (all ``2**F`` coalitions) when ``F <= 20``. Above that (breast_cancer,
F = 30; MNIST's MLP, 784 pixels), it is an antithetic permutation-sampling estimate with
``--truth-pairs`` permutation pairs per row, whose own relative standard error is reported next to it as
the noise floor of that dataset's errors. On MNIST only the MLP is checked that way (a Vision ShapNet's or
HarsanyiNet's 2 x 785 evaluations per permutation pair are too slow for this machine), on
``--n-explain-images`` rows.

FastSHAP's amortisation: its training time and model evaluations are reported apart. Shapley value
sampling explains the same model at ``--budgets`` permutations; the budget that matches FastSHAP's error is
interpolated (log error vs log time, as in ``python -m benchmarks fidelity``), and the break-even sample
count is ``training seconds / (sampling seconds per sample - FastSHAP seconds per sample)`` (and the same
in model evaluations): explaining more samples than that, FastSHAP's total time is lower.

ROAR / KAR (unless ``--no-roar``): :func:`benchmarks.roar.run_roar` for each model with its own method
(``shapnet``: the built-in values, or ``fastshap`` for the MLP) and the ``random`` control, at
``--fractions`` and ``--repeats``; the area under the score curve (lower is better for ROAR, higher for
KAR) is compared with the random ranking's area for the same model.

Outputs in ``--out``: ``explanations.csv`` (one line per finished (dataset, model, method, budget),
appended, so a killed run resumes), ``models.csv``, ``payback.csv``, ``roar_areas.csv``, ``rivals.json``
(settings, machine, everything), ``rivals.md`` (the tables), ``rivals.png``, ``cache/`` (trained models,
truths, FastSHAP explainers) and ``roar/<dataset>-<model>/`` (each ROAR run's own outputs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._common import (
    CountingModel,
    ResultFile,
    atomic_write,
    attribution_metrics,
    comma_separated,
    exit_status,
    figure,
    format_table,
    machine_info,
    prepare_out,
    write_csv,
    write_json,
)
from .methods import MethodSpec, get_method

__all__ = ["RIVALS", "RivalsSettings", "main", "payback", "permutation_shapley", "run_rivals"]

RIVALS: tuple[str, ...] = ("deep", "deep_consistency", "harsanyi", "mlp")
DATASETS: tuple[str, ...] = ("yeast", "wine", "breast_cancer", "diabetes", "mnist")
EXACT_LIMIT = 20  # shapnet.exact_shapley's limit on F

EXPLANATION_COLUMNS: dict[str, Callable[[str], Any]] = {
    "dataset": str,
    "model": str,
    "method": str,
    "budget": int,
    "rows": int,
    "seconds_per_sample": float,
    "evaluations_per_sample": float,
    "rel_l2": float,
    "spearman": float,
    "top3": float,
    "truth": str,
    "truth_rel_se": float,
    "training_seconds": float,
    "training_evaluations": float,
}


TIMING_COLUMNS: dict[str, Callable[[str], Any]] = {
    "dataset": str,
    "model": str,
    "method": str,
    "budget": int,
    "rows": int,
    "rounds": int,
    "seconds_per_sample": float,
    "min_seconds_per_sample": float,
    "max_seconds_per_sample": float,
}


@dataclass
class RivalsSettings:
    """Everything a rivals run depends on (see the module docstring).

    Attributes:
        datasets: registry names.
        data_dir: data root for yeast and MNIST (default ``$SHAPNET_DATA``).
        out: output directory.
        seed: seeds every model, explainer, estimate and retrain.
        consistency: weight of the Shapley-consistency loss of ``deep_consistency``.
        n_explain: test rows whose explanations are compared with the truth (tables).
        n_explain_images: the same for images (MNIST's MLP).
        n_time, n_time_images: rows per timed call (tables, images).
        truth_pairs, truth_pairs_images: antithetic permutation pairs of the sampled truth (F > 20).
        budgets, budgets_images: permutations of Shapley value sampling (FastSHAP's break-even).
        mnist_train, mnist_test: MNIST rows kept (the first of the shuffled split).
        fastshap_image: FastSHAP budget overrides for images (the tabular budget is the registry's).
        fractions, repeats: ROAR / KAR settings.
        roar: run ROAR / KAR.
        explanations: measure the explanations (False: only ROAR / KAR and the report, e.g. in a second
            process while another measures them).
        timing_rounds: interleaved timing rounds (every method of a dataset once per round; the fastest round
            is reported, the median and slowest are kept in ``timings.csv``).
        fastshap_deep: the tabular datasets on which FastSHAP also explains ``deep`` (None: all); its
            training evaluates the Deep ShapNet ``2 * n_coalitions + 1`` times per row and epoch.
        image_models: the models trained and explained on images (the consistency loss doubles a Vision
            ShapNet's training time).
        roar_image_models: the models ROAR / KAR retrains on images (a Vision ShapNet or HarsanyiNet
            retraining takes minutes on a shared CPU, and ROAR needs ``1 + 4 * len(fractions)`` of them).
        progress: progress bars.
    """

    datasets: Sequence[str] = DATASETS
    data_dir: str | None = None
    out: str | Path = "results/rivals"
    seed: int = 0
    consistency: float = 1.0
    n_explain: int = 32
    n_explain_images: int = 8
    n_time: int = 32
    n_time_images: int = 8
    truth_pairs: int = 128
    truth_pairs_images: int = 16
    budgets: Sequence[int] = (1, 4, 16, 64)
    budgets_images: Sequence[int] = (1, 4)
    mnist_train: int = 2000
    mnist_test: int = 500
    fastshap_image: dict[str, Any] = field(
        default_factory=lambda: {"epochs": 10, "width": 16, "n_coalitions": 8}
    )
    fractions: Sequence[float] = (0.3, 0.7)
    repeats: int = 1
    roar: bool = True
    explanations: bool = True
    timing_rounds: int = 7
    roar_image_models: Sequence[str] = ("mlp",)
    image_models: Sequence[str] = RIVALS
    fastshap_deep: Sequence[str] | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        from shapnet.datasets import list_datasets

        unknown = [d for d in self.datasets if d not in list_datasets()]
        if unknown or not self.datasets:
            raise ValueError(
                f"datasets must be registry names ({', '.join(list_datasets())}), got {list(self.datasets)}."
            )
        for name in (
            "n_explain",
            "n_explain_images",
            "n_time",
            "n_time_images",
            "truth_pairs",
            "truth_pairs_images",
            "mnist_train",
            "mnist_test",
            "repeats",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        for name in ("budgets", "budgets_images"):
            value = getattr(self, name)
            if not value or any(int(b) < 1 for b in value):
                raise ValueError(f"{name} must be positive permutation counts, got {list(value)}.")
            setattr(self, name, tuple(sorted({int(b) for b in value})))
        if (
            isinstance(self.timing_rounds, bool)
            or not isinstance(self.timing_rounds, int)
            or self.timing_rounds < 0
        ):
            raise ValueError(f"timing_rounds must be an int >= 0, got {self.timing_rounds!r}.")
        if not self.consistency > 0:
            raise ValueError(
                f"consistency must be > 0 (deep is the lambda = 0 model), got {self.consistency!r}."
            )
        for name in ("image_models", "roar_image_models"):
            unknown = [m for m in getattr(self, name) if m not in RIVALS]
            if unknown:
                raise ValueError(
                    f"{name} must be among {', '.join(RIVALS)}, got {list(getattr(self, name))}."
                )
        untrained = [m for m in self.roar_image_models if m not in self.image_models]
        if untrained:
            raise ValueError(
                f"roar_image_models {untrained} are not among image_models {list(self.image_models)}: "
                "ROAR retrains only models of this run; add them to image_models."
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
            for k, v in dataclasses.asdict(self).items()
        }


# --------------------------------------------------------------------------- #
# Models
# --------------------------------------------------------------------------- #
def _recipe(rival: str, dataset: str, consistency: float) -> Any:
    """The :class:`benchmarks.models.ModelConfig` (architecture and training recipe) of ``rival``: the ROAR
    benchmark's default for its kind; on the 2,000-image MNIST subset (the defaults are meant for 60,000
    images) the MLP gets 10 epochs and the Vision ShapNet 3 epochs of batch 32 at lr 3e-3."""
    from .models import default_config

    kind = "deep" if rival == "deep_consistency" else rival
    config = default_config(kind, dataset)
    if dataset == "mnist" and rival == "mlp":
        config = dataclasses.replace(config, epochs=10)
    elif dataset == "mnist" and kind == "deep":  # 2 epochs of batch 128 are 32 steps here: too few
        config = dataclasses.replace(config, epochs=3, batch_size=32, lr=3e-3)
    if rival == "deep_consistency":
        config = dataclasses.replace(config, consistency=consistency)
    return config


def _factory(rival: str, config: Any, data: Any) -> Callable[[], nn.Module]:
    from .models import model_factory

    return model_factory(config.kind, data, config)


# --------------------------------------------------------------------------- #
# The truth
# --------------------------------------------------------------------------- #
@torch.no_grad()
def permutation_shapley(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    reference: torch.Tensor,
    target: torch.Tensor,
    *,
    pairs: int,
    seed: int,
    rows_per_call: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shapley values of ``fn(.)[:, target]`` at each row of ``x`` by antithetic permutation sampling.

    Each pair is a random permutation and its reverse; the value of a player is its mean marginal
    contribution over the ``2 * pairs`` orders (unbiased; the reverse order cancels much of the variance).
    For images the players are pixels (all channels of a pixel together).

    Args:
        fn: ``(N, *input_shape) -> (N, K)``.
        x: ``(B, *input_shape)``.
        reference: ``input_shape``: the value of an absent player.
        target: ``(B,)`` output index per row.
        pairs: permutation pairs per row.
        seed: seeds the permutations.

    Returns:
        ``(values, standard_error)``, each ``(B, P)`` float64 (``P`` players).
    """
    shape = tuple(x.shape[1:])
    image = len(shape) == 3
    players = shape[1] * shape[2] if image else shape[0]
    generator = torch.Generator().manual_seed(int(seed))
    steps = torch.arange(players + 1).view(1, -1, 1)
    per_call = max(1, rows_per_call // (2 * (players + 1)))
    means, errors = [], []
    for b in range(x.shape[0]):
        total = torch.zeros(players, dtype=torch.float64)
        total_sq = torch.zeros(players, dtype=torch.float64)
        done = 0
        while done < pairs:
            n = min(per_call, pairs - done)
            order = torch.argsort(torch.rand(n, players, generator=generator), dim=1)
            order = torch.cat([order, order.flip(1)])  # (2n, P): each permutation and its reverse
            position = torch.argsort(order, dim=1)  # where each player comes in its order
            masks = position.unsqueeze(1) < steps  # (2n, P + 1, P): the first j players present
            flat = masks.reshape(-1, players)
            if image:
                flat = flat.view(-1, 1, *shape[1:])
            inputs = torch.where(flat, x[b], reference)
            value = fn(inputs)[:, int(target[b])].double().view(2 * n, players + 1)
            gains = value[:, 1:] - value[:, :-1]  # (2n, P): gain of the player at step j
            contribution = torch.zeros(2 * n, players, dtype=torch.float64).scatter_(1, order, gains)
            pair = (contribution[:n] + contribution[n:]) / 2  # (n, P): antithetic pair means
            total += pair.sum(0)
            total_sq += pair.pow(2).sum(0)
            done += n
        mean = total / pairs
        var = (total_sq / pairs - mean.pow(2)).clamp_min(0) * pairs / max(1, pairs - 1)
        means.append(mean)
        errors.append((var / pairs).sqrt())
    return torch.stack(means), torch.stack(errors)


def _truth(
    model: nn.Module, x: torch.Tensor, reference: torch.Tensor, target: torch.Tensor, pairs: int, seed: int
) -> tuple[np.ndarray, str, float]:
    """``(values (B, P), kind, relative standard error)`` of ``model`` at ``x`` for ``target``."""
    from shapnet import exact_shapley

    players = int(np.prod(x.shape[2:])) if x.dim() == 4 else x.shape[1]
    if players <= EXACT_LIMIT:
        import copy

        exact = copy.deepcopy(model).double()  # float64: the truth is exact to ~1e-15
        # At most ~2048 rows per call: a HarsanyiNet's AND gates hold (rows, units, children) tensors.
        values = exact_shapley(exact, x.double(), reference.double(), chunk_size=max(1, 2048 // len(x)))
        picked = values[torch.arange(x.shape[0]), :, target].numpy()
        return picked, "exact", 0.0
    values, se = permutation_shapley(model, x, reference, target, pairs=pairs, seed=seed)
    return values.numpy(), f"sampled ({pairs} antithetic pairs)", float(se.norm() / values.norm())


# --------------------------------------------------------------------------- #
# Measuring one explanation
# --------------------------------------------------------------------------- #
def _timed(call: Callable[[], torch.Tensor], repeats: int = 3) -> tuple[torch.Tensor, float]:
    call()  # warm-up (first-call compilation and allocation)
    times, out = [], None
    for _ in range(repeats):
        tic = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - tic)
    return out, statistics.median(times)


def _measure(
    spec: MethodSpec,
    model: nn.Module,
    x_err: torch.Tensor,
    x_time: torch.Tensor,
    targets: tuple,
    reference: torch.Tensor,
    truth: np.ndarray | None,
    seed: int,
) -> dict[str, Any]:
    """Time ``spec`` on ``x_time`` (per sample, one thread), count its evaluations, score it on ``x_err``."""
    t_err, t_time = targets
    background = reference.unsqueeze(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, seconds = _timed(lambda: spec(model, x_time, t_time, background=background, seed=seed))
        if spec.name == "shapnet":
            evaluations = 1.0  # one explained forward pass
        elif spec.name == "fastshap":
            # The explainer's pass plus the model at x; f(reference) once per call (it finds the explainer
            # by the model's weights, so a counting wrapper cannot stand in for the model here).
            evaluations = 1.0 + 1.0 / len(x_time)
        else:
            counting = CountingModel(model).eval()
            spec(counting, x_time[:8], t_time[:8], background=background, seed=seed)
            evaluations = counting.rows / min(8, len(x_time))
        attr = spec(model, x_err, t_err, background=background, seed=seed).reshape(len(x_err), -1).numpy()
    finally:
        torch.set_num_threads(threads)
    row: dict[str, Any] = {
        "seconds_per_sample": seconds / len(x_time),
        "evaluations_per_sample": evaluations,
        "rows": len(x_err),
    }
    if truth is not None:
        row.update(attribution_metrics(attr, truth))
    return row


# --------------------------------------------------------------------------- #
# The run
# --------------------------------------------------------------------------- #
def _load(name: str, settings: RivalsSettings) -> Any:
    from shapnet.datasets import load_dataset

    image = name in ("mnist",)
    data = load_dataset(
        name, settings.data_dir, random_state=settings.seed, max_train=settings.mnist_train if image else None
    )
    if image:
        data = dataclasses.replace(
            data, X_test=data.X_test[: settings.mnist_test], y_test=data.y_test[: settings.mnist_test]
        )
    return data


def _standardised(data: Any) -> Any:
    """Regression targets centred and scaled by the training mean and std, as ``run_roar`` trains them."""
    if data.task != "regression":
        return data
    mean, std = float(np.mean(data.y_train)), float(np.std(data.y_train)) or 1.0
    return dataclasses.replace(
        data, **{k: ((getattr(data, k) - mean) / std).astype(np.float32) for k in ("y_train", "y_test")}
    )


def _trained(
    rival: str, data: Any, settings: RivalsSettings, cache: Path, log: Callable[[str], None]
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model of ``rival`` (cached) and ``{score, training_seconds, weights_hash, ...}``."""
    from .models import instantiate, score, single_thread, train_model, weights_hash

    config = _recipe(rival, data.name, settings.consistency)
    model = instantiate(_factory(rival, config, data), settings.seed)
    path = cache / f"model-{data.name}-{rival}-{settings.seed}"
    meta_path = path.with_suffix(".json")
    if meta_path.exists() and path.with_suffix(".pt").exists():
        model.load_state_dict(torch.load(path.with_suffix(".pt"), weights_only=True))
        return model.eval(), json.loads(meta_path.read_text())
    log(f"  training {rival} on {data.name} ({len(data.X_train)} rows, {config.epochs} epochs)")
    train = _standardised(data)
    tic = time.perf_counter()
    with single_thread():
        train_model(model, train.X_train, train.y_train, config, seed=settings.seed, task=data.task)
    seconds = time.perf_counter() - tic
    meta = {
        "dataset": data.name,
        "model": rival,
        "class": type(model).__name__,
        "config": config.to_dict(),
        "training_seconds": seconds,
        "weights_hash": weights_hash(model),
        "parameters": sum(p.numel() for p in model.parameters()),
        **score(model.eval(), train.X_test, train.y_test, data.task),
    }
    atomic_write(path.with_suffix(".pt"), lambda fh: torch.save(model.state_dict(), fh))
    write_json(meta_path, meta)
    return model.eval(), meta


def _explanations(
    data: Any,
    models: dict[str, nn.Module],
    settings: RivalsSettings,
    results: ResultFile,
    cache: Path,
    log: Callable[[str], None],
) -> None:
    """Measure every (model, method, budget) of ``data`` that ``results`` does not hold yet."""
    from .models import outputs, reference_row

    done = {results.key_of(r) for r in results.read()}
    image = data.X_train.ndim == 4
    n_err = settings.n_explain_images if image else settings.n_explain
    x_err = torch.as_tensor(data.X_test[:n_err])
    x_time = torch.as_tensor(data.X_test[: settings.n_time_images if image else settings.n_time])
    budgets = settings.budgets_images if image else settings.budgets
    reference = torch.as_tensor(reference_row(data.X_train))

    def targets(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        if data.task == "regression":
            return torch.zeros(len(x_err), dtype=torch.long), torch.zeros(len(x_time), dtype=torch.long)
        return (
            torch.as_tensor(outputs(model, x_err).argmax(1)),
            torch.as_tensor(outputs(model, x_time).argmax(1)),
        )

    plan = _plan(
        image, budgets, settings.fastshap_deep is None or data.name in settings.fastshap_deep, list(models)
    )
    truths: dict[str, tuple[np.ndarray, str, float] | None] = {}
    for rival, method, budget in plan:
        if (data.name, rival, method, budget) in done:
            continue
        model = models[rival]
        if rival not in truths:
            truths[rival] = _cached_truth(
                data, rival, model, x_err, reference, targets(model)[0], settings, cache, log
            )
        truth = truths[rival]
        spec = _spec(method, budget, image, settings)
        extra: dict[str, Any] = {}
        if method == "fastshap":
            log(f"  training FastSHAP for {rival} on {data.name}")
            info = spec.prepare_for(
                model, data.X_train, background=reference, seed=settings.seed, cache_dir=cache
            )
            extra = {
                "training_seconds": info["training_seconds"],
                "training_evaluations": info["model_evaluations"],
            }
        log(f"  {data.name:<13} {rival:<17} {method}{f' ({budget} permutations)' if budget else ''}")
        row = _measure(
            spec,
            model,
            x_err,
            x_time,
            targets(model),
            reference,
            None if truth is None else truth[0],
            settings.seed,
        )
        row.update(dataset=data.name, model=rival, method=method, budget=budget, **extra)
        if truth is not None:
            row.update(truth=truth[1], truth_rel_se=truth[2])
        results.append(row)


def _plan(
    image: bool, budgets: Sequence[int], fastshap_deep: bool = True, rivals: Sequence[str] = RIVALS
) -> list[tuple[str, str, int]]:
    """``(model, method, budget)`` of every explanation measured on a dataset."""
    plan: list[tuple[str, str, int]] = []
    for rival in rivals:
        if rival == "mlp":
            plan += [(rival, "fastshap", 0)] + [(rival, "shapley_value_sampling", b) for b in budgets]
        else:
            plan.append((rival, "shapnet", 0))
    if (
        not image and fastshap_deep and "deep" in rivals
    ):  # FastSHAP against the built-in values on the same model
        plan.append(("deep", "fastshap", 0))
    return plan


def _spec(method: str, budget: int, image: bool, settings: RivalsSettings) -> MethodSpec:
    spec = get_method(method)
    if method == "fastshap" and image:
        return dataclasses.replace(spec, budget={**spec.budget, **settings.fastshap_image})
    if method == "shapley_value_sampling":
        return dataclasses.replace(spec, budget={"n_samples": budget})
    return spec


def _interleaved_timings(
    data: Any,
    models: dict[str, nn.Module],
    settings: RivalsSettings,
    results: ResultFile,
    timings: ResultFile,
    cache: Path,
    log: Callable[[str], None],
) -> None:
    """Time every explanation of ``data`` in ``settings.timing_rounds`` interleaved rounds (one call each per
    round, one thread), so that the shared machine's load changes affect them alike; keep the fastest,
    median and slowest round."""
    from .models import outputs, reference_row

    done = {timings.key_of(r) for r in timings.read()}
    measured = {results.key_of(r) for r in results.read()}  # time only what was measured (and trained)
    image = data.X_train.ndim == 4
    plan = [
        p
        for p in _plan(image, settings.budgets_images if image else settings.budgets)
        if (data.name, *p) not in done and (data.name, *p) in measured and p[0] in models
    ]
    if not plan:
        return
    x = torch.as_tensor(data.X_test[: settings.n_time_images if image else settings.n_time])
    reference = torch.as_tensor(reference_row(data.X_train))
    background = reference.unsqueeze(0)
    calls = []
    for rival, method, budget in plan:
        model = models[rival]
        spec = _spec(method, budget, image, settings)
        spec.prepare_for(model, data.X_train, background=reference, seed=settings.seed, cache_dir=cache)
        target = (
            torch.zeros(len(x), dtype=torch.long)
            if data.task == "regression"
            else torch.as_tensor(outputs(model, x).argmax(1))
        )
        calls.append(
            lambda spec=spec, model=model, target=target: spec(
                model, x, target, background=background, seed=settings.seed
            )
        )
    log(f"  {data.name}: timing {len(plan)} explanations in {settings.timing_rounds} interleaved rounds")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for call in calls:
            call()  # warm-up
        seconds: list[list[float]] = [[] for _ in calls]
        for _ in range(settings.timing_rounds):
            for i, call in enumerate(calls):
                tic = time.perf_counter()
                call()
                seconds[i].append((time.perf_counter() - tic) / len(x))
    finally:
        torch.set_num_threads(threads)
    for (rival, method, budget), times in zip(plan, seconds):
        timings.append(
            {
                "dataset": data.name,
                "model": rival,
                "method": method,
                "budget": budget,
                "rows": len(x),
                "rounds": len(times),
                "seconds_per_sample": statistics.median(times),
                "min_seconds_per_sample": min(times),
                "max_seconds_per_sample": max(times),
            }
        )


def _cached_truth(
    data: Any,
    rival: str,
    model: nn.Module,
    x: torch.Tensor,
    reference: torch.Tensor,
    target: torch.Tensor,
    settings: RivalsSettings,
    cache: Path,
    log: Callable[[str], None],
) -> tuple[np.ndarray, str, float] | None:
    image = x.dim() == 4
    if image and rival != "mlp":
        # 2 x 785 evaluations of a Vision ShapNet / HarsanyiNet per pair and row: out of this machine's reach.
        return None
    pairs = settings.truth_pairs_images if image else settings.truth_pairs
    path = cache / f"truth-{data.name}-{rival}-{settings.seed}-{len(x)}-{pairs}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return z["values"], str(z["kind"]), float(z["rel_se"])
    log(f"  true Shapley values of {rival} on {data.name} ({len(x)} rows)")
    values, kind, rel_se = _truth(model, x, reference, target, pairs, settings.seed)
    atomic_write(path, lambda fh: np.savez(fh, values=values, kind=np.array(kind), rel_se=np.float64(rel_se)))
    return values, kind, rel_se


def payback(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """FastSHAP's break-even against Shapley value sampling, per (dataset, explained model).

    The sampling budget that reaches FastSHAP's error is interpolated between the two measured budgets that
    bracket it (linear in log error vs log time and log evaluations). If every budget is more accurate than
    FastSHAP, the smallest (1 permutation) is used and the break-even is an upper bound; if none is, the
    largest is used and it is a lower bound.
    """
    out = []
    keys = dict.fromkeys((r["dataset"], r["model"]) for r in rows if r["method"] == "fastshap")
    for dataset, model in keys:
        fs = next(r for r in rows if (r["dataset"], r["model"], r["method"]) == (dataset, model, "fastshap"))
        svs = sorted(
            (
                r
                for r in rows
                if (r["dataset"], r["model"], r["method"]) == (dataset, model, "shapley_value_sampling")
            ),
            key=lambda r: r["budget"],
        )
        if not svs or fs.get("rel_l2") is None:
            continue
        target = fs["rel_l2"]
        bound = "interpolated"
        below = [r for r in svs if r["rel_l2"] <= target]
        if not below:
            match = dict(svs[-1])
            bound = f"lower bound: {svs[-1]['budget']} permutations are still less accurate"
        elif below[0] is svs[0]:
            match = dict(svs[0])
            bound = f"upper bound: {svs[0]['budget']} permutation(s) already as accurate"
        else:
            hi, lo = svs[svs.index(below[0]) - 1], below[0]  # hi: less accurate, lo: the first as accurate
            w = (math.log(target) - math.log(hi["rel_l2"])) / (
                math.log(lo["rel_l2"]) - math.log(hi["rel_l2"])
            )
            match = {
                k: math.exp(math.log(hi[k]) + w * (math.log(lo[k]) - math.log(hi[k])))
                for k in ("seconds_per_sample", "evaluations_per_sample", "budget")
            }
        gain_s = match["seconds_per_sample"] - fs["seconds_per_sample"]
        gain_e = match["evaluations_per_sample"] - fs["evaluations_per_sample"]
        out.append(
            {
                "dataset": dataset,
                "model": model,
                "fastshap_rel_l2": target,
                "fastshap_training_seconds": fs["training_seconds"],
                "fastshap_training_evaluations": fs["training_evaluations"],
                "fastshap_seconds_per_sample": fs["seconds_per_sample"],
                "sampling_permutations": match["budget"],
                "sampling_seconds_per_sample": match["seconds_per_sample"],
                "sampling_evaluations_per_sample": match["evaluations_per_sample"],
                "break_even_samples_time": fs["training_seconds"] / gain_s if gain_s > 0 else math.inf,
                "break_even_samples_evaluations": fs["training_evaluations"] / gain_e
                if gain_e > 0
                else math.inf,
                "match": bound,
            }
        )
    return out


# --------------------------------------------------------------------------- #
# ROAR / KAR
# --------------------------------------------------------------------------- #
def _roar(
    data: Any, rival: str, settings: RivalsSettings, out: Path, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """ROAR and KAR areas of ``rival``'s method and the random control (``run_roar``, resumable)."""
    from .roar import RoarSettings, run_roar

    config = _recipe(rival, data.name, settings.consistency)
    method: str | MethodSpec = "fastshap" if rival == "mlp" else "shapnet"
    if rival == "mlp" and data.X_train.ndim == 4:
        spec = get_method("fastshap")
        method = dataclasses.replace(spec, budget={**spec.budget, **settings.fastshap_image})
    roar_settings = RoarSettings(
        dataset=data,
        methods=[method, "random"],
        fractions=settings.fractions,
        repeats=settings.repeats,
        model=config,
        model_factory=_factory(rival, config, data),
        model_name=rival,
        seed=settings.seed,
        out=out / "roar" / f"{data.name}-{rival}",
        n_jobs=1,
        progress=settings.progress,
    )
    result = run_roar(roar_settings, log=log)
    rows = []
    for rec in result.summary.to_dict("records"):
        rows.append(
            {
                "dataset": data.name,
                "model": rival,
                "method": rec["method"],
                "mode": rec["mode"],
                "area": rec["area"],
                "metric": result.metric,
                "unsupported": result.unsupported.get(rec["method"]),
            }
        )
    for name, reason in result.unsupported.items():
        rows.append(
            {
                "dataset": data.name,
                "model": rival,
                "method": name,
                "mode": "",
                "area": None,
                "metric": result.metric,
                "unsupported": reason,
            }
        )
    return rows


def _with_earlier_models(
    path: Path, models_meta: list[dict[str, Any]], datasets: Sequence[str]
) -> list[dict[str, Any]]:
    """``models_meta`` plus the records in ``path`` of the models this run did not load, in the order of
    ``datasets`` (others last), then of :data:`RIVALS`.

    A run that only reports, or that covers some datasets, must not drop the training records of the
    others (their cached models may be gone: the records are the measurement).
    """
    import pandas as pd

    if not path.exists():
        return models_meta
    here = {(m["dataset"], m["model"]) for m in models_meta}
    earlier = [
        {k: v for k, v in rec.items() if not (isinstance(v, float) and np.isnan(v))}
        for rec in pd.read_csv(path, dtype={"weights_hash": str}).to_dict("records")
        if (rec["dataset"], rec["model"]) not in here
    ]
    order = {name: i for i, name in enumerate(datasets)}
    return sorted(
        models_meta + earlier,
        key=lambda m: (
            order.get(m["dataset"], len(order)),
            RIVALS.index(m["model"]),
        ),
    )


def _finished_areas(out: Path, datasets: Sequence[str]) -> list[dict[str, Any]]:
    """ROAR / KAR areas from the ``summary.csv`` of every finished ROAR run under ``out/roar``."""
    import pandas as pd

    rows = []
    for dataset in datasets:
        for rival in RIVALS:
            path = out / "roar" / f"{dataset}-{rival}" / "summary.csv"
            if not path.exists():
                continue
            for rec in pd.read_csv(path).to_dict("records"):
                rows.append(
                    {
                        "dataset": dataset,
                        "model": rival,
                        "method": rec["method"],
                        "mode": rec["mode"],
                        "area": rec["area"],
                        "metric": "",
                        "unsupported": None,
                    }
                )
    return rows


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #
def _tables(models: list[dict], rows: list[dict], pay: list[dict], areas: list[dict]) -> str:
    def area(dataset: str, model: str, method: str, mode: str) -> float | None:
        hit = [
            a["area"]
            for a in areas
            if (a["dataset"], a["model"], a["method"], a["mode"]) == (dataset, model, method, mode)
        ]
        return hit[0] if hit else None

    main_rows = []
    for r in rows:
        if r["method"] == "shapley_value_sampling" and r["budget"] != max(
            x["budget"] for x in rows if x["dataset"] == r["dataset"]
        ):
            continue
        meta = next((m for m in models if (m["dataset"], m["model"]) == (r["dataset"], r["model"])), {})
        method = (
            "built-in"
            if r["method"] == "shapnet"
            else r["method"] + (f" ({r['budget']} perm.)" if r["budget"] else "")
        )
        # The method ROAR ranked this model's features with (the built-in values, FastSHAP for the MLP).
        in_roar = (r["method"] == "shapnet") or (r["method"], r["model"]) == ("fastshap", "mlp")
        roar_method = r["method"] if in_roar else None
        main_rows.append(
            {
                "dataset": r["dataset"],
                "model": r["model"],
                "explanation": method,
                "test score": meta.get("score"),
                "train s": meta.get("training_seconds"),
                "explainer train s": r.get("training_seconds"),
                "explain ms/sample": 1e3 * r["seconds_per_sample"],
                "evals/sample": r["evaluations_per_sample"],
                "rel. L2 error": r.get("rel_l2"),
                "Spearman": r.get("spearman"),
                "ROAR area": area(r["dataset"], r["model"], roar_method, "roar") if roar_method else None,
                "ROAR random": area(r["dataset"], r["model"], "random", "roar") if roar_method else None,
                "KAR area": area(r["dataset"], r["model"], roar_method, "kar") if roar_method else None,
                "KAR random": area(r["dataset"], r["model"], "random", "kar") if roar_method else None,
            }
        )
    text = ["## Rivals\n", format_table(main_rows)]
    if pay:
        text += ["\n## FastSHAP break-even against Shapley value sampling\n", format_table(pay)]
    truths = {(r["dataset"], r.get("truth"), r.get("truth_rel_se")) for r in rows if r.get("truth")}
    if truths:
        text += [
            "\n## Ground truth\n",
            format_table(
                [{"dataset": d, "truth": t, "relative std. error": s} for d, t, s in sorted(truths, key=str)]
            ),
        ]
    return "\n".join(text) + "\n"


def _plot(rows: list[dict], areas: list[dict], path: Path) -> None:
    with figure(path, 1, 2, figsize=(12, 4.8)) as (_, (left, right)):
        markers = dict(zip(DATASETS, "osD^v"))
        colors = {
            "deep/shapnet": "tab:blue",
            "deep_consistency/shapnet": "tab:cyan",
            "harsanyi/shapnet": "tab:red",
            "mlp/fastshap": "tab:green",
            "deep/fastshap": "tab:olive",
            "mlp/shapley_value_sampling": "tab:gray",
            "deep/shapley_value_sampling": "silver",
        }
        for r in rows:
            if r.get("rel_l2") is None:
                continue
            key = f"{r['model']}/{r['method']}"
            left.scatter(
                r["seconds_per_sample"],
                max(r["rel_l2"], 1e-8),
                marker=markers.get(r["dataset"], "o"),
                color=colors.get(key, "black"),
                s=25,
                label=key,
            )
        handles = {}
        for h, lab in zip(*left.get_legend_handles_labels()):
            handles.setdefault(lab, h)
        left.legend(handles.values(), handles.keys(), fontsize=7)
        left.set(
            xscale="log",
            yscale="log",
            xlabel="seconds per explained sample (1 thread)",
            ylabel="relative L2 error vs true Shapley values",
            title="error vs cost (marker: dataset)",
        )
        left.grid(alpha=0.3)
        pairs = [
            (a["dataset"], a["model"], a["method"])
            for a in areas
            if a["method"] != "random" and a["mode"] == "roar" and a["area"] is not None
        ]
        labels, gaps_roar, gaps_kar = [], [], []
        for dataset, model, method in pairs:
            get = {
                (a["method"], a["mode"]): a["area"]
                for a in areas
                if (a["dataset"], a["model"]) == (dataset, model)
            }
            labels.append(f"{dataset}\n{model}")
            gaps_roar.append(get.get(("random", "roar"), np.nan) - get.get((method, "roar"), np.nan))
            gaps_kar.append(get.get((method, "kar"), np.nan) - get.get(("random", "kar"), np.nan))
        xs = np.arange(len(labels))
        right.bar(xs - 0.2, gaps_roar, 0.4, label="ROAR: random area - method area")
        right.bar(xs + 0.2, gaps_kar, 0.4, label="KAR: method area - random area")
        right.set_xticks(xs, labels, fontsize=6, rotation=90)
        right.axhline(0, color="black", lw=0.8)
        right.set(ylabel="area gain over random (higher is better)", title="ROAR / KAR")
        right.legend(fontsize=7)


def run_rivals(settings: RivalsSettings, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the comparison and write its outputs into ``settings.out``."""
    out = prepare_out(settings.out)
    cache = prepare_out(out / "cache")
    results = ResultFile(
        out / "explanations.csv",
        EXPLANATION_COLUMNS,
        key=("dataset", "model", "method", "budget"),
        what="rivals explanations",
    )
    timings = ResultFile(
        out / "timings.csv",
        TIMING_COLUMNS,
        key=("dataset", "model", "method", "budget"),
        what="rivals timings",
    )
    models_meta: list[dict[str, Any]] = []
    areas: list[dict[str, Any]] = []
    tic = time.perf_counter()
    for name in settings.datasets:
        data = _load(name, settings)
        log(
            f"{name}: {len(data.X_train)} train, {len(data.X_test)} test rows, "
            f"input {tuple(data.X_train.shape[1:])}"
        )
        models = {}
        here = RIVALS if data.X_train.ndim == 2 else [r for r in RIVALS if r in settings.image_models]
        for rival in here:
            meta_path = cache / f"model-{data.name}-{rival}-{settings.seed}.json"
            if settings.explanations or settings.timing_rounds:
                models[rival], meta = _trained(rival, data, settings, cache, log)
                models_meta.append(meta)
            elif meta_path.exists():  # ROAR only: run_roar trains its own copy; the report needs the record
                models_meta.append(json.loads(meta_path.read_text()))
        if settings.explanations:
            _explanations(data, models, settings, results, cache, log)
        if settings.timing_rounds:
            _interleaved_timings(data, models, settings, results, timings, cache, log)
        if settings.roar:
            for rival in (
                RIVALS if data.X_train.ndim == 2 else [r for r in settings.roar_image_models if r in here]
            ):
                areas += _roar(data, rival, settings, out, log)
            write_csv(out / "roar_areas.csv", areas)
    # The report covers every dataset measured into this folder, not only this run's: a partial run (one
    # dataset, or ROAR only) must not drop the other datasets' rows from the tables and files.
    measured = {r["dataset"] for r in results.read()}
    reported = [
        d
        for d in dict.fromkeys([*DATASETS, *settings.datasets])
        if d in settings.datasets or d in measured or any((out / "roar").glob(f"{d}-*"))
    ]
    ran = {a["dataset"] for a in areas}  # this run's ROAR areas (with their reasons for unsupported methods)
    areas += _finished_areas(out, [d for d in reported if d not in ran])  # earlier or still running ones
    write_csv(out / "roar_areas.csv", areas)
    rows = [dict(r) for r in results.read() if r["dataset"] in reported]
    interleaved = {timings.key_of(t): t for t in timings.read()}
    for r in rows:
        r.pop("line", None)
        # The interleaved timing replaces the one taken while measuring the error (one method at a time). Its
        # minimum, not its median: on a machine shared by many jobs a call of a few ms is often descheduled
        # for 10-100 ms, and the fastest round is the one closest to the method's own cost.
        t = interleaved.get(results.key_of(r))
        if t is not None:
            r["seconds_per_sample"] = t["min_seconds_per_sample"]
            r["timing"] = f"fastest of {t['rounds']} interleaved rounds"
        else:
            r["timing"] = "median of 3 consecutive calls"
    pay = payback(rows)
    models_meta = _with_earlier_models(out / "models.csv", models_meta, reported)
    write_csv(out / "models.csv", [{k: v for k, v in m.items() if k != "config"} for m in models_meta])
    write_csv(out / "payback.csv", pay)
    tables = _tables(models_meta, rows, pay, areas)
    atomic_write(out / "rivals.md", tables)
    _plot(rows, areas, out / "rivals.png")
    payload = {
        "benchmark": "rivals",
        "settings": settings.to_dict(),
        "machine": machine_info(),
        "models": models_meta,
        "explanations": rows,
        "payback": pay,
        "roar_areas": areas,
        "wall_seconds": time.perf_counter() - tic,
    }
    write_json(out / "rivals.json", payload)
    log("\n" + tables)
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks rivals", description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=comma_separated(str), default=list(DATASETS))
    parser.add_argument(
        "--data-dir", default=None, help="data root for yeast and mnist (default $SHAPNET_DATA)"
    )
    parser.add_argument("--out", default="results/rivals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--consistency", type=float, default=1.0, help="consistency-loss weight of deep_consistency"
    )
    parser.add_argument(
        "--n-explain", type=int, default=32, help="test rows compared with the truth (tables)"
    )
    parser.add_argument("--n-explain-images", type=int, default=8, help="the same for MNIST (the MLP only)")
    parser.add_argument("--n-time", type=int, default=32, help="rows per timed call")
    parser.add_argument(
        "--truth-pairs", type=int, default=128, help="antithetic permutation pairs when F > 20"
    )
    parser.add_argument(
        "--budgets",
        type=comma_separated(int, minimum=1),
        default=[1, 4, 16, 64],
        help="permutations of Shapley value sampling (FastSHAP's break-even)",
    )
    parser.add_argument("--mnist-train", type=int, default=2000)
    parser.add_argument("--mnist-test", type=int, default=500)
    parser.add_argument("--fractions", type=comma_separated(float), default=[0.3, 0.7])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-roar", action="store_true", help="skip ROAR / KAR")
    parser.add_argument(
        "--no-explanations",
        action="store_true",
        help="skip the explanation measurements (only ROAR / KAR and the report)",
    )
    parser.add_argument(
        "--image-models",
        type=comma_separated(str),
        default=list(RIVALS),
        help="models trained and explained on images",
    )
    parser.add_argument(
        "--roar-image-models",
        type=comma_separated(str),
        default=["mlp"],
        help="models retrained by ROAR / KAR on images (each run retrains 1 + 4 x fractions models)",
    )
    parser.add_argument(
        "--fastshap-deep",
        type=comma_separated(str),
        default=None,
        help="tabular datasets on which FastSHAP also explains the Deep ShapNet (default: all)",
    )
    parser.add_argument("--timing-rounds", type=int, default=7, help="interleaved timing rounds (0: skip)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    def run() -> str:
        settings = RivalsSettings(
            datasets=args.datasets,
            data_dir=args.data_dir,
            out=args.out,
            seed=args.seed,
            consistency=args.consistency,
            n_explain=args.n_explain,
            n_explain_images=args.n_explain_images,
            n_time=args.n_time,
            truth_pairs=args.truth_pairs,
            budgets=args.budgets,
            mnist_train=args.mnist_train,
            mnist_test=args.mnist_test,
            fractions=args.fractions,
            repeats=args.repeats,
            roar=not args.no_roar,
            explanations=not args.no_explanations,
            timing_rounds=args.timing_rounds,
            fastshap_deep=args.fastshap_deep,
            image_models=args.image_models,
            roar_image_models=args.roar_image_models,
            progress=not args.no_progress,
        )
        run_rivals(settings)
        return f"{settings.out}/rivals.md, rivals.json, rivals.png, explanations.csv, payback.csv"

    return exit_status(run)


if __name__ == "__main__":
    raise SystemExit(main())
