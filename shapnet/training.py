"""The training loop of the project: :func:`fit`, for any ShapNet (or any classifier or regressor module).

:func:`fit` trains with AdamW (or Adam), an optional per-batch cosine learning-rate schedule, and the
explanation penalties of DESIGN §6 (L1 / L-infinity on the Shapley values, and the Shapley-consistency loss
of :mod:`shapnet.consistency`), all computed from the same explained forward pass as the prediction.
With ``checkpoint=path`` it saves the model, optimizer, scheduler, RNG states and history at the end of
every epoch (atomically, through :func:`shapnet.save`); calling it again with the same path continues
from the last finished epoch and ends exactly where an uninterrupted run would.

Under an initialised process group (e.g. ``torchrun --nproc-per-node N -m shapnet.training ...``) it
trains with ``DistributedDataParallel`` on the same global batches as one process would (see
:mod:`shapnet.distributed`): the result equals a one-process run up to float rounding.

It reads as its steps: :func:`_check_options` (arguments), :func:`_prepare_data`, :class:`_TrainState`
(what a checkpoint holds, saved and restored), :func:`_run_epoch` (one pass over the data) and
:func:`_validate`. The command line lives in :mod:`shapnet.train_cli` (``python -m shapnet.training``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

from .distributed import GlobalBatchSampler, World
from .io import load_checkpoint, save
from .models import ShapNet, Stage
from .regularizers import explanation_penalty

__all__ = ["DIGITS_STAGES", "TrainResult", "evaluate", "fit", "main", "training_loss"]

Task = Literal["classification", "regression"]

#: Stages for the 8x8 sklearn digits: 2x2 windows at dilations 1, 2, 4 cover the whole image.
DIGITS_STAGES = (
    Stage(16, kernel_size=2, dilation=1, hidden=(32,)),
    Stage(32, kernel_size=2, dilation=2, hidden=(32,)),
    Stage(32, kernel_size=2, dilation=4, hidden=(32,), split=16),
)


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

    model: nn.Module
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
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value >= 0
        or not math.isfinite(value)
    ):
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
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    l1: float = 0.0,
    linf: float = 0.0,
    reg_layers: Literal["last", "all"] = "last",
    consistency: float = 0.0,
    n_coalitions: int = 1,
    generator: torch.Generator | None = None,
    coalitions: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training objective: ``criterion(logits, y)`` plus the weighted explanation penalties.

    With a penalty, everything comes from one explained forward pass (``model.explain``), whose
    predictions are the logits; with ``consistency > 0`` that pass also covers the ``B * n_coalitions``
    masked inputs and the reference that :func:`shapnet.consistency.shapley_consistency` needs (built by
    :func:`~shapnet.consistency.consistency_inputs`, scored by :func:`~shapnet.consistency.consistency_loss`).
    Without penalties it is ``criterion(model(x), y)``, so any module returning logits works.

    Args:
        model: a ShapNet (any ``nn.Module`` returning ``(B, K)`` when no penalty is asked for).
        x: ``(B, *input_shape)``.
        y: targets as ``criterion`` expects them (``(B,)`` class indices, or ``(B, K)`` for regression).
        criterion: e.g. ``nn.CrossEntropyLoss()``.
        l1: weight of :func:`shapnet.regularizers.l1_penalty` (sparse explanations).
        linf: weight of :func:`shapnet.regularizers.linf_penalty` (importance spread over features).
        reg_layers: penalise the last layer's values or every layer's representation.
        consistency: weight of the Shapley-consistency loss (0 disables it, and it is not imported).
        n_coalitions: coalitions sampled per sample for the consistency loss.
        generator: draws those coalitions (None: torch's global RNG).
        coalitions: ``(inputs, mask)`` as :func:`~shapnet.consistency.consistency_inputs` returns them for
            this ``x``, drawn by the caller (distributed training draws them for the global batch); None:
            drawn here.

    Returns:
        ``(loss, logits)``: a scalar and ``(B, K)``.
    """
    layers = reg_layers == "all" and (l1 > 0 or linf > 0)
    if not (l1 > 0 or linf > 0 or consistency > 0):
        logits = model(x)
        return criterion(logits, y), logits
    if not isinstance(model, ShapNet):
        raise TypeError(
            f"the explanation penalties (l1, linf, consistency) need a ShapNet, got {type(model).__name__}; "
            "train it with l1=linf=consistency=0."
        )
    consistency_term = None
    if consistency > 0:
        from .consistency import consistency_inputs, consistency_loss  # imported only when asked for

        # The masked inputs x_S and the reference ride along in the same explained forward as the batch:
        # one call, the same numbers as shapley_consistency(model, x, values) (same RNG draws).
        if coalitions is None:
            coalitions = consistency_inputs(model, x, n_coalitions=n_coalitions, generator=generator)
        extra, mask = coalitions
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
            raise ValueError(
                f"{y_name} must hold integer class indices for classification, got non-integer values."
            )
        y_t = y_t.long()
    else:
        y_t = y_t.to(dtype)
    return X_t, y_t


