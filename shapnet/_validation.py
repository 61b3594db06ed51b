"""Input and argument checks shared by every public entry point (models, layers, exact_shapley, io).

Declared once here, in the style (and with the messages) of :func:`sklearn.utils.check_scalar`, which is not
imported: it would pull all of scikit-learn (about a second) into every ``import shapnet``, every Dask
worker and every DDP rank. A wrong *type* raises ``TypeError``,
a value out of range raises ``ValueError``, and every message names what was expected, what was given and,
where there is one, the fix. The checks are cheap (one pass over ``x`` for finiteness), because they run on
every call. See ``docs/guide/bad-input.md`` for the list of what is checked where.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

__all__ = [
    "check_finite",
    "check_input",
    "check_int",
    "check_int_pair",
    "check_positive_int",
    "check_reference",
]


def check_int(
    value: object,
    name: str,
    *,
    min_val: int | None = None,
    max_val: int | None = None,
) -> int:
    """``value`` as an ``int`` (Python or NumPy integer, never a bool) in ``[min_val, max_val]``.

    Raises:
        TypeError: not an integer (e.g. ``1.5``, ``"2"``, ``True``).
        ValueError: out of range (scikit-learn's message, e.g. ``"channels == 0, must be >= 1."``).
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got a bool ({value!r}).")
    if not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an instance of int, not {type(value).__qualname__}.")
    number = int(value)
    if min_val is not None and number < min_val:
        raise ValueError(f"{name} == {value}, must be >= {min_val}.")
    if max_val is not None and number > max_val:
        raise ValueError(f"{name} == {value}, must be <= {max_val}.")
    return number


def check_positive_int(value: object, name: str) -> int:
    """``value`` as an ``int >= 1`` (see :func:`check_int`)."""
    return check_int(value, name, min_val=1)


def check_int_pair(value: object, name: str, *, min_val: int) -> tuple[int, int]:
    """An int or a pair of ints (as ``nn.Conv2d``'s ``kernel_size``/``stride``/...), each ``>= min_val``."""
    if isinstance(value, (Sequence, torch.Tensor)) and not isinstance(value, (str, bytes)):
        items = list(value)
        if len(items) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints (height, width), got {value!r}.")
        return (
            check_int(items[0], f"{name}[0]", min_val=min_val),
            check_int(items[1], f"{name}[1]", min_val=min_val),
        )
    single = check_int(value, name, min_val=min_val)
    return (single, single)


def check_finite(t: torch.Tensor, name: str, fix: str = "") -> torch.Tensor:
    """Raise ``ValueError`` if ``t`` holds NaN or inf; return ``t``."""
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        n_bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} must be finite, but it contains {n_bad} NaN or inf value(s).{fix}")
    return t


def check_input(
    x: object,
    shape: Sequence[int],
    *,
    name: str = "x",
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Validate a batch ``x`` of shape ``(B, *shape)``: a finite real floating-point tensor.

    Args:
        x: the batch (``B = 0`` is allowed).
        shape: the expected shape of one sample, e.g. ``(F,)`` or ``(C, H, W)``.
        name: the argument's name, used in messages.
        dtype: the model's dtype; a different float dtype raises ``TypeError`` (inputs are never cast
            silently, as in ``nn.Linear``; the message gives both conversions).
        device: the model's device; a different device raises ``ValueError``.

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
        want = dtype if dtype is not None else torch.float32
        what = "complex numbers are not supported (a ShapNet's inputs are real)" if x.is_complex() else ""
        raise TypeError(
            f"{name} must have a real floating-point dtype ({want}, the model's), got {x.dtype}"
            + (f": {what}" if what else "")
            + f". Convert it with {name}.to({want})"
            + (" (or pass x.real if the imaginary part is meaningless)." if x.is_complex() else ".")
        )
    if dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the model's parameters are {dtype}; inputs are not cast "
            f"silently. Convert the input with {name}.to({dtype}), or the model with model.to({x.dtype})."
        )
    if device is not None and x.device != device:
        raise ValueError(
            f"{name} is on device {x.device} but the model is on {device}. Move one of them: "
            f"{name}.to({str(device)!r}) or model.to({str(x.device)!r})."
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
        want_shape = shape[0] if len(shape) == 1 else shape
        raise ValueError(f"{name} has the wrong number of {what}: expected {want_shape}, got {got}.")
    return check_finite(x, name, " Impute or drop them before calling the model.")


def check_reference(reference: object, shape: Sequence[int], *, name: str = "reference") -> torch.Tensor:
    """Turn ``reference`` (None, scalar, array or tensor) into a finite float tensor of exactly ``shape``.

    A reference of shape ``(C,)`` is broadcast over an image's ``(C, H, W)``; a scalar over everything.
    NaN or inf raise ``ValueError`` (a non-finite reference makes every value NaN); complex raises
    ``TypeError``.
    """
    shape = tuple(int(s) for s in shape)
    if reference is None:
        return torch.zeros(shape)
    if isinstance(reference, bool) or (
        not isinstance(reference, (int, float, torch.Tensor))
        and not hasattr(reference, "__array__")
        and not isinstance(reference, (list, tuple))
    ):
        raise TypeError(
            f"{name} must be None, a number, an array or a tensor, got {type(reference).__name__}."
        )
    ref = torch.as_tensor(reference)
    if ref.is_complex():
        raise TypeError(f"{name} must be real, got dtype {ref.dtype}.")
    if not ref.is_floating_point():
        ref = ref.to(torch.get_default_dtype())
    check_finite(ref, name, " Use the training mean (or zeros) as the reference.")
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
    return ref.clone()
