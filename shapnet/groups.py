"""Feature groupings: which features each Shapley module sees, and how a layer indexes them."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["GroupIndex", "butterfly_groups", "disjoint_groups", "gam_groups", "padded_size", "pair_groups"]


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
    return [
        tuple(i + j * stride for j in range(group_size))
        for i in range(n_padded)
        if (i // stride) % group_size == 0
    ]


class _Permute(torch.autograd.Function):
    """``t.index_select(0, index)`` for a permutation ``index``, whose gradient is the inverse gather.

    Autograd's own backward of a gather is a zero fill plus an accumulating scatter; for a permutation a
    second gather does the same job in one pass.
    """

    @staticmethod
    def forward(ctx, t, index, inverse):
        ctx.save_for_backward(inverse)
        return t.index_select(0, index)

    @staticmethod
    def backward(ctx, grad):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(0, inverse), None, None


class GroupIndex(nn.Module):
    """Where the ``M`` groups of a layer sit in a feature-major ``(F, ...)`` tensor.

    Module ``m``'s ``j``-th feature is ``slots[j, m]``; groups shorter than ``k`` are padded with the slot
    ``F``, a constant "feature" whose input is always at the reference. :meth:`gather` turns ``(F, ...)``
    into the tile layout ``(k, M, ...)`` and :meth:`scatter` sums ``(k, M, N, O)`` values back onto the
    features. Groups that partition the features make both a permutation; butterfly and "disjoint" groups
    even a transpose, ``(A, k, stride) -> (k, A, stride)`` with module ``m = a * stride + r``: no copy.

    Args:
        groups: ``M`` tuples of feature indices (validated by the caller).
        n_features: ``F``.
    """

    groups: torch.Tensor
    slots: torch.Tensor
    inverse: torch.Tensor | None

    def __init__(self, groups: Sequence[Sequence[int]], n_features: int) -> None:
        super().__init__()
        k = max(len(g) for g in groups)
        self.n_features = n_features
        padded = [list(g) + [n_features] * (k - len(g)) for g in groups]
        self.register_buffer("groups", torch.tensor(padded, dtype=torch.long), persistent=False)  # (M, k)
        self.register_buffer("slots", self.groups.T.contiguous(), persistent=False)  # (k, M)
        self.padded = any(len(g) < k for g in groups)
        order = self.slots.reshape(-1)
        self.partition = (
            not self.padded
            and order.numel() == n_features
            and bool((order.sort().values == torch.arange(n_features)).all())
        )
        self.register_buffer("inverse", order.argsort() if self.partition else None, persistent=False)
        self.stride = None
        if self.partition:
            stride = int(self.groups[0, 1] - self.groups[0, 0]) if k > 1 else 1
            if stride >= 1 and n_features % (k * stride) == 0:
                blocks = torch.arange(n_features).view(-1, k, stride).transpose(0, 1).reshape(k, -1)
                self.stride = stride if torch.equal(blocks, self.slots) else None

    @classmethod
    def tiles(cls, group_size: int, n_modules: int) -> GroupIndex:
        """The tile layout itself: module ``m``'s ``j``-th feature is ``j * M + m`` (``F = k * M``)."""
        return cls(
            [tuple(j * n_modules + m for j in range(group_size)) for m in range(n_modules)],
            group_size * n_modules,
        )

    def extra_repr(self) -> str:
        return (
            f"n_features={self.n_features}, n_modules={self.slots.shape[1]}, group_size={self.slots.shape[0]}"
        )

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """``(F, ...)`` -> ``(k, M, ...)``, with the padding slot reading zeros."""
        k, m = self.slots.shape
        if self.stride is not None:  # explicit sizes: -1 is ambiguous for an empty batch
            blocks = self.n_features // (k * self.stride)
            return t.view(blocks, k, self.stride, *t.shape[1:]).transpose(0, 1).reshape(k, m, *t.shape[1:])
        if self.partition:
            return _Permute.apply(t, self.slots.reshape(-1), self.inverse).view(k, m, *t.shape[1:])
        if self.padded:
            t = torch.cat([t, t.new_zeros(1, *t.shape[1:])])
        return t[self.slots]

    def scatter(self, values: torch.Tensor) -> torch.Tensor:
        """``(k, M, N, O)`` -> ``(F, N, O)``: each feature's values summed over its modules."""
        k, m, n, out = values.shape
        if self.stride is not None:  # the inverse transpose of gather
            blocks = self.n_features // (k * self.stride)
            return (
                values.reshape(k, blocks, self.stride, n, out)
                .transpose(0, 1)
                .reshape(self.n_features, n, out)
            )
        flat = values.reshape(k * m, n, out)
        if self.partition:  # every feature is in exactly one module
            return _Permute.apply(flat, self.inverse, self.slots.reshape(-1))
        total = values.new_zeros(self.n_features + int(self.padded), n, out).index_add_(
            0, self.slots.reshape(-1), flat
        )
        # Drop the padding slot; an unconditional slice would cost a zero fill and a copy in backward.
        return total[: self.n_features] if self.padded else total