def _score(logits: torch.Tensor, y: torch.Tensor, task: Task) -> float:
    """Accuracy (classification) or R² (regression) of ``(N, K)`` logits."""
    hits, total = _score_sums(logits, y, task)
    return _finish_score(hits, total, y, task)


def _score_sums(logits: torch.Tensor, y: torch.Tensor, task: Task) -> tuple[float, float]:
    """``(correct, rows)`` (classification) or ``(squared error, rows)`` (regression).

    Sums, so that shares scored on different ranks add up."""
    if task == "classification":
        return float((logits.argmax(1) == y).sum()), float(len(y))
    return float(((logits[:, 0].double() - y.double()) ** 2).sum()), float(len(y))


def _finish_score(hits: float, rows: float, y: torch.Tensor, task: Task) -> float:
    """Accuracy from ``(correct, rows)``, or R² from the squared error and every row's target ``y``."""
    if task == "classification":
        return hits / rows if rows else float("nan")
    total = float(((y.double() - y.double().mean()) ** 2).sum())
    return 1.0 - hits / total if total > 0 else float("nan")


@torch.no_grad()
def _predict(model: nn.Module, X: torch.Tensor, batch_size: int) -> torch.Tensor:
    dtype, device = _model_dtype_device(model)
    was_training = model.training
    model.eval()
    try:
        out = [
            model(X[i : i + batch_size].to(device=device, dtype=dtype)).cpu()
            for i in range(0, len(X), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, getattr(model, "n_outputs", 1))


def evaluate(
    model: nn.Module, X: object, y: object, batch_size: int = 512, *, task: Task = "classification"
) -> float:
    """Accuracy (classification) or R² (regression) of ``model`` on ``(X, y)``.

    Args:
        model: a ShapNet (or any module returning ``(N, K)`` logits).
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
# Training, step 1: the arguments
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Options:
    """The checked options of one :func:`fit` call (``epochs`` aside, what a checkpoint must match)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    optimizer: str
    l1: float
    linf: float
    reg_layers: Literal["last", "all"]
    consistency: float
    n_coalitions: int
    seed: int
    task: Task
    lr_schedule: str | None

    @property
    def penalised(self) -> bool:
        return self.l1 > 0 or self.linf > 0 or self.consistency > 0

    def settings(self, n_train: int) -> dict[str, Any]:
        """What a checkpoint records and a resumed call must repeat (the optimizer only when not AdamW,
        so checkpoints written before the option existed still resume)."""
        out = {
            k: v for k, v in asdict(self).items() if k != "epochs" and not (k == "optimizer" and v == "adamw")
        }
        return {**out, "n_train": n_train}


def _check_options(model: nn.Module, **options: Any) -> _Options:
    """Validate :func:`fit`'s options against each other and the model; raise ValueError/TypeError."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (e.g. shapnet.VisionShapNet), got {type(model).__name__}."
        )
    epochs = options["epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}.")
    _check_task(options["task"])
    if options["lr_schedule"] not in ("cosine", None):
        raise ValueError(f"lr_schedule must be 'cosine' or None, got {options['lr_schedule']!r}.")
    if options["optimizer"] not in ("adamw", "adam"):
        raise ValueError(f"optimizer must be 'adamw' or 'adam', got {options['optimizer']!r}.")
    l1, linf, consistency = _check_regularization(
        options["l1"], options["linf"], options["reg_layers"], options["consistency"], options["n_coalitions"]
    )
    opts = _Options(
        epochs=int(epochs),
        batch_size=_check_batch_size(options["batch_size"]),
        lr=_check_nonnegative(options["lr"], "lr"),
        weight_decay=_check_nonnegative(options["weight_decay"], "weight_decay"),
        optimizer=options["optimizer"],
        l1=l1,
        linf=linf,
        reg_layers=options["reg_layers"],
        consistency=consistency,
        n_coalitions=int(options["n_coalitions"]),
        seed=int(options["seed"]),
        task=options["task"],
        lr_schedule=options["lr_schedule"],
    )
    if opts.penalised and not isinstance(model, ShapNet):
        raise TypeError(
            f"l1, linf and consistency penalise a ShapNet's explanations, got a {type(model).__name__}; "
            "pass a ShapNet or leave them at 0."
        )
    n_outputs = getattr(model, "n_outputs", None)
    if opts.task == "regression" and n_outputs is not None and n_outputs != 1:
        raise ValueError(f"task='regression' needs a model with n_outputs=1, got {n_outputs}.")
    if options["checkpoint"] is not None and not isinstance(model, ShapNet):
        raise TypeError(
            "checkpoint= saves the model with shapnet.save, which takes a ShapNet, got a "
            f"{type(model).__name__}; "
            "pass checkpoint=None."
        )
    return opts


# --------------------------------------------------------------------------- #
# Step 2: the data
# --------------------------------------------------------------------------- #
@dataclass
class _Data:
    X: torch.Tensor
    y: torch.Tensor
    val: tuple[torch.Tensor, torch.Tensor] | None
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_classes(y: torch.Tensor, n_outputs: int) -> None:
    if int(y.min()) < 0 or int(y.max()) >= n_outputs:
        raise ValueError(
            f"y_train must hold class indices in [0, {n_outputs}) for a model with {n_outputs} "
            f"outputs, got values in [{int(y.min())}, {int(y.max())}]."
        )


def _prepare_data(
    model: nn.Module, X_train: object, y_train: object, X_val: object, y_val: object, task: Task
) -> _Data:
    """CPU tensors in the model's dtype, checked against the model and each other."""
    if (X_val is None) != (y_val is None):
        raise ValueError("pass both X_val and y_val, or neither.")
    dtype, _ = _model_dtype_device(model)
    X, y = _as_xy(X_train, y_train, task, dtype, "X_train")
    if len(X) == 0:
        raise ValueError("X_train is empty: expected at least 1 sample.")
    if task == "classification":
        n_outputs = getattr(model, "n_outputs", None)
        _check_classes(y, n_outputs if n_outputs is not None else _predict(model, X[:1], 1).shape[-1])
    val = None if X_val is None else _as_xy(X_val, y_val, task, dtype, "X_val")
    criterion = nn.CrossEntropyLoss() if task == "classification" else nn.MSELoss()
    return _Data(X, y, val, criterion)


# --------------------------------------------------------------------------- #
# Step 3: the state a checkpoint holds
# --------------------------------------------------------------------------- #
def _cosine(total_steps: int) -> Callable[[int], float]:
    # Per batch, from 1 down to 0 at the last step: smooth even for runs of a few epochs.
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))


