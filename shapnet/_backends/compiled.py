"""One-hidden-layer ReLU modules and pruning as compiled CPU kernels (:mod:`shapnet.kernels`).

Tensors are *feature-major*: ``delta (F, N, C_in)`` with ``slots (k, M)`` naming module ``m``'s ``j``-th
feature (``F`` for a padding slot), so the kernel reads each module's features and writes their values back
through the slots, with no gather or scatter copy. One call per layer finds each module's busy rows and
skips the idle ones, whose values and gradients are exactly 0.

:func:`deep_layers_in_place` is the inference path of a Deep ShapNet: each layer adds its values to its own
input (the residual), measures the L1 norms that pruning needs while the rows are in cache, and hands the
next layer the mask of its active features, so that a layer allocates, zero-fills and adds no ``(F, B, C)``
tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import kernels
from .checks import check_layer, check_prune

if TYPE_CHECKING:
    from ..layers import ShapleyLayer
    from ..modules import GroupedMLP
    from ..pruning import Pruning

applies = kernels.applies  # (tests patch this name to force the PyTorch backends)

_NO_NORMS = np.empty((0, 0))  # the kernels' "not asked for": an empty array of the right rank


class CompiledReluModules(torch.autograd.Function):
    """Shapley values of a layer of one-hidden-layer ReLU modules, as one compiled call.

    Inputs: ``delta (F, N, C)``, ``slots (k, M)``, ``first_weight (k, M or 1, C, h)``, ``offset (M or 1,
    1 or N, h)``, ``out_weight (M or 1, h, O)``, ``active (F, N)`` bool or None (the kernel tests
    ``delta != 0`` itself), ``weights_t (k, 2**k)``, ``masks_t (k, 2**k)``.

    Returns ``values (F, N, O)``, each feature's Shapley values summed over its modules, and the number of
    busy (module, row) pairs (an int, which autograd passes through).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, delta, slots, first_weight, offset, out_weight, active, weights_t, masks_t
    ):
        check_layer(delta, slots, first_weight, offset, out_weight, active)
        _check_constants(first_weight.shape[0], weights_t, masks_t)
        delta, first_weight, offset, out_weight = (
            t.detach().contiguous() for t in (delta, first_weight, offset, out_weight)
        )
        active = torch.empty(0, 0, dtype=torch.bool) if active is None else active.contiguous()
        out = delta.new_empty(*delta.shape[:2], out_weight.shape[-1])
        n_busy = kernels.relu_modules_forward(
            *(t.numpy() for t in (delta, slots, first_weight, offset, out_weight, active, weights_t)),
            out.numpy(),
            False,
            _NO_NORMS,
        )
        ctx.save_for_backward(delta, slots, first_weight, offset, out_weight, active, weights_t, masks_t)
        return out, n_busy

    @staticmethod
    def backward(ctx, grad, _):  # type: ignore[override]
        delta, slots, first_weight, offset, out_weight, active, weights_t, masks_t = ctx.saved_tensors
        needed = (ctx.needs_input_grad[0], *ctx.needs_input_grad[2:5])
        grads = [  # a gradient that is not needed is passed as an empty array of the same rank
            torch.zeros_like(t) if need else t.new_empty((0,) * t.dim())
            for t, need in zip((delta, first_weight, offset, out_weight), needed)
        ]
        masks_and_ones = torch.cat([masks_t, masks_t.new_ones(1, masks_t.shape[1])])
        kernels.relu_modules_backward(
            *(
                t.numpy()
                for t in (delta, slots, first_weight, offset, out_weight, active, weights_t, masks_and_ones)
            ),
            grad.contiguous().numpy(),
            *(g.numpy() for g in grads),
        )
        grad_delta, grad_first, grad_offset, grad_out = (
            g if need else None for g, need in zip(grads, needed)
        )
        return grad_delta, None, grad_first, grad_offset, grad_out, None, None, None


def _check_constants(k: int, weights_t: torch.Tensor, masks_t: torch.Tensor) -> None:
    for name, t in (("weights_t", weights_t), ("masks_t", masks_t)):
        if tuple(t.shape) != (k, 2**k):
            raise ValueError(f"{name} must have shape (k, 2**k) = ({k}, {2**k}), got {tuple(t.shape)}.")


