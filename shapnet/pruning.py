"""Dynamic, per-instance pruning between Shapley layers (DESIGN §6).

After a layer, the features with the smallest L1 norm of their Shapley vector are set to 0, the reference
of every later layer. A module whose inputs are all 0 has all its Shapley values exactly 0, so the next
layer skips it (and every coalition that contains a pruned feature): that is where the speed-up comes from.
Pruning is part of the model, so the pruned network still satisfies local accuracy and missingness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

__all__ = ["Pruning", "prune_features", "as_pruning"]


@dataclass(frozen=True)
class Pruning:
    """Which features to zero after each layer (but the last).

    Args:
        fraction: fraction of features pruned per instance, one float for every layer or one per layer
            (None entries skip a layer).
        threshold: prune features whose L1 norm is below this (one value or one per layer).
    """

    fraction: float | tuple[float | None, ...] | None = None
    threshold: float | tuple[float | None, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("fraction", "threshold"):
            value = getattr(self, name)
            if isinstance(value, Sequence) and not isinstance(value, str):
                object.__setattr__(self, name, tuple(value))
        if self.fraction is None and self.threshold is None:
            raise ValueError("Pruning needs a fraction or a threshold, got neither.")
        for f in self._as_tuple(self.fraction):
            if f is not None and not 0.0 <= f < 1.0:
                raise ValueError(f"pruning fraction must lie in [0, 1), got {f}.")

    @staticmethod
    def _as_tuple(value: object) -> tuple:
        return value if isinstance(value, tuple) else (value,)

    def for_layer(self, index: int) -> tuple[float | None, float | None]:
        """The ``(fraction, threshold)`` applied after layer ``index``."""

        def pick(value: object) -> float | None:
            if isinstance(value, tuple):
                return value[index] if index < len(value) else None
            return value  # type: ignore[return-value]

        return pick(self.fraction), pick(self.threshold)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def as_pruning(prune: object) -> Pruning | None:
    """Accept ``None``, a fraction, a dict of :class:`Pruning` fields or a :class:`Pruning`."""
    if prune is None or isinstance(prune, Pruning):
        return prune
    if isinstance(prune, (int, float)) and not isinstance(prune, bool):
        return Pruning(fraction=float(prune))
    if isinstance(prune, dict):
        return Pruning(**prune)
    raise TypeError(f"prune must be None, a fraction, a dict or a Pruning, got {type(prune).__name__}.")


def prune_features(
    representation: torch.Tensor,
    fraction: float | None,
    threshold: float | None,
    *,
    n_real: int | None = None,
) -> torch.Tensor:
    """Zero the weakest features of each sample.

    Args:
        representation: ``(F, B, C)``, feature-major.
        fraction: prune ``floor(fraction * n_real)`` features per sample (smallest L1 norm first).
        threshold: prune features with L1 norm below it.
        n_real: features that count (the first ``n_real``; the rest are padding, always 0).

    Returns:
        The representation with pruned features set to 0, ``(F, B, C)``.
    """
    n_features = representation.shape[0]
    n_real = n_features if n_real is None else n_real
    norms = representation.detach().abs().sum(-1)  # (F, B)
    keep = torch.ones_like(norms, dtype=torch.bool)
    if threshold is not None:
        keep &= norms >= threshold
    n_prune = int(fraction * n_real) if fraction else 0
    if n_prune > 0:
        ranked = norms[:n_real]
        weakest = torch.topk(ranked, n_prune, dim=0, largest=False).indices  # (n_prune, B)
        keep[:n_real] &= torch.ones_like(ranked, dtype=torch.bool).scatter(0, weakest, False)
    return representation * keep.unsqueeze(-1)