@dataclass
class _TrainState:
    """Everything that changes while training: weights (in ``model``), optimizer, schedule, RNGs, history.

    ``shuffle`` draws each epoch's permutation; ``coalitions`` the consistency loss's coalitions. Both are
    private generators (the global RNG is never touched, so concurrent fits in threads stay independent)
    and both are checkpointed, which makes a resumed run bit-identical to an uninterrupted one.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR | None
    shuffle: torch.Generator
    coalitions: torch.Generator
    settings: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def new(cls, model: nn.Module, opts: _Options, n_train: int) -> _TrainState:
        optimizer_cls = torch.optim.AdamW if opts.optimizer == "adamw" else torch.optim.Adam
        optimizer = optimizer_cls(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
        steps = opts.epochs * math.ceil(n_train / opts.batch_size)
        scheduler = (
            torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine(steps))
            if opts.lr_schedule == "cosine"
            else None
        )
        return cls(
            model,
            optimizer,
            scheduler,
            shuffle=torch.Generator().manual_seed(opts.seed),
            coalitions=torch.Generator().manual_seed(opts.seed),
            settings=opts.settings(n_train),
        )

    @property
    def epoch(self) -> int:
        """Finished epochs."""
        return len(self.history)

    def extra(self, epochs: int) -> dict[str, Any]:
        """The training state as the ``extra`` of :func:`shapnet.save`."""
        return {
            "epoch": self.epoch,
            "epochs": int(epochs),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": {"torch": self.coalitions.get_state(), "shuffle": self.shuffle.get_state()},
            "history": self.history,
            "settings": self.settings,
        }

    def save(self, path: str | os.PathLike, epochs: int, world: World) -> None:
        """Rank 0 writes the checkpoint (atomically); every rank waits until it is complete."""
        if world.is_main:
            # _check_options allows a checkpoint for ShapNets only.
            save(cast(ShapNet, self.model), path, extra=self.extra(epochs))
        world.barrier()

    def restore(self, path: str | os.PathLike, device: torch.device) -> None:
        """Load a checkpoint written by :meth:`save` into this state (weights, optimizer, RNGs, history)."""
        payload = load_checkpoint(path, map_location=device)
        where, model = os.fspath(path), self.model
        config = model.config
        if payload["class"] != type(model).__name__ or payload["config"] != config:
            raise ValueError(
                f"checkpoint {where!r} holds a {payload['class']} with config {payload['config']}, but the "
                f"model passed is a {type(model).__name__} with config {config}. Pass the same model, "
                "another checkpoint path, or resume=False to start afresh."
            )
        extra = payload["extra"]
        needed = {"epoch", "optimizer", "scheduler", "rng", "history", "settings"}
        if not needed <= set(extra):
            raise ValueError(
                f"checkpoint {where!r} has no training state (extra keys {sorted(extra)}; expected "
                f"{sorted(needed)}): it was not written by shapnet.training.fit. Use another path or "
                "resume=False."
            )
        saved = extra["settings"]
        changed = {k: (saved.get(k), v) for k, v in self.settings.items() if saved.get(k) != v}
        changed.update({k: (v, None) for k, v in saved.items() if k not in self.settings})
        if changed:
            diff = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise ValueError(
                f"checkpoint {where!r} was trained with other settings ({diff}); resuming would mix two "
                "runs. Pass the same settings, another checkpoint path, or resume=False."
            )
        model.load_state_dict(payload["state_dict"])
        self.optimizer.load_state_dict(extra["optimizer"])
        if self.scheduler is not None:
            # The step counter comes from the checkpoint, the schedule's length from this call (``epochs``
            # may have changed): set the current lr from the new schedule (identical if epochs is unchanged).
            self.scheduler.load_state_dict(extra["scheduler"])
            for group, base_lr, schedule in zip(
                self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas
            ):
                group["lr"] = base_lr * schedule(self.scheduler.last_epoch)
        self.shuffle.set_state(extra["rng"]["shuffle"])
        self.coalitions.set_state(extra["rng"]["torch"])
        self.history[:] = list(extra["history"])


# --------------------------------------------------------------------------- #
# Step 4: one epoch
# --------------------------------------------------------------------------- #
class _Objective(nn.Module):
    """:func:`training_loss` as a module, so that ``DistributedDataParallel`` wraps the whole explained pass
    (its gradient hooks need the loss to come out of the wrapped ``forward``)."""

    def __init__(
        self,
        model: nn.Module,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        opts: _Options,
    ) -> None:
        super().__init__()
        self.model, self.criterion, self.opts = model, criterion, opts

    def forward(
        self, x: torch.Tensor, target: torch.Tensor, coalitions: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        o = self.opts
        return training_loss(
            self.model,
            x,
            target,
            self.criterion,
            l1=o.l1,
            linf=o.linf,
            reg_layers=o.reg_layers,
            consistency=o.consistency,
            n_coalitions=o.n_coalitions,
            coalitions=coalitions,
        )


def _local_batches(
    sampler: GlobalBatchSampler,
    state: _TrainState,
    data: _Data,
    opts: _Options,
    world: World,
    device: torch.device,
) -> Iterator[tuple[torch.Tensor, int, int, tuple[torch.Tensor, torch.Tensor] | None]]:
    """Per step: this rank's indices, its sample count, the global batch's size, and its consistency inputs.

    The consistency coalitions are drawn for the whole global batch on every rank (same generator state),
    and each rank keeps its samples' rows: the same draws as one process. A rank with no sample in the last
    batch computes the loss of the batch's first sample with weight 0, so that every rank still runs the
    forward and backward passes DistributedDataParallel synchronises.
    """
    for batch in sampler.global_batches():
        positions = torch.arange(world.rank, len(batch), world.size)
        count = len(positions)
        if count == 0:
            positions = torch.zeros(1, dtype=torch.long)
        coalitions = None
        if opts.consistency > 0:
            from .consistency import consistency_inputs

            extra, mask = consistency_inputs(
                state.model, data.X[batch], n_coalitions=opts.n_coalitions, generator=state.coalitions
            )
            if world.distributed:
                rows = (
                    positions.unsqueeze(1) * opts.n_coalitions + torch.arange(opts.n_coalitions)
                ).flatten()
                extra, mask = torch.cat([extra[rows], extra[-1:]]), mask[rows]
            coalitions = (extra.to(device), mask.to(device))
        yield batch[positions] if world.distributed else batch, count, len(batch), coalitions


def _run_epoch(
    step: nn.Module,
    state: _TrainState,
    data: _Data,
    opts: _Options,
    world: World,
    device: torch.device,
    bar: Any,
) -> dict[str, Any]:
    """Train one epoch; return its history row without validation (loss and train score over all ranks)."""
    tic = time.perf_counter()
    epoch = state.epoch
    state.model.train()
    sampler = GlobalBatchSampler(len(data.X), opts.batch_size, state.shuffle, world)
    sampler.set_epoch(epoch)
    loss_sum, hits = 0.0, 0.0
    classification = opts.task == "classification"
    for index, (idx, count, global_count, coalitions) in enumerate(
        _local_batches(sampler, state, data, opts, world, device)
    ):
        xb = data.X[idx].to(device, non_blocking=True)
        yb = data.y[idx].to(device, non_blocking=True)
        loss, logits = step(xb, yb if classification else yb.unsqueeze(1), coalitions)
        value = float(loss.detach())
        if world.distributed:
            # Each rank's loss is a mean over its share; DDP averages the gradients over ranks, so weigh the
            # share by its size to get the gradient of the global batch's mean (exact for unequal shares).
            loss = loss * (count * world.size / global_count)
            value = world.sum([value * count], device)[0] / global_count  # the global batch's objective
        if not math.isfinite(value):
            raise FloatingPointError(
                f"the training loss became {value} at epoch {epoch + 1}, step {index + 1}; "
                "lower lr or the penalty weights."
            )
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        if state.scheduler is not None:
            state.scheduler.step()
        loss_sum += value * global_count
        if count:
            with torch.no_grad():
                hits += _score_sums(logits.detach(), yb, opts.task)[0]
        bar.update(1)
        if hasattr(bar, "set_postfix"):
            done = min(len(data.X), (index + 1) * opts.batch_size)
            bar.set_postfix(epoch=f"{epoch + 1}/{opts.epochs}", loss=f"{loss_sum / done:.4f}")
    (hits,) = world.sum([hits], device)
    metric = "acc" if classification else "r2"
    return {
        "epoch": epoch + 1,
        "loss": loss_sum / len(data.X),
        f"train_{metric}": _finish_score(hits, float(len(data.X)), data.y, opts.task),
        f"val_{metric}": None,
        "lr": state.optimizer.param_groups[0]["lr"],
        "seconds": time.perf_counter() - tic,
    }


def _validate(
    model: nn.Module,
    val: tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
    task: Task,
    world: World,
    device: torch.device,
) -> float:
    """Accuracy or R² on ``val``; each rank scores every ``size``-th row and the sums are reduced."""
    X, y = val
    mine = slice(world.rank, None, world.size)
    hits, rows = _score_sums(_predict(model, X[mine], batch_size), y[mine], task)
    hits, rows = world.sum([hits, rows], device)
    return _finish_score(hits, rows, y, task)


# --------------------------------------------------------------------------- #
# fit: the steps in order
# --------------------------------------------------------------------------- #
def fit(
    model: nn.Module,
    X_train: object,
    y_train: object,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    optimizer: Literal["adamw", "adam"] = "adamw",
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

    Randomness comes from two private ``torch.Generator`` s seeded with ``seed`` (shuffling; the
    consistency loss's coalitions), never from the global RNG, so the caller's RNG state is left untouched
    and fits in concurrent threads do not interfere. Both are checkpointed, which makes a resumed run
    bit-identical to an uninterrupted one. Initialise the model's weights yourself (e.g. under
    ``torch.manual_seed``) before calling. A :class:`~shapnet.VisionShapNet` whose reference is a rule
    (``"mean"``, ``"min"``) takes it from ``X_train`` when a run starts (not when it resumes).

    Distributed: when a process group with more than one rank is initialised, every rank calls ``fit`` with
    the whole training set and its model on its device; the model trains under ``DistributedDataParallel``
    (gloo for CPU tensors, NCCL for CUDA), each rank computing its share of every global batch of
    ``batch_size`` samples (:class:`shapnet.distributed.GlobalBatchSampler`). Losses and scores are reduced
    over the ranks, rank 0 writes the checkpoint, and the trained parameters equal those of one process
    up to float rounding.

    Args:
        model: any ShapNet (its parameters' dtype and device are used for the data); without penalties
            and checkpoint, any ``nn.Module`` returning ``(B, K)`` logits (``(B, 1)`` for regression).
        X_train: ``(N, *input_shape)``, numpy or tensor.
        y_train: ``(N,)``: class indices (classification) or targets (regression).
        epochs: total epochs of the run (resumed epochs count).
        batch_size: rows per step over all processes (the last batch of an epoch may be smaller).
        lr: peak learning rate.
        weight_decay: AdamW's decoupled weight decay (Adam's L2 term with ``optimizer="adam"``).
        optimizer: ``"adamw"`` or ``"adam"``.
        l1: weight of the L1 penalty on the Shapley values (see :func:`training_loss`).
        linf: weight of the L-infinity penalty.
        reg_layers: ``"last"`` or ``"all"``: which layers' values the penalties see.
        consistency: weight of the Shapley-consistency loss.
        n_coalitions: coalitions per sample for the consistency loss.
        checkpoint: file written (atomically) at the end of every epoch with :func:`shapnet.save`;
            ``extra`` holds ``epoch``, ``epochs``, ``optimizer``, ``scheduler``, ``rng``, ``history`` and
            ``settings``. None: no checkpointing.
        resume: continue from ``checkpoint`` if it exists (it must come from the same model config and
            settings; ``epochs`` may differ, which changes the cosine schedule's remaining steps);
            False starts afresh and overwrites it.
        progress: show progress over batches (rank 0; :func:`shapnet.progress.progress`).
        seed: seeds shuffling and the consistency loss's coalitions.
        X_val: optional validation inputs, evaluated after every epoch.
        y_val: their targets (given with ``X_val``).
        task: ``"classification"`` (cross-entropy) or ``"regression"`` (MSE on ``K = 1`` output).
        lr_schedule: ``"cosine"`` (per batch, from ``lr`` to 0 over ``epochs``) or None (constant).
        callback: called (on every rank) with each epoch's history row after its checkpoint is written;
            raising from it interrupts training (the checkpoint is already safe).

    Returns:
        A :class:`TrainResult`.

    Raises:
        TypeError: ``model`` is not a module, or penalties / a checkpoint are asked of a non-ShapNet; the
            data are not arrays or tensors.
        ValueError: on bad options, mismatched data, or a checkpoint from another model or settings.
        FloatingPointError: the training loss became NaN or infinite.
    """
    opts = _check_options(
        model,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        optimizer=optimizer,
        l1=l1,
        linf=linf,
        reg_layers=reg_layers,
        consistency=consistency,
        n_coalitions=n_coalitions,
        seed=seed,
        task=task,
        lr_schedule=lr_schedule,
        checkpoint=checkpoint,
    )
    data = _prepare_data(model, X_train, y_train, X_val, y_val, opts.task)
    world = World.current()
    _, device = _model_dtype_device(model)
    world.check_device(device)
    state = _TrainState.new(model, opts, len(data.X))
    if checkpoint is not None and resume and os.path.exists(checkpoint):
        state.restore(checkpoint, device)
    elif (fit_reference := getattr(model, "fit_reference", None)) is not None:
        fit_reference(data.X)  # a reference given as a rule ("mean", "min") comes from the data
    result = TrainResult(model, state.history, resumed_from=state.epoch)
    if state.epoch < opts.epochs:
        _train(state, data, opts, world, device, checkpoint, progress, callback)
    model.eval()
    return result