def feature_values(
    mlp: GroupedMLP,
    delta: torch.Tensor,
    slots: torch.Tensor,
    offset: torch.Tensor,
    active: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """``values (F, N, O)`` and the number of busy (module, row) pairs, differentiable.

    Args:
        delta: ``(F, N, C_in)``; ``slots``: ``(k, M)``; ``offset``: ``(M or 1, 1 or N, h)``;
        active: ``(F, N)`` bool, exactly the features whose ``delta`` is non-zero, if known.
    """
    weights_t, masks_t = mlp.weights_t.to(delta.dtype), mlp.masks_t.to(delta.dtype)
    return CompiledReluModules.apply(
        delta, slots, mlp.first_weight, offset, mlp.weights[-1], active, weights_t, masks_t
    )


def add_values_(
    mlp: GroupedMLP,
    delta: torch.Tensor,
    slots: torch.Tensor,
    offset: torch.Tensor,
    active: torch.Tensor | None,
    norms: bool,
) -> tuple[int, torch.Tensor | None]:
    """:func:`feature_values` added to ``delta`` in place (a residual connection), for inference.

    Needs autograd off, ``C_in == O``, a contiguous ``delta`` and ``slots`` that partition the features (each
    feature is written by one module, after that module has read it).

    Returns:
        the number of busy (module, row) pairs and, with ``norms``, the features' L1 norms ``(F, N)`` after
        the addition (float64), which pruning needs next.
    """
    check_layer(delta, slots, mlp.first_weight, offset, mlp.weights[-1], active, out=delta)
    if not delta.is_contiguous() or torch.is_grad_enabled():
        raise ValueError("add_values_ writes into delta: it needs a contiguous delta and autograd off.")
    weights_t = mlp.weights_t.to(delta.dtype)
    active = torch.empty(0, 0, dtype=torch.bool) if active is None else active.contiguous()
    out_norms = torch.empty(delta.shape[:2], dtype=torch.float64) if norms else None
    array = delta.numpy()
    weights = (t.detach().contiguous().numpy() for t in (mlp.first_weight, offset, mlp.weights[-1]))
    n_busy = kernels.relu_modules_forward(
        array,
        slots.numpy(),
        *weights,
        active.numpy(),
        weights_t.numpy(),
        array,
        True,
        _NO_NORMS if out_norms is None else out_norms.numpy(),
    )
    return n_busy, out_norms


def prune(
    representation: torch.Tensor,
    fraction: float | None,
    threshold: float | None,
    n_real: int,
    groups: torch.Tensor | None,
    in_place: bool = False,
    norms: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~shapnet.pruning.prune_features_and_mask` in one compiled call (``kernels.prune_units``).

    The torch version takes about ten small calls (norms, top-k, scatter, mask), which cost as much as a
    pruned layer saves at d = 64. With ``in_place`` the pruned features of ``representation`` itself are
    zeroed (unless autograd needs it unchanged); ``norms (F, B)``, the features' L1 norms if already known,
    saves the kernel its pass.
    """
    if groups is None:
        units = torch.arange(n_real).unsqueeze(1)
    elif n_real < representation.shape[0]:  # groups made only of padding are always idle: never prune them
        units = groups[(groups < n_real).any(1)]
    else:
        units = groups
    n_prune = int(fraction * units.shape[0]) if fraction else 0
    threshold = -math.inf if threshold is None else float(threshold)
    check_prune(representation, units, n_prune, threshold, norms)
    differentiable = representation.requires_grad and torch.is_grad_enabled()
    in_place = in_place and representation.is_contiguous() and not differentiable
    detached = representation.detach().contiguous()
    keep = torch.empty(representation.shape[:2], dtype=torch.bool)
    active = torch.empty_like(keep)
    if differentiable:
        out = representation.new_empty(0, 0, 0)  # the kernel only finds the mask; autograd multiplies
    else:
        out = detached if in_place else torch.empty_like(detached)
    kernels.prune_units(
        detached.numpy(),
        units.contiguous().numpy(),
        n_prune,
        -math.inf if threshold is None else float(threshold),
        keep.numpy(),
        active.numpy(),
        out.numpy(),
        in_place,
        _NO_NORMS if norms is None else norms.to(torch.float64).contiguous().numpy(),
    )
    if differentiable:
        return representation * keep.unsqueeze(-1), active
    return (representation if in_place else out), active


def deep_layers_in_place(
    layers: Sequence[ShapleyLayer],
    rep: torch.Tensor,
    reference: torch.Tensor | None,
    *,
    residual: bool,
    pruning: Pruning | None,
    n_real: int,
) -> tuple[torch.Tensor, list[float]]:
    """The layers of a Deep ShapNet for inference, with the residual and the pruning done in place.

    The same result as running ``layer.forward_features``, adding the residual and pruning layer by layer
    (the tests compare them), with fewer passes over memory: each hidden layer whose groups partition the
    features adds its values to its input inside the kernel and measures the L1 norms pruning needs, and
    pruning hands the next layer the mask of its active features.

    Args:
        layers: the :class:`~shapnet.layers.ShapleyLayer` s to run.
        rep: ``(F, B, C)`` float32/float64 CPU tensor: the input minus the reference, padded. Owned by the
            caller's pass (it is overwritten after the first layer); autograd must be off.
        reference: the first layer's feature-major reference.
        residual, pruning: as the model's.
        n_real: the model's real features (the rest are padding).

    Returns:
        the last representation ``(F, B, C_L)`` and each layer's skipped fraction.
    """
    if torch.is_grad_enabled() or not applies(rep):
        raise RuntimeError(
            "deep_layers_in_place is for inference on CPU float tensors, under torch.no_grad()."
        )
    sparse = pruning is not None
    active = None  # (F, B): which features are non-zero, when pruning has already worked it out
    skipped: list[float] = []
    for index, layer in enumerate(layers):
        mlp, n_rows, norms = layer.mlp, rep.shape[1], None
        values: torch.Tensor | None
        if index == 0 or not mlp.fused_relu:
            out = layer.forward_features(rep, reference if index == 0 else None, sparse=sparse and index > 0)
            values, fraction = out.values, out.skipped
        else:
            offset, slots = mlp.offset(None), layer.index.slots
            if (
                residual
                and layer.index.partition
                and rep.is_contiguous()
                and rep.shape[-1] == mlp.out_channels
            ):
                n_busy, norms = add_values_(mlp, rep, slots, offset, active, norms=sparse)
                values = None
            else:
                values, n_busy = feature_values(mlp, rep, slots, offset, active)
            pairs = layer.n_modules * n_rows
            fraction = 1.0 - n_busy / pairs if sparse and pairs else 0.0
        if values is None:  # added in place
            new = rep
        elif residual and values.shape[-1] == rep.shape[-1]:
            new = values.add_(rep)
        else:
            new = values
        if sparse and index < len(layers) - 1:
            groups = layers[index + 1].index.groups if pruning.granularity == "group" else None
            new, active = prune(new, *pruning.for_layer(index), n_real, groups, in_place=True, norms=norms)
        skipped.append(fraction)
        rep = new
    return rep, skipped
