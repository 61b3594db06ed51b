"""Coalition masks and Shapley weights: the constant tables behind every Shapley module."""

from __future__ import annotations

from math import comb

import torch

__all__ = ["coalition_masks", "shapley_kernel_size_probabilities", "shapley_weights"]


def coalition_masks(k: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """All ``2**k`` coalitions of ``k`` players as a 0/1 matrix.

    Returns:
        ``(2**k, k)``; row ``s`` is the binary expansion of ``s`` (bit ``j`` = player ``j``), so row 0 is
        the empty coalition and the last row the grand coalition.
    """
    codes = torch.arange(2**k).unsqueeze(1)
    bits = 2 ** torch.arange(k).unsqueeze(0)
    return ((codes // bits) % 2).to(dtype)


def shapley_weights(k: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The matrix ``W`` with ``phi = W.T @ v`` for a game ``v`` given on all coalitions.

    ``W[S, i] = (|S|-1)! (k-|S|)! / k!`` if ``i`` is in ``S``, and ``-|S|! (k-|S|-1)! / k!`` otherwise,
    so that ``sum_S W[S, i] v(S) = sum_{S not containing i} w(|S|) (v(S + i) - v(S))``.

    Returns:
        ``(2**k, k)``, in ``dtype``.
    """
    mask = coalition_masks(k, torch.float64)
    size = mask.sum(1, keepdim=True)
    # (s-1)!(k-s)!/k! = 1 / (k * C(k-1, s-1));  s!(k-s-1)!/k! = 1 / (k * C(k-1, s)).
    w_in = torch.tensor(
        [1.0 / (k * comb(k - 1, s - 1)) if s >= 1 else 0.0 for s in range(k + 1)], dtype=torch.float64
    )
    w_out = torch.tensor(
        [1.0 / (k * comb(k - 1, s)) if s <= k - 1 else 0.0 for s in range(k + 1)], dtype=torch.float64
    )
    s = size.long().squeeze(1)
    weights = torch.where(mask.bool(), w_in[s].unsqueeze(1), -w_out[s].unsqueeze(1))
    return weights.to(dtype)


def shapley_kernel_size_probabilities(d: int) -> torch.Tensor:
    """Probabilities of coalition sizes ``s = 1 .. d-1`` under the Shapley kernel, ``∝ (d-1) / (s (d-s))``.

    Returns:
        ``(d - 1,)`` float64 summing to 1 (index ``s - 1``).
    """
    if d < 2:
        raise ValueError(f"the Shapley kernel needs at least 2 features, got {d}.")
    s = torch.arange(1, d, dtype=torch.float64)
    p = (d - 1) / (s * (d - s))
    return p / p.sum()