def _train(
    state: _TrainState,
    data: _Data,
    opts: _Options,
    world: World,
    device: torch.device,
    checkpoint: str | os.PathLike | None,
    progress: bool,
    callback: Callable[[dict[str, Any]], None] | None,
) -> None:
    """Epochs from ``state.epoch`` to ``opts.epochs``: train, validate, checkpoint, report."""
    from .progress import progress as progress_bar

    step = world.wrap(_Objective(state.model, data.criterion, opts), device)
    steps_per_epoch = math.ceil(len(data.X) / opts.batch_size)
    bar = (
        progress_bar(total=(opts.epochs - state.epoch) * steps_per_epoch, desc="train", unit="batch")
        if progress and world.is_main
        else _NoBar()
    )
    with bar:
        while state.epoch < opts.epochs:
            tic = time.perf_counter()
            row = _run_epoch(step, state, data, opts, world, device, bar)
            if data.val is not None:
                metric = "acc" if opts.task == "classification" else "r2"
                row[f"val_{metric}"] = _validate(
                    state.model,
                    data.val,
                    max(opts.batch_size, 256),
                    opts.task,
                    world,
                    device,
                )
                row["seconds"] = time.perf_counter() - tic
            state.history.append(row)
            if checkpoint is not None:
                state.save(checkpoint, opts.epochs, world)
            if callback is not None:
                callback(dict(row))


class _NoBar:
    """Progress that shows nothing (other ranks, or ``progress=False``)."""

    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``python -m shapnet.training``: see :mod:`shapnet.train_cli`. Returns the result written to
    ``--out/result.json``."""
    from .train_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":  # pragma: no cover
    main()
