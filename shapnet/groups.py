"""Feature groupings: which features each Shapley module sees."""

from __future__ import annotations

import itertools
import math

__all__ = ["gam_groups", "disjoint_groups", "pair_groups", "butterfly_groups", "padded_size"]


def gam_groups(n_features: int) -> list[tuple[int, ...]]:
    """One module per feature (a generalized additive model)."""
    return [(i,) for i in range(n_features)]


def disjoint_groups(n_features: int, group_size: int) -> list[tuple[int, ...]]:
    """Consecutive groups of ``group_size`` (the last one may be shorter)."""
    return [tuple(range(s, min(s + group_size, n_features))) for s in range(0, n_features, group_size)]


def pair_groups(n_features: int) -> list[tuple[int, ...]]:
    """All ``F (F - 1) / 2`` pairs: the paper's overlapping Shallow ShapNet."""
    return list(itertools.combinations(range(n_features), 2))


def padded_size(n_features: int, group_size: int) -> tuple[int, int]:
    """``(F_pad, L)``: the smallest power ``F_pad = k**L >= F`` (``L >= 1``) used by the butterfly."""
    if group_size < 2:
        raise ValueError(f"a butterfly needs group_size >= 2, got {group_size}.")
    stages = max(1, math.ceil(math.log(n_features, group_size) - 1e-12)) if n_features > 1 else 1
    return group_size**stages, stages


def butterfly_groups(n_padded: int, group_size: int, stage: int) -> list[tuple[int, ...]]:
    """Radix-``k`` butterfly (as in the FFT): at ``stage`` s, group the features whose base-``k`` digits
    differ only in digit ``s mod L``. For ``k = 2`` this pairs ``i`` with ``i XOR 2**(s mod L)``; after
    ``L`` stages every output depends on every input.

    Args:
        n_padded: ``F_pad = k**L``.
        group_size: ``k``.
        stage: the stage index ``s``.
    """
    _, n_stages = padded_size(n_padded, group_size)
    stride = group_size ** (stage % n_stages)
    groups = []
    for i in range(n_padded):
        if (i // stride) % group_size == 0:
            groups.append(tuple(i + j * stride for j in range(group_size)))
    return groups
