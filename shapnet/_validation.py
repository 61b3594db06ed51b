"""Input checks shared by every model. Each error says what was expected, what was given, and a fix."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["check_input", "check_reference", "check_positive_int"]


def check_input(x: object, shape: Sequence[int], *, name: str = "x") -> torch.Tensor:
    """Validate a batch ``x`` of shape ``(B, *shape)``: a finite floating-point tensor.

    Args:
        x: the batch.
        shape: the expected shape of one sample, e.g. ``(F,)`` or ``(C, H, W)``.
        name: the argument's name, used in messages.

    Returns:
        ``x`` unchanged.
    """
    shape = tuple(int(s) for s in shape)
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (B, {', '.join(map(str, shape))}), "
            f"got {type(x).__name__}. Convert it with torch.as_tensor({name}, dtype=torch.float32)."
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must have a floating-point dtype (float32 or float64), got {x.dtype}. "
            f"Convert it with {name}.float()."
        )
    if x.dim() != len(shape) + 1:
        raise ValueError(
            f"{name} must have rank {len(shape) + 1}, i.e. shape (B, {', '.join(map(str, shape))}), "
            f"got rank {x.dim()} with shape {tuple(x.shape)}."
            + (f" For a single sample use {name}.unsqueeze(0)." if x.dim() == len(shape) else "")
        )
    if tuple(x.shape[1:]) != shape:
        what = "features" if len(shape) == 1 else "per-sample shape"
        got = x.shape[1] if len(shape) == 1 else tuple(x.shape[1:])
        want = shape[0] if len(shape) == 1 else shape
        raise ValueError(f"{name} has the wrong number of {what}: expected {want}, got {got}.")
    if not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{name} must be finite, but it contains {n_bad} NaN or inf value(s). "
            "Impute or drop them before calling the model."
        )
    return x


def check_reference(reference: object, shape: Sequence[int], *, name: str = "reference") -> torch.Tensor:
    """Turn ``reference`` (None, scalar, array or tensor) into a float tensor of exactly ``shape``.

    A reference of shape ``(C,)`` is broadcast over an image's ``(C, H, W)``; a scalar over everything.
    """
    shape = tuple(int(s) for s in shape)
    if reference is None:
        return torch.zeros(shape)
    if isinstance(reference, bool) or not isinstance(reference, (int, float, torch.Tensor)) and not hasattr(
        reference, "__array__"
    ) and not isinstance(reference, (list, tuple)):
        raise TypeError(f"{name} must be None, a number, an array or a tensor, got {type(reference).__name__}.")
    ref = torch.as_tensor(reference)
    if not ref.is_floating_point():
        ref = ref.to(torch.get_default_dtype())
    if ref.dim() == 0:
        return ref.expand(shape).clone()
    if len(shape) == 3 and tuple(ref.shape) == (shape[0],):
        return ref.view(-1, 1, 1).expand(shape).clone()
    if len(shape) == 3 and tuple(ref.shape) == (1, *shape[1:]) and shape[0] == 1:
        return ref.clone()
    if tuple(ref.shape) != shape:
        raise ValueError(
            f"{name} must have shape {shape} (one value per input element), got shape {tuple(ref.shape)}."
        )
    if not bool(torch.isfinite(ref).all()):
        raise ValueError(f"{name} must be finite, but it contains NaN or inf.")
    return ref.clone()


def check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value
