"""Brute-force Shapley values by enumerating every coalition: the ground truth for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._validation import check_finite, check_positive_int
from .coalitions import coalition_masks, shapley_weights

__all__ = ["MAX_EXACT_FEATURES", "exact_shapley"]

MAX_EXACT_FEATURES = 20


@torch.no_grad()
def exact_shapley(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    reference: torch.Tensor | float,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Exact Shapley values of ``fn`` at every row of ``x``, relative to ``reference``.

    The game of sample ``b`` is ``v(S) = fn(x_b on S, reference elsewhere)``. All ``2**F`` coalitions
    are evaluated, in chunks of ``chunk_size`` coalitions per call of ``fn``.

    Args:
        fn: maps ``(N, *in)`` to ``(N, O)`` or ``(N,)``.
        x: ``(B, *in)`` with ``F = prod(in) <= 20``.
        reference: broadcastable to ``(B, *in)`` (e.g. ``(*in)``, ``(B, *in)`` or a scalar).
        chunk_size: coalitions per call (a positive int); by default about ``65536 / B``.

    Returns:
        ``(B, F, O)`` in ``x``'s dtype (``O = 1`` when ``fn`` returns ``(N,)``). Accumulated in float64.
        For ``B = 0``, ``(0, F, O)`` zeros (``fn`` is called once on the reference to learn ``O``).
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise TypeError(
            f"x must be a floating-point tensor of shape (B, *in), got {type(x).__name__}"
            + (f" of dtype {x.dtype} and shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else "")
        )
    if chunk_size is not None:
        chunk_size = check_positive_int(chunk_size, "chunk_size")
    batch, in_shape = x.shape[0], tuple(x.shape[1:])
    n_features = int(torch.tensor(in_shape).prod())
    if n_features > MAX_EXACT_FEATURES:
        raise ValueError(
            f"exact_shapley enumerates 2**F coalitions and accepts F <= {MAX_EXACT_FEATURES} features; "
            f"got F = {n_features} (input shape {in_shape}). Use a sampling estimator for larger inputs."
        )
    if isinstance(reference, complex) or torch.as_tensor(reference).is_complex():
        raise TypeError("reference must be real, got complex values.")
    given = check_finite(torch.as_tensor(reference, dtype=x.dtype, device=x.device), "reference")
    try:
        ref = torch.broadcast_to(given, x.shape).reshape(batch, n_features)
    except RuntimeError as err:
        raise ValueError(
            f"reference must broadcast to x's shape {tuple(x.shape)}, got shape {tuple(given.shape)}."
        ) from err
    if batch == 0:  # no games to play; one call of fn (at the reference, if it is one row) tells O
        one = (1, *in_shape)
        row = torch.broadcast_to(given, one) if given.numel() in (1, n_features) else x.new_zeros(one)
        n_outputs = fn(row.reshape(one)).reshape(1, -1).shape[1]
        return x.new_zeros(0, n_features, n_outputs)
    flat = x.reshape(batch, n_features)
    n_coalitions = 2**n_features
    if chunk_size is None:
        chunk_size = max(1, 65536 // max(batch, 1))
    masks = coalition_masks(n_features, torch.bool).to(x.device)
    weights = shapley_weights(n_features, torch.float64).to(x.device)

    values = None
    for start in range(0, n_coalitions, chunk_size):
        mask = masks[start : start + chunk_size]  # (S, F)
        mixed = torch.where(mask.unsqueeze(0), flat.unsqueeze(1), ref.unsqueeze(1))  # (B, S, F)
        out = fn(mixed.reshape(-1, *in_shape))
        out = out.reshape(batch, mask.shape[0], -1).to(torch.float64)  # (B, S, O)
        part = torch.einsum("sf,bso->bfo", weights[start : start + chunk_size], out)
        values = part if values is None else values + part
    assert values is not None  # 2**F >= 1 coalitions: the loop ran
    return values.to(x.dtype)
