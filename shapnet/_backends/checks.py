"""The one validation layer in front of the compute backends.

The compiled kernels index raw memory with no bounds checks, so everything they index is checked here
before they run: ranks, sizes that must agree, index ranges, dtypes and devices. The same checks guard the
PyTorch backends, so both paths accept and reject the same input, with a ``ValueError`` (shapes, indices)
or ``TypeError`` (dtypes, devices) that says what was expected and what was given. The checks read only
tensor metadata, apart from one min/max over each index tensor (a few dozen entries), so they cost
microseconds per layer (measured in ``python -m benchmarks speed``; docs/guide/performance.md).
"""

from __future__ import annotations

import math

import torch

__all__ = ["check_layer", "check_prune"]


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_index(index: torch.Tensor, name: str, upper: int, what: str) -> None:
    """``index`` is int64 with every entry in ``[0, upper]``."""
    if index.dtype != torch.int64:
        raise TypeError(f"{name} must be an int64 (long) tensor, got {index.dtype}.")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) > upper):
        raise ValueError(
            f"{name} must hold indices in [0, {upper}] ({what}), got values in "
            f"[{int(index.min())}, {int(index.max())}]."
        )


def check_layer(
    delta: torch.Tensor,
    slots: torch.Tensor,
    first_weight: torch.Tensor,
    offset: torch.Tensor,
    out_weight: torch.Tensor | None,
    active: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> None:
    """Check a layer's inputs to a backend (see :mod:`shapnet._backends.compiled` for the shapes).

    Args:
        delta: ``(F, N, C_in)`` float32/float64 (any float dtype on the PyTorch backends).
        slots: ``(k, M)`` int64 in ``[0, F]`` (``F`` is the padding slot).
        first_weight: ``(k, M or 1, C_in, h)``; ``offset``: ``(M or 1, 1 or N, h)``;
        out_weight: ``(M or 1, h, O)`` with as many modules as ``first_weight``; None for inner functions
            whose readout is checked by PyTorch itself (the plain backend).
        active: ``(F, N)`` bool, or None.
        out: ``(F, N, O)``, the output array the kernel writes (in place: ``delta`` itself), or None.

    Raises:
        ValueError: a rank or a size that does not fit, or an index out of range.
        TypeError: mixed dtypes or devices, or a dtype the backend cannot use.
    """
    if delta.dim() != 3:
        raise ValueError(f"delta must have shape (F, N, C_in), got shape {_shape(delta)}.")
    n_features, n_rows, c_in = delta.shape
    if first_weight.dim() != 4:
        raise ValueError(f"first_weight must have shape (k, M or 1, C_in, h), got {_shape(first_weight)}.")
    k, m_w, c_w, h = first_weight.shape
    if slots.dim() != 2 or slots.shape[0] != k:
        raise ValueError(
            f"slots must have shape (k, M) = ({k}, M) for modules of {k} features, got {_shape(slots)}."
        )
    n_modules = slots.shape[1]
    if m_w not in (1, n_modules):
        raise ValueError(
            f"the input has {n_modules} modules but the weights hold {m_w}: pass the groups the layer was "
            f"built with (or one shared function, M = 1)."
        )
    if c_w != c_in:
        raise ValueError(f"delta has {c_in} channels per feature, but the modules take {c_w} (C_in).")
    if out_weight is not None and (
        out_weight.dim() != 3 or out_weight.shape[0] != m_w or out_weight.shape[1] != h
    ):
        raise ValueError(f"out_weight must have shape ({m_w}, {h}, O), got {_shape(out_weight)}.")
    if (
        offset.dim() != 3
        or offset.shape[0] not in (1, n_modules)
        or offset.shape[1] not in (1, n_rows)
        or offset.shape[2] != h
    ):
        raise ValueError(
            f"offset must have shape (M or 1, N or 1, h) = ({n_modules} or 1, {n_rows} or 1, {h}), "
            f"got {_shape(offset)}."
        )
    if active is not None and (active.dtype != torch.bool or _shape(active) != (n_features, n_rows)):
        raise ValueError(
            f"active must be a bool tensor of shape (F, N) = ({n_features}, {n_rows}), "
            f"got {active.dtype} of shape {_shape(active)}."
        )
    n_out = None if out_weight is None else out_weight.shape[2]
    if out is not None and _shape(out) != (n_features, n_rows, n_out):
        raise ValueError(
            f"out must have shape (F, N, O) = ({n_features}, {n_rows}, {n_out}), got {_shape(out)}."
        )
    dtype, device = delta.dtype, delta.device
    for name, t in (("first_weight", first_weight), ("offset", offset), ("out_weight", out_weight)):
        if t is None:
            continue
        if t.dtype != dtype:
            raise TypeError(
                f"{name} is {t.dtype} but the input is {dtype}: convert the input with .to({t.dtype}) "
                f"or the model with .to({dtype})."
            )
        if t.device != device:
            raise TypeError(f"{name} is on {t.device} but the input is on {device}: move both to one device.")
    if not dtype.is_floating_point:
        raise TypeError(f"the input must be a real floating-point tensor, got {dtype}.")
    _check_index(slots, "slots", n_features, f"features of the input, {n_features} meaning a padding slot")


def check_prune(
    representation: torch.Tensor,
    units: torch.Tensor,
    n_prune: int,
    threshold: float,
    norms: torch.Tensor | None = None,
) -> None:
    """Check the inputs of the pruning kernel.

    Args:
        representation: ``(F, B, C)`` real floating point.
        units: ``(U, g)`` int64 in ``[0, F)``: the features of each unit.
        n_prune: units pruned per sample, in ``[0, U]``.
        threshold: a number, not NaN (``-inf`` for none).
        norms: ``(F, B)``, or None.
    """
    if representation.dim() != 3:
        raise ValueError(f"the representation must have shape (F, B, C), got {_shape(representation)}.")
    if not representation.dtype.is_floating_point:
        raise TypeError(f"the representation must be real floating point, got {representation.dtype}.")
    n_features, n_samples = representation.shape[:2]
    if units.dim() != 2:
        raise ValueError(f"groups must have shape (M, k), got {_shape(units)}.")
    _check_index(units, "groups", n_features - 1, f"features of the representation, which has {n_features}")
    if not 0 <= n_prune <= units.shape[0]:
        raise ValueError(f"cannot prune {n_prune} of {units.shape[0]} units per sample.")
    if math.isnan(threshold):
        raise ValueError("the pruning threshold must be a number, got NaN.")
    if norms is not None and _shape(norms) != (n_features, n_samples):
        raise ValueError(f"norms must have shape (F, B) = ({n_features}, {n_samples}), got {_shape(norms)}.")
