"""Which output to explain: one parser for the ``target`` arguments of the core and of every adapter.

A model has ``K`` outputs (``(B, K)`` predictions). Captum calls the choice ``target``, Quantus ``targets``,
shap ``outputs`` and :func:`shapnet.shapley_consistency` ``target``; they all name output indices, either
one for every row or one per row. :func:`output_indices` reads the forms they share, checks them against
``K`` and says what was expected when they do not fit; :func:`check_output_indices` does the checks for an
index array of any shape (shap's ``(B, n)`` selections). The adapters keep only what their library adds
(Captum's 1-tuples, Quantus' float labels, shap's operation chains) and hand the rest to these functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["check_output_indices", "output_indices"]


def _as_index(value: object, what: str) -> int:
    """An output index from an int, a NumPy integer or a one-element integer tensor (never a bool)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be an int, got a bool ({value!r}).")
    if isinstance(value, torch.Tensor):
        if value.numel() == 1 and not value.is_floating_point() and value.dtype != torch.bool:
            return int(value.item())
    elif hasattr(value, "__index__"):  # int, NumPy integers
        value = int(value.__index__())
        if not -(2**63) <= value < 2**63:  # torch.full would raise a bare OverflowError
            raise ValueError(f"{what} = {value} is not an output index: far outside any model's outputs.")
        return value
    raise TypeError(f"{what} must be an int, got {type(value).__name__} ({value!r}).")


def _check_unsigned(values: np.ndarray, n_outputs: int, name: str) -> None:
    """Reject unsigned indices ``>= K`` before they are cast to int64, where the largest wrap to negatives."""
    too_large = values[values >= n_outputs]
    if too_large.size:
        got = sorted({int(v) for v in too_large.reshape(-1)})
        raise ValueError(
            f"{name} must {_bounds(n_outputs, False)} (the model has {n_outputs} outputs), got {got}."
        )


def _bounds(n_outputs: int, negative: bool) -> str:
    return f"lie in [{-n_outputs}, {n_outputs - 1}]" if negative else f"be in [0, {n_outputs})"


def check_output_indices(
    indices: object, n_outputs: int, *, name: str = "target", negative: bool = True
) -> torch.Tensor:
    """Integer output indices of any shape, checked against ``K = n_outputs`` and wrapped into ``[0, K)``.

    Args:
        indices: an int (a NumPy integer), a sequence of ints, or an integer NumPy array or tensor of any
            shape.
        n_outputs: ``K``, the model's outputs.
        name: the argument's name in the error messages (``"target"``, ``"targets"``, ``"outputs"``).
        negative: accept ``-K <= i < 0`` as ``i + K`` (Python's and Captum's indexing); otherwise the
            indices must lie in ``[0, K)``.

    Returns:
        an int64 tensor of the input's shape (0-d for an int), values in ``[0, K)``, on the input tensor's
        device (CPU for anything else).

    Raises:
        TypeError: a bool, a float, or an array that is not of integers.
        ValueError: an index outside the model's outputs.
    """
    if isinstance(indices, torch.Tensor):
        array = indices.detach()
        if array.is_floating_point() or array.is_complex() or array.dtype == torch.bool:
            raise TypeError(
                f"{name} must hold integer indices (integer class indices), got dtype {array.dtype}. "
                f"Use {name}.long()."
            )
        if not array.dtype.is_signed:  # unsigned: large values would wrap to negatives in int64
            _check_unsigned(array.cpu().numpy(), n_outputs, name)
        array = array.to(torch.long)
    elif isinstance(indices, np.ndarray):
        if not np.issubdtype(indices.dtype, np.integer):
            raise TypeError(
                f"{name} must hold integer indices (integer class indices), got dtype {indices.dtype}."
            )
        if np.issubdtype(indices.dtype, np.unsignedinteger):
            _check_unsigned(indices, n_outputs, name)
        array = torch.from_numpy(indices.astype(np.int64))
    elif isinstance(indices, Sequence) and not isinstance(indices, (str, bytes)):
        flat = [_as_index(entry, f"{name}[{position}]") for position, entry in enumerate(indices)]
        array = torch.tensor(flat, dtype=torch.long)
    else:
        array = torch.tensor(_as_index(indices, name), dtype=torch.long)
    bad = (array < (-n_outputs if negative else 0)) | (array >= n_outputs)
    if bool(bad.any()):
        values = sorted(set(array[bad].tolist()))
        if array.dim() == 0:
            which, got = name, values[0]
        else:
            which, got = (f"entries of {name}" if name.endswith("s") else f"{name} entries"), values
        raise ValueError(
            f"{which} must {_bounds(n_outputs, negative)} (the model has {n_outputs} outputs), got {got}."
        )
    return array % n_outputs


def output_indices(
    target: object, batch: int, n_outputs: int, *, name: str = "target", negative: bool = True
) -> int | torch.Tensor:
    """The output to explain, one for every row or one per row, for a model with ``K = n_outputs`` outputs.

    Accepted forms: an int (or a NumPy integer, or a one-element integer tensor or array) for the same
    output in every row; a sequence of ``B`` ints, or a ``(B,)`` integer array or tensor, for one output
    per row. ``None`` is left to the caller, since its meaning differs (Captum and Quantus: the only output
    of a ``K = 1`` model; :func:`shapnet.shapley_consistency`: every output).

    Args:
        target: the choice, in one of the forms above.
        batch: ``B``, the rows explained.
        n_outputs: ``K``.
        name: the argument's name in the error messages.
        negative: accept negative indices (``-1`` is the last output), as Python and Captum do.

    Returns:
        an int in ``[0, K)`` for one output for every row (also checked when ``B = 0``), or a ``(B,)``
        int64 tensor of indices in ``[0, K)``, on ``target``'s device if it is a tensor (else the CPU).

    Raises:
        TypeError: a bool, a float, or an array that is not of integers.
        ValueError: an index outside the model's outputs, or neither one index nor ``B`` of them.

    Example::

        >>> output_indices(-1, batch=4, n_outputs=3)
        2
        >>> output_indices([0, 2, 1, 2], batch=4, n_outputs=3)
        tensor([0, 2, 1, 2])
    """
    indices = check_output_indices(target, n_outputs, name=name, negative=negative)
    if indices.numel() == 1 and (indices.dim() == 0 or isinstance(target, (torch.Tensor, np.ndarray))):
        return int(indices.reshape(()))
    if indices.dim() != 1 or indices.shape[0] != batch:
        raise ValueError(
            f"{name} must hold one index or one index per row (shape (B,) = ({batch},)), got shape "
            f"{tuple(indices.shape)}."
        )
    return indices
