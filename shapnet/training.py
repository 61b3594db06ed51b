"""A short, resumable training recipe for any ShapNet, and its command line.

:func:`fit` trains with AdamW, an optional per-batch cosine learning-rate schedule, and the explanation
penalties of DESIGN §6 (L1 / L-infinity on the Shapley values, and the Shapley-consistency loss of
:mod:`shapnet.consistency`), all computed from the same explained forward pass as the prediction.
With ``checkpoint=path`` it saves the model, optimizer, scheduler, RNG states and history at the end of
every epoch (atomically, through :func:`shapnet.save`); calling it again with the same path continues
from the last finished epoch and ends exactly where an uninterrupted run would.

Command line (writes ``result.json``, ``checkpoint.pt`` and ``model.pt`` into ``--out``)::

    python -m shapnet.training --dataset mnist --data-dir /work/shared/data --epochs 3 --threads 1 \\
        --eval-test-every-epoch --out results/mnist/default_e3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .io import load_checkpoint, save
from .models import ShapNet, Stage
from .regularizers import explanation_penalty

__all__ = ["TrainResult", "fit", "evaluate", "training_loss", "DIGITS_STAGES", "MNIST_STAGES", "main"]

Task = Literal["classification", "regression"]

#: Stages for the 8x8 sklearn digits: 2x2 windows at dilations 1, 2, 4 cover the whole image.
DIGITS_STAGES = (
    Stage(16, kernel_size=2, dilation=1, hidden=(32,)),
    Stage(32, kernel_size=2, dilation=2, hidden=(32,)),
    Stage(32, kernel_size=2, dilation=4, hidden=(32,), split=16),
)

#: Stages used by the command line for MNIST (see the README, "MNIST", for how they were chosen).
MNIST_STAGES: tuple[Stage, ...] | None = None  # None: shapnet.models.DEFAULT_STAGES


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes:
        model: the trained model (the object passed in, trained in place), in eval mode.
        history: one dict per finished epoch, also those of earlier (resumed) calls: ``epoch`` (1-based),
            ``loss`` (mean training objective, penalties included), ``train_acc`` / ``val_acc`` for
            classification or ``train_r2`` / ``val_r2`` for regression (``val_*`` None without
            validation data; ``train_*`` is measured on the fly during the epoch), ``lr`` (at the
            epoch's end) and ``seconds`` (wall time of the epoch, validation included).
        resumed_from: epochs already finished in the checkpoint when this call started (0 if fresh).
    """

    model: ShapNet
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int = 0

    @property
    def epochs(self) -> int:
        """Finished epochs."""
        return len(self.history)

    @property
    def seconds(self) -> float:
        """Training wall time summed over every epoch, across resumed calls."""
        return float(sum(row["seconds"] for row in self.history))


