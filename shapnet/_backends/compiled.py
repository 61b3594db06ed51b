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

import itertools
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

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
_NO_MASK = np.empty((0, 0), np.bool_)

# Threads: every kernel call is split over contiguous ranges of rows (samples), one per thread, as many
# threads as torch may use (torch.get_num_threads(), set by torch.set_num_threads or OMP_NUM_THREADS). Each
# row's values are computed the same way whatever the split, so the results do not depend on the thread
# count beyond the rounding of the weight gradients, which are summed over the ranges in a fixed order. A
# range gets at least this many rows, so that small batches do not pay for threads they cannot use.
_MIN_ROWS_PER_THREAD = 64
_T = TypeVar("_T")
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (the pid that made it, its size, the pool)


def row_ranges(n_rows: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges that split ``n_rows`` rows over the threads torch may use."""
    threads = max(1, min(torch.get_num_threads(), n_rows // _MIN_ROWS_PER_THREAD))
    bounds = [n_rows * t // threads for t in range(threads + 1)]
    return list(itertools.pairwise(bounds))


def _run(calls: list[Callable[..., _T]]) -> list[_T]:
    """Run ``calls`` in parallel (the kernels release the GIL): the first here, the others in a pool."""
    global _pool
    if len(calls) == 1:
        return [calls[0]()]
    # A pool made before a fork has no threads in the child: make a new one there.
    if _pool is None or _pool[0] != os.getpid() or _pool[1] < len(calls) - 1:
        size = max(len(calls) - 1, (os.cpu_count() or 2) - 1)
        _pool = (os.getpid(), size, ThreadPoolExecutor(size, "shapnet"))
    futures = [_pool[2].submit(call) for call in calls[1:]]
    first = calls[0]()
    return [first, *(future.result() for future in futures)]


class CompiledReluModules(torch.autograd.Function):
    """Shapley values of a layer of one-hidden-layer ReLU modules, as one compiled call.

    Inputs: ``delta (F, N, C)``, ``slots (k, M)``, ``first_weight (k, M or 1, C, h)``, ``offset (M or 1,
    1 or N, h)``, ``out_weight (M or 1, h, O)``, ``active (F, N)`` bool or None (the kernel tests
    ``delta != 0`` itself), ``weights_t (k, 2**k)``, ``masks_t (k, 2**k)``.

    Returns ``values (F, N, O)``, each feature's Shapley values summed over its modules, and the number of
    busy (module, row) pairs (an int, which autograd passes through).
    """

    @staticmethod
    def forward(ctx, delta, slots, first_weight, offset, out_weight, active, weights_t, masks_t):
        check_layer(delta, slots, first_weight, offset, out_weight, active)
        _check_constants(first_weight.shape[0], weights_t, masks_t)
        delta, first_weight, offset, out_weight = (
            t.detach().contiguous() for t in (delta, first_weight, offset, out_weight)
        )
        active = torch.empty(0, 0, dtype=torch.bool) if active is None else active.contiguous()
        out = delta.new_empty(*delta.shape[:2], out_weight.shape[-1])
        arrays = [t.numpy() for t in (delta, slots, first_weight, offset, out_weight, active, weights_t, out)]
        n_busy = sum(
            _run(
                [
                    lambda start=start, stop=stop: kernels.relu_modules_forward(
                        *arrays, False, _NO_NORMS, -math.inf, _NO_MASK, start, stop
                    )
                    for start, stop in row_ranges(delta.shape[1])
                ]
            )
        )
        ctx.save_for_backward(delta, slots, first_weight, offset, out_weight, active, weights_t, masks_t)
        return out, n_busy

    @staticmethod
    def backward(ctx, grad, _):
        delta, slots, first_weight, offset, out_weight, active, weights_t, masks_t = ctx.saved_tensors
        needed = (ctx.needs_input_grad[0], *ctx.needs_input_grad[2:5])
        masks_and_ones = torch.cat([masks_t, masks_t.new_ones(1, masks_t.shape[1])])
        inputs = [
            t.numpy()
            for t in (delta, slots, first_weight, offset, out_weight, active, weights_t, masks_and_ones)
        ]
        inputs.append(grad.contiguous().numpy())
        ranges = row_ranges(delta.shape[1])
        # Rows are disjoint between ranges, so every range writes its own rows of the input's gradient (and
        # of a per-row offset's); the weights' gradients are sums over all rows: one array per range.
        private = [False, True, offset.shape[1] == 1, True]
        shared = [
            torch.zeros_like(t) if need else t.new_empty((0,) * t.dim())  # size 0: not needed
            for t, need in zip((delta, first_weight, offset, out_weight), needed)
        ]
        per_range = [
            [torch.zeros_like(g) if own and g.numel() and index > 0 else g for g, own in zip(shared, private)]
            for index in range(len(ranges))
        ]
        _run(
            [
                lambda grads=grads, start=start, stop=stop: kernels.relu_modules_backward(
                    *inputs, *(g.numpy() for g in grads), start, stop
                )
                for grads, (start, stop) in zip(per_range, ranges)
            ]
        )
        for grads in per_range[1:]:  # in a fixed order: the same sums for the same thread count
            for total, part, own in zip(shared, grads, private):
                if own and total.numel():
                    total.add_(part)
        grad_delta, grad_first, grad_offset, grad_out = (
            g if need else None for g, need in zip(shared, needed)
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
    threshold: float | None = None,
) -> tuple[int, torch.Tensor | None, torch.Tensor | None]:
    """:func:`feature_values` added to ``delta`` in place (a residual connection), for inference.

    Needs autograd off, ``C_in == O``, a contiguous ``delta`` and ``slots`` that partition the features (each
    feature is written by one module, after that module has read it).

    Args:
        threshold: if given, threshold pruning of the sum in the same pass: its features whose L1 norm is
            below ``threshold`` are set to 0, as :func:`prune` with that threshold would (and no fraction).

    Returns:
        the number of busy (module, row) pairs; with ``norms``, the features' L1 norms ``(F, N)`` after the
        addition (float64), which pruning needs next; with ``threshold``, the ``(F, N)`` bool mask of the
        features left non-zero (the next layer's players).
    """
    check_layer(delta, slots, mlp.first_weight, offset, mlp.weights[-1], active, out=delta)
    if not delta.is_contiguous() or torch.is_grad_enabled():
        raise ValueError("add_values_ writes into delta: it needs a contiguous delta and autograd off.")
    return _inference_pass(mlp, delta, slots, offset, active, delta, norms, threshold)


def pruned_values(
    mlp: GroupedMLP,
    delta: torch.Tensor,
    slots: torch.Tensor,
    offset: torch.Tensor,
    threshold: float,
    active: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int, torch.Tensor]:
    """:func:`feature_values` followed by threshold pruning, in one pass, for inference (autograd off).

    Needs ``slots`` that partition the features; ``active`` as in :func:`feature_values`.

    Returns:
        ``values (F, N, O)`` with the features whose L1 norm is below ``threshold`` set to 0, the number of
        busy (module, row) pairs, and the ``(F, N)`` bool mask of the features left non-zero.
    """
    check_layer(delta, slots, mlp.first_weight, offset, mlp.weights[-1], active)
    if torch.is_grad_enabled():
        raise ValueError("pruned_values is for inference: it needs autograd off.")
    delta = delta.contiguous()
    out = delta.new_empty(*delta.shape[:2], mlp.weights[-1].shape[-1])
    n_busy, _, mask = _inference_pass(mlp, delta, slots, offset, active, out, False, threshold)
    assert mask is not None
    return out, n_busy, mask


def _inference_pass(
    mlp: GroupedMLP,
    delta: torch.Tensor,
    slots: torch.Tensor,
    offset: torch.Tensor,
    active: torch.Tensor | None,
    out: torch.Tensor,
    norms: bool,
    threshold: float | None,
) -> tuple[int, torch.Tensor | None, torch.Tensor | None]:
    """One threaded ``relu_modules_forward`` call into ``out``, accumulating when ``out`` is ``delta``."""
    if threshold is not None and math.isnan(threshold):
        raise ValueError("the pruning threshold must be a number, got NaN.")
    weights_t = mlp.weights_t.to(delta.dtype)
    active = torch.empty(0, 0, dtype=torch.bool) if active is None else active.contiguous()
    out_norms = torch.empty(delta.shape[:2], dtype=torch.float64) if norms else None
    out_active = torch.empty(delta.shape[:2], dtype=torch.bool) if threshold is not None else None
    weights = [t.detach().contiguous().numpy() for t in (mlp.first_weight, offset, mlp.weights[-1])]
    arrays = [delta.numpy(), slots.numpy(), *weights, active.numpy(), weights_t.numpy(), out.numpy()]
    options = (
        out is delta,
        _NO_NORMS if out_norms is None else out_norms.numpy(),
        -math.inf if threshold is None else float(threshold),
        _NO_MASK if out_active is None else out_active.numpy(),
    )
    n_busy = sum(
        _run(
            [
                lambda start=start, stop=stop: kernels.relu_modules_forward(*arrays, *options, start, stop)
                for start, stop in row_ranges(delta.shape[1])
            ]
        )
    )
    return n_busy, out_norms, out_active


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
    # Differentiable: the kernel only finds the mask, autograd multiplies.
    out = (
        representation.new_empty(0, 0, 0)
        if differentiable
        else (detached if in_place else torch.empty_like(detached))
    )
    arrays = (
        detached.numpy(),
        units.contiguous().numpy(),
        n_prune,
        threshold,
        keep.numpy(),
        active.numpy(),
        out.numpy(),
        in_place,
        _NO_NORMS if norms is None else norms.to(torch.float64).contiguous().numpy(),
    )
    _run(
        [
            lambda start=start, stop=stop: kernels.prune_units(*arrays, start, stop)
            for start, stop in row_ranges(representation.shape[1])
        ]
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
    n_run: int | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """The layers of a Deep ShapNet for inference, with the residual and the pruning done in place.

    The same result as running ``layer.forward_features``, adding the residual and pruning layer by layer
    (the tests compare them), with fewer passes over memory: each hidden layer whose groups partition the
    features adds its values to its input inside the kernel and measures the L1 norms pruning needs, and
    pruning hands the next layer the mask of its active features. Threshold pruning of single features
    costs no pass of its own: the layer's kernel prunes each feature as soon as its norm is known.

    Args:
        layers: all the model's :class:`~shapnet.layers.ShapleyLayer` s.
        rep: ``(F, B, C)`` float32/float64 CPU tensor: the input minus the reference, padded. Owned by the
            caller's pass (it is overwritten after the first layer); autograd must be off.
        reference: the first layer's feature-major reference.
        residual, pruning: as the model's.
        n_real: the model's real features (the rest are padding).
        n_run: run only the first ``n_run`` layers (default all); the pruning after each is the one the whole
            model applies (a prediction stops before the last layer, whose output it does not need).

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
    n_layers = len(layers)
    for index, layer in enumerate(layers[: n_layers if n_run is None else n_run]):
        mlp, n_rows, norms = layer.mlp, rep.shape[1], None
        ref = reference if index == 0 else None
        adds_residual = residual and rep.shape[-1] == mlp.out_channels
        # The kernel prunes by itself when the pruning after this layer is a plain threshold and no residual
        # is added after its call (in place, the kernel prunes the sum).
        threshold = _fusable_threshold(pruning, index, n_layers) if layer.index.partition else None
        pruned = False  # whether the kernel has pruned this layer's output (and set `active`)
        values: torch.Tensor | None
        if not mlp.fused_relu:
            out = layer.forward_features(rep, ref, sparse=sparse and index > 0)
            values, fraction = out.values, out.skipped
        else:
            offset = mlp.offset(None if ref is None else layer.index.gather(ref))
            slots = layer.index.slots
            # The first layer's input is the caller's: it is never written.
            if index > 0 and adds_residual and layer.index.partition and rep.is_contiguous():
                n_busy, norms, mask = add_values_(
                    mlp, rep, slots, offset, active, norms=sparse and threshold is None, threshold=threshold
                )
                values, pruned = None, threshold is not None
                active = mask if pruned else active
            elif threshold is not None and not adds_residual:
                values, n_busy, active = pruned_values(mlp, rep, slots, offset, threshold, active)
                pruned = True
            else:
                values, n_busy = feature_values(mlp, rep, slots, offset, active)
            pairs = layer.n_modules * n_rows
            # (the first layer's skipped pairs are not counted, as in the layer-by-layer path)
            fraction = 1.0 - n_busy / pairs if sparse and pairs and index > 0 else 0.0
        if values is None:  # added in place
            new = rep
        elif residual and values.shape[-1] == rep.shape[-1]:
            new = values.add_(rep)
        else:
            new = values
        if sparse and index < n_layers - 1 and not pruned:
            assert pruning is not None
            groups = layers[index + 1].index.groups if pruning.granularity == "group" else None
            new, active = prune(new, *pruning.for_layer(index), n_real, groups, in_place=True, norms=norms)
        skipped.append(fraction)
        rep = new
    return rep, skipped


def _fusable_threshold(pruning: Pruning | None, index: int, n_layers: int) -> float | None:
    """The threshold that layer ``index``'s kernel can apply itself, or None (no pruning after the layer,
    or a pruning that needs a pass of its own: a fraction ranks, groups average their members)."""
    if pruning is None or index == n_layers - 1 or pruning.granularity != "feature":
        return None
    fraction, threshold = pruning.for_layer(index)
    return None if fraction else threshold
