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

from ._backends import compiled

__all__ = ["Pruning", "as_pruning", "prune_features", "prune_features_and_mask"]


@dataclass(frozen=True)
class Pruning:
    """Which features to zero after each layer (but the last).

    Args:
        fraction: fraction of features pruned per instance, one float for every layer or one per layer
            (None entries skip a layer).
        threshold: prune features whose L1 norm is below this (one value or one per layer).
        granularity: ``"feature"`` prunes single features (DESIGN §6). ``"group"`` prunes whole groups of
            the *next* layer (ranked by their members' mean L1 norm), so every pruned group is a module that
            the next layer skips outright: with pairwise modules, pruning 50% of features one by one leaves
            only about 25% of the next modules idle, pruning 50% of groups leaves 50% idle. Deep
            (butterfly) ShapNets only. For speed, use ``"group"``: feature pruning leaves too few idle
            modules to pay for the pruning itself (docs/guide/performance.md).
    """

    fraction: float | tuple[float | None, ...] | None = None
    threshold: float | tuple[float | None, ...] | None = None
    granularity: str = "feature"

    def __post_init__(self) -> None:
        for name in ("fraction", "threshold"):
            value = getattr(self, name)
            if isinstance(value, Sequence) and not isinstance(value, str):
                object.__setattr__(self, name, tuple(value))
        if self.fraction is None and self.threshold is None:
            raise ValueError("Pruning needs a fraction or a threshold, got neither.")
        if self.granularity not in ("feature", "group"):
            raise ValueError(f"granularity must be 'feature' or 'group', got {self.granularity!r}.")
        for f in self._as_tuple(self.fraction):
            if f is not None and not 0.0 <= f < 1.0:
                raise ValueError(f"pruning fraction must lie in [0, 1), got {f}.")

    @staticmethod
    def _as_tuple(value: object) -> tuple:
        return value if isinstance(value, tuple) else (value,)

    def for_layer(self, index: int) -> tuple[float | None, float | None]:
        """The ``(fraction, threshold)`` applied after layer ``index``."""

        def pick(value: float | tuple[float | None, ...] | None) -> float | None:
            if isinstance(value, tuple):
                return value[index] if index < len(value) else None
            return value

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
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Zero the weakest features (or groups of features) of each sample.

    Args:
        representation: ``(F, B, C)``, feature-major.
        fraction: prune ``floor(fraction * units)`` units per sample (smallest L1 norm first).
        threshold: prune units whose (mean) L1 norm is below it.
        n_real: features that count (the first ``n_real``; the rest are padding, always 0).
        groups: ``(M, k)`` partition of the features into the next layer's groups; when given, whole
            groups are pruned.

    Returns:
        The representation with pruned features set to 0, ``(F, B, C)``.
    """
    return prune_features_and_mask(representation, fraction, threshold, n_real=n_real, groups=groups)[0]


def prune_features_and_mask(
    representation: torch.Tensor,
    fraction: float | None,
    threshold: float | None,
    *,
    n_real: int | None = None,
    groups: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`prune_features`, plus the ``(F, B)`` bool mask of the features that are still non-zero.

    The mask falls out of the norms computed here; it is what the next layer needs (its dummy players).
    """
    n_real = representation.shape[0] if n_real is None else n_real
    if compiled.applies(representation):
        return compiled.prune(representation, fraction, threshold, n_real, groups)
    return _prune_torch(representation, fraction, threshold, n_real, groups)


def _prune_torch(
    representation: torch.Tensor,
    fraction: float | None,
    threshold: float | None,
    n_real: int,
    groups: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`prune_features_and_mask` in torch calls, for any device."""
    n_features = representation.shape[0]
    norms = representation.detach().abs().sum(-1)  # (F, B)
    if groups is None:
        units = norms[:n_real]
    else:
        units = norms[groups].mean(1)  # (M, B)
        # Groups made only of padding are always idle: never count them as pruned.
        units = units.masked_fill((groups >= n_real).all(1, keepdim=True), float("inf"))
    n_units = units.shape[0] if groups is None else int((groups < n_real).any(1).sum())
    keep = torch.ones_like(units, dtype=torch.bool)
    if threshold is not None:
        keep &= units >= threshold
    n_prune = int(fraction * n_units) if fraction else 0
    if n_prune > 0:
        weakest = torch.topk(units, n_prune, dim=0, largest=False).indices  # (n_prune, B)
        keep &= torch.ones_like(keep).scatter(0, weakest, False)
    if groups is None:
        keep = torch.cat([keep, keep.new_ones(n_features - n_real, keep.shape[1])])
    else:
        m, k = groups.shape
        expanded = keep.unsqueeze(1).expand(m, k, -1).reshape(m * k, -1)
        keep = torch.ones_like(norms, dtype=torch.bool).index_copy(0, groups.reshape(-1), expanded)
    active = keep & (norms != 0)
    return representation * keep.unsqueeze(-1), active