# --------------------------------------------------------------------------- #
# Loss
# --------------------------------------------------------------------------- #
def _check_nonnegative(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return float(value)


def _check_regularization(
    l1: float, linf: float, reg_layers: str, consistency: float, n_coalitions: int
) -> tuple[float, float, float]:
    if reg_layers not in ("last", "all"):
        raise ValueError(f"reg_layers must be 'last' or 'all', got {reg_layers!r}.")
    if isinstance(n_coalitions, bool) or not isinstance(n_coalitions, (int, np.integer)) or n_coalitions < 1:
        raise ValueError(f"n_coalitions must be a positive int, got {n_coalitions!r}.")
    return (
        _check_nonnegative(l1, "l1"),
        _check_nonnegative(linf, "linf"),
        _check_nonnegative(consistency, "consistency"),
    )


def training_loss(
    model: ShapNet,
    x: torch.Tensor,
    y: torch.Tensor,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    l1: float = 0.0,
    linf: float = 0.0,
    reg_layers: Literal["last", "all"] = "last",
    consistency: float = 0.0,
    n_coalitions: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training objective: ``criterion(logits, y)`` plus the weighted explanation penalties.

    Everything comes from one explained forward pass (``model.explain``), whose predictions are the
    logits. With ``consistency > 0`` that pass also covers the ``B * n_coalitions`` masked inputs and the
    reference that :func:`shapnet.consistency.shapley_consistency` needs (built by
    :func:`~shapnet.consistency.consistency_inputs`, scored by :func:`~shapnet.consistency.consistency_loss`).

    Args:
        model: a ShapNet.
        x: ``(B, *input_shape)``.
        y: targets as ``criterion`` expects them (``(B,)`` class indices, or ``(B, K)`` for regression).
        criterion: e.g. ``nn.CrossEntropyLoss()``.
        l1: weight of :func:`shapnet.regularizers.l1_penalty` (sparse explanations).
        linf: weight of :func:`shapnet.regularizers.linf_penalty` (importance spread over features).
        reg_layers: penalise the last layer's values or every layer's representation.
        consistency: weight of the Shapley-consistency loss (0 disables it, and it is not imported).
        n_coalitions: coalitions sampled per sample for the consistency loss.

    Returns:
        ``(loss, logits)``: a scalar and ``(B, K)``.
    """
    layers = reg_layers == "all" and (l1 > 0 or linf > 0)
    consistency_term = None
    if consistency > 0:
        from .consistency import consistency_inputs, consistency_loss  # imported only when asked for

        # The masked inputs x_S and the reference ride along in the same explained forward as the batch:
        # one call, the same numbers as shapley_consistency(model, x, values) (same RNG draws).
        extra, mask = consistency_inputs(model, x, n_coalitions=n_coalitions)
        full = model.explain(torch.cat([x, extra]), layers=layers)
        explanation = full[: x.shape[0]]
        consistency_term = consistency_loss(full.predictions[x.shape[0] :], explanation.values, mask)
    else:
        explanation = model.explain(x, layers=layers)
    logits = explanation.predictions
    loss = criterion(logits, y)
    if l1 > 0:
        loss = loss + l1 * explanation_penalty(explanation, "l1", layers=reg_layers)
    if linf > 0:
        loss = loss + linf * explanation_penalty(explanation, "linf", layers=reg_layers)
    if consistency_term is not None:
        loss = loss + consistency * consistency_term
    return loss, logits


# --------------------------------------------------------------------------- #
# Data helpers
# --------------------------------------------------------------------------- #
def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    param = next(model.parameters(), None)
    if param is None:
        return torch.get_default_dtype(), torch.device("cpu")
    return param.dtype, param.device


def _as_xy(
    X: object, y: object, task: Task, dtype: torch.dtype, name: str = "X"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert ``X`` (numpy or tensor, ``(N, *input_shape)``) and ``y`` (``(N,)``) to CPU tensors."""
    if not isinstance(X, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{name} must be a numpy array or a torch.Tensor, got {type(X).__name__}.")
    X_t = torch.as_tensor(np.asarray(X) if isinstance(X, np.ndarray) else X).detach().cpu()
    if not (X_t.is_floating_point() or X_t.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise TypeError(f"{name} must hold numbers, got dtype {X_t.dtype}.")
    X_t = X_t.to(dtype)
    y_name = "y" + name[1:]
    if not isinstance(y, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{y_name} must be a numpy array or a torch.Tensor, got {type(y).__name__}.")
    y_t = torch.as_tensor(np.asarray(y) if isinstance(y, np.ndarray) else y).detach().cpu()
    if y_t.dim() != 1 or y_t.shape[0] != X_t.shape[0]:
        raise ValueError(
            f"{y_name} must have shape (N,) with N = len({name}) = {X_t.shape[0]}, got {tuple(y_t.shape)}."
        )
    if task == "classification":
        if y_t.is_floating_point() and not bool((y_t == y_t.round()).all()):
            raise ValueError(f"{y_name} must hold integer class indices for classification, got non-integer values.")
        y_t = y_t.long()
    else:
        y_t = y_t.to(dtype)
    return X_t, y_t


def _score(logits: torch.Tensor, y: torch.Tensor, task: Task) -> float:
    """Accuracy (classification) or R² (regression) of ``(N, K)`` logits."""
    if task == "classification":
        return float((logits.argmax(1) == y).double().mean())
    pred, y = logits[:, 0].double(), y.double()
    total = float(((y - y.mean()) ** 2).sum())
    residual = float(((y - pred) ** 2).sum())
    return 1.0 - residual / total if total > 0 else float("nan")


@torch.no_grad()
def _predict(model: ShapNet, X: torch.Tensor, batch_size: int) -> torch.Tensor:
    dtype, device = _model_dtype_device(model)
    was_training = model.training
    model.eval()
    try:
        out = [model(X[i : i + batch_size].to(device=device, dtype=dtype)).cpu() for i in range(0, len(X), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, model.n_outputs)


def evaluate(
    model: ShapNet, X: object, y: object, batch_size: int = 512, *, task: Task = "classification"
) -> float:
    """Accuracy (classification) or R² (regression) of ``model`` on ``(X, y)``.

    Args:
        model: a ShapNet.
        X: ``(N, *input_shape)`` array or tensor.
        y: ``(N,)`` class indices (or float targets for regression).
        batch_size: rows per forward pass (memory only; the result does not depend on it).
    """
    _check_task(task)
    dtype, _ = _model_dtype_device(model)
    X_t, y_t = _as_xy(X, y, task, dtype)
    return _score(_predict(model, X_t, _check_batch_size(batch_size)), y_t, task)


def _check_task(task: object) -> None:
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}.")


def _check_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    return int(batch_size)


# --------------------------------------------------------------------------- #
# Training
# --------------------------------------------------------------------------- #
def _cosine(total_steps: int) -> Callable[[int], float]:
    # Per batch, from 1 down to 0 at the last step: smooth even for runs of a few epochs.
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))


def fit(
    model: ShapNet,
    X_train: object,
    y_train: object,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    l1: float = 0.0,
    linf: float = 0.0,
    reg_layers: Literal["last", "all"] = "last",
    consistency: float = 0.0,
    n_coalitions: int = 1,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    seed: int = 0,
    X_val: object = None,
    y_val: object = None,
    task: Task = "classification",
    lr_schedule: Literal["cosine"] | None = "cosine",
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place with AdamW, explanation penalties and per-epoch checkpoints.

    Shuffling uses a dedicated ``torch.Generator`` seeded with ``seed``; the global torch RNG (used by
    the consistency loss to sample coalitions) is seeded with ``seed`` inside ``torch.random.fork_rng``,
    so the caller's RNG state is left untouched. Both RNG states are checkpointed, which makes a resumed
    run bit-identical to an uninterrupted one. Initialise the model's weights yourself (e.g. under
    ``torch.manual_seed``) before calling.

    Args:
        model: any ShapNet (its parameters' dtype and device are used for the data).
        X_train: ``(N, *input_shape)``, numpy or tensor.
        y_train: ``(N,)``: class indices (classification) or targets (regression).
        epochs: total epochs of the run (resumed epochs count).
        batch_size: rows per step (the last batch of an epoch may be smaller).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW's decoupled weight decay.
        l1, linf, reg_layers, consistency, n_coalitions: see :func:`training_loss`.
        checkpoint: file written (atomically) at the end of every epoch with :func:`shapnet.save`;
            ``extra`` holds ``epoch``, ``epochs``, ``optimizer``, ``scheduler``, ``rng``, ``history`` and
            ``settings``. None: no checkpointing.
        resume: continue from ``checkpoint`` if it exists (it must come from the same model config and
            settings; ``epochs`` may differ, which changes the cosine schedule's remaining steps);
            False starts afresh and overwrites it.
        progress: show a tqdm bar over batches (epoch and running loss in the postfix).
        seed: seeds shuffling and the global torch RNG used during training.
        X_val, y_val: optional validation data, evaluated after every epoch.
        task: ``"classification"`` (cross-entropy) or ``"regression"`` (MSE on ``K = 1`` output).
        lr_schedule: ``"cosine"`` (per batch, from ``lr`` to 0 over ``epochs``) or None (constant).
        callback: called with each epoch's history row after its checkpoint is written; raising from it
            interrupts training (the checkpoint is already safe).

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: on bad options, mismatched data, or a checkpoint from another model or settings.
    """
    from tqdm.auto import tqdm

    if not isinstance(model, ShapNet):
        raise TypeError(f"model must be a ShapNet (e.g. shapnet.VisionShapNet), got {type(model).__name__}.")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}.")
    batch_size = _check_batch_size(batch_size)
    _check_task(task)
    if lr_schedule not in ("cosine", None):
        raise ValueError(f"lr_schedule must be 'cosine' or None, got {lr_schedule!r}.")
    lr = _check_nonnegative(lr, "lr")
    weight_decay = _check_nonnegative(weight_decay, "weight_decay")
    l1, linf, consistency = _check_regularization(l1, linf, reg_layers, consistency, n_coalitions)
    if task == "regression" and model.n_outputs != 1:
        raise ValueError(f"task='regression' needs a model with n_outputs=1, got {model.n_outputs}.")
    if (X_val is None) != (y_val is None):
        raise ValueError("pass both X_val and y_val, or neither.")

    dtype, device = _model_dtype_device(model)
    X, y = _as_xy(X_train, y_train, task, dtype, "X_train")
    if len(X) == 0:
        raise ValueError("X_train is empty: expected at least 1 sample.")
    if task == "classification" and (int(y.min()) < 0 or int(y.max()) >= model.n_outputs):
        raise ValueError(
            f"y_train must hold class indices in [0, {model.n_outputs}) for a model with {model.n_outputs} "
            f"outputs, got values in [{int(y.min())}, {int(y.max())}]."
        )
    val = None if X_val is None else _as_xy(X_val, y_val, task, dtype, "X_val")
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = (
        nn.CrossEntropyLoss() if task == "classification" else nn.MSELoss()
    )
    metric = "acc" if task == "classification" else "r2"

    n = len(X)
    steps_per_epoch = math.ceil(n / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine(epochs * steps_per_epoch))
        if lr_schedule == "cosine" else None
    )
    settings = {
        "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "l1": l1, "linf": linf,
        "reg_layers": reg_layers, "consistency": consistency, "n_coalitions": int(n_coalitions),
        "seed": int(seed), "task": task, "lr_schedule": lr_schedule, "n_train": n,
    }
    shuffle = torch.Generator().manual_seed(int(seed))
    history: list[dict[str, Any]] = []
    start = 0
    saved_rng: torch.Tensor | None = None
    if checkpoint is not None and resume and os.path.exists(checkpoint):
        payload = load_checkpoint(checkpoint, map_location=device)
        start, history, saved_rng = _restore(payload, model, optimizer, scheduler, shuffle, settings, checkpoint)
    result = TrainResult(model, history, resumed_from=start)
    if start >= epochs:
        model.eval()
        return result

    with torch.random.fork_rng(devices=[]):
        if saved_rng is None:
            torch.manual_seed(int(seed))
        else:
            torch.set_rng_state(saved_rng)
        bar = tqdm(
            total=epochs * steps_per_epoch, initial=start * steps_per_epoch, disable=not progress,
            unit="batch", dynamic_ncols=True, desc="train",
        )
        try:
            for epoch in range(start, epochs):
                tic = time.perf_counter()
                model.train()
                order = torch.randperm(n, generator=shuffle)
                loss_sum, correct = 0.0, 0.0
                for step in range(steps_per_epoch):
                    idx = order[step * batch_size : (step + 1) * batch_size]
                    xb = X[idx].to(device, non_blocking=True)
                    yb = y[idx].to(device, non_blocking=True)
                    target = yb if task == "classification" else yb.unsqueeze(1)
                    loss, logits = training_loss(
                        model, xb, target, criterion, l1=l1, linf=linf, reg_layers=reg_layers,
                        consistency=consistency, n_coalitions=int(n_coalitions),
                    )
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"the training loss became {float(loss)} at epoch {epoch + 1}, step {step + 1}; "
                            "lower lr or the penalty weights."
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    if scheduler is not None:
                        scheduler.step()
                    loss_sum += float(loss.detach()) * len(idx)
                    with torch.no_grad():
                        if task == "classification":
                            correct += float((logits.argmax(1) == yb).sum())
                        else:
                            correct += float(((logits[:, 0] - yb) ** 2).sum())  # squared error, for R²
                    bar.update(1)
                    running = loss_sum / min(n, (step + 1) * batch_size)
                    bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{running:.4f}")
                if task == "classification":
                    train_score = correct / n
                else:
                    total = float(((y.double() - y.double().mean()) ** 2).sum())
                    train_score = 1.0 - correct / total if total > 0 else float("nan")
                val_score = None if val is None else _score(_predict(model, val[0], max(batch_size, 256)), val[1], task)
                row = {
                    "epoch": epoch + 1,
                    "loss": loss_sum / n,
                    f"train_{metric}": train_score,
                    f"val_{metric}": val_score,
                    "lr": optimizer.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - tic,
                }
                history.append(row)
                if checkpoint is not None:
                    save(model, checkpoint, extra={
                        "epoch": epoch + 1,
                        "epochs": int(epochs),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": None if scheduler is None else scheduler.state_dict(),
                        "rng": {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()},
                        "history": history,
                        "settings": settings,
                    })
                if callback is not None:
                    callback(dict(row))
        finally:
            bar.close()
    model.eval()
    return result


def _restore(
    payload: dict[str, Any],
    model: ShapNet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    shuffle: torch.Generator,
    settings: dict[str, Any],
    path: str | os.PathLike,
) -> tuple[int, list[dict[str, Any]], torch.Tensor]:
    """Load a checkpoint's training state into the given objects; returns ``(epoch, history, rng)``."""
    where = os.fspath(path)
    if payload["class"] != type(model).__name__ or payload["config"] != model.config:
        raise ValueError(
            f"checkpoint {where!r} holds a {payload['class']} with config {payload['config']}, but the model "
            f"passed is a {type(model).__name__} with config {model.config}. Pass the same model, another "
            "checkpoint path, or resume=False to start afresh."
        )
    extra = payload["extra"]
    needed = {"epoch", "optimizer", "scheduler", "rng", "history", "settings"}
    if not needed <= set(extra):
        raise ValueError(
            f"checkpoint {where!r} has no training state (extra keys {sorted(extra)}; expected {sorted(needed)}): "
            "it was not written by shapnet.training.fit. Use another path or resume=False."
        )
    changed = {k: (extra["settings"].get(k), v) for k, v in settings.items() if extra["settings"].get(k) != v}
    if changed:
        diff = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ValueError(
            f"checkpoint {where!r} was trained with other settings ({diff}); resuming would mix two runs. "
            "Pass the same settings, another checkpoint path, or resume=False."
        )
    model.load_state_dict(payload["state_dict"])
    optimizer.load_state_dict(extra["optimizer"])
    if scheduler is not None:
        if extra["scheduler"] is None:
            raise ValueError(f"checkpoint {where!r} was trained without an lr schedule.")  # pragma: no cover
        # The step counter comes from the checkpoint, the schedule's length from this call (``epochs``
        # may have changed): set the current lr from the new schedule (identical if epochs is unchanged).
        scheduler.load_state_dict(extra["scheduler"])
        for group, base_lr, schedule in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base_lr * schedule(scheduler.last_epoch)
    shuffle.set_state(extra["rng"]["shuffle"])
    return int(extra["epoch"]), list(extra["history"]), extra["rng"]["torch"]


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #
def _parse_stages(text: str | None) -> list[Stage] | None:
    if text is None:
        return None
    try:
        raw = json.loads(text)
        stages = [Stage(**{**s, "hidden": tuple(s.get("hidden", (32,)))}) for s in raw]
    except (json.JSONDecodeError, TypeError, AttributeError) as err:
        raise SystemExit(
            f"--stages must be a JSON list of Stage fields, e.g. "
            f"'[{{\"out_channels\": 16, \"dilation\": 1, \"hidden\": [32]}}]', got {text!r}: {err}"
        ) from err
    return stages


def _build_model(dataset: Any, args: argparse.Namespace) -> ShapNet:
    from .models import DeepShapNet, VisionShapNet

    if dataset.image_shape is not None:
        channels, height, width = dataset.image_shape
        stages = _parse_stages(args.stages)
        if stages is None:
            stages = DIGITS_STAGES if dataset.name == "digits" else MNIST_STAGES
        kwargs: dict[str, Any] = {"image_size": (height, width), "prune": args.prune}
        if stages is not None:
            kwargs["stages"] = stages
        if args.readout_hidden is not None:
            kwargs["readout_hidden"] = tuple(args.readout_hidden)
        return VisionShapNet(channels, dataset.n_classes, **kwargs)
    return DeepShapNet(dataset.n_features, dataset.n_classes, prune=args.prune)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m shapnet.training",
        description="Train a ShapNet (VisionShapNet for image datasets, DeepShapNet for tabular ones), "
        "resumably, and write result.json (test accuracy, wall time), checkpoint.pt and model.pt to --out.",
    )
    p.add_argument("--dataset", required=True, help="a shapnet.datasets name, e.g. mnist, digits, wine")
    p.add_argument("--data-dir", default=None, help="data root (default: $SHAPNET_DATA)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--lr-schedule", choices=["cosine", "none"], default="cosine")
    p.add_argument("--l1", type=float, default=0.0)
    p.add_argument("--linf", type=float, default=0.0)
    p.add_argument("--reg-layers", choices=["last", "all"], default="last")
    p.add_argument("--consistency", type=float, default=0.0)
    p.add_argument("--n-coalitions", type=int, default=1)
    p.add_argument("--prune", type=float, default=None, help="fraction of features pruned per layer")
    p.add_argument("--stages", default=None, help="JSON list of Stage fields (image datasets)")
    p.add_argument("--readout-hidden", type=int, nargs="*", default=None)
    p.add_argument("--max-train", type=int, default=None, help="train on a random subset of this size")
    p.add_argument("--eval-test-every-epoch", action="store_true",
                   help="evaluate the test set after every epoch (recorded as val_*; monitoring only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument("--progress", choices=["auto", "bar", "none"], default="auto",
                   help="tqdm bar (auto: only on a terminal); one line per epoch is always printed")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the command line; returns the result written to ``--out/result.json``."""
    from .datasets import load_dataset

    args = _parser().parse_args(argv)
    wall, cpu = time.perf_counter(), time.process_time()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    ds = load_dataset(args.dataset, args.data_dir, random_state=args.seed, max_train=args.max_train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)  # the weights' initialisation
        model = _build_model(ds, args)
    checkpoint = os.path.join(args.out, "checkpoint.pt")
    progress = sys.stderr.isatty() if args.progress == "auto" else args.progress == "bar"

    def report(row: dict[str, Any]) -> None:
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}), flush=True)

    result = fit(
        model, ds.X_train, ds.y_train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, l1=args.l1, linf=args.linf, reg_layers=args.reg_layers,
        consistency=args.consistency, n_coalitions=args.n_coalitions, checkpoint=checkpoint,
        resume=not args.no_resume, progress=progress, seed=args.seed, task=ds.task,
        lr_schedule=None if args.lr_schedule == "none" else "cosine", callback=report,
        X_val=ds.X_test if args.eval_test_every_epoch else None,
        y_val=ds.y_test if args.eval_test_every_epoch else None,
    )
    tic = time.perf_counter()
    test_score = evaluate(model, ds.X_test, ds.y_test, 512, task=ds.task)
    test_seconds = time.perf_counter() - tic
    save(model, os.path.join(args.out, "model.pt"))
    metric = "accuracy" if ds.task == "classification" else "r2"
    out = {
        "dataset": ds.name,
        "command": "python -m shapnet.training " + " ".join(sys.argv[1:] if argv is None else argv),
        f"test_{metric}": test_score,
        "train_seconds": result.seconds,
        "test_seconds": test_seconds,
        "wall_seconds_this_call": time.perf_counter() - wall,
        # CPU time of this process (all threads): on a shared machine, a better measure of the work.
        "cpu_seconds_this_call": time.process_time() - cpu,
        "epochs": result.epochs,
        "resumed_from": result.resumed_from,
        "n_train": int(len(ds.X_train)),
        "n_test": int(len(ds.X_test)),
        "threads": torch.get_num_threads(),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "model": {"class": type(model).__name__, "config": model.config},
        "history": result.history,
    }
    with open(os.path.join(args.out, "result.json"), "w") as fh:
        json.dump(out, fh, indent=2)
    print(json.dumps({k: out[k] for k in ("dataset", f"test_{metric}", "train_seconds", "epochs")}), flush=True)
    return out


if __name__ == "__main__":  # pragma: no cover
    main()
