"""Penalties on explanations, to add to a training loss (DESIGN §6)."""

from __future__ import annotations

from typing import Literal

import torch

from .consistency import shapley_consistency
from .explanation import ShapleyExplanation

__all__ = ["explanation_penalty", "l1_penalty", "linf_penalty", "shapley_consistency"]


def _per_feature_norms(values: torch.Tensor) -> torch.Tensor:
    """``(B, *features, C)`` -> ``(B, F)``: the L1 norm of each feature's vector."""
    return values.abs().flatten(1, -2).sum(-1)


def l1_penalty(values: torch.Tensor) -> torch.Tensor:
    """Sparsity: mean over the batch of ``sum_i ||Phi_i||_1``. ``values``: ``(B, *features, C)``."""
    return _per_feature_norms(values).sum(1).mean()


def linf_penalty(values: torch.Tensor) -> torch.Tensor:
    """Spread importance: mean over the batch of ``max_i ||Phi_i||_1``. ``values``: ``(B, *features, C)``."""
    return _per_feature_norms(values).amax(1).mean()


def explanation_penalty(
    explanation: ShapleyExplanation,
    kind: Literal["l1", "linf"] = "l1",
    *,
    layers: Literal["last", "all"] = "last",
) -> torch.Tensor:
    """L1 or L-infinity penalty on the last layer's values or on every layer's representation.

    ``layers="all"`` needs an explanation computed with ``explain(x, layers=True)``.
    """
    penalties = {"l1": l1_penalty, "linf": linf_penalty}
    if kind not in penalties:
        raise ValueError(f"kind must be 'l1' or 'linf', got {kind!r}.")
    if layers == "last":
        return penalties[kind](explanation.values)
    if layers != "all":
        raise ValueError(f"layers must be 'last' or 'all', got {layers!r}.")
    if explanation.layers is None:
        raise ValueError("layers='all' needs the per-layer values: call model.explain(x, layers=True).")
    return torch.stack([penalties[kind](v) for v in explanation.layers]).sum()
